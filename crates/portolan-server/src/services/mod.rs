//! Services join the model and the store: each state change validates, checks references and
//! writes in one transaction. Handlers call these and nothing below them.

pub mod actions;
pub mod catalog;
pub mod computed;
pub mod migrate;
pub mod runs;
pub mod scorecards;
pub mod search;

use std::sync::Arc;

use portolan_model::{Blueprint, Millis};
use portolan_store::Tx;
use serde_json::Value;

use crate::error::{Error, Result};

/// Who is acting, and through what. Until accounts exist every API caller is `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub origin: Origin,
    /// The run on whose behalf catalog changes are made: they are linked to it.
    pub run: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Api,
    Demo,
    Automation,
    /// A built-in backend (`UPSERT_ENTITY`, `DELETE_ENTITY`) doing a run's work.
    Backend,
    Runner,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Api => "api",
            Origin::Demo => "demo",
            Origin::Automation => "automation",
            Origin::Backend => "backend",
            Origin::Runner => "runner",
        }
    }
}

impl Actor {
    pub fn new(id: impl Into<String>, origin: Origin) -> Self {
        Self { id: id.into(), origin, run: None }
    }

    pub fn anonymous() -> Self {
        Self::new("anonymous", Origin::Api)
    }

    pub fn demo() -> Self {
        Self::new("portolan-demo", Origin::Demo)
    }

    /// The same actor, acting for `run`.
    pub fn for_run(mut self, run: impl Into<String>) -> Self {
        self.run = Some(run.into());
        self
    }
}

/// The source of the current time; services never read the system clock themselves.
pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// Every stored blueprint.
pub(crate) async fn all_blueprints(tx: &mut dyn Tx) -> Result<Vec<Blueprint>> {
    Ok(tx.blueprints().await?.into_iter().map(|r| r.blueprint).collect())
}

/// Puts the identifier a URL names into a document that omits it; refuses one that names another.
pub(crate) fn identifier_from_path(document: &mut Value, path_identifier: &str) -> Result<()> {
    if let Value::Object(map) = document {
        let named = map.entry("identifier").or_insert_with(|| Value::from(path_identifier));
        if named != path_identifier {
            let message = format!("the identifier cannot change (the URL names '{path_identifier}')");
            return Err(Error::invalid_at("/identifier", message));
        }
    }
    Ok(())
}
