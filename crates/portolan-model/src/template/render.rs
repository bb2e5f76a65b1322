//! Rendering: splitting a template's strings into text and expressions, evaluating them in the
//! sandbox, and encoding each value for where it lands (JSON, URL, NATS subject).

use crate::error::FieldErrors;
use serde_json::Value;

use super::*;

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
pub(super) fn percent_encode(raw: &str) -> String {
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
