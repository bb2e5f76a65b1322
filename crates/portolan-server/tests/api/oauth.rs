//! The OAuth flow an assistant that only speaks OAuth follows to reach `/mcp`: discovery from the
//! 401, registration, the user's consent in the portal, the code exchanged with PKCE, and a
//! token good at the MCP server alone.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::web::{PASSWORD, browser, form_post, sign_in};
use crate::{TestApp, spawn_app};

/// RFC 7636, appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";

async fn register(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let response =
        reqwest::Client::new().post(format!("{}/oauth/register", app.base)).json(&body).send().await.expect("sent");
    (response.status(), response.json().await.expect("json"))
}

fn authorize_query(app: &TestApp, client_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", client_id.into()),
        ("redirect_uri", REDIRECT.into()),
        ("code_challenge", CHALLENGE.into()),
        ("code_challenge_method", "S256".into()),
        ("state", "s-42".into()),
        ("scope", "mcp".into()),
        ("resource", format!("{}/mcp", app.base)),
    ]
}

fn query_string(pairs: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// The person's answer on the consent page; the redirect's query.
async fn answer(app: &TestApp, session: &str, pairs: &[(&str, String)], decision: &str) -> Vec<(String, String)> {
    let (status, page) = crate::web::page(app, &format!("/oauth/authorize?{}", query_string(pairs)), session).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let csrf =
        page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("csrf field").to_string();
    let mut fields: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fields.extend([("csrf", csrf.as_str()), ("decision", decision)]);
    let sent = form_post(browser().post(format!("{}/oauth/authorize", app.base)).header("cookie", session), &fields)
        .send()
        .await
        .expect("decided");
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    let location = sent.headers()["location"].to_str().expect("ascii").to_string();
    assert!(location.starts_with(REDIRECT), "back to the client: {location}");
    url::Url::parse(&location).expect("url").query_pairs().into_owned().collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn exchange(app: &TestApp, client_id: &str, code: &str, verifier: &str) -> (StatusCode, Value) {
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier),
        ("redirect_uri", REDIRECT),
        ("client_id", client_id),
        ("resource", &format!("{}/mcp", app.base)),
    ];
    let response = form_post(reqwest::Client::new().post(format!("{}/oauth/token", app.base)), &fields)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["cache-control"], "no-store");
    (response.status(), response.json().await.expect("json"))
}

async fn mcp_status(app: &TestApp, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{}/mcp", app.base))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("sent")
        .status()
}

#[tokio::test]
async fn an_assistant_discovers_registers_and_gets_a_token_for_the_mcp_server_only_with_consent() {
    let app = spawn_app().await;
    let user = json!({"identifier": "ana", "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", user).await.status, StatusCode::CREATED);

    // Discovery starts from the 401.
    let refused = reqwest::Client::new().post(format!("{}/mcp", app.base)).json(&json!({})).send().await.expect("sent");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let challenge = refused.headers()["www-authenticate"].to_str().expect("ascii").to_string();
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", app.base);
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    let resource: Value = reqwest::get(&metadata_url).await.expect("sent").json().await.expect("json");
    assert_eq!(resource["resource"], format!("{}/mcp", app.base));
    assert_eq!(resource["authorization_servers"], json!([app.base]));
    let server: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", app.base))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(server["issuer"], app.base);
    assert_eq!(server["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(server["registration_endpoint"], format!("{}/oauth/register", app.base));

    // Registration: refused for a redirect anywhere but HTTPS or loopback; nothing is stored.
    let (status, body) = register(&app, json!({"redirect_uris": ["http://evil.example/cb"]})).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")), "{body}");
    let (status, client) = register(&app, json!({"client_name": "Editor", "redirect_uris": [REDIRECT]})).await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    assert_eq!(client["token_endpoint_auth_method"], "none");
    let client_id = client["client_id"].as_str().expect("client id").to_string();

    // The consent page needs a session, and shows who asks and where the browser goes next.
    let pairs = authorize_query(&app, &client_id);
    let anonymous =
        browser().get(format!("{}/oauth/authorize?{}", app.base, query_string(&pairs))).send().await.expect("sent");
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert!(
        anonymous.headers()["location"].to_str().expect("ascii").starts_with("/login?return_to=%2Foauth%2Fauthorize")
    );
    let session = sign_in(&app, "ana").await;
    let (_, page) = crate::web::page(&app, &format!("/oauth/authorize?{}", query_string(&pairs)), &session).await;
    assert!(page.contains("<strong>Editor</strong>") && page.contains("http://127.0.0.1:33418"), "{page}");

    // A forged client or a redirect it did not register is told to the person, never redirected.
    let mut forged = pairs.clone();
    forged[1].1 = "plc_forged".into();
    let (status, page) = crate::web::page(&app, &format!("/oauth/authorize?{}", query_string(&forged)), &session).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    let mut elsewhere = pairs.clone();
    elsewhere[2].1 = "https://evil.example/cb".into();
    let (status, _) = crate::web::page(&app, &format!("/oauth/authorize?{}", query_string(&elsewhere)), &session).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Without PKCE the client is told, at its redirect, with its state.
    let without_pkce: Vec<_> = pairs.iter().filter(|(k, _)| *k != "code_challenge").cloned().collect();
    let to_client = browser()
        .get(format!("{}/oauth/authorize?{}", app.base, query_string(&without_pkce)))
        .header("cookie", &session)
        .send()
        .await
        .expect("sent");
    let location = to_client.headers()["location"].to_str().expect("ascii");
    assert!(
        location.starts_with(REDIRECT) && location.contains("error=invalid_request") && location.contains("state=s-42"),
        "{location}"
    );

    // Declined: the client hears access_denied.
    let declined = answer(&app, &session, &pairs, "deny").await;
    assert_eq!(param(&declined, "error"), Some("access_denied"));

    // Allowed: a code, exchanged only with the verifier.
    let allowed = answer(&app, &session, &pairs, "allow").await;
    assert_eq!((param(&allowed, "state"), param(&allowed, "iss")), (Some("s-42"), Some(app.base.as_str())));
    let code = param(&allowed, "code").expect("a code").to_string();
    let (status, body) = exchange(&app, &client_id, &code, &"x".repeat(43)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    let (status, body) = exchange(&app, &client_id, &code, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_i64()), (Some("Bearer"), Some(86_400)));
    let token = body["access_token"].as_str().expect("token").to_string();

    // The token works at the MCP server, as ana, and nowhere else.
    assert_eq!(mcp_status(&app, &token).await, StatusCode::OK);
    let elsewhere = app.call_as(reqwest::Method::GET, "/api/v1/blueprints", &token, None).await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED, "{}", elsewhere.body);
    assert!(elsewhere.body["message"].as_str().is_some_and(|m| m.contains("/mcp only")), "{}", elsewhere.body);
    let tokens = app.get("/api/v1/tokens").await.body;
    assert!(tokens.to_string().contains("assistant: Editor"), "listed with the user's tokens: {tokens}");

    // A code exchanged twice gets nothing, and the token of its first exchange stops working.
    let (status, body) = exchange(&app, &client_id, &code, VERIFIER).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    assert_eq!(mcp_status(&app, &token).await, StatusCode::UNAUTHORIZED);

    let audit = app.get("/api/v1/audit-log?action=oauth.consent").await.body;
    assert!(audit.to_string().contains("Editor"), "the consent is in the audit log: {audit}");
}

/// The official TypeScript SDK, holding no token, goes through discovery, registration, the
/// user's consent and the code exchange, then calls tools as that user.
#[tokio::test]
async fn the_official_mcp_client_connects_through_oauth() {
    let app = spawn_app().await;
    crate::mcp::catalog_with_a_guarded_action(&app).await;
    let password = app.patch("/api/v1/users/ana", json!({"password": PASSWORD})).await;
    assert_eq!(password.status, StatusCode::OK, "{}", password.body);
    let output = tokio::process::Command::new("node")
        .arg("oauth.mjs")
        .current_dir(crate::npm_harness("mcp-client", "@modelcontextprotocol/sdk"))
        .env("PORTOLAN_URL", &app.base)
        .env("PORTOLAN_USER", "ana")
        .env("PORTOLAN_PASSWORD", PASSWORD)
        .output()
        .await
        .expect("node runs the client");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && stdout.trim() == "ok", "the MCP client failed:\n{stdout}\n{stderr}");
}
