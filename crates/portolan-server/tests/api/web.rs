//! The web portal's pages over real HTTP: sign-in with the form and its CSRF token, pages only for
//! signed-in users, showing only what they may see, errors as pages.

use reqwest::StatusCode;
use serde_json::json;

use crate::{TestApp, service, spawn_app};

const PASSWORD: &str = "a long enough password";

/// A form post, as a browser sends it.
fn form_post(request: reqwest::RequestBuilder, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    request.header("content-type", "application/x-www-form-urlencoded").body(body)
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// Signs in through the form; the session cookie.
async fn sign_in(app: &TestApp, username: &str) -> String {
    let client = browser();
    let page = client.get(format!("{}/login?return_to=/catalog", app.base)).send().await.expect("login page");
    let login_cookie = set_cookie(&page, "__Host-portolan_login").expect("a login cookie");
    let token = login_cookie.split_once('=').map(|(_, v)| v.to_string()).unwrap_or_default();
    let html = page.text().await.expect("html");
    assert!(html.contains(&format!("name=\"csrf\" value=\"{token}\"")), "the form carries the token");
    let fields = [("username", username), ("password", PASSWORD), ("csrf", token.as_str()), ("return_to", "/catalog")];
    let signed = form_post(client.post(format!("{}/login", app.base)).header("cookie", &login_cookie), &fields)
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()["location"], "/catalog", "back where they were going");
    set_cookie(&signed, "__Host-portolan_session").expect("a session")
}

async fn page(app: &TestApp, path: &str, session: &str) -> (StatusCode, String) {
    let response = browser().get(format!("{}{path}", app.base)).header("cookie", session).send().await.expect("page");
    let status = response.status();
    assert!(response.headers()["content-security-policy"].to_str().is_ok_and(|c| c.contains("script-src 'self'")));
    (status, response.text().await.expect("html"))
}

async fn org(app: &TestApp) {
    app.with_service_blueprints().await;
    for team in ["team-a", "team-b"] {
        app.post("/api/v1/blueprints/_team/entities", json!({"identifier": team})).await;
    }
    for (id, team, title) in
        [("a1", "team-a", "Alpha Cart"), ("a2", "team-a", "Alpha Search"), ("b1", "team-b", "Bravo Vault")]
    {
        let mut doc = service(id);
        doc["team"] = json!([team]);
        doc["title"] = json!(title);
        assert_eq!(app.post("/api/v1/blueprints/service/entities", doc).await.status, StatusCode::CREATED);
    }
    let user = json!({"identifier": "ana@example.com", "teams": ["team-a"], "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", user).await.status, StatusCode::CREATED);
    let grants = json!({"read": {"ownedByTeam": true}});
    assert_eq!(app.put("/api/v1/blueprints/service/permissions", grants).await.status, StatusCode::OK);
}

#[tokio::test]
async fn pages_need_a_signed_in_user_and_the_form_sign_in_is_protected() {
    let app = spawn_app().await;
    org(&app).await;
    let anonymous = browser().get(format!("{}/catalog/service", app.base)).send().await.expect("page");
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()["location"], "/login?return_to=%2Fcatalog%2Fservice");

    let forged = form_post(
        browser().post(format!("{}/login", app.base)),
        &[("username", "ana@example.com"), ("password", PASSWORD), ("csrf", "guess")],
    )
    .send()
    .await
    .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "no sign-in without the form's token");
    assert!(forged.text().await.expect("html").contains("Not allowed"));

    let client = browser();
    let login_page = client.get(format!("{}/login", app.base)).send().await.expect("login page");
    let login_cookie = set_cookie(&login_page, "__Host-portolan_login").expect("cookie");
    let token = login_cookie.split_once('=').map(|(_, v)| v.to_string()).unwrap_or_default();
    let wrong = form_post(
        client.post(format!("{}/login", app.base)).header("cookie", &login_cookie),
        &[("username", "ana@example.com"), ("password", "not it at all"), ("csrf", token.as_str())],
    )
    .send()
    .await
    .expect("post");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let html = wrong.text().await.expect("html");
    assert!(html.contains("wrong username or password") && html.contains("value=\"ana@example.com\""), "{html}");

    let session = sign_in(&app, "ana@example.com").await;
    let (status, home) = page(&app, "/", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("Hello, ana@example.com") && home.contains("Alpha Cart"), "her team's services: {home}");
    assert!(!home.contains("Bravo Vault"));

    let csrf =
        home.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("csrf").to_string();
    let out = form_post(
        browser().post(format!("{}/logout", app.base)).header("cookie", &session),
        &[("csrf", csrf.as_str())],
    )
    .send()
    .await
    .expect("logout");
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let (_, after) = page(&app, "/", &session).await;
    assert!(after.is_empty() || !after.contains("Hello"), "signed out");
}

#[tokio::test]
async fn the_catalog_pages_show_only_what_the_user_may_read() {
    let app = spawn_app().await;
    org(&app).await;
    let session = sign_in(&app, "ana@example.com").await;
    let (status, catalog) = page(&app, "/catalog", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(catalog.contains("<a href=\"/catalog/service\">Service</a>"), "{catalog}");
    assert!(catalog.contains("<td class=\"num\">2</td>"), "two services she may read: {catalog}");

    let (_, table) = page(&app, "/catalog/service", &session).await;
    assert!(
        table.contains("Alpha Cart") && table.contains("Alpha Search") && !table.contains("Bravo Vault"),
        "{table}"
    );
    let (_, filtered) = page(&app, "/catalog/service?q=search", &session).await;
    assert!(filtered.contains("Alpha Search") && !filtered.contains("Alpha Cart"));

    let (status, entity) = page(&app, "/catalog/service/a1", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        entity.contains("Alpha Cart") && entity.contains("href=\"/catalog/system/shop\""),
        "relations link: {entity}"
    );
    assert!(entity.contains("entity.create by admin@test"), "its history: {entity}");
    let (status, audit) = page(&app, "/audit", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(audit.contains("service/a1") && !audit.contains("service/b1"), "only what she may read: {audit}");
    assert!(audit.contains("login"), "her own sign-in");
    let (status, hidden) = page(&app, "/catalog/service/b1", &session).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(hidden.contains("Not found") && !hidden.contains("Bravo"), "{hidden}");
    let (status, _) = page(&app, "/static/portolan.css", &session).await;
    assert_eq!(status, StatusCode::OK);
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_string()
}

#[tokio::test]
async fn a_run_is_requested_through_its_form_and_approved_by_a_second_user_through_the_pages() {
    let app = spawn_app().await;
    org(&app).await;
    let approver = json!({"identifier": "carl@example.com", "teams": ["team-b"], "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", approver).await.status, StatusCode::CREATED);
    let action = json!({
        "identifier": "scale", "title": "Scale a service",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
            "userInputs": {"properties": {"replicas": {"type": "number", "title": "Replicas", "minimum": 1}}, "required": ["replicas"]}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"replicas": "{{ .inputs.replicas }}"}}},
        "guardrails": {"approval": {"approvers": {"users": ["carl@example.com"]}}}
    });
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);

    let ana = sign_in(&app, "ana@example.com").await;
    let (status, hub) = page(&app, "/actions", &ana).await;
    assert_eq!(status, StatusCode::OK);
    assert!(hub.contains("href=\"/actions/scale\""), "{hub}");
    let (_, form) = page(&app, "/actions/scale?entity=a1", &ana).await;
    assert!(form.contains("Needs approval from carl@example.com"), "guardrails in words: {form}");
    assert!(
        form.contains("<option value=\"a1\" selected>") && !form.contains("value=\"b1\""),
        "only her services: {form}"
    );
    let csrf = csrf_of(&form);
    let post = |fields: Vec<(&'static str, String)>| {
        let session = ana.clone();
        let url = format!("{}/actions/scale", app.base);
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            form_post(browser().post(url).header("cookie", session), &pairs).send().await.expect("post")
        }
    };
    let invalid = post(vec![
        ("csrf", csrf.clone()),
        ("entity", "a1".into()),
        ("in.replicas", "0".into()),
        ("mode", "run".into()),
    ])
    .await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(invalid.text().await.expect("html").contains("class=\"error\""), "the field's own message");
    let started = post(vec![
        ("csrf", csrf.clone()),
        ("entity", "a1".into()),
        ("in.replicas", "3".into()),
        ("mode", "run".into()),
    ])
    .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let run_path = started.headers()["location"].to_str().expect("location").to_string();
    let (_, waiting) = page(&app, &run_path, &ana).await;
    assert!(
        waiting.contains("WAITING_FOR_APPROVAL") && !waiting.contains("name=\"decision\""),
        "she cannot approve her own"
    );
    assert!(waiting.contains("src=\"/static/portolan.js\""), "a run not ended follows its log live");

    let carl = sign_in(&app, "carl@example.com").await;
    let (_, inbox) = page(&app, "/approvals", &carl).await;
    assert!(inbox.contains(&format!("href=\"{run_path}\"")) && inbox.contains("Asked by ana@example.com"), "{inbox}");
    let (_, run_page) = page(&app, &run_path, &carl).await;
    let approve = [("csrf", csrf_of(&run_page)), ("decision", "APPROVE".into()), ("comment", "fine by me".into())];
    let pairs: Vec<(&str, &str)> = approve.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let decided = form_post(browser().post(format!("{}{run_path}/approval", app.base)).header("cookie", &carl), &pairs)
        .send()
        .await
        .expect("approve");
    assert_eq!(decided.status(), StatusCode::SEE_OTHER);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, done) = page(&app, &run_path, &ana).await;
        if done.contains("SUCCESS") {
            assert!(done.contains("Approve by carl@example.com") && done.contains("fine by me"), "{done}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the run did not finish: {done}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_scorecards_page_counts_entities_per_level_and_team_and_names_failing_rules() {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state.catalog).await.expect("demo");
    let viewer = json!({"identifier": "viewer@example.com", "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", viewer).await.status, StatusCode::CREATED);
    let session = sign_in(&app, "viewer@example.com").await;
    let (status, html) = page(&app, "/scorecards", &session).await;
    assert_eq!(status, StatusCode::OK);
    for expected in ["Ownership", "Reachable", "team-cart", "Rules failing most often"] {
        assert!(html.contains(expected), "{expected}: {html}");
    }
}
