//! Entities: instances of blueprints, and their validation against the blueprint.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::blueprint::{Blueprint, Format};
use crate::error::{FieldErrors, pointer_token};
use crate::ident::{check_entity_identifier, check_new_entity_identifier, check_principal_identifier};
use crate::{Millis, system};

/// Longest entity title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 1_000;

/// An entity as submitted by a client. Server-managed fields may be echoed back (a client that
/// GETs, edits and PUTs an entity sends them) and are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityInput {
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    /// Owning teams: one `_team` identifier or a list of them.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub team: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub relations: Map<String, Value>,
    #[serde(default)]
    pub blueprint: Option<String>,
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub version: Option<Value>,
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub created_at: Option<Value>,
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub created_by: Option<Value>,
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub updated_at: Option<Value>,
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub updated_by: Option<Value>,
}

/// A stored entity. It reads back from the JSON it is written as (the audit log keeps each
/// version so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    pub identifier: String,
    pub title: Option<String>,
    pub icon: Option<String>,
    pub blueprint: String,
    pub team: Vec<String>,
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    #[schema(value_type = Object)]
    pub relations: Map<String, Value>,
    /// Scorecard results by scorecard identifier: `{level, levelIndex, rules}`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub scorecards: Map<String, Value>,
    /// Why a computed property has no value (a failed calculation), by property name.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub diagnostics: Map<String, Value>,
    /// Incremented on every write; sent as the `ETag` and compared with `If-Match`.
    pub version: i64,
    #[serde(serialize_with = "as_rfc3339", deserialize_with = "crate::timestamp::deserialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    pub created_by: String,
    #[serde(serialize_with = "as_rfc3339", deserialize_with = "crate::timestamp::deserialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
    pub updated_by: String,
}

fn as_rfc3339<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::format_millis(*ms))
}

/// Identifies one entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct EntityRef {
    pub blueprint: String,
    pub identifier: String,
}

/// A pointer from an entity to another entity: a relation, an owning team, or a `team`-format
/// property. Every reference must name an existing entity, and is stored so that deleting its
/// target can be refused while it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Relation identifier, `$team` for ownership, or `$property:<name>` for a team property.
    pub via: String,
    pub target_blueprint: String,
    pub target: String,
    /// JSON pointer of the value in the submitted document, for error messages.
    pub path: String,
}

/// The validated content of an entity, ready to be stored; it still needs its references checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEntity {
    pub identifier: String,
    pub title: Option<String>,
    pub icon: Option<String>,
    pub team: Vec<String>,
    pub properties: Map<String, Value>,
    pub relations: Map<String, Value>,
    pub references: Vec<Reference>,
}

impl ValidEntity {
    /// Whether storing this would change nothing the entity holds: the same title, icon, owners,
    /// relations and own properties (what the server computes, and empty values, aside).
    pub fn unchanged_from(&self, blueprint: &Blueprint, stored: &Entity) -> bool {
        let own = |properties: &Map<String, Value>| -> Map<String, Value> {
            properties
                .iter()
                .filter(|(name, value)| !value.is_null() && !blueprint.is_computed(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        };
        let set = |relations: &Map<String, Value>| -> Map<String, Value> {
            relations.iter().filter(|(_, value)| !value.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        self.identifier == stored.identifier
            && self.title == stored.title
            && self.icon == stored.icon
            && self.team == stored.team
            && own(&self.properties) == own(&stored.properties)
            && set(&self.relations) == set(&stored.relations)
    }
}

impl EntityInput {
    pub fn from_json(value: Value) -> Result<Self, FieldErrors> {
        crate::error::from_json(value)
    }

    /// The document that results from applying this input on top of `existing`: given fields
    /// replace, absent fields stay, and a `null` property or relation removes it.
    pub fn merged_onto(self, existing: &Entity) -> EntityInput {
        let mut properties = existing.properties.clone();
        properties.extend(self.properties);
        let mut relations = existing.relations.clone();
        relations.extend(self.relations);
        EntityInput {
            identifier: Some(existing.identifier.clone()),
            title: self.title.or_else(|| existing.title.clone()),
            icon: self.icon.or_else(|| existing.icon.clone()),
            team: self.team.or_else(|| Some(Value::from(existing.team.clone()))),
            properties,
            relations,
            blueprint: self.blueprint,
            ..EntityInput::default()
        }
    }

    /// Validates a whole new entity document against its blueprint. Absent properties that have a
    /// default get it; `null` values count as absent. The identifier must not pass for another
    /// (see [`crate::ident`]).
    pub fn validate(self, blueprint: &Blueprint) -> Result<ValidEntity, FieldErrors> {
        self.validate_as(blueprint, true)
    }

    /// [`Self::validate`] for a document of an entity already stored, whose identifier is kept
    /// as it was accepted.
    pub fn validate_stored(self, blueprint: &Blueprint) -> Result<ValidEntity, FieldErrors> {
        self.validate_as(blueprint, false)
    }

    fn validate_as(self, blueprint: &Blueprint, new: bool) -> Result<ValidEntity, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut references = Vec::new();

        let identifier = self.identifier.unwrap_or_default();
        let checked = match (new, system::is_system(&blueprint.identifier)) {
            (false, _) => check_entity_identifier(&identifier),
            (true, true) => check_principal_identifier(&identifier),
            (true, false) => check_new_entity_identifier(&identifier),
        };
        if let Err(msg) = checked {
            errors.push("/identifier", format!("identifier {msg}"));
        }
        if let Some(bp) = &self.blueprint
            && bp != &blueprint.identifier
        {
            errors.push(
                "/blueprint",
                format!("the entity names blueprint '{bp}' but is sent to '{}'", blueprint.identifier),
            );
        }
        if let Some(title) = &self.title
            && title.chars().count() > MAX_TITLE_CHARS
        {
            errors.push("/title", format!("title is longer than {MAX_TITLE_CHARS} characters"));
        }

        let team = match self.team {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(t)) => vec![t],
            Some(Value::Array(items)) => {
                let mut teams: Vec<String> = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(t) if !teams.contains(&t) => teams.push(t),
                        Value::String(t) => errors.push(format!("/team/{i}"), format!("team '{t}' is listed twice")),
                        _ => errors.push(format!("/team/{i}"), "expected a team identifier (a string)"),
                    }
                }
                teams
            }
            Some(_) => {
                errors.push("/team", "expected a team identifier or a list of them");
                Vec::new()
            }
        };
        for (i, t) in team.iter().enumerate() {
            references.push(Reference {
                via: "$team".into(),
                target_blueprint: system::TEAM.into(),
                target: t.clone(),
                path: format!("/team/{i}"),
            });
        }

        let mut properties = Map::new();
        for (name, value) in self.properties {
            // Computed values are the server's; a client echoing them back is not an error.
            if blueprint.is_computed(&name) {
                continue;
            }
            let path = format!("/properties/{}", pointer_token(&name));
            let Some(schema) = blueprint.schema.properties.get(&name) else {
                errors.push(&path, format!("'{name}' is not a property of blueprint '{}'", blueprint.identifier));
                continue;
            };
            if value.is_null() {
                continue;
            }
            let value = schema.normalize(value);
            schema.validate_value(&value, &path, &mut errors);
            if schema.format == Some(Format::Team)
                && let Value::String(t) = &value
            {
                references.push(Reference {
                    via: format!("$property:{name}"),
                    target_blueprint: system::TEAM.into(),
                    target: t.clone(),
                    path: path.clone(),
                });
            }
            properties.insert(name, value);
        }
        for (name, schema) in &blueprint.schema.properties {
            if !properties.contains_key(name)
                && let Some(default) = &schema.default
            {
                properties.insert(name.clone(), schema.normalize(default.clone()));
            }
        }
        for name in &blueprint.schema.required {
            if !properties.contains_key(name) {
                errors.push(format!("/properties/{}", pointer_token(name)), format!("'{name}' is required"));
            }
        }
        // Keep the blueprint's property order, so documents read back the way the schema lists them.
        let mut ordered = Map::new();
        for name in blueprint.schema.properties.keys() {
            if let Some(value) = properties.remove(name) {
                ordered.insert(name.clone(), value);
            }
        }

        let mut relations = Map::new();
        for (name, value) in self.relations {
            let path = format!("/relations/{}", pointer_token(&name));
            let Some(def) = blueprint.relations.get(&name) else {
                errors.push(&path, format!("'{name}' is not a relation of blueprint '{}'", blueprint.identifier));
                continue;
            };
            let targets: Vec<(String, String)> = match (&value, def.many) {
                (Value::Null, _) => continue,
                (Value::String(t), false) => vec![(t.clone(), path.clone())],
                (Value::Array(items), true) => {
                    let mut targets: Vec<(String, String)> = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let item_path = format!("{path}/{i}");
                        match item {
                            Value::String(t) if targets.iter().any(|(seen, _)| seen == t) => {
                                errors.push(item_path, format!("'{t}' is listed twice"));
                            }
                            Value::String(t) => targets.push((t.clone(), item_path)),
                            _ => errors.push(item_path, "expected an entity identifier (a string)"),
                        }
                    }
                    if targets.is_empty() {
                        continue;
                    }
                    targets
                }
                (_, true) => {
                    errors.push(&path, "this relation is many: expected an array of identifiers");
                    continue;
                }
                (_, false) => {
                    errors.push(&path, "this relation is single: expected one identifier (a string)");
                    continue;
                }
            };
            for (target, target_path) in targets {
                references.push(Reference {
                    via: name.clone(),
                    target_blueprint: def.target.clone(),
                    target,
                    path: target_path,
                });
            }
            relations.insert(name, value);
        }
        for (name, def) in &blueprint.relations {
            if def.required && !relations.contains_key(name) {
                errors.push(format!("/relations/{}", pointer_token(name)), format!("relation '{name}' is required"));
            }
        }

        errors.into_result(ValidEntity {
            identifier,
            title: self.title,
            icon: self.icon,
            team,
            properties: ordered,
            relations,
            references,
        })
    }
}

impl Entity {
    /// Re-checks a stored entity against a (changed) blueprint, as if it were submitted again.
    pub fn revalidate(&self, blueprint: &Blueprint) -> Result<ValidEntity, FieldErrors> {
        EntityInput {
            identifier: Some(self.identifier.clone()),
            title: self.title.clone(),
            icon: self.icon.clone(),
            team: Some(Value::from(self.team.clone())),
            properties: self.properties.clone(),
            relations: self.relations.clone(),
            ..EntityInput::default()
        }
        .validate_stored(blueprint)
    }

    pub fn entity_ref(&self) -> EntityRef {
        EntityRef { blueprint: self.blueprint.clone(), identifier: self.identifier.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Blueprint {
        Blueprint::from_json(json!({
            "identifier": "service",
            "schema": {
                "properties": {
                    "language": {"type": "string", "enum": ["Go", "Rust"]},
                    "port": {"type": "number", "minimum": 1, "maximum": 65535},
                    "lifecycle": {"type": "string", "default": "experimental"},
                    "slug": {"type": "string", "pattern": "^[a-z-]+$"}
                },
                "required": ["language"]
            },
            "relations": {
                "system": {"target": "system", "required": true},
                "dependsOn": {"target": "service", "many": true}
            }
        }))
        .expect("parses")
    }

    fn input(value: Value) -> EntityInput {
        EntityInput::from_json(value).expect("parses")
    }

    fn error_paths(value: Value) -> Vec<String> {
        input(value).validate(&service()).expect_err("invalid").0.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn valid_entity_gets_defaults_and_lists_its_references() {
        let valid = input(json!({
            "identifier": "cart",
            "team": "team-cart",
            "properties": {"language": "Rust", "port": 8080},
            "relations": {"system": "shop", "dependsOn": ["payments", "users"]}
        }))
        .validate(&service())
        .expect("valid");
        assert_eq!(valid.properties["lifecycle"], json!("experimental"));
        assert_eq!(valid.team, vec!["team-cart"]);
        let targets: Vec<_> = valid.references.iter().map(|r| (r.via.as_str(), r.target.as_str())).collect();
        assert_eq!(
            targets,
            vec![("$team", "team-cart"), ("system", "shop"), ("dependsOn", "payments"), ("dependsOn", "users")]
        );
    }

    #[test]
    fn look_alike_identifiers_are_refused_when_new_and_kept_when_stored() {
        let lookalike = || {
            input(
                json!({"identifier": "p\u{0430}yments", "properties": {"language": "Go"}, "relations": {"system": "shop"}}),
            )
        };
        let errors = lookalike().validate(&service()).expect_err("a new look-alike");
        assert_eq!(errors.0[0].path, "/identifier");
        assert!(lookalike().validate_stored(&service()).is_ok(), "an entity stored before the rule stays editable");
        let user =
            crate::system::blueprints().into_iter().find(|b| b.identifier == crate::system::USER).expect("_user");
        assert!(input(json!({"identifier": "jürgen"})).validate(&user).is_err(), "users are ASCII");
        assert!(input(json!({"identifier": "jurgen@example.com"})).validate(&user).is_ok());
    }

    #[test]
    fn each_kind_of_mistake_is_reported_at_its_path() {
        let paths = error_paths(json!({
            "identifier": "bad//id",
            "team": [1],
            "properties": {"language": "COBOL", "port": "80", "slug": "Nope", "colour": "red"},
            "relations": {"dependsOn": "x", "owner": "y"}
        }));
        for expected in [
            "/identifier",
            "/team/0",
            "/properties/language",
            "/properties/port",
            "/properties/slug",
            "/properties/colour",
            "/relations/dependsOn",
            "/relations/owner",
            "/relations/system",
        ] {
            assert!(paths.iter().any(|p| p == expected), "{expected} missing from {paths:?}");
        }
    }

    #[test]
    fn missing_required_property_and_out_of_range_number() {
        let paths =
            error_paths(json!({"identifier": "a", "properties": {"port": 70000}, "relations": {"system": "s"}}));
        assert_eq!(paths, vec!["/properties/port", "/properties/language"]);
    }

    #[test]
    fn merge_keeps_absent_fields_and_null_removes() {
        let existing = Entity {
            identifier: "cart".into(),
            title: Some("Cart".into()),
            icon: None,
            blueprint: "service".into(),
            team: vec!["a".into()],
            properties: json!({"language": "Go", "port": 1}).as_object().cloned().unwrap_or_default(),
            relations: json!({"system": "shop"}).as_object().cloned().unwrap_or_default(),
            scorecards: Map::new(),
            diagnostics: Default::default(),
            version: 1,
            created_at: 0,
            created_by: "x".into(),
            updated_at: 0,
            updated_by: "x".into(),
        };
        let merged = input(json!({"properties": {"port": null, "language": "Rust"}})).merged_onto(&existing);
        let valid = merged.validate(&service()).expect("valid");
        assert_eq!(valid.title.as_deref(), Some("Cart"));
        assert_eq!(valid.team, vec!["a"]);
        assert_eq!(valid.properties.get("port"), None);
        assert_eq!(valid.properties["language"], json!("Rust"));
        assert_eq!(valid.relations["system"], json!("shop"));
    }
}
