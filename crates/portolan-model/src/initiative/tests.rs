use serde_json::{Map, json};

use super::*;

fn service_blueprint() -> Blueprint {
    Blueprint::from_json(json!({"identifier": "service", "schema": {"properties": {
        "runbook": {"type": "string"}, "replicas": {"type": "number"}, "tls": {"type": "string"}}}}))
    .expect("blueprint")
}

fn readiness() -> Scorecard {
    Scorecard::from_json(json!({
        "identifier": "readiness",
        "rules": [
            {"identifier": "runbook", "title": "Has a runbook", "level": "Bronze",
             "query": {"combinator": "and", "rules": [{"property": "runbook", "operator": "isNotEmpty"}]}},
            {"identifier": "ha", "level": "Silver",
             "query": {"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": 2}]}},
            {"identifier": "many", "level": "Gold",
             "query": {"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": 5}]}}
        ]
    }))
    .expect("scorecard")
}

fn initiative(goal: Value) -> Initiative {
    Initiative::from_json(json!({
        "identifier": "silver-everywhere",
        "blueprint": "service",
        "goal": goal,
        "owner": "team-platform",
        "startsAt": "2026-01-01T00:00:00Z",
        "targetDate": "2026-04-11T00:00:00Z",
        "fixes": {"ha": "update_pod_count"}
    }))
    .expect("initiative")
}

fn compile(initiative: &Initiative) -> Result<CompiledInitiative, FieldErrors> {
    initiative.compile(&[service_blueprint()], &[readiness()], &["update_pod_count".into()], &QueryContext::default())
}

/// A service with `properties`, scored on the readiness scorecard as the catalog would score it.
fn service(teams: &[&str], properties: Value) -> Entity {
    let mut entity = Entity {
        identifier: "s".into(),
        title: None,
        icon: None,
        blueprint: "service".into(),
        team: teams.iter().map(|t| t.to_string()).collect(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        relations: Map::new(),
        scorecards: Map::new(),
        diagnostics: Default::default(),
        version: 1,
        created_at: 0,
        created_by: String::new(),
        updated_at: 0,
        updated_by: String::new(),
    };
    let all = [service_blueprint()];
    let compiled =
        readiness().compile(&Scope::new(&all, Some("service")), &QueryContext::default()).expect("scorecard compiles");
    entity.scorecards = crate::scorecard::score(&[compiled], &entity);
    entity
}

#[test]
fn a_level_goal_lists_the_failing_rules_of_that_level_and_below_with_their_fix() {
    let compiled = compile(&initiative(json!({"scorecard": "readiness", "level": "Silver"}))).expect("compiles");
    let scorecard = readiness();
    let assess = |props: Value| compiled.assess(&service(&[], props), Some(&scorecard)).expect("scored");
    assert_eq!(assess(json!({"runbook": "r", "replicas": 2})), Assessment { done: true, failing: vec![] });
    assert_eq!(
        assess(json!({"replicas": 1})),
        Assessment {
            done: false,
            failing: vec![
                FailingRule { rule: "runbook".into(), title: "Has a runbook".into(), action: None },
                FailingRule { rule: "ha".into(), title: "ha".into(), action: Some("update_pod_count".into()) },
            ]
        },
        "the Gold rule is not the initiative's business"
    );
    let mut unscored = service(&[], json!({}));
    unscored.scorecards.clear();
    assert_eq!(compiled.assess(&unscored, Some(&scorecard)), None, "not scored by the scorecard: not in scope");
}

#[test]
fn a_goal_of_rules_is_met_when_every_rule_passes() {
    let compiled = compile(&initiative(json!({"rules": [
        {"identifier": "tls13", "title": "Serves TLS 1.3", "query": {"combinator": "and", "rules": [{"property": "tls", "operator": "=", "value": "1.3"}]}},
        {"identifier": "ha", "query": {"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": 2}]}}
    ]})))
    .expect("compiles");
    let done = compiled.assess(&service(&[], json!({"tls": "1.3", "replicas": 3})), None).expect("in scope");
    assert!(done.done);
    let half = compiled.assess(&service(&[], json!({"tls": "1.2", "replicas": 3})), None).expect("in scope");
    assert_eq!(half.failing.iter().map(|f| f.title.as_str()).collect::<Vec<_>>(), vec!["Serves TLS 1.3"]);
    assert!(!half.done);
}

#[test]
fn mistakes_are_named_by_path() {
    let paths = |goal: Value, extra: Value| {
        let mut document = serde_json::to_value(initiative(goal)).expect("json");
        for (k, v) in extra.as_object().expect("object") {
            document[k] = v.clone();
        }
        let errors = compile(&Initiative::from_json(document).expect("parses")).expect_err("invalid");
        errors.0.into_iter().map(|e| e.path).collect::<Vec<_>>()
    };
    assert_eq!(paths(json!({"scorecard": "nope", "level": "Gold"}), json!({})), vec!["/goal/scorecard"]);
    assert_eq!(paths(json!({"scorecard": "readiness", "level": "Platinum"}), json!({})), vec!["/goal/level"]);
    assert_eq!(paths(json!({"scorecard": "readiness", "level": "Basic"}), json!({})), vec!["/goal/level"]);
    assert_eq!(paths(json!({"scorecard": "readiness"}), json!({})), vec!["/goal"]);
    assert_eq!(
        paths(
            json!({"rules": [{"identifier": "x", "query": {"combinator": "and", "rules": [{"property": "nope", "operator": "isEmpty"}]}}]}),
            json!({"fixes": {"ha": "no_such_action"}, "targetDate": "2025-12-01T00:00:00Z"})
        ),
        vec!["/targetDate", "/goal/rules/0/query/rules/0/property", "/fixes/ha", "/fixes/ha"]
    );
    assert_eq!(
        paths(json!({"scorecard": "readiness", "level": "Gold"}), json!({"blueprint": "ghost"})),
        vec!["/blueprint"]
    );
    assert_eq!(
        paths(
            json!({"scorecard": "readiness", "level": "Gold"}),
            json!({"reminders": {"everyDays": 0, "notify": {"url": "ftp://x"}}, "owner": " "})
        ),
        vec!["/owner", "/reminders/everyDays", "/reminders/notify/url"]
    );
}

#[test]
fn progress_counts_each_team_of_an_entity_and_the_entities_without_one() {
    let mut progress = Progress::default();
    progress.add(&["a".into()], true);
    progress.add(&["a".into(), "b".into()], false);
    progress.add(&[], true);
    assert_eq!(progress.overall, Tally { done: 2, total: 3 });
    assert_eq!(progress.teams["a"], Tally { done: 1, total: 2 });
    assert_eq!(progress.teams["b"], Tally { done: 0, total: 1 });
    assert_eq!(progress.teams[""], Tally { done: 1, total: 1 });
    assert_eq!(Tally::default().percent(), 100.0, "nothing to do is done");
}

#[test]
fn the_pace_compares_progress_with_a_steady_line_from_start_to_target() {
    // 100 days from 2026-01-01 to 2026-04-11; 10 entities, 2 done at the start. At day 50 a steady
    // pace has done 2 + 8 × 0.5 = 6.
    let initiative = initiative(json!({"scorecard": "readiness", "level": "Silver"}));
    let day50 = initiative.starts_at + 50 * DAY;
    let on_track = initiative.pace(2, Tally { done: 6, total: 10 }, day50);
    assert_eq!((on_track.standing, on_track.expected_now), (Standing::OnTrack, 6.0));
    // 5 done: 3 gained in 50 days, 5 left at that pace take 83⅓ days more.
    let behind = initiative.pace(2, Tally { done: 5, total: 10 }, day50);
    assert_eq!(behind.standing, Standing::Behind);
    assert_eq!(behind.projected_done, Some(day50 + (5.0 * 50.0 * DAY as f64 / 3.0) as Millis));
    assert_eq!(initiative.pace(2, Tally { done: 2, total: 10 }, day50).projected_done, None, "no progress, no date");
    assert_eq!(
        initiative.pace(2, Tally { done: 9, total: 10 }, initiative.target_date + DAY).standing,
        Standing::Overdue
    );
    assert_eq!(initiative.pace(0, Tally { done: 10, total: 10 }, day50).standing, Standing::Done);
    assert_eq!(
        initiative.pace(0, Tally { done: 0, total: 10 }, initiative.starts_at - DAY).standing,
        Standing::NotStarted
    );
}

#[test]
fn a_goal_of_rules_is_promoted_into_a_scorecard_level() {
    let tls = initiative(json!({"rules": [{"identifier": "tls13", "title": "Serves TLS 1.3",
        "query": {"combinator": "and", "rules": [{"property": "tls", "operator": "=", "value": "1.3"}]}}]}));
    let promoted = tls.promoted_into(&readiness(), "Gold").expect("promoted");
    let added = promoted.rules.last().expect("a rule");
    assert_eq!((added.identifier.as_str(), added.level.as_str()), ("tls13", "Gold"));
    assert_eq!(promoted.rules.len(), readiness().rules.len() + 1);
    let paths = |result: Result<Scorecard, FieldErrors>| -> Vec<String> {
        result.expect_err("refused").0.into_iter().map(|e| e.path).collect()
    };
    assert_eq!(paths(tls.promoted_into(&readiness(), "Platinum")), vec!["/level"]);
    assert_eq!(paths(tls.promoted_into(&promoted, "Gold")), vec!["/goal/rules/0/identifier"], "already promoted");
    let level_goal = initiative(json!({"scorecard": "readiness", "level": "Silver"}));
    assert_eq!(paths(level_goal.promoted_into(&readiness(), "Gold")), vec!["/goal"]);
}
