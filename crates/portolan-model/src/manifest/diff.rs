//! What changes between the stored and the declared version of a document, field by field.

use serde::Serialize;
use serde_json::Value;

use crate::error::pointer_token;

/// One changed value: absent `before` is an addition, absent `after` a removal.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Difference {
    pub pointer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// Every value that differs between `before` and `after`, objects compared key by key (lists and
/// scalars as a whole), in document order.
pub fn diff(before: &Value, after: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(String::new(), before, after, &mut out);
    out
}

fn walk(pointer: String, before: &Value, after: &Value, out: &mut Vec<Difference>) {
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, old_value) in old {
                let at = format!("{pointer}/{}", pointer_token(key));
                match new.get(key) {
                    Some(new_value) => walk(at, old_value, new_value, out),
                    None => out.push(Difference { pointer: at, before: Some(old_value.clone()), after: None }),
                }
            }
            for (key, new_value) in new.iter().filter(|(k, _)| !old.contains_key(*k)) {
                let at = format!("{pointer}/{}", pointer_token(key));
                out.push(Difference { pointer: at, before: None, after: Some(new_value.clone()) });
            }
        }
        (old, new) if old == new => {}
        (old, new) => out.push(Difference { pointer, before: Some(old.clone()), after: Some(new.clone()) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_are_listed_by_pointer() {
        let before = json!({"title": "Cart", "properties": {"tier": "gold", "old": 1}, "team": ["a"]});
        let after = json!({"title": "Cart", "properties": {"tier": "silver", "new": true}, "team": ["a", "b"]});
        let changes = diff(&before, &after);
        let summary: Vec<(&str, Option<&Value>, Option<&Value>)> =
            changes.iter().map(|d| (d.pointer.as_str(), d.before.as_ref(), d.after.as_ref())).collect();
        assert_eq!(
            summary,
            [
                ("/properties/tier", Some(&json!("gold")), Some(&json!("silver"))),
                ("/properties/old", Some(&json!(1)), None),
                ("/properties/new", None, Some(&json!(true))),
                ("/team", Some(&json!(["a"])), Some(&json!(["a", "b"]))),
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }
}
