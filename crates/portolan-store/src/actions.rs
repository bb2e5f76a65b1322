//! The records of actions, runs, run logs, secrets and runner tokens (stored by the
//! `shared::{actions, runs, secrets}` code). Only row locking differs between the backends:
//! PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, SQLite has one writer and needs nothing.

use portolan_model::Millis;
use portolan_model::action::Action;
use portolan_model::run::RunStatus;

/// An action as stored, with who made and last changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRecord {
    pub action: Action,
    pub created_at: Millis,
    pub created_by: String,
    pub updated_at: Millis,
    pub updated_by: String,
}

/// Which runs to list; newest first, before `before` (a run's `seq`) when given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub action: Option<String>,
    pub blueprint: Option<String>,
    pub entity: Option<String>,
    pub created_by: Option<String>,
    /// Any of these statuses (all when empty).
    pub statuses: Vec<RunStatus>,
    pub before: Option<i64>,
    /// Only runs this user requested or whose entity one of these teams owns.
    pub visible_to: Option<(String, Vec<String>)>,
}

/// A log line to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRunLog {
    pub at: Millis,
    pub stream: String,
    pub message: String,
}

/// A secret's name and history; its value never leaves the store but to the server's decryption.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretMeta {
    pub name: String,
    pub created_at: Millis,
    pub created_by: String,
    pub updated_at: Millis,
    pub updated_by: String,
}

/// A runner's credential: it may claim runs whose labels it has.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerToken {
    pub id: String,
    pub name: String,
    pub token_sha256: String,
    pub labels: Vec<String>,
    pub created_at: Millis,
    pub created_by: String,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// How an entity was affected by a run.
pub const CREATED: &str = "created";
pub const UPDATED: &str = "updated";
pub const DELETED: &str = "deleted";
