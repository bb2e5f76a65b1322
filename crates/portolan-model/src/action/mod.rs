//! Actions: self-service operations and automations, shaped like Port's actions. An action has a
//! trigger (a person filling its form, or an event) and an invocation method (the backend), which
//! are independent of each other.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blueprint::PropertyType;
use crate::guardrail::{Guardrails, RequiredApproval};

mod inputs;
mod validate;
pub use inputs::*;
pub use validate::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Where the self-service hub files it ("Microservices SDLC", "Cloud resources", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub trigger: Trigger,
    pub invocation_method: InvocationMethod,
    #[serde(default, skip_serializing_if = "Guardrails::is_empty")]
    pub guardrails: Guardrails,
    /// Port's shorthand for `guardrails.approval` with the `approve` grant's holders as approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_approval: Option<RequiredApproval>,
    /// Port's `publish`: every saved action is published, so `false` is refused, saying so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Trigger {
    #[serde(rename = "self-service", rename_all = "camelCase")]
    SelfService {
        operation: Operation,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blueprint_identifier: Option<String>,
        #[serde(default)]
        user_inputs: UserInputs,
        /// A query the entity must satisfy for a DAY-2 or DELETE run on it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        condition: Option<Value>,
    },
    #[serde(rename = "automation", rename_all = "camelCase")]
    Automation {
        event: AutomationEvent,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        condition: Option<JqCondition>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Operation {
    #[serde(rename = "CREATE")]
    Create,
    #[serde(rename = "DAY-2")]
    Day2,
    #[serde(rename = "DELETE")]
    Delete,
}

/// The event an automation listens for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutomationEvent {
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// For entity and timer events: the blueprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint_identifier: Option<String>,
    /// For `TIMER_PROPERTY_EXPIRED`: the timer property (any timer of the blueprint when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_identifier: Option<String>,
    /// For run events: the action whose runs are watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_identifier: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    EntityCreated,
    EntityUpdated,
    EntityDeleted,
    TimerPropertyExpired,
    RunCreated,
    RunUpdated,
    /// An entity created, updated or deleted (Port's `ANY_ENTITY_CHANGE`).
    AnyEntityChange,
    /// A run created or its status changed (Port's `ANY_RUN_CHANGE`).
    AnyRunChange,
}

impl EventKind {
    fn is_entity_event(self) -> bool {
        !matches!(self, Self::RunCreated | Self::RunUpdated | Self::AnyRunChange)
    }

    /// Whether an automation listening for this kind hears an event that `happened`.
    pub fn covers(self, happened: EventKind) -> bool {
        self == happened
            || match self {
                Self::AnyEntityChange => {
                    matches!(happened, Self::EntityCreated | Self::EntityUpdated | Self::EntityDeleted)
                }
                Self::AnyRunChange => matches!(happened, Self::RunCreated | Self::RunUpdated),
                _ => false,
            }
    }
}

/// jq expressions over the event (`.diff.before`, `.diff.after`, `.trigger`), combined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JqCondition {
    #[serde(rename = "type")]
    pub kind: JqConditionKind,
    pub expressions: Vec<String>,
    #[serde(default)]
    pub combinator: Combinator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum JqConditionKind {
    #[serde(rename = "JQ")]
    Jq,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Combinator {
    #[default]
    And,
    Or,
}

impl JqCondition {
    /// One jq program that yields whether the condition holds (an error counts as false).
    pub fn program(&self) -> String {
        let joiner = match self.combinator {
            Combinator::And => " and ",
            Combinator::Or => " or ",
        };
        let parts: Vec<String> = self.expressions.iter().map(|e| format!("(([{e}] | .[0]) // false)")).collect();
        format!("({}) == true", parts.join(joiner))
    }
}

/// The form of a self-service action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserInputs {
    #[serde(default)]
    pub properties: IndexMap<String, UserInput>,
    /// The inputs a person must fill in, or `{"jqQuery": ...}` giving them (or `true` for all)
    /// from the form as it is filled in.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub required: ListOrJq<String>,
    /// The order inputs are shown in (the rest follow in definition order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    /// Pages of a multi-step form, each listing its inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<FormStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FormStep {
    pub title: String,
    pub order: Vec<String>,
    /// `false`, or `{"jqQuery": "..."}` over `{form, entity, user}`: a hidden step's inputs are
    /// hidden too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<Value>,
}

/// A list as written, or `{"jqQuery": "..."}` that computes it from the form as it is filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ListOrJq<T> {
    List(Vec<T>),
    Jq(JqQuery),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JqQuery {
    #[serde(rename = "jqQuery")]
    pub jq_query: String,
}

impl<T> Default for ListOrJq<T> {
    fn default() -> Self {
        ListOrJq::List(Vec::new())
    }
}

impl<T> ListOrJq<T> {
    /// The list as written (empty when it is computed).
    pub fn list(&self) -> &[T] {
        match self {
            ListOrJq::List(items) => items,
            ListOrJq::Jq(_) => &[],
        }
    }

    pub fn jq(&self) -> Option<&str> {
        match self {
            ListOrJq::Jq(q) => Some(&q.jq_query),
            ListOrJq::List(_) => None,
        }
    }
}

/// Input formats: the property formats, plus pickers and presentation hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    DateTime,
    Url,
    Email,
    Ipv4,
    Ipv6,
    Markdown,
    Yaml,
    MultiLine,
    /// An entity picker: the value is the identifier of an entity of `blueprint`.
    Entity,
    /// A user picker: a `_user` identifier.
    User,
    /// A team picker: a `_team` identifier.
    Team,
}

/// One input of a form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserInput {
    #[serde(rename = "type")]
    pub kind: PropertyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<InputFormat>,
    /// For entity pickers: the blueprint picked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    /// For entity pickers: a query the picked entities must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub dataset: Option<Value>,
    /// The choices, or `{"jqQuery": ...}` computing them from the form as it is filled in.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub enum_values: Option<ListOrJq<Value>>,
    /// Display colours of enum values, as in Port; kept, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub enum_colors: Option<serde_json::Map<String, Value>>,
    /// Display titles (and descriptions) of enum values, as in Port; kept, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub titles: Option<serde_json::Map<String, Value>>,
    /// For entity pickers: the order choices are listed in (`{property, order}`), as in Port;
    /// kept, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub sort: Option<Value>,
    /// A literal, or `{"jqQuery": "..."}` over `{entity, user, trigger}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub items: Option<Box<UserInput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_items: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u64>,
    /// Inputs whose values this one's choices depend on (the form refreshes it when they change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// `false`, or `{"jqQuery": "..."}` over `{form, entity, user}`; hidden inputs are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<Value>,
    /// `true`, or `{"jqQuery": "..."}` as for `visible`: the input shows its default and cannot
    /// be changed (a value sent for it is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Value>,
    /// `aes256-gcm`, as in Port: the value is encrypted when the run is requested (AES-256-GCM
    /// under the first 32 bytes of the server's webhook signing key, base64 of IV, ciphertext
    /// and tag) and only the ciphertext is stored and sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Value>,
}

/// The backend that does an action's work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum InvocationMethod {
    #[serde(rename = "WEBHOOK", rename_all = "camelCase")]
    Webhook {
        url: String,
        #[serde(default = "default_method")]
        method: String,
        #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
        headers: IndexMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        body: Option<Value>,
        /// Map the HTTP answer to the run's result; otherwise the backend reports back.
        #[serde(default)]
        synchronized: bool,
        /// The stored secret (`whsec_...`) that signs each delivery; without one, the server's own
        /// webhook signing key signs it (as Port signs every webhook).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signing_secret: Option<String>,
        #[serde(default = "default_webhook_timeout")]
        timeout_seconds: u32,
        #[serde(default = "default_webhook_attempts")]
        max_attempts: u32,
        /// Port's execution agent, which calls webhooks from inside a private network: Portolan
        /// runs there already, so the server calls the URL itself (`webhook_allow_private` lets it
        /// reach private addresses). Kept as written.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<bool>,
    },
    #[serde(rename = "RUNNER", rename_all = "camelCase")]
    Runner {
        /// A runner claims the run only if it has every one of these labels. Only an admin may
        /// choose them: they decide which operators' machines the run reaches.
        labels: Vec<String>,
        /// The name of a task the runner's operator configured (the runner maps it to a program);
        /// the payload arrives as JSON on stdin. An action never names a command line.
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        payload: Option<Value>,
        #[serde(default)]
        on_runner_loss: RunnerLoss,
        #[serde(default = "default_runner_attempts")]
        max_attempts: u32,
    },
    #[serde(rename = "NATS", rename_all = "camelCase")]
    Nats {
        subject: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        payload: Option<Value>,
    },
    #[serde(rename = "UPSERT_ENTITY", rename_all = "camelCase")]
    UpsertEntity {
        blueprint_identifier: String,
        /// The entity to write: `identifier`, `title`, `icon`, `team`, `properties`, `relations`.
        #[schema(value_type = Object)]
        mapping: Value,
        /// Merge into an existing entity (the default) instead of replacing it.
        #[serde(default = "yes")]
        merge: bool,
    },
    /// A GitHub Actions workflow, dispatched through GitHub's API with the credentials of the
    /// `github` integration that reads `org` (a token or a GitHub App installation).
    #[serde(rename = "GITHUB", rename_all = "camelCase")]
    Github {
        org: String,
        repo: String,
        /// The workflow's file name (`deploy.yml`) or id.
        workflow: String,
        /// The workflow's inputs (templates; at most 25, GitHub's limit). A value that is not
        /// text is sent as its JSON, since workflow inputs are text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        workflow_inputs: Option<Value>,
        /// The branch or tag to run on (a template); default the repository's default branch.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        git_ref: Option<String>,
        /// End the run with the workflow run's conclusion (the default, as in Port); otherwise the
        /// workflow reports on the run itself.
        #[serde(default = "yes")]
        report_workflow_status: bool,
        /// Port's older options, kept as written (Portolan sends only `workflowInputs`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        omit_payload: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        omit_user_inputs: Option<bool>,
    },
    /// A GitLab CI pipeline, triggered with a pipeline trigger token (or, without one, the token
    /// of the `gitlab` integration that reads `groupName`) and watched with that integration's.
    #[serde(rename = "GITLAB", rename_all = "camelCase")]
    Gitlab {
        group_name: String,
        project_name: String,
        /// The branch or tag to run on (a template); default `main`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_ref: Option<String>,
        /// CI/CD variables (templates); a value that is not text is sent as its JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        pipeline_variables: Option<Value>,
        /// The stored secret holding the project's pipeline trigger token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger_token_secret: Option<String>,
        /// End the run with the pipeline's status (the default); otherwise the pipeline reports.
        #[serde(default = "yes")]
        report_workflow_status: bool,
        /// Port's options for its GitLab agent, kept as written.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        omit_payload: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        omit_user_inputs: Option<bool>,
    },
    #[serde(rename = "DELETE_ENTITY", rename_all = "camelCase")]
    DeleteEntity {
        blueprint_identifier: String,
        /// `{"identifier": template}`; the run's entity when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        mapping: Option<Value>,
    },
}

/// What happens to a run whose runner stops heartbeating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunnerLoss {
    /// Hand it to another runner, up to `maxAttempts` claims.
    #[default]
    Retry,
    /// End it as failed.
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackendKind {
    Webhook,
    Runner,
    Nats,
    UpsertEntity,
    DeleteEntity,
    Github,
    Gitlab,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "WEBHOOK",
            Self::Runner => "RUNNER",
            Self::Nats => "NATS",
            Self::UpsertEntity => "UPSERT_ENTITY",
            Self::DeleteEntity => "DELETE_ENTITY",
            Self::Github => "GITHUB",
            Self::Gitlab => "GITLAB",
        }
    }
}

fn default_method() -> String {
    "POST".into()
}
fn default_webhook_timeout() -> u32 {
    10
}
fn default_webhook_attempts() -> u32 {
    5
}
fn default_runner_attempts() -> u32 {
    3
}
fn yes() -> bool {
    true
}

/// What a template sees when no payload is configured: everything but the secrets.
/// The payload of a backend whose action gives none: the run's context, without the secrets.
fn default_payload() -> Value {
    serde_json::json!({
        "action": "{{ .action }}",
        "run": {"id": "{{ .run.id }}", "url": "{{ .run.url }}", "token": "{{ .run.token }}"},
        "inputs": "{{ .inputs }}",
        "entity": "{{ .entity }}",
        "trigger": "{{ .trigger }}"
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn any_change_kinds_cover_their_family_only() {
        assert!(EventKind::AnyEntityChange.covers(EventKind::EntityDeleted));
        assert!(!EventKind::AnyEntityChange.covers(EventKind::RunCreated));
        assert!(EventKind::AnyRunChange.covers(EventKind::RunUpdated));
        assert!(!EventKind::AnyRunChange.covers(EventKind::TimerPropertyExpired));
        assert!(EventKind::EntityCreated.covers(EventKind::EntityCreated));
        assert!(!EventKind::EntityCreated.covers(EventKind::EntityUpdated));
    }
    use crate::{Blueprint, template};

    fn blueprints() -> Vec<Blueprint> {
        let service = Blueprint::from_json(json!({
            "identifier": "service",
            "schema": {"properties": {"replicas": {"type": "number"}, "tier": {"type": "string"}}}
        }))
        .expect("valid");
        let mut all = crate::system::blueprints();
        all.push(service);
        all
    }

    fn action(document: Value) -> Action {
        Action::from_json(document).expect("parses")
    }

    fn day2() -> Action {
        action(json!({
            "identifier": "scale",
            "trigger": {
                "type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
                "condition": {"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": "web"}]},
                "userInputs": {
                    "properties": {
                        "replicas": {"type": "number", "minimum": 1, "maximum": 10},
                        "reason": {"type": "string", "format": "multi-line", "default": "routine"},
                        "owner": {"type": "string", "format": "user"},
                        "depends": {"type": "array", "items": {"type": "string", "format": "entity", "blueprint": "service"}},
                        "secret": {"type": "string", "visible": false},
                        "when": {"type": "string", "visible": {"jqQuery": ".form.replicas > 5"}, "default": {"jqQuery": "\"soon\""}}
                    },
                    "required": ["replicas", "owner"],
                    "order": ["replicas", "reason"]
                }
            },
            "invocationMethod": {"type": "WEBHOOK", "url": "https://ci.example.com/scale/{{ .entity.identifier }}", "signingSecret": "hook", "synchronized": true}
        }))
    }

    #[test]
    fn a_complete_action_validates_and_renders() {
        let a = day2();
        assert_eq!(a.validate(&blueprints()), Ok(()));
        assert_eq!(a.backend(), BackendKind::Webhook);
        assert_eq!(a.secret_names(), ["hook"]);
        let renderer = a.renderer().expect("renders");
        let input = json!({"entity": {"identifier": "cart"}, "inputs": {"replicas": 2}, "action": {},
            "run": {"id": "r_1", "url": "u", "token": "tok-abcdefgh"}, "trigger": {}, "secrets": {"hook": "whsec_x"}});
        let out = template::render_in_process(&renderer, &input).expect("evaluates");
        assert_eq!(out.real["url"], json!("https://ci.example.com/scale/cart"));
        assert_eq!(out.real["body"]["inputs"], json!({"replicas": 2}), "the default body is the run context");
        assert!(out.real["body"].get("secrets").is_none(), "secrets stay out of the default body");
        assert_eq!(out.real["body"]["run"], json!({"id": "r_1", "url": "u", "token": "tok-abcdefgh"}));
        assert_eq!(out.display["body"]["run"]["token"], "********", "the run token is the backend's alone");
    }

    #[test]
    fn actions_may_not_publish_to_the_nats_server_s_own_subjects() {
        for subject in ["$JS.API.STREAM.DELETE.orders", "_INBOX.reply", "deploy.$SYS.x"] {
            let mut a = day2();
            a.invocation_method = InvocationMethod::Nats { subject: subject.into(), payload: None };
            let errors = a.validate(&blueprints()).expect_err("refused");
            assert!(errors.0.iter().any(|e| e.path == "/invocationMethod/subject"), "{subject}: {errors:?}");
        }
    }

    #[test]
    fn url_templates_with_a_placeholder_in_the_scheme_are_refused() {
        let mut a = day2();
        if let InvocationMethod::Webhook { url, .. } = &mut a.invocation_method {
            *url = "http{{ .inputs.s }}://ci.example.com/".into();
        }
        let errors = a.validate(&blueprints()).expect_err("refused");
        assert!(
            errors.0.iter().any(|e| e.path == "/invocationMethod/url" && e.message.contains("scheme")),
            "{errors:?}"
        );
    }

    #[test]
    fn definition_errors_point_at_their_fields() {
        let a = action(json!({
            "identifier": "bad action",
            "trigger": {
                "type": "self-service", "operation": "DELETE",
                "userInputs": {
                    "properties": {
                        "n": {"type": "number", "minimum": 5, "maximum": 1, "default": "x"},
                        "pick": {"type": "string", "format": "entity"},
                        "v": {"type": "string", "visible": {"jqQuery": ".form |"}, "dependsOn": ["nope"]}
                    },
                    "required": ["missing"]
                }
            },
            "invocationMethod": {"type": "RUNNER", "labels": [], "task": "", "payload": {"x": "{{ .inputs. }}"}}
        }));
        let errors = a.validate(&blueprints()).expect_err("invalid");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "/identifier",
            "/trigger/blueprintIdentifier",
            "/trigger/userInputs/properties/n",
            "/trigger/userInputs/properties/n/default",
            "/trigger/userInputs/properties/pick/blueprint",
            "/trigger/userInputs/properties/v/dependsOn/0",
            "/trigger/userInputs/properties/v/visible/jqQuery",
            "/trigger/userInputs/required/0",
            "/invocationMethod/labels",
            "/invocationMethod/task",
            "/invocationMethod/payload/x",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
    }

    #[test]
    fn submissions_are_checked_against_the_form() {
        let a = day2();
        let inputs = a.inputs().expect("self-service");
        let submitted = json!({"replicas": "3", "extra": 1, "secret": "ignored"});
        let errors = inputs.validate(submitted.as_object().expect("object"), &FormState::default()).expect_err("bad");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/properties/extra", "/properties/replicas", "/properties/owner"]);

        let submitted = json!({"replicas": 7, "owner": "ann@example.com", "depends": ["a", "b"], "secret": "x"});
        let state: FormState =
            serde_json::from_value(json!({"visible": {"when": true}, "defaults": {"when": "soon"}})).expect("state");
        let valid = inputs.validate(submitted.as_object().expect("object"), &state).expect("valid");
        assert_eq!(
            Value::Object(valid.values),
            json!({"replicas": 7, "reason": "routine", "owner": "ann@example.com", "depends": ["a", "b"], "when": "soon"})
        );
        assert_eq!(valid.pickers.len(), 2);
        assert_eq!(valid.pickers[0].blueprint, "_user");
        assert_eq!(valid.pickers[1].identifiers, ["a", "b"]);
    }

    #[test]
    fn ports_computed_form_settings_come_from_one_program() {
        let a = action(json!({
            "identifier": "deploy",
            "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "service",
                "userInputs": {
                    "properties": {
                        "language": {"type": "string", "enum": ["go", "python"]},
                        "runtime": {"type": "string", "enum": {"jqQuery": "if .form.language == \"go\" then [\"1.22\", \"1.23\"] else [\"3.12\"] end"}},
                        "region": {"type": "string", "default": "eu", "disabled": {"jqQuery": ".form.language == \"python\""}},
                        "base": {"type": "string", "format": "entity", "blueprint": "service",
                                 "dataset": {"combinator": "and", "rules": [
                                     {"property": "tier", "operator": "=", "value": {"jqQuery": ".form.language"}}]}},
                        "token": {"type": "string", "encryption": "aes256-gcm"},
                        "notes": {"type": "string"}
                    },
                    "required": {"jqQuery": "if .form.language == \"go\" then [\"runtime\", \"notes\"] else [\"runtime\"] end"},
                    "steps": [{"title": "Basics", "order": ["language", "runtime", "region", "base", "token"]},
                              {"title": "More", "order": ["notes"], "visible": {"jqQuery": ".form.language == \"go\""}}]
                }},
            "invocationMethod": {"type": "WEBHOOK", "url": "https://ci.example.com/deploy"}
        }));
        assert_eq!(a.validate(&blueprints()), Ok(()));
        let inputs = a.inputs().expect("self-service");
        let program = inputs.dynamic_program().expect("a program");
        let state_for = |form: Value| -> FormState {
            let out = crate::jq::eval(&program, &json!({"form": form}), 1).expect("evaluates");
            serde_json::from_value(out[0].clone()).expect("a form state")
        };

        let form = json!({"language": "python", "runtime": "3.12", "region": "us", "base": "cart"});
        let state = state_for(form.clone());
        assert!(inputs.disabled("region", &state) && !inputs.shown("notes", &state));
        let valid = inputs.validate(form.as_object().expect("object"), &state).expect("valid");
        assert_eq!(valid.values["region"], "eu", "a disabled input keeps its default");
        assert!(!valid.values.contains_key("notes"), "a hidden step's inputs are dropped");
        assert_eq!(valid.pickers[0].dataset.as_ref().map(|d| d["rules"][0]["value"].clone()), Some(json!("python")));

        let failed = inputs.validate(form.as_object().expect("object"), &FormState::default()).expect_err("no state");
        assert!(failed.0.iter().any(|e| e.path == "/properties/base" && e.message.contains("jq")), "{failed:?}");

        let form = json!({"language": "go", "runtime": "3.12"});
        let errors = inputs.validate(form.as_object().expect("object"), &state_for(form.clone())).expect_err("bad");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/properties/runtime", "/properties/notes"], "{errors:?}");
        assert!(errors.0[0].message.contains("[\"1.22\",\"1.23\"]"), "{errors:?}");

        let mut refused = a.clone();
        if let Trigger::SelfService { user_inputs, .. } = &mut refused.trigger {
            user_inputs.properties["token"].encryption = Some(json!({"algorithm": "client-side", "key": "k"}));
            user_inputs.steps[1].visible = Some(json!("yes"));
        }
        let paths: Vec<String> =
            refused.validate(&blueprints()).expect_err("refused").0.into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["/trigger/userInputs/properties/token/encryption", "/trigger/userInputs/steps/1/visible"]);
    }

    #[test]
    fn automation_conditions_combine_into_one_program() {
        let condition = JqCondition {
            kind: JqConditionKind::Jq,
            expressions: vec![".diff.after.properties.tier == \"web\"".into(), ".diff.before == null".into()],
            combinator: Combinator::And,
        };
        let event = json!({"diff": {"before": null, "after": {"properties": {"tier": "web"}}}});
        assert_eq!(crate::jq::eval(&condition.program(), &event, 1), Ok(vec![json!(true)]));
        let other = json!({"diff": {"before": {}, "after": {"properties": {"tier": "web"}}}});
        assert_eq!(crate::jq::eval(&condition.program(), &other, 1), Ok(vec![json!(false)]));
    }
}
