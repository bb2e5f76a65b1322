//! What the server sends out over HTTP besides webhook deliveries: approval notices (which may not
//! reach private addresses unless allowed) and timeout notices (whose refusal is logged without
//! the secrets the webhook echoed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portolan_server::services::{Actor, Origin, SystemClock};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ssrf_corpus::{INTERNAL_HOSTS, PUBLIC_HOSTS};
use crate::{TestApp, spawn_app};

/// A TCP listener on loopback that counts the connections it accepts and answers each with 200.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0u8; 8192];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (port, count)
}

/// A webhook action on an outside backend (never called: its runs wait for carl's approval) whose
/// approval rule notifies `notify_url`.
fn announced(identifier: &str, notify_url: &str) -> Value {
    json!({
        "identifier": identifier,
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": "https://backend.example/run", "signingSecret": "hook"},
        "guardrails": {"approval": {"approvers": {"users": ["carl"]}, "notify": {"url": notify_url}}}
    })
}

async fn request_run(app: &TestApp, action: &str) -> String {
    let started = app.post(&format!("/api/v1/actions/{action}/runs"), json!({"properties": {}})).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    assert_eq!(started.body["run"]["status"], "WAITING_FOR_APPROVAL");
    started.body["run"]["id"].as_str().expect("id").to_string()
}

/// Waits for a line of the run's log that contains `needle`, and returns it.
async fn log_line(app: &TestApp, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = app.get(&format!("/api/v1/actions/runs/{id}/logs")).await;
        let lines: Vec<String> = logs.body["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["message"].as_str().map(str::to_string))
            .collect();
        if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        assert!(Instant::now() < deadline, "run {id} logged no '{needle}': {lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn approval_notices_cannot_reach_private_addresses_unless_allowed() {
    let (port, connections) = counting_listener().await;
    // Actions saved while private addresses were allowed, on a server that no longer allows them.
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = portolan_store::open(&dir.path().to_string_lossy()).await.expect("store");
        let before = portolan_server::AppState::build(store, Arc::new(SystemClock), crate::test_settings())
            .await
            .expect("state");
        let admin = Actor::system("tests", Origin::Api);
        before.actions.put_secret(&admin, "hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").await.expect("secret");
        for (i, host) in INTERNAL_HOSTS.iter().enumerate() {
            let action = announced(&format!("notify-{i}"), &format!("http://{host}:{port}/approve"));
            before.actions.put_action(&admin, None, action).await.expect("action");
        }
    }
    let app = TestApp::builder().dir(dir).clock(Arc::new(SystemClock)).private_addresses_refused().start().await;
    for (i, host) in INTERNAL_HOSTS.iter().enumerate() {
        let id = request_run(&app, &format!("notify-{i}")).await;
        let line = log_line(&app, &id, "approvers were not notified").await;
        assert!(line.contains("private or loopback") && line.contains("approval notices"), "{host}: {line}");
        assert!(!line.contains(&format!(":{port}")), "the log line does not quote the URL: {line}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing reached the loopback listener");

    // An IP literal is refused when the action is saved; a name is only known when it resolves.
    for host in ["127.0.0.1", "2130706433", "[::ffff:127.0.0.1]", "169.254.169.254"] {
        let refused = app.post("/api/v1/actions", announced("aimed-inside", &format!("http://{host}:{port}/"))).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{host}: {}", refused.body);
        assert_eq!(refused.detail_paths(), ["/guardrails/approval/notify/url"], "{}", refused.body);
        assert!(refused.body.to_string().contains("webhook_allow_private"), "{}", refused.body);
    }
    for (i, host) in PUBLIC_HOSTS.iter().enumerate() {
        let saved = app.post("/api/v1/actions", announced(&format!("public-{i}"), &format!("https://{host}/"))).await;
        assert_eq!(saved.status, StatusCode::CREATED, "{host}: {}", saved.body);
    }
    let by_name = app.post("/api/v1/actions", announced("by-name", &format!("http://localhost:{port}/"))).await;
    assert_eq!(by_name.status, StatusCode::CREATED, "{}", by_name.body);
    let id = request_run(&app, "by-name").await;
    let line = log_line(&app, &id, "approvers were not notified").await;
    assert!(line.contains("'localhost' resolves only to private or loopback addresses"), "{line}");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing reached the loopback listener");
}

#[tokio::test]
async fn approval_notices_reach_private_addresses_when_allowed() {
    let app = spawn_app().await;
    let (port, connections) = counting_listener().await;
    let made =
        app.post("/api/v1/secrets", json!({"name": "hook", "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let hosts = ["127.0.0.1", "2130706433", "0x7f000001", "localhost"];
    for (i, host) in hosts.iter().enumerate() {
        let created =
            app.post("/api/v1/actions", announced(&format!("notify-{i}"), &format!("http://{host}:{port}/"))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        request_run(&app, &format!("notify-{i}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections.load(Ordering::SeqCst) < hosts.len() {
        assert!(Instant::now() < deadline, "{} of {} notices arrived", connections.load(Ordering::SeqCst), hosts.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the server logs (warnings and worse), from every test of this binary once one asked.
fn server_log() -> String {
    static LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    struct Capture;
    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            LOG.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    INSTALLED.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .try_init()
            .expect("the only log subscriber of the tests");
    });
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

#[tokio::test]
async fn a_refused_timeout_notice_is_logged_without_the_secrets_it_echoes() {
    server_log();
    const CANARY: &str = "canary-k3y-0f-the-backend";
    let clock = crate::ManualClock::at(1_800_000_000_000);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    // Accepts the run; refuses the timeout notice, quoting the key it came with.
    let backend =
        axum::Router::new().fallback(|uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| async move {
            if body.contains("run.timed_out") {
                let header = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let echo = format!("unknown key {header} ({})", uri.query().unwrap_or_default());
                (axum::http::StatusCode::FORBIDDEN, echo)
            } else {
                (axum::http::StatusCode::OK, String::new())
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, backend).await });
    for (name, value) in [("hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), ("API_KEY", CANARY)] {
        let made = app.post("/api/v1/secrets", json!({"name": name, "value": value})).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    }
    let action = json!({
        "identifier": "build",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": format!("{url}?key={{{{ .secrets.API_KEY }}}}"),
            "headers": {"x-api-key": "{{ .secrets.API_KEY }}"}, "signingSecret": "hook", "synchronized": false},
        "guardrails": {"timeoutMinutes": 5}
    });
    let made = app.post("/api/v1/actions", action).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let started = app.post("/api/v1/actions/build/runs", json!({"properties": {}})).await;
    let id = started.body["run"]["id"].as_str().expect("id").to_string();
    crate::run_until(&app, &id, Duration::from_secs(5), |r| r["status"] == "IN_PROGRESS").await;
    clock.advance(5 * 60_000 + 1);

    let line = log_line(&app, &id, "the webhook was not told that the run timed out").await;
    assert!(line.contains("403") && line.contains("unknown key ********"), "{line}");
    assert!(!line.contains(CANARY), "{line}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let logged = loop {
        let log = server_log();
        if let Some(found) = log.lines().find(|l| l.contains(&id) && l.contains("timed out")) {
            break found.to_string();
        }
        assert!(Instant::now() < deadline, "the server logged nothing about run {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(logged.contains("unknown key ********"), "{logged}");
    assert!(!server_log().contains(CANARY), "the secret reached the server's log");
}
