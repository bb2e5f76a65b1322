//! Catalog as code: the document format of `portolan apply` and `portolan export`, the key
//! that names what a document defines, and the difference between two versions of it.
//!
//! ```yaml
//! apiVersion: portolan.dev/v1
//! kind: Entity            # Blueprint, Entity, Scorecard, Action, Permissions, Initiative, Dashboard or Template
//! spec:                   # the same document the API takes
//!   blueprint: service
//!   identifier: cart
//! ```

pub mod backstage;
pub mod backstage_query;
mod diff;
pub mod location;
mod text;

pub use diff::{Difference, diff};
pub use text::{LocatedDocument, TextError, read_documents};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::EntityRef;
use crate::error::FieldErrors;

/// The `apiVersion` of Portolan's own documents.
pub const API_VERSION: &str = "portolan.dev/v1";

/// What a document defines, in the order an apply writes them (a later kind may refer to an
/// earlier one; deletions go in the reverse order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Kind {
    Blueprint,
    Scorecard,
    Entity,
    Action,
    Permissions,
    Initiative,
    Dashboard,
    /// A template of the gallery, installed: expanded into the objects above before planning.
    Template,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Blueprint,
        Kind::Scorecard,
        Kind::Entity,
        Kind::Action,
        Kind::Permissions,
        Kind::Initiative,
        Kind::Dashboard,
        Kind::Template,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Blueprint => "Blueprint",
            Kind::Scorecard => "Scorecard",
            Kind::Entity => "Entity",
            Kind::Action => "Action",
            Kind::Permissions => "Permissions",
            Kind::Initiative => "Initiative",
            Kind::Dashboard => "Dashboard",
            Kind::Template => "Template",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Names one thing a document defines: `Entity service/cart`, `Permissions action/deploy`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectKey {
    pub kind: Kind,
    /// `identifier` for blueprints, actions, initiatives and dashboards, `blueprint/identifier` for entities and
    /// scorecards, `blueprint/<id>` or `action/<id>` for permissions.
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self { kind, name: name.into() }
    }

    /// The blueprint an entity or scorecard key is under, or the target of a permissions key.
    pub fn scope(&self) -> Option<&str> {
        self.name.split_once('/').map(|(scope, _)| scope)
    }

    /// The key of an entity.
    pub fn entity(target: &EntityRef) -> Self {
        Self::new(Kind::Entity, format!("{}/{}", target.blueprint, target.identifier))
    }

    /// The entity an `Entity` key names.
    pub fn entity_ref(&self) -> EntityRef {
        EntityRef { blueprint: self.scope().unwrap_or_default().to_string(), identifier: self.identifier().to_string() }
    }

    /// The last part of the name: the identifier of the thing itself.
    pub fn identifier(&self) -> &str {
        self.name.split_once('/').map_or(self.name.as_str(), |(_, id)| id)
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

/// One document, checked for its envelope: what it defines and the API document (`spec`) that
/// defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub key: ObjectKey,
    /// For `Permissions`, the permission document without its `blueprint`/`action` field.
    pub spec: Value,
}

/// Reads a document's envelope. The spec itself is validated by the service that stores it.
pub fn parse_document(document: &Value) -> Result<Manifest, FieldErrors> {
    let mut errors = FieldErrors::default();
    let Value::Object(map) = document else {
        errors.push("", "a document must be an object with apiVersion, kind and spec");
        return Err(errors);
    };
    for key in map.keys().filter(|k| !["apiVersion", "kind", "spec", "metadata"].contains(&k.as_str())) {
        errors.push(
            format!("/{}", crate::error::pointer_token(key)),
            "unknown field: expected apiVersion, kind and spec",
        );
    }
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => errors.push("/apiVersion", format!("unknown apiVersion '{other}': expected '{API_VERSION}'")),
        None => errors.push("/apiVersion", format!("apiVersion is required: '{API_VERSION}'")),
    }
    let kind = match map.get("kind").and_then(Value::as_str) {
        Some(name) => Kind::parse(name).or_else(|| {
            errors.push("/kind", format!("unknown kind '{name}': expected one of {}", kind_names()));
            None
        }),
        None => {
            errors.push("/kind", format!("kind is required: one of {}", kind_names()));
            None
        }
    };
    let Some(Value::Object(spec)) = map.get("spec") else {
        errors.push("/spec", "spec is required: an object, the document the API takes");
        return Err(errors);
    };
    let Some(kind) = kind else { return Err(errors) };
    let text = |field: &str, errors: &mut FieldErrors| match spec.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            errors.push(format!("/spec/{field}"), format!("{field} must be a non-empty string"));
            None
        }
        None => {
            errors.push(format!("/spec/{field}"), format!("{field} is required in a {} document", kind.as_str()));
            None
        }
    };
    let mut spec = spec.clone();
    let name = match kind {
        Kind::Blueprint | Kind::Action | Kind::Initiative | Kind::Dashboard => text("identifier", &mut errors),
        Kind::Entity | Kind::Scorecard => {
            let blueprint = text("blueprint", &mut errors);
            let identifier = text("identifier", &mut errors);
            blueprint.zip(identifier).map(|(b, i)| format!("{b}/{i}"))
        }
        Kind::Template => text("template", &mut errors),
        Kind::Permissions => match (spec.remove("blueprint"), spec.remove("action")) {
            (Some(Value::String(b)), None) if !b.is_empty() => Some(format!("blueprint/{b}")),
            (None, Some(Value::String(a))) if !a.is_empty() => Some(format!("action/{a}")),
            _ => {
                errors
                    .push("/spec", "a Permissions document names either a blueprint or an action (a non-empty string)");
                None
            }
        },
    };
    match name {
        Some(name) if errors.is_empty() => Ok(Manifest { key: ObjectKey::new(kind, name), spec: Value::Object(spec) }),
        _ => Err(errors),
    }
}

fn kind_names() -> String {
    Kind::ALL.map(Kind::as_str).join(", ")
}

/// The document for `spec` of `key`, as `portolan export` writes it.
pub fn to_document(key: &ObjectKey, spec: &Value) -> Value {
    let mut spec = spec.clone();
    if key.kind == Kind::Permissions
        && let (Value::Object(map), Some(target)) = (&mut spec, key.scope())
    {
        let mut with_target = Map::new();
        with_target.insert(target.to_string(), Value::from(key.identifier()));
        with_target.extend(std::mem::take(map));
        *map = with_target;
    }
    json!({ "apiVersion": API_VERSION, "kind": key.kind.as_str(), "spec": spec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_named_by_its_key() {
        let entity = json!({"apiVersion": API_VERSION, "kind": "Entity", "spec": {"blueprint": "service", "identifier": "cart"}});
        assert_eq!(parse_document(&entity).expect("valid").key, ObjectKey::new(Kind::Entity, "service/cart"));
        let permissions =
            json!({"apiVersion": API_VERSION, "kind": "Permissions", "spec": {"action": "deploy", "execute": {}}});
        let manifest = parse_document(&permissions).expect("valid");
        assert_eq!(manifest.key.to_string(), "Permissions action/deploy");
        assert_eq!(manifest.spec, json!({"execute": {}}), "the target is in the key, not the spec");
        assert_eq!(to_document(&manifest.key, &manifest.spec), permissions, "export writes what apply reads");
    }

    #[test]
    fn a_bad_envelope_lists_every_problem_by_pointer() {
        let errors = parse_document(&json!({"apiVersion": "v2", "kind": "Widget", "spec": {}, "extra": 1}))
            .expect_err("invalid");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/extra", "/apiVersion", "/kind"]);
        let errors =
            parse_document(&json!({"apiVersion": API_VERSION, "kind": "Scorecard", "spec": {"identifier": 3}}))
                .expect_err("invalid");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/spec/blueprint", "/spec/identifier"]);
    }
}
