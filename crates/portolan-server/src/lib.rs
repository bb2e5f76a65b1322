//! Portolan's engine and HTTP face.

pub mod api;
pub mod backends;
pub mod connections;
pub mod demo;
pub mod email;
pub mod error;
pub mod extract;
pub mod forms;
pub mod gallery;
pub mod github;
pub mod http;
pub mod keys;
pub mod mcp;
pub mod outbound;
pub mod rate_limit;
pub mod sandbox;
pub mod services;
pub mod settings;
pub mod slack;
pub mod state;
pub mod sweeper;
pub mod telemetry;
pub mod web;
pub mod worker;

pub use http::{ServerOptions, router, serve, serve_with};
pub use settings::Settings;
pub use state::AppState;
