//! The web portal's pages over real HTTP: sign-in with the form and its CSRF token, pages only for
//! signed-in users, showing only what they may see, errors as pages.

use reqwest::StatusCode;
use serde_json::json;

use crate::{TestApp, service, spawn_app};

pub(crate) const PASSWORD: &str = "a long enough password";

/// A form post, as a browser sends it.
pub(crate) fn form_post(request: reqwest::RequestBuilder, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    request.header("content-type", "application/x-www-form-urlencoded").body(body)
}

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

pub(crate) fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
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
pub(crate) async fn sign_in(app: &TestApp, username: &str) -> String {
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

pub(crate) async fn page(app: &TestApp, path: &str, session: &str) -> (StatusCode, String) {
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
    let lost =
        browser().get(format!("{}/no/such/page", app.base)).header("accept", "text/html").send().await.expect("get");
    assert_eq!(lost.status(), StatusCode::NOT_FOUND);
    assert!(lost.text().await.expect("html").contains("<h1>Not found</h1>"), "a page, not JSON, for a browser");
    let api =
        browser().get(format!("{}/api/v1/nope", app.base)).header("accept", "text/html").send().await.expect("get");
    assert_eq!(api.headers()["content-type"], "application/json", "the API answers JSON");
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
        "identifier": "scale", "title": "Scale a service", "category": "SRE actions",
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
    assert!(hub.contains("<h2>SRE actions</h2>") && hub.contains("on service"), "grouped by category: {hub}");
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
        waiting.contains(">Waiting for approval</span>") && !waiting.contains("name=\"decision\""),
        "she cannot approve her own"
    );
    assert!(waiting.contains("id=\"live-log\""), "a run not ended follows its log live");

    let carl = sign_in(&app, "carl@example.com").await;
    let (_, inbox) = page(&app, "/approvals", &carl).await;
    assert!(inbox.contains(&format!("href=\"{run_path}\"")) && inbox.contains("Asked by ana@example.com"), "{inbox}");
    assert!(inbox.contains(&format!("action=\"{run_path}/approval\"")), "decided from the inbox too: {inbox}");
    let (_, run_page) = page(&app, &run_path, &carl).await;
    let maybe = [("csrf", csrf_of(&run_page)), ("decision", "MAYBE".into())];
    let pairs: Vec<(&str, &str)> = maybe.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let unknown = form_post(browser().post(format!("{}{run_path}/approval", app.base)).header("cookie", &carl), &pairs)
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY, "only APPROVE or DECLINE");
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
        if done.contains(">Succeeded</span>") {
            assert!(done.contains("Approved by carl@example.com: fine by me"), "{done}");
            assert!(
                done.contains("href=\"/catalog/service/a1\"") && done.contains("updated"),
                "what it changed: {done}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the run did not finish: {done}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, home) = page(&app, "/", &ana).await;
    assert!(home.contains("<a href=\"/actions/scale\">Scale a service</a>"), "a favourite now: {home}");
    assert!(home.contains(&format!("href=\"{run_path}\"")), "her runs link to their pages: {home}");
}

#[tokio::test]
async fn the_scorecards_page_counts_entities_per_level_and_team_and_names_failing_rules() {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo");
    let viewer = json!({"identifier": "viewer@example.com", "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", viewer).await.status, StatusCode::CREATED);
    let session = sign_in(&app, "viewer@example.com").await;
    let (status, html) = page(&app, "/scorecards", &session).await;
    assert_eq!(status, StatusCode::OK);
    for expected in ["Ownership", "Reachable", "team-cart", "Rules failing most often"] {
        assert!(html.contains(expected), "{expected}: {html}");
    }
    // Home names the scorecard of each level it shows.
    let member = json!({"identifier": "cartie@example.com", "teams": ["team-cart"], "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", member).await.status, StatusCode::CREATED);
    let cartie = sign_in(&app, "cartie@example.com").await;
    let (_, home) = page(&app, "/", &cartie).await;
    assert!(home.contains("<span class=\"level\" title=\"Ownership: "), "which scorecard a level is of: {home}");
    // A failing rule links to the entities that fail it.
    let link = html
        .split("href=\"/catalog/")
        .find_map(|rest| rest.split_once('"').map(|(l, _)| l).filter(|l| l.contains("?failing=")))
        .map(|l| format!("/catalog/{}", l.replace("&amp;", "&")))
        .expect("a link to the failing entities");
    let (status, failing) = page(&app, &link, &session).await;
    assert_eq!(status, StatusCode::OK, "{failing}");
    assert!(failing.contains("Showing the entities failing"), "{failing}");
    let all_rows = page(&app, link.split('?').next().expect("path"), &session).await.1.matches("<tr>").count();
    let rows = failing.matches("<tr>").count();
    assert!(rows > 1 && rows <= all_rows, "some, not more than all: {rows} of {all_rows}");
}

/// A form post with a session; the response.
async fn post_form(app: &TestApp, path: &str, session: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    form_post(browser().post(format!("{}{path}", app.base)).header("cookie", session), fields)
        .send()
        .await
        .expect("post")
}

#[tokio::test]
async fn the_entity_page_draws_its_neighbourhood_and_shows_values_as_they_are_meant() {
    let app = spawn_app().await;
    org(&app).await;
    let domain = json!({"identifier": "domain", "title": "Domain", "schema": {"properties": {}}});
    assert_eq!(app.post("/api/v1/blueprints", domain).await.status, StatusCode::CREATED);
    let linked = app.patch("/api/v1/blueprints/system", json!({"relations": {"domain": {"target": "domain"}}})).await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    app.post("/api/v1/blueprints/domain/entities", json!({"identifier": "retail", "title": "Retail"})).await;
    let shop = app.patch("/api/v1/blueprints/system/entities/shop", json!({"relations": {"domain": "retail"}})).await;
    assert_eq!(shop.status, StatusCode::OK, "{}", shop.body);
    let environment = json!({"identifier": "environment", "title": "Environment", "schema": {"properties": {
            "readme": {"type": "string", "format": "markdown"},
            "ttl": {"type": "string", "format": "timer"}}},
        "relations": {"service": {"title": "runs", "target": "service"}}});
    assert_eq!(app.post("/api/v1/blueprints", environment).await.status, StatusCode::CREATED);
    let ends = portolan_model::format_millis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
            + 2 * 86_400_000
            + 1_800_000,
    );
    let e1 = json!({"identifier": "e1", "title": "Alpha Cart dev", "team": ["team-a"],
        "properties": {"readme": "# Hello\n\nSee **this**.\n\n<script>alert(1)</script>", "ttl": ends},
        "relations": {"service": "a1"}});
    assert_eq!(app.post("/api/v1/blueprints/environment/entities", e1).await.status, StatusCode::CREATED);

    let session = sign_in(&app, "ana@example.com").await;
    let (status, service) = page(&app, "/catalog/service/a1", &session).await;
    assert_eq!(status, StatusCode::OK);
    let graph = service.split("<svg class=\"graph\"").nth(1).expect("a neighbourhood picture").to_string();
    for target in ["/catalog/system/shop", "/catalog/domain/retail", "/catalog/environment/e1", "/catalog/service/a1"] {
        assert!(graph.contains(&format!("href=\"{target}\"")), "{target} in the picture: {graph}");
    }
    assert!(graph.contains(">Retail<") && graph.contains(">Alpha Cart dev<"), "titles in the boxes: {graph}");
    assert!(service.contains("environment by runs"), "what points at it, in its relations: {service}");

    let (_, environment) = page(&app, "/catalog/environment/e1", &session).await;
    assert!(environment.contains("<h1>Hello</h1>") && environment.contains("<strong>this</strong>"), "{environment}");
    assert!(!environment.contains("<script>alert") && environment.contains("&lt;script&gt;"), "{environment}");
    assert!(environment.contains("<dt>runs</dt>"), "a relation by its title: {environment}");
    assert!(environment.contains("class=\"edge-label\" x=") && environment.contains(">runs</text>"), "{environment}");
    assert!(
        environment.contains(&format!(
            "<time class=\"countdown\" datetime=\"{ends}\" title=\"{ends}\">ends in 2 days 0 hours</time>"
        )),
        "the timer counts down: {environment}"
    );
}

#[tokio::test]
async fn catalog_tables_sort_choose_columns_count_facets_and_explain_bad_filters() {
    let app = spawn_app().await;
    org(&app).await;
    let patched = app.patch("/api/v1/blueprints/service/entities/a2", json!({"properties": {"language": "Go"}})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let session = sign_in(&app, "ana@example.com").await;

    let (_, table) = page(&app, "/catalog/service?sort=%24title&order=desc", &session).await;
    let (search, cart) = (table.find("Alpha Search").expect("a2"), table.find("Alpha Cart").expect("a1"));
    assert!(search < cart, "newest title first when descending");
    assert!(table.contains("aria-sort=\"descending\""), "{table}");
    let url = app
        .patch(
            "/api/v1/blueprints/service/entities/a1",
            json!({"properties": {"repository": "https://git.example/a1"}}),
        )
        .await;
    assert_eq!(url.status, StatusCode::OK, "{}", url.body);
    let (_, linked) = page(&app, "/catalog/service?col=repository", &session).await;
    assert!(
        linked.contains("<td><a href=\"https://git.example/a1\" rel=\"noopener noreferrer\">"),
        "addresses link: {linked}"
    );

    assert!(
        table.contains("data-src=\"/facets/service?sort=%24title&#38;order=desc\""),
        "the page's script fetches the facet counts for the same table: {table}"
    );
    let (status, facets) = page(&app, "/facets/service?sort=%24title&order=desc", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(facets.contains(">team-a</a> <span class=\"muted small\">2</span>"), "{facets}");
    assert!(!facets.contains("team-b"), "no count of what she may not read");
    assert!(facets.contains(">Rust</a> <span class=\"muted small\">1</span>"), "{facets}");
    let (_, go) = page(&app, "/catalog/service?f.language=Go&facets=1", &session).await;
    assert!(go.contains("Alpha Search") && !go.contains("Alpha Cart"), "a facet filters the table");
    assert!(
        go.contains("class=\"facet on\" href=\"/catalog/service?facets=1\""),
        "counted in the page, and undone by a click: {go}"
    );

    let mut facets_entity = service("facets");
    facets_entity["team"] = json!(["team-a"]);
    assert_eq!(app.post("/api/v1/blueprints/service/entities", facets_entity).await.status, StatusCode::CREATED);
    let (status, named_facets) = page(&app, "/catalog/service/facets", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(named_facets.contains("<h1>facets</h1>"), "an entity may be called 'facets': {named_facets}");

    let (_, columns) = page(&app, "/catalog/service?col=replicas", &session).await;
    let head = columns.split("<thead>").nth(1).and_then(|h| h.split("</thead>").next()).expect("head").to_string();
    assert!(head.contains(">replicas<") && !head.contains(">language<"), "the chosen columns: {head}");

    let (status, bad) = page(&app, "/catalog/service?where=not+json", &session).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("the filter is not JSON"), "{bad}");
    let unknown = r#"{"combinator":"and","rules":[{"property":"colour","operator":"=","value":"red"}]}"#;
    let path = format!(
        "/catalog/service?where={}",
        url::form_urlencoded::byte_serialize(unknown.as_bytes()).collect::<String>()
    );
    let (status, bad) = page(&app, &path, &session).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("colour") && bad.contains("role=\"alert\""), "names the unknown property: {bad}");
    let good = r#"{"combinator":"and","rules":[{"property":"language","operator":"=","value":"Rust"}]}"#;
    let path =
        format!("/catalog/service?where={}", url::form_urlencoded::byte_serialize(good.as_bytes()).collect::<String>());
    let (status, rust) = page(&app, &path, &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(rust.contains("Alpha Cart") && !rust.contains("Alpha Search"));

    let (_, found) = page(&app, "/search?q=a2", &session).await;
    assert!(found.contains("href=\"/catalog/service/a2\""), "by identifier: {found}");
    let (_, hidden) = page(&app, "/search?q=bravo", &session).await;
    assert!(!hidden.contains("Bravo") || hidden.contains("Nothing matches 'bravo'"), "{hidden}");
    assert!(!hidden.contains("/catalog/service/b1"));
}

#[tokio::test]
async fn action_forms_follow_steps_visibility_and_limits_and_runs_can_be_cancelled_and_repeated() {
    let app = spawn_app().await;
    org(&app).await;
    let approver = json!({"identifier": "carl@example.com", "teams": ["team-b"], "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", approver).await.status, StatusCode::CREATED);
    let action = json!({
        "identifier": "provision", "title": "Provision a database",
        "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "service",
            "userInputs": {
                "properties": {
                    "name": {"type": "string", "title": "Name"},
                    "size": {"type": "string", "enum": ["small", "large"]},
                    "justification": {"type": "string", "dependsOn": ["size"],
                        "visible": {"jqQuery": ".form.size == \"large\""}},
                    "internal": {"type": "string", "visible": false}
                },
                "required": ["name"],
                "steps": [{"title": "Basics", "order": ["name", "size"]}, {"title": "Why", "order": ["justification"]}]
            }},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .inputs.name }}", "properties": {"language": "Go"}, "relations": {"system": "shop"}}},
        "guardrails": {"approval": {"approvers": {"users": ["carl@example.com"]}},
            "quotas": [{"per": "user", "max": 3, "periodHours": 24}]}
    });
    let created = app.post("/api/v1/actions", action).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let ana = sign_in(&app, "ana@example.com").await;
    let (_, form) = page(&app, "/actions/provision", &ana).await;
    assert!(form.contains("<legend>Basics</legend>") && form.contains("<legend>Why</legend>"), "steps: {form}");
    assert!(form.contains("data-input=\"justification\" data-depends-on=\"size\""), "{form}");
    assert!(form.contains("data-input=\"internal\" hidden"), "a hidden input: {form}");
    assert!(form.contains("3 of 3 runs left for you in 24 h"), "where she stands: {form}");
    let csrf = csrf_of(&form);

    let state = |size: &'static str| {
        let (ana, csrf) = (ana.clone(), csrf.clone());
        let app = &app;
        async move {
            let response =
                post_form(app, "/actions/provision/state", &ana, &[("csrf", &csrf), ("in.size", size)]).await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<serde_json::Value>().await.expect("json")
        }
    };
    assert_eq!(state("large").await["visible"]["justification"], true);
    assert_eq!(state("small").await["visible"]["justification"], false);
    let forged = post_form(&app, "/actions/provision/state", &ana, &[("csrf", "guess"), ("in.size", "large")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let fields = [("csrf", csrf.as_str()), ("in.name", "orders-db"), ("in.size", "small"), ("mode", "run")];
    let started = post_form(&app, "/actions/provision", &ana, &fields).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let run_path = started.headers()["location"].to_str().expect("location").to_string();
    let run_id = run_path.trim_start_matches("/runs/").to_string();
    let (_, waiting) = page(&app, &run_path, &ana).await;
    assert!(waiting.contains("Cancel this run"), "{waiting}");
    assert!(waiting.contains(&format!("href=\"/actions/provision?rerun={run_id}\"")), "{waiting}");
    let (_, again) = page(&app, "/actions/provision", &ana).await;
    assert!(again.contains("2 of 3 runs left for you"), "the waiting run counts: {again}");

    let (_, carl_view) = page(&app, &run_path, &sign_in(&app, "carl@example.com").await).await;
    assert!(!carl_view.contains("Cancel this run"), "only the requester cancels");

    let cancelled = post_form(&app, &format!("{run_path}/cancel"), &ana, &[("csrf", csrf.as_str())]).await;
    assert_eq!(cancelled.status(), StatusCode::SEE_OTHER);
    let (_, ended) = page(&app, &run_path, &ana).await;
    assert!(ended.contains("CANCELLED") && !ended.contains("Cancel this run"), "{ended}");
    let twice = post_form(&app, &format!("{run_path}/cancel"), &ana, &[("csrf", csrf.as_str())]).await;
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    assert!(twice.text().await.expect("html").contains("no longer waiting for approval"));

    let (_, rerun) = page(&app, &format!("/actions/provision?rerun={run_id}"), &ana).await;
    assert!(rerun.contains("value=\"orders-db\""), "the same inputs again: {rerun}");
    assert!(rerun.contains("<option value=\"small\" selected>"), "{rerun}");
}

#[tokio::test]
async fn admins_edit_definitions_as_json_or_yaml_with_the_apis_validation_and_manage_tokens_and_secrets() {
    let app = spawn_app().await;
    org(&app).await;
    let admin = json!({"identifier": "root@example.com", "role": "admin", "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", admin).await.status, StatusCode::CREATED);
    let root = sign_in(&app, "root@example.com").await;

    let (status, index) = page(&app, "/admin", &root).await;
    assert_eq!(status, StatusCode::OK);
    assert!(index.contains("href=\"/admin/blueprints/service\""), "{index}");
    let (_, yaml) = page(&app, "/admin/blueprints/service?format=yaml", &root).await;
    assert!(yaml.contains("identifier: service"), "the blueprint as YAML: {yaml}");
    let csrf = csrf_of(&yaml);

    let broken = "identifier: service\nschema:\n  properties:\n    language:\n      type: colour\n";
    let refused = post_form(
        &app,
        "/admin/blueprints/service",
        &root,
        &[("csrf", &csrf), ("format", "yaml"), ("document", broken), ("mode", "save")],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.expect("html");
    assert!(html.contains("<code>/schema/properties/language/type</code>"), "the field at fault: {html}");
    assert!(html.contains("type: colour"), "the text stays as typed");
    let not_yaml = post_form(
        &app,
        "/admin/blueprints/service",
        &root,
        &[("csrf", &csrf), ("format", "yaml"), ("document", "identifier: [unclosed"), ("mode", "save")],
    )
    .await;
    assert_eq!(not_yaml.status(), StatusCode::BAD_REQUEST);
    assert!(not_yaml.text().await.expect("html").contains("this is not YAML"));

    let (_, json_page) = page(&app, "/admin/blueprints/service", &root).await;
    let document = json_page
        .split("name=\"document\" class=\"code\" rows=\"28\" spellcheck=\"false\">")
        .nth(1)
        .and_then(|t| t.split("</textarea>").next())
        .expect("the document");
    let unescaped = ["&#34;", "&quot;"].iter().fold(document.to_string(), |text, quote| text.replace(quote, "\""));
    let mut blueprint: serde_json::Value = serde_json::from_str(
        &unescaped.replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"),
    )
    .expect("json");
    blueprint["title"] = json!("Services");
    let text = serde_json::to_string(&blueprint).expect("text");
    let saved = post_form(
        &app,
        "/admin/blueprints/service",
        &root,
        &[("csrf", &csrf), ("format", "json"), ("document", &text), ("mode", "save")],
    )
    .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get("/api/v1/blueprints/service").await.body["blueprint"]["title"], "Services");

    let ana = sign_in(&app, "ana@example.com").await;
    let (_, ana_page) = page(&app, "/admin/blueprints/service", &ana).await;
    let member = post_form(
        &app,
        "/admin/blueprints/service",
        &ana,
        &[("csrf", &csrf_of(&ana_page)), ("format", "json"), ("document", &text), ("mode", "save")],
    )
    .await;
    assert_eq!(member.status(), StatusCode::FORBIDDEN, "a member may not change a blueprint");

    let made = post_form(
        &app,
        "/admin/tokens",
        &ana,
        &[("csrf", &csrf_of(&ana_page)), ("name", "ci"), ("expires_in_days", "30")],
    )
    .await;
    assert_eq!(made.status(), StatusCode::OK);
    assert_eq!(made.headers()["cache-control"], "no-store");
    let html = made.text().await.expect("html");
    let token = html.split("<pre class=\"secret\">").nth(1).and_then(|t| t.split("</pre>").next()).expect("token");
    assert!(token.starts_with("plt_"));
    let me = browser().get(format!("{}/api/v1/auth/me", app.base)).bearer_auth(token).send().await.expect("me");
    assert_eq!(me.status(), StatusCode::OK, "the token works");
    let (_, listed) = page(&app, "/admin/tokens", &ana).await;
    assert!(listed.contains(">ci <code") && !listed.contains(token), "listed, never shown again: {listed}");
    // Client credentials for Port's clients: the secret shown once, traded for a token.
    let made = post_form(&app, "/admin/tokens/credentials", &ana, &[("csrf", &csrf_of(&ana_page))]).await;
    assert_eq!((made.status(), &made.headers()["cache-control"]), (StatusCode::OK, &"no-store".parse().expect("v")));
    let html = made.text().await.expect("html");
    let secret = html.split("<pre class=\"secret\">").nth(1).and_then(|t| t.split("</pre>").next()).expect("secret");
    let client_id = html.split("Client id: <code>").nth(1).and_then(|t| t.split("</code>").next()).expect("id");
    let traded = browser()
        .post(format!("{}/v1/auth/access_token", app.base))
        .json(&json!({"clientId": client_id, "clientSecret": secret}))
        .send()
        .await
        .expect("trade");
    assert_eq!(traded.status(), StatusCode::OK, "the credentials trade");
    let (_, listed) = page(&app, "/admin/tokens", &ana).await;
    assert!(listed.contains(client_id) && !listed.contains(secret), "the id stays, the secret does not: {listed}");

    let secret_value = "s3cr3t-canary-value";
    let stored =
        post_form(&app, "/admin/secrets", &root, &[("csrf", &csrf), ("name", "DB_PASSWORD"), ("value", secret_value)])
            .await;
    assert_eq!(stored.status(), StatusCode::SEE_OTHER);
    let (_, secrets) = page(&app, "/admin/secrets", &root).await;
    assert!(secrets.contains("<code>DB_PASSWORD</code>") && !secrets.contains(secret_value), "{secrets}");
    let (status, _) = page(&app, "/admin/secrets", &ana).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "secrets are for admins");
    let shown = post_form(&app, "/admin/signing-key", &root, &[("csrf", &csrf), ("what", "show")]).await;
    let html = shown.text().await.expect("html");
    let key = html.split("<pre class=\"secret\">").nth(1).and_then(|t| t.split("</pre>").next()).expect("key");
    assert_eq!(app.get("/api/v1/webhook-signing-key").await.body["key"], key, "the server's key");
    let refused = post_form(&app, "/admin/signing-key", &ana, &[("csrf", &csrf_of(&ana_page)), ("what", "show")]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // Refusals in the portal are in the audit log, as the API's are.
    let denied = app.get("/api/v1/audit-log?status=denied&actor=ana@example.com&limit=100").await;
    let targets: Vec<&str> =
        denied.body["records"].as_array().into_iter().flatten().filter_map(|r| r["resourceId"].as_str()).collect();
    assert!(targets.contains(&"POST /admin/blueprints/service"), "{}", denied.body);
    assert!(targets.contains(&"GET /admin/secrets"), "{}", denied.body);
    // A made-up blueprint cannot turn the editor's form into a post to another page.
    let (status, _) = page(&app, "/admin/new/scorecard/..%2F..%2Fsecrets%2FDB_PASSWORD%2Fdelete", &root).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, new_scorecard) = page(&app, "/admin/new/scorecard/service", &root).await;
    assert_eq!(status, StatusCode::OK);
    assert!(new_scorecard.contains("action=\"/admin/new/scorecard/service\""), "{new_scorecard}");
}

#[tokio::test]
async fn the_audit_page_filters_by_every_field_and_a_time_range() {
    let app = spawn_app().await;
    org(&app).await;
    let admin = json!({"identifier": "root@example.com", "role": "admin", "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", admin).await.status, StatusCode::CREATED);
    let root = sign_in(&app, "root@example.com").await;
    let now = portolan_model::format_millis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64,
    );
    let (_, entity) =
        page(&app, "/audit?resource_type=entity&resource_id=a1&blueprint=service&origin=api&status=success", &root)
            .await;
    assert!(entity.contains("service/a1") && !entity.contains("service/a2"), "{entity}");
    let (_, logins) = page(&app, "/audit?action=login&origin=ui", &root).await;
    assert!(logins.contains("root@example.com"), "a sign-in through the page is from the UI: {logins}");
    let (_, future) = page(&app, "/audit?from=2999-01-01T00%3A00", &root).await;
    assert!(future.contains("No records match."), "{future}");
    let (_, this_minute) = page(&app, &format!("/audit?action=login&to={}", &now[..16]), &root).await;
    assert!(this_minute.contains("root@example.com"), "'to' takes in the whole minute it names: {this_minute}");
    let (status, backwards) = page(&app, "/audit?from=2026-01-02T00%3A00&to=2026-01-01T00%3A00", &root).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(backwards.contains("the time range ends before it starts"));
    let (status, bad) = page(&app, "/audit?from=yesterday", &root).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("yesterday") && bad.contains("is not a date and time"), "{bad}");
}

#[tokio::test]
async fn a_member_never_sees_a_secret_a_template_transforms_in_a_dry_run_a_preview_or_a_run() {
    use crate::actions::{Answer, Receiver, with_signing_secret};
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    let app = spawn_app().await;
    org(&app).await;
    with_signing_secret(&app).await;
    let key = "k3y-9f8e7d6c5b4a";
    assert_eq!(
        app.post("/api/v1/secrets", json!({"name": "DEPLOY_KEY", "value": key})).await.status,
        StatusCode::CREATED
    );
    let receiver = Receiver::start(vec![Answer(200, 0, vec![])]).await;
    let basic = "Basic {{ (\"deploy:\" + .secrets.DEPLOY_KEY) | @base64 }}";
    let action = json!({
        "identifier": "deploy", "title": "Deploy",
        "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "service",
                    "userInputs": {"properties": {"name": {"type": "string"}}}},
        "invocationMethod": {"type": "WEBHOOK", "url": receiver.url, "signingSecret": "hook", "synchronized": true,
            "headers": {"Authorization": basic},
            "body": {"auth": basic, "name": "{{ .inputs.name }}", "everything": "{{ . }}"}}
    });
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);
    // Everything the secret could be shown as: itself, and base64 at every offset.
    let mut forms = vec![key.to_string()];
    for cut in 0..="deploy:".len() {
        let shifted = format!("{}{key}", &"deploy:"[cut..]);
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            forms.push(engine.encode(&shifted));
        }
    }
    let leaks = |text: &str| forms.iter().filter(|f| text.contains(f.as_str())).cloned().collect::<Vec<_>>();

    // A member with the default execute grant: the dry run over the API.
    let token =
        crate::account_token(&app.state, "ana@example.com", portolan_model::permission::Role::Member, &[]).await;
    let body = json!({"properties": {"name": "cart"}});
    let dry = app
        .call_as(reqwest::Method::POST, "/api/v1/actions/deploy/runs?dry_run=true", &token, Some(body.clone()))
        .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    assert_eq!(dry.body["dryRun"]["rendered"]["headers"]["Authorization"], "Basic ********", "{}", dry.body);
    assert_eq!(dry.body["dryRun"]["rendered"]["body"]["name"], "cart");
    assert_eq!(leaks(&dry.body.to_string()), Vec::<String>::new(), "the dry run shows {}", dry.body);

    // The portal's preview.
    let ana = sign_in(&app, "ana@example.com").await;
    let (_, form) = page(&app, "/actions/deploy", &ana).await;
    let csrf = csrf_of(&form);
    let preview =
        post_form(&app, "/actions/deploy", &ana, &[("csrf", &csrf), ("in.name", "cart"), ("mode", "dry")]).await;
    assert_eq!(preview.status(), StatusCode::OK);
    let html = preview.text().await.expect("html");
    assert!(html.contains("Basic ********"), "{html}");
    assert_eq!(leaks(&html), Vec::<String>::new(), "the preview shows {html}");

    // The run itself: the backend gets the real header; the run shows it masked.
    let started = app.call_as(reqwest::Method::POST, "/api/v1/actions/deploy/runs", &token, Some(body)).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let id = started.body["run"]["id"].as_str().expect("run id").to_string();
    crate::run_until(&app, &id, std::time::Duration::from_secs(5), crate::ended).await;
    let run = app.call_as(reqwest::Method::GET, &format!("/api/v1/actions/runs/{id}"), &token, None).await;
    assert_eq!(run.body["run"]["status"], "SUCCESS", "{}", run.body);
    assert_eq!(run.body["run"]["payload"]["auth"], "Basic ********", "{}", run.body);
    let logs = app.call_as(reqwest::Method::GET, &format!("/api/v1/actions/runs/{id}/logs"), &token, None).await;
    let (_, run_page) = page(&app, &format!("/runs/{id}"), &ana).await;
    for shown in [run.body.to_string(), logs.body.to_string(), run_page] {
        assert_eq!(leaks(&shown), Vec::<String>::new(), "the run shows {shown}");
    }
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1);
    let real = format!("Basic {}", STANDARD.encode(format!("deploy:{key}")));
    assert_eq!(deliveries[0].headers["authorization"], real.as_str());
    assert_eq!(deliveries[0].body["auth"], real.as_str());
    assert!(deliveries[0].signature_valid);
    let everything = deliveries[0].body["everything"].to_string();
    assert!(leaks(&everything).is_empty() && everything.contains("cart"), "`.` reads no secret: {everything}");
}

#[tokio::test]
async fn a_whole_number_typed_into_a_form_reaches_the_run_as_an_integer() {
    let app = spawn_app().await;
    org(&app).await;
    let action = json!({
        "identifier": "scale", "title": "Scale a service",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
            "userInputs": {"properties": {
                "replicas": {"type": "integer", "title": "Pods", "minimum": 1, "maximum": 50},
                "share": {"type": "number"}
            }, "required": ["replicas"]}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"replicas": "{{ .inputs.replicas }}"}}}
    });
    let created = app.post("/api/v1/actions", action).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let ana = sign_in(&app, "ana@example.com").await;
    let (_, form) = page(&app, "/actions/scale?entity=a1", &ana).await;
    assert!(
        form.contains(r#"name="in.replicas" type="number" value="" step="1" min="1" max="50""#),
        "an integer input takes whole numbers: {form}"
    );
    assert!(form.contains(r#"name="in.share" type="number" value="" step="any""#), "{form}");
    let csrf = csrf_of(&form);
    let fields = |replicas: &'static str| {
        [("entity", "a1"), ("in.replicas", replicas), ("in.share", "7"), ("mode", "run")]
            .map(|(k, v)| (k, v.to_string()))
    };
    fn with_csrf<'a>(fields: &'a [(&'static str, String)], csrf: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pairs.push(("csrf", csrf));
        pairs
    }

    let refused = post_form(&app, "/actions/scale", &ana, &with_csrf(&fields("2.5"), &csrf)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.expect("html");
    assert!(html.contains("expected an integer"), "the field says why: {html}");

    let seven = fields("7");
    let started = post_form(&app, "/actions/scale", &ana, &with_csrf(&seven, &csrf)).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let run_id = started.headers()["location"].to_str().expect("location").trim_start_matches("/runs/").to_string();
    let run = crate::run_until(&app, &run_id, std::time::Duration::from_secs(5), crate::ended).await;
    assert_eq!(run["run"]["status"], "SUCCESS", "{run}");
    assert_eq!(run["run"]["inputs"].to_string(), r#"{"replicas":7,"share":7}"#, "not 7.0: {run}");
    let entity = app.get("/api/v1/blueprints/service/entities/a1").await;
    assert_eq!(entity.body["entity"]["properties"]["replicas"].to_string(), "7", "{}", entity.body);
}

/// The page as it reads, without its "Raw" views (and the text of its editors): where raw JSON
/// must not show.
fn outside_raw_views(html: &str) -> String {
    let mut rest = html;
    let mut out = String::new();
    while let Some(start) = rest.find("<details class=\"raw\">") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        rest = after.find("</details>").map_or("", |end| &after[end + "</details>".len()..]);
    }
    out.push_str(rest);
    out
}

/// Whether a page shows a JSON object or list as text (as the page escapes it).
fn shows_json(html: &str) -> bool {
    let text = outside_raw_views(html);
    ["{&quot;", "{\n", "[{", "[&quot;", "&quot;:"].iter().any(|p| text.contains(p))
}

#[tokio::test]
async fn runs_approvals_and_the_audit_log_read_as_words_with_raw_json_only_behind_a_toggle() {
    let app = spawn_app().await;
    org(&app).await;
    let approver = json!({"identifier": "carl@example.com", "teams": ["team-b"], "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", approver).await.status, StatusCode::CREATED);
    let action = json!({
        "identifier": "tune", "title": "Tune a service", "description": "Sets `replicas` and the notes",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
            "userInputs": {"properties": {
                "replicas": {"type": "number", "title": "Replicas"},
                "docs": {"type": "string", "title": "Docs"}}, "required": ["replicas"]}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "title": "Alpha Cart tuned"}},
        "guardrails": {"approval": {"approvers": {"users": ["carl@example.com"]}}}
    });
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);
    let ana = sign_in(&app, "ana@example.com").await;
    let (_, form) = page(&app, "/actions/tune?entity=a1", &ana).await;
    assert!(form.contains("Sets <code>replicas</code> and the notes"), "markdown in descriptions: {form}");
    let csrf = csrf_of(&form);
    let fields = [
        ("csrf", csrf.as_str()),
        ("entity", "a1"),
        ("in.replicas", "3"),
        ("in.docs", "https://docs.example.com/cart"),
        ("mode", "dry"),
    ];
    let preview = post_form(&app, "/actions/tune", &ana, &fields).await.text().await.expect("html");
    assert!(preview.contains("What it would send") && preview.contains("<dl class=\"kv\">"), "{preview}");
    assert!(preview.contains("<details class=\"raw\"><summary>Raw</summary>"), "the payload raw too: {preview}");
    assert!(!shows_json(&preview), "a dry run shows no raw JSON: {preview}");
    let mut fields = fields;
    fields[4] = ("mode", "run");
    let started = post_form(&app, "/actions/tune", &ana, &fields).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let run_path = started.headers()["location"].to_str().expect("location").to_string();

    let (_, waiting) = page(&app, &run_path, &ana).await;
    assert!(waiting.contains(">Waiting for approval</span>"), "a status in words: {waiting}");
    assert!(!waiting.contains(">WAITING_FOR_APPROVAL<"), "{waiting}");
    assert!(waiting.contains("the approval expires <time class=\"ago\""), "when it expires: {waiting}");
    assert!(waiting.contains(">in 1 day</time>"), "the default day to decide: {waiting}");
    assert!(waiting.contains("Requested by ana@example.com <time class=\"ago\""), "{waiting}");
    assert!(waiting.contains("title=\"20"), "the exact time on hover: {waiting}");
    assert!(waiting.contains("<dt>Replicas</dt><dd>3</dd>"), "inputs as a list, by title: {waiting}");
    assert!(
        waiting.contains("<a href=\"https://docs.example.com/cart\" rel=\"noopener noreferrer\">"),
        "addresses as links: {waiting}"
    );
    assert!(!shows_json(&waiting), "the run page shows no raw JSON: {waiting}");

    let carl = sign_in(&app, "carl@example.com").await;
    let (_, inbox) = page(&app, "/approvals", &carl).await;
    assert!(inbox.contains("<dt>Replicas</dt><dd>3</dd>") && inbox.contains("· expires <time"), "{inbox}");
    assert!(!shows_json(&inbox), "the inbox shows no raw JSON: {inbox}");
    let approve = [("csrf", csrf_of(&inbox)), ("decision", "APPROVE".into())];
    let pairs: Vec<(&str, &str)> = approve.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post_form(&app, &format!("{run_path}/approval"), &carl, &pairs).await.status(), StatusCode::SEE_OTHER);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let done = loop {
        let (_, done) = page(&app, &run_path, &ana).await;
        if done.contains(">Succeeded</span>") {
            break done;
        }
        assert!(std::time::Instant::now() < deadline, "the run did not finish: {done}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(done.contains(" · took "), "how long it took: {done}");
    assert!(!done.contains("href=\"/api/v1/"), "links go to the portal's pages, not the API: {done}");
    assert!(done.contains("<a class=\"long\" href=\"/catalog/service/a1\""), "the entity it wrote: {done}");

    let admin = json!({"identifier": "root@example.com", "role": "admin", "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", admin).await.status, StatusCode::CREATED);
    let root = sign_in(&app, "root@example.com").await;
    let (_, audit) = page(&app, "/audit?resource_type=entity&resource_id=a1&action=entity.update", &root).await;
    assert!(
        audit.contains("<li><code>title</code> <del>Alpha Cart</del> → <ins>Alpha Cart tuned</ins></li>"),
        "a change as before and after: {audit}"
    );
    assert!(audit.contains("<a href=\"/catalog/service/a1\">service/a1</a>"), "{audit}");
    assert!(audit.contains("<time class=\"ago\""), "{audit}");
    assert!(!shows_json(&audit), "the audit log shows no raw JSON: {audit}");
    assert!(outside_raw_views(&audit).len() < audit.len(), "the change as recorded, behind Raw");
}

#[tokio::test]
async fn a_member_is_not_offered_what_only_admins_and_moderators_may_do() {
    let app = spawn_app().await;
    org(&app).await;
    let admin = json!({"identifier": "root@example.com", "role": "admin", "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", admin).await.status, StatusCode::CREATED);
    let moderator = json!({"identifier": "mo@example.com", "teams": ["team-b"], "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", moderator).await.status, StatusCode::CREATED);
    let grants = json!({"moderators": {"users": ["mo@example.com"]}, "read": {"ownedByTeam": true}});
    let put = app.put("/api/v1/blueprints/service/permissions", grants).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);

    let ana = sign_in(&app, "ana@example.com").await;
    let (_, home) = page(&app, "/", &ana).await;
    assert!(!home.contains("href=\"/admin\""), "no Admin for a member: {home}");
    assert!(home.contains("href=\"/admin/tokens\""), "her own API tokens stay in reach: {home}");
    let (_, index) = page(&app, "/admin", &ana).await;
    for control in
        ["/admin/new/blueprint", "/admin/new/action", "/admin/secrets", "/admin/new/scorecard/service", "/permissions"]
    {
        assert!(!index.contains(control), "a member is offered {control}: {index}");
    }
    let (status, definition) = page(&app, "/admin/blueprints/service", &ana).await;
    assert_eq!(status, StatusCode::OK, "she may read it");
    assert!(!definition.contains("value=\"save\"") && !definition.contains("value=\"delete\""), "{definition}");
    assert!(definition.contains("readonly") && definition.contains("only an admin or a moderator"), "{definition}");
    let (_, new_blueprint) = page(&app, "/admin/new/blueprint", &ana).await;
    assert!(!new_blueprint.contains("value=\"save\""), "{new_blueprint}");
    // The server still refuses what the page no longer offers.
    let refused = post_form(
        &app,
        "/admin/blueprints/service",
        &ana,
        &[("csrf", &csrf_of(&definition)), ("format", "json"), ("document", "{}"), ("mode", "save")],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let mo = sign_in(&app, "mo@example.com").await;
    let (_, index) = page(&app, "/admin", &mo).await;
    assert!(index.contains("href=\"/admin\""), "a moderator administers: {index}");
    assert!(index.contains("/admin/new/scorecard/service") && index.contains("/admin/new/action"), "{index}");
    assert!(!index.contains("/admin/new/scorecard/system") && !index.contains("/admin/new/blueprint"), "{index}");
    let (_, service) = page(&app, "/admin/blueprints/service", &mo).await;
    assert!(service.contains("value=\"save\""), "{service}");
    let (_, system) = page(&app, "/admin/blueprints/system", &mo).await;
    assert!(!system.contains("value=\"save\""), "{system}");

    let root = sign_in(&app, "root@example.com").await;
    let (_, index) = page(&app, "/admin", &root).await;
    for control in ["href=\"/admin\"", "/admin/new/blueprint", "/admin/new/action", "/admin/secrets", "/permissions"] {
        assert!(index.contains(control), "an admin is offered {control}: {index}");
    }
    let (_, definition) = page(&app, "/admin/blueprints/service", &root).await;
    assert!(definition.contains("value=\"save\"") && definition.contains("value=\"delete\""), "{definition}");
}

#[tokio::test]
async fn the_search_box_suggests_entities_blueprints_and_actions_the_user_may_read() {
    let app = spawn_app().await;
    org(&app).await;
    let action = json!({"identifier": "scale", "title": "Scale a service",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
            "userInputs": {"properties": {}}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service",
            "mapping": {"identifier": "{{ .entity.identifier }}"}}});
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);
    let ana = sign_in(&app, "ana@example.com").await;
    let suggest = |q: &str| {
        let url = format!("{}/suggest?q={q}", app.base);
        let session = ana.clone();
        async move {
            let response = browser().get(url).header("cookie", session).send().await.expect("suggest");
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Vec<serde_json::Value>>().await.expect("json")
        }
    };
    let found = suggest("a").await;
    let labels: Vec<&str> = found.iter().filter_map(|s| s["label"].as_str()).collect();
    assert!(labels.contains(&"Alpha Cart") && labels.contains(&"Alpha Search"), "{found:?}");
    assert!(!labels.contains(&"Bravo Vault"), "another team's service is not suggested: {found:?}");
    let cart = found.iter().find(|s| s["label"] == "Alpha Cart").expect("a1");
    assert_eq!(cart["href"], "/catalog/service/a1");
    // Many entities of another blueprint named after the service do not bury it.
    let release = json!({"identifier": "release", "schema": {"properties": {}}});
    assert_eq!(app.post("/api/v1/blueprints", release).await.status, StatusCode::CREATED);
    let releases: Vec<_> = (0..30).map(|n| json!({"identifier": format!("a1-release-{n:02}")})).collect();
    let written = app.post("/api/v1/blueprints/release/entities/bulk", json!({"entities": releases})).await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
    let found = suggest("a1").await;
    assert_eq!(found[0]["href"], "/catalog/service/a1", "the exact match first: {found:?}");
    assert_eq!(found[1]["href"], "/catalog/release/a1-release-00", "then what begins with it: {found:?}");
    let found = suggest("scal").await;
    assert!(found.iter().any(|s| s["kind"] == "Action" && s["href"] == "/actions/scale"), "{found:?}");
    let found = suggest("servi").await;
    assert!(found.iter().any(|s| s["kind"] == "Blueprint" && s["href"] == "/catalog/service"), "{found:?}");
    assert!(suggest("").await.is_empty());
    let anonymous = browser().get(format!("{}/suggest?q=a", app.base)).send().await.expect("suggest");
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER, "only for a signed-in user");
}

#[tokio::test]
async fn the_test_mapping_page_runs_its_example_and_names_each_problem() {
    let app = spawn_app().await;
    org(&app).await;
    let ana = sign_in(&app, "ana@example.com").await;
    let (status, html) = page(&app, "/integrations/test-mapping", &ana).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("itemsToParse: .repositories"), "the page starts with an example mapping");
    let mapping = html
        .split("name=\"mapping\" rows=\"18\" spellcheck=\"false\">")
        .nth(1)
        .and_then(|r| r.split("</textarea>").next());
    let payload = html
        .split("name=\"payload\" rows=\"12\" spellcheck=\"false\">")
        .nth(1)
        .and_then(|r| r.split("</textarea>").next());
    let unescape =
        |s: &str| s.replace("&#34;", "\"").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&");
    let (mapping, payload) = (unescape(mapping.expect("mapping box")), unescape(payload.expect("payload box")));
    let csrf = csrf_of(&html);
    let ran = post_form(
        &app,
        "/integrations/test-mapping",
        &ana,
        &[("csrf", &csrf), ("mapping", &mapping), ("payload", &payload)],
    )
    .await;
    assert_eq!(ran.status(), StatusCode::OK);
    let html = ran.text().await.expect("html");
    let result = html.split("<h2>Result</h2>").nth(1).expect("a result");
    assert!(result.contains("acme/cart-service"), "the mapped entity is shown");
    assert!(
        result.contains("/resources/0/port/entity/mappings/properties/language"),
        "Perl is not an allowed language"
    );
    assert!(!result.contains("acme/attic"), "the archived repository is not selected");
    assert!(result.contains("/resources/0/port/entity/mappings/blueprint"), "a member may not write services");

    let broken = post_form(
        &app,
        "/integrations/test-mapping",
        &ana,
        &[("csrf", &csrf), ("mapping", "resources: [unclosed"), ("payload", "{}")],
    )
    .await;
    let html = broken.text().await.expect("html");
    assert!(html.contains("<code>/mapping</code> line"), "an unreadable mapping is named");
    assert!(html.contains("[unclosed"), "and kept in its box");
}

#[tokio::test]
async fn an_integration_added_on_its_page_shows_its_ingest_url_once_and_its_events() {
    let app = spawn_app().await;
    org(&app).await;
    let admin = json!({"identifier": "root@example.com", "role": "admin", "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", admin).await.status, StatusCode::CREATED);
    let root = sign_in(&app, "root@example.com").await;
    let (status, html) = page(&app, "/integrations", &root).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No integrations yet."));
    let csrf = csrf_of(&html);

    let incomplete =
        post_form(&app, "/integrations", &root, &[("csrf", &csrf), ("definition", "identifier: x\n")]).await;
    let html = incomplete.text().await.expect("html");
    assert!(html.contains("missing field `type`"), "the problem is named: {html}");
    assert!(html.contains("identifier: x"), "and the definition kept in its box");

    let definition = "identifier: deploys\ntype: webhook\nmapping:\n  resources:\n    - kind: deploy\n      port:\n        entity:\n          mappings:\n            identifier: .body.service\n            blueprint: '\"service\"'\n            properties:\n              language: .body.language\n            relations:\n              system: '\"shop\"'\n";
    let added = post_form(&app, "/integrations", &root, &[("csrf", &csrf), ("definition", definition)]).await;
    let html = added.text().await.expect("html");
    let url = html
        .split("<pre class=\"secret\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .expect("the ingest URL is shown")
        .to_string();
    let (_, again) = page(&app, "/integrations", &root).await;
    assert!(!again.contains(&url), "and not shown again");
    assert!(again.contains("href=\"/integrations/deploys\""));

    let sent = reqwest::Client::new().post(&url).json(&json!({"service": "c1", "language": "Go"})).send().await;
    assert_eq!(sent.expect("sent").status(), StatusCode::ACCEPTED);
    app.drain_jobs().await;
    let (status, log) = page(&app, "/integrations/deploys", &root).await;
    assert_eq!(status, StatusCode::OK);
    assert!(log.contains("service/c1 created"), "{log}");

    let ana = sign_in(&app, "ana@example.com").await;
    let (status, _) = page(&app, "/integrations/deploys", &ana).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a member does not see it");
}
