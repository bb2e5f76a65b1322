//! Grants over real HTTP: who may read, write, run and manage what, and that what one may not
//! read is absent from every list, search, count, facet, run and live stream.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{TestApp, ended, run_until, service, spawn_app};

/// Services owned by two teams, readable only by their owners; `ana` is on team-a, `bo` on
/// team-b, `mo` moderates the blueprint.
struct Org {
    app: TestApp,
    ana: String,
    bo: String,
    mo: String,
}

async fn org() -> Org {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let ana = app.member("ana", &["team-a"]).await;
    let bo = app.member("bo", &["team-b"]).await;
    let mo = app.member("mo", &["team-platform"]).await;
    for (id, team, language) in [("a1", "team-a", "Go"), ("a2", "team-a", "Rust"), ("b1", "team-b", "Go")] {
        let mut doc = service(id);
        doc["team"] = json!([team]);
        doc["properties"]["language"] = json!(language);
        let made = app.post("/api/v1/blueprints/service/entities", doc).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    }
    let permissions = json!({
        "moderators": {"teams": ["team-platform"]},
        "read": {"ownedByTeam": true},
        "create": {"roles": ["member"], "condition": {"combinator": "and", "rules": [
            {"property": "$team", "operator": "containsAny", "value": {"context": "userTeams"}}]}},
        "update": {"ownedByTeam": true},
        "updateProperties": {"replicas": {"users": ["bo"]}}
    });
    let set = app.put("/api/v1/blueprints/service/permissions", permissions).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    Org { app, ana, bo, mo }
}

impl Org {
    async fn call(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> crate::Reply {
        self.app.call_as(method, path, token, body).await
    }
}

fn identifiers(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["entities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["identifier"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn what_a_member_may_not_read_is_absent_everywhere_and_404_by_identifier() {
    let org = org().await;
    let (app, ana) = (&org.app, &org.ana);
    let hidden = org.call(ana, Method::GET, "/api/v1/blueprints/service/entities/b1", None).await;
    let missing = org.call(ana, Method::GET, "/api/v1/blueprints/service/entities/zz", None).await;
    assert_eq!((hidden.status, missing.status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(
        hidden.body["message"].as_str().map(|m| m.replace("b1", "?")),
        missing.body["message"].as_str().map(|m| m.replace("zz", "?")),
        "a hidden entity reads exactly like a missing one"
    );
    assert_eq!(org.call(ana, Method::GET, "/api/v1/blueprints/service/entities/a1", None).await.status, StatusCode::OK);

    let listed = org.call(ana, Method::GET, "/api/v1/blueprints/service/entities", None).await;
    assert_eq!(identifiers(&listed.body), ["a1", "a2"]);
    let searched = org
        .call(
            ana,
            Method::POST,
            "/api/v1/entities/search",
            Some(json!({"query": {"combinator": "and", "rules": [
            {"property": "language", "operator": "=", "value": "Go"}]}})),
        )
        .await;
    assert_eq!(identifiers(&searched.body), ["a1"], "b1 is Go too, and hidden: {}", searched.body);
    let by_id = org
        .call(
            ana,
            Method::POST,
            "/api/v1/blueprints/service/entities/search",
            Some(json!({"query": {"combinator": "and",
            "rules": [{"property": "$identifier", "operator": "=", "value": "b1"}]}})),
        )
        .await;
    assert_eq!(identifiers(&by_id.body), Vec::<String>::new());
    let count = org
        .call(
            ana,
            Method::POST,
            "/api/v1/entities/aggregate",
            Some(json!({"function": "count", "blueprint": "service"})),
        )
        .await;
    assert_eq!(count.body["value"], 2.0);
    let facets = org
        .call(
            ana,
            Method::POST,
            "/api/v1/entities/aggregate",
            Some(json!({"function": "countBy", "blueprint": "service", "property": "language"})),
        )
        .await;
    assert_eq!(facets.body["groups"], json!([{"value": "Go", "count": 1}, {"value": "Rust", "count": 1}]));
    let teams = org
        .call(
            ana,
            Method::POST,
            "/api/v1/entities/aggregate",
            Some(json!({"function": "countBy", "blueprint": "service", "property": "$team"})),
        )
        .await;
    assert_eq!(teams.body["groups"], json!([{"value": "team-a", "count": 2}]), "no count of team-b's services");

    // The admin and the moderator see everything.
    for token in [&app.admin_token, &org.mo] {
        let all = org.call(token, Method::GET, "/api/v1/blueprints/service/entities", None).await;
        assert_eq!(identifiers(&all.body), ["a1", "a2", "b1"]);
    }
}

#[tokio::test]
async fn writes_follow_create_update_property_and_delete_grants() {
    let org = org().await;
    let (ana, bo) = (&org.ana, &org.bo);
    let mut own = service("a3");
    own["team"] = json!(["team-a"]);
    let created = org.call(ana, Method::POST, "/api/v1/blueprints/service/entities", Some(own)).await;
    assert_eq!(created.status, StatusCode::CREATED, "a service of her own team: {}", created.body);
    let mut theirs = service("b2");
    theirs["team"] = json!(["team-b"]);
    let refused = org.call(ana, Method::POST, "/api/v1/blueprints/service/entities", Some(theirs)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "the create condition names only her teams");

    let patch = json!({"properties": {"language": "Python"}});
    assert_eq!(
        org.call(ana, Method::PATCH, "/api/v1/blueprints/service/entities/a1", Some(patch.clone())).await.status,
        StatusCode::OK
    );
    let hidden = org.call(ana, Method::PATCH, "/api/v1/blueprints/service/entities/b1", Some(patch)).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "what she cannot read, she cannot find to change");

    // bo may not update a1, and cannot read it either; but the property grant lets him set
    // `replicas` anywhere he can read.
    let replicas = json!({"properties": {"replicas": 3}});
    assert_eq!(
        org.call(bo, Method::PATCH, "/api/v1/blueprints/service/entities/b1", Some(replicas.clone())).await.status,
        StatusCode::OK
    );
    let shared = org
        .app
        .put(
            "/api/v1/blueprints/service/permissions",
            json!({
                "moderators": {"teams": ["team-platform"]}, "read": {"roles": ["member"]},
                "update": {"ownedByTeam": true}, "updateProperties": {"replicas": {"users": ["bo"]}}
            }),
        )
        .await;
    assert_eq!(shared.status, StatusCode::OK);
    assert_eq!(
        org.call(bo, Method::PATCH, "/api/v1/blueprints/service/entities/a1", Some(replicas)).await.status,
        StatusCode::OK,
        "the property grant"
    );
    let other = org
        .call(
            bo,
            Method::PATCH,
            "/api/v1/blueprints/service/entities/a1",
            Some(json!({"properties": {"replicas": 4, "language": "Go"}})),
        )
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "not the other property: {}", other.body);
    let bulk = org
        .call(
            bo,
            Method::POST,
            "/api/v1/blueprints/service/entities/bulk?upsert=true&merge=true",
            Some(json!({"entities": [
            {"identifier": "b1", "properties": {"language": "Rust"}},
            {"identifier": "a2", "properties": {"language": "Rust", "lifecycle": "prod"}}]})),
        )
        .await;
    let outcomes: Vec<_> = bulk.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["result"].clone(), r["error"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        [(json!("updated"), Value::Null), (json!("error"), json!("forbidden"))],
        "each item on its own: {}",
        bulk.body
    );

    let delete = org.call(bo, Method::DELETE, "/api/v1/blueprints/service/entities/b1", None).await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN, "nobody was given delete");
    assert_eq!(
        org.call(&org.mo, Method::DELETE, "/api/v1/blueprints/service/entities/b1", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn nobody_grants_what_they_do_not_hold() {
    let org = org().await;
    let (ana, mo) = (&org.ana, &org.mo);
    let wide = json!({"moderators": {"teams": ["team-platform"]}, "read": {"roles": ["member"]}, "update": {"roles": ["member"]}});
    let by_member = org.call(ana, Method::PUT, "/api/v1/blueprints/service/permissions", Some(wide.clone())).await;
    assert_eq!(by_member.status, StatusCode::FORBIDDEN);
    assert_eq!(
        org.call(ana, Method::GET, "/api/v1/blueprints/service/permissions", None).await.status,
        StatusCode::FORBIDDEN
    );
    let by_moderator = org.call(mo, Method::PUT, "/api/v1/blueprints/service/permissions", Some(wide)).await;
    assert_eq!(by_moderator.status, StatusCode::OK, "{}", by_moderator.body);
    let more = json!({"moderators": {"teams": ["team-platform"], "users": ["ana"]}});
    let promote = org.call(mo, Method::PUT, "/api/v1/blueprints/service/permissions", Some(more.clone())).await;
    assert_eq!(promote.status, StatusCode::FORBIDDEN, "only admins make moderators");
    assert_eq!(org.app.put("/api/v1/blueprints/service/permissions", more).await.status, StatusCode::OK);

    let bad_role = org.app.put("/api/v1/blueprints/service/permissions", json!({"read": {"roles": ["owner"]}})).await;
    assert_eq!(bad_role.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_role.detail_paths(), ["/read/roles/0"]);
    let condition = json!({"combinator": "and", "rules": [{"property": "colour", "operator": "=", "value": 1}]});
    let bad_condition =
        org.app.put("/api/v1/blueprints/service/permissions", json!({"update": {"condition": condition}})).await;
    assert_eq!(bad_condition.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_condition.detail_paths(), ["/update/condition/rules/0/property"]);
    // Members cannot make or change blueprints or their scorecards; ana, a moderator now, can.
    let blueprint = json!({"identifier": "mine", "schema": {"properties": {}}});
    assert_eq!(
        org.call(&org.bo, Method::POST, "/api/v1/blueprints", Some(blueprint)).await.status,
        StatusCode::FORBIDDEN
    );
    let scorecard = json!({"identifier": "x", "title": "X", "levels": [{"title": "Basic"}], "rules": []});
    let card = org.call(&org.bo, Method::POST, "/api/v1/blueprints/service/scorecards", Some(scorecard.clone())).await;
    assert_eq!(card.status, StatusCode::FORBIDDEN);
    let card = org.call(ana, Method::POST, "/api/v1/blueprints/service/scorecards", Some(scorecard)).await;
    assert_eq!(card.status, StatusCode::CREATED, "{}", card.body);
}

/// The ids of the runs `token` lists, sorted.
async fn runs_of(org: &Org, token: &str) -> Vec<String> {
    let listed = org.call(token, Method::GET, "/api/v1/actions/runs", None).await;
    let runs = listed.body["runs"].as_array().expect("runs").iter();
    let mut ids: Vec<String> = runs.filter_map(|r| r["id"].as_str().map(str::to_string)).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn runs_are_seen_by_requesters_owning_teams_and_approvers_and_execute_grants_are_checked() {
    let org = org().await;
    let app = &org.app;
    let action = json!({
        "identifier": "bump",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service"},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"replicas": 2}}}
    });
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);
    let grants = json!({"execute": {"ownedByTeam": true}, "approve": {"users": ["mo"]}});
    assert_eq!(app.put("/api/v1/actions/bump/permissions", grants).await.status, StatusCode::OK);
    let by_member = org.call(&org.bo, Method::PUT, "/api/v1/actions/bump/permissions", Some(json!({}))).await;
    assert_eq!(by_member.status, StatusCode::FORBIDDEN);

    let run_on = |entity: &str| json!({"entity": entity, "properties": {}});
    let hidden = org.call(&org.ana, Method::POST, "/api/v1/actions/bump/runs", Some(run_on("b1"))).await;
    assert_eq!(
        hidden.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "b1 does not exist as far as ana knows: {}",
        hidden.body
    );
    let mine = org.call(&org.ana, Method::POST, "/api/v1/actions/bump/runs", Some(run_on("a1"))).await;
    assert_eq!(mine.status, StatusCode::ACCEPTED, "{}", mine.body);
    let ana_run = mine.body["run"]["id"].as_str().expect("id").to_string();
    let admin_run =
        app.post("/api/v1/actions/bump/runs", run_on("b1")).await.body["run"]["id"].as_str().expect("id").to_string();
    run_until(app, &admin_run, Duration::from_secs(5), ended).await;
    run_until(app, &ana_run, Duration::from_secs(5), ended).await;

    assert_eq!(runs_of(&org, &org.ana).await, std::slice::from_ref(&ana_run));
    assert_eq!(runs_of(&org, &org.bo).await, std::slice::from_ref(&admin_run), "the run on his team's service");
    for path in [format!("/api/v1/actions/runs/{admin_run}"), format!("/api/v1/actions/runs/{admin_run}/logs")] {
        assert_eq!(org.call(&org.ana, Method::GET, &path, None).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let approver = org.call(&org.mo, Method::GET, &format!("/api/v1/actions/runs/{ana_run}"), None).await;
    assert_eq!(approver.status, StatusCode::OK, "mo may approve bump runs, so he sees them");
    let history = org.call(&org.bo, Method::GET, "/api/v1/blueprints/service/entities/a1/runs", None).await;
    assert_eq!(history.status, StatusCode::NOT_FOUND, "the history of what bo cannot read");
    let actions = org.call(&org.ana, Method::GET, "/api/v1/actions", None).await;
    assert_eq!(actions.body["actions"].as_array().map(Vec::len), Some(1), "bump is hers to run: {}", actions.body);
}

#[tokio::test]
async fn the_live_stream_carries_only_what_the_member_may_read() {
    let org = org().await;
    let mut stream = org
        .app
        .client
        .get(format!("{}/api/v1/events?blueprint=service", org.app.base))
        .bearer_auth(&org.ana)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    for id in ["b1", "a1"] {
        let patched = org
            .app
            .patch(&format!("/api/v1/blueprints/service/entities/{id}"), json!({"properties": {"replicas": 5}}))
            .await;
        assert_eq!(patched.status, StatusCode::OK);
    }
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains("\"identifier\":\"a1\"") {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(Ok(Some(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("no event for a1 ({other:?}): {seen}"),
        }
    }
    assert!(!seen.contains("\"b1\""), "b1's change never reaches ana: {seen}");
}

#[tokio::test]
async fn a_moderator_cannot_reach_past_the_blueprint_through_an_action() {
    let org = org().await;
    let mo = &org.mo;
    let into_users = json!({
        "identifier": "promote-me",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service"},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "_user", "mapping": {
            "identifier": "mo", "team": ["team-a", "team-b"]}}
    });
    let refused = org.call(mo, Method::POST, "/api/v1/actions", Some(into_users)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(
        org.app.post("/api/v1/secrets", json!({"name": "PROD_DB", "value": "postgres://s3cret"})).await.status,
        StatusCode::CREATED
    );
    let exfiltrate = json!({
        "identifier": "exfiltrate",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service"},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"repository": "https://x.example/{{ .secrets.PROD_DB }}"}}}
    });
    let refused = org.call(mo, Method::POST, "/api/v1/actions", Some(exfiltrate)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "reading secrets is for admins: {}", refused.body);
    let own = json!({
        "identifier": "scale",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service"},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"replicas": 3}}}
    });
    assert_eq!(org.call(mo, Method::POST, "/api/v1/actions", Some(own)).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn write_paths_do_not_reveal_hidden_entities() {
    let org = org().await;
    let (app, ana) = (&org.app, &org.ana);
    // b1 (hidden from ana) depends on a1 (hers).
    let linked = app.patch("/api/v1/blueprints/service/entities/b1", json!({"relations": {"dependsOn": ["a1"]}})).await;
    assert_eq!(linked.status, StatusCode::OK);
    let update = json!({"ownedByTeam": true});
    let grants =
        json!({"moderators": {"teams": ["team-platform"]}, "read": update, "update": update, "delete": update});
    assert_eq!(app.put("/api/v1/blueprints/service/permissions", grants).await.status, StatusCode::OK);
    let refused = org.call(ana, Method::DELETE, "/api/v1/blueprints/service/entities/a1", None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(!refused.body.to_string().contains("b1"), "the hidden dependent is not named: {}", refused.body);
    let cascade =
        org.call(ana, Method::DELETE, "/api/v1/blueprints/service/entities/a1?delete_dependents=true", None).await;
    assert_eq!(cascade.status, StatusCode::FORBIDDEN);
    assert!(!cascade.body.to_string().contains("b1"), "{}", cascade.body);

    // A stale If-Match on a hidden entity reads like a missing one, not like a version mismatch.
    let stale = app
        .client
        .patch(format!("{}/api/v1/blueprints/service/entities/b1", app.base))
        .bearer_auth(ana)
        .header("if-match", "\"0\"")
        .json(&json!({"properties": {"replicas": 1}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);
}

/// The `(error, message)` of each item of a bulk answer.
fn bulk_errors(reply: &crate::Reply) -> Vec<(Value, Value)> {
    let results = reply.body["results"].as_array().expect("results");
    results.iter().map(|r| (r["error"].clone(), r["message"].clone())).collect()
}

#[tokio::test]
async fn creating_over_a_hidden_entity_answers_like_a_refused_create_and_changes_nothing() {
    let org = org().await;
    let (app, ana) = (&org.app, &org.ana);
    let before = app.get("/api/v1/blueprints/service/entities/b1").await.body["entity"].clone();
    let entities = "/api/v1/blueprints/service/entities";
    // What ana gets for a create her grant does not allow: b9 would belong to team-b.
    let mut not_hers = service("b9");
    not_hers["team"] = json!(["team-b"]);
    let refused = org.call(ana, Method::POST, entities, Some(not_hers.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    // b1 exists but is hidden from her; creating it as hers must read the same, and not write.
    let mut over_hidden = service("b1");
    over_hidden["team"] = json!(["team-a"]);
    over_hidden["properties"]["language"] = json!("Python");
    for query in ["", "?upsert=true", "?upsert=true&merge=true"] {
        let collided = org.call(ana, Method::POST, &format!("{entities}{query}"), Some(over_hidden.clone())).await;
        assert_eq!(collided.status, refused.status, "{query}: {}", collided.body);
        assert_eq!(collided.body, refused.body, "{query}: exactly the answer of a refused create");

        let bulk = json!({"entities": [not_hers, over_hidden]});
        let answer = org.call(ana, Method::POST, &format!("{entities}/bulk{query}"), Some(bulk)).await;
        assert_eq!(answer.status, StatusCode::MULTI_STATUS, "{}", answer.body);
        let errors = bulk_errors(&answer);
        assert_eq!(errors[0].0, json!("forbidden"), "{}", answer.body);
        assert_eq!(errors[1], errors[0], "{query}: the hidden one reads like the refused one: {}", answer.body);
    }
    let after = app.get("/api/v1/blueprints/service/entities/b1").await.body["entity"].clone();
    assert_eq!(after, before, "b1 is untouched");
    assert_eq!(after["properties"]["language"], "Go");

    // Refused bulk items are audited like refused requests.
    let denied = app.get("/api/v1/audit-log?limit=1000&status=denied").await;
    let tried: Vec<&Value> = denied.body["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["actor"] == "ana" && r["resourceId"] == "b1" && r["action"] == "entity.create")
        .collect();
    assert_eq!(tried.len(), 3, "one per bulk attempt: {}", denied.body);
}

#[tokio::test]
async fn related_to_and_match_any_do_not_start_or_end_at_hidden_entities() {
    let org = org().await;
    let org = &org;
    let (app, ana) = (&org.app, &org.ana);
    // b1 (hidden from ana) depends on a1; a2 depends on a1 too.
    for (from, to) in [("b1", "a1"), ("a2", "a1")] {
        let path = format!("/api/v1/blueprints/service/entities/{from}");
        let linked = app.patch(&path, json!({"relations": {"dependsOn": [to]}})).await;
        assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    }
    let search = |rule: Value| async move {
        let query = json!({"query": {"combinator": "and", "rules": [rule]}});
        let found = org.call(ana, Method::POST, "/api/v1/blueprints/service/entities/search", Some(query)).await;
        assert_eq!(found.status, StatusCode::OK, "{}", found.body);
        identifiers(&found.body)
    };
    let related = |id: &str, direction: &str| json!({"operator": "relatedTo", "blueprint": "service", "value": id, "direction": direction});
    assert_eq!(search(related("a1", "upstream")).await, ["a2"], "from her own service, as before");
    assert_eq!(search(related("b1", "downstream")).await, Vec::<String>::new(), "as if b1 did not exist");
    assert_eq!(search(related("b1", "downstream")).await, search(related("zz", "downstream")).await);
    let both =
        json!({"operator": "relatedTo", "blueprint": "service", "value": ["b1", "a2"], "direction": "downstream"});
    assert_eq!(search(both).await, ["a1"], "what a2 reaches, not what b1 reaches");
    // The admin, who may read b1, walks from it.
    let query = json!({"query": {"combinator": "and", "rules": [related("b1", "downstream")]}});
    assert_eq!(identifiers(&app.post("/api/v1/blueprints/service/entities/search", query).await.body), ["a1"]);

    // A path may not end at b1 either: that would test its properties.
    let secret =
        app.patch("/api/v1/blueprints/service/entities/b1", json!({"properties": {"lifecycle": "secret"}})).await;
    assert_eq!(secret.status, StatusCode::OK);
    let mine = app.patch("/api/v1/blueprints/service/entities/a1", json!({"relations": {"dependsOn": ["b1"]}})).await;
    assert_eq!(mine.status, StatusCode::OK);
    let through = |lifecycle: &str| {
        json!({"operator": "matchAny", "relations": ["dependsOn"], "query": {"combinator": "and", "rules": [
            {"property": "lifecycle", "operator": "=", "value": lifecycle}]}})
    };
    let admin_query = json!({"query": {"combinator": "and", "rules": [through("secret")]}});
    let found = app.post("/api/v1/blueprints/service/entities/search", admin_query).await;
    assert_eq!(identifiers(&found.body), ["a1"]);
    assert_eq!(search(through("secret")).await, Vec::<String>::new(), "b1's lifecycle stays hidden");
    assert_eq!(search(through("experimental")).await, ["a2"], "a2 → a1, which she may read");
    let count = json!({"function": "count", "query": {"combinator": "and", "rules": [through("secret")]}});
    let counted = org.call(ana, Method::POST, "/api/v1/entities/aggregate", Some(count)).await;
    assert_eq!(counted.body["value"], 0.0, "{}", counted.body);
}

#[tokio::test]
async fn property_grants_narrow_update_and_only_members_or_moderators_give_ownership() {
    let org = org().await;
    let (ana, mo) = (&org.ana, &org.mo);
    let a1 = "/api/v1/blueprints/service/entities/a1";
    // ana owns a1, so she holds `update` on it; `replicas` has a grant of its own naming only bo.
    let replicas = org.call(ana, Method::PATCH, a1, Some(json!({"properties": {"replicas": 7}}))).await;
    assert_eq!(replicas.status, StatusCode::FORBIDDEN, "{}", replicas.body);
    let message = replicas.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("'replicas'") && message.contains("updateProperties"), "{message}");
    let language = org.call(ana, Method::PATCH, a1, Some(json!({"properties": {"language": "Python"}}))).await;
    assert_eq!(language.status, StatusCode::OK, "the other properties follow update: {}", language.body);
    let mixed = json!({"entities": [{"identifier": "a1", "properties": {"replicas": 7}},
        {"identifier": "a2", "properties": {"lifecycle": "production"}}]});
    let bulk = org
        .call(ana, Method::POST, "/api/v1/blueprints/service/entities/bulk?upsert=true&merge=true", Some(mixed))
        .await;
    let outcomes: Vec<Value> =
        bulk.body["results"].as_array().expect("results").iter().map(|r| r["result"].clone()).collect();
    assert_eq!(outcomes, ["error", "updated"], "{}", bulk.body);
    let stored = org.call(ana, Method::GET, a1, None).await;
    assert_eq!(stored.body["entity"]["properties"].get("replicas"), None, "{}", stored.body);
    let by_moderator = org.call(mo, Method::PATCH, a1, Some(json!({"properties": {"replicas": 7}}))).await;
    assert_eq!(by_moderator.status, StatusCode::OK, "{}", by_moderator.body);

    // Giving a1 to team-b as well: refused to ana, who is not in team-b; fine for the moderator.
    let share = json!({"team": ["team-a", "team-b"]});
    let given = org.call(ana, Method::PATCH, a1, Some(share.clone())).await;
    assert_eq!(given.status, StatusCode::FORBIDDEN, "{}", given.body);
    assert!(given.body["message"].as_str().is_some_and(|m| m.contains("'team-b'")), "{}", given.body);
    let mut new_shared = service("a4");
    new_shared["team"] = json!(["team-a", "team-b"]);
    let created = org.call(ana, Method::POST, "/api/v1/blueprints/service/entities", Some(new_shared)).await;
    assert_eq!(created.status, StatusCode::FORBIDDEN, "nor on a new service: {}", created.body);
    let denied = org.app.get("/api/v1/audit-log?limit=1000&status=denied").await;
    let text = denied.body.to_string();
    assert!(text.contains("PATCH /api/v1/blueprints/service/entities/a1") && text.contains("team-b"), "{text}");
    let kept = org.call(ana, Method::GET, a1, None).await;
    assert_eq!(kept.body["entity"]["team"], json!(["team-a"]));
    assert_eq!(org.call(mo, Method::PATCH, a1, Some(share)).await.status, StatusCode::OK);
    // Taking a team away needs only the update.
    let narrowed = org.call(ana, Method::PATCH, a1, Some(json!({"team": ["team-a"]}))).await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.body);
}

/// A relation to an entity the writer may not read is refused as if the entity did not exist:
/// the answer tells nothing, and nothing of it is mirrored to them.
#[tokio::test]
async fn a_relation_to_a_hidden_entity_is_refused_like_one_to_no_entity() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let ana = app.member("ana", &["team-a"]).await;
    let hidden = json!({"read": {"ownedByTeam": true}});
    assert_eq!(app.put("/api/v1/blueprints/system/permissions", hidden).await.status, StatusCode::OK);
    let open = json!({"read": {"roles": ["member"]}, "create": {"roles": ["member"]}});
    assert_eq!(app.put("/api/v1/blueprints/service/permissions", open).await.status, StatusCode::OK);
    let mut doc = service("probe");
    doc["team"] = json!(["team-a"]);
    let post = |system: &str| {
        let mut doc = doc.clone();
        doc["relations"]["system"] = json!(system);
        app.call_as(reqwest::Method::POST, "/api/v1/blueprints/service/entities", &ana, Some(doc))
    };
    let hidden = post("shop").await;
    let absent = post("no-such-system").await;
    assert_eq!(hidden.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", hidden.body);
    assert_eq!(hidden.detail_paths(), absent.detail_paths());
    assert_eq!(
        hidden.body["details"][0]["message"].as_str().map(|m| m.replace("shop", "X")),
        absent.body["details"][0]["message"].as_str().map(|m| m.replace("no-such-system", "X")),
        "the same words for both"
    );
    let readable =
        app.post("/api/v1/blueprints/system/entities", json!({"identifier": "mine", "team": ["team-a"]})).await;
    assert_eq!(readable.status, StatusCode::CREATED, "{}", readable.body);
    assert_eq!(post("mine").await.status, StatusCode::CREATED, "a readable target is fine");
}
