//! The scorecards page: levels per team and the rules failing most often.

use super::chart::{self, Mark, Point};
use super::dora::short_day;
use super::*;

// ---- scorecards ----

struct TeamLevels {
    team: String,
    counts: Vec<u64>,
}

struct FailingRule {
    rule: String,
    count: u64,
    /// The catalog table of the entities failing it.
    link: String,
}

struct CardView {
    title: String,
    blueprint: String,
    levels: Vec<String>,
    totals: Vec<u64>,
    teams: Vec<TeamLevels>,
    failing: Vec<FailingRule>,
    /// The top level's count over the last 90 days, as SVG, and what it shows.
    trend: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "scorecards.html")]
struct ScorecardsPage {
    signed_in: Option<SignedIn>,
    cards: Vec<CardView>,
}

/// Entities whose failing rules are counted per scorecard (the first ones, by identifier).
const FAILING_SAMPLE: u32 = 1_000;

pub(super) async fn scorecards_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let actor = &signed_in.actor;
    let mut cards = Vec::new();
    for blueprint in app.catalog.list_blueprints().await? {
        let id = blueprint.blueprint.identifier;
        let scorecards = app.scorecards.list_scorecards(&id).await?;
        if scorecards.is_empty() {
            continue;
        }
        let sample = SearchRequest { limit: Some(FAILING_SAMPLE), ..SearchRequest::default() };
        let entities = app.search.search(actor, Some(&id), sample).await?.entities;
        for record in scorecards {
            let card = record.scorecard;
            let summary = app.scorecards.scorecard_summary(actor, &id, &card.identifier, None).await?;
            let levels: Vec<String> = summary.levels.iter().map(|l| l.level.clone()).collect();
            let teams = summary
                .teams
                .iter()
                .map(|(team, counts)| TeamLevels {
                    team: if team.is_empty() { "(no team)".into() } else { team.clone() },
                    counts: levels.iter().map(|l| counts.get(l).copied().unwrap_or(0)).collect(),
                })
                .collect();
            let mut failing: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
            for entity in &entities {
                let rules = entity.scorecards.get(&card.identifier).and_then(|r| r["rules"].as_array().cloned());
                for rule in rules.unwrap_or_default().iter().filter(|r| r["status"] == "FAILURE") {
                    let name = rule["identifier"].as_str().unwrap_or_default();
                    *failing.entry(name.to_string()).or_default() += 1;
                }
            }
            let mut failing: Vec<FailingRule> = failing
                .into_iter()
                .map(|(rule, count)| {
                    let query = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("failing", &format!("{}/{rule}", card.identifier))
                        .finish();
                    let title = card.rules.iter().find(|r| r.identifier == rule).and_then(|r| r.title.clone());
                    FailingRule { link: format!("/catalog/{id}?{query}"), rule: title.unwrap_or(rule), count }
                })
                .collect();
            failing.sort_by_key(|f| std::cmp::Reverse(f.count));
            failing.truncate(5);
            // A member who may read only some entities has no overall history to see.
            let history = match app.scorecards.level_history(actor, &id, &card.identifier, None, 90).await {
                Ok(history) => Some(history),
                Err(err) if err.code == ErrorCode::Forbidden => None,
                Err(err) => return Err(err.into()),
            };
            let trend = history.filter(|h| !h.days.is_empty()).and_then(|h| {
                let top = h.levels.last()?.clone();
                let points: Vec<Point> = h
                    .days
                    .iter()
                    .map(|d| {
                        let n = d.counts.get(&top).copied().unwrap_or(0);
                        Point {
                            label: short_day(d.day),
                            value: Some(n as f64),
                            text: format!("{n} at {top}"),
                            link: None,
                        }
                    })
                    .collect();
                let caption = format!("Entities at {top}, last 90 days");
                let id = format!("trend-{id}-{}", card.identifier);
                Some((chart::chart(&id, &caption, Mark::Line, &points), caption))
            });
            cards.push(CardView {
                trend,
                title: card.title.clone().unwrap_or_else(|| card.identifier.clone()),
                blueprint: id.clone(),
                totals: summary.levels.iter().map(|l| l.count).collect(),
                levels,
                teams,
                failing,
            });
        }
    }
    Ok(render(&ScorecardsPage { signed_in: layout_user(&app, &signed_in).await, cards }))
}
