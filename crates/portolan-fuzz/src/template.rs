//! Template rendering: whatever the template and whatever its expressions give, a value read
//! from secrets never shows in what a person sees (the display rendering or an error), a secret
//! sent is kept for masking, and a rendered URL is an http(s) URL.

use portolan_model::error::FieldErrors;
use portolan_model::template::{Renderer, Target};
use serde_json::Value;

/// Marks every value a hidden expression gives; inputs that hold it elsewhere are skipped.
const SECRET: &str = "\u{1F512}";
const SECRET_ENCODED: &str = "%F0%9F%94%92";

/// The input, one field a line: where the template renders (`json`, `url` or `nats`), the
/// template, then the values its expressions give, each line `public <text>` or `hidden <text>`.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let target = match lines.next() {
        Some("url") => Target::Url,
        Some("nats") => Target::NatsSubject,
        _ => Target::Json,
    };
    let template = lines.next().unwrap_or_default().replace("\\n", "\n");
    let (mut public, mut hidden) = (Vec::new(), Vec::new());
    for line in lines {
        match line.split_once(' ') {
            Some(("hidden", value)) => hidden.push(value.to_string()),
            Some((_, value)) => public.push(value.to_string()),
            None => public.push(line.to_string()),
        }
    }
    let holds_marker = |text: &str| text.contains(SECRET) || text.to_ascii_uppercase().contains(SECRET_ENCODED);
    if holds_marker(&template) || public.iter().any(|v| holds_marker(v)) {
        return;
    }
    let mut renderer = Renderer::default();
    let mut errors = FieldErrors::default();
    renderer.add("field", &Value::String(template), target, "/field", &mut errors);
    if !errors.0.is_empty() {
        return;
    }
    let literal = renderer.public_program().is_none() && renderer.hidden_program().is_none();
    let public_outputs = renderer.public_program().map(|_| Value::from(public));
    let hidden_outputs = renderer.hidden_program().map(|_| {
        let values = hidden.iter().map(|v| Value::Array(vec![Value::String(format!("{SECRET}{v}"))]));
        Value::Array(values.collect())
    });
    match renderer.assemble(public_outputs, hidden_outputs) {
        Err(message) => assert!(!holds_marker(&message), "an error shows a secret: {message}"),
        Ok(rendering) => {
            let display = rendering.display.to_string();
            assert!(!holds_marker(&display), "the display shows a secret: {display}");
            let real = &rendering.real["field"];
            // (A template with no expression is a literal, checked where it is defined.)
            if target == Target::Url && !literal {
                let text = real.as_str().expect("a URL renders as text");
                let url = url::Url::parse(text).expect("a rendered URL parses");
                assert!(matches!(url.scheme(), "http" | "https"), "{text} is not http(s)");
            }
            // Values shorter than eight characters are not masked elsewhere (they would mask
            // every short word); longer ones must be.
            let real = rendering.real.to_string();
            for value in hidden.iter().map(|h| format!("{SECRET}{h}")).filter(|v| v.chars().count() >= 8) {
                let sent = serde_json::to_string(&value).expect("a string serializes");
                if real.contains(sent.trim_matches('"')) {
                    assert!(rendering.derived.contains(&value), "the secret {value:?} sent is not kept for masking");
                }
            }
        }
    }
}
