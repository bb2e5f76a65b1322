//! Services join the model and the store: each state change validates, checks references and
//! writes in one transaction. Handlers call these and nothing below them.

pub mod catalog;
pub mod computed;
pub mod migrate;
pub mod scorecards;
pub mod search;

use std::sync::Arc;

use portolan_model::Millis;

/// Who is acting, and through what. Until accounts exist every API caller is `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Api,
    Demo,
}

impl Actor {
    pub fn anonymous() -> Self {
        Self { id: "anonymous".into(), origin: Origin::Api }
    }

    pub fn demo() -> Self {
        Self { id: "portolan-demo".into(), origin: Origin::Demo }
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
