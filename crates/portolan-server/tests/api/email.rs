//! Notifications by e-mail, through a real SMTP server: aiosmtpd (PyPI, pinned in
//! `tests/smtp/requirements.txt`), started by the test on loopback. The message arrives with its
//! sender, recipient, subject, link and the URL's credentials; a temporary refusal (451) is
//! retried; a server that is down is retried and shown as such; e-mail cannot be chosen where
//! the server sends none.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{TestApp, spawn_app};

/// aiosmtpd on a free loopback port; each message it accepted, as `tests/smtp/smtp_server.py` reports it.
struct SmtpServer {
    port: u16,
    received: Arc<Mutex<Vec<Value>>>,
    /// Killed with the test; its standard input, kept open in it, keeps it serving until then.
    _process: tokio::process::Child,
}

impl SmtpServer {
    /// Refuses the first `refusals` recipients with 451.
    async fn start(refusals: u32) -> SmtpServer {
        let python = crate::python_harness("smtp");
        let script = python.parent().and_then(|bin| bin.parent()).and_then(|venv| venv.parent()).expect("harness");
        let mut process = tokio::process::Command::new(&python)
            .arg(script.join("smtp_server.py"))
            .arg(refusals.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("aiosmtpd starts");
        let mut lines = BufReader::new(process.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let first: Value =
            serde_json::from_str(&first.expect("in time").expect("read").expect("a line")).expect("JSON");
        let port = first["port"].as_u64().expect("its port") as u16;
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(message) = serde_json::from_str(&line) {
                    kept.lock().expect("lock").push(message);
                }
            }
        });
        SmtpServer { port, received, _process: process }
    }

    async fn wait_for_message(&self) -> Value {
        let started = Instant::now();
        loop {
            if let Some(first) = self.received.lock().expect("lock").first().cloned() {
                return first;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no message arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn mailing_app(url: String) -> crate::TestAppBuilder {
    TestApp::builder().settings(move |s| {
        s.email = Some(portolan_server::email::EmailSettings { url, from: "Portolan <portolan@example.com>".into() })
    })
}

/// The first notification's delivery once it reads as `check` wants.
async fn delivery(app: &TestApp, check: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let told = app.get("/api/v1/notifications").await.body;
        let delivery = told["notifications"][0]["delivery"].as_str().unwrap_or_default().to_string();
        if check(&delivery) {
            return delivery;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{told}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ask_for_approval(app: &TestApp) -> String {
    crate::mcp::catalog_with_a_guarded_action(app).await;
    let ana = app.member("ana", &["team-a"]).await;
    let address = json!({"properties": {"email": "admin@example.com"}});
    assert_eq!(app.patch("/api/v1/blueprints/_user/entities/admin@test", address).await.status, StatusCode::OK);
    let saved = app.put("/api/v1/notifications/preferences", json!({"email": ["approval.needed"]})).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let body = json!({"entity": "cart", "properties": {"replicas": 4}});
    let started = app.call_as(Method::POST, "/api/v1/actions/scale/runs", &ana, Some(body)).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    started.body["run"]["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn an_approver_who_chose_e_mail_gets_one_and_a_temporary_refusal_is_retried() {
    let smtp = SmtpServer::start(1).await;
    let app = mailing_app(format!("smtp://portolan:mail%20secret@127.0.0.1:{}", smtp.port)).start().await;
    let run = ask_for_approval(&app).await;

    let message = smtp.wait_for_message().await;
    assert_eq!(message["from"], "portolan@example.com");
    assert_eq!(message["to"], json!(["admin@example.com"]));
    assert_eq!(message["login"], "portolan", "the URL's credentials, decoded");
    let data = message["data"].as_str().expect("data");
    assert!(data.contains("Subject: Scale on cart by ana waits for your approval"), "{data}");
    // The body is quoted-printable, as lettre writes it: a mail client joins its soft line breaks.
    let body = data.replace("=\r\n", "").replace("=\n", "");
    assert!(body.contains(&format!("Open it in Portolan: {}/runs/{run}", app.base)), "{body}");

    // The first attempt met a temporary refusal; the notification says how it went in the end.
    delivery(&app, |d| d == "email: delivered").await;
    assert_eq!(smtp.received.lock().expect("lock").len(), 1, "sent once");
}

#[tokio::test]
async fn a_server_that_is_down_is_retried_and_shown_as_failing() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let app = mailing_app(format!("smtp://portolan:mail%20secret@127.0.0.1:{port}")).start().await;
    ask_for_approval(&app).await;
    let failing = delivery(&app, |d| d.starts_with("email: retrying (attempt 2 of 8)")).await;
    assert!(failing.contains("the SMTP server"), "{failing}");
    assert!(!failing.contains("mail secret") && !failing.contains("smtp://"), "the URL stays secret: {failing}");
}

#[tokio::test]
async fn e_mail_cannot_be_chosen_where_the_server_sends_none() {
    let app = spawn_app().await;
    let refused = app.put("/api/v1/notifications/preferences", json!({"email": ["run.failed"]})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.detail_paths(), ["/email"]);
    assert!(refused.body["message"].as_str().is_some_and(|m| m.contains("smtp_url")), "{}", refused.body);
}
