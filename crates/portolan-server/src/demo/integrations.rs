//! The demo's integrations: a webhook that CD notices push deployments to, and a REST
//! integration pulling a cloud inventory from a small source the demo serves itself on loopback.
//! The inventory changes every two minutes (one scratch bucket replaces the last), so a newcomer
//! sees entities arrive and leave with each pull.

use axum::extract::Query;
use serde::Deserialize;
use serde_json::{Value, json};

use portolan_model::error::from_json;

use crate::error::{ErrorCode, Result};
use crate::services::Actor;
use crate::state::AppState;

/// The demo webhook's shared token (sent as `X-Deploy-Token`): for the demo only.
pub const DEPLOY_TOKEN: &str = "demo-deploy-token";
const DEPLOY_TOKEN_SECRET: &str = "demo-deploy-token";
/// Items per page of the demo source.
const PAGE_SIZE: usize = 2;

/// Serves the demo's cloud inventory on a loopback port; its URL.
pub async fn start_source() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let router = axum::Router::new().route("/inventory", axum::routing::get(inventory_page));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::warn!(%err, "the demo inventory stopped");
        }
    });
    Ok(format!("http://{address}/inventory"))
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

async fn inventory_page(Query(query): Query<PageQuery>) -> axum::Json<Value> {
    let minutes = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or_default();
    let items = inventory(minutes / 2);
    let page = query.page.unwrap_or(1).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE).collect();
    axum::Json(json!({"page": page, "resources": slice}))
}

/// The inventory in a two-minute period: four lasting resources and that period's scratch bucket.
fn inventory(period: u64) -> Vec<Value> {
    let resource = |id: &str, kind: &str, provider: &str, region: &str, system: &str| {
        json!({"id": id, "name": id.replace('-', " "), "type": kind, "cloud": provider, "region": region,
               "system": system, "console": format!("https://console.example.com/{provider}/{id}")})
    };
    vec![
        resource("orders-db", "database", "aws", "eu-west-1", "cart-system"),
        resource("checkout-queue", "queue", "aws", "eu-west-1", "cart-system"),
        resource("product-images", "bucket", "gcp", "europe-west1", "products-system"),
        resource("session-cache", "cache", "aws", "eu-west-1", "cart-system"),
        resource(&format!("scratch-bucket-{period}"), "bucket", "aws", "us-east-1", "products-system"),
    ]
}

/// The demo's two integrations, written on every start (the source's port changes); the
/// webhook's ingest URL when it was made now (it is shown once).
pub async fn load(app: &AppState, source_url: &str) -> Result<Option<String>> {
    let actor = Actor::demo();
    app.integrations.trust_source(source_url);
    if app.actions.list_secrets(&actor).await?.iter().all(|s| s.name != DEPLOY_TOKEN_SECRET) {
        app.actions.put_secret(&actor, DEPLOY_TOKEN_SECRET, DEPLOY_TOKEN).await?;
    }
    let inventory = json!({
        "identifier": "cloud-inventory",
        "title": "Cloud inventory",
        "type": "rest",
        "intervalSeconds": 30,
        "source": {"url": source_url, "itemsPath": ".resources", "pagination": {"type": "page", "param": "page"}},
        "mapping": {"resources": [{"kind": "resource", "port": {"entity": {"mappings": {
            "identifier": ".id", "title": ".name", "blueprint": "\"resource\"",
            "properties": {"kind": ".type", "provider": ".cloud", "region": ".region", "consoleUrl": ".console"},
            "relations": {"system": ".system"}}}}}]}
    });
    let deploys = json!({
        "identifier": "deploy-events",
        "title": "Deployment notices",
        "type": "webhook",
        "security": {"secret": DEPLOY_TOKEN_SECRET, "signatureAlgorithm": "plain",
                     "signatureHeaderName": "X-Deploy-Token", "requestIdentifierPath": ".body.id"},
        "mapping": {"resources": [{"kind": "deployment",
            "selector": {"query": ".body.service != null and .body.version != null"},
            "port": {"entity": {"mappings": {
                "identifier": ".body.service + \"-\" + .body.version",
                "title": ".body.service + \" \" + .body.version",
                "blueprint": "\"deployment\"",
                "properties": {"version": ".body.version", "strategy": ".body.strategy // \"canary\"",
                               "status": ".body.status", "deployedAt": ".body.finishedAt"},
                "relations": {"service": ".body.service", "environment": ".body.environment"}}}}}]}
    });
    let mut ingest_url = None;
    for definition in [inventory, deploys] {
        let identifier = definition["identifier"].as_str().unwrap_or_default().to_string();
        match app.integrations.create(&actor, from_json(definition.clone())?).await {
            Ok(view) => ingest_url = ingest_url.or(view.ingest_url),
            Err(err) if err.code == ErrorCode::AlreadyExists => {
                app.integrations.update(&actor, &identifier, from_json(definition)?).await?;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(ingest_url)
}
