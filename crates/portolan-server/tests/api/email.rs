//! Notifications by e-mail, through an SMTP server on loopback that speaks the protocol as RFC
//! 5321 and RFC 4954 (AUTH PLAIN) write it: the message arrives with its sender, recipient,
//! subject and link; a temporary refusal (4xx) is retried; e-mail cannot be chosen where the
//! server sends none.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{TestApp, spawn_app};

/// A message as the SMTP server received it.
#[derive(Debug, Clone, Default)]
struct Received {
    auth: String,
    from: String,
    to: Vec<String>,
    data: String,
}

#[derive(Clone)]
struct SmtpServer {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// How many recipients to refuse with `451` (a temporary failure) before accepting.
    refusals: Arc<Mutex<u32>>,
}

impl SmtpServer {
    async fn start(refusals: u32) -> SmtpServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = SmtpServer {
            port: listener.local_addr().expect("address").port(),
            received: Arc::default(),
            refusals: Arc::new(Mutex::new(refusals)),
        };
        let shared = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move { shared.session(stream).await });
            }
        });
        server
    }

    async fn session(&self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut message = Received::default();
        let _ = write.write_all(b"220 mail.test ESMTP ready\r\n").await;
        while let Ok(Some(line)) = lines.next_line().await {
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-mail.test\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n"
            } else if upper.starts_with("AUTH PLAIN ") {
                message.auth = line[11..].to_string();
                b"235 2.7.0 Authentication successful\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                message.from = line[10..].trim().to_string();
                b"250 2.1.0 Ok\r\n"
            } else if upper.starts_with("RCPT TO:") {
                let mut refusals = self.refusals.lock().expect("lock");
                if *refusals > 0 {
                    *refusals -= 1;
                    b"451 4.3.0 Mailbox temporarily unavailable, try again later\r\n"
                } else {
                    message.to.push(line[8..].trim().to_string());
                    b"250 2.1.5 Ok\r\n"
                }
            } else if upper == "DATA" {
                let _ = write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await;
                while let Ok(Some(data)) = lines.next_line().await {
                    if data == "." {
                        break;
                    }
                    message.data.push_str(data.strip_prefix('.').unwrap_or(&data));
                    message.data.push('\n');
                }
                self.received.lock().expect("lock").push(std::mem::take(&mut message));
                b"250 2.0.0 Ok: queued\r\n"
            } else if upper == "RSET" || upper == "NOOP" {
                message = Received { auth: message.auth.clone(), ..Received::default() };
                b"250 2.0.0 Ok\r\n"
            } else if upper == "QUIT" {
                let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                return;
            } else {
                b"502 5.5.2 Error: command not recognized\r\n"
            };
            if write.write_all(reply).await.is_err() {
                return;
            }
        }
    }

    async fn wait_for_message(&self) -> Received {
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

async fn inbox(app: &TestApp, token: &str) -> Value {
    app.call_as(Method::GET, "/api/v1/notifications", token, None).await.body
}

#[tokio::test]
async fn an_approver_who_chose_e_mail_gets_one_and_a_temporary_refusal_is_retried() {
    let smtp = SmtpServer::start(1).await;
    let url = format!("smtp://portolan:mail%20secret@127.0.0.1:{}", smtp.port);
    let app = TestApp::builder()
        .settings(move |s| {
            s.email =
                Some(portolan_server::email::EmailSettings { url, from: "Portolan <portolan@example.com>".into() })
        })
        .start()
        .await;
    crate::mcp::catalog_with_a_guarded_action(&app).await;
    let ana = app.member("ana", &["team-a"]).await;
    let address = json!({"properties": {"email": "admin@example.com"}});
    assert_eq!(app.patch("/api/v1/blueprints/_user/entities/admin@test", address).await.status, StatusCode::OK);

    let chosen = json!({"email": ["approval.needed"]});
    let saved = app.put("/api/v1/notifications/preferences", chosen).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let body = json!({"entity": "cart", "properties": {"replicas": 4}});
    let started = app.call_as(Method::POST, "/api/v1/actions/scale/runs", &ana, Some(body)).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let run = started.body["run"]["id"].as_str().expect("id").to_string();

    let message = smtp.wait_for_message().await;
    assert_eq!(message.from, "<portolan@example.com>");
    assert_eq!(message.to, ["<admin@example.com>"]);
    let credentials = base64::engine::general_purpose::STANDARD.decode(&message.auth).expect("base64");
    assert_eq!(credentials, b"\0portolan\0mail secret", "the URL's credentials, decoded");
    assert!(message.data.contains("Subject: Scale on cart by ana waits for your approval"), "{}", message.data);
    // The body is quoted-printable, as lettre writes it: a mail client joins its soft line breaks.
    let body = message.data.replace("=\n", "");
    assert!(body.contains(&format!("Open it in Portolan: {}/runs/{run}\n", app.base)), "{body}");

    // The first attempt met a temporary refusal; the notification says how it went in the end.
    let started = Instant::now();
    loop {
        let told = app.get("/api/v1/notifications").await.body;
        let delivery = told["notifications"][0]["delivery"].as_str().unwrap_or_default().to_string();
        if delivery == "email: delivered" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{told}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(smtp.received.lock().expect("lock").len(), 1, "sent once");
    assert_eq!(inbox(&app, &ana).await["unread"], 0, "the requester chose no e-mail, and asking is not news");
}

#[tokio::test]
async fn e_mail_cannot_be_chosen_where_the_server_sends_none() {
    let app = spawn_app().await;
    let refused = app.put("/api/v1/notifications/preferences", json!({"email": ["run.failed"]})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.detail_paths(), ["/email"]);
    assert!(refused.body["message"].as_str().is_some_and(|m| m.contains("smtp_url")), "{}", refused.body);
}
