//! How values appear on a page: markdown as safe HTML, timers as countdowns, and an entity's
//! neighbourhood as an SVG picture. Pure functions; the pages call them.

use std::fmt::Write;

use portolan_model::Millis;
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
    let href = format!("/catalog/{}/{}", node.blueprint, node.identifier);
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
