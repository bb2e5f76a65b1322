//! Approvals: who must approve a run, how their decisions combine, and what an approval binds to.

use crate::Millis;
use crate::error::FieldErrors;
use crate::permission::User;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Port's `requiredApproval`: `true`, or `{"type": "ANY" | "ALL"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum RequiredApproval {
    Flag(bool),
    Mode {
        #[serde(rename = "type")]
        mode: ApprovalMode,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApprovalMode {
    /// One approval from any approver.
    #[default]
    Any,
    /// An approval from every named user, and from a member of every named team and role.
    All,
}

/// Who must approve a run before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRule {
    #[serde(default)]
    pub mode: ApprovalMode,
    /// The approvers; without them (or a policy), whoever holds the action's `approve` grant
    /// (then only `ANY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// A jq expression over `{inputs, entity, requester}` that gives more approvers for a run,
    /// `{"users": [...], "teams": [...], "roles": [...]}` (e.g. the entity's owning teams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// A jq expression over `{inputs, entity, requester}`: the run needs approval only when it
    /// gives `true` (e.g. a size beyond the everyday ones). Without it, every run needs approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// How long a run waits for approval before it ends `DECLINED`.
    #[serde(default = "a_day")]
    pub expires_after_hours: u32,
    /// Where to announce a run waiting for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

/// A webhook told of runs waiting for approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notify {
    pub url: String,
    #[serde(default)]
    pub format: NotifyFormat,
}

impl Notify {
    /// The URL is an http(s) one (whether the server may call it is the server's to say).
    pub fn check(&self, path: &str, errors: &mut FieldErrors) {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            errors.push(format!("{path}/url"), "an http(s) URL");
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// `{"type": "approval.requested", "run": ..., "approvers": ..., "expiresAt": ..., "url": ...}`.
    #[default]
    Json,
    /// A Slack incoming-webhook message: `{"text": ...}`.
    Slack,
}

fn a_day() -> u32 {
    24
}

impl ApprovalRule {
    pub fn from_required(required: &RequiredApproval) -> Option<ApprovalRule> {
        let mode = match required {
            RequiredApproval::Flag(false) => return None,
            RequiredApproval::Flag(true) => ApprovalMode::Any,
            RequiredApproval::Mode { mode } => *mode,
        };
        Some(ApprovalRule {
            mode,
            approvers: None,
            policy: None,
            when: None,
            expires_after_hours: a_day(),
            notify: None,
        })
    }

    pub fn check(&self, path: &str, errors: &mut FieldErrors) {
        if self.mode == ApprovalMode::All
            && self.approvers.as_ref().is_none_or(Approvers::is_empty)
            && self.policy.is_none()
        {
            errors.push(
                format!("{path}/approvers"),
                "ALL needs the approvers listed (users, teams or roles) or a policy",
            );
        }
        if let Some(Err(why)) = self.policy.as_deref().map(crate::jq::check) {
            errors.push(format!("{path}/policy"), why);
        }
        if let Some(notify) = &self.notify {
            notify.check(&format!("{path}/notify"), errors);
        }
        if !(1..=24 * 90).contains(&self.expires_after_hours) {
            errors.push(format!("{path}/expiresAfterHours"), "an approval waits 1 hour to 90 days");
        }
    }
}

/// Users, teams and roles, any of which may approve.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approvers {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    /// `admin` or `member`.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Approvers {
    /// These and `more`, each name once.
    pub fn with(mut self, more: Approvers) -> Approvers {
        for (mine, theirs) in
            [(&mut self.users, more.users), (&mut self.teams, more.teams), (&mut self.roles, more.roles)]
        {
            for name in theirs {
                if !mine.contains(&name) {
                    mine.push(name);
                }
            }
        }
        self
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.teams.is_empty() && self.roles.is_empty()
    }

    /// The slots of this list a user fills: `user:x`, `team:y`, `role:z`.
    fn slots_of(&self, user: &User) -> Vec<String> {
        let mut slots: Vec<String> =
            self.users.iter().filter(|u| **u == user.id).map(|u| format!("user:{u}")).collect();
        slots.extend(self.teams.iter().filter(|t| user.teams.contains(t)).map(|t| format!("team:{t}")));
        slots.extend(self.roles.iter().filter(|r| r.as_str() == user.role.as_str()).map(|r| format!("role:{r}")));
        slots
    }

    fn all_slots(&self) -> Vec<String> {
        let users = self.users.iter().map(|u| format!("user:{u}"));
        let teams = self.teams.iter().map(|t| format!("team:{t}"));
        users.chain(teams).chain(self.roles.iter().map(|r| format!("role:{r}"))).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    Approve,
    Decline,
}

/// One approver's decision on a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalDecision {
    pub by: String,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub at: Millis,
    /// The listed approvers (`user:x`, `team:y`, `role:z`) this decision speaks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fills: Vec<String>,
}

/// What a run waiting for approval carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub mode: ApprovalMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// A hash of the run's inputs and its entity as requested: approvals are of exactly that.
    pub binding: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub expires_at: Millis,
    #[serde(default)]
    pub decisions: Vec<ApprovalDecision>,
}

/// Where a run's approval stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Waiting,
    Approved,
    Declined(String),
}

/// The hash an approval is bound to: the inputs and the entity (as stored, with its version).
pub fn binding(inputs: &serde_json::Map<String, Value>, entity: Option<&Value>) -> String {
    let text = serde_json::json!({"inputs": inputs, "entity": entity}).to_string();
    crate::hex(&Sha256::digest(text.as_bytes()))
}

impl Approval {
    pub fn new(rule: &ApprovalRule, binding: String, now: Millis) -> Self {
        Approval {
            mode: rule.mode,
            approvers: rule.approvers.clone(),
            binding,
            expires_at: now + i64::from(rule.expires_after_hours) * 3_600_000,
            decisions: Vec::new(),
        }
    }

    /// Whether `user` may decide: a listed approver or an admin; without a list, whoever holds
    /// the action's `approve` grant (`holds_grant`).
    pub fn may_decide(&self, user: &User, holds_grant: bool) -> bool {
        match &self.approvers {
            Some(list) => user.is_admin() || !list.slots_of(user).is_empty(),
            None => holds_grant,
        }
    }

    /// Records `user`'s decision and says where the approval stands. Refused, with why: the
    /// requester, someone who is not an approver, a second decision by the same person, a
    /// decision after expiry, or one on inputs or an entity that changed since the request.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        requester: &str,
        user: &User,
        holds_grant: bool,
        decision: Decision,
        comment: Option<String>,
        current_binding: &str,
        now: Millis,
    ) -> Result<Standing, String> {
        if user.id == requester {
            return Err("the requester cannot approve or decline their own run".into());
        }
        if !self.may_decide(user, holds_grant) {
            return Err("you are not an approver of this run".into());
        }
        if self.decisions.iter().any(|d| d.by == user.id) {
            return Err("you have already decided on this run".into());
        }
        if now >= self.expires_at {
            return Err("the approval has expired".into());
        }
        if current_binding != self.binding {
            return Err("the run's inputs or entity changed since it was requested; request it again".into());
        }
        let fills = self.approvers.as_ref().map(|list| list.slots_of(user)).unwrap_or_default();
        self.decisions.push(ApprovalDecision { by: user.id.clone(), decision, comment, at: now, fills });
        Ok(self.standing())
    }

    /// A decline ends it; `ANY` needs one approval; `ALL` needs every listed approver filled.
    pub fn standing(&self) -> Standing {
        if let Some(declined) = self.decisions.iter().find(|d| d.decision == Decision::Decline) {
            let why = declined.comment.clone().map(|c| format!(": {c}")).unwrap_or_default();
            return Standing::Declined(format!("declined by {}{why}", declined.by));
        }
        let approvals = self.decisions.iter().filter(|d| d.decision == Decision::Approve);
        let approved = match (self.mode, &self.approvers) {
            (ApprovalMode::All, Some(list)) => {
                let filled: Vec<&String> = approvals.flat_map(|d| &d.fills).collect();
                list.all_slots().iter().all(|slot| filled.contains(&slot))
            }
            _ => approvals.count() > 0,
        };
        if approved { Standing::Approved } else { Standing::Waiting }
    }
}
