//! Charts drawn on the server as SVG: no script, printable, and readable without sight — each
//! chart has a title and a description listing its values, each bar or point its own title, and
//! each bar links to the entities behind it.

use std::fmt::Write;

use super::present::escape;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
/// Room for the value axis on the left and the labels below.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// One value on the chart's axis: its label ("Mar 3"), the value (`None`: no data), the value in
/// words, and where its entities are listed.
pub struct Point {
    pub label: String,
    pub value: Option<f64>,
    pub text: String,
    pub link: Option<String>,
}

/// Shape of the marks.
#[derive(Clone, Copy, PartialEq)]
pub enum Mark {
    Bars,
    Line,
}

/// A chart of `points` titled `title` (which a caption beside it shows; the axis carries no unit).
pub fn chart(id: &str, title: &str, mark: Mark, points: &[Point]) -> String {
    chart_with_guide(id, title, mark, points, &[])
}

/// The same with a dashed guide line through `guide` (one value per point: a target or a steady
/// pace), whose values the points' texts should say.
pub fn chart_with_guide(id: &str, title: &str, mark: Mark, points: &[Point], guide: &[f64]) -> String {
    let max = points.iter().filter_map(|p| p.value).chain(guide.iter().copied()).fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let plot_height = HEIGHT - BOTTOM - TOP;
    let step = (WIDTH - LEFT) / points.len().max(1) as f64;
    let y = |v: f64| TOP + plot_height - v / top * plot_height;
    let description: Vec<String> = points.iter().map(|p| format!("{}: {}", p.label, p.text)).collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" aria-labelledby="{id}-title {id}-desc" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        escape(title),
        escape(&description.join("; "))
    );
    // The value axis: zero, half and the top, with the unit.
    for fraction in [0.0, 0.5, 1.0] {
        let value = top * fraction;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{WIDTH}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{x}" y="{ty:.1}" text-anchor="end">{}</text>"#,
            escape(&format_axis(value)),
            y = y(value),
            x = LEFT - 4.0,
            ty = y(value) + 4.0,
        );
    }
    let every = (points.len() / 8).max(1);
    let mut line: Vec<(f64, f64)> = Vec::new();
    let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
    for (i, point) in points.iter().enumerate() {
        let x = LEFT + step * i as f64;
        let centre = x + step / 2.0;
        if i % every == 0 {
            let _ = write!(
                svg,
                r#"<text class="axis" x="{centre:.1}" y="{}" text-anchor="middle">{}</text>"#,
                HEIGHT - 6.0,
                escape(&point.label)
            );
        }
        let label = format!("{}: {}", point.label, point.text);
        let Some(value) = point.value else {
            if !line.is_empty() {
                segments.push(std::mem::take(&mut line));
            }
            continue;
        };
        let mark = match mark {
            Mark::Bars => format!(
                r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{}</title></rect>"#,
                x + step * 0.15,
                y(value),
                step * 0.7,
                (plot_height - (y(value) - TOP)).max(0.0),
                escape(&label)
            ),
            Mark::Line => {
                line.push((centre, y(value)));
                format!(
                    r#"<circle class="dot" cx="{centre:.1}" cy="{:.1}" r="3"><title>{}</title></circle>"#,
                    y(value),
                    escape(&label)
                )
            }
        };
        match &point.link {
            Some(link) => {
                let _ = write!(svg, r#"<a href="{}">{mark}</a>"#, escape(link));
            }
            None => svg.push_str(&mark),
        }
    }
    segments.push(line);
    for segment in segments.iter().filter(|s| s.len() > 1) {
        let path: Vec<String> = segment.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(svg, r#"<polyline class="line" points="{}"/>"#, path.join(" "));
    }
    if guide.len() > 1 {
        let path: Vec<String> = guide
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", LEFT + step * i as f64 + step / 2.0, y(*v)))
            .collect();
        let _ = write!(svg, r#"<polyline class="guide" points="{}"/>"#, path.join(" "));
    }
    svg.push_str("</svg>");
    svg
}

/// A pie of `points` (their shares of the total), each slice titled and linked; the page lists
/// the values beside it.
pub fn pie(id: &str, title: &str, points: &[Point]) -> String {
    let total: f64 = points.iter().filter_map(|p| p.value).sum();
    let description: Vec<String> = points.iter().map(|p| format!("{}: {}", p.label, p.text)).collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart pie" role="img" aria-labelledby="{id}-title {id}-desc" viewBox="-1.1 -1.1 2.2 2.2" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        escape(title),
        escape(&description.join("; "))
    );
    let mut angle = -std::f64::consts::FRAC_PI_2;
    for (i, point) in points.iter().enumerate() {
        let share = point.value.unwrap_or(0.0) / total.max(f64::MIN_POSITIVE);
        if share <= 0.0 {
            continue;
        }
        let label = escape(&format!("{}: {}", point.label, point.text));
        let class = format!("slice slice-{}", i % 8);
        let shape = if share >= 0.9999 {
            format!(r#"<circle class="{class}" r="1"><title>{label}</title></circle>"#)
        } else {
            let end = angle + share * std::f64::consts::TAU;
            let large = u8::from(share > 0.5);
            format!(
                r#"<path class="{class}" d="M0,0 L{:.4},{:.4} A1,1 0 {large} 1 {:.4},{:.4} Z"><title>{label}</title></path>"#,
                angle.cos(),
                angle.sin(),
                end.cos(),
                end.sin()
            )
        };
        angle += share * std::f64::consts::TAU;
        match &point.link {
            Some(link) => {
                let _ = write!(svg, r#"<a href="{}">{shape}</a>"#, escape(link));
            }
            None => svg.push_str(&shape),
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest of 1, 2 or 5 times a power of ten at or above `max` (1 for nothing).
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|c| *c >= max).unwrap_or(max)
}

fn format_axis(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.1}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, value: Option<f64>) -> Point {
        Point {
            label: label.into(),
            value,
            text: value.map_or("no data".into(), |v| format!("{v} deployments")),
            link: Some(format!("/catalog/deployment?day={label}")),
        }
    }

    #[test]
    fn a_chart_says_its_title_and_every_value_in_text() {
        let svg = chart(
            "t",
            "Deployments <per day>",
            Mark::Bars,
            &[point("Mon", Some(3.0)), point("Tue", None), point("Wed", Some(7.0))],
        );
        assert!(svg.contains(r#"<title id="t-title">Deployments &lt;per day&gt;</title>"#), "{svg}");
        assert!(svg.contains("Mon: 3 deployments; Tue: no data; Wed: 7 deployments"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2, "no bar where there is no data");
        assert!(svg.contains(r#"<a href="/catalog/deployment?day=Wed">"#));
        // 7 rounds up to a top of 10.
        assert!(svg.contains(">10</text>"), "{svg}");
    }

    #[test]
    fn a_line_breaks_where_there_is_no_data() {
        let svg = chart(
            "l",
            "Lead time",
            Mark::Line,
            &[
                point("a", Some(1.0)),
                point("b", Some(2.0)),
                point("c", None),
                point("d", Some(1.0)),
                point("e", Some(4.0)),
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
    }

    #[test]
    fn a_guide_is_drawn_dashed_and_counts_for_the_axis() {
        let svg =
            chart_with_guide("g", "Done", Mark::Line, &[point("a", Some(1.0)), point("b", Some(2.0))], &[1.0, 40.0]);
        assert_eq!(svg.matches(r#"<polyline class="guide""#).count(), 1);
        assert!(svg.contains(">50</text>"), "the axis reaches the guide's 40: {svg}");
    }

    #[test]
    fn a_pie_has_a_titled_linked_slice_per_value() {
        let svg = pie("p", "Languages", &[point("Go", Some(3.0)), point("Rust", Some(1.0)), point("None", Some(0.0))]);
        assert_eq!(svg.matches("<path class=\"slice").count(), 2, "no slice for nothing: {svg}");
        assert!(svg.contains("<title>Go: 3 deployments</title>"), "{svg}");
        assert!(svg.contains(r#"<a href="/catalog/deployment?day=Rust">"#), "{svg}");
        assert!(svg.contains(" 1 1 "), "Go's three quarters take the large arc: {svg}");
        let whole = pie("w", "All Go", &[point("Go", Some(2.0))]);
        assert!(whole.contains("<circle class=\"slice slice-0\" r=\"1\">"), "{whole}");
    }

    #[test]
    fn axis_tops_are_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}
