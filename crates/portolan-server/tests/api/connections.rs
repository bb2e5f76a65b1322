//! Connection timeouts and bounds, and the jq sandbox's memory and concurrency limits, over real
//! HTTP and raw TCP.

use std::time::{Duration, Instant};

use portolan_server::ServerOptions;
use portolan_server::connections::ConnectionLimits;
use portolan_server::sandbox::SandboxLimits;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{TestApp, spawn_app_with};

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connects")
}

/// Reads until the server closes `stream` (EOF or reset) and returns what it sent; `None` if it
/// is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| String::from_utf8_lossy(&seen).into_owned())
}

fn limits(connections: ConnectionLimits) -> ServerOptions {
    ServerOptions { connections, ..ServerOptions::default() }
}

/// A request whose headers arrive but whose body stalls is answered 408 and its connection freed,
/// signed in or not.
#[tokio::test]
async fn a_request_body_that_stops_arriving_is_cut_off() {
    let app = spawn_app_with(limits(ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    }))
    .await;
    for (path, auth) in [
        ("/api/v1/auth/login", String::new()),
        ("/api/v1/entities/search", format!("authorization: Bearer {}\r\n", app.admin_token)),
    ] {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: portolan\r\ncontent-type: application/json\r\n{auth}content-length: 100000\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.expect("headers and one byte");
        let answer = closed_within(&mut stream, Duration::from_secs(4)).await.expect("the connection is closed");
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("request_timeout"), "{path}: {answer}");
    }
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn half_sent_requests_and_idle_connections_are_closed_but_event_streams_are_not() {
    let app = spawn_app_with(limits(ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_millis(1500),
        ..ConnectionLimits::default()
    }))
    .await;
    app.with_service_blueprints().await;
    let mut events = app.client.get(format!("{}/api/v1/events", app.base)).send().await.expect("stream");
    assert_eq!(events.status(), StatusCode::OK);

    let started = Instant::now();
    let mut stalled = Vec::new();
    for i in 0..50 {
        let mut stream = connect(&app).await;
        let half = if i % 2 == 0 { "GET /healthz HTTP/1.1\r\nHost: portolan\r\n" } else { "POST /api/v1/bl" };
        stream.write_all(half.as_bytes()).await.expect("half a request");
        stalled.push(stream);
    }
    let silent = connect(&app).await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK, "served while they stall");
    for stream in &mut stalled {
        assert!(closed_within(stream, Duration::from_secs(3)).await.is_some(), "a half-sent request is cut off");
    }
    let mut silent = silent;
    assert!(
        closed_within(&mut silent, Duration::from_secs(1)).await.is_some(),
        "so is a connection that sends nothing"
    );
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", started.elapsed());

    // A kept-alive connection is closed once idle, not while a request is answered.
    let mut kept = connect(&app).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: portolan\r\n\r\n").await.expect("request");
    let mut answer = [0u8; 12];
    kept.read_exact(&mut answer).await.expect("answer");
    assert_eq!(&answer, b"HTTP/1.1 200");
    let idle = Instant::now();
    assert!(closed_within(&mut kept, Duration::from_secs(4)).await.is_some(), "an idle connection is closed");
    assert!(idle.elapsed() >= Duration::from_millis(1400), "after the idle timeout: {:?}", idle.elapsed());

    // The event stream opened before all this outlived both timeouts and still delivers.
    let created = app.post("/api/v1/blueprints/service/entities", crate::service("after-the-wait")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let seen = crate::ops::read_stream_until(&mut events, "after-the-wait").await;
    assert!(seen.contains("entity.created"), "{seen}");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_address_holds_only_so_many_connections_and_gets_its_places_back() {
    let app = spawn_app_with(limits(ConnectionLimits { max_per_address: 6, ..ConnectionLimits::default() })).await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    // The test's client keeps one connection alive; it counts too.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect(&app).await);
    }
    let mut extra = connect(&app).await;
    let refused = closed_within(&mut extra, Duration::from_secs(2)).await.expect("the extra connection is closed");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("\"error\":\"too_many_requests\""), "{refused}");
    assert!(refused.contains("too many connections from your address"), "{refused}");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK, "the kept-alive connection still works");

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut fresh = Vec::new();
    while fresh.len() < 5 {
        let mut stream = connect(&app).await;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: portolan\r\n\r\n").await.expect("request");
        let mut answer = [0u8; 12];
        match stream.read_exact(&mut answer).await {
            Ok(_) if &answer == b"HTTP/1.1 200" => fresh.push(stream),
            _ => {
                assert!(Instant::now() < deadline, "closed connections free their places");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn everyone_together_holds_only_so_many_connections() {
    let app = spawn_app_with(limits(ConnectionLimits { max_total: 4, ..ConnectionLimits::default() })).await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&app).await);
    }
    let mut extra = connect(&app).await;
    let refused = closed_within(&mut extra, Duration::from_secs(2)).await.expect("the extra connection is closed");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("\"error\":\"unavailable\""), "{refused}");
}

/// An action whose webhook body evaluates what the `mode` input picks: a huge string, a long
/// loop, or a plain value.
async fn jq_action(app: &TestApp) {
    let secret = app.post("/api/v1/secrets", json!({"name": "hook", "value": "signing-key"})).await;
    assert_eq!(secret.status, StatusCode::CREATED, "{}", secret.body);
    let action = json!({
        "identifier": "heavy",
        "trigger": {"type": "self-service", "operation": "CREATE",
                    "userInputs": {"properties": {"mode": {"type": "string"}}}},
        "invocationMethod": {"type": "WEBHOOK", "url": "http://127.0.0.1:9/", "signingSecret": "hook",
            "body": {"v": "{{ if .inputs.mode == \"huge\" then \"x\" * 1000000000 \
                             elif .inputs.mode == \"spin\" then last(range(1e12)) else \"fine\" end }}"}}
    });
    let made = app.post("/api/v1/actions", action).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
}

async fn dry_run(app: &TestApp, token: &str, mode: &str) -> Value {
    let reply = app
        .call_as(
            reqwest::Method::POST,
            "/api/v1/actions/heavy/runs?dry_run=true",
            token,
            Some(json!({"properties": {"mode": mode}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["dryRun"].clone()
}

#[tokio::test]
async fn an_expression_that_takes_too_much_memory_fails_clearly_and_costs_the_server_nothing() {
    let app = TestApp::builder().sandbox_limits(SandboxLimits::default()).start().await;
    jq_action(&app).await;
    let member = app.member("mia", &["team-m"]).await;
    let started = Instant::now();
    let huge = dry_run(&app, &member, "huge").await;
    let error = huge["renderError"].as_str().unwrap_or_default();
    assert!(error.contains("the expression used more than 256 MiB"), "{huge}");
    assert!(started.elapsed() < Duration::from_secs(3), "quickly: {:?}", started.elapsed());
    let fine = dry_run(&app, &member, "fine").await;
    assert_eq!(fine["rendered"]["body"]["v"], "fine", "the sandbox serves on: {fine}");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn evaluations_beyond_the_sandbox_s_concurrency_wait_then_are_refused_clearly() {
    let limits = SandboxLimits { concurrency: 1, queue_wait: Duration::from_millis(300), ..SandboxLimits::default() };
    let app = TestApp::builder().sandbox_limits(limits).start().await;
    jq_action(&app).await;
    let member = app.member("mia", &["team-m"]).await;
    let spinning = dry_run(&app, &member, "spin");
    let waiting = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        dry_run(&app, &member, "fine").await
    };
    let (spun, waited) = tokio::join!(spinning, waiting);
    assert!(spun["renderError"].as_str().is_some_and(|e| e.contains("ran longer than")), "{spun}");
    let error = waited["renderError"].as_str().unwrap_or_default();
    assert!(error.contains("the jq sandbox is busy"), "{waited}");

    // Once the place is free, evaluations go through again.
    let fine = dry_run(&app, &member, "fine").await;
    assert_eq!(fine["rendered"]["body"]["v"], "fine", "{fine}");
}

#[tokio::test]
async fn a_shutdown_finishes_requests_in_flight_and_is_not_held_up_by_half_sent_ones() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let router = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "done"
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(portolan_server::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    let mut half = TcpStream::connect(address).await.expect("connects");
    half.write_all(b"GET /slow HTTP/1.1\r\nHost: portolan\r\n").await.expect("half a request");
    let mut slow = TcpStream::connect(address).await.expect("connects");
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: portolan\r\n\r\n").await.expect("request");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    stop.send(()).expect("server running");
    let answer = closed_within(&mut slow, Duration::from_secs(3)).await.expect("answered, then closed");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"),
        "the request in flight is answered: {answer}"
    );
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("the shutdown does not wait out the 10 s head timeout")
        .expect("joins")
        .expect("serves");
    assert!(closed_within(&mut half, Duration::from_millis(100)).await.is_some());
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    assert!(TcpStream::connect(address).await.is_err(), "no longer accepting");
}
