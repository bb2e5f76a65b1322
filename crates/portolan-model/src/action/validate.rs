//! Checking an action's definition against the catalog's blueprints.

use crate::error::FieldErrors;
use crate::guardrail::ApprovalRule;
use crate::ident::check_schema_identifier;
use crate::query::{QueryContext, Scope};
use crate::{Blueprint, template};
use serde_json::Value;

use super::*;

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
            InvocationMethod::Github { .. } => BackendKind::Github,
            InvocationMethod::Gitlab { .. } => BackendKind::Gitlab,
        }
    }

    /// The blueprint the action is bound to (its trigger's, or for automations, its event's).
    pub fn blueprint(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::SelfService { blueprint_identifier, .. } => blueprint_identifier.as_deref(),
            Trigger::Automation { event, .. } => event.blueprint_identifier.as_deref(),
        }
    }

    /// Whether it is a person's DAY-2 action on `blueprint` that writes `property` of the entity
    /// it acts on (an `UPSERT_ENTITY` whose mapping sets it): what extends a TTL, say.
    pub fn updates_property(&self, blueprint: &str, property: &str) -> bool {
        let on = matches!(&self.trigger, Trigger::SelfService { operation: Operation::Day2, blueprint_identifier: Some(b), .. } if b == blueprint);
        let sets = matches!(&self.invocation_method, InvocationMethod::UpsertEntity { blueprint_identifier, mapping, .. }
            if blueprint_identifier == blueprint && mapping.pointer(&format!("/properties/{property}")).is_some());
        on && sets
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
            InvocationMethod::Github { org, repo, workflow, workflow_inputs, git_ref, .. } => {
                json!({"org": org, "repo": repo, "workflow": workflow, "inputs": workflow_inputs, "ref": git_ref})
            }
            InvocationMethod::Gitlab { group_name, project_name, default_ref, pipeline_variables, .. } => json!({
                "groupName": group_name, "projectName": project_name, "defaultRef": default_ref,
                "pipelineVariables": pipeline_variables
            }),
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
        match key {
            "entity" => "mapping",
            "inputs" => "workflowInputs",
            key => key,
        }
    }

    /// The secrets the templates read.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names = template::secret_names(&self.templates());
        match &self.invocation_method {
            InvocationMethod::Webhook { signing_secret: Some(name), .. }
            | InvocationMethod::Gitlab { trigger_token_secret: Some(name), .. } => names.push(name.clone()),
            _ => {}
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
        if self.publish == Some(false) {
            errors.push(
                "/publish",
                "every saved action is published in Portolan: leave `publish` out, or do not save it",
            );
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
                if let Some(Err(msg)) = signing_secret.as_deref().map(check_secret_name) {
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
            InvocationMethod::Github { org, repo, workflow, workflow_inputs, .. } => {
                for (field, value) in [("org", org), ("repo", repo), ("workflow", workflow)] {
                    if value.trim().is_empty() || (!value.contains("{{") && value.contains(['/', ' '])) {
                        errors.push(format!("/invocationMethod/{field}"), "a GitHub name, without '/' or spaces");
                    }
                }
                match workflow_inputs {
                    None => {}
                    Some(Value::Object(inputs)) if inputs.len() > GITHUB_MAX_INPUTS => errors.push(
                        "/invocationMethod/workflowInputs",
                        format!("GitHub takes at most {GITHUB_MAX_INPUTS} workflow inputs; this has {}", inputs.len()),
                    ),
                    Some(Value::Object(_)) => {}
                    Some(_) => errors.push("/invocationMethod/workflowInputs", "an object of input names to values"),
                }
            }
            InvocationMethod::Gitlab { group_name, project_name, pipeline_variables, trigger_token_secret, .. } => {
                for (field, value) in [("groupName", group_name), ("projectName", project_name)] {
                    if value.trim().is_empty() {
                        errors.push(format!("/invocationMethod/{field}"), "the GitLab group or project path");
                    }
                }
                if pipeline_variables.as_ref().is_some_and(|v| !v.is_object()) {
                    errors.push("/invocationMethod/pipelineVariables", "an object of variable names to values");
                }
                if let Some(Err(msg)) = trigger_token_secret.as_deref().map(check_secret_name) {
                    errors.push("/invocationMethod/triggerTokenSecret", msg);
                }
            }
        }
    }
}

/// The most inputs a GitHub workflow dispatch takes.
pub const GITHUB_MAX_INPUTS: usize = 25;

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

pub(super) fn check_query(
    query: &Value,
    blueprints: &[Blueprint],
    blueprint: &str,
    path: &str,
    errors: &mut FieldErrors,
) {
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
