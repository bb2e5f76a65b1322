//! `/mcp`: an assistant reads the catalog and runs actions as the user whose token it holds, under
//! the same permissions and guardrails, and every call is in the audit log with origin `mcp`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestApp, service, spawn_app};

/// A POST of one message to `/mcp` as an MCP client sends it, with `token` (none at all without).
fn request(app: &TestApp, token: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
    // The test client sends the admin's token unless told otherwise: a bare one sends none.
    let client = if token.is_some() { app.client.clone() } else { reqwest::Client::new() };
    let request = client
        .post(format!("{}/mcp", app.base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(body);
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

async fn post(app: &TestApp, token: Option<&str>, body: Value, origin: Option<&str>) -> (StatusCode, Value) {
    let mut request = request(app, token, &body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.expect("sent");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn rpc(app: &TestApp, token: &str, method: &str, params: Value) -> Value {
    let (status, reply) =
        post(app, Some(token), json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params}), None).await;
    assert_eq!(status, StatusCode::OK, "{method}: {reply}");
    assert_eq!(reply["id"], "r1", "{reply}");
    reply
}

/// A tool's structured result, asserting whether it is an error.
async fn tool(app: &TestApp, token: &str, name: &str, arguments: Value, is_error: bool) -> Value {
    let reply = rpc(app, token, "tools/call", json!({"name": name, "arguments": arguments})).await;
    let result = &reply["result"];
    assert_eq!(result["isError"], is_error, "{name}: {reply}");
    let text = result["content"][0]["text"].as_str().expect("text content");
    assert_eq!(serde_json::from_str::<Value>(text).ok().as_ref(), Some(&result["structuredContent"]));
    result["structuredContent"].clone()
}

pub(crate) async fn catalog_with_a_guarded_action(app: &TestApp) {
    app.with_service_blueprints().await;
    app.member("bo", &["team-b"]).await;
    app.member("ana", &["team-a"]).await;
    for (id, team) in [("cart", "team-a"), ("vault", "team-b")] {
        let mut entity = service(id);
        entity["team"] = json!([team]);
        let made = app.post("/api/v1/blueprints/service/entities", entity).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    }
    let read = app.put("/api/v1/blueprints/service/permissions", json!({"read": {"ownedByTeam": true}})).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let action = json!({
        "identifier": "scale", "title": "Scale",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
            "userInputs": {"properties": {"replicas": {"type": "number", "maximum": 10}}, "required": ["replicas"]}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"replicas": "{{ .inputs.replicas }}"}}},
        "guardrails": {"approval": {"approvers": {"users": ["admin@test"]}}}
    });
    let made = app.post("/api/v1/actions", action).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let restart = json!({
        "identifier": "promote", "title": "Promote to production",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service"},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"lifecycle": "production"}}}
    });
    let made = app.post("/api/v1/actions", restart).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
}

/// The JSON-RPC messages of an event-stream answer.
fn stream_messages(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| l.strip_prefix("data:")).filter_map(|d| serde_json::from_str(d.trim()).ok()).collect()
}

async fn streamed(app: &TestApp, token: &str, id: &str, name: &str, arguments: Value) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": {"progressToken": format!("progress-{id}")}}});
    let response = request(app, Some(token), &body).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    response
}

/// A run followed to its end reports each status as progress, then answers with the ended run;
/// a wait the caller cancels ends without an answer, and the run goes on.
#[tokio::test]
async fn a_tool_that_waits_for_a_run_reports_progress_and_stops_when_cancelled() {
    let app = spawn_app().await;
    catalog_with_a_guarded_action(&app).await;
    let ana = app.member("ana", &["team-a"]).await;

    let response =
        streamed(&app, &ana, "w1", "run_action", json!({"action": "promote", "entity": "cart", "waitSeconds": 20}))
            .await;
    let messages = stream_messages(&response.text().await.expect("stream"));
    let (progress, answers): (Vec<&Value>, Vec<&Value>) =
        messages.iter().partition(|m| m["method"] == "notifications/progress");
    assert!(!progress.is_empty(), "{messages:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "progress-w1"), "{progress:?}");
    let steps: Vec<u64> = progress.iter().filter_map(|p| p["params"]["progress"].as_u64()).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "progress only grows: {steps:?}");
    assert_eq!(answers.len(), 1, "{messages:?}");
    assert_eq!(answers[0]["id"], "w1");
    assert_eq!(answers[0]["result"]["structuredContent"]["run"]["status"], "SUCCESS", "{messages:?}");

    let waiting = tool(
        &app,
        &ana,
        "run_action",
        json!({"action": "scale", "entity": "cart", "properties": {"replicas": 2}}),
        false,
    )
    .await;
    let id = waiting["run"]["id"].as_str().expect("id").to_string();
    let response = streamed(&app, &ana, "w2", "get_run", json!({"run": id, "waitSeconds": 60})).await;
    let reading = tokio::spawn(async move { response.text().await.expect("stream") });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "w2", "reason": "enough"}});
    assert_eq!(post(&app, Some(&ana), cancel, None).await.0, StatusCode::ACCEPTED);
    let text =
        tokio::time::timeout(std::time::Duration::from_secs(10), reading).await.expect("the wait ends").expect("read");
    let messages = stream_messages(&text);
    assert!(messages.iter().all(|m| m["method"] == "notifications/progress"), "no answer once cancelled: {messages:?}");
    let still = tool(&app, &ana, "get_run", json!({"run": id}), false).await;
    assert_eq!(still["run"]["status"], "WAITING_FOR_APPROVAL");
    let too_long = tool(&app, &ana, "get_run", json!({"run": id, "waitSeconds": 600}), true).await;
    assert_eq!(too_long["details"][0]["path"], "/waitSeconds", "{too_long}");
    // Refused with the other arguments: no run starts.
    let runs = || async { app.get("/api/v1/actions/runs?action=promote").await.body["runs"].as_array().map(Vec::len) };
    let before = runs().await;
    let too_long = json!({"action": "promote", "entity": "cart", "waitSeconds": 600});
    let refused = tool(&app, &ana, "run_action", too_long, true).await;
    assert_eq!(refused["details"][0]["path"], "/waitSeconds", "{refused}");
    assert_eq!(runs().await, before);
}

#[tokio::test]
async fn an_assistant_reads_and_acts_as_its_user_and_every_call_is_audited() {
    let app = spawn_app().await;
    catalog_with_a_guarded_action(&app).await;
    let ana = app.member("ana", &["team-a"]).await;

    let hello = rpc(
        &app,
        &ana,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}),
    )
    .await;
    assert_eq!(hello["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(hello["result"]["serverInfo"]["name"], "portolan");
    let (status, _) =
        post(&app, Some(&ana), json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let tools = rpc(&app, &ana, "tools/list", json!({})).await;
    let names: Vec<&str> =
        tools["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(names.iter().all(|n| !n.contains("approve")), "no tool approves: {names:?}");

    let model = tool(&app, &ana, "describe_data_model", json!({"blueprint": "service"}), false).await;
    assert_eq!(model["blueprints"][0]["relations"]["system"]["target"], "system", "{model}");
    // Only what ana may read: her team's service, in brief unless she asks for more.
    let found =
        tool(&app, &ana, "search_entities", json!({"fields": ["properties.language"], "blueprint": "service"}), false)
            .await;
    assert_eq!(
        found["entities"],
        json!([{"identifier": "cart", "title": null, "blueprint": "service", "team": ["team-a"],
        "properties": {"language": "Rust"}}])
    );
    let counted =
        tool(&app, &ana, "count_entities", json!({"blueprint": "service", "groupBy": "language"}), false).await;
    assert_eq!(counted["groups"], json!([{"value": "Rust", "count": 1}]));
    let hidden = tool(&app, &ana, "get_entity", json!({"blueprint": "service", "identifier": "vault"}), true).await;
    assert_eq!(hidden["error"], "not_found", "{hidden}");
    let actions = tool(&app, &ana, "list_actions", json!({}), false).await;
    let listed = actions["actions"].as_array().expect("actions");
    let ids: Vec<&str> = listed.iter().filter_map(|a| a["identifier"].as_str()).collect();
    assert_eq!(ids, ["promote", "scale"], "{actions}");
    assert!(listed.iter().all(|a| a.get("invocationMethod").is_none()), "how a run is carried out stays hidden");

    // Guardrails apply as in the portal: a bound refuses, an approval makes the run wait.
    let too_many = json!({"action": "scale", "entity": "cart", "properties": {"replicas": 40}});
    let refused = tool(&app, &ana, "run_action", too_many, true).await;
    assert!(refused["message"].as_str().unwrap_or_default().contains("replicas"), "{refused}");
    let dry = tool(
        &app,
        &ana,
        "dry_run_action",
        json!({"action": "scale", "entity": "cart", "properties": {"replicas": 4}}),
        false,
    )
    .await;
    assert_eq!(
        (dry["wouldStart"].clone(), dry["status"].clone()),
        (json!(true), json!("WAITING_FOR_APPROVAL")),
        "{dry}"
    );
    let started = tool(
        &app,
        &ana,
        "run_action",
        json!({"action": "scale", "entity": "cart", "properties": {"replicas": 4}}),
        false,
    )
    .await;
    assert_eq!(started["run"]["status"], "WAITING_FOR_APPROVAL", "{started}");
    assert!(started["run"].get("payload").is_none());
    let id = started["run"]["id"].as_str().expect("run id").to_string();
    let tracked = tool(&app, &ana, "get_run", json!({"run": id}), false).await;
    assert_eq!(tracked["run"]["id"], id.as_str());
    let waiting = tool(&app, &app.admin_token, "list_my_approvals", json!({}), false).await;
    assert_eq!(waiting["waitingForYou"][0]["id"], id.as_str(), "{waiting}");
    let theirs = tool(&app, &ana, "list_my_approvals", json!({}), false).await;
    assert_eq!(theirs["waitingForYou"], json!([]));

    let typo = tool(&app, &ana, "search_entities", json!({"limt": 5}), true).await;
    assert!(typo["message"].as_str().unwrap_or_default().contains("limt"), "{typo}");
    let unknown = rpc(&app, &ana, "tools/call", json!({"name": "approve_run", "arguments": {}})).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    let method = rpc(&app, &ana, "resources/list", json!({})).await;
    assert_eq!(method["error"]["code"], -32601, "{method}");

    let audit = app.get("/api/v1/audit-log?origin=mcp&limit=100").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let records = audit.body["records"].as_array().expect("records").clone();
    let calls = records.iter().filter(|r| r["action"] == "mcp.call" && r["actor"] == "ana").count();
    assert_eq!(calls, 11, "every tool call, the refused ones too: {records:?}");
    assert!(
        records.iter().any(|r| r["action"] == "mcp.call" && r["status"] == "denied" && r["resourceId"] == "get_entity")
    );
    let typo = records
        .iter()
        .find(|r| r["resourceId"] == "search_entities" && r["reason"].as_str().is_some_and(|m| m.contains("limt")));
    assert_eq!(typo.map(|r| r["status"].clone()), Some(json!("success")), "a mistake is not a refusal: {records:?}");
    assert!(records.iter().any(|r| r["action"] == "run.create" && r["origin"] == "mcp"), "{records:?}");
}

#[tokio::test]
async fn the_endpoint_refuses_what_it_cannot_serve_with_the_protocols_answers() {
    let app = spawn_app().await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, reply) = post(&app, None, ping.clone(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let (status, reply) = post(&app, Some("plt_not-a-token"), ping.clone(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let (status, reply) = post(&app, Some(&app.admin_token), ping.clone(), Some("https://evil.example")).await;
    assert_eq!((status, reply["error"]["code"].clone()), (StatusCode::FORBIDDEN, json!(-32600)), "{reply}");
    let (status, reply) = post(&app, Some(&app.admin_token), json!([ping]), None).await;
    assert_eq!((status, reply["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!(-32600)), "{reply}");
    let (status, reply) = post(&app, Some(&app.admin_token), ping.clone(), None).await;
    assert_eq!((status, reply["result"].clone()), (StatusCode::OK, json!({})), "{reply}");
    let wrong_version = app
        .client
        .post(format!("{}/mcp", app.base))
        .header("mcp-protocol-version", "1999-01-01")
        .json(&ping)
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong_version.status(), StatusCode::BAD_REQUEST);
    let listen =
        app.client.get(format!("{}/mcp", app.base)).header("accept", "text/event-stream").send().await.expect("sent");
    assert_eq!(listen.status(), StatusCode::METHOD_NOT_ALLOWED);
    let garbled = app
        .client
        .post(format!("{}/mcp", app.base))
        .header("content-type", "application/json")
        .body("{\"jsonrpc\": \"2.0\", \"id\": 1,")
        .send()
        .await
        .expect("sent");
    assert_eq!(garbled.status(), StatusCode::BAD_REQUEST);
    let body: Value = garbled.json().await.expect("json");
    assert_eq!(body["error"]["code"], -32700, "{body}");
}

/// The official TypeScript SDK's client connects, pages the tools and calls them.
#[tokio::test]
async fn the_official_mcp_client_connects_lists_and_calls_tools() {
    let app = spawn_app().await;
    catalog_with_a_guarded_action(&app).await;
    let ana = app.member("ana", &["team-a"]).await;
    let output = tokio::process::Command::new("node")
        .arg("client.mjs")
        .current_dir(crate::npm_harness("mcp-client", "@modelcontextprotocol/sdk"))
        .env("PORTOLAN_MCP_URL", format!("{}/mcp", app.base))
        .env("PORTOLAN_TOKEN", &ana)
        .output()
        .await
        .expect("node runs the client");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && stdout.trim() == "ok", "the MCP client failed:\n{stdout}\n{stderr}");
}

/// The MCP Inspector's command line (npm `@modelcontextprotocol/inspector-cli`, pinned) reaches the
/// server over Streamable HTTP with a member's token: it lists the tools, and a call answers what
/// the member may read and refuses, as a tool error, what they may not.
#[tokio::test]
async fn the_mcp_inspector_cli_lists_the_tools_and_calls_them_as_the_member() {
    let app = spawn_app().await;
    catalog_with_a_guarded_action(&app).await;
    let ana = app.member("ana", &["team-a"]).await;
    let dir = crate::npm_harness("mcp-client", "@modelcontextprotocol/inspector-cli");
    let inspect = |args: &[&str]| {
        // The inspector finds its own package.json from the working directory: it runs in its build folder.
        tokio::process::Command::new("node")
            .arg("index.js")
            .current_dir(dir.join("node_modules/@modelcontextprotocol/inspector-cli/build"))
            .arg(format!("{}/mcp", app.base))
            .args(["--transport", "http", "--header", &format!("Authorization: Bearer {ana}")])
            .args(args)
            .output()
    };
    let answer = |output: std::process::Output| -> Value {
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "the inspector failed:\n{stdout}\n{stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("JSON from the inspector:\n{stdout}\n{stderr}"))
    };

    let listed = answer(inspect(&["--method", "tools/list"]).await.expect("node runs the inspector"));
    let names: Vec<&str> =
        listed["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    for tool in ["search_entities", "get_entity", "run_action", "dry_run_action", "list_my_approvals"] {
        assert!(names.contains(&tool), "{tool} in {names:?}");
    }
    let args = ["--method", "tools/call", "--tool-name", "get_entity", "--tool-arg", "blueprint=service"];
    let cart = answer(inspect(&[&args[..], &["identifier=cart"]].concat()).await.expect("runs"));
    assert_eq!(cart["structuredContent"]["entity"]["identifier"], "cart", "{cart}");
    let vault = answer(inspect(&[&args[..], &["identifier=vault"]].concat()).await.expect("runs"));
    assert_eq!(vault["isError"], true, "vault is team-b's: {vault}");
}

#[tokio::test]
async fn the_portal_says_how_to_connect_an_assistant() {
    let app = spawn_app().await;
    let user = json!({"identifier": "ana@example.com", "password": crate::web::PASSWORD});
    assert_eq!(app.post("/api/v1/users", user).await.status, StatusCode::CREATED);
    let session = crate::web::sign_in(&app, "ana@example.com").await;
    let (status, page) = crate::web::page(&app, "/assistants", &session).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("/mcp</code>"), "the server's URL: {page}");
    assert!(page.contains("<code>run_action</code>") && page.contains("guardrails apply"), "{page}");
    assert!(page.contains("href=\"/audit?origin=mcp\""), "{page}");
}
