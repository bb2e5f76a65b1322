//! The catalog: blueprints (the data model) and entities.

pub mod blueprints;
pub mod entities;
pub mod service;

pub use entities::{BulkItem, BulkOptions, MAX_BULK, Outcome, WriteMode};
pub use service::Catalog;
