//! Services join the model and the store: each state change validates, authorises and writes in
//! one transaction (with its audit entries, change events and follow-up jobs). Handlers call these
//! and nothing below them.
//!
//! One service per concern, each a small struct that names its collaborators in its constructor.
//! The arrows point one way (every service also uses `core`, and `actor` for who acts):
//!
//! ```text
//!   locations ──► manifests, actions
//!   integrations ──► permissions
//!   manifests ──► catalog, scorecards, actions, search, dashboards, permissions
//!   backstage ──► catalog, search
//!   approvals ──► guardrails, runlog, permissions
//!   runs ──► catalog, actions, guardrails, identity, search, runlog, permissions
//!   oidc, oauth, slack ──► identity ──► catalog, audit
//!   catalog ──► computed, scorecards, triggers, permissions
//!   computed ──► scorecards
//!   guardrails ──► search
//!   dora ──► search
//!   dashboards ──► initiatives, dora, scorecards, search, permissions
//!   initiatives ──► scorecards, search, permissions
//!   search, scorecards, audit, actions ──► permissions ──► core
//!   runlog ──► triggers, notifications ──► core
//! ```
//!
//! `mod.rs` files only declare modules and re-export: every module imports what it uses from
//! where it is defined, so the import graph has no circles.

pub mod actions;
pub mod actor;
pub mod approvals;
pub mod audit;
pub mod backstage;
pub mod backup;
pub mod catalog;
pub mod computed;
pub mod core;
pub mod dashboards;
pub mod dora;
pub mod guardrails;
pub mod identity;
pub mod initiatives;
pub mod integrations;
pub mod locations;
pub mod manifests;
pub mod migrate;
pub mod notifications;
pub mod oauth;
pub mod oidc;
pub mod permissions;
pub mod runlog;
pub mod runs;
pub mod scorecards;
pub mod search;
pub mod slack;
pub mod triggers;

pub use actor::{Actor, Origin, Principal};
pub use core::{Clock, Core, SharedClock, SystemClock};
