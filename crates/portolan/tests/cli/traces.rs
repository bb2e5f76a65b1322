//! Traces over OTLP, as an operator turns them on: every request, store transaction, worker job
//! and webhook delivery reaches a collector, parsed there with OpenTelemetry's own protobuf
//! definitions; a caller's `traceparent` is continued and a delivery passes its own on; JSON log
//! lines carry the trace id.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::Server;

/// The receiver's Python, with opentelemetry-proto installed (from PyPI, pinned) in its venv.
fn receiver_python(dir: &Path) -> PathBuf {
    let python = dir.join(".venv/bin/python");
    let wanted = std::fs::read_to_string(dir.join("requirements.txt")).expect("requirements.txt");
    if std::fs::read_to_string(dir.join(".venv/installed.txt")).ok().as_deref() != Some(wanted.as_str()) {
        for (program, args) in [
            (PathBuf::from("python3"), vec!["-m", "venv", "--clear", ".venv"]),
            (
                python.clone(),
                vec!["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"],
            ),
        ] {
            let status = Command::new(&program).args(&args).current_dir(dir).status().expect("python3 with venv runs");
            assert!(status.success(), "{} {args:?} failed", program.display());
        }
        std::fs::write(dir.join(".venv/installed.txt"), wanted).expect("installed.txt");
    }
    python
}

/// Stops the receiver however the test ends.
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_an_otlp_collector_and_the_trace_id_is_in_the_logs() {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp-receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let (spans, hooks) = (dir.path().join("spans.jsonl"), dir.path().join("hooks.jsonl"));
    let mut receiver = Command::new(receiver_python(&harness))
        .arg(harness.join("receiver.py"))
        .args([&spans, &hooks])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the receiver starts");
    let mut port = String::new();
    BufReader::new(receiver.stdout.take().expect("stdout")).read_line(&mut port).expect("its port");
    let receiver = Stop(receiver);
    let collector = format!("http://127.0.0.1:{}", port.trim());

    let mut command = Command::new(env!("CARGO_BIN_EXE_portolan"));
    command
        // With tower_http at debug, each request logs a line as it starts.
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            "data",
            "--log-format",
            "json",
            "--log",
            "info,tower_http=debug",
        ])
        .args(["--webhook-allow-private", "true"])
        .env("PORTOLAN_OTLP_ENDPOINT", &collector)
        .current_dir(dir.path());
    let (server, _) = Server::spawn(command);
    let token = crate::admin_token(&["--data", "data"], dir.path());
    let http = crate::http_plain();
    let base = &server.base;

    // A caller in a trace of its own: the request continues it.
    let (trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traced = http
        .get(format!("{base}/api/v1/blueprints/nope"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .send()
        .await
        .expect("request");
    assert_eq!(traced.status(), 404);

    // A webhook action: its run's delivery is a job, and the delivery passes its trace on.
    let secret = json!({"name": "hook", "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    let action = json!({
        "identifier": "notify",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": format!("{collector}/hook"), "signingSecret": "hook", "synchronized": true}
    });
    for (path, body) in [("secrets", secret), ("actions", action), ("actions/notify/runs", json!({}))] {
        let response = http.post(format!("{base}/api/v1/{path}")).bearer_auth(&token).json(&body).send().await;
        assert!(response.expect("request").status().is_success(), "{path}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while lines(&hooks).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the webhook was not delivered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let logged = server.output();
    // A graceful stop sends the spans still waiting.
    assert!(server.terminate().success());
    drop(receiver);

    let spans = lines(&spans);
    assert!(spans.iter().all(|s| s.get("invalid").is_none()), "the collector refused an export: {spans:?}");
    assert!(spans.iter().all(|s| s["service"] == "portolan"));
    let request = spans
        .iter()
        .find(|s| s["name"] == "request" && s["traceId"] == trace)
        .unwrap_or_else(|| panic!("no span of the traced request: {spans:#?}"));
    assert_eq!(request["parentSpanId"], caller_span);
    assert_eq!(request["kind"], 2, "a server span");
    assert_eq!(request["attributes"]["status"], 404);
    assert_eq!(request["attributes"]["uri"], "/api/v1/blueprints/nope");
    let inside = |parent: &Value, name: &str| {
        spans
            .iter()
            .any(|s| s["name"] == name && s["parentSpanId"] == parent["spanId"] && s["traceId"] == parent["traceId"])
    };
    assert!(inside(request, "store.begin"), "the request's store transaction is in its trace");
    let created = spans
        .iter()
        .find(|s| {
            s["name"] == "request" && s["attributes"]["uri"] == "/api/v1/actions" && s["attributes"]["status"] == 201
        })
        .expect("the span of the action's creation");
    assert!(inside(created, "store.commit"), "its commit is in its trace");

    // The run's request queues the job; the job continues its trace.
    let requested = spans
        .iter()
        .find(|s| s["name"] == "request" && s["attributes"]["uri"] == "/api/v1/actions/notify/runs")
        .expect("the span of the run's request");
    let job = spans.iter().find(|s| s["name"] == "job" && s["attributes"]["kind"] == "dispatch").expect("a job span");
    assert_eq!((&job["parentSpanId"], &job["traceId"]), (&requested["spanId"], &requested["traceId"]));
    let deliver = spans.iter().find(|s| s["name"] == "deliver").expect("a delivery span");
    assert_eq!((&deliver["parentSpanId"], &deliver["traceId"]), (&job["spanId"], &job["traceId"]));
    assert_eq!(deliver["kind"], 3, "a client span");
    let sent = &lines(&hooks)[0];
    let expected =
        format!("00-{}-{}-01", deliver["traceId"].as_str().expect("id"), deliver["spanId"].as_str().expect("id"));
    assert_eq!(sent["traceparent"], expected.as_str(), "the delivery names its span to the receiver");

    // JSON log lines; those inside a request carry its trace id.
    let log: Vec<Value> =
        logged.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let in_requests: Vec<&Value> = log.iter().filter(|line| line["spans"][0]["name"] == "request").collect();
    assert!(in_requests.len() >= 4, "{logged}");
    assert!(in_requests.iter().all(|line| line["spans"][0]["trace_id"].as_str().is_some_and(|t| t.len() == 32)));
    assert!(in_requests.iter().any(|line| line["spans"][0]["trace_id"] == trace), "{in_requests:#?}");
}
