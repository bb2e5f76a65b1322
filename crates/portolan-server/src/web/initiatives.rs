//! The initiatives pages: every initiative with its progress, and one initiative's burn-up, teams,
//! and what each entity still lacks, with the action that fixes it.

use portolan_model::initiative::{Standing, Tally};

use super::chart::{self, Mark, Point};
use super::dora::short_day;
use super::*;
use crate::services::initiatives::{InitiativeRecord, InitiativeView, Listed, PromoteRequest};

struct Row {
    identifier: String,
    title: String,
    goal: String,
    owner: String,
    target: String,
    done: u64,
    total: u64,
    percent: String,
    standing: (&'static str, &'static str),
    /// Why it cannot be assessed now.
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "initiatives.html")]
struct InitiativesPage {
    signed_in: Option<SignedIn>,
    rows: Vec<Row>,
    may_create: bool,
}

struct TeamRow {
    team: String,
    link: String,
    done: u64,
    total: u64,
    percent: String,
}

struct Fix {
    title: String,
    /// The action's form for this entity.
    link: Option<String>,
}

struct EntityRow {
    title: String,
    link: String,
    teams: String,
    failing: Vec<Fix>,
}

#[derive(Template)]
#[template(path = "initiative.html")]
struct InitiativePage {
    signed_in: Option<SignedIn>,
    row: Row,
    description: Option<String>,
    started: String,
    team: Option<String>,
    expected: String,
    projected: Option<String>,
    /// SVG, already escaped.
    burnup: Option<String>,
    burnup_withheld: Option<String>,
    teams: Vec<TeamRow>,
    remaining: Vec<EntityRow>,
    done: Vec<EntityRow>,
    reminders: Option<String>,
    last_reminder: Option<String>,
    promoted: Option<String>,
    /// Scorecards of its blueprint and their levels, when its rules may be promoted now.
    promote_to: Vec<(String, Vec<String>)>,
    may_change: bool,
}

fn standing(standing: Standing) -> (&'static str, &'static str) {
    match standing {
        Standing::Done => ("done", "done"),
        Standing::NotStarted => ("notStarted", "not started"),
        Standing::OnTrack => ("onTrack", "on track"),
        Standing::Behind => ("behind", "behind"),
        Standing::Overdue => ("overdue", "overdue"),
    }
}

fn percent(tally: &Tally) -> String {
    format!("{:.0}", tally.percent())
}

/// A line of the list: the initiative with its progress, or why it cannot be assessed now.
fn row(record: &InitiativeRecord, assessed: Result<(&Tally, Standing), &str>) -> Row {
    let definition = &record.definition;
    let goal = match (&definition.goal.scorecard, &definition.goal.level) {
        (Some(scorecard), Some(level)) => format!("{level} on {scorecard}"),
        _ => match definition.goal.rules.len() {
            1 => "1 rule".to_string(),
            n => format!("{n} rules"),
        },
    };
    let (tally, standing_now) = assessed.unwrap_or((&Tally { done: 0, total: 0 }, Standing::NotStarted));
    Row {
        identifier: definition.identifier.clone(),
        title: definition.title().to_string(),
        goal,
        owner: definition.owner.clone(),
        target: present::day(definition.target_date),
        done: tally.done,
        total: tally.total,
        percent: percent(tally),
        standing: standing(standing_now),
        problem: assessed.err().map(str::to_string),
    }
}

fn view_row(view: &InitiativeView) -> Row {
    row(&view.initiative, Ok((&view.progress.overall, view.pace.standing)))
}

pub(super) async fn initiatives_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let rows = app
        .initiatives
        .list(&signed_in.actor)
        .await?
        .iter()
        .map(|listed| match listed {
            Listed::Assessed(view) => view_row(view),
            Listed::Unassessed { initiative, error } => row(initiative, Err(error)),
        })
        .collect();
    let may_create = app.permissions.managed(&signed_in.actor).await?.anything();
    Ok(render(&InitiativesPage { signed_in: layout_user(&app, &signed_in).await, rows, may_create }))
}

#[derive(Deserialize)]
pub struct TeamQuery {
    team: Option<String>,
}

pub(super) async fn initiative_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    PathParams(identifier): PathParams<String>,
    QueryParams(query): QueryParams<TeamQuery>,
) -> PageResult {
    let actor = &signed_in.actor;
    let team = query.team.filter(|t| !t.is_empty());
    let report = app.initiatives.report(actor, &identifier, team.as_deref()).await?;
    let view = &report.view;
    let definition = &view.initiative.definition;
    let blueprint = &definition.blueprint;
    let burnup = (!report.burnup.is_empty()).then(|| {
        let done_at_start = report.burnup.first().map_or(0, |d| d.done);
        let guide: Vec<f64> =
            report.burnup.iter().map(|d| definition.expected(done_at_start, d.total, d.day)).collect();
        let points: Vec<Point> = report
            .burnup
            .iter()
            .zip(&guide)
            .map(|(d, expected)| Point {
                label: short_day(d.day),
                value: Some(d.done as f64),
                text: format!("{} of {} done (a steady pace: {expected:.1})", d.done, d.total),
                link: None,
            })
            .collect();
        chart::chart_with_guide("burnup", "Entities meeting the goal, day by day", Mark::Line, &points, &guide)
    });
    let teams = view
        .progress
        .teams
        .iter()
        .map(|(team, tally)| TeamRow {
            team: if team.is_empty() { "(no team)".into() } else { team.clone() },
            link: format!("/initiatives/{}?team={}", url_segment(&identifier), url_segment(team)),
            done: tally.done,
            total: tally.total,
            percent: percent(tally),
        })
        .collect();
    let entity_row = |e: &crate::services::initiatives::EntityProgress| EntityRow {
        title: e.title.clone(),
        link: format!("/catalog/{}/{}", url_segment(blueprint), url_segment(&e.identifier)),
        teams: e.team.join(", "),
        failing: e
            .assessment
            .failing
            .iter()
            .map(|f| Fix {
                title: f.title.clone(),
                link: f.action.as_ref().map(|a| {
                    let query = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("entity", &e.identifier)
                        .finish();
                    format!("/actions/{}?{query}", url_segment(a))
                }),
            })
            .collect(),
    };
    let (done, remaining): (Vec<_>, Vec<_>) = report.entities.iter().partition(|e| e.assessment.done);
    let managed = app.permissions.managed(actor).await?;
    let may_change = managed.blueprint(blueprint);
    let promote_to = if may_change
        && view.pace.standing == Standing::Done
        && !definition.goal.rules.is_empty()
        && view.initiative.promoted.is_none()
    {
        app.scorecards
            .list_scorecards(blueprint)
            .await?
            .into_iter()
            .map(|r| (r.scorecard.identifier.clone(), r.scorecard.levels.iter().map(|l| l.title.clone()).collect()))
            .collect()
    } else {
        Vec::new()
    };
    let page = InitiativePage {
        signed_in: layout_user(&app, &signed_in).await,
        row: view_row(view),
        description: definition.description.clone(),
        started: present::day(definition.starts_at),
        team: report.team.clone(),
        expected: format!("{:.1}", view.pace.expected_now),
        projected: view.pace.projected_done.map(present::day),
        burnup,
        burnup_withheld: report.burnup_withheld.clone(),
        teams,
        remaining: remaining.into_iter().map(entity_row).collect(),
        done: done.into_iter().map(entity_row).collect(),
        reminders: definition.reminders.as_ref().map(|r| {
            let channel = match r.notify.as_ref().map(|n| n.format) {
                Some(portolan_model::guardrail::NotifyFormat::Json) => " and a webhook",
                Some(portolan_model::guardrail::NotifyFormat::Slack) => " and Slack",
                None => "",
            };
            format!("every {} days, to the teams' members{channel}", r.every_days)
        }),
        last_reminder: view.initiative.last_reminder.as_ref().map(|r| match &r.error {
            None => format!("sent {}", present::day(r.at)),
            Some(error) => format!("failed {}: {error}", present::day(r.at)),
        }),
        promoted: view
            .initiative
            .promoted
            .as_ref()
            .map(|p| format!("{} on {}, {}", p.level, p.scorecard, present::day(p.at))),
        promote_to,
        may_change,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct RemindForm {
    csrf: String,
}

pub(super) async fn remind(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(identifier): PathParams<String>,
    Form(form): Form<RemindForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    app.initiatives.remind(&signed_in.actor, &identifier).await?;
    Ok(Redirect::to(&format!("/initiatives/{}", url_segment(&identifier))).into_response())
}

#[derive(Deserialize)]
pub struct PromoteForm {
    csrf: String,
    /// `<scorecard>/<level>`.
    target: String,
}

pub(super) async fn promote(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(identifier): PathParams<String>,
    Form(form): Form<PromoteForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let (scorecard, level) =
        form.target.split_once('/').ok_or_else(|| Error::invalid_at("/target", "choose a scorecard level"))?;
    let request = PromoteRequest { scorecard: scorecard.to_string(), level: level.to_string() };
    app.initiatives.promote(&signed_in.actor, &identifier, request).await?;
    Ok(Redirect::to(&format!("/initiatives/{}", url_segment(&identifier))).into_response())
}
