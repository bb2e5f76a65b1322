//! Templates: JSON documents whose strings may hold jq inside `{{ }}`. A whole template becomes
//! one jq program that builds the rendered document, so rendering costs one evaluation however
//! many placeholders it holds.
//!
//! A string that is exactly one placeholder takes the expression's value as it is (a number stays
//! a number); a string that mixes text and placeholders is interpolated (strings as they are,
//! other values as JSON). An expression with no output renders as `null`; with several, the first
//! counts.

use serde_json::Value;

use crate::error::FieldErrors;

/// Turns a template into the jq program that renders it; errors name the JSON pointer (under
/// `path`) of the string that is not a valid template. The expressions are not compiled here
/// (see [`check`]): rendering needs no second look at what was checked when the action was saved.
pub fn to_jq(template: &Value, path: &str, errors: &mut FieldErrors) -> String {
    match template {
        Value::String(s) => string_to_jq(s, path, errors),
        Value::Array(items) => {
            let parts: Vec<String> =
                items.iter().enumerate().map(|(i, item)| to_jq(item, &format!("{path}/{i}"), errors)).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(key, item)| {
                    let child = format!("{path}/{}", crate::error::pointer_token(key));
                    format!("{}: {}", Value::from(key.as_str()), to_jq(item, &child, errors))
                })
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// One expression's first output, or `null`.
fn first(expression: &str) -> String {
    format!("([{expression}] | .[0])")
}

fn string_to_jq(s: &str, path: &str, errors: &mut FieldErrors) -> String {
    let pieces = match split(s) {
        Ok(pieces) => pieces,
        Err(message) => {
            errors.push(path, message);
            return "null".into();
        }
    };
    match pieces.as_slice() {
        [] => "\"\"".into(),
        [Piece::Expression(code)] => first(code),
        [Piece::Text(text)] => Value::from(text.as_str()).to_string(),
        _ => {
            let mut out = String::from("\"");
            for piece in &pieces {
                match piece {
                    Piece::Text(text) => {
                        let quoted = Value::from(text.as_str()).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    }
                    Piece::Expression(code) => {
                        out.push_str("\\(");
                        out.push_str(&first(code));
                        out.push(')');
                    }
                }
            }
            out.push('"');
            out
        }
    }
}

/// Checks that every expression of a template compiles; errors name the string's JSON pointer.
pub fn check(template: &Value, path: &str, errors: &mut FieldErrors) {
    match template {
        Value::String(s) => {
            for piece in split(s).unwrap_or_default() {
                if let Piece::Expression(code) = piece
                    && let Err(message) = crate::jq::check(&code)
                {
                    errors.push(path, format!("the expression {{{{ {code} }}}} {message}"));
                }
            }
        }
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, item)| check(item, &format!("{path}/{i}"), errors))
        }
        Value::Object(map) => {
            for (key, item) in map {
                check(item, &format!("{path}/{}", crate::error::pointer_token(key)), errors);
            }
        }
        _ => {}
    }
}

#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Expression(String),
}

fn split(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or("a '{{' is not closed by '}}'")?;
        let code = after[..close].trim();
        if code.is_empty() {
            return Err("an empty '{{ }}'".into());
        }
        pieces.push(Piece::Expression(code.to_string()));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

/// The names of the secrets a template reads as `.secrets.NAME` (or `.secrets["NAME"]`).
pub fn secret_names(template: &Value) -> Vec<String> {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        regex::Regex::new(r#"\.secrets(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*"([^"]+)"\s*\])"#).expect("valid regex")
    });
    let mut names = Vec::new();
    let mut visit = |s: &str| {
        for capture in pattern.captures_iter(s) {
            if let Some(name) = capture.get(1).or_else(|| capture.get(2)) {
                names.push(name.as_str().to_string());
            }
        }
    };
    walk_strings(template, &mut visit);
    names.sort();
    names.dedup();
    names
}

fn walk_strings(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => visit(s),
        Value::Array(items) => items.iter().for_each(|i| walk_strings(i, visit)),
        Value::Object(map) => map.values().for_each(|i| walk_strings(i, visit)),
        _ => {}
    }
}

/// `text` with every occurrence of each secret value replaced by `********`.
pub fn mask_text(text: &str, secrets: &[String]) -> String {
    let mut value = Value::String(text.to_string());
    mask(&mut value, secrets);
    match value {
        Value::String(masked) => masked,
        _ => String::new(),
    }
}

/// The forms a template can turn a secret into and still give it away: as is, base64 (standard
/// and URL-safe, padded or not) and percent-encoded (as jq's `@uri` and form encoding write it).
fn secret_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = secret.as_bytes();
    let percent: String = bytes
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (*b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut forms = vec![
        secret.to_string(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        percent.replace("%20", "+"),
        percent,
    ];
    // Longest first, so that a form containing another is masked whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

/// Replaces every occurrence of each secret value in `value`'s strings, in any of the forms a
/// template can encode it in, with `********`.
pub fn mask(value: &mut Value, secrets: &[String]) {
    let forms: Vec<String> = secrets.iter().filter(|s| !s.is_empty()).flat_map(|s| secret_forms(s)).collect();
    mask_forms(value, &forms);
}

fn mask_forms(value: &mut Value, forms: &[String]) {
    match value {
        Value::String(s) => {
            for form in forms {
                if s.contains(form.as_str()) {
                    *s = s.replace(form.as_str(), "********");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| mask_forms(i, forms)),
        Value::Object(map) => map.values_mut().for_each(|i| mask_forms(i, forms)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(template: Value, input: Value) -> Value {
        let mut errors = FieldErrors::default();
        check(&template, "", &mut errors);
        let program = to_jq(&template, "", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        crate::jq::eval(&program, &input, 1).expect("renders").remove(0)
    }

    #[test]
    fn whole_placeholders_keep_their_type_and_mixed_strings_interpolate() {
        let input = json!({"inputs": {"replicas": 3, "name": "cart \"x\""}, "entity": null});
        let template = json!({
            "count": "{{ .inputs.replicas }}",
            "label": "svc-{{ .inputs.name }} x{{.inputs.replicas}}",
            "plain": "no \\ placeholders",
            "list": ["{{ .inputs.name }}", 1, true, null],
            "missing": "{{ .entity.identifier }}",
            "many": "{{ 1, 2 }}",
            "none": "{{ empty }}"
        });
        assert_eq!(
            render(template, input),
            json!({
                "count": 3,
                "label": "svc-cart \"x\" x3",
                "plain": "no \\ placeholders",
                "list": ["cart \"x\"", 1, true, null],
                "missing": null,
                "many": 1,
                "none": null
            })
        );
    }

    #[test]
    fn broken_templates_are_named_by_pointer() {
        let mut errors = FieldErrors::default();
        let template = json!({"a": {"b/c": "{{ .x "}, "d": ["{{ .y | }}"], "e": "{{ }}"});
        to_jq(&template, "/body", &mut errors);
        check(&template, "/body", &mut errors);
        let mut paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["/body/a/b~1c", "/body/d/0", "/body/e"], "bad braces, then bad jq");
    }

    #[test]
    fn finds_secret_names_and_masks_values() {
        let template = json!({"h": "Bearer {{ .secrets.API_TOKEN }}", "b": ["{{ .secrets[\"db-pass\"] }}"]});
        assert_eq!(secret_names(&template), ["API_TOKEN", "db-pass"]);
        let mut rendered = json!({"h": "Bearer s3cr3t", "b": ["pw", "other"]});
        mask(&mut rendered, &["s3cr3t".into(), "pw".into()]);
        assert_eq!(rendered, json!({"h": "Bearer ********", "b": ["********", "other"]}));
    }

    #[test]
    fn secrets_are_masked_in_every_encoding_a_template_can_give_them() {
        use base64::Engine;
        let secret = "s3cr3t pass/word+1".to_string();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&secret);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret);
        let mut value = json!({"raw": format!("Bearer {secret}"), "b64": b64, "url": url,
            "uri": "s3cr3t%20pass%2Fword%2B1", "form": "?p=s3cr3t+pass%2Fword%2B1", "other": "keep me"});
        mask(&mut value, &[secret]);
        assert_eq!(
            value,
            json!({"raw": "Bearer ********", "b64": "********", "url": "********",
            "uri": "********", "form": "?p=********", "other": "keep me"})
        );
    }
}
