//! How values appear on a page: markdown as safe HTML, timers as countdowns, and an entity's
//! neighbourhood as an SVG picture. Pure functions; the pages call them.

use std::fmt::Write;

use portolan_model::Millis;
use portolan_model::action::Operation;
use portolan_model::ident::url_segment;
use portolan_model::run::Run;
use pulldown_cmark::{CowStr, Event, LinkType, Parser, Tag};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Only web and mail addresses and paths on this server may be linked; anything else
/// (`javascript:`, `data:`, ...) becomes a dead link.
fn safe_destination(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim_start().to_ascii_lowercase();
    let allowed =
        ["https://", "http://", "mailto:", "/", "#"].iter().any(|p| lower.starts_with(p)) && !lower.starts_with("//");
    if allowed { url } else { CowStr::Borrowed("#") }
}

/// Markdown as HTML that is safe to put in a page: raw HTML in the source is shown as text,
/// and links only go where [`safe_destination`] allows.
pub fn markdown(source: &str) -> String {
    let events = Parser::new(source).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        // An e-mail autolink (`<a@b.c>`) is written as `mailto:` by the renderer itself.
        Event::Start(Tag::Link { link_type: LinkType::Email, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type: LinkType::Email, dest_url, title, id })
        }
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_destination(dest_url), title, id })
        }
        // Pictures from elsewhere would not load (the page's policy forbids it); link to them.
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_destination(dest_url), title, id })
        }
        Event::End(pulldown_cmark::TagEnd::Image) => Event::End(pulldown_cmark::TagEnd::Link),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// How long until a timer ends, in words: "in 4 days 23 hours", "2 hours ago".
pub fn countdown(until: Millis, now: Millis) -> String {
    let (left, past) = if until >= now { (until - now, false) } else { (now - until, true) };
    let minutes = left / 60_000;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let unit = |n: i64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let span = match (days, hours) {
        (0, 0) => unit(minutes.max(1), "minute"),
        (0, h) => format!("{} {}", unit(h, "hour"), unit(minutes, "minute")),
        (d, h) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    };
    if past { format!("ended {span} ago") } else { format!("ends in {span}") }
}

/// A moment as a page shows it: in words relative to now ("3 minutes ago", "in 2 days"), with the
/// exact time (UTC) on hover. Displays as a `<time>` element, already escaped.
pub struct When {
    pub iso: String,
    pub words: String,
}

impl When {
    pub fn new(at: Millis, now: Millis) -> When {
        When { iso: portolan_model::format_millis(at), words: relative(at, now) }
    }
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.iso.split('.').next().unwrap_or_default().trim_end_matches('Z');
        let exact = format!("{} UTC", seconds.replace('T', " "));
        write!(
            f,
            r#"<time class="ago" datetime="{}" title="{}">{}</time>"#,
            escape(&self.iso),
            escape(&exact),
            escape(&self.words)
        )
    }
}

/// How far a moment is from now, in the largest unit that fits: "just now", "5 minutes ago",
/// "in 2 days", "3 months ago".
/// The catalog table of the entities a search finds.
pub fn search_link(search: &crate::services::dora::Evidence) -> String {
    let query =
        url::form_urlencoded::Serializer::new(String::new()).append_pair("where", &search.query.to_string()).finish();
    format!("/catalog/{}?{query}", portolan_model::ident::url_segment(&search.blueprint))
}

/// "2026-03-03".
pub fn day(at: Millis) -> String {
    portolan_model::format_millis(at).chars().take(10).collect()
}

pub fn relative(at: Millis, now: Millis) -> String {
    let seconds = (at - now) / 1000;
    let (span, future) = (seconds.abs(), seconds > 0);
    if span < 45 {
        return "just now".into();
    }
    let rounded = |unit: i64| (span + unit / 2) / unit;
    let (n, unit) = match span {
        _ if rounded(60) < 60 => (rounded(60), "minute"),
        _ if rounded(3_600) < 24 => (rounded(3_600), "hour"),
        _ if rounded(86_400) < 30 => (rounded(86_400), "day"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let n = n.max(1);
    let words = format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if future { format!("in {words}") } else { format!("{words} ago") }
}

/// How long something took: "42 seconds", "3 minutes 5 seconds", "2 hours 10 minutes".
pub fn duration(ms: Millis) -> String {
    let seconds = ms.max(0) / 1000;
    let unit = |n: i64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    match seconds {
        s if s < 1 => "under a second".into(),
        s if s < 60 => unit(s, "second"),
        s if s < 3_600 => format!("{} {}", unit(s / 60, "minute"), unit(s % 60, "second")),
        s => format!("{} {}", unit(s / 3_600, "hour"), unit(s / 60 % 60, "minute")),
    }
}

/// A run's status as a badge: its class and the words people read. Displays as a `<span>`
/// carrying the status code in `data-status`.
pub struct Badge {
    pub code: &'static str,
    pub words: &'static str,
}

impl Badge {
    pub fn of(status: portolan_model::run::RunStatus) -> Badge {
        use portolan_model::run::RunStatus as S;
        let words = match status {
            S::WaitingForApproval => "Waiting for approval",
            S::Queued => "Queued",
            S::InProgress => "In progress",
            S::Success => "Succeeded",
            S::Failure => "Failed",
            S::Declined => "Declined",
            S::Cancelled => "Cancelled",
            S::TimedOut => "Timed out",
        };
        Badge { code: status.as_str(), words }
    }
}

impl std::fmt::Display for Badge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            r#"<span class="status {}" data-status="{}">{}</span>"#,
            self.code.to_ascii_lowercase(),
            self.code,
            self.words
        )
    }
}

fn is_url(text: &str) -> bool {
    (text.starts_with("https://") || text.starts_with("http://")) && !text.contains(char::is_whitespace)
}

/// Where a link the API gave goes in the portal: an entity or a run of the API becomes its page
/// here; anything else stays as it is.
pub fn portal_link(link: &str) -> String {
    let path = match link.find("/api/v1/") {
        Some(at) if link.starts_with('/') || is_url(link) => &link[at + "/api/v1/".len()..],
        _ => return link.to_string(),
    };
    let parts: Vec<&str> = path.split(['?', '#']).next().unwrap_or_default().split('/').collect();
    match parts.as_slice() {
        ["blueprints", blueprint, "entities", entity] => format!("/catalog/{blueprint}/{entity}"),
        ["blueprints", blueprint] => format!("/catalog/{blueprint}"),
        ["actions", "runs", run] => format!("/runs/{run}"),
        _ => link.to_string(),
    }
}

/// Most entries of a list or object shown inline before "and N more".
const MAX_ITEMS: usize = 50;

/// A JSON value as HTML people read: text as text (web addresses as links), lists joined,
/// objects as key–value lists, nothing as a dash. Already escaped.
pub fn value_html(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => r#"<span class="muted">—</span>"#.into(),
        Value::String(text) if is_url(text) => {
            let href = portal_link(text);
            format!(r#"<a href="{}" rel="noopener noreferrer">{}</a>"#, escape(&href), escape(text))
        }
        Value::String(text) if text.contains('\n') => format!("<pre>{}</pre>", escape(text)),
        Value::String(text) if text.is_empty() => r#"<span class="muted">(empty)</span>"#.into(),
        Value::String(text) => escape(text),
        Value::Bool(b) => (if *b { "yes" } else { "no" }).into(),
        // A whole number reads as one (forms may have stored 3 as 3.0).
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::Array(items) if items.is_empty() => r#"<span class="muted">none</span>"#.into(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let shown: Vec<String> = items.iter().take(MAX_ITEMS).map(value_html).collect();
            format!("{}{}", shown.join(", "), more(items.len()))
        }
        Value::Array(items) => {
            let shown: String = items.iter().take(MAX_ITEMS).map(|i| format!("<li>{}</li>", value_html(i))).collect();
            format!(r#"<ol class="values">{shown}</ol>{}"#, more(items.len()))
        }
        Value::Object(map) => key_values(map),
    }
}

fn more(count: usize) -> String {
    if count > MAX_ITEMS {
        format!(r#" <span class="muted">and {} more</span>"#, count - MAX_ITEMS)
    } else {
        String::new()
    }
}

/// An object as a definition list of its keys and values. Already escaped.
pub fn key_values(map: &serde_json::Map<String, serde_json::Value>) -> String {
    key_values_titled(map, &|key| key.to_string())
}

/// An object as a definition list, each key shown by the title `title` gives it.
pub fn key_values_titled(map: &serde_json::Map<String, serde_json::Value>, title: &dyn Fn(&str) -> String) -> String {
    if map.is_empty() {
        return r#"<p class="muted">None.</p>"#.into();
    }
    let mut html = String::from(r#"<dl class="kv">"#);
    for (key, value) in map.iter().take(MAX_ITEMS) {
        let _ = write!(html, "<dt>{}</dt><dd>{}</dd>", escape(&title(key)), value_html(value));
    }
    html.push_str("</dl>");
    html.push_str(&more(map.len()));
    html
}

/// One difference between two versions of a document: where, and the value before and after
/// (`None`: absent).
pub struct Change {
    pub path: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// What changed between two versions, field by field (objects are followed into; lists and
/// other values are compared whole).
pub fn changes(before: Option<&serde_json::Value>, after: Option<&serde_json::Value>) -> Vec<Change> {
    fn walk(path: &str, before: Option<&serde_json::Value>, after: Option<&serde_json::Value>, out: &mut Vec<Change>) {
        use serde_json::Value;
        match (before, after) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
                for key in keys {
                    let inner = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    walk(&inner, a.get(key), b.get(key), out);
                }
            }
            (a, b) if a == b => {}
            (a, b) => out.push(Change {
                path: path.to_string(),
                before: a.filter(|v| !v.is_null()).cloned(),
                after: b.filter(|v| !v.is_null()).cloned(),
            }),
        }
    }
    let mut out = Vec::new();
    let (before, after) = (before.filter(|v| !v.is_null()), after.filter(|v| !v.is_null()));
    match (before, after) {
        // Something new or gone: its fields, each from or to nothing.
        (None, Some(serde_json::Value::Object(map))) => {
            out.extend(map.iter().map(|(k, v)| Change { path: k.clone(), before: None, after: Some(v.clone()) }))
        }
        (Some(serde_json::Value::Object(map)), None) => {
            out.extend(map.iter().map(|(k, v)| Change { path: k.clone(), before: Some(v.clone()), after: None }))
        }
        (a, b) => walk("", a, b, &mut out),
    }
    out
}

/// The fields a change touched, in a few words: "title, tier and 3 more".
pub fn changed_fields(changes: &[Change]) -> String {
    let names: Vec<&str> =
        changes.iter().map(|c| if c.path.is_empty() { "the value" } else { c.path.as_str() }).collect();
    match names.len() {
        0 => "No change".into(),
        n if n <= 3 => names.join(", "),
        n => format!("{} and {} more", names[..2].join(", "), n - 2),
    }
}

/// Changes as a list of "field: before → after". Already escaped.
pub fn changes_html(changes: &[Change]) -> String {
    let side = |v: &Option<serde_json::Value>, tag: &str| match v {
        Some(v) => format!("<{tag}>{}</{tag}>", value_html(v)),
        None => r#"<span class="muted">(none)</span>"#.to_string(),
    };
    let mut html = String::from(r#"<ul class="changes">"#);
    for c in changes.iter().take(MAX_ITEMS) {
        let path = if c.path.is_empty() { String::new() } else { format!("<code>{}</code> ", escape(&c.path)) };
        let _ = write!(html, "<li>{path}{} → {}</li>", side(&c.before, "del"), side(&c.after, "ins"));
    }
    html.push_str("</ul>");
    html.push_str(&more(changes.len()));
    html
}

/// A one-line description with its inline markdown (code, emphasis, links) as HTML, without a
/// paragraph around it.
pub fn inline_markdown(source: &str) -> String {
    let html = markdown(source);
    let trimmed = html.trim_end();
    match trimmed.strip_prefix("<p>").and_then(|s| s.strip_suffix("</p>")) {
        Some(inner) if !inner.contains("<p>") => inner.to_string(),
        _ => html,
    }
}

/// One entity in a neighbourhood picture.
pub struct Node {
    pub blueprint: String,
    pub identifier: String,
    pub title: String,
}

/// An entity and its surroundings: what it depends on (its relations), what depends on it
/// (relations of others that point at it), and the system and domain above it.
pub struct Neighbourhood {
    pub centre: Node,
    /// Relation name and target, for each of the entity's own relations.
    pub depends_on: Vec<(String, Node)>,
    /// Relation name and source, for each relation of another entity that points here.
    pub used_by: Vec<(String, Node)>,
    /// From the entity upwards: its system, then that system's domain.
    pub parents: Vec<(String, Node)>,
}

const BOX_WIDTH: i64 = 210;
const BOX_HEIGHT: i64 = 40;
const ROW: i64 = 60;
const COLUMN: [i64; 3] = [10, 350, 690];
/// Longest title a box shows before cutting it short.
const LABEL_CHARS: usize = 24;

fn label(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        return escape(text);
    }
    let cut: String = text.chars().take(LABEL_CHARS - 1).collect();
    format!("{}…", escape(&cut))
}

fn draw_node(svg: &mut String, node: &Node, x: i64, y: i64, class: &str) {
    let href = format!("/catalog/{}/{}", node.blueprint, url_segment(&node.identifier));
    let _ = write!(
        svg,
        r#"<a href="{href}"><g class="node {class}"><title>{full} ({blueprint})</title><rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6"/><text x="{tx}" y="{ty}">{title}</text><text class="kind" x="{tx}" y="{ky}">{blueprint}</text></g></a>"#,
        href = escape(&href),
        full = escape(&node.title),
        blueprint = escape(&node.blueprint),
        title = label(&node.title),
        tx = x + 10,
        ty = y + 17,
        ky = y + 32,
    );
}

fn draw_edge(svg: &mut String, from: (i64, i64), to: (i64, i64), name: &str) {
    // The name sits beside a vertical edge, and above a sloping one nearer its far end.
    let (class, x, y) = if from.0 == to.0 {
        ("edge-label side", from.0 + 6, (from.1 + to.1) / 2 + 4)
    } else {
        ("edge-label", from.0 + (to.0 - from.0) * 3 / 5, from.1 + (to.1 - from.1) * 3 / 5 - 5)
    };
    let _ = write!(
        svg,
        r#"<line class="edge" x1="{}" y1="{}" x2="{}" y2="{}" marker-end="url(#arrow)"/><text class="{class}" x="{x}" y="{y}">{}</text>"#,
        from.0,
        from.1,
        to.0,
        to.1,
        escape(name)
    );
}

/// The neighbourhood as an SVG picture: dependents on the left, the entity in the middle with
/// its system and domain above it, its dependencies on the right; every box links to its page.
pub fn neighbourhood_svg(n: &Neighbourhood) -> String {
    let top = n.parents.len() as i64 * ROW;
    let rows = n.depends_on.len().max(n.used_by.len()).max(1) as i64;
    let height = top + rows * ROW + 10;
    let width = COLUMN[2] + BOX_WIDTH + 10;
    let centre_y = top + (rows - 1) * ROW / 2 + 5;
    let mut svg = format!(
        r#"<svg class="graph" role="img" aria-label="Neighbourhood of {}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>"#,
        escape(&n.centre.title)
    );
    let centre_x = COLUMN[1];
    // Parents stack upwards from the entity: the nearest just above it.
    let mut below = (centre_x + BOX_WIDTH / 2, centre_y);
    for (i, (relation, parent)) in n.parents.iter().enumerate() {
        let y = top - (i as i64 + 1) * ROW + 5;
        draw_edge(&mut svg, below, (centre_x + BOX_WIDTH / 2, y + BOX_HEIGHT), relation);
        draw_node(&mut svg, parent, centre_x, y, "parent");
        below = (centre_x + BOX_WIDTH / 2, y);
    }
    for (i, (relation, source)) in n.used_by.iter().enumerate() {
        let y = top + i as i64 * ROW + 5;
        draw_edge(
            &mut svg,
            (COLUMN[0] + BOX_WIDTH, y + BOX_HEIGHT / 2),
            (centre_x, centre_y + BOX_HEIGHT / 2),
            relation,
        );
        draw_node(&mut svg, source, COLUMN[0], y, "used-by");
    }
    for (i, (relation, target)) in n.depends_on.iter().enumerate() {
        let y = top + i as i64 * ROW + 5;
        draw_edge(
            &mut svg,
            (centre_x + BOX_WIDTH, centre_y + BOX_HEIGHT / 2),
            (COLUMN[2], y + BOX_HEIGHT / 2),
            relation,
        );
        draw_node(&mut svg, target, COLUMN[2], y, "depends-on");
    }
    draw_node(&mut svg, &n.centre, centre_x, centre_y, "centre");
    svg.push_str("</svg>");
    svg
}

/// An action as a link in lists of actions.
pub(super) struct ActionLink {
    pub(super) identifier: String,
    pub(super) title: String,
    pub(super) description: String,
    /// The blueprint of the entity it acts on, for DAY-2 and DELETE actions.
    pub(super) on: Option<String>,
}

impl From<portolan_model::action::Action> for ActionLink {
    fn from(action: portolan_model::action::Action) -> Self {
        let on_entity = matches!(action.operation(), Some(Operation::Day2 | Operation::Delete));
        ActionLink {
            on: action.blueprint().filter(|_| on_entity).map(str::to_string),
            title: action.title.clone().unwrap_or_else(|| action.identifier.clone()),
            description: action.description.as_deref().map(inline_markdown).unwrap_or_default(),
            identifier: action.identifier,
        }
    }
}

/// A run as a row of a list of runs.
pub(super) struct RunRow {
    pub(super) id: String,
    pub(super) action: String,
    pub(super) blueprint: String,
    pub(super) entity: Option<String>,
    pub(super) status: Badge,
    pub(super) by: String,
    pub(super) at: When,
    /// When a run waiting for approval stops waiting.
    pub(super) expires: Option<When>,
}

impl RunRow {
    pub(super) fn new(run: &Run, now: Millis) -> Self {
        let waiting = run.status == portolan_model::run::RunStatus::WaitingForApproval;
        RunRow {
            id: run.id.clone(),
            action: run.action_title.clone().unwrap_or_else(|| run.action.clone()),
            blueprint: run.blueprint.clone().unwrap_or_default(),
            entity: run.entity.clone(),
            status: Badge::of(run.status),
            by: run.trigger.by.clone(),
            at: When::new(run.created_at, now),
            expires: run.approval.as_ref().filter(|_| waiting).map(|a| When::new(a.expires_at, now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_keeps_formatting_and_drops_scripts() {
        let html = markdown("# Payments\n\nSee **the runbook** at [docs](https://docs.example.com).");
        assert!(html.contains("<h1>Payments</h1>"), "{html}");
        assert!(html.contains("<strong>the runbook</strong>"), "{html}");
        assert!(html.contains(r#"<a href="https://docs.example.com">docs</a>"#), "{html}");

        let html = markdown("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)> [x](javascript:alert(1))");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!markdown("[x](//evil.example)").contains("evil"), "protocol-relative links are refused");
        assert!(!markdown("![p](data:image/svg+xml,abc)").contains("data:"));
        assert!(markdown("<oncall@example.com>").contains(r#"href="mailto:oncall@example.com""#));
    }

    #[test]
    fn countdowns_say_how_long_in_words() {
        let hour = 3_600_000;
        assert_eq!(countdown(5 * 24 * hour - hour, 0), "ends in 4 days 23 hours");
        assert_eq!(countdown(hour + 60_000, 0), "ends in 1 hour 1 minute");
        assert_eq!(countdown(0, 2 * hour), "ended 2 hours 0 minutes ago");
        assert_eq!(countdown(10, 0), "ends in 1 minute");
    }

    #[test]
    fn times_read_relative_to_now_with_the_exact_time_on_hover() {
        let (minute, day) = (60_000, 86_400_000);
        assert_eq!(relative(0, 10_000), "just now");
        assert_eq!(relative(0, 3 * minute), "3 minutes ago");
        assert_eq!(relative(0, 60 * minute), "1 hour ago");
        assert_eq!(relative(day - 1000, 0), "in 1 day");
        assert_eq!(relative(0, 59 * minute + 50_000), "1 hour ago");
        assert_eq!(relative(2 * day, 0), "in 2 days");
        assert_eq!(relative(0, 400 * day), "1 year ago");
        let html = When::new(1_764_000_000_000, 1_764_000_000_000 + 5 * minute).to_string();
        assert_eq!(
            html,
            r#"<time class="ago" datetime="2025-11-24T16:00:00Z" title="2025-11-24 16:00:00 UTC">5 minutes ago</time>"#
        );
        assert_eq!(duration(42_400), "42 seconds");
        assert_eq!(duration(185_000), "3 minutes 5 seconds");
        assert_eq!(duration(2 * 3_600_000 + 60_000), "2 hours 1 minute");
    }

    #[test]
    fn statuses_are_badges_in_words() {
        let badge = Badge::of(portolan_model::run::RunStatus::WaitingForApproval).to_string();
        assert_eq!(
            badge,
            r#"<span class="status waiting_for_approval" data-status="WAITING_FOR_APPROVAL">Waiting for approval</span>"#
        );
    }

    #[test]
    fn api_links_become_portal_pages() {
        assert_eq!(portal_link("/api/v1/blueprints/service/entities/cart"), "/catalog/service/cart");
        assert_eq!(portal_link("https://idp.example/api/v1/blueprints/env/entities/a-dev"), "/catalog/env/a-dev");
        assert_eq!(portal_link("/api/v1/actions/runs/r_1"), "/runs/r_1");
        assert_eq!(portal_link("https://ci.example/build/7"), "https://ci.example/build/7");
    }

    #[test]
    fn values_read_as_lists_and_changes_as_before_and_after() {
        assert_eq!(value_html(&serde_json::json!(3.0)), "3");
        assert_eq!(value_html(&serde_json::json!(2.5)), "2.5");
        let value = serde_json::json!({"name": "a<b", "replicas": 3, "url": "https://x.example/a", "env": {"LOG": "debug"},
            "tags": ["x", "y"], "on": true, "gone": null});
        let html = value_html(&value);
        assert!(html.starts_with(r#"<dl class="kv"><dt>name</dt><dd>a&lt;b</dd>"#), "{html}");
        assert!(
            html.contains(
                r#"<dd><a href="https://x.example/a" rel="noopener noreferrer">https://x.example/a</a></dd>"#
            )
        );
        assert!(html.contains(r#"<dt>env</dt><dd><dl class="kv"><dt>LOG</dt><dd>debug</dd></dl></dd>"#), "{html}");
        assert!(html.contains("<dd>x, y</dd>") && html.contains("<dd>yes</dd>"), "{html}");
        assert!(!html.contains("{\""), "no JSON: {html}");

        let before = serde_json::json!({"title": "Old", "properties": {"tier": "2", "url": "u"}, "version": 1});
        let after =
            serde_json::json!({"title": "New", "properties": {"tier": "1", "url": "u", "lang": "go"}, "version": 2});
        let changes = changes(Some(&before), Some(&after));
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["title", "properties.tier", "properties.lang", "version"]);
        assert_eq!(changed_fields(&changes), "title, properties.tier and 2 more");
        let html = changes_html(&changes);
        assert!(html.contains("<li><code>title</code> <del>Old</del> → <ins>New</ins></li>"), "{html}");
        assert!(
            html.contains(r#"<li><code>properties.lang</code> <span class="muted">(none)</span> → <ins>go</ins></li>"#)
        );
        let created = super::changes(None, Some(&after));
        assert_eq!(created.len(), 3, "a new document's fields, each from nothing");
    }

    #[test]
    fn descriptions_show_their_inline_markdown() {
        assert_eq!(inline_markdown("Runs `kubectl` on *one* pod"), "Runs <code>kubectl</code> on <em>one</em> pod");
        assert_eq!(inline_markdown("<b>x</b>"), "&lt;b&gt;x&lt;/b&gt;");
    }

    fn node(blueprint: &str, identifier: &str) -> Node {
        Node { blueprint: blueprint.into(), identifier: identifier.into(), title: identifier.into() }
    }

    #[test]
    fn the_neighbourhood_links_every_box_and_escapes_titles() {
        let mut centre = node("service", "cart");
        centre.title = "Cart <b>&</b> \"checkout\" service with a long name".into();
        let svg = neighbourhood_svg(&Neighbourhood {
            centre,
            depends_on: vec![("system".into(), node("system", "shop")), ("dependsOn".into(), node("library", "log"))],
            used_by: vec![("service".into(), node("environment", "cart-dev"))],
            parents: vec![("system".into(), node("system", "shop")), ("domain".into(), node("domain", "retail"))],
        });
        for href in ["/catalog/service/cart", "/catalog/system/shop", "/catalog/library/log", "/catalog/domain/retail"]
        {
            assert!(svg.contains(&format!(r#"href="{href}""#)), "{href} in {svg}");
        }
        assert!(svg.contains("/catalog/environment/cart-dev"));
        assert!(!svg.contains("<b>"), "titles are escaped");
        assert!(svg.contains("Cart &lt;b&gt;&amp;&lt;/b&gt; &quot;checkout…"), "{svg}");
        assert_eq!(svg.matches("<line").count(), 5, "one edge per relation");
    }
}
