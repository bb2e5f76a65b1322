//! The storage code both backends share. Where the SQL is the same on SQLite and PostgreSQL
//! (sqlx reads `$N` parameters on SQLite too), a macro here writes a concern's trait
//! implementation, and each backend invokes it for its transaction type.
//!
//! A backend's transaction type has a field `tx` (its `sqlx::Transaction`) and two associated
//! functions for JSON values, as SQLite stores them as text and PostgreSQL as JSONB:
//! `json_param(&value)`, what to bind, and `json_column(row, name)`, what a column holds.

pub(crate) mod actions;
pub(crate) mod audit;
pub(crate) mod blueprints;
pub(crate) mod entities;
pub(crate) mod identity;
pub(crate) mod integrations;
pub(crate) mod jobs;
pub(crate) mod kpis;
pub(crate) mod locations;
pub(crate) mod notifications;
pub(crate) mod permissions;
pub(crate) mod runs;
pub(crate) mod scorecards;
pub(crate) mod search;
pub(crate) mod secrets;
pub(crate) mod sources;

pub(crate) use actions::action_store;
pub(crate) use audit::audit_store;
pub(crate) use blueprints::blueprint_store;
pub(crate) use entities::entity_store;
pub(crate) use identity::identity_store;
pub(crate) use integrations::integration_store;
pub(crate) use jobs::job_store;
pub(crate) use kpis::kpi_store;
pub(crate) use locations::location_store;
pub(crate) use notifications::notification_store;
pub(crate) use permissions::permission_store;
pub(crate) use runs::run_store;
pub(crate) use scorecards::scorecard_store;
pub(crate) use search::search_store;
pub(crate) use secrets::secret_store;
pub(crate) use sources::source_store;

use crate::{Result, StoreError};

/// Implements, for a backend's transaction type `$tx` (in the invoking module, which also has a
/// module `entities` with the `entity_store!` invocation), every concern whose SQL both backends
/// share, each in a module of its own: `claim` is what a select that claims jobs or runs appends,
/// `audit` what makes audit appenders take the log's head in turn.
macro_rules! shared_stores {
    ($tx:ident, $db:ty, $dialect:expr, claim = $claim:literal, audit = $audit:literal) => {
        mod search {
            crate::shared::search_store!(super::$tx, $db, $dialect, super::entities::entity_from_row);
        }
        mod jobs {
            crate::shared::job_store!(super::$tx, $db, $claim);
        }
        mod actions {
            crate::shared::action_store!(super::$tx, $db);
        }
        mod runs {
            crate::shared::run_store!(super::$tx, $db, $claim);
        }
        mod secrets {
            crate::shared::secret_store!(super::$tx, $db);
        }
        mod identity {
            crate::shared::identity_store!(super::$tx, $db);
        }
        mod permissions {
            crate::shared::permission_store!(super::$tx);
        }
        mod sources {
            crate::shared::source_store!(super::$tx, $db);
        }
        mod locations {
            crate::shared::location_store!(super::$tx);
        }
        mod integrations {
            crate::shared::integration_store!(super::$tx);
        }
        mod audit {
            crate::shared::audit_store!(super::$tx, $db, $audit);
        }
        mod kpis {
            crate::shared::kpi_store!(super::$tx, $db);
        }
        mod notifications {
            crate::shared::notification_store!(super::$tx, $db);
        }
    };
}

pub(crate) use shared_stores;

/// Rows per multi-row insert (up to 14 parameters each: 7,000, under SQLite's limit of 32,766).
pub(crate) const INSERT_CHUNK: usize = 500;

/// The placeholders of a multi-row insert, `(..), (..)`, for `rows` rows of `columns` values,
/// on the database sqlx names `database`. SQLite gets anonymous `?`s: sqlx asks for every bound
/// parameter's name, and SQLite finds a numbered parameter's name by walking the names of the whole
/// statement, so `$N` made a large insert quadratic (a third of the bulk ingest's CPU went there
/// with 7,000 parameters).
pub(crate) fn value_rows(database: &str, rows: usize, columns: usize) -> String {
    let row = |r: usize| -> String {
        let marks: Vec<String> = if database == "SQLite" {
            vec!["?".into(); columns]
        } else {
            (1..=columns).map(|c| format!("${}", r * columns + c)).collect()
        };
        format!("({})", marks.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(e.to_string()))
}
