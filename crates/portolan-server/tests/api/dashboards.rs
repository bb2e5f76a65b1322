//! Dashboards: every kind of widget computed and linked to its entities, what each viewer may see,
//! team and personal dashboards and who may change them, bad widgets, and the pages.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::web::{PASSWORD, page, sign_in};
use crate::{TestApp, service, spawn_app};

/// Services a1 (Go, 2 replicas) and a2 (Rust, 4) of team-a, b1 (Go, 6) of team-b; a scorecard
/// whose Gold needs five replicas; an initiative to get every service to Gold.
async fn fleet(app: &TestApp) {
    app.with_service_blueprints().await;
    for team in ["team-a", "team-b"] {
        app.post("/api/v1/blueprints/_team/entities", json!({"identifier": team, "title": team.to_uppercase()})).await;
    }
    for (id, team, language, replicas) in
        [("a1", "team-a", "Go", 2), ("a2", "team-a", "Rust", 4), ("b1", "team-b", "Go", 6)]
    {
        let mut doc = service(id);
        doc["team"] = json!([team]);
        doc["properties"] = json!({"language": language, "replicas": replicas});
        assert_eq!(app.post("/api/v1/blueprints/service/entities", doc).await.status, StatusCode::CREATED);
    }
    let scorecard = json!({"identifier": "replicated", "rules": [{"identifier": "five", "level": "Gold",
        "query": {"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": 5}]}}]});
    assert_eq!(app.post("/api/v1/blueprints/service/scorecards", scorecard).await.status, StatusCode::CREATED);
    let initiative = json!({"identifier": "gold", "blueprint": "service", "goal": {"scorecard": "replicated", "level": "Gold"},
        "owner": "team-platform", "startsAt": "2020-01-01T00:00:00Z", "targetDate": "2040-01-01T00:00:00Z"});
    assert_eq!(app.post("/api/v1/initiatives", initiative).await.status, StatusCode::CREATED);
}

fn every_kind() -> Value {
    json!({"identifier": "ops", "title": "Operations", "widgets": [
        {"type": "number", "title": "Services", "blueprint": "service"},
        {"type": "number", "blueprint": "service", "function": "avg", "property": "replicas"},
        {"type": "bar", "blueprint": "service", "property": "language"},
        {"type": "pie", "blueprint": "service", "property": "$team"},
        {"type": "line", "title": "Services", "blueprint": "service"},
        {"type": "table", "blueprint": "service", "columns": ["$title", "replicas"], "limit": 2},
        {"type": "scorecard", "blueprint": "service", "scorecard": "replicated"},
        {"type": "initiative", "initiative": "gold"},
        {"type": "dora", "days": 30},
        {"type": "markdown", "text": "**Hello**"}
    ]})
}

/// The entities a widget's `search` finds, through the search API.
async fn found(app: &TestApp, search: &Value) -> Vec<String> {
    let path = format!("/api/v1/blueprints/{}/entities/search", search["blueprint"].as_str().expect("blueprint"));
    let reply = app.post(&path, json!({"query": search["query"]})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut ids: Vec<String> = reply.body["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|e| e["identifier"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn every_kind_of_widget_is_computed_and_each_number_names_the_search_behind_it() {
    let app = spawn_app().await;
    fleet(&app).await;
    let created = app.post("/api/v1/dashboards", every_kind()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(app.state.dashboards.sample_series().await.expect("sampled"), 1, "one line of an aggregate");

    let reply = app.get("/api/v1/dashboards/ops").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let w = reply.body["widgets"].as_array().expect("widgets").clone();
    assert!(w.iter().all(|w| w["error"].is_null()), "{w:?}");
    assert_eq!(w[0]["value"], 3.0);
    assert_eq!(found(&app, &w[0]["search"]).await, vec!["a1", "a2", "b1"]);
    assert_eq!(w[1]["value"], 4.0, "(2 + 4 + 6) / 3");
    assert_eq!(w[1]["title"], "avg of service", "a title made from what it shows");
    let go = w[2]["groups"].as_array().expect("groups").iter().find(|g| g["label"] == "Go").cloned().expect("Go");
    assert_eq!(go["count"], 2);
    assert_eq!(found(&app, &go["search"]).await, vec!["a1", "b1"], "a bar's search finds the entities it counts");
    let team_a = w[3]["groups"].as_array().expect("groups").iter().find(|g| g["label"] == "team-a").cloned();
    assert_eq!(found(&app, &team_a.expect("team-a")["search"]).await, vec!["a1", "a2"]);
    assert_eq!(w[4]["points"].as_array().map(Vec::len), Some(1), "today's sample: {}", w[4]);
    assert_eq!(w[4]["points"][0]["value"], 3.0);
    assert_eq!(w[5]["columns"], json!(["$title", "replicas"]));
    assert_eq!(w[5]["rows"].as_array().map(Vec::len), Some(2), "the table's limit");
    let gold = w[6]["groups"].as_array().expect("levels").iter().find(|g| g["label"] == "Gold").cloned().expect("Gold");
    assert_eq!(gold["count"], 1);
    assert_eq!(found(&app, &gold["search"]).await, vec!["b1"]);
    assert_eq!(w[7]["progress"]["done"], 1);
    assert_eq!(w[7]["progress"]["total"], 3);
    assert!(w[8]["metrics"]["deploymentFrequency"].is_null(), "no deployment blueprint: no data, not zero: {}", w[8]);
    assert_eq!(w[9]["text"], "**Hello**");
    assert_eq!(reply.body["mayEdit"], true);
    let list = app.get("/api/v1/dashboards").await;
    let addresses: Vec<&str> =
        list.body["dashboards"].as_array().expect("list").iter().filter_map(|d| d["address"].as_str()).collect();
    assert_eq!(addresses, vec!["ops", "me", "teams/team-a", "teams/team-b"]);
}

#[tokio::test]
async fn every_widget_shows_only_what_the_viewer_may_read() {
    let app = spawn_app().await;
    fleet(&app).await;
    assert_eq!(app.post("/api/v1/dashboards", every_kind()).await.status, StatusCode::CREATED);
    app.state.dashboards.sample_series().await.expect("sampled");
    let grants = json!({"read": {"ownedByTeam": true}});
    assert_eq!(app.put("/api/v1/blueprints/service/permissions", grants).await.status, StatusCode::OK);
    let ana = app.member("ana", &["team-a"]).await;
    let reply = app.call_as(Method::GET, "/api/v1/dashboards/ops", &ana, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let w = reply.body["widgets"].as_array().expect("widgets").clone();
    assert_eq!(w[0]["value"], 2.0, "team-a's two services");
    assert_eq!(w[1]["value"], 3.0, "(2 + 4) / 2");
    let labels: Vec<&str> =
        w[3]["groups"].as_array().expect("groups").iter().filter_map(|g| g["label"].as_str()).collect();
    assert_eq!(labels, vec!["team-a"]);
    assert!(w[4]["points"].is_null(), "a sampled count of every service is not ana's to see");
    assert!(w[4]["error"].as_str().is_some_and(|e| e.contains("one of your teams")), "{}", w[4]);
    let rows: Vec<&str> =
        w[5]["rows"].as_array().expect("rows").iter().filter_map(|r| r["identifier"].as_str()).collect();
    assert_eq!(rows, vec!["a1", "a2"]);
    assert_eq!(w[7]["progress"]["total"], 2);
    assert_eq!(reply.body["mayEdit"], false);
    let refused = app.call_as(Method::PUT, "/api/v1/dashboards/ops", &ana, Some(every_kind())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}

#[tokio::test]
async fn team_and_personal_dashboards_belong_to_their_people() {
    let app = spawn_app().await;
    fleet(&app).await;
    let ana = app.member("ana", &["team-a"]).await;
    let bob = app.member("bob", &["team-b"]).await;

    let default = app.call_as(Method::GET, "/api/v1/dashboards/teams/team-a", &ana, None).await;
    assert_eq!(default.status, StatusCode::OK, "{}", default.body);
    assert_eq!(default.body["stored"], false);
    assert_eq!(default.body["mayEdit"], true, "a member of the team");
    let kinds: Vec<&str> =
        default.body["widgets"].as_array().expect("widgets").iter().filter_map(|w| w["type"].as_str()).collect();
    assert_eq!(kinds, vec!["markdown", "number", "table", "scorecard", "initiative"], "no deployments: no DORA panel");
    assert_eq!(default.body["widgets"][1]["value"], 2.0, "team-a's services");
    assert_eq!(default.body["widgets"][4]["progress"]["total"], 2, "team-a's share of the initiative");

    let own = json!({"title": "Team A", "widgets": [{"type": "number", "blueprint": "service"}]});
    let saved = app.call_as(Method::PUT, "/api/v1/dashboards/teams/team-a", &ana, Some(own.clone())).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let refused = app.call_as(Method::PUT, "/api/v1/dashboards/teams/team-a", &bob, Some(own.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "bob is not in team-a");
    let stored = app.call_as(Method::GET, "/api/v1/dashboards/teams/team-a", &bob, None).await;
    assert_eq!((stored.body["stored"].as_bool(), stored.body["mayEdit"].as_bool()), (Some(true), Some(false)));
    assert_eq!(app.get("/api/v1/dashboards/teams/nobody").await.status, StatusCode::NOT_FOUND);

    let mine = json!({"widgets": [{"type": "markdown", "text": "ana's notes"}]});
    assert_eq!(app.call_as(Method::PUT, "/api/v1/dashboards/me", &ana, Some(mine)).await.status, StatusCode::OK);
    let bobs = app.call_as(Method::GET, "/api/v1/dashboards/me", &bob, None).await;
    assert!(!bobs.body.to_string().contains("ana's notes"), "{}", bobs.body);
    let anas = app.call_as(Method::GET, "/api/v1/dashboards/me", &ana, None).await;
    assert_eq!(anas.body["widgets"][0]["text"], "ana's notes");

    let back = app.call_as(Method::DELETE, "/api/v1/dashboards/teams/team-a", &ana, None).await;
    assert_eq!(back.status, StatusCode::OK);
    let default = app.call_as(Method::GET, "/api/v1/dashboards/teams/team-a", &ana, None).await;
    assert_eq!(default.body["stored"], false, "back to the default");
    let audit = app.get("/api/v1/audit-log?resourceType=dashboard").await;
    assert_eq!(audit.body["records"].as_array().map(Vec::len), Some(3), "{}", audit.body);
}

#[tokio::test]
async fn bad_widgets_are_refused_with_their_paths_and_members_may_not_create_shared_ones() {
    let app = spawn_app().await;
    fleet(&app).await;
    let with = |widgets: Value| json!({"identifier": "bad", "widgets": widgets});
    let cases = [
        (with(json!([{"type": "gauge"}])), "/widgets/0/type"),
        (
            with(json!([{"type": "markdown", "text": "ok"}, {"type": "number", "blueprint": "service",
            "query": {"combinator": "and", "rules": [{"property": "ghost", "operator": "isEmpty"}]}}])),
            "/widgets/1/query/rules/0/property",
        ),
        (with(json!([{"type": "bar", "blueprint": "service", "property": "ghost"}])), "/widgets/0/property"),
        (with(json!([{"type": "scorecard", "blueprint": "service", "scorecard": "ghost"}])), "/widgets/0"),
        (
            with(json!([{"type": "line", "blueprint": "service", "scorecard": "replicated", "level": "Platinum"}])),
            "/widgets/0/level",
        ),
        (with(json!([{"type": "table", "blueprint": "service", "limit": 5000}])), "/widgets/0/limit"),
        (with(json!([{"type": "number", "blueprint": "ghost"}])), "/widgets/0"),
        (json!({"identifier": "me", "widgets": []}), "/identifier"),
    ];
    for (document, path) in cases {
        let refused = app.post("/api/v1/dashboards", document.clone()).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{document}: {}", refused.body);
        assert!(refused.detail_paths().contains(&path.to_string()), "{path} in {}", refused.body);
    }
    let ana = app.member("ana", &["team-a"]).await;
    let member = app.call_as(Method::POST, "/api/v1/dashboards", &ana, Some(every_kind())).await;
    assert_eq!(member.status, StatusCode::FORBIDDEN, "{}", member.body);
    assert_eq!(app.post("/api/v1/dashboards", every_kind()).await.status, StatusCode::CREATED);
    assert_eq!(app.post("/api/v1/dashboards", every_kind()).await.status, StatusCode::CONFLICT);
    assert_eq!(app.put("/api/v1/dashboards/nothing", every_kind()).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get("/api/v1/dashboards/nothing").await.status, StatusCode::NOT_FOUND);

    // A widget whose scorecard is deleted later says so; the others still show.
    assert_eq!(app.delete("/api/v1/blueprints/service/scorecards/replicated").await.status, StatusCode::OK);
    let after = app.get("/api/v1/dashboards/ops").await;
    assert_eq!(after.status, StatusCode::OK);
    assert!(after.body["widgets"][6]["error"].as_str().is_some_and(|e| e.contains("replicated")), "{}", after.body);
    assert_eq!(after.body["widgets"][0]["value"], 3.0);
    // The initiative on that scorecard says why it cannot be assessed; the list still answers.
    let listed = app.get("/api/v1/initiatives").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert!(
        listed.body["initiatives"][0]["error"].as_str().is_some_and(|e| e.contains("no longer fits")),
        "{}",
        listed.body
    );
}

#[tokio::test]
async fn the_demo_s_dashboards_draw_on_the_server_and_link_every_number() {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo");
    let user = json!({"identifier": "ana@example.com", "teams": ["team-cart"], "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", user).await.status, StatusCode::CREATED);
    let session = sign_in(&app, "ana@example.com").await;
    let (status, list) = page(&app, "/dashboards", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(r#"<a href="/dashboards/platform">Platform overview</a>"#), "{list}");
    assert!(list.contains(r#"<a href="/dashboards/teams/team-cart">Cart squad</a>"#), "{list}");
    let (status, html) = page(&app, "/dashboards/platform", &session).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(r#"<svg class="chart pie""#), "a pie: {html}");
    assert!(html.matches(r#"<svg class="chart""#).count() >= 3, "bars, lines and levels: {html}");
    assert!(html.contains(r#"<p class="figure"><a href="/catalog/service?where="#), "a number links to its entities");
    assert!(html.contains(r#"href="/initiatives/gold-readiness""#), "{html}");
    assert!(!html.contains("Edit</a>"), "a member may not edit the shared dashboard");
    let (status, team) = page(&app, "/dashboards/teams/team-cart", &session).await;
    assert_eq!(status, StatusCode::OK, "{team}");
    assert!(team.contains(r#"<a href="/admin/dashboards/teams/team-cart">Edit</a>"#), "ana is in team-cart: {team}");
    let (status, editor) = page(&app, "/admin/dashboards/teams/team-cart", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(editor.contains("&#34;type&#34;: &#34;dora&#34;"), "the default as a document to edit: {editor}");
    let (status, mine) = page(&app, "/dashboards/me", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(mine.contains("My dashboard"), "{mine}");
}

#[tokio::test]
async fn a_dashboard_is_applied_exported_and_pruned_with_the_catalog_as_code() {
    let app = spawn_app().await;
    fleet(&app).await;
    let document = |dashboard: Value| {
        json!({"file": "dashboards.yaml", "line": 1,
               "document": {"apiVersion": "portolan.dev/v1", "kind": "Dashboard", "spec": dashboard}})
    };
    let apply = |documents: Vec<Value>, dry_run: bool| {
        app.post("/api/v1/apply", json!({"source": "repo", "documents": documents, "dryRun": dry_run, "prune": true}))
    };
    let planned = apply(vec![document(every_kind())], true).await;
    assert_eq!(planned.status, StatusCode::OK, "{}", planned.body);
    assert_eq!(planned.body["changes"][0]["op"], "create", "{}", planned.body);
    assert_eq!(app.get("/api/v1/dashboards/ops").await.status, StatusCode::NOT_FOUND, "a dry run writes nothing");
    assert_eq!(apply(vec![document(every_kind())], false).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/dashboards/ops").await.body["widgets"][0]["value"], 3.0);

    let again = apply(vec![document(every_kind())], true).await;
    assert_eq!(again.body["changes"][0]["op"], "unchanged", "{}", again.body);
    let mut changed = every_kind();
    changed["title"] = json!("Ops");
    let update = apply(vec![document(changed)], false).await;
    assert_eq!(update.body["changes"][0]["op"], "update", "{}", update.body);

    let bad = json!({"identifier": "bad", "widgets": [{"type": "table", "blueprint": "service", "limit": 0}]});
    let refused = apply(vec![document(bad)], true).await;
    assert!(refused.body.to_string().contains("/spec/widgets/0/limit"), "{}", refused.body);

    let export = app.get("/api/v1/export").await;
    let exported =
        export.body["documents"].as_array().expect("documents").iter().find(|d| d["kind"] == "Dashboard").cloned();
    assert_eq!(exported.expect("the dashboard")["spec"]["title"], "Ops");

    assert_eq!(apply(vec![], false).await.status, StatusCode::OK, "pruned");
    assert_eq!(app.get("/api/v1/dashboards/ops").await.status, StatusCode::NOT_FOUND);
}
