//! Single sign-on end to end against a real OpenID Connect provider (npm `oidc-provider`, run by
//! the harness in `tests/oidc-provider/`), with the authorization code flow and PKCE.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use portolan_server::services::oidc::OidcSettings;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::{Reply, TestApp, read, spawn_app};

const CLIENT_ID: &str = "portolan";
const CLIENT_SECRET: &str = "test-client-secret-0123456789";

struct Provider {
    issuer: String,
    _child: tokio::process::Child,
}

fn harness_dir() -> PathBuf {
    crate::npm_harness("oidc-provider", "oidc-provider")
}

/// Starts the provider for a server that will answer at `base`.
async fn start_provider(base: &str) -> Provider {
    let users = json!({
        "ana": {"email": "ana@example.com", "email_verified": true, "name": "Ana Lima", "groups": ["team-cart", "ops"]},
        "root": {"email": "root@example.com", "email_verified": true, "name": "Root", "groups": ["portal-admins"]},
        "eve": {"email": "admin@test", "name": "Not the admin", "groups": []}
    });
    let mut child = tokio::process::Command::new("node")
        .arg("provider.mjs")
        .current_dir(harness_dir())
        .env("OIDC_PORT", "0")
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("OIDC_REDIRECT_URI", format!("{base}/api/v1/auth/oidc/callback"))
        .env("OIDC_USERS", users.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts the provider");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the provider starts within a minute")
        .expect("stdout readable")
        .expect("the provider printed its address");
    let issuer = line.strip_prefix("listening ").expect("'listening <issuer>'").to_string();
    Provider { issuer, _child: child }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().expect("ascii location").to_string()
}

fn cookie_pairs(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// Where a sign-in ends at Portolan: the callback URL the provider sent the browser to, and the
/// flow cookie Portolan set when it began.
struct Returned {
    callback: String,
    flow_cookie: String,
}

/// Walks a browser through the provider: starts at Portolan, follows the provider's redirects
/// (keeping the provider's cookies) until it is sent back to Portolan's callback.
async fn walk(app: &TestApp, provider: &Provider, login_hint: &str, return_to: &str) -> Returned {
    let client = no_redirects();
    let start = client
        .get(format!("{}/api/v1/auth/oidc/login?login_hint={login_hint}&return_to={return_to}", app.base))
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let (name, value) = cookie_pairs(&start).into_iter().next().expect("a flow cookie");
    assert_eq!(name, "__Host-portolan_oidc");
    let flow_cookie = format!("{name}={value}");
    let mut next = location(&start);
    assert!(next.starts_with(&provider.issuer), "to the provider: {next}");
    assert!(next.contains("code_challenge_method=S256") && next.contains("code_challenge="), "PKCE: {next}");
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..10 {
        if next.starts_with(&app.base) {
            return Returned { callback: next, flow_cookie };
        }
        let url = if next.starts_with('/') { format!("{}{next}", provider.issuer) } else { next.clone() };
        let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let hop = client.get(&url).header("cookie", cookies.join("; ")).send().await.expect("provider hop");
        assert!(hop.status().is_redirection(), "{url}: {}", hop.status());
        jar.extend(cookie_pairs(&hop));
        next = location(&hop);
    }
    panic!("the provider never sent the browser back: {next}");
}

async fn callback(returned: &Returned, flow_cookie: &str) -> (reqwest::StatusCode, Option<String>, String, Reply) {
    let response = no_redirects().get(&returned.callback).header("cookie", flow_cookie).send().await.expect("callback");
    let status = response.status();
    let to = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
    let session = cookie_pairs(&response)
        .into_iter()
        .find(|(k, v)| k == "__Host-portolan_session" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .unwrap_or_default();
    (status, to, session, read(response).await)
}

async fn me(app: &TestApp, session: &str) -> Reply {
    let request = reqwest::Client::new().get(format!("{}/api/v1/auth/me", app.base)).header("cookie", session);
    read(request.send().await.expect("me")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_creates_the_user_maps_groups_to_teams_and_opens_a_session() {
    // Private addresses are refused, but the provider the operator configured (on loopback here)
    // is trusted.
    let plain = spawn_app().await;
    let off = plain.call_anonymously(Method::GET, "/api/v1/auth/providers", None).await;
    assert_eq!(off.body["oidc"], json!(null), "not configured");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let provider = start_provider(&format!("http://{}", listener.local_addr().expect("address"))).await;
    let settings = OidcSettings {
        issuer: provider.issuer.clone(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        groups_claim: "groups".into(),
        admin_group: Some("portal-admins".into()),
    };
    let app = TestApp::builder()
        .listener(listener)
        .private_addresses_refused()
        .settings(|s| s.oidc = Some(settings))
        .start()
        .await;
    let team = app.post("/api/v1/blueprints/_team/entities", json!({"identifier": "team-cart"})).await;
    assert_eq!(team.status, StatusCode::CREATED);
    let on = app.call_anonymously(Method::GET, "/api/v1/auth/providers", None).await;
    assert_eq!(on.body["oidc"]["loginUrl"], "/api/v1/auth/oidc/login");

    let returned = walk(&app, &provider, "ana", "/catalog/service").await;
    let (status, to, session, _) = callback(&returned, &returned.flow_cookie).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to.as_deref(), Some("/catalog/service"), "back where sign-in began");
    assert!(!session.is_empty(), "a session cookie");
    let who = me(&app, &session).await;
    assert_eq!(who.status, StatusCode::OK, "{}", who.body);
    assert_eq!(who.body["user"]["identifier"], "ana@example.com");
    assert_eq!(who.body["user"]["teams"], json!(["team-cart"]), "the group that names a team; 'ops' names none");
    assert_eq!(who.body["user"]["role"], "member");
    let user = app.get("/api/v1/blueprints/_user/entities/ana@example.com").await;
    assert_eq!(user.body["entity"]["title"], "Ana Lima", "created on first sign-in: {}", user.body);

    // The same code cannot be redeemed twice, and a callback without the flow cookie or with
    // another state is refused.
    let (replayed, _, replay_session, reply) = callback(&returned, &returned.flow_cookie).await;
    assert_eq!(replayed, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert!(replay_session.is_empty());
    let again = walk(&app, &provider, "ana", "/catalog/service").await;
    assert_eq!(callback(&again, "").await.0, StatusCode::UNAUTHORIZED, "no flow cookie");
    let forged =
        Returned { callback: again.callback.replace("state=", "state=x"), flow_cookie: again.flow_cookie.clone() };
    assert_eq!(callback(&forged, &forged.flow_cookie).await.0, StatusCode::UNAUTHORIZED, "another state");
    let fine = callback(&again, &again.flow_cookie).await;
    assert_eq!(fine.0, StatusCode::SEE_OTHER, "the genuine one still works: {}", fine.3.body);

    // An admin group makes an admin; an account the provider refuses gets a clear 401.
    let root = walk(&app, &provider, "root", "/").await;
    let (_, _, root_session, _) = callback(&root, &root.flow_cookie).await;
    assert_eq!(me(&app, &root_session).await.body["user"]["role"], "admin");
    // An address the provider does not vouch for signs no one in, least of all the admin it names.
    let unverified = walk(&app, &provider, "eve", "/").await;
    let (status, _, session, _) = callback(&unverified, &unverified.flow_cookie).await;
    assert_eq!((status, session.is_empty()), (StatusCode::FORBIDDEN, true));
    let refused = walk(&app, &provider, "mallory", "/").await;
    let (status, _, session, reply) = callback(&refused, &refused.flow_cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(session.is_empty());
    assert!(reply.body["message"].as_str().is_some_and(|m| m.contains("access_denied")), "{}", reply.body);

    // A return address off this server is ignored (no open redirect).
    for offsite in ["//evil.example/x", "/%09/evil.example"] {
        let returned = walk(&app, &provider, "ana", offsite).await;
        assert_eq!(callback(&returned, &returned.flow_cookie).await.1.as_deref(), Some("/"), "{offsite}");
    }
}
