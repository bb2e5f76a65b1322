//! DORA metrics over the API and in the portal: the figures of a fixed week worked out by hand,
//! what a member may see, the definition, and bad input.

use portolan_model::permission::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::web::{page, sign_in};
use crate::{TestApp, account_token, service, spawn_app};

const WEEK: &str = "from=2026-01-01T00:00:00Z&to=2026-01-08T00:00:00Z";

/// Services `a` (team-a) and `b` (team-b), the default definition's `deployment` and `incident`
/// blueprints, and the week the model's tests work out by hand.
async fn delivery_history(app: &TestApp) {
    app.with_service_blueprints().await;
    for team in ["team-a", "team-b"] {
        let title = format!("Team {}", team[5..].to_uppercase());
        let created = app.post("/api/v1/blueprints/_team/entities", json!({"identifier": team, "title": title})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    for (id, team) in [("a", "team-a"), ("b", "team-b")] {
        let mut doc = service(id);
        doc["team"] = json!([team]);
        assert_eq!(app.post("/api/v1/blueprints/service/entities", doc).await.status, StatusCode::CREATED);
    }
    let date = json!({"type": "string", "format": "date-time"});
    let deployment = json!({"identifier": "deployment", "schema": {"properties": {
        "deployedAt": date, "commitAt": date, "status": {"type": "string"}, "strategy": {"type": "string"}}},
        "relations": {"service": {"target": "service", "required": true}}});
    let incident = json!({"identifier": "incident", "schema": {"properties": {"openedAt": date, "resolvedAt": date}},
        "relations": {"service": {"target": "service", "required": true}}});
    for blueprint in [deployment, incident] {
        let created = app.post("/api/v1/blueprints", blueprint).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let deployments = [
        ("d1", "a", "2026-01-01T10:00:00Z", Some("2026-01-01T08:00:00Z"), "succeeded", "canary"),
        ("d2", "a", "2026-01-02T10:00:00Z", Some("2025-12-31T10:00:00Z"), "failed", "canary"),
        ("d3", "a", "2026-01-02T12:00:00Z", None, "succeeded", "canary"),
        ("d4", "a", "2026-01-05T10:00:00Z", Some("2026-01-05T09:00:00Z"), "succeeded", "canary"),
        ("r5", "a", "2026-01-05T11:00:00Z", None, "succeeded", "revert"),
        ("d6", "b", "2026-01-07T23:00:00Z", None, "failed", "canary"),
        ("d7", "b", "2026-01-08T01:00:00Z", None, "succeeded", "canary"),
    ];
    let mut documents = Vec::new();
    for (id, service, at, commit, status, strategy) in deployments {
        let mut properties = json!({"deployedAt": at, "status": status, "strategy": strategy});
        if let Some(commit) = commit {
            properties["commitAt"] = json!(commit);
        }
        documents.push(json!({"identifier": id, "properties": properties, "relations": {"service": service}}));
    }
    let written = app.post("/api/v1/blueprints/deployment/entities/bulk", json!({"entities": documents})).await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
    let incidents = json!({"entities": [
        {"identifier": "i1", "properties": {"openedAt": "2026-01-03T00:00:00Z", "resolvedAt": "2026-01-03T00:30:00Z"},
         "relations": {"service": "a"}},
        {"identifier": "i2", "properties": {"openedAt": "2026-01-06T00:00:00Z"}, "relations": {"service": "b"}}]});
    let written = app.post("/api/v1/blueprints/incident/entities/bulk", incidents).await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
}

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn the_organisation_s_week_has_the_hand_computed_figures_and_each_links_to_its_entities() {
    let app = spawn_app().await;
    delivery_history(&app).await;
    let reply = app.get(&format!("/api/v1/dora?{WEEK}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let report = &reply.body["report"];
    assert_eq!(report["scope"]["kind"], "organisation");
    assert_eq!(report["defaultDefinition"], true);
    let metrics = &report["metrics"];
    assert_eq!(metrics["deploymentFrequency"]["deployments"], 6);
    assert_eq!(metrics["deploymentFrequency"]["band"], "high");
    assert_eq!(metrics["changeFailureRate"]["failed"], 3, "d2 and d6 failed, r5 reverted d4");
    assert_eq!(metrics["changeFailureRate"]["changes"], 5);
    assert_eq!(metrics["changeFailureRate"]["band"], "low");
    assert_eq!(metrics["leadTime"]["medianMs"], 2 * HOUR);
    assert_eq!(metrics["leadTime"]["band"], "elite");
    assert_eq!(metrics["timeToRestore"]["medianMs"], HOUR);
    assert_eq!(metrics["timeToRestore"]["samples"], 3);
    assert_eq!(metrics["timeToRestore"]["band"], "high");
    assert_eq!(metrics["unrestored"], 2);
    // The week before holds nothing: no data, not zeros.
    assert_eq!(report["previous"]["deploymentFrequency"], Value::Null);
    assert_eq!(report["previous"]["changeFailureRate"], Value::Null);
    // A day per point; the 2nd holds d2 and d3.
    let trend = report["trend"].as_array().expect("trend");
    assert_eq!(trend.len(), 7);
    assert_eq!(trend[1]["metrics"]["deploymentFrequency"]["deployments"], 2);
    assert_eq!(trend[2]["metrics"]["deploymentFrequency"], Value::Null, "nothing deployed on the 3rd");
    // Per team: team-a's service a, team-b's service b.
    let teams: Vec<(&str, &Value)> = report["breakdown"]
        .as_array()
        .expect("breakdown")
        .iter()
        .map(|row| (row["identifier"].as_str().unwrap_or_default(), &row["metrics"]))
        .collect();
    assert_eq!(teams.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec!["team-a", "team-b"]);
    assert_eq!(teams[0].1["deploymentFrequency"]["deployments"], 5);
    assert_eq!(teams[1].1["changeFailureRate"]["failed"], 1);

    // The deployments behind the numbers are the search the report names.
    let evidence = &report["deployments"][0];
    assert_eq!(evidence["blueprint"], "deployment");
    let found = app.post("/api/v1/blueprints/deployment/entities/search", json!({"query": evidence["query"]})).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let mut ids: Vec<&str> =
        found.body["entities"].as_array().expect("entities").iter().filter_map(|e| e["identifier"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["d1", "d2", "d3", "d4", "d6", "r5"]);
    let day = &trend[1]["deployments"][0];
    let found = app.post("/api/v1/blueprints/deployment/entities/search", json!({"query": day["query"]})).await;
    assert_eq!(found.body["entities"].as_array().map(Vec::len), Some(2), "the 2nd's deployments");
    let restored = &report["incidents"][0];
    let found = app.post("/api/v1/blueprints/incident/entities/search", json!({"query": restored["query"]})).await;
    assert_eq!(found.body["entities"][0]["identifier"], "i1", "the incident resolved in the week");

    // The next week: d6 restored across the boundary.
    let next = app.get("/api/v1/dora?from=2026-01-08T00:00:00Z&to=2026-01-15T00:00:00Z").await;
    let metrics = &next.body["report"]["metrics"];
    assert_eq!(metrics["timeToRestore"]["medianMs"], 2 * HOUR);
    assert_eq!(metrics["leadTime"], Value::Null, "d7 has no commit time");
    assert_eq!(next.body["report"]["previous"]["deploymentFrequency"]["deployments"], 6);
}

#[tokio::test]
async fn a_team_or_a_service_counts_only_its_own_deployments_and_a_member_only_what_they_may_read() {
    let app = spawn_app().await;
    delivery_history(&app).await;
    let team = app.get(&format!("/api/v1/dora?team=team-b&{WEEK}")).await;
    assert_eq!(team.status, StatusCode::OK, "{}", team.body);
    assert_eq!(team.body["report"]["scope"]["kind"], "team");
    assert_eq!(team.body["report"]["metrics"]["deploymentFrequency"]["deployments"], 1);
    assert_eq!(team.body["report"]["breakdown"][0]["identifier"], "b", "a team's services");
    let created = app.post("/api/v1/blueprints/_team/entities", json!({"identifier": "team-new"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let empty = app.get(&format!("/api/v1/dora?team=team-new&{WEEK}")).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert_eq!(empty.body["report"]["metrics"]["deploymentFrequency"], Value::Null, "a team without services");
    let one = app.get(&format!("/api/v1/dora?service=a&{WEEK}")).await;
    assert_eq!(one.body["report"]["metrics"]["changeFailureRate"]["changes"], 4);
    assert_eq!(one.body["report"]["breakdown"], json!([]));

    // A member who may read only team-a's deployments sees team-a's figures for the organisation.
    let grants = json!({"read": {"ownedByTeam": true}});
    let put = app.put("/api/v1/blueprints/deployment/permissions", grants).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    for id in ["d1", "d2", "d3", "d4", "r5"] {
        let patched =
            app.patch(&format!("/api/v1/blueprints/deployment/entities/{id}"), json!({"team": ["team-a"]})).await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    }
    let member = account_token(&app.state, "mia", Role::Member, &["team-a"]).await;
    let seen = app.call_as(Method::GET, &format!("/api/v1/dora?{WEEK}"), &member, None).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    assert_eq!(seen.body["report"]["metrics"]["deploymentFrequency"]["deployments"], 5, "d6 is team-b's");
}

#[tokio::test]
async fn a_definition_of_other_blueprints_is_checked_stored_and_used() {
    let app = spawn_app().await;
    delivery_history(&app).await;
    // GitHub workflow runs as a second source of deployments.
    let run = json!({"identifier": "workflowRun", "schema": {"properties": {
        "conclusion": {"type": "string"}, "finishedAt": {"type": "string", "format": "date-time"}}},
        "relations": {"service": {"target": "service"}}});
    assert_eq!(app.post("/api/v1/blueprints", run).await.status, StatusCode::CREATED);
    let runs = json!({"entities": [
        {"identifier": "1001", "properties": {"conclusion": "success", "finishedAt": "2026-01-04T10:00:00Z"}, "relations": {"service": "b"}},
        {"identifier": "1002", "properties": {"conclusion": "failure", "finishedAt": "2026-01-04T12:00:00Z"}, "relations": {"service": "b"}},
        {"identifier": "1003", "properties": {"conclusion": "skipped", "finishedAt": "2026-01-04T13:00:00Z"}, "relations": {"service": "b"}}]});
    assert_eq!(app.post("/api/v1/blueprints/workflowRun/entities/bulk", runs).await.status, StatusCode::OK);
    let failure =
        json!({"combinator": "and", "rules": [{"property": "conclusion", "operator": "=", "value": "failure"}]});
    let mut definition = app.get("/api/v1/dora/definition").await.body["definition"].clone();
    let ran = json!({"combinator": "and", "rules": [{"property": "conclusion", "operator": "!=", "value": "skipped"}]});
    definition["deployments"].as_array_mut().expect("sources").push(json!({
        "blueprint": "workflowRun", "service": "service", "deployedAt": "finishedAt", "failed": failure, "filter": ran}));

    // Naming what does not exist is refused at its path, and a member may not change it.
    let mut wrong = definition.clone();
    wrong["deployments"][1]["deployedAt"] = json!("completedAt");
    wrong["incidents"][0]["service"] = json!("owner");
    let refused = app.put("/api/v1/dora/definition", wrong).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.detail_paths(), vec!["/deployments/1/deployedAt", "/incidents/0/service"]);
    let member = account_token(&app.state, "mia", Role::Member, &["team-a"]).await;
    let forbidden = app.call_as(Method::PUT, "/api/v1/dora/definition", &member, Some(definition.clone())).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN, "{}", forbidden.body);

    let stored = app.put("/api/v1/dora/definition", definition).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    assert_eq!(stored.body["default"], false);
    let report = app.get(&format!("/api/v1/dora?{WEEK}")).await.body["report"].clone();
    assert_eq!(report["defaultDefinition"], false);
    assert_eq!(
        report["metrics"]["deploymentFrequency"]["deployments"], 8,
        "6 deployments and 2 workflow runs (the skipped one filtered out)"
    );
    assert_eq!(report["metrics"]["changeFailureRate"]["failed"], 4);
    assert_eq!(report["deployments"].as_array().map(Vec::len), Some(2), "one search per source");
    let audit = app.get("/api/v1/audit-log?action=dora.definition.update").await;
    assert_eq!(audit.body["records"].as_array().map(Vec::len), Some(1), "{}", audit.body);

    // Changing a property the stored definition reads leaves a report that says so.
    let patch = json!({"schema": {"properties": {"finishedAt": {"format": null}}}});
    let changed = app.patch("/api/v1/blueprints/workflowRun", patch).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let stale = app.get(&format!("/api/v1/dora?{WEEK}")).await;
    assert_eq!(stale.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", stale.body);
    assert_eq!(stale.detail_paths(), vec!["/deployments/1/deployedAt"]);
    assert!(stale.body["message"].as_str().unwrap_or_default().contains("no longer fits"), "{}", stale.body);
}

#[tokio::test]
async fn bad_periods_and_unknown_subjects_get_clear_errors() {
    let app = spawn_app().await;
    delivery_history(&app).await;
    for (query, status, path) in [
        ("days=0", StatusCode::UNPROCESSABLE_ENTITY, Some("/days")),
        ("days=5000", StatusCode::UNPROCESSABLE_ENTITY, Some("/days")),
        ("from=yesterday", StatusCode::UNPROCESSABLE_ENTITY, Some("/from")),
        ("from=2026-01-08T00:00:00Z&to=2026-01-01T00:00:00Z", StatusCode::UNPROCESSABLE_ENTITY, Some("/from")),
        ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", StatusCode::UNPROCESSABLE_ENTITY, Some("/from")),
        ("from=2026-01-01T00:00:00Z&days=7", StatusCode::UNPROCESSABLE_ENTITY, Some("/days")),
        ("service=a&team=team-a", StatusCode::UNPROCESSABLE_ENTITY, Some("/team")),
        ("service=nowhere", StatusCode::NOT_FOUND, None),
        ("team=team-z", StatusCode::NOT_FOUND, None),
        ("colour=blue", StatusCode::BAD_REQUEST, None),
    ] {
        let reply = app.get(&format!("/api/v1/dora?{query}")).await;
        assert_eq!(reply.status, status, "{query}: {}", reply.body);
        if let Some(path) = path {
            assert_eq!(reply.detail_paths(), vec![path], "{query}");
        }
    }
    // A period in the future is a period with no data.
    let future = app.get("/api/v1/dora?from=2099-01-01T00:00:00Z&to=2099-01-08T00:00:00Z").await;
    assert_eq!(future.status, StatusCode::OK, "{}", future.body);
    let metrics = &future.body["report"]["metrics"];
    for key in ["deploymentFrequency", "leadTime", "changeFailureRate", "timeToRestore"] {
        assert_eq!(metrics[key], Value::Null, "{key}");
    }
    let malformed = app.put("/api/v1/dora/definition", json!({"deployments": [{"blueprint": 3}]})).await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", malformed.body);
    assert_eq!(malformed.detail_paths(), vec!["/deployments/0/blueprint"]);
}

#[tokio::test]
async fn the_dora_page_draws_the_keys_bands_and_charts_without_script() {
    let app = spawn_app().await;
    delivery_history(&app).await;
    let user = json!({"identifier": "ana@example.com", "password": crate::web::PASSWORD});
    assert_eq!(app.post("/api/v1/users", user).await.status, StatusCode::CREATED);
    let session = sign_in(&app, "ana@example.com").await;
    // 2026-01-08 as the end of a 7-day period is what the form sends as `to`.
    let (status, html) = page(&app, &format!("/dora?{WEEK}&team="), &session).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Deployment frequency"));
    assert!(html.contains(r#"<span class="band high">high</span>"#), "{html}");
    assert!(html.contains("3 of 5 changes failed"));
    assert!(html.contains(r#"<svg class="chart" role="img""#));
    assert!(html.contains("Jan 2: 2 deployments"), "the chart's values in text");
    assert!(html.contains("/catalog/deployment?where="), "numbers link to the catalog table: {html}");
    let team_page = "/dora?team=team-a&#38;from=2026-01-01T00%3A00%3A00Z&#38;to=2026-01-08T00%3A00%3A00Z";
    assert!(html.contains(&format!(r#"<a href="{team_page}">Team A</a>"#)), "rows open the team's page: {html}");
    assert!(!html.contains("<script>"), "no inline script");
    // The link behind the deployments opens the catalog table of exactly those.
    let start = html.find("/catalog/deployment?where=").expect("a link");
    let end = start + html[start..].find('"').expect("end of link");
    let (status, table) = page(&app, &html[start..end].replace("&amp;", "&"), &session).await;
    assert_eq!(status, StatusCode::OK, "{table}");
    for id in ["d1", "d2", "r5", "d6"] {
        assert!(table.contains(&format!("/catalog/deployment/{id}\"")), "{id} listed");
    }
    assert!(!table.contains("/catalog/deployment/d7\""), "d7 is of the next week");

    // A service's and a team's pages summarise their last 30 days and link to their DORA page.
    let (_, service_page) = page(&app, "/catalog/service/a", &session).await;
    assert!(service_page.contains("Delivery, last 30 days"), "{service_page}");
    assert!(service_page.contains(r#"<a href="/dora?service=a">DORA metrics</a>"#), "{service_page}");
    let (_, team_page) = page(&app, "/catalog/_team/team-a", &session).await;
    assert!(team_page.contains(r#"<a href="/dora?team=team-a">DORA metrics</a>"#), "{team_page}");
    let (_, system_page) = page(&app, "/catalog/system/shop", &session).await;
    assert!(!system_page.contains("Delivery, last 30 days"), "a system is not measured");
}
