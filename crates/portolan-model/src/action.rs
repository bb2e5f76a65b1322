//! Actions: self-service operations and automations, shaped like Port's actions. An action has a
//! trigger (a person filling its form, or an event) and an invocation method (the backend), which
//! are independent of each other.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::blueprint::{Format, PropertySchema, PropertyType};
use crate::error::{FieldErrors, pointer_token};
use crate::guardrail::{ApprovalRule, Guardrails, RequiredApproval};
use crate::ident::check_schema_identifier;
use crate::query::{QueryContext, Scope};
use crate::{Blueprint, system, template};

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
}

impl EventKind {
    fn is_entity_event(self) -> bool {
        !matches!(self, Self::RunCreated | Self::RunUpdated)
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
    #[serde(default)]
    pub required: Vec<String>,
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
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<Value>>,
    /// A literal, or `{"jqQuery": "..."}` over `{entity, user, trigger}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
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
    #[schema(value_type = Option<Object>)]
    pub visible: Option<Value>,
}

/// The backend that does an action's work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum InvocationMethod {
    #[serde(rename = "WEBHOOK")]
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
        /// The stored secret (`whsec_...`) that signs each delivery.
        signing_secret: String,
        #[serde(default = "default_webhook_timeout")]
        timeout_seconds: u32,
        #[serde(default = "default_webhook_attempts")]
        max_attempts: u32,
    },
    #[serde(rename = "RUNNER")]
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
    #[serde(rename = "NATS")]
    Nats {
        subject: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        payload: Option<Value>,
    },
    #[serde(rename = "UPSERT_ENTITY")]
    UpsertEntity {
        blueprint_identifier: String,
        /// The entity to write: `identifier`, `title`, `icon`, `team`, `properties`, `relations`.
        #[schema(value_type = Object)]
        mapping: Value,
        /// Merge into an existing entity (the default) instead of replacing it.
        #[serde(default = "yes")]
        merge: bool,
    },
    #[serde(rename = "DELETE_ENTITY")]
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
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "WEBHOOK",
            Self::Runner => "RUNNER",
            Self::Nats => "NATS",
            Self::UpsertEntity => "UPSERT_ENTITY",
            Self::DeleteEntity => "DELETE_ENTITY",
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
const WEBHOOK_METHODS: [&str; 5] = ["POST", "PUT", "PATCH", "DELETE", "GET"];

impl Action {
    pub fn from_json(value: Value) -> Result<Self, FieldErrors> {
        if value.pointer("/invocationMethod/type").and_then(Value::as_str) == Some("RUNNER")
            && value.pointer("/invocationMethod/command").is_some()
        {
            let mut errors = FieldErrors::default();
            errors.push(
                "/invocationMethod/command",
                "a runner runs only the tasks its operator configured: name one with 'task' instead of a command",
            );
            return Err(errors);
        }
        crate::error::from_json(value)
    }

    /// An action as stored. Actions stored before runners took task names carry a `command`:
    /// anyone who managed the blueprint could have written it, so it names no task until an admin
    /// chooses one, and its runs fail saying so.
    pub fn from_stored(text: &str) -> Result<Self, serde_json::Error> {
        let mut value: Value = serde_json::from_str(text)?;
        if let Some(method) = value.get_mut("invocationMethod").and_then(Value::as_object_mut)
            && method.get("type").and_then(Value::as_str) == Some("RUNNER")
            && method.remove("command").is_some()
        {
            method.entry("task").or_insert(Value::String(String::new()));
        }
        serde_json::from_value(value)
    }

    /// What a runner needs of this action: its labels and task, when it runs on runners.
    pub fn runner_wiring(&self) -> Option<(&[String], &str)> {
        match &self.invocation_method {
            InvocationMethod::Runner { labels, task, .. } => Some((labels.as_slice(), task.as_str())),
            _ => None,
        }
    }

    pub fn backend(&self) -> BackendKind {
        match &self.invocation_method {
            InvocationMethod::Webhook { .. } => BackendKind::Webhook,
            InvocationMethod::Runner { .. } => BackendKind::Runner,
            InvocationMethod::Nats { .. } => BackendKind::Nats,
            InvocationMethod::UpsertEntity { .. } => BackendKind::UpsertEntity,
            InvocationMethod::DeleteEntity { .. } => BackendKind::DeleteEntity,
        }
    }

    /// The blueprint the action is bound to (its trigger's, or for automations, its event's).
    pub fn blueprint(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::SelfService { blueprint_identifier, .. } => blueprint_identifier.as_deref(),
            Trigger::Automation { event, .. } => event.blueprint_identifier.as_deref(),
        }
    }

    /// The approval a run of this action needs, if any.
    pub fn approval(&self) -> Option<ApprovalRule> {
        self.guardrails
            .approval
            .clone()
            .or_else(|| self.required_approval.as_ref().and_then(ApprovalRule::from_required))
    }

    /// The blueprint a built-in backend (`UPSERT_ENTITY`, `DELETE_ENTITY`) writes, if any.
    pub fn written_blueprint(&self) -> Option<&str> {
        match &self.invocation_method {
            InvocationMethod::UpsertEntity { blueprint_identifier, .. }
            | InvocationMethod::DeleteEntity { blueprint_identifier, .. } => Some(blueprint_identifier),
            _ => None,
        }
    }

    pub fn operation(&self) -> Option<Operation> {
        match &self.trigger {
            Trigger::SelfService { operation, .. } => Some(*operation),
            Trigger::Automation { .. } => None,
        }
    }

    pub fn inputs(&self) -> Option<&UserInputs> {
        match &self.trigger {
            Trigger::SelfService { user_inputs, .. } => Some(user_inputs),
            Trigger::Automation { .. } => None,
        }
    }

    pub fn title_or_identifier(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.identifier)
    }

    /// The templates of the invocation method, as one document.
    fn templates(&self) -> Value {
        use serde_json::json;
        match &self.invocation_method {
            InvocationMethod::Webhook { url, headers, body, .. } => {
                json!({"url": url, "headers": headers, "body": body})
            }
            InvocationMethod::Runner { payload, .. } => json!({"payload": payload}),
            InvocationMethod::Nats { subject, payload } => json!({"subject": subject, "payload": payload}),
            InvocationMethod::UpsertEntity { mapping, .. } => json!({"entity": mapping}),
            InvocationMethod::DeleteEntity { mapping, .. } => json!({"entity": mapping}),
        }
    }

    /// What renders the invocation (`url`, `headers`, `body`, `payload`, `subject` or `entity`, as
    /// the backend needs) from `{inputs, entity, action, run, trigger, secrets}`.
    pub fn renderer(&self) -> Result<template::Renderer, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut renderer = template::Renderer::default();
        for (key, template) in self.templates().as_object().into_iter().flatten() {
            let default = match (key.as_str(), template) {
                ("body" | "payload", Value::Null) => Some(default_payload()),
                ("entity", Value::Null) => Some(serde_json::json!({"identifier": "{{ .entity.identifier }}"})),
                _ => None,
            };
            let target = match key.as_str() {
                "url" => template::Target::Url,
                "subject" => template::Target::NatsSubject,
                _ => template::Target::Json,
            };
            let pointer = format!("/invocationMethod/{}", self.template_field(key));
            renderer.add(key, default.as_ref().unwrap_or(template), target, &pointer, &mut errors);
        }
        errors.into_result(renderer)
    }

    /// Where a rendered part sits in the action document.
    fn template_field<'a>(&self, key: &'a str) -> &'a str {
        if key == "entity" { "mapping" } else { key }
    }

    /// The secrets the templates read.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names = template::secret_names(&self.templates());
        if let InvocationMethod::Webhook { signing_secret, .. } = &self.invocation_method {
            names.push(signing_secret.clone());
        }
        names.sort();
        names.dedup();
        names
    }

    /// Checks the whole definition: identifiers, the form, the trigger's blueprint and condition,
    /// every template and jq expression, and the backend's settings.
    pub fn validate(&self, blueprints: &[Blueprint]) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Err(msg) = check_schema_identifier(&self.identifier) {
            errors.push("/identifier", msg);
        }
        let exists = |id: &str| blueprints.iter().any(|b| b.identifier == id);
        match &self.trigger {
            Trigger::SelfService { operation, blueprint_identifier, user_inputs, condition } => {
                match blueprint_identifier {
                    Some(id) if !exists(id) => {
                        errors.push("/trigger/blueprintIdentifier", format!("blueprint '{id}' does not exist"))
                    }
                    None if *operation != Operation::Create => errors.push(
                        "/trigger/blueprintIdentifier",
                        "DAY-2 and DELETE actions act on entities of a blueprint; name it",
                    ),
                    _ => {}
                }
                if let Some(condition) = condition {
                    match blueprint_identifier.as_deref().filter(|id| exists(id)) {
                        Some(id) => check_query(condition, blueprints, id, "/trigger/condition", &mut errors),
                        None => errors.push("/trigger/condition", "a condition needs the action's blueprint"),
                    }
                }
                user_inputs.validate_definition(blueprints, &mut errors);
            }
            Trigger::Automation { event, condition } => {
                match (&event.blueprint_identifier, event.kind.is_entity_event()) {
                    (Some(id), true) if !exists(id) => {
                        errors.push("/trigger/event/blueprintIdentifier", format!("blueprint '{id}' does not exist"))
                    }
                    (None, true) => {
                        errors.push("/trigger/event/blueprintIdentifier", "entity and timer events need a blueprint")
                    }
                    _ => {}
                }
                if event.kind == EventKind::TimerPropertyExpired
                    && let (Some(bp), Some(property)) = (&event.blueprint_identifier, &event.property_identifier)
                    && let Some(blueprint) = blueprints.iter().find(|b| &b.identifier == bp)
                    && !blueprint.timer_properties().any(|t| t == property)
                {
                    errors.push(
                        "/trigger/event/propertyIdentifier",
                        format!("'{property}' is not a timer property of '{bp}'"),
                    );
                }
                if let Some(condition) = condition {
                    if condition.expressions.is_empty() {
                        errors.push("/trigger/condition/expressions", "list at least one expression");
                    }
                    for (i, expression) in condition.expressions.iter().enumerate() {
                        if let Err(msg) = crate::jq::check(expression) {
                            errors.push(format!("/trigger/condition/expressions/{i}"), msg);
                        }
                    }
                }
            }
        }
        self.validate_invocation(blueprints, &mut errors);
        if let Err(more) = self.renderer() {
            errors.0.extend(more.0);
        }
        for (key, template) in self.templates().as_object().into_iter().flatten() {
            template::check(template, &format!("/invocationMethod/{}", self.template_field(key)), &mut errors);
        }
        self.guardrails.check(&mut errors);
        if self.guardrails.approval.is_some() && self.required_approval.is_some() {
            errors.push("/requiredApproval", "give requiredApproval or guardrails.approval, not both");
        }
        if let (Some(id), false) = (self.blueprint(), self.guardrails.preconditions.is_empty())
            && exists(id)
        {
            for (i, p) in self.guardrails.preconditions.iter().enumerate() {
                check_query(&p.query, blueprints, id, &format!("/guardrails/preconditions/{i}/query"), &mut errors);
            }
        }
        let acts_on_entities = matches!(self.operation(), Some(Operation::Day2 | Operation::Delete));
        if !acts_on_entities && (!self.guardrails.preconditions.is_empty() || !self.guardrails.bounds.is_empty()) {
            errors.push(
                "/guardrails",
                "preconditions and bounds apply to DAY-2 and DELETE actions (they read the entity)",
            );
        }
        if self.approval().is_some() && matches!(self.trigger, Trigger::Automation { .. }) {
            errors.push("/guardrails/approval", "automations run without a person to approve them");
        }
        errors.into_result(())
    }

    fn validate_invocation(&self, blueprints: &[Blueprint], errors: &mut FieldErrors) {
        let exists = |id: &str| blueprints.iter().any(|b| b.identifier == id);
        match &self.invocation_method {
            InvocationMethod::Webhook { url, method, timeout_seconds, max_attempts, signing_secret, .. } => {
                if !url.contains("{{") {
                    match url::Url::parse(url) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                        _ => errors.push("/invocationMethod/url", "must be an http or https URL"),
                    }
                }
                if !WEBHOOK_METHODS.contains(&method.as_str()) {
                    errors.push("/invocationMethod/method", format!("must be one of {}", WEBHOOK_METHODS.join(", ")));
                }
                if !(1..=300).contains(timeout_seconds) {
                    errors.push("/invocationMethod/timeoutSeconds", "must be between 1 and 300");
                }
                if !(1..=20).contains(max_attempts) {
                    errors.push("/invocationMethod/maxAttempts", "must be between 1 and 20");
                }
                if let Err(msg) = check_secret_name(signing_secret) {
                    errors.push("/invocationMethod/signingSecret", msg);
                }
            }
            InvocationMethod::Runner { labels, task, max_attempts, .. } => {
                if labels.is_empty() || labels.iter().any(|l| l.trim().is_empty() || l.contains(',')) {
                    errors.push("/invocationMethod/labels", "list at least one label; labels hold no commas");
                }
                if let Err(msg) = check_task_name(task) {
                    errors.push("/invocationMethod/task", msg);
                }
                if !(1..=10).contains(max_attempts) {
                    errors.push("/invocationMethod/maxAttempts", "must be between 1 and 10");
                }
            }
            InvocationMethod::Nats { subject, .. } => {
                if subject.trim().is_empty() || (!subject.contains("{{") && subject.contains([' ', '*', '>'])) {
                    errors.push("/invocationMethod/subject", "must be a NATS subject without spaces or wildcards");
                } else if template::is_nats_system_subject(subject) {
                    errors
                        .push("/invocationMethod/subject", "'$...' and '_INBOX...' subjects are the NATS server's own");
                }
            }
            InvocationMethod::UpsertEntity { blueprint_identifier, mapping, .. } => {
                if !exists(blueprint_identifier) {
                    errors.push(
                        "/invocationMethod/blueprintIdentifier",
                        format!("blueprint '{blueprint_identifier}' does not exist"),
                    );
                }
                if !mapping.is_object() {
                    errors.push("/invocationMethod/mapping", "must be an object describing the entity");
                }
            }
            InvocationMethod::DeleteEntity { blueprint_identifier, mapping } => {
                if !exists(blueprint_identifier) {
                    errors.push(
                        "/invocationMethod/blueprintIdentifier",
                        format!("blueprint '{blueprint_identifier}' does not exist"),
                    );
                }
                if mapping.as_ref().is_some_and(|m| m.get("identifier").is_none()) {
                    errors.push("/invocationMethod/mapping", "must give the identifier to delete");
                }
            }
        }
    }
}

/// Secret names: letters, digits, `_` and `-`, up to 100 characters.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok { Ok(()) } else { Err(format!("{name:?} is not a secret name (letters, digits, '_' and '-')")) }
}

/// Task names are what a runner's configuration maps to programs.
pub fn check_task_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if ok { Ok(()) } else { Err(format!("{name:?} is not a task name (letters, digits, '_', '-' and '.')")) }
}

fn check_query(query: &Value, blueprints: &[Blueprint], blueprint: &str, path: &str, errors: &mut FieldErrors) {
    let scope = Scope::new(blueprints, Some(blueprint));
    if let Err(found) = crate::query::parse(query, &scope, &QueryContext::default()) {
        for e in found.0 {
            errors.push(format!("{path}{}", e.path), e.message);
        }
    }
}

/// `{"jqQuery": "..."}`: the expression, if `value` is one.
pub fn jq_query(value: &Value) -> Option<&str> {
    value.as_object().filter(|m| m.len() == 1).and_then(|m| m.get("jqQuery")).and_then(Value::as_str)
}

/// An entity (or user or team) picker's value to check against the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct PickedEntities {
    /// JSON pointer of the input.
    pub path: String,
    pub blueprint: String,
    pub identifiers: Vec<String>,
    /// The query the picked entities must satisfy.
    pub dataset: Option<Value>,
}

/// A submission that matches its form; pickers still need checking against the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidInputs {
    pub values: Map<String, Value>,
    pub pickers: Vec<PickedEntities>,
}

impl UserInputs {
    /// Inputs whose default or visibility is a jq expression, as one program yielding
    /// `{defaults: {name: value}, visible: {name: bool}}` over `{form, entity, user, trigger}`.
    pub fn dynamic_program(&self) -> Option<String> {
        let mut defaults = Vec::new();
        let mut visible = Vec::new();
        for (name, input) in &self.properties {
            let key = Value::from(name.as_str());
            if let Some(code) = input.default.as_ref().and_then(jq_query) {
                defaults.push(format!("{key}: ([{code}] | .[0])"));
            }
            if let Some(code) = input.visible.as_ref().and_then(jq_query) {
                visible.push(format!("{key}: (([{code}] | .[0]) == true)"));
            }
        }
        (!defaults.is_empty() || !visible.is_empty())
            .then(|| format!("{{defaults: {{{}}}, visible: {{{}}}}}", defaults.join(", "), visible.join(", ")))
    }

    fn validate_definition(&self, blueprints: &[Blueprint], errors: &mut FieldErrors) {
        let base = "/trigger/userInputs";
        for (name, input) in &self.properties {
            let path = format!("{base}/properties/{}", pointer_token(name));
            if let Err(msg) = check_schema_identifier(name) {
                errors.push(&path, msg);
            }
            input.validate_definition(&path, true, blueprints, errors);
            for (i, other) in input.depends_on.iter().enumerate() {
                if !self.properties.contains_key(other) || other == name {
                    errors.push(format!("{path}/dependsOn/{i}"), format!("'{other}' is not another input"));
                }
            }
            for (key, value) in [("default", &input.default), ("visible", &input.visible)] {
                match value.as_ref().map(|v| (v, jq_query(v))) {
                    Some((_, Some(code))) => {
                        if let Err(msg) = crate::jq::check(code) {
                            errors.push(format!("{path}/{key}/jqQuery"), msg);
                        }
                    }
                    Some((Value::Bool(_), None)) if key == "visible" => {}
                    Some(_) if key == "visible" => {
                        errors.push(format!("{path}/visible"), "must be true, false or {\"jqQuery\": ...}")
                    }
                    Some((literal, None)) => {
                        let mut found = FieldErrors::default();
                        input.value_schema().validate_value(literal, &format!("{path}/default"), &mut found);
                        errors.0.extend(found.0);
                    }
                    None => {}
                }
            }
        }
        let listed = [("required", &self.required), ("order", &self.order)];
        for (key, names) in listed {
            for (i, name) in names.iter().enumerate() {
                if !self.properties.contains_key(name) {
                    errors.push(format!("{base}/{key}/{i}"), format!("'{name}' is not an input"));
                }
            }
        }
        for (s, step) in self.steps.iter().enumerate() {
            for (i, name) in step.order.iter().enumerate() {
                if !self.properties.contains_key(name) {
                    errors.push(format!("{base}/steps/{s}/order/{i}"), format!("'{name}' is not an input"));
                }
            }
        }
    }

    /// Validates a submission: unknown inputs, required ones, types, formats, bounds. `defaults`
    /// and `visible` are the values of the jq defaults and visibility conditions; hidden inputs
    /// are dropped.
    pub fn validate(
        &self,
        submitted: &Map<String, Value>,
        defaults: &Map<String, Value>,
        visible: &Map<String, Value>,
    ) -> Result<ValidInputs, FieldErrors> {
        let mut errors = FieldErrors::default();
        for name in submitted.keys() {
            if !self.properties.contains_key(name) {
                errors.push(format!("/properties/{}", pointer_token(name)), "is not an input of this action");
            }
        }
        let mut values = Map::new();
        let mut pickers = Vec::new();
        for (name, input) in &self.properties {
            let path = format!("/properties/{}", pointer_token(name));
            let shown = match &input.visible {
                Some(Value::Bool(shown)) => *shown,
                Some(_) => visible.get(name).and_then(Value::as_bool).unwrap_or(false),
                None => true,
            };
            if !shown {
                continue;
            }
            let given = submitted.get(name).filter(|v| !v.is_null());
            let value = match given {
                Some(value) => value.clone(),
                None => match &input.default {
                    Some(default) if jq_query(default).is_some() => match defaults.get(name) {
                        Some(Value::Null) | None => Value::Null,
                        Some(value) => value.clone(),
                    },
                    Some(literal) => literal.clone(),
                    None => Value::Null,
                },
            };
            if value.is_null() {
                if self.required.contains(name) {
                    errors.push(&path, "is required");
                }
                continue;
            }
            let before = errors.0.len();
            let schema = input.value_schema();
            let value = schema.normalize(value);
            schema.validate_value(&value, &path, &mut errors);
            if errors.0.len() == before
                && let Some(picked) = input.picked(&value, &path)
            {
                pickers.push(picked);
            }
            values.insert(name.clone(), value);
        }
        errors.into_result(ValidInputs { values, pickers })
    }
}

impl UserInput {
    fn validate_definition(&self, path: &str, top_level: bool, blueprints: &[Blueprint], errors: &mut FieldErrors) {
        let mut found = FieldErrors::default();
        let mut schema = self.value_schema();
        schema.default = None;
        crate::blueprint::check_property_definition(&schema, path, top_level, &mut found);
        errors.0.extend(found.0);
        if self.format.is_some() && self.kind != PropertyType::String {
            errors.push(format!("{path}/format"), "formats apply to string inputs (use items for lists)");
        }
        let is_entity = self.format == Some(InputFormat::Entity);
        match (&self.blueprint, is_entity) {
            (Some(id), true) if !blueprints.iter().any(|b| &b.identifier == id) => {
                errors.push(format!("{path}/blueprint"), format!("blueprint '{id}' does not exist"))
            }
            (None, true) => errors.push(format!("{path}/blueprint"), "an entity picker names its blueprint"),
            (Some(_), false) => errors.push(format!("{path}/blueprint"), "only entity pickers name a blueprint"),
            _ => {}
        }
        match (&self.dataset, &self.blueprint) {
            (Some(dataset), Some(bp)) if is_entity && blueprints.iter().any(|b| &b.identifier == bp) => {
                check_query(dataset, blueprints, bp, &format!("{path}/dataset"), errors)
            }
            (Some(_), _) if !is_entity => errors.push(format!("{path}/dataset"), "only entity pickers take a dataset"),
            _ => {}
        }
        if let Some(items) = &self.items {
            items.validate_definition(&format!("{path}/items"), false, blueprints, errors);
        }
    }

    /// The property schema a value of this input must satisfy.
    fn value_schema(&self) -> PropertySchema {
        let format = self.format.and_then(|f| match f {
            InputFormat::DateTime => Some(Format::DateTime),
            InputFormat::Url => Some(Format::Url),
            InputFormat::Email | InputFormat::User => Some(Format::Email),
            InputFormat::Ipv4 => Some(Format::Ipv4),
            InputFormat::Ipv6 => Some(Format::Ipv6),
            InputFormat::Markdown => Some(Format::Markdown),
            InputFormat::Yaml => Some(Format::Yaml),
            InputFormat::MultiLine | InputFormat::Entity | InputFormat::Team => None,
        });
        PropertySchema {
            kind: self.kind,
            title: None,
            description: None,
            icon: None,
            format,
            enum_values: self.enum_values.clone(),
            enum_colors: None,
            default: self.default.clone().filter(|d| jq_query(d).is_none()),
            minimum: self.minimum,
            maximum: self.maximum,
            min_length: self.min_length,
            max_length: self.max_length,
            pattern: self.pattern.clone(),
            items: self.items.as_ref().map(|i| Box::new(i.value_schema())),
            min_items: self.min_items,
            max_items: self.max_items,
            spec: None,
        }
    }

    /// The catalog entries a picker's (well-typed) value names.
    fn picked(&self, value: &Value, path: &str) -> Option<PickedEntities> {
        let (picker, identifiers) = match (value, &self.items) {
            (Value::Array(items), Some(item)) => {
                (item.as_ref(), items.iter().filter_map(Value::as_str).map(str::to_string).collect())
            }
            (Value::String(s), _) => (self, vec![s.clone()]),
            _ => return None,
        };
        let blueprint = match picker.format? {
            InputFormat::Entity => picker.blueprint.clone()?,
            InputFormat::User => system::USER.to_string(),
            InputFormat::Team => system::TEAM.to_string(),
            _ => return None,
        };
        Some(PickedEntities { path: path.to_string(), blueprint, identifiers, dataset: picker.dataset.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let errors =
            inputs.validate(submitted.as_object().expect("object"), &Map::new(), &Map::new()).expect_err("bad");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/properties/extra", "/properties/replicas", "/properties/owner"]);

        let submitted = json!({"replicas": 7, "owner": "ann@example.com", "depends": ["a", "b"], "secret": "x"});
        let visible = json!({"when": true});
        let defaults = json!({"when": "soon"});
        let valid = inputs
            .validate(
                submitted.as_object().expect("object"),
                defaults.as_object().expect("object"),
                visible.as_object().expect("object"),
            )
            .expect("valid");
        assert_eq!(
            Value::Object(valid.values),
            json!({"replicas": 7, "reason": "routine", "owner": "ann@example.com", "depends": ["a", "b"], "when": "soon"})
        );
        assert_eq!(valid.pickers.len(), 2);
        assert_eq!(valid.pickers[0].blueprint, "_user");
        assert_eq!(valid.pickers[1].identifiers, ["a", "b"]);
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
