//! Portolan's domain model: blueprints (the types of the catalog), entities (their instances) and
//! the rules that make them valid. This crate does no IO and never reads the clock: callers pass
//! the current time in.

pub mod action;
pub mod audit;
pub mod blueprint;
pub mod computed;
pub mod dashboard;
pub mod dora;
pub mod entity;
pub mod error;
pub mod gallery;
pub mod guardrail;
pub mod history;
pub mod ident;
pub mod initiative;
pub mod integration;
pub mod jq;
pub mod manifest;
pub mod notification;
pub mod oauth;
pub mod permission;
pub mod query;
pub mod run;
pub mod scorecard;
pub mod scorecard_definition;
pub mod slack;
pub mod system;
pub mod template;
pub mod timestamp;

pub use blueprint::{Blueprint, Format, PropertySchema, PropertyType, RelationDef};
pub use entity::{Entity, EntityInput, EntityRef, Reference};
pub use error::{FieldError, FieldErrors};

/// Milliseconds since the Unix epoch: the one representation of time in stored records.
pub type Millis = i64;

pub const HOUR: Millis = 3_600_000;
/// A UTC day; the days of the calendar start at multiples of it.
pub const DAY: Millis = 24 * HOUR;

/// Bytes as lowercase hexadecimal (digests, ids).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an RFC 3339 timestamp (as GitHub and most APIs write them) as milliseconds since the epoch.
pub fn parse_millis(text: &str) -> Option<Millis> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Formats milliseconds since the epoch as RFC 3339 (UTC), as the API shows timestamps.
pub fn format_millis(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
