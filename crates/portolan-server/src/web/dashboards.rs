//! Dashboards in the portal: the list, and each dashboard's widgets drawn on the server (charts as
//! SVG, every number a link to the entities behind it).

use std::fmt::Write;

use super::chart::{self, Mark, Point};
use super::dora::{key_words, short_day};
use super::present::{escape, search_link};
use super::*;
use crate::services::dashboards::{Address, DashboardView, WidgetData, WidgetView};
use portolan_model::dashboard::WidgetKind;

#[derive(Template)]
#[template(path = "dashboards.html")]
struct DashboardsPage {
    signed_in: Option<SignedIn>,
    /// (link, title, saved)
    shared: Vec<(String, String)>,
    teams: Vec<(String, String, bool)>,
    may_create: bool,
}

struct WidgetHtml {
    title: String,
    /// Already escaped.
    body: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    signed_in: Option<SignedIn>,
    title: String,
    description: Option<String>,
    widgets: Vec<WidgetHtml>,
    edit: Option<String>,
    stored: bool,
}

pub(super) async fn dashboards_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let entries = app.dashboards.list(&signed_in.actor).await?;
    let mut shared = Vec::new();
    let mut teams = Vec::new();
    for entry in entries {
        let link = format!("/dashboards/{}", entry.address);
        if entry.address.starts_with("teams/") {
            teams.push((link, entry.title, entry.stored));
        } else if entry.address != "me" {
            shared.push((link, entry.title));
        }
    }
    let may_create = app.permissions.managed(&signed_in.actor).await?.all;
    Ok(render(&DashboardsPage { signed_in: layout_user(&app, &signed_in).await, shared, teams, may_create }))
}

pub(super) async fn shared_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    PathParams(id): PathParams<String>,
) -> PageResult {
    page(&app, &signed_in, Address::Shared(id)).await
}

pub(super) async fn team_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    PathParams(team): PathParams<String>,
) -> PageResult {
    page(&app, &signed_in, Address::Team(team)).await
}

pub(super) async fn my_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    page(&app, &signed_in, Address::Personal).await
}

async fn page(app: &AppState, signed_in: &SessionActor, address: Address) -> PageResult {
    let view = app.dashboards.view(&signed_in.actor, &address).await?;
    let widgets = view.widgets.iter().enumerate().map(|(i, w)| widget_html(&view, i, w)).collect();
    let page = DashboardPage {
        signed_in: layout_user(app, signed_in).await,
        title: view.dashboard.title().to_string(),
        description: view.dashboard.description.clone(),
        widgets,
        edit: view.may_edit.then(|| format!("/admin/dashboards/{}", view.address)),
        stored: view.stored,
    };
    Ok(render(&page))
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.2}") }
}

fn widget_html(view: &DashboardView, index: usize, widget: &WidgetView) -> WidgetHtml {
    let id = format!("w{index}");
    let definition = &view.dashboard.widgets[index];
    let mut body = String::new();
    match &widget.data {
        None => {}
        Some(WidgetData::Number { value, search }) => {
            let words = value.map_or("no data".to_string(), number);
            let _ = write!(
                body,
                r#"<p class="figure"><a href="{}">{}</a></p>"#,
                escape(&search_link(search)),
                escape(&words)
            );
        }
        Some(WidgetData::Groups { groups }) => {
            let points: Vec<Point> = groups
                .iter()
                .map(|g| Point {
                    label: g.label.clone(),
                    value: Some(g.count as f64),
                    text: format!("{} {}", g.count, if g.count == 1 { "entity" } else { "entities" }),
                    link: Some(search_link(&g.search)),
                })
                .collect();
            if groups.is_empty() {
                body.push_str(r#"<p class="muted">No entities.</p>"#);
            } else if widget.kind == WidgetKind::Pie {
                body.push_str(&chart::pie(&id, &widget.title, &points));
                body.push_str(r#"<ul class="plain legend">"#);
                for (i, p) in points.iter().enumerate() {
                    let _ = write!(
                        body,
                        r#"<li><span class="swatch slice-{}"></span><a href="{}">{}</a>: {}</li>"#,
                        i % 8,
                        escape(p.link.as_deref().unwrap_or_default()),
                        escape(&p.label),
                        escape(&p.text)
                    );
                }
                body.push_str("</ul>");
            } else {
                body.push_str(&chart::chart(&id, &widget.title, Mark::Bars, &points));
            }
        }
        Some(WidgetData::Series { points }) => {
            if points.is_empty() {
                body.push_str(r#"<p class="muted">No history yet: values are sampled every few minutes.</p>"#);
            } else {
                let points: Vec<Point> = points
                    .iter()
                    .map(|p| Point { label: short_day(p.day), value: Some(p.value), text: number(p.value), link: None })
                    .collect();
                body.push_str(&chart::chart(&id, &widget.title, Mark::Line, &points));
            }
        }
        Some(WidgetData::Table { columns, rows, search }) => {
            let blueprint = definition.blueprint.as_deref().unwrap_or_default();
            body.push_str(r#"<div class="table-frame"><table><thead><tr>"#);
            for column in columns {
                let _ = write!(body, r#"<th scope="col">{}</th>"#, escape(column.trim_start_matches('$')));
            }
            body.push_str("</tr></thead><tbody>");
            for row in rows {
                body.push_str("<tr>");
                for (i, cell) in row.cells.iter().enumerate() {
                    let text = match cell {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    if i == 0 {
                        let link = format!("/catalog/{}/{}", url_segment(blueprint), url_segment(&row.identifier));
                        let _ = write!(body, r#"<td><a href="{}">{}</a></td>"#, escape(&link), escape(&text));
                    } else {
                        let _ = write!(body, "<td>{}</td>", escape(&text));
                    }
                }
                body.push_str("</tr>");
            }
            let _ = write!(
                body,
                r#"</tbody></table></div><p><a href="{}">All of them</a></p>"#,
                escape(&search_link(search))
            );
        }
        Some(WidgetData::Initiative { initiative, progress, pace }) => {
            let mut link = format!("/initiatives/{}", url_segment(initiative));
            if let Some(team) = &definition.team {
                let _ = write!(link, "?team={}", url_segment(team));
            }
            let tally = &progress.overall;
            let _ = write!(
                body,
                r#"<p><progress max="{total}" value="{done}">{percent:.0}%</progress> <a href="{link}">{done} of {total}</a> ({percent:.0}%) <span class="standing {standing:?}">{standing:?}</span></p>"#,
                total = tally.total,
                done = tally.done,
                percent = tally.percent(),
                link = escape(&link),
                standing = pace.standing,
            );
        }
        Some(WidgetData::Dora { metrics, team, service, days }) => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            if let Some(team) = team {
                query.append_pair("team", team);
            }
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("days", &days.to_string());
            body.push_str("<dl>");
            for (name, words, band) in key_words(metrics) {
                let _ = write!(body, "<dt>{name}</dt><dd>{}", escape(&words));
                if let Some(band) = band {
                    let _ = write!(body, r#" <span class="band {band}">{band}</span>"#);
                }
                body.push_str("</dd>");
            }
            let _ = write!(
                body,
                r#"</dl><p><a href="/dora?{}">Over {days} days, in full</a></p>"#,
                escape(&query.finish())
            );
        }
        Some(WidgetData::Markdown { text }) => body.push_str(&present::markdown(text)),
    }
    WidgetHtml { title: widget.title.clone(), body, error: widget.error.clone() }
}
