//! The mapping language, in the shape Port's Ocean integrations use (`port-app-config.yml`), so
//! that existing mappings carry over: `resources`, each with a `kind`, a `selector.query` (a jq
//! boolean over the item) and `port.entity.mappings` (jq for `identifier`, `title`, `blueprint`,
//! `team`, `icon`, each property and each relation), `port.itemsToParse` to fan one payload out
//! into many entities (each bound as `.item` beside the payload's own fields), and the options
//! `createMissingRelatedEntities`, `deleteDependentEntities` and `entityDeletionThreshold`.
//!
//! A resource becomes one jq program (see [`Resource::program`]) run once per payload: one
//! sandbox round trip for a whole page, and an error in one item's mapping fails that item only,
//! naming the mapping's JSON pointer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::entity::EntityInput;
use crate::error::{FieldErrors, pointer_token};
use crate::jq;

/// Most resources one mapping may hold.
pub const MAX_RESOURCES: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mapping {
    pub resources: Vec<Resource>,
    /// A relation to an entity that does not exist creates it, bare (else the entity is refused).
    #[serde(default)]
    pub create_missing_related_entities: bool,
    /// Deleting an entity deletes those whose required relations point at it.
    #[serde(default)]
    pub delete_dependent_entities: bool,
    /// The largest share of what the integration owns that one sync may delete (0 to 1; Port's
    /// default, 0.9, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_deletion_threshold: Option<f64>,
    /// Port's option to merge rather than replace entities: accepted, and always how Portolan
    /// writes (a mapping sets only the properties it names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_merge_entity: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource {
    /// What the items are (`repository`, `pull-request`, a webhook's event name...).
    pub kind: String,
    #[serde(default)]
    pub selector: Selector,
    /// `delete` removes the entities the items name; `create` (the default) creates or updates.
    #[serde(default)]
    pub operation: Operation,
    pub port: PortMapping,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// jq over the item; the item is mapped when it gives `true`.
    #[serde(default = "always")]
    pub query: String,
}

impl Default for Selector {
    fn default() -> Self {
        Self { query: always() }
    }
}

fn always() -> String {
    "true".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = MappingOperation)]
pub enum Operation {
    #[default]
    Create,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    /// jq giving an array: each element is mapped as `.item`, beside the payload's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_to_parse: Option<String>,
    /// The key each element is bound to (default `item`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_to_parse_name: Option<String>,
    pub entity: EntityMapping,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityMapping {
    pub mappings: Mappings,
}

/// Each field a jq expression over the item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mappings {
    pub identifier: String,
    pub blueprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub relations: BTreeMap<String, String>,
}

/// What one item of a payload became.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mapped {
    /// The resource (its index in `resources`) and the item (its index in the payload's items).
    pub resource: usize,
    pub item: usize,
    pub operation: Operation,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The entity document the item maps to (`blueprint` and `identifier` always set), in the
    /// shape of an entity input.
    #[schema(value_type = Object)]
    Entity(Value),
    /// Why the item maps to nothing: the mapping's JSON pointer and the message.
    Error { path: String, message: String },
}

impl Mapping {
    /// A mapping document, every jq expression compiled: each problem by its JSON pointer.
    pub fn parse(document: Value) -> Result<Mapping, FieldErrors> {
        let mapping: Mapping = crate::error::from_json(document)?;
        let mut errors = FieldErrors::default();
        if mapping.resources.len() > MAX_RESOURCES {
            errors.push("/resources", format!("at most {MAX_RESOURCES} resources"));
        }
        if mapping.entity_deletion_threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            errors.push("/entityDeletionThreshold", "a share between 0 and 1");
        }
        for (i, resource) in mapping.resources.iter().enumerate() {
            if resource.kind.trim().is_empty() {
                errors.push(format!("/resources/{i}/kind"), "a kind names what the items are");
            }
            if resource.port.items_to_parse_name.as_ref().is_some_and(|n| !is_key(n)) {
                errors.push(format!("/resources/{i}/port/itemsToParseName"), "a name of letters, digits and _");
            }
            for (path, code) in resource.expressions() {
                if let Err(message) = jq::check(code) {
                    errors.push(format!("/resources/{i}{path}"), message);
                }
            }
        }
        errors.into_result(mapping)
    }

    /// What each program output (one per resource, from [`Resource::program`]) maps to.
    pub fn read_outputs(&self, resource: usize, output: &Value) -> Vec<Mapped> {
        let operation = self.resources[resource].operation;
        let Some(items) = output.as_array() else {
            let message = format!("the mapping gave {output}, not a list");
            return vec![Mapped {
                resource,
                item: 0,
                operation,
                outcome: Outcome::Error { path: String::new(), message },
            }];
        };
        items
            .iter()
            .map(|result| {
                let item = result["index"].as_u64().unwrap_or_default() as usize;
                let outcome = match (&result["ok"], &result["error"]) {
                    (Value::Object(document), _) => entity(document.clone(), resource),
                    (_, error) => Outcome::Error {
                        path: format!("/resources/{resource}{}", error["path"].as_str().unwrap_or_default()),
                        message: error["message"].as_str().map(str::to_string).unwrap_or_else(|| error.to_string()),
                    },
                };
                Mapped { resource, item, operation, outcome }
            })
            .collect()
    }
}

impl Resource {
    /// Every jq expression, with its pointer under the resource.
    fn expressions(&self) -> Vec<(String, &str)> {
        let m = &self.port.entity.mappings;
        let mut all = vec![
            ("/selector/query".to_string(), self.selector.query.as_str()),
            ("/port/entity/mappings/identifier".into(), m.identifier.as_str()),
            ("/port/entity/mappings/blueprint".into(), m.blueprint.as_str()),
        ];
        if let Some(items) = &self.port.items_to_parse {
            all.push(("/port/itemsToParse".into(), items));
        }
        for (field, code) in [("title", &m.title), ("team", &m.team), ("icon", &m.icon)] {
            if let Some(code) = code {
                all.push((format!("/port/entity/mappings/{field}"), code));
            }
        }
        for (group, fields) in [("properties", &m.properties), ("relations", &m.relations)] {
            for (name, code) in fields {
                all.push((format!("/port/entity/mappings/{group}/{}", pointer_token(name)), code));
            }
        }
        all
    }

    /// One jq program mapping a whole payload: a list with, per item the selector admits,
    /// `{index, ok: entity document}` or `{index, error: {path, message}}`. Each expression runs
    /// in its own `try`, so that a failure names its pointer and fails only its item (or the whole
    /// payload, for `itemsToParse`); each gives its first output (null when none).
    pub fn program(&self) -> String {
        let m = &self.port.entity.mappings;
        let field = |path: &str, code: &str| {
            format!("__field((\n{code}\n); {})", serde_json::to_string(path).unwrap_or_default())
        };
        let mut document = vec![
            format!("identifier: {}", field("/port/entity/mappings/identifier", &m.identifier)),
            format!("blueprint: {}", field("/port/entity/mappings/blueprint", &m.blueprint)),
        ];
        for (name, code) in [("title", &m.title), ("team", &m.team), ("icon", &m.icon)] {
            if let Some(code) = code {
                document.push(format!("{name}: {}", field(&format!("/port/entity/mappings/{name}"), code)));
            }
        }
        for (group, fields) in [("properties", &m.properties), ("relations", &m.relations)] {
            let entries: Vec<String> = fields
                .iter()
                .map(|(name, code)| {
                    let path = format!("/port/entity/mappings/{group}/{}", pointer_token(name));
                    format!("{}: {}", serde_json::to_string(name).unwrap_or_default(), field(&path, code))
                })
                .collect();
            document.push(format!("{group}: ({{{}}} | with_entries(select(.value != null)))", entries.join(", ")));
        }
        let items = match &self.port.items_to_parse {
            None => "[.]".to_string(),
            Some(code) => {
                let name = self.port.items_to_parse_name.as_deref().unwrap_or("item");
                format!(
                    ". as $__root | {} | if type == \"array\" then map($__root + {{{name}: .}}) \
                     else error({{path: \"/port/itemsToParse\", message: \"gave \\(type), not an array\"}}) end",
                    field("/port/itemsToParse", code)
                )
            }
        };
        format!(
            "def __field(f; p): try ([f][0]) catch error({{path: p, message: (if type == \"string\" then . else tojson end)}});\n\
             try ({items} | to_entries | map(.key as $__i | .value | try (\n\
               if {selector} == true then {{index: $__i, ok: {{{document}}}}} else empty end\n\
             ) catch {{index: $__i, error: .}})) catch [{{index: 0, error: .}}]",
            selector = field("/selector/query", &self.selector.query),
            document = document.join(", "),
        )
    }
}

impl Resource {
    /// [`Resource::program`] over a list of payloads at once (a page of a pulled source): a list
    /// with one output of the program per payload, in order.
    pub fn program_for_each(&self) -> String {
        format!("[.[] | ({})]", self.program())
    }
}

/// A program's entity document as an entity input, with identifiers and teams given as numbers
/// taken as text (as `tostring` would), and empty values left out.
fn entity(mut document: Map<String, Value>, resource: usize) -> Outcome {
    let base = format!("/resources/{resource}/port/entity/mappings");
    for key in ["identifier", "blueprint"] {
        match document.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::Number(n)) => {
                let text = n.to_string();
                document.insert(key.into(), Value::String(text));
            }
            Some(other) => {
                let message = format!("{key} gave {other}: it must be a non-empty string");
                return Outcome::Error { path: format!("{base}/{key}"), message };
            }
            None => {}
        }
    }
    document.retain(|_, v| !v.is_null());
    let document = Value::Object(document);
    match crate::error::from_json::<EntityInput>(document.clone()) {
        Ok(_) => Outcome::Entity(document),
        Err(errors) => {
            let first = errors.0.first();
            Outcome::Error {
                path: format!("{base}{}", first.map(|e| e.path.as_str()).unwrap_or_default()),
                message: first.map(|e| e.message.clone()).unwrap_or_else(|| "not an entity".into()),
            }
        }
    }
}

fn is_key(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(mapping: &Mapping, payload: &Value) -> Vec<Mapped> {
        (0..mapping.resources.len())
            .flat_map(|r| {
                let outputs = jq::eval(&mapping.resources[r].program(), payload, 1).expect("the program runs");
                mapping.read_outputs(r, &outputs[0])
            })
            .collect()
    }

    #[test]
    fn a_page_of_items_is_mapped_in_one_program() {
        let mapping = Mapping::parse(json!({"resources": [{"kind": "repo", "selector": {"query": ".archived | not"},
            "port": {"entity": {"mappings": {"identifier": ".name", "blueprint": "\"service\""}}}}]}))
        .expect("valid");
        let page = json!([{"name": "cart"}, {"name": "old", "archived": true}, {"name": "pay"}]);
        let outputs = jq::eval(&mapping.resources[0].program_for_each(), &page, 1).expect("the program runs");
        let per_item: Vec<Vec<Mapped>> =
            outputs[0].as_array().expect("a list").iter().map(|o| mapping.read_outputs(0, o)).collect();
        let names: Vec<usize> = per_item.iter().map(Vec::len).collect();
        assert_eq!(names, [1, 0, 1], "the archived item is not selected");
        assert_eq!(
            per_item[2][0].outcome,
            Outcome::Entity(json!({"identifier": "pay", "blueprint": "service",
            "properties": {}, "relations": {}}))
        );
    }

    fn pull_requests() -> Mapping {
        Mapping::parse(json!({
            "createMissingRelatedEntities": true,
            "resources": [{
                "kind": "pull_request",
                "selector": {"query": ".action != \"deleted\""},
                "port": {
                    "itemsToParse": ".pull_requests",
                    "entity": {"mappings": {
                        "identifier": ".item.id",
                        "title": ".item.title # a comment ends at the line",
                        "blueprint": "\"pullRequest\"",
                        "properties": {"author": ".item.user.login", "repo": ".repository.name", "merged": ".item.merged_at"},
                        "relations": {"repository": ".repository.name"}
                    }}
                }
            }]
        }))
        .expect("a valid mapping")
    }

    #[test]
    fn items_fan_out_and_see_the_payload() {
        let payload = json!({"action": "opened", "repository": {"name": "cart"}, "pull_requests": [
            {"id": 7, "title": "Fix", "user": {"login": "ana"}, "merged_at": null},
            {"id": 8, "title": "Feat", "user": {"login": "bo"}, "merged_at": "2026-01-01T00:00:00Z"}
        ]});
        let mapped = run(&pull_requests(), &payload);
        assert_eq!(mapped.len(), 2);
        let Outcome::Entity(first) = &mapped[0].outcome else { panic!("{mapped:?}") };
        assert_eq!(
            *first,
            json!({"identifier": "7", "blueprint": "pullRequest", "title": "Fix",
                   "properties": {"author": "ana", "repo": "cart"}, "relations": {"repository": "cart"}}),
            "a numeric identifier is taken as text; null is left out"
        );
        assert_eq!(mapped[1].item, 1);
    }

    #[test]
    fn a_failing_item_fails_alone_naming_the_mapping() {
        let payload = json!({"action": "opened", "repository": {"name": "cart"}, "pull_requests": [
            {"id": 1, "title": "ok", "user": {"login": "ana"}},
            {"id": 2, "title": "bad", "user": "not an object"},
            {"id": [], "title": "no id", "user": {"login": "x"}}
        ]});
        let mapped = run(&pull_requests(), &payload);
        assert!(matches!(mapped[0].outcome, Outcome::Entity(_)));
        let Outcome::Error { path, message } = &mapped[1].outcome else { panic!("{mapped:?}") };
        assert_eq!(path, "/resources/0/port/entity/mappings/properties/author");
        assert!(message.contains("cannot index"), "{message}");
        let Outcome::Error { path, .. } = &mapped[2].outcome else { panic!("{mapped:?}") };
        assert_eq!(path, "/resources/0/port/entity/mappings/identifier");

        let deleted = run(&pull_requests(), &json!({"action": "deleted", "pull_requests": [{"id": 1}]}));
        assert!(deleted.is_empty(), "the selector keeps the items out");
        let not_a_list = run(&pull_requests(), &json!({"action": "x", "pull_requests": {"id": 1}}));
        let Outcome::Error { path, message } = &not_a_list[0].outcome else { panic!("{not_a_list:?}") };
        assert_eq!((path.as_str(), message.as_str()), ("/resources/0/port/itemsToParse", "gave object, not an array"));
    }

    #[test]
    fn mappings_are_checked_before_they_run() {
        let bad = Mapping::parse(json!({"entityDeletionThreshold": 2, "resources": [{
            "kind": "", "port": {"itemsToParseName": "1x", "entity": {"mappings": {
                "identifier": ".id |", "blueprint": "\"s\"", "properties": {"a/b": "nope("}}}}}]}));
        let paths: Vec<String> = bad.expect_err("refused").0.into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "/entityDeletionThreshold",
                "/resources/0/kind",
                "/resources/0/port/itemsToParseName",
                "/resources/0/port/entity/mappings/identifier",
                "/resources/0/port/entity/mappings/properties/a~1b"
            ]
        );
        assert!(
            Mapping::parse(
                json!({"resources": [{"kind": "x", "port": {"entity": {"mappings": {"identifier": ".id"}}}}]})
            )
            .is_err()
        );
    }
}
