//! Backstage interoperability: descriptors imported through `/api/v1/apply`, and Backstage's own
//! `@backstage/catalog-client` (npm, pinned) run against `/api/catalog`.

use std::path::PathBuf;

use portolan_model::permission::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestApp, account_token, query_value, spawn_app};

fn descriptor(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "backstage.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

fn catalog() -> Vec<Value> {
    let mut cart = descriptor(
        "Component",
        "cart",
        json!({"type": "service", "lifecycle": "production", "owner": "team-a",
        "providesApis": ["cart-api"], "dependsOn": ["component:pay"]}),
    );
    cart["metadata"]["title"] = json!("Cart");
    vec![
        descriptor("Group", "dept", json!({"type": "department", "children": ["team-a"]})),
        descriptor("Group", "team-a", json!({"type": "team", "parent": "dept", "children": []})),
        descriptor("User", "ana", json!({"memberOf": ["team-a"], "profile": {"email": "ana@example.com"}})),
        cart,
        descriptor(
            "Component",
            "pay",
            json!({"type": "service", "owner": "team-b", "dependsOn": ["component:default/ghost"]}),
        ),
        descriptor("Component", "legacy", json!({"type": "library", "owner": "user:ana"})),
        descriptor("API", "cart-api", json!({"type": "openapi", "owner": "team-a", "definition": "openapi: 3.0.0"})),
    ]
}

async fn import(app: &TestApp, documents: Vec<Value>) -> crate::Reply {
    import_as(app, "backstage", documents).await
}

async fn import_as(app: &TestApp, source: &str, documents: Vec<Value>) -> crate::Reply {
    let documents: Vec<Value> =
        documents.into_iter().map(|d| json!({"file": "catalog-info.yaml", "document": d})).collect();
    app.post("/api/v1/apply", json!({"source": source, "documents": documents})).await
}

#[tokio::test]
async fn descriptors_import_with_unresolved_references_kept() {
    let app = spawn_app().await;
    let imported = import(&app, catalog()).await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    let pay = app.get("/api/v1/blueprints/backstage-component/entities/pay").await;
    assert_eq!(
        pay.body["entity"]["properties"]["unresolved"],
        json!({"dependsOn": ["component:default/ghost"], "$team": ["group:default/team-b"]})
    );
    assert_eq!(pay.body["entity"]["team"], json!([]));
    let ana = app.get("/api/v1/blueprints/_user/entities/ana").await;
    assert_eq!(ana.body["entity"]["team"], json!(["team-a"]), "memberOf makes a user a member of the team");

    // The missing targets arrive, from another repository: the references resolve at once.
    let more = vec![
        descriptor("Component", "ghost", json!({"type": "service"})),
        descriptor("Group", "team-b", json!({"type": "team", "children": []})),
    ];
    let arrived = import_as(&app, "second-repo", more).await;
    assert_eq!(arrived.status, StatusCode::OK, "{}", arrived.body);
    let pay = app.get("/api/v1/blueprints/backstage-component/entities/pay").await;
    assert_eq!(pay.body["entity"]["relations"]["dependsOn"], json!(["ghost"]));
    assert_eq!(pay.body["entity"]["team"], json!(["team-b"]));
    assert!(pay.body["entity"]["properties"].get("unresolved").is_none(), "{}", pay.body);
    let again = import(&app, catalog()).await;
    assert!(
        again.body["changes"].as_array().expect("changes").iter().all(|c| c["op"] == "unchanged"),
        "the first source, applied again, finds its entities as its files say: {}",
        again.body
    );

    let bad = import(
        &app,
        vec![descriptor("Component", "x", json!({"dependsOn": ["nokind"]})), descriptor("Widget", "y", json!({}))],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.detail_paths(), ["/spec/dependsOn/0", "/kind"]);
}

fn harness_dir() -> PathBuf {
    crate::npm_harness("backstage-client", "@backstage/catalog-client")
}

#[tokio::test]
async fn backstages_own_catalog_client_reads_portolan() {
    let app = spawn_app().await;
    assert_eq!(import(&app, catalog()).await.status, StatusCode::OK);
    let restricted =
        app.put("/api/v1/blueprints/backstage-component/permissions", json!({"read": {"ownedByTeam": true}})).await;
    assert_eq!(restricted.status, StatusCode::OK, "{}", restricted.body);
    let member = account_token(&app.state, "mia", Role::Member, &["team-a"]).await;

    let folder = tempfile::tempdir().expect("dir");
    let descriptor = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: from-file\nspec:\n  type: service\n  owner: team-a\n";
    std::fs::write(folder.path().join("catalog-info.yaml"), descriptor).expect("write");
    let empty = tempfile::tempdir().expect("dir");
    let output = tokio::process::Command::new("node")
        .arg("client.mjs")
        .current_dir(harness_dir())
        .env("PORTOLAN_BASE", &app.base)
        .env("PORTOLAN_TOKEN", &app.admin_token)
        .env("PORTOLAN_MEMBER_TOKEN", &member)
        .env("PORTOLAN_LOCATION_DIR", folder.path())
        .env("PORTOLAN_EMPTY_DIR", empty.path())
        .output()
        .await
        .expect("node runs the client");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && stdout.trim() == "ok", "the Backstage client failed:\n{stdout}\n{stderr}");
}

#[tokio::test]
async fn bad_predicates_and_locations_get_backstage_errors() {
    let app = spawn_app().await;
    let cases = [
        ("/api/catalog/entities/by-query", json!({"query": {"$all": {"kind": "component"}}}), "$all takes an array"),
        ("/api/catalog/entities/by-query", json!({"query": {"kind": "a", "$not": {}}}), "stands alone"),
        ("/api/catalog/entities/by-query", json!({"limit": "ten"}), "the body is not"),
        (
            "/api/catalog/entity-facets",
            json!({"facets": ["kind"], "query": {"kind": {"$in": "x"}}}),
            "$in takes an array",
        ),
        (
            "/api/catalog/analyze-location",
            json!({"location": {"type": "url", "target": "file:///nowhere/repo.git"}}),
            "cannot fetch",
        ),
        ("/api/catalog/analyze-location", json!({"location": {"type": "ftp", "target": "x"}}), "neither url nor file"),
    ];
    for (path, body, message) in cases {
        let reply = app.post(path, body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {body}: {}", reply.body);
        assert_eq!(reply.body["error"]["name"], "InputError");
        let text = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{path} {body}: {text}");
    }
}

/// Every page of a GET by-query answer, one entity per page, following the cursors: the names in
/// order, and the total each page gave.
async fn pages(app: &TestApp, token: &str, filters: &str) -> (Vec<String>, Vec<u64>) {
    let (mut names, mut totals) = (Vec::new(), Vec::new());
    let mut next = format!("/api/catalog/entities/by-query?{filters}&limit=1");
    loop {
        let page = app.call_as(reqwest::Method::GET, &next, token, None).await;
        assert_eq!(page.status, StatusCode::OK, "{next}: {}", page.body);
        let items = page.body["items"].as_array().expect("items");
        names.extend(items.iter().map(|e| e["metadata"]["name"].as_str().expect("a name").to_string()));
        totals.push(page.body["totalItems"].as_u64().expect("a total"));
        match page.body["pageInfo"]["nextCursor"].as_str() {
            Some(cursor) => next = format!("/api/catalog/entities/by-query?limit=1&cursor={}", query_value(cursor)),
            None => return (names, totals),
        }
    }
}

/// Kind and type queries are counted and paged from the store's indexes; a value stored in
/// another case (which Backstage matches, ignoring case) gives the same answers by reading every
/// candidate instead. Either way the reader sees only what their grants show.
#[tokio::test]
async fn by_query_pages_and_totals_hold_whatever_the_case_of_stored_values() {
    let app = spawn_app().await;
    assert_eq!(import(&app, catalog()).await.status, StatusCode::OK);
    let admin = app.admin_token.clone();
    let services = "filter=kind=component,spec.type=SERVICE";
    assert_eq!(pages(&app, &admin, services).await, (vec!["cart".into(), "pay".into()], vec![2, 2]));
    let (names, totals) = pages(&app, &admin, "filter=kind=api,kind=component").await;
    assert_eq!(names, ["cart-api", "cart", "legacy", "pay"], "in uid order: blueprint, then name");
    assert!(totals.iter().all(|t| *t == 4), "{totals:?}");

    let billing = descriptor("Component", "billing", json!({"type": "Service", "owner": "team-a"}));
    assert_eq!(import_as(&app, "second-repo", vec![billing]).await.status, StatusCode::OK);
    assert_eq!(
        pages(&app, &admin, services).await,
        (vec!["billing".into(), "cart".into(), "pay".into()], vec![3, 3, 3])
    );

    let facets = app.get("/api/catalog/entity-facets?facet=kind&facet=metadata.namespace&filter=kind=component").await;
    assert_eq!(
        facets.body["facets"],
        json!({"kind": [{"value": "Component", "count": 4}], "metadata.namespace": [{"value": "default", "count": 4}]}),
        "a descriptor without a namespace is counted in default"
    );

    let restricted =
        app.put("/api/v1/blueprints/backstage-component/permissions", json!({"read": {"ownedByTeam": true}})).await;
    assert_eq!(restricted.status, StatusCode::OK, "{}", restricted.body);
    let member = account_token(&app.state, "mia", Role::Member, &["team-a"]).await;
    assert_eq!(pages(&app, &member, services).await, (vec!["billing".into(), "cart".into()], vec![2, 2]));
    let (names, _) = pages(&app, &member, "filter=kind=component,spec.lifecycle=production").await;
    assert_eq!(names, ["cart"]);
}
