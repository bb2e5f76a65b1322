//! The OpenAPI document as served: what utoipa generates, with each flattened view written out
//! as one object, and the error answers every operation can give.
//!
//! A view such as `ActionView` flattens a stored document (`Action`) beside the fields the
//! server adds (`createdAt`, ...). utoipa writes that as `allOf: [Action, {createdAt, ...}]`, and
//! `Action` forbids properties it does not name (its serde `deny_unknown_fields`), so no answer
//! could satisfy both parts. Merged into one object, the view names every field the answer has.

use serde_json::{Map, Value};

/// The document `openapi` describes, as JSON, with flattened views merged.
pub fn document(openapi: &utoipa::openapi::OpenApi) -> Value {
    let mut document = serde_json::to_value(openapi).unwrap_or(Value::Null);
    // A view may flatten another view: each pass merges those whose parts are plain objects.
    for _ in 0..8 {
        let schemas = document.pointer("/components/schemas").cloned().unwrap_or(Value::Null);
        if !merge_all_of(&mut document, &schemas) {
            break;
        }
    }
    document_errors(&mut document);
    document
}

/// Every error answer has the same body, `Error`. An operation documents, besides its own
/// refusals, those of the layers every request passes: no valid credential (401) unless it is
/// public (`security(())` on its handler), a body that is not JSON (400), too large (413) or of
/// another media type (415), a field of the wrong type (422), and a path naming nothing (404).
fn document_errors(document: &mut Value) {
    let error = serde_json::json!({
        "type": "object",
        "description": "Every error: a code from README's table of error codes, a message for a person, \
                        and for invalid input each field's JSON pointer and problem.",
        "required": ["ok", "error", "message", "details"],
        "properties": {
            "ok": {"type": "boolean", "enum": [false]},
            "error": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object"}}
        }
    });
    if let Some(components) = document.get_mut("components").and_then(Value::as_object_mut) {
        if let Some(schemas) = components.get_mut("schemas").and_then(Value::as_object_mut) {
            schemas.insert("Error".into(), error);
        }
        let bearer = serde_json::json!({"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "An API token (`plt_...`) or an access token; the portal's pages use the session \
                            cookie instead, with `x-csrf-token` on changes."
        }});
        components.insert("securitySchemes".into(), bearer);
    }
    if let Some(document) = document.as_object_mut() {
        document.insert("security".into(), serde_json::json!([{"bearer": []}]));
    }
    let body = serde_json::json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else { continue };
        for operation in operations.values_mut() {
            let Some(operation) = operation.as_object_mut() else { continue };
            let mut layers: Vec<(&str, &str)> = Vec::new();
            let public = operation.get("security").is_some_and(|s| s == &serde_json::json!([{}]));
            if !public {
                layers.push(("401", "no valid credential, or one that has expired"));
            }
            if operation.contains_key("requestBody") {
                layers.extend([
                    ("400", "the body is not JSON"),
                    ("413", "the body is larger than the server takes"),
                    ("415", "the body is not `application/json`"),
                    ("422", "a field is missing or of the wrong type (its JSON pointer in `details`)"),
                ]);
            }
            if path.contains('{') {
                layers.push(("404", "nothing of that name (or nothing the caller may read)"));
            }
            let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            for (status, description) in layers {
                responses.entry(status).or_insert_with(|| serde_json::json!({"description": description}));
            }
            for (status, response) in responses.iter_mut() {
                if (status.starts_with('4') || status.starts_with('5'))
                    && let Some(response) = response.as_object_mut()
                {
                    response.entry("content").or_insert_with(|| body.clone());
                }
            }
        }
    }
}

/// Merges every `allOf` of plain objects under `node`; whether any was merged.
fn merge_all_of(node: &mut Value, schemas: &Value) -> bool {
    let mut merged = false;
    match node {
        Value::Object(map) => {
            if let Some(object) = map.get("allOf").and_then(|parts| merged_object(parts, schemas)) {
                map.remove("allOf");
                for (key, value) in object {
                    map.entry(key).or_insert(value);
                }
                merged = true;
            }
            for child in map.values_mut() {
                merged |= merge_all_of(child, schemas);
            }
        }
        Value::Array(items) => {
            for child in items {
                merged |= merge_all_of(child, schemas);
            }
        }
        _ => {}
    }
    merged
}

/// The one object the parts describe together, when each is a plain object (by reference or
/// inline): their properties and required fields, closed if a part is closed.
fn merged_object(parts: &Value, schemas: &Value) -> Option<Map<String, Value>> {
    let (mut properties, mut required, mut closed) = (Map::new(), Vec::<Value>::new(), false);
    for part in parts.as_array()? {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(reference) => schemas.get(reference.strip_prefix("#/components/schemas/")?)?,
            None => part,
        };
        let plain = part.get("type").and_then(Value::as_str) == Some("object")
            && ["allOf", "oneOf", "anyOf"].iter().all(|k| part.get(k).is_none());
        if !plain {
            return None;
        }
        match part.get("additionalProperties") {
            Some(Value::Bool(false)) => closed = true,
            Some(_) => return None,
            None => {}
        }
        for (name, schema) in part.get("properties").and_then(Value::as_object).into_iter().flatten() {
            properties.insert(name.clone(), schema.clone());
        }
        for name in part.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !required.contains(name) {
                required.push(name.clone());
            }
        }
    }
    let mut object = Map::new();
    object.insert("type".into(), "object".into());
    if !required.is_empty() {
        object.insert("required".into(), Value::Array(required));
    }
    object.insert("properties".into(), Value::Object(properties));
    if closed {
        object.insert("additionalProperties".into(), false.into());
    }
    Some(object)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_flattened_view_becomes_one_closed_object() {
        let schemas = json!({
            "Action": {"type": "object", "required": ["identifier"], "additionalProperties": false,
                       "properties": {"identifier": {"type": "string"}}},
            "Open": {"type": "object", "properties": {"x": {}}, "additionalProperties": {"type": "string"}}
        });
        let mut view = json!({"description": "An action", "allOf": [
            {"$ref": "#/components/schemas/Action"},
            {"type": "object", "required": ["createdAt"], "properties": {"createdAt": {"type": "string"}}}
        ]});
        assert!(merge_all_of(&mut view, &schemas));
        assert_eq!(
            view,
            json!({"description": "An action", "type": "object", "required": ["identifier", "createdAt"],
                   "properties": {"identifier": {"type": "string"}, "createdAt": {"type": "string"}},
                   "additionalProperties": false})
        );
        // A part that takes other properties (a flattened map), or is a choice, is kept as written.
        let mut kept = json!({"allOf": [{"$ref": "#/components/schemas/Open"}, {"type": "object"}]});
        assert!(!merge_all_of(&mut kept, &schemas));
        let mut choice = json!({"allOf": [{"oneOf": [{"type": "object"}]}, {"type": "object"}]});
        assert!(!merge_all_of(&mut choice, &schemas));
    }
}
