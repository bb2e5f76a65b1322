//! Every self-service action of `serve --demo`, run through the API by the demo users as README
//! describes them, to SUCCESS on the demo's own runner; and what a moderator may not make it run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Server;

/// A demo user's API token, made with `portolan admin create-token`.
fn token(dir: &std::path::Path, user: &str) -> String {
    let made = crate::admin(&["--demo"], dir, &["create-token", "--user", user, "--name", "demo-test"]);
    assert!(made.status.success(), "create-token: {}", String::from_utf8_lossy(&made.stderr));
    String::from_utf8_lossy(&made.stdout).trim().to_string()
}

struct As<'a> {
    base: &'a str,
    token: String,
}

impl As<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        portolan_server::outbound::install_crypto();
        let mut request =
            reqwest::Client::new().request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Starts a run and returns its id.
    async fn run(&self, action: &str, entity: Option<&str>, inputs: Value) -> String {
        let mut body = json!({"properties": inputs});
        if let Some(entity) = entity {
            body["entity"] = entity.into();
        }
        let (status, reply) =
            self.call(reqwest::Method::POST, &format!("/api/v1/actions/{action}/runs"), Some(body)).await;
        assert_eq!(status, 202, "{action}: {reply}");
        reply["run"]["id"].as_str().expect("run id").to_string()
    }

    async fn entity(&self, blueprint: &str, identifier: &str) -> Value {
        let path = format!("/api/v1/blueprints/{blueprint}/entities/{identifier}");
        let (status, reply) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{reply}");
        reply["entity"].clone()
    }
}

/// Waits for the run to end: the run, and its log.
async fn ends(user: &As<'_>, id: &str) -> (Value, Value) {
    let started = Instant::now();
    loop {
        let (_, reply) = user.call(reqwest::Method::GET, &format!("/api/v1/actions/runs/{id}"), None).await;
        let status = reply["run"]["status"].as_str().unwrap_or_default();
        if matches!(status, "SUCCESS" | "FAILURE" | "CANCELLED" | "TIMED_OUT" | "DECLINED") {
            let (_, logs) = user.call(reqwest::Method::GET, &format!("/api/v1/actions/runs/{id}/logs"), None).await;
            return (reply["run"].clone(), logs);
        }
        assert!(started.elapsed() < Duration::from_secs(30), "run {id} did not end: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the run to end and asserts it succeeded, showing its log when not.
async fn succeeds(user: &As<'_>, id: &str) -> Value {
    let (run, logs) = ends(user, id).await;
    assert_eq!(run["status"], "SUCCESS", "{}: {run}\nlog: {logs}", run["action"]);
    run
}

#[tokio::test]
async fn every_demo_action_runs_to_success_and_a_moderator_cannot_make_the_runner_run_anything_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--demo"], dir.path());
    let alice = As { base: &server.base, token: token(dir.path(), "alice@portolan.dev") };
    let carol = As { base: &server.base, token: token(dir.path(), "carol@portolan.dev") };
    let approver = &carol;
    let approve = |id: String| async move {
        let path = format!("/api/v1/actions/runs/{id}/approval");
        let (status, reply) = approver.call(reqwest::Method::PATCH, &path, Some(json!({"status": "APPROVE"}))).await;
        assert_eq!(status, 200, "{reply}");
        id
    };

    let scaffold = alice
        .run(
            "scaffold_service",
            None,
            json!({"name": "basket-service", "language": "Go", "system": "cart-system", "team": "team-cart"}),
        )
        .await;
    succeeds(&alice, &scaffold).await;
    assert_eq!(alice.entity("service", "basket-service").await["properties"]["language"], "Go");
    assert!(dir.path().join("portolan-data/demo-workspace/repos/basket-service/README.md").exists());

    let environment = alice
        .run("create_dev_environment", None, json!({"name": "cart-dev-alice", "service": "cart-service", "days": 2}))
        .await;
    succeeds(&alice, &environment).await;
    let ttl = alice.entity("environment", "cart-dev-alice").await["properties"]["ttl"].clone();
    let extend = alice.run("extend_environment_ttl", Some("cart-dev-alice"), json!({})).await;
    succeeds(&alice, &extend).await;
    assert_ne!(alice.entity("environment", "cart-dev-alice").await["properties"]["ttl"], ttl, "three more days");

    for version in ["1.1.0", "1.2.0"] {
        let deploy =
            alice.run("deploy_service", Some("cart-service"), json!({"version": version, "strategy": "canary"})).await;
        succeeds(&alice, &approve(deploy).await).await;
    }
    assert_eq!(alice.entity("service", "cart-service").await["properties"]["version"], "1.2.0");
    let revert = alice.run("revert_service", Some("cart-service"), json!({"reason": "errors after 1.2.0"})).await;
    succeeds(&alice, &revert).await;
    assert_eq!(alice.entity("service", "cart-service").await["properties"]["version"], "1.1.0", "reverted");

    let variable = alice
        .run("add_environment_variable", Some("cart-service"), json!({"key": "LOG_LEVEL", "value": "debug"}))
        .await;
    succeeds(&alice, &variable).await;
    let pods = alice.run("update_pod_count", Some("cart-service"), json!({"replicas": 4})).await;
    succeeds(&alice, &pods).await;
    let service = alice.entity("service", "cart-service").await;
    assert_eq!(service["properties"]["environmentVariables"]["LOG_LEVEL"], "debug");
    assert_eq!(service["properties"]["replicas"], json!(4));

    let lock = carol.run("lock_deployments", None, json!({"reason": "incident 42"})).await;
    succeeds(&carol, &lock).await;
    let body = json!({"entity": "cart-service", "properties": {"version": "1.3.0", "strategy": "canary"}});
    let (status, refused) = alice.call(reqwest::Method::POST, "/api/v1/actions/deploy_service/runs", Some(body)).await;
    assert_eq!((status, refused["error"].as_str()), (423, Some("locked")), "{refused}");
    let unlock = carol.run("unlock_deployments", None, json!({})).await;
    succeeds(&carol, &unlock).await;

    // Carol moderates services, but what the demo runner runs is not hers to choose.
    let (_, current) = carol.call(reqwest::Method::GET, "/api/v1/actions/deploy_service", None).await;
    let mut rewired = current["action"].clone();
    rewired["invocationMethod"]["task"] = json!("scaffold");
    let (status, reply) = carol.call(reqwest::Method::PUT, "/api/v1/actions/deploy_service", Some(rewired)).await;
    assert_eq!(status, 403, "{reply}");
    let escalate = json!({
        "identifier": "escalate", "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service"},
        "invocationMethod": {"type": "RUNNER", "labels": ["demo"],
                             "command": ["portolan", "admin", "create-token", "--user", "admin", "--name", "x"]}
    });
    let (status, reply) = carol.call(reqwest::Method::POST, "/api/v1/actions", Some(escalate)).await;
    assert_eq!(status, 422, "a command line is no action's to give: {reply}");
    server.kill();
}

/// Every template of the gallery, as `--demo` installs it, runs its demo run to SUCCESS on the
/// demo's runner against the local stand-ins; the temporary cloud access is revoked when it ends.
#[tokio::test]
async fn every_gallery_template_runs_to_success_in_the_demo() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--demo"], dir.path());
    let admin = As { base: &server.base, token: crate::token_of(&server) };
    let carol = As { base: &server.base, token: token(dir.path(), "carol@portolan.dev") };
    let templates = portolan_server::gallery::templates().expect("the gallery");
    // The lock would stop the deploy-like runs: it goes last, and is lifted.
    let (locks, others): (Vec<_>, Vec<_>) = templates.iter().partition(|t| t.identifier == "lock_deployments");
    for template in others.into_iter().chain(locks) {
        let action = template.actions[0]["identifier"].as_str().expect("an action");
        let inputs = serde_json::Value::Object(template.demo.inputs.clone());
        let id = admin.run(action, template.demo.entity.as_deref(), inputs).await;
        let (_, run) = admin.call(reqwest::Method::GET, &format!("/api/v1/actions/runs/{id}"), None).await;
        if run["run"]["status"] == "WAITING_FOR_APPROVAL" {
            let path = format!("/api/v1/actions/runs/{id}/approval");
            let (status, reply) = carol.call(reqwest::Method::PATCH, &path, Some(json!({"status": "APPROVE"}))).await;
            assert_eq!(status, 200, "{action}: {reply}");
        }
        let done = succeeds(&admin, &id).await;
        assert!(!done["summary"].as_str().unwrap_or_default().is_empty(), "{action} says what it did: {done}");
    }
    eprintln!("serve --demo to every template's run done: {:.1} s", started.elapsed().as_secs_f64());
    let unlock = admin.run("unlock_deployments", None, json!({})).await;
    succeeds(&admin, &unlock).await;

    // What the stand-ins did is there to see: the cloud, the warehouse, the registry, git.
    let workspace = dir.path().join("portolan-data/demo-workspace");
    for made in [
        "cloud/resources/gallery-cache.json",
        "customers/globex.json",
        "warehouse.db",
        "flags.json",
        "repos/cart-service/infra/main.tf",
        "cloud/notebooks/gallery-notebook.json",
    ] {
        assert!(workspace.join(made).exists(), "{made} is missing");
    }
    assert_eq!(admin.entity("cloud_resource", "gallery-cache").await["properties"]["monthlyCost"], json!(25.0));
    let columns = admin.entity("data_table", "orders").await["properties"]["columns"].clone();
    assert!(columns.as_array().is_some_and(|c| c.contains(&json!("discount"))), "{columns}");

    // The temporary access ends: the automation revokes it in the cloud and in the catalog.
    let (_, grants) = admin
        .call(reqwest::Method::POST, "/api/v1/blueprints/access_grant/entities/search", Some(json!({"limit": 5})))
        .await;
    let grant = grants["entities"][0]["identifier"].as_str().expect("a grant").to_string();
    let file = workspace.join(format!("cloud/iam/{grant}.json"));
    assert!(file.exists(), "the grant is in the cloud");
    let soon = portolan_model::format_millis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64 + 1_000,
    );
    let path = format!("/api/v1/blueprints/access_grant/entities/{grant}");
    let (status, reply) =
        admin.call(reqwest::Method::PATCH, &path, Some(json!({"properties": {"expiresAt": soon}}))).await;
    assert_eq!(status, 200, "{reply}");
    let waiting = Instant::now();
    while admin.call(reqwest::Method::GET, &path, None).await.0 != 404 {
        assert!(waiting.elapsed() < Duration::from_secs(20), "the grant was not revoked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!file.exists(), "the grant is gone from the cloud too");

    // A stand-in that refuses the work fails the run with its reason: a write in a read-only
    // query reaches the warehouse, which is opened read-only, and changes nothing there.
    let count = || async {
        let read = json!({"query": "SELECT count(*) AS orders FROM orders", "mode": "read-only", "reason": "count"});
        let id = admin.run("run_production_query", Some("production"), read).await;
        succeeds(&admin, &id).await;
        let (_, logs) = admin.call(reqwest::Method::GET, &format!("/api/v1/actions/runs/{id}/logs"), None).await;
        let lines: Vec<String> = logs["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["message"].as_str().map(String::from))
            .collect();
        lines.last().cloned().expect("the count")
    };
    let before = count().await;
    let write = json!({"query": "DELETE FROM orders", "mode": "read-only", "reason": "tidy up the orders"});
    let refused = admin.run("run_production_query", Some("production"), write).await;
    let (run, logs) = ends(&admin, &refused).await;
    assert_eq!(run["status"], "FAILURE", "{run}");
    let log = logs.to_string();
    assert!(log.contains("the database refused the query") && log.contains("readonly"), "{log}");
    assert_eq!(count().await, before, "no order was deleted");

    // Without the rights a run is refused before it starts: only the cart team fetches the
    // cart service's logs.
    let bob = As { base: &server.base, token: token(dir.path(), "bob@portolan.dev") };
    let body =
        json!({"entity": "cart-service", "properties": {"environment": "production", "level": "warn", "lines": 20}});
    let (status, reply) = bob.call(reqwest::Method::POST, "/api/v1/actions/fetch_logs/runs", Some(body)).await;
    assert_eq!((status, reply["error"].as_str()), (403, Some("forbidden")), "{reply}");
    server.kill();
}
