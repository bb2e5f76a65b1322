//! Templates: JSON documents whose strings may hold jq inside `{{ }}`, rendered over the context
//! `{inputs, entity, action, run: {id, url, token}, trigger, secrets}`.
//!
//! A string that is exactly one placeholder takes the expression's value as it is (a number stays
//! a number); a string that mixes text and placeholders is interpolated (strings as they are,
//! other values as JSON). An expression with no output renders as `null`; with several, the first
//! counts.
//!
//! What a template reads decides who may see what it gives. An expression that mentions `secrets`
//! or `token` is *hidden*: it is evaluated over the whole context, and wherever a person sees the
//! rendering (dry runs, previews, a run's payload) its value shows as [`MASK`], whatever it turned
//! the secret into. Every other expression is evaluated over the context without `secrets` and
//! `run.token` ([`public_context`]), so it cannot reach them however it is written. The two kinds
//! run as two separate programs; the pieces are put together here, so one rendering gives both the
//! real document (for the backend only) and the one to show.
//!
//! Values that land in a URL are percent-encoded for the part they land in, and refused where they
//! would still change the URL's structure; values in a NATS subject must be whole tokens.

use serde_json::Value;

use crate::error::FieldErrors;

mod render;
mod secrets;
pub use render::*;
pub use secrets::*;

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

/// What a masked value shows as.
pub const MASK: &str = "********";

/// Shortest value derived from a secret that is also masked as text where a run's record quotes
/// it (a backend's answer, an error); shorter ones (a length, a flag) would mask ordinary words.
const MIN_DERIVED_LEN: usize = 8;

/// Whether an expression may read the hidden part of the context (`secrets`, `run.token`). The
/// test is on the text, so it errs towards hiding: `.inputs.token_count` is hidden too.
pub fn reads_hidden(code: &str) -> bool {
    code.contains("secrets") || code.contains("token")
}

/// The context without what only hidden expressions may read: `secrets` and `run.token`.
pub fn public_context(context: &Value) -> Value {
    let mut public = context.clone();
    if let Value::Object(map) = &mut public {
        map.remove("secrets");
        if let Some(Value::Object(run)) = map.get_mut("run") {
            run.remove("token");
        }
    }
    public
}

/// Renders in this process, with no bound on time (for tests; the server uses its sandbox).
#[cfg(test)]
pub(crate) fn render_in_process(renderer: &Renderer, context: &Value) -> Result<Rendering, String> {
    let run = |program: Option<String>, input: &Value| -> Result<Option<Value>, String> {
        program.map(|p| crate::jq::eval(&p, input, 1).map(|mut out| out.remove(0))).transpose()
    };
    let public = run(renderer.public_program(), &public_context(context))?;
    let hidden = run(renderer.hidden_program(), context)?;
    renderer.assemble(public, hidden)
}

#[cfg(test)]
mod tests {
    use super::render::percent_encode;
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use serde_json::json;

    fn renderer(fields: &[(&str, Value, Target)]) -> Renderer {
        let mut renderer = Renderer::default();
        let mut errors = FieldErrors::default();
        for (key, template, target) in fields {
            check(template, &format!("/{key}"), &mut errors);
            renderer.add(key, template, *target, &format!("/{key}"), &mut errors);
        }
        assert!(errors.is_empty(), "{errors:?}");
        renderer
    }

    fn context(inputs: Value, secret: &str) -> Value {
        json!({"inputs": inputs, "entity": {"identifier": "cart"}, "action": {"identifier": "deploy"},
            "run": {"id": "r_1", "url": "https://portal.example.com/api/v1/actions/runs/r_1", "token": "rtok-0123456789"},
            "trigger": {"by": "ana@example.com"}, "secrets": {"X": secret}})
    }

    fn render_json(template: Value, inputs: Value) -> Value {
        let r = renderer(&[("doc", template, Target::Json)]);
        render_in_process(&r, &context(inputs, "unused")).expect("renders").real["doc"].clone()
    }

    #[test]
    fn whole_placeholders_keep_their_type_and_mixed_strings_interpolate() {
        let template = json!({
            "count": "{{ .inputs.replicas }}",
            "label": "svc-{{ .inputs.name }} x{{.inputs.replicas}}",
            "plain": "no \\ placeholders",
            "list": ["{{ .inputs.name }}", 1, true, null],
            "missing": "{{ .entity.nothing }}",
            "many": "{{ 1, 2 }}",
            "none": "{{ empty }}",
            "object": "at {{ {a: .inputs.replicas} }}",
            "comment": "{{ .inputs.name # a note }}!"
        });
        assert_eq!(
            render_json(template, json!({"replicas": 3, "name": "cart \"x\""})),
            json!({
                "count": 3,
                "label": "svc-cart \"x\" x3",
                "plain": "no \\ placeholders",
                "list": ["cart \"x\"", 1, true, null],
                "missing": null,
                "many": 1,
                "none": null,
                "object": "at {\"a\":3}",
                "comment": "cart \"x\"!"
            })
        );
    }

    #[test]
    fn broken_templates_are_named_by_pointer() {
        let mut errors = FieldErrors::default();
        let template = json!({"a": {"b/c": "{{ .x "}, "d": ["{{ .y | }}"], "e": "{{ }}"});
        Renderer::default().add("body", &template, Target::Json, "/body", &mut errors);
        check(&template, "/body", &mut errors);
        let mut paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["/body/a/b~1c", "/body/d/0", "/body/e"], "bad braces, then bad jq");
    }

    #[test]
    fn what_reads_secrets_is_shown_masked_and_nothing_else_can_reach_them() {
        let r = renderer(&[
            ("headers", json!({"Authorization": "Basic {{ (\"deploy:\" + .secrets.X) | @base64 }}"}), Target::Json),
            (
                "body",
                json!({"all": "{{ . }}", "keys": "{{ [.. | strings] | join(\",\") }}", "sneaky": "{{ .[\"sec\" + \"rets\"] }}",
                    "length": "{{ .secrets.X | length }}", "run": "{{ .run }}", "who": "{{ .trigger.by }}"}),
                Target::Json,
            ),
        ]);
        let out = render_in_process(&r, &context(json!({}), "s3cr3t-pass")).expect("renders");
        assert_eq!(out.real["headers"]["Authorization"], format!("Basic {}", STANDARD.encode("deploy:s3cr3t-pass")));
        assert_eq!(out.display["headers"]["Authorization"], "Basic ********");
        assert_eq!(out.real["body"]["length"], 11);
        assert_eq!(out.display["body"]["length"], "********", "even a length is not shown");
        assert_eq!(out.display["body"]["who"], "ana@example.com");
        assert_eq!(out.real["body"]["sneaky"], Value::Null);
        assert_eq!(
            out.real["body"]["run"],
            json!({"id": "r_1", "url": "https://portal.example.com/api/v1/actions/runs/r_1"})
        );
        let everything = out.real["body"].to_string();
        assert!(!everything.contains("s3cr3t") && !everything.contains("rtok-"), "{everything}");
        assert_eq!(out.derived, [STANDARD.encode("deploy:s3cr3t-pass")], "what a backend could echo is masked too");
    }

    #[test]
    fn a_failing_hidden_expression_names_where_not_what() {
        let r = renderer(&[("body", json!({"n": "{{ .secrets.X | tonumber }}"}), Target::Json)]);
        let error = render_in_process(&r, &context(json!({}), "s3cr3t-pass")).expect_err("fails");
        assert!(error.contains("/body/n") && !error.contains("s3cr3t"), "{error}");
    }

    fn url(template: &str, inputs: Value) -> Result<(String, String), String> {
        let r = renderer(&[("url", json!(template), Target::Url)]);
        let out = render_in_process(&r, &context(inputs, "p@ss/w?rd#1"))?;
        Ok((out.real["url"].as_str().expect("text").into(), out.display["url"].as_str().expect("text").into()))
    }

    #[test]
    fn url_values_are_encoded_for_the_part_they_land_in() {
        let inputs = json!({"branch": "../../admin/delete-all#", "project": "main?project=other&x=", "n": 3});
        let (real, _) = url("https://ci.example.com/build/{{ .inputs.branch }}/go?p={{ .inputs.project }}&n={{ .inputs.n }}#{{ .inputs.branch }}", inputs).expect("renders");
        assert_eq!(
            real,
            "https://ci.example.com/build/..%2F..%2Fadmin%2Fdelete-all%23/go?p=main%3Fproject%3Dother%26x%3D&n=3#..%2F..%2Fadmin%2Fdelete-all%23"
        );
        let parsed = url::Url::parse(&real).expect("parses");
        assert_eq!(parsed.path_segments().expect("path").count(), 3, "one segment for the value");
        assert_eq!(parsed.query_pairs().count(), 2, "one query value for the value");

        let (real, display) = url("https://ci.example.com/hook?key={{ .secrets.X }}", json!({})).expect("renders");
        assert_eq!(real, "https://ci.example.com/hook?key=p%40ss%2Fw%3Frd%231");
        assert_eq!(display, "https://ci.example.com/hook?key=********");
        let (real, _) =
            url("{{ .inputs.base }}/build/{{ .inputs.b }}", json!({"base": "https://ci.example.com/v1", "b": "a b"}))
                .expect("a leading placeholder is the base URL");
        assert_eq!(real, "https://ci.example.com/v1/build/a%20b");
        let (real, _) = url("https://{{ .inputs.host }}.example.com:8443/x", json!({"host": "eu-1"})).expect("renders");
        assert_eq!(real, "https://eu-1.example.com:8443/x");
    }

    #[test]
    fn url_values_that_would_still_change_its_structure_are_refused() {
        for (template, inputs) in [
            ("https://ci.example.com/build/{{ .inputs.b }}/go", json!({"b": ".."})),
            ("https://ci.example.com/build/{{ .inputs.b }}", json!({"b": "."})),
            ("https://ci.example.com/build/{{ .inputs.b }}/go", json!({"b": ""})),
            ("https://ci.example.com/build/{{ .inputs.b }}{{ .inputs.b }}/go", json!({"b": "."})),
            ("https://{{ .inputs.b }}/x", json!({"b": "evil.example.com/"})),
            ("https://{{ .inputs.b }}.example.com/x", json!({"b": "a@b"})),
            ("{{ .inputs.b }}/x", json!({"b": "file:///etc/passwd"})),
            ("{{ .inputs.b }}/x", json!({"b": "ci.example.com"})),
        ] {
            let error = url(template, inputs.clone()).expect_err(template);
            assert!(
                error.starts_with("/url: {{ .inputs.b }} gave") && error.contains("refused"),
                "{template}: {error}"
            );
        }
        let error = url("https://{{ .secrets.X }}/x", json!({})).expect_err("a secret that is no host");
        assert!(!error.contains("p@ss") && error.contains("********"), "{error}");
    }

    #[test]
    fn nats_subject_values_must_be_whole_tokens() {
        let subject = |template: &str, value: &str| {
            let r = renderer(&[("subject", json!(template), Target::NatsSubject)]);
            render_in_process(&r, &context(json!({"v": value}), "x")).map(|o| o.real["subject"].clone())
        };
        assert_eq!(subject("deploy.{{ .inputs.v }}.start", "cart"), Ok(json!("deploy.cart.start")));
        assert_eq!(subject("{{ .inputs.v }}", "deploy.cart"), Ok(json!("deploy.cart")), "alone, a whole subject");
        for bad in ["a.b", "*", ">", "a b", "", "a\tb"] {
            assert!(subject("deploy.{{ .inputs.v }}.start", bad).is_err(), "{bad:?}");
        }
        assert!(subject("{{ .inputs.v }}", "deploy.>").is_err());
        for system in ["$JS.API.STREAM.DELETE.orders", "_INBOX.abc", "deploy.$SYS"] {
            assert!(subject("{{ .inputs.v }}", system).is_err(), "{system}");
        }
        assert!(subject("deploy.{{ .inputs.v }}", "$SYS").is_err());
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
        let secret = "s3cr3t pass/word+1".to_string();
        let b64 = STANDARD.encode(&secret);
        let url = URL_SAFE_NO_PAD.encode(&secret);
        let mut value = json!({"raw": format!("Bearer {secret}"), "b64": b64, "url": url,
            "uri": "s3cr3t%20pass%2Fword%2B1", "form": "?p=s3cr3t+pass%2Fword%2B1", "other": "keep me"});
        mask(&mut value, &[secret]);
        assert_eq!(
            value,
            json!({"raw": "Bearer ********", "b64": "********", "url": "********",
            "uri": "********", "form": "?p=********", "other": "keep me"})
        );
    }

    /// A transformation of the canary secret `.secrets.X`: the expression, and what it gives.
    fn transformations(prefix: &str, secret: &str) -> Vec<(String, String)> {
        let quoted = Value::from(prefix).to_string();
        let hex = crate::hex(secret.as_bytes());
        vec![
            (format!("({quoted} + .secrets.X) | @base64"), STANDARD.encode(format!("{prefix}{secret}"))),
            (format!("({quoted} + .secrets.X) | @base64 | @base64d"), format!("{prefix}{secret}")),
            (
                ".secrets.X | explode | map(\"0123456789abcdef\"[(. / 16 | floor):(. / 16 | floor) + 1] + \"0123456789abcdef\"[(. % 16):(. % 16) + 1]) | add".into(),
                hex,
            ),
            (".secrets.X | @uri".into(), percent_encode(secret)),
            (".secrets.X | ascii_upcase".into(), secret.to_ascii_uppercase()),
            (".secrets.X | ascii_downcase".into(), secret.to_ascii_lowercase()),
            (".secrets.X | tojson".into(), Value::from(secret).to_string()),
            ("{s: .secrets.X} | @json".into(), json!({"s": secret}).to_string()),
            (".secrets.X[1:]".into(), secret[1..].to_string()),
            (".secrets.X | explode | reverse | implode".into(), secret.chars().rev().collect()),
            (".inputs.branch + \":\" + .secrets.X".into(), format!("main:{secret}")),
        ]
    }

    /// Every form the canary could be shown in.
    fn forms(prefix: &str, secret: &str) -> Vec<String> {
        let mut forms = Vec::new();
        for cut in 0..=prefix.len() {
            let shifted = format!("{}{secret}", &prefix[cut..]);
            for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                forms.push(engine.encode(&shifted));
            }
        }
        forms.extend(transformations(prefix, secret).into_iter().map(|(_, given)| given));
        let escaped = Value::from(secret).to_string();
        forms.push(escaped[1..escaped.len() - 1].to_string());
        forms.push(secret.to_string());
        forms
    }

    fn strings(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
            Value::Object(map) => map.values().for_each(|i| strings(i, out)),
            _ => {}
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        #[test]
        fn a_secret_is_never_shown_however_a_template_transforms_it(
            secret in "[ -~]{10,24}",
            prefix in "[a-z:]{0,6}",
            which in 0usize..11,
        ) {
            proptest::prop_assume!(!secret.contains("****") && !secret.trim().is_empty());
            let (expression, given) = transformations(&prefix, &secret).swap_remove(which);
            let r = renderer(&[
                ("headers", json!({"Authorization": format!("Basic {{{{ {expression} }}}}")}), Target::Json),
                ("body", json!({"whole": format!("{{{{ {expression} }}}}"), "all": "{{ tojson }}",
                    "branch": "{{ .inputs.branch }}"}), Target::Json),
                ("url", json!(format!("https://ci.example.com/x?q={{{{ {expression} }}}}")), Target::Url),
            ]);
            let out = render_in_process(&r, &context(json!({"branch": "main"}), &secret)).expect("renders");
            let mut shown = vec![out.display.to_string()];
            strings(&out.display, &mut shown);
            for form in forms(&prefix, &secret) {
                for text in &shown {
                    proptest::prop_assert!(!text.contains(&form), "{form:?} shown in {text}");
                }
            }
            proptest::prop_assert_eq!(&out.display["headers"]["Authorization"], &json!("Basic ********"));
            proptest::prop_assert_eq!(&out.display["body"]["whole"], &json!(MASK));
            proptest::prop_assert_eq!(&out.display["body"]["branch"], &json!("main"));
            proptest::prop_assert_eq!(&out.real["headers"]["Authorization"], &json!(format!("Basic {given}")));
            proptest::prop_assert_eq!(&out.real["body"]["whole"], &json!(given));
            proptest::prop_assert_eq!(&out.real["url"], &json!(format!("https://ci.example.com/x?q={}", percent_encode(&given))));
            proptest::prop_assert!(!out.real["body"]["all"].as_str().unwrap_or_default().contains(&secret));
        }
    }
}
