//! What every service shares: the store, the clock and the signals that wake background work,
//! and the small lookups all of them make.

use std::sync::Arc;

use portolan_model::{Blueprint, EntityRef, Millis};
use portolan_store::{ActionRecord, BlueprintRecord, ChangeEvent, Store, Tx};
use serde_json::Value;
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// The store, the clock and the wake-up signals, shared (cheaply cloned) by every service.
#[derive(Clone)]
pub struct Core {
    store: Arc<dyn Store>,
    clock: SharedClock,
    /// Wakes this process's worker when a write queued follow-up work.
    work: Arc<Notify>,
    /// Wakes long-polling runners when a runner run is queued.
    runner_work: Arc<Notify>,
}

impl Core {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock) -> Self {
        Self { store, clock, work: Arc::default(), runner_work: Arc::default() }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Notified after a write that queued background work.
    pub fn work_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.work)
    }

    /// Tells this process's worker that work was queued.
    pub fn wake_worker(&self) {
        self.work.notify_one();
    }

    /// Notified when a run a runner may claim was queued.
    pub fn runner_signal(&self) -> &Notify {
        &self.runner_work
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
pub async fn all_blueprints(tx: &mut dyn Tx) -> Result<Vec<Blueprint>> {
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

/// A blueprint, or 404.
pub(crate) async fn load_blueprint(tx: &mut dyn Tx, identifier: &str) -> Result<BlueprintRecord> {
    tx.blueprint(identifier).await?.ok_or_else(|| Error::not_found(format!("blueprint '{identifier}'")))
}

/// A blueprint about to change: concurrent writers of its entities wait (see `Tx::lock_blueprint`).
pub(crate) async fn lock_blueprint(tx: &mut dyn Tx, identifier: &str) -> Result<BlueprintRecord> {
    tx.lock_blueprint(identifier).await?.ok_or_else(|| Error::not_found(format!("blueprint '{identifier}'")))
}

/// Removes the fields the server manages, which a client that GETs, edits and PUTs echoes back.
pub(crate) fn strip_server_fields(document: &mut Value) {
    if let Value::Object(map) = document {
        for key in ["createdAt", "createdBy", "updatedAt", "updatedBy"] {
            map.remove(key);
        }
    }
}

/// The live event announcing a change to an entity.
pub(crate) fn change(kind: &str, entity: &EntityRef, version: Option<i64>) -> ChangeEvent {
    ChangeEvent {
        kind: kind.into(),
        blueprint: entity.blueprint.clone(),
        identifier: entity.identifier.clone(),
        version,
        property: None,
    }
}

/// A document as the audit log keeps it.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// An action, or 404.
pub(crate) async fn load_action(tx: &mut dyn Tx, identifier: &str) -> Result<ActionRecord> {
    tx.action(identifier).await?.ok_or_else(|| Error::not_found(format!("action '{identifier}'")))
}
