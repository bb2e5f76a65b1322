//! Runs: one execution of an action, and the rules of its status.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Millis;
use crate::action::BackendKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    WaitingForApproval,
    Queued,
    InProgress,
    Success,
    Failure,
    Declined,
    Cancelled,
    TimedOut,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        Self::WaitingForApproval,
        Self::Queued,
        Self::InProgress,
        Self::Success,
        Self::Failure,
        Self::Declined,
        Self::Cancelled,
        Self::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitingForApproval => "WAITING_FOR_APPROVAL",
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::Declined => "DECLINED",
            Self::Cancelled => "CANCELLED",
            Self::TimedOut => "TIMED_OUT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// A terminal status is final: nothing changes a run after it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Declined | Self::Cancelled | Self::TimedOut)
    }

    /// Whether a run may go from `self` to `next`. `IN_PROGRESS` may go back to `QUEUED` only when
    /// its runner was lost and the run is handed to another.
    pub fn may_become(self, next: RunStatus) -> bool {
        use RunStatus as S;
        match (self, next) {
            (from, _) if from.is_terminal() => false,
            (S::WaitingForApproval, S::Queued | S::Declined | S::Cancelled | S::TimedOut) => true,
            (S::WaitingForApproval, _) => false,
            (S::Queued, S::WaitingForApproval) => false,
            (S::Queued, next) => next != S::Queued,
            (S::InProgress, S::Queued | S::InProgress) => true,
            (S::InProgress, next) => next.is_terminal() && next != S::Declined,
            _ => false,
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunTrigger {
    /// The user (or `automation:<id>`) that started it.
    pub by: String,
    /// `api`, `ui`, `automation`, `demo`.
    pub origin: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub at: Millis,
    /// For automations: the event that fired it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
    /// The requester's teams when they asked (what team quotas count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    /// Why the requester went past a guardrail's bound (allowed to their role), as they gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
}

/// One execution of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub id: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_title: Option<String>,
    /// The blueprint the action is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    /// The entity a DAY-2 or DELETE run acts on (or an automation's subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_label: Option<String>,
    #[serde(default)]
    pub links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_run_id: Option<String>,
    /// Why the run ended as it did, when the server ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub inputs: Map<String, Value>,
    pub backend: BackendKind,
    pub trigger: RunTrigger,
    /// The payload as sent to the backend, secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// How many times the run was handed to a backend (runner claims, webhook deliveries).
    #[serde(default)]
    pub attempt: i64,
    /// How many automation hops led to this run (0 for a person's run).
    #[serde(default)]
    pub depth: u32,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub created_at: Millis,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub updated_at: Millis,
    #[serde(default, with = "crate::timestamp::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ended_at: Option<Millis>,
    /// For actions that need approval: who may approve, by when, and who decided what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::guardrail::Approval>,
}

impl Run {
    /// A new run of `action`, queued at the trigger's time.
    pub fn queued(
        id: String,
        action: &crate::action::Action,
        entity: Option<String>,
        inputs: Map<String, Value>,
        trigger: RunTrigger,
        depth: u32,
    ) -> Run {
        let at = trigger.at;
        Run {
            id,
            action: action.identifier.clone(),
            action_title: action.title.clone(),
            blueprint: action.blueprint().map(str::to_string),
            entity,
            status: RunStatus::Queued,
            status_label: None,
            links: Vec::new(),
            summary: None,
            external_run_id: None,
            reason: None,
            inputs,
            backend: action.backend(),
            trigger,
            payload: None,
            // Backends the server calls get the run once; runners count their claims from 0.
            attempt: if action.backend() == crate::action::BackendKind::Runner { 0 } else { 1 },
            depth,
            created_at: at,
            updated_at: at,
            ended_at: None,
            approval: None,
        }
    }

    /// Moves the run to `next` at `now`; refuses a change the status rules forbid.
    pub fn transition(&mut self, next: RunStatus, now: Millis) -> Result<(), String> {
        if !self.status.may_become(next) {
            return Err(format!("a run that is {} cannot become {}", self.status.as_str(), next.as_str()));
        }
        self.status = next;
        self.updated_at = now;
        if next.is_terminal() {
            self.ended_at = Some(now);
        }
        Ok(())
    }

    /// Ends the run with a reason the server gives (a backend failure, a lost runner).
    pub fn end(&mut self, status: RunStatus, reason: impl Into<String>, now: Millis) -> Result<(), String> {
        self.transition(status, now)?;
        self.reason = Some(reason.into());
        Ok(())
    }
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunLog {
    pub seq: i64,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub at: Millis,
    /// `stdout`, `stderr`, `portolan` (the server's own notes) or `backend`.
    pub stream: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunStatus as S;

    #[test]
    fn terminal_statuses_are_final_and_approval_gates_the_queue() {
        for from in S::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(S::ALL.iter().all(|next| !from.may_become(*next)), "{from:?} must be final");
        }
        assert!(S::WaitingForApproval.may_become(S::Queued));
        assert!(!S::WaitingForApproval.may_become(S::InProgress));
        assert!(!S::WaitingForApproval.may_become(S::Success));
        assert!(S::Queued.may_become(S::InProgress));
        assert!(S::Queued.may_become(S::Failure));
        assert!(S::InProgress.may_become(S::Queued), "a lost runner's run is queued again");
        assert!(!S::InProgress.may_become(S::Declined));
        assert!(S::InProgress.may_become(S::TimedOut));
        assert_eq!(S::parse("TIMED_OUT"), Some(S::TimedOut));
        assert_eq!(S::parse("DONE"), None);
    }
}
