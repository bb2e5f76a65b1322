//! Catalog as code over the API: `POST /api/v1/apply` checks everything first, plans, applies in
//! dependency order and prunes only what its own source applied; `GET /api/v1/export` gives the
//! documents back.

use portolan_model::permission::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{TestApp, account_token, spawn_app};

fn doc(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "portolan.dev/v1", "kind": kind, "spec": spec})
}

fn in_file(file: &str, documents: &[Value]) -> Vec<Value> {
    documents.iter().enumerate().map(|(i, d)| json!({"file": file, "line": 1 + i * 10, "document": d})).collect()
}

/// A model where services and teams' systems point at each other (a circle of blueprints), with
/// a scorecard, an action and its permissions.
fn model() -> Vec<Value> {
    vec![
        doc(
            "Blueprint",
            json!({
                "identifier": "service", "title": "Service",
                "schema": {"properties": {"tier": {"type": "string", "enum": ["gold", "silver"]}}, "required": ["tier"]},
                "relations": {"system": {"target": "system"}, "dependsOn": {"target": "service", "many": true}}
            }),
        ),
        doc(
            "Blueprint",
            json!({
                "identifier": "system", "title": "System",
                "relations": {"flagship": {"target": "service"}}
            }),
        ),
        doc(
            "Scorecard",
            json!({
                "blueprint": "service", "identifier": "gold", "title": "Gold",
                "levels": [{"title": "Basic"}, {"title": "Gold"}],
                "rules": [{"identifier": "is-gold", "title": "Is gold", "level": "Gold",
                           "query": {"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": "gold"}]}}]
            }),
        ),
    ]
}

fn catalog() -> Vec<Value> {
    vec![
        doc("Entity", json!({"blueprint": "system", "identifier": "shop", "relations": {"flagship": "cart"}})),
        doc(
            "Entity",
            json!({"blueprint": "service", "identifier": "cart", "properties": {"tier": "gold"},
                              "relations": {"system": "shop", "dependsOn": ["pay"]}}),
        ),
        doc(
            "Entity",
            json!({"blueprint": "service", "identifier": "pay", "properties": {"tier": "silver"},
                              "relations": {"system": "shop"}}),
        ),
    ]
}

async fn apply(app: &TestApp, source: &str, documents: Vec<Value>, dry_run: bool, prune: bool) -> crate::Reply {
    app.post("/api/v1/apply", json!({"source": source, "documents": documents, "dryRun": dry_run, "prune": prune}))
        .await
}

fn ops(reply: &crate::Reply) -> Vec<(String, String, String)> {
    let mut ops: Vec<(String, String, String)> = reply.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap_or_default().into(),
                c["kind"].as_str().unwrap_or_default().into(),
                c["name"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    ops.sort();
    ops
}

fn op(op: &str, kind: &str, name: &str) -> (String, String, String) {
    (op.into(), kind.into(), name.into())
}

#[tokio::test]
async fn a_dry_run_plans_and_an_apply_writes_in_dependency_order() {
    let app = spawn_app().await;
    let mut documents = in_file("model.yaml", &model());
    documents.extend(in_file("catalog.yaml", &catalog()));

    let plan = apply(&app, "repo", documents.clone(), true, false).await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    assert_eq!(plan.body["dryRun"], true);
    assert_eq!(ops(&plan).iter().filter(|(o, _, _)| o == "create").count(), 6, "{}", plan.body);
    assert_eq!(app.get("/api/v1/blueprints/service").await.status, StatusCode::NOT_FOUND, "a dry run writes nothing");

    let applied = apply(&app, "repo", documents.clone(), false, false).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    let cart = app.get("/api/v1/blueprints/service/entities/cart").await;
    assert_eq!(cart.body["entity"]["relations"], json!({"system": "shop", "dependsOn": ["pay"]}));
    let shop = app.get("/api/v1/blueprints/system/entities/shop").await;
    assert_eq!(shop.body["entity"]["relations"]["flagship"], "cart", "the circle is closed after both exist");
    app.drain_jobs().await;
    let cart = app.get("/api/v1/blueprints/service/entities/cart").await;
    assert_eq!(cart.body["entity"]["scorecards"]["gold"]["level"], "Gold", "{}", cart.body);

    let again = apply(&app, "repo", documents.clone(), true, false).await;
    assert!(ops(&again).iter().all(|(o, _, _)| o == "unchanged"), "{}", again.body);

    // One change: the plan names it, with the field that changes.
    documents[4]["document"]["spec"]["properties"]["tier"] = json!("silver");
    let changed = apply(&app, "repo", documents, false, false).await;
    let update: Vec<&Value> =
        changed.body["changes"].as_array().expect("changes").iter().filter(|c| c["op"] == "update").collect();
    assert_eq!(update.len(), 1, "{}", changed.body);
    assert_eq!(update[0]["name"], "service/cart");
    assert_eq!(update[0]["diff"], json!([{"pointer": "/properties/tier", "before": "gold", "after": "silver"}]));
    let cart = app.get("/api/v1/blueprints/service/entities/cart").await;
    assert_eq!(cart.body["entity"]["properties"]["tier"], "silver");
}

#[tokio::test]
async fn every_problem_is_reported_with_file_line_and_pointer_and_nothing_is_written() {
    let app = spawn_app().await;
    let mut documents = in_file("model.yaml", &model());
    documents.extend(in_file(
        "catalog.yaml",
        &[
            doc("Entity", json!({"blueprint": "service", "identifier": "cart", "properties": {"tier": "bronze"}})),
            doc(
                "Entity",
                json!({"blueprint": "service", "identifier": "pay", "properties": {"tier": "gold"},
                              "relations": {"system": "nowhere"}}),
            ),
            doc("Entity", json!({"blueprint": "nothing", "identifier": "x"})),
            doc("Gadget", json!({})),
        ],
    ));
    documents.extend(in_file(
        "again.yaml",
        &[doc("Entity", json!({"blueprint": "service", "identifier": "cart", "properties": {"tier": "gold"}}))],
    ));
    let reply = apply(&app, "repo", documents, false, false).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    assert_eq!(reply.error_code(), "validation_failed");
    let problems: Vec<(String, u64, String)> = reply.body["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|p| {
            (
                p["file"].as_str().unwrap_or_default().into(),
                p["line"].as_u64().unwrap_or(0),
                p["path"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            ("again.yaml".to_string(), 1, String::new()),
            ("catalog.yaml".to_string(), 1, "/spec/properties/tier".to_string()),
            ("catalog.yaml".to_string(), 11, "/spec/relations/system".to_string()),
            ("catalog.yaml".to_string(), 21, "/spec/blueprint".to_string()),
            ("catalog.yaml".to_string(), 31, "/kind".to_string()),
        ],
        "{}",
        reply.body
    );
    let duplicate = &reply.body["details"][0]["message"];
    assert!(duplicate.as_str().is_some_and(|m| m.contains("catalog.yaml line 1")), "{duplicate}");
    assert_eq!(app.get("/api/v1/blueprints/service").await.status, StatusCode::NOT_FOUND, "nothing was written");
}

#[tokio::test]
async fn prune_deletes_only_what_the_same_source_applied() {
    let app = spawn_app().await;
    let mut documents = in_file("model.yaml", &model());
    documents.extend(in_file("catalog.yaml", &catalog()));
    assert_eq!(apply(&app, "repo", documents.clone(), false, false).await.status, StatusCode::OK);
    // Made by hand, and by another source: neither is this source's to prune.
    let by_hand = app
        .post("/api/v1/blueprints/service/entities", json!({"identifier": "manual", "properties": {"tier": "gold"}}))
        .await;
    assert_eq!(by_hand.status, StatusCode::CREATED, "{}", by_hand.body);
    let other = in_file(
        "other.yaml",
        &[doc("Entity", json!({"blueprint": "service", "identifier": "other", "properties": {"tier": "gold"}}))],
    );
    assert_eq!(apply(&app, "other-repo", other, false, false).await.status, StatusCode::OK);

    // `pay` leaves the files, but `cart` still depends on it: the prune is refused.
    let without_pay: Vec<Value> =
        documents.iter().filter(|d| d["document"]["spec"]["identifier"] != "pay").cloned().collect();
    let refused = apply(&app, "repo", without_pay.clone(), false, true).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert!(refused.body["details"][0]["message"].as_str().is_some_and(|m| m.contains("cart")), "{}", refused.body);

    // Without prune, removing a document changes nothing.
    let mut without_both = without_pay.clone();
    without_both[4]["document"]["spec"]["relations"] = json!({"system": "shop"});
    let kept = apply(&app, "repo", without_both.clone(), false, false).await;
    assert!(!ops(&kept).iter().any(|(o, _, _)| o == "delete"));
    assert_eq!(app.get("/api/v1/blueprints/service/entities/pay").await.status, StatusCode::OK);

    let pruned = apply(&app, "repo", without_both, false, true).await;
    assert_eq!(pruned.status, StatusCode::OK, "{}", pruned.body);
    assert!(ops(&pruned).contains(&op("delete", "Entity", "service/pay")), "{}", pruned.body);
    assert_eq!(ops(&pruned).iter().filter(|(o, _, _)| o == "delete").count(), 1);
    assert_eq!(app.get("/api/v1/blueprints/service/entities/pay").await.status, StatusCode::NOT_FOUND);
    for kept in ["manual", "other", "cart"] {
        let reply = app.get(&format!("/api/v1/blueprints/service/entities/{kept}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{kept} stays");
    }

    // An object another source declares cannot be taken over silently.
    let taken = in_file(
        "mine.yaml",
        &[doc("Entity", json!({"blueprint": "service", "identifier": "other", "properties": {"tier": "silver"}}))],
    );
    let refused = apply(&app, "repo", taken, false, false).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body["details"][0]["message"].as_str().is_some_and(|m| m.contains("other-repo")),
        "{}",
        refused.body
    );

    let sources = app.get("/api/v1/sources").await;
    let names: Vec<&str> =
        sources.body["sources"].as_array().expect("sources").iter().filter_map(|s| s["source"].as_str()).collect();
    assert_eq!(names, ["other-repo", "repo"]);
}

#[tokio::test]
async fn export_gives_back_what_apply_takes_and_only_admins_use_either() {
    let app = spawn_app().await;
    let mut documents = in_file("model.yaml", &model());
    documents.extend(in_file("catalog.yaml", &catalog()));
    assert_eq!(apply(&app, "repo", documents, false, false).await.status, StatusCode::OK);
    app.drain_jobs().await;
    let exported = app.get("/api/v1/export?blueprints=service,system").await;
    assert_eq!(exported.status, StatusCode::OK, "{}", exported.body);
    let kinds: Vec<&str> =
        exported.body["documents"].as_array().expect("documents").iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "Entity").count(), 3);
    assert!(kinds.contains(&"Scorecard") && kinds.contains(&"Blueprint"));
    let cart = exported.body["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .find(|d| d["spec"]["identifier"] == "cart")
        .expect("cart");
    assert!(
        cart["spec"].get("scorecards").is_none() && cart["spec"].get("version").is_none(),
        "only what a file declares: {cart}"
    );

    // The export applied onto an empty server gives the same export back.
    let fresh = spawn_app().await;
    let documents: Vec<Value> =
        exported.body["documents"].as_array().expect("documents").iter().map(|d| json!({"document": d})).collect();
    let applied = fresh.post("/api/v1/apply", json!({"source": "copy", "documents": documents})).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    fresh.drain_jobs().await;
    let again = fresh.get("/api/v1/export?blueprints=service,system").await;
    assert_eq!(again.body["documents"], exported.body["documents"]);

    let member = account_token(&app.state, "mia", Role::Member, &[]).await;
    let refused =
        app.call_as(Method::POST, "/api/v1/apply", &member, Some(json!({"source": "x", "documents": []}))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(app.call_as(Method::GET, "/api/v1/export", &member, None).await.status, StatusCode::FORBIDDEN);
    let unknown = app.get("/api/v1/export?blueprints=nope").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
