//! A webhook integration's event: the request as it arrived, and what it became.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::mapping::Operation;
use crate::Millis;

/// Headers never kept in an event: they carry credentials.
pub const SECRET_HEADERS: [&str; 5] =
    ["authorization", "cookie", "proxy-authorization", "x-gitlab-token", "webhook-signature"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    /// Accepted, waiting for the worker.
    Pending,
    /// Every item it mapped to was written.
    Done,
    /// Some items were written and some failed.
    Partial,
    /// Nothing was written: every item failed, or the mapping did.
    Failed,
    /// No resource's selector took it.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationEvent {
    pub id: String,
    pub integration: String,
    pub received_at: Millis,
    /// The identifier the integration's `requestIdentifierPath` found (replays are dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `{body, headers, queryParams}`, headers in lower case, credentials left out.
    #[schema(value_type = Object)]
    pub request: Value,
    pub state: EventState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<Millis>,
    /// What each mapped item became.
    #[serde(default)]
    pub items: Vec<EventItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventItem {
    /// The resource's index in the mapping, and the item's among those it parsed.
    pub resource: usize,
    pub item: usize,
    pub operation: Operation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// `created`, `updated`, `unchanged`, `deleted`, `absent` (a delete of nothing) or `failed`.
    pub result: String,
    /// Why it failed: the mapping's JSON pointer (or the entity's) and the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl EventItem {
    pub fn failed(&self) -> bool {
        self.result == "failed"
    }
}

/// The state an event ends in, from its items.
pub fn settled_state(items: &[EventItem]) -> EventState {
    let failed = items.iter().filter(|i| i.failed()).count();
    match (items.len(), failed) {
        (0, _) => EventState::Ignored,
        (_, 0) => EventState::Done,
        (n, f) if f == n => EventState::Failed,
        _ => EventState::Partial,
    }
}
