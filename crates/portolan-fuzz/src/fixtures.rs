//! What the fuzz targets share: a small catalog to parse queries against and evaluate them on.

use portolan_model::blueprint::Blueprint;
use portolan_model::entity::Entity;
use serde_json::{Map, Value, json};

/// A system and a service blueprint with a property of every kind and two relations.
pub fn blueprints() -> Vec<Blueprint> {
    [
        json!({"identifier": "system", "schema": {"properties": {"tier": {"type": "number"}}}}),
        json!({"identifier": "service", "schema": {"properties": {
            "language": {"type": "string", "enum": ["rust", "go", "python"]},
            "url": {"type": "string", "format": "url"},
            "replicas": {"type": "number", "minimum": 0},
            "public": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "released": {"type": "string", "format": "date-time"},
            "expires": {"type": "string", "format": "timer"},
            "owner": {"type": "string", "format": "team"},
            "config": {"type": "object"}
        }}, "relations": {
            "system": {"target": "system", "required": true},
            "dependsOn": {"target": "service", "many": true}
        }}),
    ]
    .into_iter()
    .map(|document| Blueprint::from_json(document).expect("the fixture blueprints are valid"))
    .collect()
}

/// A few stored services and their system, with values of every kind, some missing.
pub fn entities() -> Vec<Entity> {
    let service = |id: &str, properties: Value, relations: Value| Entity {
        identifier: id.into(),
        title: Some(id.to_uppercase()),
        icon: None,
        blueprint: "service".into(),
        team: vec!["team-a".into()],
        properties: properties.as_object().cloned().unwrap_or_default(),
        relations: relations.as_object().cloned().unwrap_or_default(),
        scorecards: Map::new(),
        diagnostics: Map::new(),
        version: 1,
        created_at: 1_000,
        created_by: "fuzz".into(),
        updated_at: 2_000,
        updated_by: "fuzz".into(),
    };
    let mut system = service("shop", json!({"tier": 1}), json!({}));
    system.blueprint = "system".into();
    vec![
        system,
        service(
            "cart",
            json!({"language": "rust", "replicas": 3, "public": true, "tags": ["a", "b"],
                   "released": "2026-01-01T00:00:00Z", "config": {"k": [1, null]}}),
            json!({"system": "shop", "dependsOn": ["checkout"]}),
        ),
        service("checkout", json!({"language": "go", "replicas": 0}), json!({"system": "shop"})),
        service("ünïcode ẞ", json!({"tags": []}), json!({})),
    ]
}

/// The input as UTF-8 JSON, if it is.
pub fn json(data: &[u8]) -> Option<Value> {
    serde_json::from_slice(data).ok()
}
