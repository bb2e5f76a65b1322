//! The DORA page: the four keys of the organisation, a team or a service, with their bands, the
//! period before, trend charts and a breakdown; every number links to the entities behind it.

use portolan_model::dora::{Band, Metrics};

use super::chart::{self, Mark, Point};
use super::*;
use crate::services::dora::{DoraReport, Evidence, ReportRequest};

/// One of the four keys as a card.
struct KeyCard {
    name: &'static str,
    value: String,
    detail: String,
    band: Option<&'static str>,
    /// The same key in the period before, in words, and whether it got better.
    before: String,
    link: Option<String>,
}

struct BreakdownView {
    title: String,
    link: String,
    cells: Vec<(String, Option<&'static str>)>,
}

struct ChartView {
    caption: &'static str,
    /// SVG, already escaped.
    svg: String,
}

struct Choice {
    value: String,
    title: String,
    on: bool,
}

#[derive(Template)]
#[template(path = "dora.html")]
struct DoraPage {
    signed_in: Option<SignedIn>,
    heading: String,
    period: String,
    keys: Vec<KeyCard>,
    unrestored: u64,
    charts: Vec<ChartView>,
    breakdown_heading: &'static str,
    breakdown: Vec<BreakdownView>,
    teams: Vec<Choice>,
    services: Vec<Choice>,
    periods: Vec<Choice>,
    no_sources: bool,
    default_definition: bool,
}

const PERIODS: [(u32, &str); 5] = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (180, "180 days"), (365, "a year")];

pub(super) async fn dora_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    QueryParams(mut request): QueryParams<ReportRequest>,
) -> PageResult {
    // The form sends empty choices for "all"; a chosen service outranks a team.
    request.service = request.service.filter(|s| !s.is_empty());
    request.team = request.team.filter(|t| !t.is_empty() && request.service.is_none());
    let actor = &signed_in.actor;
    let report = app.dora.report(actor, &request).await?;
    let days = request.days.unwrap_or(crate::services::dora::DEFAULT_DAYS);
    let teams = choices(app.search.every_entity(actor, "_team").await?, request.team.as_deref());
    let services = match &report.service_blueprint {
        Some(blueprint) => app.search.every_entity(actor, blueprint).await?,
        None => Vec::new(),
    };
    let services = choices(services, request.service.as_deref());
    let periods = PERIODS
        .iter()
        .map(|(n, words)| Choice { value: n.to_string(), title: (*words).into(), on: *n == days })
        .collect();
    let heading = match report.scope.kind {
        "organisation" => "the organisation".to_string(),
        kind => {
            format!("{kind} {}", report.scope.title.clone().or(report.scope.identifier.clone()).unwrap_or_default())
        }
    };
    let page = DoraPage {
        signed_in: layout_user(&app, &signed_in).await,
        heading,
        period: format!("{} to {}", present::day(report.period.from), present::day(report.period.to)),
        keys: keys(&report),
        unrestored: report.metrics.unrestored,
        charts: charts(&report),
        breakdown_heading: if report.scope.kind == "organisation" { "Team" } else { "Service" },
        breakdown: breakdown(&report, &period_params(&request, days)),
        teams,
        services,
        periods,
        no_sources: report.deployments.is_empty() && report.incidents.is_empty(),
        default_definition: report.default_definition,
    };
    Ok(render(&page))
}

/// Entities as the options of a select, `chosen` selected.
fn choices(entities: Vec<Entity>, chosen: Option<&str>) -> Vec<Choice> {
    let choice = |e: Entity| Choice {
        on: chosen == Some(e.identifier.as_str()),
        title: e.title.unwrap_or_else(|| e.identifier.clone()),
        value: e.identifier,
    };
    entities.into_iter().map(choice).collect()
}

/// "Mar 3".
pub(super) fn short_day(at: portolan_model::Millis) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let date = present::day(at);
    let month: usize = date.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let day_of_month: u32 = date.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    format!("{} {day_of_month}", MONTHS[(month - 1) % 12])
}

/// The catalog table of the entities a search selects.
fn evidence_link(evidence: &[Evidence]) -> Option<String> {
    evidence.first().map(present::search_link)
}

fn frequency_words(metrics: &Metrics) -> Option<String> {
    metrics.deployment_frequency.as_ref().map(|f| match f.per_day {
        d if d >= 1.0 => format!("{d:.1} a day"),
        d if d >= 1.0 / 7.0 => format!("{:.1} a week", d * 7.0),
        d => format!("{:.1} a month", d * 30.0),
    })
}

fn rate_words(metrics: &Metrics) -> Option<String> {
    metrics.change_failure_rate.as_ref().map(|f| format!("{:.0} %", f.rate * 100.0))
}

fn lead_words(metrics: &Metrics) -> Option<String> {
    metrics.lead_time.as_ref().map(|d| present::duration(d.median_ms))
}

fn restore_words(metrics: &Metrics) -> Option<String> {
    metrics.time_to_restore.as_ref().map(|d| present::duration(d.median_ms))
}

const NO_DATA: &str = "no data";

/// "better", "worse" or "the same" than the period before, by band and then by value.
fn compared(now: Option<(Band, f64)>, before: Option<(Band, f64)>, higher_is_better: bool) -> &'static str {
    match (now, before) {
        (Some((band, value)), Some((was_band, was))) => {
            let better = if higher_is_better { value > was } else { value < was };
            let worse = if higher_is_better { value < was } else { value > was };
            match band.cmp(&was_band) {
                std::cmp::Ordering::Less => "better",
                std::cmp::Ordering::Greater => "worse",
                _ if better => "better",
                _ if worse => "worse",
                _ => "the same",
            }
        }
        _ => "",
    }
}

fn keys(report: &DoraReport) -> Vec<KeyCard> {
    let (now, before) = (&report.metrics, &report.previous);
    let frequency = |m: &Metrics| m.deployment_frequency.as_ref().map(|f| (f.band, f.per_day));
    let lead = |m: &Metrics| m.lead_time.as_ref().map(|d| (d.band, d.median_ms as f64));
    let rate = |m: &Metrics| m.change_failure_rate.as_ref().map(|f| (f.band, f.rate));
    let restore = |m: &Metrics| m.time_to_restore.as_ref().map(|d| (d.band, d.median_ms as f64));
    let was = |words: Option<String>, direction: &str| match words {
        Some(words) if direction.is_empty() => format!("before: {words}"),
        Some(words) => format!("{direction} than before ({words})"),
        None => "before: no data".into(),
    };
    let deployments = evidence_link(&report.deployments);
    vec![
        KeyCard {
            name: "Deployment frequency",
            value: frequency_words(now).unwrap_or_else(|| NO_DATA.into()),
            detail: now
                .deployment_frequency
                .as_ref()
                .map_or(String::new(), |f| format!("{} deployments", f.deployments)),
            band: now.deployment_frequency.as_ref().map(|f| f.band.as_str()),
            before: was(frequency_words(before), compared(frequency(now), frequency(before), true)),
            link: deployments.clone(),
        },
        KeyCard {
            name: "Lead time for changes",
            value: lead_words(now).unwrap_or_else(|| NO_DATA.into()),
            detail: now.lead_time.as_ref().map_or(String::new(), |d| format!("median of {} changes", d.samples)),
            band: now.lead_time.as_ref().map(|d| d.band.as_str()),
            before: was(lead_words(before), compared(lead(now), lead(before), false)),
            link: deployments.clone(),
        },
        KeyCard {
            name: "Change failure rate",
            value: rate_words(now).unwrap_or_else(|| NO_DATA.into()),
            detail: now
                .change_failure_rate
                .as_ref()
                .map_or(String::new(), |f| format!("{} of {} changes failed", f.failed, f.changes)),
            band: now.change_failure_rate.as_ref().map(|f| f.band.as_str()),
            before: was(rate_words(before), compared(rate(now), rate(before), false)),
            link: deployments,
        },
        KeyCard {
            name: "Time to restore service",
            value: restore_words(now).unwrap_or_else(|| NO_DATA.into()),
            detail: now.time_to_restore.as_ref().map_or(String::new(), |d| format!("median of {} restores", d.samples)),
            band: now.time_to_restore.as_ref().map(|d| d.band.as_str()),
            before: was(restore_words(before), compared(restore(now), restore(before), false)),
            link: evidence_link(&report.incidents),
        },
    ]
}

fn charts(report: &DoraReport) -> Vec<ChartView> {
    type Reading = fn(&Metrics) -> Option<f64>;
    type Words = fn(&Metrics) -> Option<String>;
    let series = |value: Reading, words: Words, linked: bool| -> Vec<Point> {
        let points = report.trend.iter().map(|p| Point {
            label: short_day(p.period.from),
            value: value(&p.metrics),
            text: words(&p.metrics).unwrap_or_else(|| NO_DATA.into()),
            link: if linked { evidence_link(&p.deployments) } else { None },
        });
        points.collect()
    };
    fn deployments(m: &Metrics) -> u64 {
        m.deployment_frequency.as_ref().map_or(0, |f| f.deployments)
    }
    let count: Reading = |m| Some(deployments(m) as f64);
    let count_words: Words = |m| Some(format!("{} deployments", deployments(m)));
    let rate: Reading = |m| m.change_failure_rate.as_ref().map(|f| f.rate * 100.0);
    let lead: Reading = |m| m.lead_time.as_ref().map(|d| d.median_ms as f64 / portolan_model::HOUR as f64);
    let restore: Reading = |m| m.time_to_restore.as_ref().map(|d| d.median_ms as f64 / portolan_model::HOUR as f64);
    let view = |id: &str, caption: &'static str, mark: Mark, points: Vec<Point>| ChartView {
        caption,
        svg: chart::chart(id, caption, mark, &points),
    };
    vec![
        view("deployments", "Deployments", Mark::Bars, series(count, count_words, true)),
        view("failure-rate", "Change failure rate (%)", Mark::Bars, series(rate, rate_words, true)),
        view("lead-time", "Lead time for changes (median, hours)", Mark::Line, series(lead, lead_words, false)),
        view(
            "restore-time",
            "Time to restore service (median, hours)",
            Mark::Line,
            series(restore, restore_words, false),
        ),
    ]
}

/// The period of the page, as the address of another scope's page gives it.
fn period_params(request: &ReportRequest, days: u32) -> Vec<(&'static str, String)> {
    match (&request.from, &request.to) {
        (Some(from), to) => std::iter::once(("from", from.clone())).chain(to.clone().map(|to| ("to", to))).collect(),
        (None, Some(to)) => vec![("to", to.clone()), ("days", days.to_string())],
        (None, None) => vec![("days", days.to_string())],
    }
}

fn breakdown(report: &DoraReport, period: &[(&str, String)]) -> Vec<BreakdownView> {
    let key = if report.scope.kind == "organisation" { "team" } else { "service" };
    report
        .breakdown
        .iter()
        .map(|row| {
            let m = &row.metrics;
            let link = url::form_urlencoded::Serializer::new(String::new())
                .append_pair(key, &row.identifier)
                .extend_pairs(period)
                .finish();
            BreakdownView {
                title: row.title.clone(),
                link: format!("/dora?{link}"),
                cells: vec![
                    (
                        frequency_words(m).unwrap_or_else(|| NO_DATA.into()),
                        m.deployment_frequency.as_ref().map(|f| f.band.as_str()),
                    ),
                    (lead_words(m).unwrap_or_else(|| NO_DATA.into()), m.lead_time.as_ref().map(|d| d.band.as_str())),
                    (
                        rate_words(m).unwrap_or_else(|| NO_DATA.into()),
                        m.change_failure_rate.as_ref().map(|f| f.band.as_str()),
                    ),
                    (
                        restore_words(m).unwrap_or_else(|| NO_DATA.into()),
                        m.time_to_restore.as_ref().map(|d| d.band.as_str()),
                    ),
                ],
            }
        })
        .collect()
}

/// The last 30 days' four keys of a service or a team, for its entity page.
pub(super) struct Summary {
    pub(super) link: String,
    pub(super) keys: Vec<(&'static str, String, Option<&'static str>)>,
}

/// The summary of `entity` when DORA measures it: a service of the definition, or a team.
pub(super) async fn summary(app: &AppState, actor: &Actor, entity: &Entity) -> Option<Summary> {
    let key = if entity.blueprint == "_team" {
        "team"
    } else if app.dora.service_blueprint().await.ok()?.as_deref() == Some(entity.blueprint.as_str()) {
        "service"
    } else {
        return None;
    };
    let mut request = ReportRequest::default();
    match key {
        "team" => request.team = Some(entity.identifier.clone()),
        _ => request.service = Some(entity.identifier.clone()),
    }
    let report = app.dora.report(actor, &request).await.ok()?;
    let link = url::form_urlencoded::Serializer::new(String::new()).append_pair(key, &entity.identifier).finish();
    Some(Summary { link: format!("/dora?{link}"), keys: key_words(&report.metrics) })
}

/// The four keys in words ("no data" for a key with nothing to measure), with their bands.
pub(super) fn key_words(m: &Metrics) -> Vec<(&'static str, String, Option<&'static str>)> {
    let words = |w: Option<String>| w.unwrap_or_else(|| NO_DATA.into());
    vec![
        ("Deployment frequency", words(frequency_words(m)), m.deployment_frequency.as_ref().map(|f| f.band.as_str())),
        ("Lead time", words(lead_words(m)), m.lead_time.as_ref().map(|d| d.band.as_str())),
        ("Change failure rate", words(rate_words(m)), m.change_failure_rate.as_ref().map(|f| f.band.as_str())),
        ("Time to restore", words(restore_words(m)), m.time_to_restore.as_ref().map(|d| d.band.as_str())),
    ]
}
