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

/// What a rendered string becomes: its placeholders' values are encoded, or refused, to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Json,
    /// An http(s) URL: values are percent-encoded for the part they land in.
    Url,
    /// A NATS subject: each value must be one token (or, alone, a whole subject).
    NatsSubject,
}

/// A set of templates ready to render: their expressions split by what they may read.
#[derive(Debug, Default)]
pub struct Renderer {
    fields: Vec<(String, Node)>,
    pieces: Vec<Expression>,
}

#[derive(Debug)]
struct Expression {
    code: String,
    /// The JSON pointer of the string it sits in.
    pointer: String,
    hidden: bool,
}

#[derive(Debug)]
enum Node {
    Literal(Value),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
    /// A string that is exactly one placeholder (in JSON): the expression's value as it is.
    Whole(usize),
    Text(Vec<Part>, Target),
}

#[derive(Debug)]
enum Part {
    Text(String),
    Piece(usize),
}

/// One rendering, twice.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendering {
    /// With every value: for the backend only.
    pub real: Value,
    /// With every hidden expression's value shown as [`MASK`]: what a person may see.
    pub display: Value,
    /// The values hidden expressions gave (as text, long enough to mask), to mask wherever a
    /// record could quote them (a backend's answer, an error).
    pub derived: Vec<String>,
}

impl Renderer {
    /// Adds a template as the field `key` of the rendering; errors name the JSON pointer (under
    /// `pointer`) of a string that is not a valid template. The expressions are not compiled here
    /// (see [`check`]).
    pub fn add(&mut self, key: &str, template: &Value, target: Target, pointer: &str, errors: &mut FieldErrors) {
        let node = self.node(template, target, pointer, errors);
        self.fields.push((key.to_string(), node));
    }

    fn node(&mut self, template: &Value, target: Target, pointer: &str, errors: &mut FieldErrors) -> Node {
        match template {
            Value::String(s) => self.string_node(s, target, pointer, errors),
            Value::Array(items) => Node::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.node(item, Target::Json, &format!("{pointer}/{i}"), errors))
                    .collect(),
            ),
            Value::Object(map) => Node::Object(
                map.iter()
                    .map(|(key, item)| {
                        let child = format!("{pointer}/{}", crate::error::pointer_token(key));
                        (key.clone(), self.node(item, Target::Json, &child, errors))
                    })
                    .collect(),
            ),
            other => Node::Literal(other.clone()),
        }
    }

    fn string_node(&mut self, s: &str, target: Target, pointer: &str, errors: &mut FieldErrors) -> Node {
        let pieces = match split(s) {
            Ok(pieces) => pieces,
            Err(message) => {
                errors.push(pointer, message);
                return Node::Literal(Value::Null);
            }
        };
        if !pieces.iter().any(|p| matches!(p, Piece::Expression(_))) {
            return Node::Literal(Value::from(s));
        }
        let parts: Vec<Part> = pieces
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(text) => Part::Text(text),
                Piece::Expression(code) => {
                    let hidden = reads_hidden(&code);
                    self.pieces.push(Expression { code, pointer: pointer.to_string(), hidden });
                    Part::Piece(self.pieces.len() - 1)
                }
            })
            .collect();
        if target == Target::Url
            && let Err(message) = check_url_shape(&parts)
        {
            errors.push(pointer, message);
        }
        match parts.as_slice() {
            [Part::Piece(i)] if target == Target::Json => Node::Whole(*i),
            _ => Node::Text(parts, target),
        }
    }

    /// The program that gives the public expressions' values, as an array, over
    /// [`public_context`]; `None` if there are none.
    pub fn public_program(&self) -> Option<String> {
        // The newline ends a `#` comment the expression may close with.
        self.program(false, |code| format!("([{code}\n] | .[0])"))
    }

    /// The program that gives the hidden expressions' values over the whole context, as an array
    /// of `[value]`, or `null` where one failed (its message could quote a secret); `None` if
    /// there are none.
    pub fn hidden_program(&self) -> Option<String> {
        self.program(true, |code| format!("(try [([{code}\n] | .[0])] catch null)"))
    }

    fn program(&self, hidden: bool, wrap: impl Fn(&str) -> String) -> Option<String> {
        let parts: Vec<String> = self.pieces.iter().filter(|p| p.hidden == hidden).map(|p| wrap(&p.code)).collect();
        (!parts.is_empty()).then(|| format!("[{}]", parts.join(", ")))
    }

    /// Puts the rendering together from what [`Self::public_program`] and
    /// [`Self::hidden_program`] gave. An error never quotes a hidden expression's value.
    pub fn assemble(&self, public: Option<Value>, hidden: Option<Value>) -> Result<Rendering, String> {
        let mut values = vec![Value::Null; self.pieces.len()];
        let mut fill = |outputs: Option<Value>, want_hidden: bool| -> Result<(), String> {
            let slots: Vec<usize> = (0..self.pieces.len()).filter(|&i| self.pieces[i].hidden == want_hidden).collect();
            if slots.is_empty() {
                return Ok(());
            }
            let outputs = match outputs {
                Some(Value::Array(outputs)) if outputs.len() == slots.len() => outputs,
                _ => return Err("the templates gave an unexpected result".into()),
            };
            for (slot, output) in slots.into_iter().zip(outputs) {
                values[slot] = if want_hidden {
                    match output {
                        Value::Array(mut one) if one.len() == 1 => one.remove(0),
                        _ => return Err(hidden_failure(&self.pieces[slot].pointer)),
                    }
                } else {
                    output
                };
            }
            Ok(())
        };
        fill(public, false)?;
        fill(hidden, true)?;
        let mut real = serde_json::Map::new();
        let mut display = serde_json::Map::new();
        let mut derived = Vec::new();
        for (key, node) in &self.fields {
            let (r, d) = self.build(node, &values, &mut derived)?;
            real.insert(key.clone(), r);
            display.insert(key.clone(), d);
        }
        derived.sort();
        derived.dedup();
        Ok(Rendering { real: Value::Object(real), display: Value::Object(display), derived })
    }

    fn build(&self, node: &Node, values: &[Value], derived: &mut Vec<String>) -> Result<(Value, Value), String> {
        Ok(match node {
            Node::Literal(value) => (value.clone(), value.clone()),
            Node::Array(items) => {
                let (mut real, mut display) = (Vec::new(), Vec::new());
                for item in items {
                    let (r, d) = self.build(item, values, derived)?;
                    real.push(r);
                    display.push(d);
                }
                (Value::Array(real), Value::Array(display))
            }
            Node::Object(fields) => {
                let (mut real, mut display) = (serde_json::Map::new(), serde_json::Map::new());
                for (key, item) in fields {
                    let (r, d) = self.build(item, values, derived)?;
                    real.insert(key.clone(), r);
                    display.insert(key.clone(), d);
                }
                (Value::Object(real), Value::Object(display))
            }
            Node::Whole(i) => {
                let value = values[*i].clone();
                if self.pieces[*i].hidden {
                    remember(derived, interpolated(&value));
                    (value, Value::from(MASK))
                } else {
                    (value.clone(), value)
                }
            }
            Node::Text(parts, target) => {
                let (real, display) = match target {
                    Target::Json => self.json_text(parts, values, derived),
                    Target::Url => self.url_text(parts, values, derived)?,
                    Target::NatsSubject => self.subject_text(parts, values, derived)?,
                };
                (Value::String(real), Value::String(display))
            }
        })
    }

    fn json_text(&self, parts: &[Part], values: &[Value], derived: &mut Vec<String>) -> (String, String) {
        let mut out = TwoTexts::default();
        for part in parts {
            match part {
                Part::Text(text) => out.text(text),
                Part::Piece(i) => {
                    let value = interpolated(&values[*i]);
                    out.value(self.pieces[*i].hidden, &value, &value, derived);
                }
            }
        }
        (out.real, out.display)
    }

    fn url_text(
        &self,
        parts: &[Part],
        values: &[Value],
        derived: &mut Vec<String>,
    ) -> Result<(String, String), String> {
        let mut out = TwoTexts::default();
        let mut path_pieces = Vec::new();
        for part in parts {
            let (i, raw) = match part {
                Part::Text(text) => {
                    out.text(text);
                    continue;
                }
                Part::Piece(i) => (*i, interpolated(&values[*i])),
            };
            let piece = &self.pieces[i];
            let refuse = |why: &str| Err(refusal(piece, &raw, why));
            let sent = match url_part(&out.real) {
                UrlPart::Start => match url::Url::parse(&raw) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => raw.clone(),
                    _ => return refuse("the URL's start must be a whole http or https URL"),
                },
                UrlPart::Scheme => return refuse("a URL's scheme cannot come from a template"),
                UrlPart::Authority => {
                    let host_like =
                        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | ':' | '[' | ']');
                    if raw.is_empty() || !raw.chars().all(host_like) {
                        return refuse(
                            "the URL's host may hold only letters, digits, '.', '-', '_', '~', ':', '[' and ']'",
                        );
                    }
                    raw.clone()
                }
                UrlPart::Path => {
                    let encoded = percent_encode(&raw);
                    path_pieces.push((i, out.real.len(), out.real.len() + encoded.len()));
                    encoded
                }
                UrlPart::Query | UrlPart::Fragment => percent_encode(&raw),
            };
            out.value(piece.hidden, &raw, &sent, derived);
        }
        let TwoTexts { real, display } = out;
        // A value alone in a path segment that makes it empty, `.` or `..` moves the request to
        // another path; percent-encoded dots count as dots (URL parsers resolve `%2e%2e` too).
        for (i, start, end) in path_pieces {
            let from = real[..start].rfind('/').map_or(0, |at| at + 1);
            let to = real[end..].find(['/', '?', '#']).map_or(real.len(), |at| end + at);
            let segment = real[from..to].to_ascii_lowercase().replace("%2e", ".");
            if matches!(segment.as_str(), "" | "." | "..") {
                let raw = interpolated(&values[i]);
                return Err(refusal(&self.pieces[i], &raw, "it would make an empty, '.' or '..' path segment"));
            }
        }
        match url::Url::parse(&real) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok((real, display)),
            _ => Err(format!("the URL renders as {display:?}, which is not an http or https URL")),
        }
    }

    fn subject_text(
        &self,
        parts: &[Part],
        values: &[Value],
        derived: &mut Vec<String>,
    ) -> Result<(String, String), String> {
        let mut out = TwoTexts::default();
        let alone = parts.len() == 1;
        for part in parts {
            match part {
                Part::Text(text) => out.text(text),
                Part::Piece(i) => {
                    let piece = &self.pieces[*i];
                    let raw = interpolated(&values[*i]);
                    let fits = if alone { nats_subject(&raw) } else { nats_token(&raw) };
                    if !fits {
                        let why = "a value in a NATS subject must be one token: not empty, no '.', '*', '>' or spaces";
                        return Err(refusal(piece, &raw, why));
                    }
                    out.value(piece.hidden, &raw, &raw, derived);
                }
            }
        }
        if !nats_subject(&out.real) {
            return Err(format!("the subject renders as {:?}, which is not a NATS subject", out.display));
        }
        Ok((out.real, out.display))
    }
}

/// A text being rendered twice: as sent, and as a person sees it (hidden values masked).
#[derive(Default)]
struct TwoTexts {
    real: String,
    display: String,
}

impl TwoTexts {
    fn text(&mut self, text: &str) {
        self.real.push_str(text);
        self.display.push_str(text);
    }

    /// A placeholder's value: `raw` as the expression gave it, `sent` as it goes into the text.
    /// A hidden one is masked, and both forms are remembered for masking elsewhere.
    fn value(&mut self, hidden: bool, raw: &str, sent: &str, derived: &mut Vec<String>) {
        self.real.push_str(sent);
        if hidden {
            self.display.push_str(MASK);
            remember(derived, raw.to_string());
            if sent != raw {
                remember(derived, sent.to_string());
            }
        } else {
            self.display.push_str(sent);
        }
    }
}

/// The error for a hidden expression that failed: where, never what it said.
fn hidden_failure(pointer: &str) -> String {
    format!(
        "the expression at {pointer}, which reads secrets, failed: {MASK} (its message is not shown: it could quote a secret)"
    )
}

/// The error for a whole hidden program that failed (the sandbox's own answer is not shown).
pub fn hidden_program_failure() -> String {
    format!("the expressions that read secrets failed: {MASK} (the message is not shown: it could quote a secret)")
}

/// Why a placeholder's value is refused; a hidden expression's value is never quoted.
fn refusal(piece: &Expression, raw: &str, why: &str) -> String {
    let value = if piece.hidden {
        MASK.to_string()
    } else {
        let mut shown: String = raw.chars().take(80).collect();
        if shown.len() < raw.len() {
            shown.push('…');
        }
        format!("{shown:?}")
    };
    format!("{}: {{{{ {} }}}} gave {value}, which is refused: {why}", piece.pointer, piece.code)
}

fn remember(derived: &mut Vec<String>, value: String) {
    if value.chars().count() >= MIN_DERIVED_LEN {
        derived.push(value);
    }
}

/// A value as jq interpolates it: a string as it is, anything else as JSON.
fn interpolated(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`: safe in a path segment,
/// a query key or value and a fragment alike.
fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlPart {
    /// Nothing before: a value here is the base URL, whole.
    Start,
    Scheme,
    Authority,
    Path,
    Query,
    Fragment,
}

/// The part of a URL that text following `prefix` lands in.
fn url_part(prefix: &str) -> UrlPart {
    if prefix.is_empty() {
        return UrlPart::Start;
    }
    let Some(at) = prefix.find("://") else { return UrlPart::Scheme };
    let mut part = UrlPart::Authority;
    for c in prefix[at + 3..].chars() {
        part = match (part, c) {
            (UrlPart::Fragment, _) => UrlPart::Fragment,
            (_, '#') => UrlPart::Fragment,
            (UrlPart::Query, _) => UrlPart::Query,
            (_, '?') => UrlPart::Query,
            (UrlPart::Authority, '/') => UrlPart::Path,
            (part, _) => part,
        };
    }
    part
}

/// Refuses a URL template with a placeholder in its scheme (one at the very start gives the
/// whole base URL, and is checked when rendered).
fn check_url_shape(parts: &[Part]) -> Result<(), String> {
    let mut prefix = String::new();
    for part in parts {
        match part {
            Part::Text(text) => prefix.push_str(text),
            Part::Piece(_) => match url_part(&prefix) {
                UrlPart::Scheme => {
                    return Err("a {{ }} cannot be in the URL's scheme: start with http:// or https://, \
                                or with one {{ }} that gives the whole base URL"
                        .into());
                }
                UrlPart::Start => prefix.push_str("https://x"),
                _ => prefix.push('x'),
            },
        }
    }
    Ok(())
}

/// One token of a subject a template may fill in: not a wildcard, not empty, and not the `$`
/// of NATS's own subjects (`$JS.API...`, `$SYS...`).
fn nats_token(token: &str) -> bool {
    !token.is_empty()
        && !token.starts_with('$')
        && !token.chars().any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
}

fn nats_subject(subject: &str) -> bool {
    !is_nats_system_subject(subject) && subject.split('.').all(nats_token)
}

/// Subjects that belong to the NATS server or its clients' replies: an action may not publish to
/// them (`$JS.API.STREAM.DELETE.orders` would delete a stream).
pub fn is_nats_system_subject(subject: &str) -> bool {
    subject.split('.').any(|token| token.starts_with('$')) || subject.split('.').next() == Some("_INBOX")
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
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
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
