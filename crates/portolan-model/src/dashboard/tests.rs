use serde_json::json;

use super::*;

fn paths(document: Value) -> Vec<String> {
    let dashboard = Dashboard::from_json(document).expect("parses");
    dashboard.check().err().map(|e| e.0.into_iter().map(|e| e.path).collect()).unwrap_or_default()
}

fn with(widgets: Value) -> Value {
    json!({"identifier": "ops", "widgets": widgets})
}

#[test]
fn every_kind_takes_what_it_needs_and_nothing_else() {
    let good = with(json!([
        {"type": "number", "blueprint": "service", "function": "avg", "property": "replicas"},
        {"type": "bar", "blueprint": "service", "property": "language"},
        {"type": "pie", "blueprint": "service", "relation": "system"},
        {"type": "line", "blueprint": "service", "scorecard": "readiness", "level": "Gold", "days": 90},
        {"type": "line", "initiative": "gold"},
        {"type": "line", "blueprint": "service", "query": {"combinator": "and", "rules": []}},
        {"type": "table", "blueprint": "service", "columns": ["$title"], "limit": 10},
        {"type": "scorecard", "blueprint": "service", "scorecard": "readiness", "team": "team-a"},
        {"type": "initiative", "initiative": "gold"},
        {"type": "dora", "team": "team-a", "days": 30},
        {"type": "markdown", "text": "# Hello"}
    ]));
    assert_eq!(paths(good), Vec::<String>::new());
    let bad = with(json!([
        {"type": "number"},
        {"type": "markdown", "text": "x", "blueprint": "service"},
        {"type": "bar", "blueprint": "service"},
        {"type": "number", "blueprint": "service", "function": "sum"},
        {"type": "number", "blueprint": "service", "function": "mode"},
        {"type": "line", "scorecard": "readiness", "initiative": "gold"},
        {"type": "table", "blueprint": "service", "limit": 500},
        {"type": "dora", "days": 0}
    ]));
    assert_eq!(
        paths(bad),
        vec![
            "/widgets/0/blueprint",
            "/widgets/1/blueprint",
            "/widgets/2",
            "/widgets/3/property",
            "/widgets/4/function",
            "/widgets/5",
            "/widgets/5",
            "/widgets/6/limit",
            "/widgets/7/days",
        ]
    );
    let unknown = Dashboard::from_json(with(json!([{"type": "gauge"}]))).expect_err("no such kind");
    assert_eq!(unknown.0[0].path, "/widgets/0/type");
}

#[test]
fn a_dashboard_has_a_bounded_number_of_widgets() {
    let many: Vec<Value> = (0..=MAX_WIDGETS).map(|_| json!({"type": "markdown", "text": "x"})).collect();
    assert_eq!(paths(with(json!(many))), vec!["/widgets"]);
}

#[test]
fn a_group_s_query_narrows_the_widget_s_to_its_value() {
    let widget: Widget = serde_json::from_value(json!({"type": "bar", "blueprint": "service", "property": "language",
        "query": {"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": "1"}]}}))
    .expect("widget");
    let query = widget.group_query(&json!("Go"));
    assert_eq!(query["rules"][1], json!({"property": "language", "operator": "=", "value": "Go"}));
    assert_eq!(query["rules"][0]["rules"][0]["property"], "tier");
    assert_eq!(widget.group_query(&Value::Null)["rules"][1]["operator"], "isEmpty");
    let teams: Widget =
        serde_json::from_value(json!({"type": "pie", "blueprint": "service", "property": "$team"})).expect("widget");
    assert_eq!(
        teams.group_query(&json!("team-a"))["rules"][1],
        json!({"property": "$team", "operator": "containsAny", "value": ["team-a"]})
    );
}

#[test]
fn the_same_aggregate_is_one_series_wherever_it_is() {
    let line = |query: Value| -> Widget {
        serde_json::from_value(json!({"type": "line", "blueprint": "service", "query": query, "title": "anything"}))
            .expect("widget")
    };
    let all = json!({"combinator": "and", "rules": []});
    assert_eq!(line(all.clone()).series_key(), line(all.clone()).series_key());
    assert_ne!(line(all).series_key(), line(json!({"combinator": "or", "rules": []})).series_key());
    assert!(
        matches!(line(json!(null)).line_source(), Some(LineSource::Aggregate(key)) if key.starts_with("aggregate/"))
    );
}

#[test]
fn a_team_s_default_dashboard_is_valid_and_about_the_team() {
    let scorecards = [("service".to_string(), "readiness".to_string())];
    let initiatives = ["gold".to_string()];
    let context = TeamContext {
        service_blueprint: Some("service"),
        scorecards: &scorecards,
        dora: true,
        initiatives: &initiatives,
    };
    let dashboard = team_default("team-a", "Team A", &context);
    assert_eq!(dashboard.check(), Ok(()));
    let text = serde_json::to_string(&dashboard).expect("json");
    assert!(text.contains(r#""value":["team-a"]"#), "{text}");
    let kinds: Vec<&str> = dashboard.widgets.iter().map(|w| w.kind.name()).collect();
    assert_eq!(kinds, vec!["markdown", "number", "table", "scorecard", "dora", "initiative"]);
}
