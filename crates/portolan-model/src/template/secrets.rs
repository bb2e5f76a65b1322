//! Secrets in templates: which a template reads, and masking their values in what people see.

use serde_json::Value;

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
