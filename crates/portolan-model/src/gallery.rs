//! Golden paths: ready-made self-service actions, each a bundle of the blueprints it needs, its
//! actions and the entities it starts from. Installing one lays its blueprints over the stored
//! ones (adding what is missing, never changing what is there), wires its actions to the
//! organisation's backend, and goes through catalog as code like any other document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::FieldErrors;
use crate::manifest::Kind;

/// One template of the gallery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    pub identifier: String,
    pub title: String,
    /// The brief's area: `Microservices SDLC`, `Cloud resources`, …
    pub area: String,
    pub description: String,
    /// The systems a real deployment wires it to (GitHub Actions, Terraform, …).
    pub wires_to: Vec<String>,
    /// The guardrails it sets, and why, in words.
    pub guardrails: Vec<String>,
    /// The blueprints its actions need: created, or laid over the stored ones.
    #[schema(value_type = Vec<Object>)]
    pub blueprints: Vec<Value>,
    /// Its actions (the first is the one a person runs; the others are its automations). An
    /// action whose work is done outside names its task as `{"type": "BACKEND", "task": …}`,
    /// which the install turns into the chosen backend.
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Value>,
    /// Entities it needs to work (e.g. the deployments lock), created when missing.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub entities: Vec<Value>,
    /// What `--demo` adds to show it, and the run it tries.
    pub demo: TemplateDemo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateDemo {
    /// Entities the demo's run acts on (created when missing, in the demo only).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub entities: Vec<Value>,
    /// The demo's example run: its entity (for a day-2 or delete action) and inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: Map<String, Value>,
}

/// Where an installed template's actions send their work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "UPPERCASE", deny_unknown_fields)]
pub enum Backend {
    /// A Portolan runner with these labels; each action names its task.
    Runner { labels: Vec<String> },
    /// One webhook for every action of the template; the payload names the task.
    Webhook { url: String },
    /// A GitHub Actions workflow per task (`<task>.yml`) in one repository.
    Github { org: String, repo: String },
    /// A GitLab CI pipeline of one project, told the task in `PORTOLAN_TASK`.
    #[serde(rename_all = "camelCase")]
    Gitlab { group_name: String, project_name: String },
}

/// What differs per organisation when a template is installed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Install {
    pub backend: Backend,
    /// Blueprints to install under another identifier (beside a stored one that conflicts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub renames: BTreeMap<String, String>,
}

/// One object an install writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub kind: Kind,
    pub spec: Value,
    /// Written but not recorded under the installing source: a blueprint it extends (shared
    /// with other templates and the catalog) or an entity it seeds. A later prune leaves it.
    pub implied: bool,
}

/// The objects installing `template` writes: its blueprints as they will be, laid over the stored
/// ones (`stored` gives a stored blueprint's document), its actions wired to the backend, and the
/// entities it needs. A stored blueprint whose property or relation differs from the template's
/// is refused, naming it, unless `renames` installs the template's beside it.
pub fn expand(
    template: &Template,
    install: &Install,
    stored: impl Fn(&str) -> Option<Value>,
) -> Result<Vec<Expanded>, FieldErrors> {
    let mut errors = FieldErrors::default();
    let declared: Vec<&str> = template.blueprints.iter().filter_map(|b| b["identifier"].as_str()).collect();
    for (from, to) in &install.renames {
        if !declared.contains(&from.as_str()) {
            errors.push(
                format!("/spec/renames/{}", crate::error::pointer_token(from)),
                format!("this template has no blueprint '{from}' (it has {})", declared.join(", ")),
            );
        }
        if crate::ident::check_schema_identifier(to).is_err() {
            errors.push(
                format!("/spec/renames/{}", crate::error::pointer_token(from)),
                format!("'{to}' is not a valid blueprint identifier"),
            );
        }
    }
    let renamed = |mut value: Value| {
        rename_blueprints(&mut value, &install.renames);
        value
    };
    let mut out = Vec::new();
    for blueprint in template.blueprints.iter().cloned().map(renamed) {
        let identifier = blueprint["identifier"].as_str().unwrap_or_default().to_string();
        match stored(&identifier) {
            None => out.push(Expanded { kind: Kind::Blueprint, spec: blueprint, implied: true }),
            Some(current) => match lay_over(&current, &blueprint) {
                Ok(spec) => out.push(Expanded { kind: Kind::Blueprint, spec, implied: true }),
                Err(conflicts) => {
                    let original = install.renames.iter().find(|(_, to)| **to == identifier).map(|(from, _)| from);
                    let from = original.unwrap_or(&identifier);
                    for conflict in conflicts {
                        errors.push(
                            "/spec",
                            format!(
                                "blueprint '{identifier}' exists and {conflict}: change it, or install this \
                                 template's beside it with \"renames\": {{\"{from}\": \"<new identifier>\"}}"
                            ),
                        );
                    }
                }
            },
        }
    }
    for action in template.actions.iter().cloned().map(renamed) {
        out.push(Expanded { kind: Kind::Action, spec: wire(action, &install.backend), implied: false });
    }
    for entity in template.entities.iter().cloned().map(renamed) {
        out.push(Expanded { kind: Kind::Entity, spec: entity, implied: true });
    }
    errors.into_result(out)
}

/// The stored blueprint with what `wanted` adds (properties, relations); what they both have
/// must agree: the same type and format, a relation to the same blueprint, and the stored
/// choices holding the template's.
fn lay_over(current: &Value, wanted: &Value) -> Result<Value, Vec<String>> {
    let mut merged = current.clone();
    let mut conflicts = Vec::new();
    let stored_properties = current["schema"]["properties"].as_object().cloned().unwrap_or_default();
    for (name, property) in wanted["schema"]["properties"].as_object().into_iter().flatten() {
        match stored_properties.get(name) {
            None => {
                merged["schema"]["properties"][name] = property.clone();
            }
            Some(have) => {
                for field in ["type", "format"] {
                    if have.get(field) != property.get(field) {
                        conflicts.push(format!(
                            "its property '{name}' has {field} {}, where this template needs {}",
                            shown(have.get(field)),
                            shown(property.get(field))
                        ));
                    }
                }
                if let (Some(Value::Array(have)), Some(Value::Array(need))) = (have.get("enum"), property.get("enum")) {
                    let missing: Vec<String> =
                        need.iter().filter(|v| !have.contains(v)).map(Value::to_string).collect();
                    if !missing.is_empty() {
                        conflicts.push(format!(
                            "its property '{name}' does not allow {}, which this template sets",
                            missing.join(", ")
                        ));
                    }
                }
            }
        }
    }
    for (name, relation) in wanted["relations"].as_object().into_iter().flatten() {
        match current["relations"].get(name) {
            None => {
                if !merged["relations"].is_object() {
                    merged["relations"] = json!({});
                }
                merged["relations"][name] = relation.clone();
            }
            Some(have) if have.get("target") != relation.get("target") || have.get("many") != relation.get("many") => {
                conflicts.push(format!(
                    "its relation '{name}' points at {} (many: {}), where this template needs {} (many: {})",
                    shown(have.get("target")),
                    shown(have.get("many")),
                    shown(relation.get("target")),
                    shown(relation.get("many")),
                ));
            }
            Some(_) => {}
        }
    }
    if conflicts.is_empty() { Ok(merged) } else { Err(conflicts) }
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "none".into(), Value::to_string)
}

/// Renames the blueprints a document names: a blueprint's own identifier, a relation's target,
/// and every `blueprint` / `blueprintIdentifier` (actions, their pickers and automations, locks,
/// entities).
fn rename_blueprints(value: &mut Value, renames: &BTreeMap<String, String>) {
    if renames.is_empty() {
        return;
    }
    let is_blueprint = value.get("schema").is_some();
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                let names_blueprint = matches!(key.as_str(), "blueprint" | "blueprintIdentifier" | "target")
                    || (is_blueprint && key == "identifier");
                match field {
                    Value::String(name) if names_blueprint => {
                        if let Some(to) = renames.get(name.as_str()) {
                            *name = to.clone();
                        }
                    }
                    _ => rename_blueprints(field, renames),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rename_blueprints(item, renames)),
        _ => {}
    }
}

/// Replaces an action's `{"type": "BACKEND", "task": …}` with the chosen backend.
fn wire(mut action: Value, backend: &Backend) -> Value {
    let method = &action["invocationMethod"];
    if method["type"] != "BACKEND" {
        return action;
    }
    let task = method["task"].as_str().unwrap_or_default().to_string();
    action["invocationMethod"] = match backend {
        Backend::Runner { labels } => json!({"type": "RUNNER", "labels": labels, "task": task}),
        Backend::Webhook { url } => json!({
            "type": "WEBHOOK", "url": url,
            "body": {"task": task, "action": "{{ .action }}", "run": {"id": "{{ .run.id }}", "url": "{{ .run.url }}"},
                     "inputs": "{{ .inputs }}", "entity": "{{ .entity }}", "trigger": "{{ .trigger }}"}
        }),
        Backend::Github { org, repo } => json!({
            "type": "GITHUB", "org": org, "repo": repo, "workflow": format!("{task}.yml"),
            "workflowInputs": {"portolan_run_id": "{{ .run.id }}", "inputs": "{{ .inputs }}",
                               "entity": "{{ .entity.identifier }}"}
        }),
        Backend::Gitlab { group_name, project_name } => json!({
            "type": "GITLAB", "groupName": group_name, "projectName": project_name,
            "pipelineVariables": {"PORTOLAN_TASK": task, "PORTOLAN_RUN_ID": "{{ .run.id }}",
                                  "PORTOLAN_INPUTS": "{{ .inputs }}", "PORTOLAN_ENTITY": "{{ .entity.identifier }}"}
        }),
    };
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        serde_json::from_value(json!({
            "identifier": "provision", "title": "Provision", "area": "Cloud resources", "description": "d",
            "wiresTo": ["Terraform"], "guardrails": ["bounded"],
            "blueprints": [{"identifier": "bucket", "title": "Bucket", "schema": {"properties": {
                "size": {"type": "string", "enum": ["small", "large"]}}},
                "relations": {"service": {"target": "service", "many": false}}}],
            "actions": [{"identifier": "provision", "trigger": {"type": "self-service", "operation": "CREATE",
                "blueprintIdentifier": "bucket"}, "invocationMethod": {"type": "BACKEND", "task": "provision"}}],
            "entities": [{"blueprint": "bucket", "identifier": "first"}],
            "demo": {}
        }))
        .expect("a template")
    }

    fn runner() -> Install {
        Install { backend: Backend::Runner { labels: vec!["ops".into()] }, renames: BTreeMap::new() }
    }

    #[test]
    fn a_new_blueprint_is_created_and_the_action_wired_to_the_backend() {
        let out = expand(&template(), &runner(), |_| None).expect("expands");
        assert_eq!(out[0].kind, Kind::Blueprint);
        assert_eq!(out[0].spec["identifier"], "bucket");
        assert_eq!(out[1].spec["invocationMethod"], json!({"type": "RUNNER", "labels": ["ops"], "task": "provision"}));
        assert!(!out[1].implied, "the action is the installing source's own");
        assert_eq!(out[2].kind, Kind::Entity);
        let github =
            Install { backend: Backend::Github { org: "acme".into(), repo: "ops".into() }, renames: BTreeMap::new() };
        let wired = expand(&template(), &github, |_| None).expect("expands");
        assert_eq!(wired[1].spec["invocationMethod"]["workflow"], "provision.yml");
    }

    #[test]
    fn a_stored_blueprint_gains_what_is_missing_and_keeps_what_it_has() {
        let stored = json!({"identifier": "bucket", "title": "Our buckets", "schema": {"properties": {
            "size": {"type": "string", "enum": ["small", "medium", "large"]}, "owner": {"type": "string"}}}});
        let out = expand(&template(), &runner(), |_| Some(stored.clone())).expect("expands");
        assert_eq!(out[0].spec["title"], "Our buckets");
        assert_eq!(out[0].spec["schema"]["properties"]["owner"], json!({"type": "string"}));
        assert_eq!(out[0].spec["schema"]["properties"]["size"]["enum"], json!(["small", "medium", "large"]));
        assert_eq!(out[0].spec["relations"]["service"]["target"], "service");
    }

    #[test]
    fn a_conflicting_property_is_refused_by_name_or_installed_beside_it() {
        let stored = json!({"identifier": "bucket", "schema": {"properties": {"size": {"type": "number"}}}});
        let err = expand(&template(), &runner(), |_| Some(stored.clone())).expect_err("a conflict");
        let message = &err.0[0].message;
        assert!(message.contains("'size' has type \"number\""), "{message}");
        assert!(message.contains("\"renames\": {\"bucket\""), "{message}");

        let mut beside = runner();
        beside.renames.insert("bucket".into(), "gallery_bucket".into());
        let out = expand(&template(), &beside, |id| (id == "bucket").then(|| stored.clone())).expect("beside");
        assert_eq!(out[0].spec["identifier"], "gallery_bucket");
        assert_eq!(out[1].spec["trigger"]["blueprintIdentifier"], "gallery_bucket");
        assert_eq!(out[2].spec["blueprint"], "gallery_bucket");
        assert_eq!(out[0].spec["relations"]["service"]["target"], "service", "other blueprints keep their names");
    }

    #[test]
    fn a_rename_of_a_blueprint_the_template_lacks_is_refused() {
        let mut install = runner();
        install.renames.insert("nothing".into(), "x".into());
        let err = expand(&template(), &install, |_| None).expect_err("unknown");
        assert_eq!(err.0[0].path, "/spec/renames/nothing");
    }
}
