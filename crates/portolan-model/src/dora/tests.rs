use serde_json::{Map, Value, json};

use super::*;
use crate::parse_millis;

fn at(text: &str) -> Millis {
    parse_millis(text).expect("a valid timestamp")
}

fn deployment(id: &str, service: &str, deployed: &str, commit: Option<&str>) -> Deployment {
    Deployment {
        identifier: id.into(),
        service: service.into(),
        at: at(deployed),
        commit_at: commit.map(at),
        failed: false,
        revert: false,
    }
}

fn failed(mut d: Deployment) -> Deployment {
    d.failed = true;
    d
}

fn revert(mut d: Deployment) -> Deployment {
    d.revert = true;
    d
}

fn incident(id: &str, service: &str, opened: &str, resolved: Option<&str>) -> Incident {
    Incident { identifier: id.into(), service: service.into(), opened: at(opened), resolved: resolved.map(at) }
}

fn week(from: &str, to: &str) -> Period {
    Period { from: at(from), to: at(to) }
}

/// Six deployments and two incidents over the first week of January, worked out by hand in the
/// comments: a failed deployment restored by the next, a change undone by a revert, and a failure
/// at the end of the week restored in the next one.
fn fixture() -> (Vec<Deployment>, Vec<Incident>) {
    let deployments = vec![
        deployment("d1", "a", "2026-01-01T10:00:00Z", Some("2026-01-01T08:00:00Z")), // lead 2 h
        failed(deployment("d2", "a", "2026-01-02T10:00:00Z", Some("2025-12-31T10:00:00Z"))), // lead 48 h
        deployment("d3", "a", "2026-01-02T12:00:00Z", None),                         // restores d2 after 2 h
        deployment("d4", "a", "2026-01-05T10:00:00Z", Some("2026-01-05T09:00:00Z")), // lead 1 h
        revert(deployment("r5", "a", "2026-01-05T11:00:00Z", None)),                 // undoes d4 after 1 h
        failed(deployment("d6", "b", "2026-01-07T23:00:00Z", None)),                 // restored next week
        deployment("d7", "b", "2026-01-08T01:00:00Z", None),                         // restores d6 after 2 h
    ];
    let incidents = vec![
        incident("i1", "a", "2026-01-03T00:00:00Z", Some("2026-01-03T00:30:00Z")), // 30 min
        incident("i2", "b", "2026-01-06T00:00:00Z", None),
    ];
    (deployments, incidents)
}

#[test]
fn the_four_keys_of_a_week_match_the_hand_computed_figures() {
    let (deployments, incidents) = fixture();
    let outcomes = outcomes(deployments);
    let metrics = measure(&outcomes, &incidents, week("2026-01-01T00:00:00Z", "2026-01-08T00:00:00Z"));

    // d1, d2, d3, d4, r5, d6: 6 in 7 days, between daily and weekly.
    let frequency = metrics.deployment_frequency.expect("deployments");
    assert_eq!(frequency.deployments, 6);
    assert!((frequency.per_day - 6.0 / 7.0).abs() < 1e-9);
    assert_eq!(frequency.band, Band::High);
    // Changes d1, d2, d3, d4, d6 (r5 is a revert); d2 and d6 failed, d4 was reverted.
    let failures = metrics.change_failure_rate.expect("changes");
    assert_eq!((failures.failed, failures.changes), (3, 5));
    assert!((failures.rate - 0.6).abs() < 1e-9);
    assert_eq!(failures.band, Band::Low);
    // Leads 2 h, 48 h, 1 h: the median is 2 h, under a day.
    let lead = metrics.lead_time.expect("leads");
    assert_eq!((lead.median_ms, lead.samples, lead.band), (2 * HOUR, 3, Band::Elite));
    // Restored in the week: d2 after 2 h, d4 after 1 h, i1 after 30 min; the median, 1 h, is not
    // under an hour.
    let restore = metrics.time_to_restore.expect("restores");
    assert_eq!((restore.median_ms, restore.samples, restore.band), (HOUR, 3, Band::High));
    // d6 is restored only on the 8th; i2 is still open.
    assert_eq!(metrics.unrestored, 2);
}

#[test]
fn a_failure_restored_across_the_period_boundary_counts_where_it_was_restored() {
    let (deployments, incidents) = fixture();
    let outcomes = outcomes(deployments);
    let next = measure(&outcomes, &incidents, week("2026-01-08T00:00:00Z", "2026-01-15T00:00:00Z"));
    assert_eq!(next.deployment_frequency.as_ref().map(|f| f.deployments), Some(1));
    let failures = next.change_failure_rate.expect("d7 is a change");
    assert_eq!((failures.failed, failures.changes, failures.band), (0, 1, Band::Elite));
    assert_eq!(next.lead_time, None, "d7 carries no commit time");
    let restore = next.time_to_restore.expect("d6 was restored in this week");
    assert_eq!((restore.median_ms, restore.samples), (2 * HOUR, 1));
    assert_eq!(next.unrestored, 1, "i2 is still open");
}

#[test]
fn a_period_with_nothing_in_it_has_no_data_rather_than_zeros() {
    let (deployments, _) = fixture();
    let metrics = measure(&outcomes(deployments), &[], week("2025-06-01T00:00:00Z", "2025-06-08T00:00:00Z"));
    assert_eq!(metrics, Metrics::default());
    assert!(metrics.is_empty());
}

#[test]
fn each_revert_undoes_the_latest_change_no_earlier_revert_undid() {
    let deployments = vec![
        deployment("v1", "a", "2026-01-01T00:00:00Z", None),
        deployment("v2", "a", "2026-01-02T00:00:00Z", None),
        deployment("v3", "a", "2026-01-03T00:00:00Z", None),
        revert(deployment("r1", "a", "2026-01-03T01:00:00Z", None)),
        revert(deployment("r2", "a", "2026-01-03T02:00:00Z", None)),
        deployment("other", "b", "2026-01-03T01:30:00Z", None),
    ];
    let failed: Vec<(String, Option<Millis>)> =
        outcomes(deployments).into_iter().filter(|o| o.failed).map(|o| (o.deployment.identifier, o.restored)).collect();
    assert_eq!(
        failed,
        vec![
            ("v2".to_string(), Some(at("2026-01-03T01:00:00Z"))),
            ("v3".to_string(), Some(at("2026-01-03T01:00:00Z"))),
        ],
        "r1 undoes v3, r2 undoes v2; both are restored by the first revert, which did not fail"
    );
}

#[test]
fn bands_follow_the_reports_thresholds() {
    assert_eq!(Band::of_frequency(3.0), Band::Elite);
    assert_eq!(Band::of_frequency(1.0), Band::Elite);
    assert_eq!(Band::of_frequency(1.0 / 7.0), Band::High);
    assert_eq!(Band::of_frequency(0.05), Band::Medium);
    assert_eq!(Band::of_frequency(1.0 / 31.0), Band::Low);
    assert_eq!(Band::of_lead_time(DAY - 1), Band::Elite);
    assert_eq!(Band::of_lead_time(DAY), Band::High);
    assert_eq!(Band::of_lead_time(WEEK), Band::Medium);
    assert_eq!(Band::of_lead_time(MONTH), Band::Low);
    assert_eq!(Band::of_failure_rate(0.05), Band::Elite);
    assert_eq!(Band::of_failure_rate(0.1), Band::High);
    assert_eq!(Band::of_failure_rate(0.15), Band::Medium);
    assert_eq!(Band::of_failure_rate(0.16), Band::Low);
    assert_eq!(Band::of_restore_time(HOUR - 1), Band::Elite);
    assert_eq!(Band::of_restore_time(HOUR), Band::High);
    assert_eq!(Band::of_restore_time(DAY), Band::Medium);
    assert_eq!(Band::of_restore_time(WEEK), Band::Low);
}

#[test]
fn medians_of_even_counts_are_the_mean_of_the_middle_two() {
    assert_eq!(median(vec![]), None);
    assert_eq!(median(vec![5]), Some(5));
    assert_eq!(median(vec![10, 1, 4, 3]), Some(3));
}

#[test]
fn grouping_measures_each_team_by_its_services() {
    let (deployments, incidents) = fixture();
    let outcomes = outcomes(deployments);
    let period = week("2026-01-01T00:00:00Z", "2026-01-08T00:00:00Z");
    let teams = measure_by(&outcomes, &incidents, period, |service| match service {
        "a" => vec!["cart"],
        _ => vec!["search"],
    });
    assert_eq!(teams.keys().copied().collect::<Vec<_>>(), vec!["cart", "search"]);
    assert_eq!(teams["cart"].deployment_frequency.as_ref().map(|f| f.deployments), Some(5));
    assert_eq!(teams["search"].change_failure_rate.as_ref().map(|f| (f.failed, f.changes)), Some((1, 1)));
}

#[test]
fn buckets_cover_the_period_and_trend_steps_grow_with_it() {
    let period = week("2026-01-01T00:00:00Z", "2026-01-08T12:00:00Z");
    let buckets = period.buckets(period.trend_step());
    assert_eq!(buckets.len(), 8);
    assert_eq!(buckets.last().map(|b| b.to - b.from), Some(12 * HOUR));
    assert_eq!(Period { from: 0, to: 90 * DAY }.trend_step(), WEEK);
    assert_eq!(Period { from: 0, to: 365 * DAY }.trend_step(), MONTH);
    assert_eq!(period.previous().to, period.from);
}

fn blueprints() -> Vec<Blueprint> {
    [
        json!({"identifier": "service", "schema": {"properties": {}}}),
        json!({"identifier": "team", "schema": {"properties": {}}}),
        json!({"identifier": "deployment", "schema": {"properties": {
            "deployedAt": {"type": "string", "format": "date-time"},
            "commitAt": {"type": "string", "format": "date-time"},
            "status": {"type": "string"},
            "strategy": {"type": "string"}
        }}, "relations": {"service": {"target": "service"}, "team": {"target": "team"}}}),
    ]
    .into_iter()
    .map(|v| Blueprint::from_json(v).expect("valid"))
    .collect()
}

fn compile_errors(definition: Value) -> Vec<String> {
    let definition: DoraDefinition = serde_json::from_value(definition).expect("the definition's shape");
    let errors = definition.compile(&blueprints(), &QueryContext::default()).expect_err("invalid");
    errors.0.into_iter().map(|e| e.path).collect()
}

#[test]
fn a_definition_naming_what_does_not_exist_is_refused_at_its_path() {
    let paths = compile_errors(json!({"deployments": [
        {"blueprint": "deployment", "service": "service", "deployedAt": "finishedAt"},
        {"blueprint": "deployment", "service": "owner", "deployedAt": "status"},
        {"blueprint": "deployment", "service": "service", "failed": {"combinator": "and", "rules": [
            {"property": "outcome", "operator": "=", "value": "failed"}]}},
        {"blueprint": "release", "service": "service"},
        {"blueprint": "deployment", "service": "team"}
    ], "incidents": [{"blueprint": "deployment", "service": "service", "resolvedAt": "resolved"}]}));
    assert_eq!(
        paths,
        vec![
            "/deployments/0/deployedAt",
            "/deployments/1/service",
            "/deployments/1/deployedAt",
            "/deployments/2/failed/rules/0/property",
            "/deployments/3/blueprint",
            "/incidents/0/resolvedAt",
            "/deployments/4/service",
        ]
    );
}

#[test]
fn the_default_definition_fits_a_catalog_without_incidents_or_commit_times() {
    let mut bps = blueprints();
    bps[2].schema.properties.shift_remove("commitAt");
    let fitted = DoraDefinition::default().fitted(&bps);
    assert_eq!(fitted.deployments.len(), 1);
    assert_eq!(fitted.deployments[0].commit_at, None);
    assert!(fitted.incidents.is_empty());
    fitted.compile(&bps, &QueryContext::default()).expect("the fitted default compiles");
}

#[test]
fn a_compiled_source_reads_deployments_from_entities() {
    let definition = DoraDefinition::default().fitted(&blueprints());
    let compiled = definition.compile(&blueprints(), &QueryContext::default()).expect("valid");
    let entity = Entity {
        identifier: "cart-42".into(),
        title: None,
        icon: None,
        blueprint: "deployment".into(),
        team: vec![],
        properties: json!({"deployedAt": "2026-01-02T10:00:00Z", "commitAt": "2026-01-02T09:00:00Z",
                           "status": "failed", "strategy": "canary"})
        .as_object()
        .cloned()
        .unwrap_or_default(),
        relations: json!({"service": "cart"}).as_object().cloned().unwrap_or_default(),
        scorecards: Map::new(),
        diagnostics: Map::new(),
        version: 1,
        created_at: 0,
        created_by: "x".into(),
        updated_at: 0,
        updated_by: "x".into(),
    };
    let read = compiled.deployments[0].read(&entity);
    assert_eq!(
        read,
        vec![Deployment {
            identifier: "cart-42".into(),
            service: "cart".into(),
            at: at("2026-01-02T10:00:00Z"),
            commit_at: Some(at("2026-01-02T09:00:00Z")),
            failed: true,
            revert: false,
        }]
    );
    let query = compiled.deployments[0].search_query(at("2026-01-01T00:00:00Z"), Some(&["cart".to_string()]));
    assert_eq!(query["rules"][0]["operator"], ">=");
    assert_eq!(query["rules"][1], json!({"relation": "service", "operator": "in", "value": ["cart"]}));
}
