//! GitHub, GitLab and PagerDuty integrations, pulled from local servers that answer as each
//! vendor documents, and fed the webhook payloads each sends. GitHub's lists are the examples of
//! its published REST description and its webhooks the payloads it recorded (npm
//! `@octokit/openapi`, `@octokit/webhooks-examples`, pinned in `tests/vendor-fixtures`); GitLab's
//! and PagerDuty's are the documented shapes under `tests/vendor-fixtures/{gitlab,pagerduty}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestApp, spawn_app};

fn fixtures() -> std::path::PathBuf {
    crate::npm_harness("vendor-fixtures", "@octokit/openapi")
}

fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(path)).expect("a fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// An example of GitHub's REST description, by its name under `components/examples`.
fn github_example(name: &str) -> Value {
    static EXAMPLES: OnceLock<Value> = OnceLock::new();
    let examples = EXAMPLES.get_or_init(|| {
        let spec = fixture("node_modules/@octokit/openapi/generated/api.github.com.json");
        spec["components"]["examples"].clone()
    });
    examples[name]["value"].clone()
}

/// The first payload GitHub recorded for a webhook event (and action).
fn github_delivery(event: &str, action: Option<&str>) -> Value {
    let all = fixture("node_modules/@octokit/webhooks-examples/api.github.com/index.json");
    let event = all.as_array().into_iter().flatten().find(|e| e["name"] == event).expect("the event");
    let examples = event["examples"].as_array().expect("examples");
    examples.iter().find(|e| action.is_none_or(|a| e["action"] == a)).expect("an example").clone()
}

/// Blueprints with the given string properties and relations (`name` → target).
/// A blueprint to make: its identifier, string properties, and relations (name, target, many).
type BlueprintSpec<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str, bool)]);

async fn blueprints(app: &TestApp, list: &[BlueprintSpec<'_>]) {
    for (id, properties, relations) in list {
        let properties: serde_json::Map<String, Value> =
            properties.iter().map(|p| (p.to_string(), json!({"type": "string"}))).collect();
        let relations: serde_json::Map<String, Value> = relations
            .iter()
            .map(|(name, target, many)| (name.to_string(), json!({"target": target, "many": many})))
            .collect();
        let body = json!({"identifier": id, "title": id, "schema": {"properties": properties}, "relations": relations});
        let created = app.post("/api/v1/blueprints", body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

/// A response as the vendors send it: JSON with an `ETag`, or 304 when the client's tag matches.
fn tagged(headers: &HeaderMap, body: Value, link: Option<String>) -> Response {
    let etag = format!("W/\"{:x}\"", hash_of(&body.to_string()));
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response();
    }
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert("etag", etag.parse().expect("header"));
    if let Some(link) = link {
        response.headers_mut().insert("link", link.parse().expect("header"));
    }
    response
}

fn hash_of(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Two items to a page with a `Link` header to the next, as GitHub and GitLab page (they honour
/// `per_page`; two makes the paging show with three items).
fn paged(headers: &HeaderMap, uri: &Uri, items: &[Value], query: &HashMap<String, String>) -> Response {
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let chunk: Vec<Value> = items.iter().skip((page - 1) * 2).take(2).cloned().collect();
    let link = (page * 2 < items.len()).then(|| {
        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
        format!("<http://{host}{}?per_page=100&page={}>; rel=\"next\"", uri.path(), page + 1)
    });
    tagged(headers, Value::Array(chunk), link)
}

// ---- GitHub ----

const INSTALLATION_TOKEN: &str = "ghs_localInstallationToken0001";
const APP_ID: &str = "424242";

#[derive(Clone, Default)]
struct GitHub {
    repositories: Arc<Mutex<Vec<String>>>,
    public_key: Arc<String>,
    tokens_issued: Arc<AtomicUsize>,
    /// Answers the next list request 403 with a spent rate limit, as GitHub does.
    limit_next: Arc<AtomicUsize>,
    limited: Arc<AtomicUsize>,
    /// Workflow dispatches received (their bodies), and how the runs they start behave.
    dispatches: Arc<Mutex<Vec<Value>>>,
    /// Answer a dispatch with the run's id and URLs (`return_run_details`), or 204 as older
    /// GitHub Enterprise Servers do.
    run_details: Arc<std::sync::atomic::AtomicBool>,
    /// Lists of workflow runs answered empty before the run shows.
    hidden_looks: Arc<AtomicUsize>,
    /// Looks at a run answered `in_progress` before it is `completed`.
    running_looks: Arc<AtomicUsize>,
    conclusion: Arc<Mutex<String>>,
    /// Answers the next dispatch 429 with `Retry-After: 1`.
    limit_dispatch: Arc<std::sync::atomic::AtomicBool>,
}

impl GitHub {
    fn repository(&self, index: usize, name: &str) -> Value {
        let mut repository = github_example("minimal-repository-items")[0].clone();
        repository["id"] = json!(1_296_269 + index);
        repository["name"] = json!(name);
        repository["full_name"] = json!(format!("acme/{name}"));
        repository["html_url"] = json!(format!("https://github.com/acme/{name}"));
        repository
    }

    /// The first item of an example list, its `id` made unique to the repository.
    fn per_repository(&self, example: &str, repo: &str) -> Value {
        let index = self.repositories.lock().expect("lock").iter().position(|r| r == repo).unwrap_or(99);
        let mut list = github_example(example);
        let item = match list.get_mut("workflow_runs") {
            Some(runs) => &mut runs[0],
            None => &mut list[0],
        };
        let id = item["id"].as_u64().unwrap_or(1);
        item["id"] = json!(id * 1000 + index as u64);
        list
    }

    /// A run the dispatches started, as GitHub describes one (its `workflow-run` example).
    fn workflow_run(&self, host: &str, index: usize, status: &str, conclusion: Option<&str>) -> Value {
        let mut run = github_example("workflow-run");
        let id = 30_433_642 + index;
        run["id"] = json!(id);
        run["status"] = json!(status);
        run["conclusion"] = json!(conclusion);
        run["url"] = json!(format!("http://{host}/repos/acme/cart/actions/runs/{id}"));
        run["html_url"] = json!(format!("https://github.com/acme/cart/actions/runs/{id}"));
        run["created_at"] = json!(portolan_model::format_millis(now_ms()));
        run
    }

    async fn start(&self) -> String {
        async fn dispatch(
            State(github): State<GitHub>,
            Path((owner, repo, workflow)): Path<(String, String, String)>,
            headers: HeaderMap,
            axum::Json(body): axum::Json<Value>,
        ) -> Response {
            let bearer = format!("Bearer {INSTALLATION_TOKEN}");
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
                return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "Bad credentials"}))).into_response();
            }
            if github.limit_dispatch.swap(false, Ordering::SeqCst) {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    axum::Json(json!({"message": "slow down"})),
                )
                    .into_response();
            }
            if (owner.as_str(), repo.as_str(), workflow.as_str()) != ("acme", "cart", "deploy.yml") {
                let message = json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"});
                return (StatusCode::NOT_FOUND, axum::Json(message)).into_response();
            }
            // The request body as GitHub's description has it: `ref` text, at most 25 text inputs.
            let inputs = body["inputs"].as_object().cloned().unwrap_or_default();
            if !body["ref"].is_string() || inputs.len() > 25 || inputs.values().any(|v| !v.is_string()) {
                let message = json!({"message": "Invalid request. For 'properties/inputs', values must be strings."});
                return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(message)).into_response();
            }
            let index = {
                let mut dispatches = github.dispatches.lock().expect("lock");
                dispatches.push(body);
                dispatches.len() - 1
            };
            if !github.run_details.load(Ordering::SeqCst) {
                return StatusCode::NO_CONTENT.into_response();
            }
            let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let run = github.workflow_run(host, index, "queued", None);
            let mut answer = github_example("workflow-dispatch-response");
            answer["workflow_run_id"] = run["id"].clone();
            answer["run_url"] = run["url"].clone();
            answer["html_url"] = run["html_url"].clone();
            axum::Json(answer).into_response()
        }
        async fn token(State(github): State<GitHub>, headers: HeaderMap) -> Response {
            let jwt = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(github.public_key.as_bytes()).expect("public key");
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_required_spec_claims(&["exp", "iat", "iss"]);
            validation.set_issuer(&[APP_ID]);
            #[derive(serde::Deserialize)]
            struct Claims {
                iat: i64,
                exp: i64,
            }
            match jsonwebtoken::decode::<Claims>(jwt.trim_start_matches("Bearer "), &key, &validation) {
                Ok(data) if data.claims.exp - data.claims.iat <= 600 => {}
                _ => {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"message": "A JSON web token could not be decoded"})),
                    )
                        .into_response();
                }
            }
            github.tokens_issued.fetch_add(1, Ordering::SeqCst);
            let mut body = github_example("installation-token");
            body["token"] = json!(INSTALLATION_TOKEN);
            body["expires_at"] = json!(portolan_model::format_millis(now_ms() + 3_600_000));
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        async fn list(
            State(github): State<GitHub>,
            Path(path): Path<String>,
            Query(query): Query<HashMap<String, String>>,
            uri: Uri,
            headers: HeaderMap,
        ) -> Response {
            let bearer = format!("Bearer {INSTALLATION_TOKEN}");
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str())
                || headers.get("x-github-api-version").is_none()
            {
                return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "Bad credentials"}))).into_response();
            }
            if github.limit_next.swap(0, Ordering::SeqCst) > 0 {
                github.limited.fetch_add(1, Ordering::SeqCst);
                let reset =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() + 1;
                let headers = [("x-ratelimit-remaining", "0".to_string()), ("x-ratelimit-reset", reset.to_string())];
                return (StatusCode::FORBIDDEN, headers, axum::Json(json!({"message": "API rate limit exceeded"})))
                    .into_response();
            }
            let repositories = github.repositories.lock().expect("lock").clone();
            let segments: Vec<&str> = path.split('/').collect();
            let body = match segments.as_slice() {
                ["orgs", "acme", "repos"] => {
                    let items: Vec<Value> =
                        repositories.iter().enumerate().map(|(i, name)| github.repository(i, name)).collect();
                    return paged(&headers, &uri, &items, &query);
                }
                ["repos", "acme", repo, rest @ ..] if repositories.iter().any(|r| r == repo) => match rest {
                    [] => {
                        let mut repository = github_example("full-repository");
                        repository["name"] = json!(repo);
                        repository
                    }
                    ["actions", "workflows", "deploy.yml", "runs"] => {
                        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
                        let hidden = github
                            .hidden_looks
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        let count = if hidden { 0 } else { github.dispatches.lock().expect("lock").len() };
                        let runs: Vec<Value> =
                            (0..count).map(|i| github.workflow_run(host, i, "queued", None)).collect();
                        json!({"total_count": runs.len(), "workflow_runs": runs})
                    }
                    ["actions", "runs", id] => {
                        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
                        let index = id.parse::<usize>().unwrap_or(0).saturating_sub(30_433_642);
                        let running = github
                            .running_looks
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        match running {
                            true => github.workflow_run(host, index, "in_progress", None),
                            false => {
                                let conclusion = github.conclusion.lock().expect("lock").clone();
                                github.workflow_run(host, index, "completed", Some(&conclusion))
                            }
                        }
                    }
                    ["pulls"] => {
                        let mut pulls = github_example("pull-request-simple-items");
                        let index = repositories.iter().position(|r| r == repo).unwrap_or(0);
                        pulls[0]["number"] = json!(1347 + index);
                        pulls
                    }
                    ["actions", "runs"] => github.per_repository("workflow-run-paginated", repo),
                    ["deployments"] => github.per_repository("deployment-items", repo),
                    ["releases"] => github.per_repository("release-items", repo),
                    _ => return StatusCode::NOT_FOUND.into_response(),
                },
                ["orgs", "acme", "teams"] => github_example("team-items"),
                ["orgs", "acme", "teams", "justice-league", "members"] => github_example("team-member-items"),
                ["orgs", "acme", "members"] => github_example("simple-user-items"),
                _ => return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Not Found"}))).into_response(),
            };
            tagged(&headers, body, None)
        }
        let router = axum::Router::new()
            .route("/app/installations/{id}/access_tokens", axum::routing::post(token))
            .route("/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches", axum::routing::post(dispatch))
            .route("/{*path}", axum::routing::get(list))
            .with_state(self.clone());
        serve(router).await
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64
}

/// An RSA key pair made for the test (private PEM, public PEM), by `openssl`.
fn rsa_key_pair() -> (String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let private = dir.path().join("app.pem");
    let public = dir.path().join("app.pub.pem");
    let made = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&private)
        .arg("2048")
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (std::fs::read_to_string(private).expect("key"), std::fs::read_to_string(public).expect("key"))
}

fn github_mapping() -> Value {
    json!({"entityDeletionThreshold": 0.5, "resources": [
        {"kind": "repository", "port": {"entity": {"mappings": {
            "identifier": ".name", "title": ".full_name", "blueprint": "\"repository\"",
            "properties": {"url": ".html_url", "defaultBranch": ".default_branch"}}}}},
        {"kind": "pull-request", "port": {"entity": {"mappings": {
            "identifier": ".__repository + \"-\" + (.number | tostring)", "title": ".title",
            "blueprint": "\"pullRequest\"",
            "properties": {"status": ".state", "author": ".user.login", "url": ".html_url"},
            "relations": {"repository": ".__repository"}}}}},
        {"kind": "workflow-run", "port": {"entity": {"mappings": {
            "identifier": ".id | tostring", "title": ".name", "blueprint": "\"workflowRun\"",
            "properties": {"status": ".status", "branch": ".head_branch"},
            "relations": {"repository": ".__repository"}}}}},
        {"kind": "deployment", "port": {"entity": {"mappings": {
            "identifier": ".id | tostring", "blueprint": "\"deployment\"",
            "properties": {"environment": ".environment", "ref": ".ref"},
            "relations": {"repository": ".__repository"}}}}},
        {"kind": "release", "port": {"entity": {"mappings": {
            "identifier": ".id | tostring", "title": ".name", "blueprint": "\"release\"",
            "properties": {"tag": ".tag_name"}, "relations": {"repository": ".__repository"}}}}},
        {"kind": "team", "port": {"entity": {"mappings": {
            "identifier": ".slug", "title": ".name", "blueprint": "\"githubTeam\"",
            "relations": {"members": "[.__members[].login]"}}}}},
        {"kind": "user", "port": {"entity": {"mappings": {
            "identifier": ".login", "blueprint": "\"githubUser\"", "properties": {"url": ".html_url"}}}}}
    ]})
}

async fn github_blueprints(app: &TestApp) {
    let repository: &[(&str, &str, bool)] = &[("repository", "repository", false)];
    blueprints(
        app,
        &[
            ("repository", &["url", "defaultBranch"], &[]),
            ("pullRequest", &["status", "author", "url"], repository),
            ("workflowRun", &["status", "branch"], repository),
            ("deployment", &["environment", "ref"], repository),
            ("release", &["tag"], repository),
            ("githubUser", &["url"], &[]),
            ("githubTeam", &[], &[("members", "githubUser", true)]),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_github_app_pulls_every_kind_from_githubs_own_examples_and_follows_the_organization() {
    let app = spawn_app().await;
    github_blueprints(&app).await;
    let (private_key, public_key) = rsa_key_pair();
    let github = GitHub { public_key: Arc::new(public_key), ..GitHub::default() };
    *github.repositories.lock().expect("lock") = vec!["cart".into(), "pay".into(), "ledger".into()];
    github.limit_next.store(1, Ordering::SeqCst);
    let base = github.start().await;
    assert!(
        app.post("/api/v1/secrets", json!({"name": "github-app-key", "value": private_key})).await.status.is_success()
    );
    let integration = json!({
        "identifier": "github", "type": "github",
        "vendor": {"baseUrl": base, "organization": "acme",
                   "app": {"appId": APP_ID, "installationId": 7, "privateKeySecret": "github-app-key"}},
        "mapping": github_mapping()
    });
    let created = app.post("/api/v1/integrations", integration).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let first = app.post("/api/v1/integrations/github/sync", json!({})).await;
    let status = &first.body["status"];
    assert_eq!(status["state"], "ok", "{}", first.body);
    // 3 repositories, and for each a pull request, a workflow run, a deployment and a release;
    // one team and one member.
    // The sweeper's first pull may have come before this one (see the PagerDuty test).
    let applied = status["created"].as_i64().unwrap_or(0) + status["unchanged"].as_i64().unwrap_or(0);
    assert_eq!((&status["fetched"], applied), (&json!(17), 17), "{status}");
    assert_eq!(github.limited.load(Ordering::SeqCst), 1, "the spent rate limit was waited out");
    assert_eq!(github.tokens_issued.load(Ordering::SeqCst), 1, "one installation token per pull");

    let repository = github_example("minimal-repository-items")[0].clone();
    let cart = app.get("/api/v1/blueprints/repository/entities/cart").await;
    assert_eq!(cart.body["entity"]["title"], "acme/cart", "{}", cart.body);
    assert_eq!(cart.body["entity"]["properties"]["defaultBranch"], repository["default_branch"]);
    let pull = github_example("pull-request-simple-items")[0].clone();
    let pr = app.get("/api/v1/blueprints/pullRequest/entities/pay-1348").await;
    assert_eq!(pr.body["entity"]["title"], pull["title"], "{}", pr.body);
    assert_eq!(pr.body["entity"]["properties"]["author"], pull["user"]["login"]);
    assert_eq!(pr.body["entity"]["relations"]["repository"], "pay");
    let team = github_example("team-items")[0].clone();
    let member = github_example("team-member-items")[0]["login"].clone();
    let shown =
        app.get(&format!("/api/v1/blueprints/githubTeam/entities/{}", team["slug"].as_str().unwrap_or("?"))).await;
    assert_eq!(shown.body["entity"]["relations"]["members"], json!([member]), "{}", shown.body);
    let run = github.per_repository("workflow-run-paginated", "ledger")["workflow_runs"][0].clone();
    let shown = app.get(&format!("/api/v1/blueprints/workflowRun/entities/{}", run["id"])).await;
    assert_eq!(shown.body["entity"]["properties"]["status"], run["status"], "{}", shown.body);
    assert_eq!(shown.body["entity"]["relations"]["repository"], "ledger");

    // Unchanged, every page answers 304 and nothing is written.
    let again = app.post("/api/v1/integrations/github/sync", json!({})).await;
    let status = &again.body["status"];
    assert_eq!((&status["state"], &status["created"], &status["updated"]), (&json!("ok"), &json!(0), &json!(0)));
    assert_eq!(status["unchanged"], 17, "{status}");

    // A repository leaves the organization: it and what was read under it leave the catalog.
    github.repositories.lock().expect("lock").pop();
    let after = app.post("/api/v1/integrations/github/sync", json!({})).await;
    let status = &after.body["status"];
    assert_eq!((&status["state"], &status["deleted"]), (&json!("ok"), &json!(5)), "{status}");
    assert_eq!(app.get("/api/v1/blueprints/repository/entities/ledger").await.status, StatusCode::NOT_FOUND);
    let shown = app.get(&format!("/api/v1/blueprints/workflowRun/entities/{}", run["id"])).await;
    assert_eq!(shown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_vendor_integration_names_its_unknown_kinds_and_missing_account() {
    let app = spawn_app().await;
    let bad = app
        .post(
            "/api/v1/integrations",
            json!({"identifier": "gh", "type": "github", "vendor": {"tokenSecret": "t"},
                "mapping": {"resources": [{"kind": "repo", "port": {"entity": {"mappings": {
                    "identifier": ".name", "blueprint": "\"service\""}}}}]}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.detail_paths(), ["/vendor/organization", "/mapping/resources/0/kind"]);
    let missing = app
        .post(
            "/api/v1/integrations",
            json!({"identifier": "pd", "type": "pagerduty", "mapping": {"resources": [{"kind": "services",
                "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"service\""}}}}]}}),
        )
        .await;
    assert_eq!(missing.detail_paths(), ["/vendor"]);

    // A GitHub App key that is not an RSA key is refused when saved, as is a secret that is not there.
    app.post("/api/v1/secrets", json!({"name": "not-a-key", "value": "-----BEGIN NONSENSE-----"})).await;
    let with_key = |secret: &str| {
        json!({"identifier": "gh-app", "type": "github",
            "vendor": {"organization": "acme", "app": {"appId": "1", "installationId": 2, "privateKeySecret": secret}},
            "mapping": {"resources": [{"kind": "repository", "port": {"entity": {"mappings": {
                "identifier": ".name", "blueprint": "\"service\""}}}}]}})
    };
    for secret in ["not-a-key", "no-such-secret"] {
        let refused = app.post("/api/v1/integrations", with_key(secret)).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
        assert_eq!(refused.detail_paths(), ["/vendor/app/privateKeySecret"], "{}", refused.body);
    }

    // A token the vendor refuses fails the pull with the vendor's status, and writes nothing.
    let github = GitHub::default();
    let base = github.start().await;
    app.post("/api/v1/secrets", json!({"name": "gh-token", "value": "not-the-token"})).await;
    let created = app
        .post(
            "/api/v1/integrations",
            json!({"identifier": "gh", "type": "github",
                "vendor": {"baseUrl": base, "organization": "acme", "tokenSecret": "gh-token"},
                "mapping": {"resources": [{"kind": "repository", "port": {"entity": {"mappings": {
                    "identifier": ".name", "blueprint": "\"service\""}}}}]}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let failed = app.post("/api/v1/integrations/gh/sync", json!({})).await;
    assert_eq!(failed.body["status"]["state"], "failed", "{}", failed.body);
    assert!(failed.body["status"]["error"].as_str().unwrap_or_default().contains("401"), "{}", failed.body);
}

// ---- GitHub webhooks, as GitHub recorded them ----

const HOOK_SECRET: &str = "vendor-hook-secret";

fn hmac_hex(body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).expect("key");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn post_hook(url: &str, headers: &[(&str, String)], body: &Value) -> StatusCode {
    let bytes = serde_json::to_vec(body).expect("json");
    let mut request = reqwest::Client::new().post(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.body(bytes).send().await.expect("delivered").status()
}

async fn webhook(app: &TestApp, integration: Value) -> String {
    let created = app.post("/api/v1/integrations", integration).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["integration"]["ingestUrl"].as_str().expect("ingest URL").to_string()
}

#[tokio::test]
async fn githubs_recorded_deliveries_map_to_entities() {
    let app = spawn_app().await;
    github_blueprints(&app).await;
    app.post("/api/v1/secrets", json!({"name": "hook", "value": HOOK_SECRET})).await;
    let on = |event: &str| format!(".headers.\"x-github-event\" == \"{event}\"");
    let url = webhook(
        &app,
        json!({"identifier": "github-hooks", "type": "webhook",
        "security": {"secret": "hook", "requestIdentifierPath": ".headers.\"x-github-delivery\""},
        "mapping": {"createMissingRelatedEntities": true, "resources": [
            {"kind": "push", "selector": {"query": on("push")}, "port": {"entity": {"mappings": {
                "identifier": ".body.repository.name", "title": ".body.repository.full_name",
                "blueprint": "\"repository\"",
                "properties": {"url": ".body.repository.html_url", "defaultBranch": ".body.repository.default_branch"}}}}},
            {"kind": "pull_request", "selector": {"query": on("pull_request")}, "port": {"entity": {"mappings": {
                "identifier": ".body.repository.name + \"-\" + (.body.pull_request.number | tostring)",
                "title": ".body.pull_request.title", "blueprint": "\"pullRequest\"",
                "properties": {"status": ".body.pull_request.state", "author": ".body.pull_request.user.login"},
                "relations": {"repository": ".body.repository.name"}}}}},
            {"kind": "workflow_run", "selector": {"query": on("workflow_run")}, "port": {"entity": {"mappings": {
                "identifier": ".body.workflow_run.id | tostring", "title": ".body.workflow_run.name",
                "blueprint": "\"workflowRun\"",
                "properties": {"status": ".body.workflow_run.status", "branch": ".body.workflow_run.head_branch"},
                "relations": {"repository": ".body.repository.name"}}}}},
            {"kind": "deployment_status", "selector": {"query": on("deployment_status")}, "port": {"entity": {"mappings": {
                "identifier": ".body.deployment.id | tostring", "blueprint": "\"deployment\"",
                "properties": {"environment": ".body.deployment.environment", "ref": ".body.deployment_status.state"},
                "relations": {"repository": ".body.repository.name"}}}}}
        ]}}),
    )
    .await;
    let deliveries = [
        ("push", github_delivery("push", None)),
        ("pull_request", github_delivery("pull_request", Some("opened"))),
        ("workflow_run", github_delivery("workflow_run", Some("completed"))),
        ("deployment_status", github_delivery("deployment_status", None)),
    ];
    for (i, (event, body)) in deliveries.iter().enumerate() {
        let bytes = serde_json::to_vec(body).expect("json");
        let headers = [
            ("x-github-event", event.to_string()),
            ("x-github-delivery", format!("delivery-{i}")),
            ("x-hub-signature-256", format!("sha256={}", hmac_hex(&bytes))),
        ];
        assert_eq!(post_hook(&url, &headers, body).await, StatusCode::ACCEPTED, "{event}");
    }
    app.drain_jobs().await;

    let [(_, push), (_, pull), (_, run), (_, deployment)] = &deliveries;
    let repository = app
        .get(&format!("/api/v1/blueprints/repository/entities/{}", push["repository"]["name"].as_str().unwrap_or("?")))
        .await;
    assert_eq!(repository.body["entity"]["properties"]["defaultBranch"], push["repository"]["default_branch"]);
    let id = format!("{}-{}", pull["repository"]["name"].as_str().unwrap_or("?"), pull["pull_request"]["number"]);
    let pr = app.get(&format!("/api/v1/blueprints/pullRequest/entities/{id}")).await;
    assert_eq!(pr.body["entity"]["title"], pull["pull_request"]["title"], "{}", pr.body);
    assert_eq!(pr.body["entity"]["properties"]["author"], pull["pull_request"]["user"]["login"]);
    let shown = app.get(&format!("/api/v1/blueprints/workflowRun/entities/{}", run["workflow_run"]["id"])).await;
    assert_eq!(shown.body["entity"]["title"], run["workflow_run"]["name"], "{}", shown.body);
    let shown = app.get(&format!("/api/v1/blueprints/deployment/entities/{}", deployment["deployment"]["id"])).await;
    assert_eq!(shown.body["entity"]["properties"]["environment"], deployment["deployment"]["environment"]);
    assert_eq!(shown.body["entity"]["properties"]["ref"], deployment["deployment_status"]["state"]);
}

// ---- GitLab ----

#[derive(Clone, Default)]
struct GitLab {
    projects: Arc<Mutex<Vec<String>>>,
    /// Pipeline triggers received (their form fields), and how the pipelines behave.
    triggers: Arc<Mutex<Vec<HashMap<String, String>>>>,
    running_looks: Arc<AtomicUsize>,
    pipeline_status: Arc<Mutex<String>>,
    /// Triggers answered 500 before one is accepted.
    failing_triggers: Arc<AtomicUsize>,
}

impl GitLab {
    fn project(index: usize, name: &str) -> Value {
        let mut project = fixture("gitlab/project.json");
        project["id"] = json!(4301 + index);
        project["name"] = json!(name);
        project["path"] = json!(name);
        project["path_with_namespace"] = json!(format!("acme/platform/{name}"));
        project["web_url"] = json!(format!("https://gitlab.example.com/acme/platform/{name}"));
        project
    }

    async fn start(&self) -> String {
        async fn list(
            State(gitlab): State<GitLab>,
            Query(query): Query<HashMap<String, String>>,
            uri: Uri,
            headers: HeaderMap,
        ) -> Response {
            if headers.get("private-token").and_then(|v| v.to_str().ok()) != Some("glpat-local") {
                return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "401 Unauthorized"}))).into_response();
            }
            let projects: Vec<Value> =
                gitlab.projects.lock().expect("lock").iter().enumerate().map(|(i, n)| GitLab::project(i, n)).collect();
            let with_project = |file: &str, project: &Value| {
                let mut item = fixture(file);
                item["id"] = json!(item["id"].as_u64().unwrap_or(0) * 10 + project["id"].as_u64().unwrap_or(0) % 10);
                item["project_id"] = project["id"].clone();
                item
            };
            // The group is one path segment, its slash escaped (`acme%2Fplatform`).
            let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
            let body = match segments.as_slice() {
                ["api", "v4", "groups", "acme%2Fplatform", "projects"] => {
                    return paged(&headers, &uri, &projects, &query);
                }
                ["api", "v4", "groups", "acme%2Fplatform", "merge_requests"] => {
                    projects.iter().map(|p| with_project("gitlab/merge_request.json", p)).collect()
                }
                ["api", "v4", "projects", "acme%2Fplatform%2Fcart", "pipelines", id] => {
                    let running = gitlab
                        .running_looks
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let mut pipeline = fixture("gitlab/pipeline.json");
                    pipeline["id"] = json!(id.parse::<u64>().unwrap_or(0));
                    pipeline["status"] = json!(if running {
                        "running".to_string()
                    } else {
                        gitlab.pipeline_status.lock().expect("lock").clone()
                    });
                    pipeline
                }
                ["api", "v4", "projects", id, kind] => {
                    let Some(project) = projects.iter().find(|p| id.parse::<u64>().ok() == p["id"].as_u64()) else {
                        return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "404 Project Not Found"})))
                            .into_response();
                    };
                    match *kind {
                        "pipelines" => json!([with_project("gitlab/pipeline.json", project)]),
                        "deployments" => json!([with_project("gitlab/deployment.json", project)]),
                        _ => return StatusCode::NOT_FOUND.into_response(),
                    }
                }
                _ => return StatusCode::NOT_FOUND.into_response(),
            };
            tagged(&headers, body, None)
        }
        /// `POST /projects/:id/trigger/pipeline`, as GitLab documents it: a form with the trigger
        /// `token`, `ref` and `variables[NAME]`; 201 with the pipeline.
        async fn trigger(
            State(gitlab): State<GitLab>,
            uri: Uri,
            axum::Form(form): axum::Form<HashMap<String, String>>,
        ) -> Response {
            if uri.path() != "/api/v4/projects/acme%2Fplatform%2Fcart/trigger/pipeline" {
                return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "404 Project Not Found"})))
                    .into_response();
            }
            if gitlab.failing_triggers.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"message": "500 Internal Server Error"})),
                )
                    .into_response();
            }
            if form.get("token").map(String::as_str) != Some("glptt-trigger") {
                return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "404 Not Found"}))).into_response();
            }
            let index = {
                let mut triggers = gitlab.triggers.lock().expect("lock");
                triggers.push(form);
                triggers.len()
            };
            let mut pipeline = fixture("gitlab/pipeline.json");
            let id = 800_000 + index;
            pipeline["id"] = json!(id);
            pipeline["status"] = json!("created");
            pipeline["web_url"] = json!(format!("https://gitlab.example.com/acme/platform/cart/-/pipelines/{id}"));
            (StatusCode::CREATED, axum::Json(pipeline)).into_response()
        }
        let routes = axum::routing::get(list).post(trigger);
        serve(axum::Router::new().fallback(routes).with_state(self.clone())).await
    }
}

#[tokio::test]
async fn gitlab_projects_merge_requests_pipelines_and_deployments_are_pulled() {
    let app = spawn_app().await;
    blueprints(
        &app,
        &[
            ("gitlabProject", &["url"], &[]),
            ("mergeRequest", &["status", "author"], &[]),
            ("pipeline", &["status", "ref"], &[("project", "gitlabProject", false)]),
            ("gitlabDeployment", &["status", "environment"], &[("project", "gitlabProject", false)]),
        ],
    )
    .await;
    let gitlab = GitLab::default();
    *gitlab.projects.lock().expect("lock") = vec!["cart".into(), "pay".into(), "ledger".into()];
    let base = gitlab.start().await;
    app.post("/api/v1/secrets", json!({"name": "gitlab-token", "value": "glpat-local"})).await;
    let project = ".__project | split(\"/\") | last";
    let created = app
        .post(
            "/api/v1/integrations",
            json!({"identifier": "gitlab", "type": "gitlab",
            "vendor": {"baseUrl": format!("{base}/api/v4"), "organization": "acme/platform", "tokenSecret": "gitlab-token"},
            "mapping": {"entityDeletionThreshold": 0.5, "resources": [
                {"kind": "project", "port": {"entity": {"mappings": {
                    "identifier": ".path", "title": ".name_with_namespace", "blueprint": "\"gitlabProject\"",
                    "properties": {"url": ".web_url"}}}}},
                {"kind": "merge-request", "port": {"entity": {"mappings": {
                    "identifier": "(.project_id | tostring) + \"-\" + (.iid | tostring)", "title": ".title",
                    "blueprint": "\"mergeRequest\"", "properties": {"status": ".state", "author": ".author.username"}}}}},
                {"kind": "pipeline", "port": {"entity": {"mappings": {
                    "identifier": ".id | tostring", "blueprint": "\"pipeline\"",
                    "properties": {"status": ".status", "ref": ".ref"}, "relations": {"project": project}}}}},
                {"kind": "deployment", "port": {"entity": {"mappings": {
                    "identifier": ".id | tostring", "blueprint": "\"gitlabDeployment\"",
                    "properties": {"status": ".status", "environment": ".environment.name"},
                    "relations": {"project": project}}}}}
            ]}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let first = app.post("/api/v1/integrations/gitlab/sync", json!({})).await;
    let status = &first.body["status"];
    // As for PagerDuty below: the sweeper's first pull may have come before this one.
    let applied = status["created"].as_i64().unwrap_or(0) + status["unchanged"].as_i64().unwrap_or(0);
    assert_eq!((&status["state"], applied), (&json!("ok"), 12), "{status}");

    let pipeline = fixture("gitlab/pipeline.json");
    // The third project's (4303) pipeline.
    let id = pipeline["id"].as_u64().unwrap_or(0) * 10 + 3;
    let shown = app.get(&format!("/api/v1/blueprints/pipeline/entities/{id}")).await;
    assert_eq!(shown.body["entity"]["properties"]["status"], pipeline["status"], "{}", shown.body);
    assert_eq!(shown.body["entity"]["relations"]["project"], "ledger");
    let mr = app.get("/api/v1/blueprints/mergeRequest/entities/4301-12").await;
    assert_eq!(mr.body["entity"]["properties"]["author"], "ana", "{}", mr.body);

    gitlab.projects.lock().expect("lock").pop();
    let after = app.post("/api/v1/integrations/gitlab/sync", json!({})).await;
    assert_eq!(after.body["status"]["deleted"], 4, "{}", after.body);
    assert_eq!(app.get(&format!("/api/v1/blueprints/pipeline/entities/{id}")).await.status, StatusCode::NOT_FOUND);
}

// ---- PagerDuty ----

#[derive(Clone, Default)]
struct PagerDuty {
    services: Arc<AtomicUsize>,
}

impl PagerDuty {
    async fn start(&self) -> String {
        async fn list(
            State(pagerduty): State<PagerDuty>,
            Path(kind): Path<String>,
            Query(query): Query<HashMap<String, String>>,
            headers: HeaderMap,
        ) -> Response {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            if header("authorization") != "Token token=pd-key"
                || header("accept") != "application/vnd.pagerduty+json;version=2"
            {
                return (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"error": {"message": "Unauthorized", "code": 2006}})),
                )
                    .into_response();
            }
            let number = |name: &str, default: usize| query.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
            let (offset, limit) = (number("offset", 0), number("limit", 25));
            let all: Vec<Value> = match kind.as_str() {
                "services" => (0..pagerduty.services.load(Ordering::SeqCst))
                    .map(|i| {
                        let mut service = fixture("pagerduty/service.json");
                        service["id"] = json!(format!("PSVC{i:03}"));
                        service["name"] = json!(format!("service-{i}"));
                        service
                    })
                    .collect(),
                "incidents" => vec![fixture("pagerduty/incident.json")],
                "oncalls" => vec![fixture("pagerduty/oncall.json")],
                _ => return StatusCode::NOT_FOUND.into_response(),
            };
            let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
            let more = offset + page.len() < all.len();
            tagged(
                &headers,
                json!({kind.clone(): page, "limit": limit, "offset": offset, "total": null, "more": more}),
                None,
            )
        }
        serve(axum::Router::new().route("/{kind}", axum::routing::get(list)).with_state(self.clone())).await
    }
}

#[tokio::test]
async fn pagerduty_services_incidents_and_on_calls_are_pulled_page_by_offset() {
    let app = spawn_app().await;
    blueprints(
        &app,
        &[
            ("pagerdutyService", &["status", "url"], &[]),
            ("pagerdutyIncident", &["status", "urgency"], &[("service", "pagerdutyService", false)]),
            ("onCall", &["user", "start"], &[]),
        ],
    )
    .await;
    let pagerduty = PagerDuty::default();
    pagerduty.services.store(150, Ordering::SeqCst);
    let base = pagerduty.start().await;
    app.post("/api/v1/secrets", json!({"name": "pd", "value": "pd-key"})).await;
    let created = app
        .post(
            "/api/v1/integrations",
            json!({"identifier": "pagerduty", "type": "pagerduty", "vendor": {"baseUrl": base, "tokenSecret": "pd"},
            "mapping": {"resources": [
                {"kind": "services", "port": {"entity": {"mappings": {
                    "identifier": ".id", "title": ".name", "blueprint": "\"pagerdutyService\"",
                    "properties": {"status": ".status", "url": ".html_url"}}}}},
                {"kind": "incidents", "port": {"entity": {"mappings": {
                    "identifier": ".id", "title": ".title", "blueprint": "\"pagerdutyIncident\"",
                    "properties": {"status": ".status", "urgency": ".urgency"},
                    "relations": {"service": ".service.id"}}}}},
                {"kind": "oncalls", "port": {"entity": {"mappings": {
                    "identifier": ".escalation_policy.id + \"-\" + (.escalation_level | tostring)",
                    "title": ".user.summary", "blueprint": "\"onCall\"",
                    "properties": {"user": ".user.summary", "start": ".start"}}}}}
            ]}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let first = app.post("/api/v1/integrations/pagerduty/sync", json!({})).await;
    let status = &first.body["status"];
    // A new integration is due at once, so the sweeper's pull may come first; this one then waits
    // its turn and finds every item in place.
    let applied = status["created"].as_i64().unwrap_or(0) + status["unchanged"].as_i64().unwrap_or(0);
    assert_eq!((&status["state"], &status["fetched"], applied), (&json!("ok"), &json!(152), 152), "{status}");
    let incident = fixture("pagerduty/incident.json");
    let shown = app
        .get(&format!("/api/v1/blueprints/pagerdutyIncident/entities/{}", incident["id"].as_str().unwrap_or("?")))
        .await;
    assert_eq!(shown.body["entity"]["properties"]["urgency"], incident["urgency"], "{}", shown.body);
    assert_eq!(shown.body["entity"]["relations"]["service"], "PSVC001");
    assert_eq!(
        app.get("/api/v1/blueprints/pagerdutyService/entities/PSVC149").await.status,
        StatusCode::OK,
        "the second page"
    );
}

// ---- GitLab and PagerDuty webhooks ----

#[tokio::test]
async fn gitlab_and_pagerduty_webhook_payloads_map_to_entities() {
    let app = spawn_app().await;
    blueprints(
        &app,
        &[
            ("mergeRequest", &["status", "author"], &[]),
            ("pipeline", &["status", "ref"], &[]),
            ("pagerdutyIncident", &["status", "urgency"], &[]),
        ],
    )
    .await;
    app.post("/api/v1/secrets", json!({"name": "hook", "value": HOOK_SECRET})).await;
    let gitlab = webhook(
        &app,
        json!({"identifier": "gitlab-hooks", "type": "webhook",
        "security": {"secret": "hook", "signatureAlgorithm": "plain"},
        "mapping": {"resources": [
            {"kind": "merge_request", "selector": {"query": ".body.object_kind == \"merge_request\""},
             "port": {"entity": {"mappings": {
                "identifier": "(.body.project.id | tostring) + \"-\" + (.body.object_attributes.iid | tostring)",
                "title": ".body.object_attributes.title", "blueprint": "\"mergeRequest\"",
                "properties": {"status": ".body.object_attributes.state", "author": ".body.user.username"}}}}},
            {"kind": "pipeline", "selector": {"query": ".headers.\"x-gitlab-event\" == \"Pipeline Hook\""},
             "port": {"entity": {"mappings": {
                "identifier": ".body.object_attributes.id | tostring", "blueprint": "\"pipeline\"",
                "properties": {"status": ".body.object_attributes.status", "ref": ".body.object_attributes.ref"}}}}}
        ]}}),
    )
    .await;
    let merge_request = fixture("gitlab/merge_request_hook.json");
    let pipeline = fixture("gitlab/pipeline_hook.json");
    let token = ("x-gitlab-token", HOOK_SECRET.to_string());
    let mr_headers = [("x-gitlab-event", "Merge Request Hook".to_string()), token.clone()];
    assert_eq!(post_hook(&gitlab, &mr_headers, &merge_request).await, StatusCode::ACCEPTED);
    let pipeline_headers = [("x-gitlab-event", "Pipeline Hook".to_string()), token];
    assert_eq!(post_hook(&gitlab, &pipeline_headers, &pipeline).await, StatusCode::ACCEPTED);
    let wrong = [("x-gitlab-event", "Pipeline Hook".to_string()), ("x-gitlab-token", "guess".to_string())];
    assert_eq!(post_hook(&gitlab, &wrong, &pipeline).await, StatusCode::UNAUTHORIZED);

    let pagerduty = webhook(
        &app,
        json!({"identifier": "pagerduty-hooks", "type": "webhook",
        "security": {"secret": "hook", "signatureHeaderName": "X-PagerDuty-Signature", "signaturePrefix": "v1=",
                     "requestIdentifierPath": ".body.event.id"},
        "mapping": {"resources": [
            {"kind": "incident", "selector": {"query": ".body.event.resource_type == \"incident\""},
             "port": {"entity": {"mappings": {
                "identifier": ".body.event.data.id", "title": ".body.event.data.title", "blueprint": "\"pagerdutyIncident\"",
                "properties": {"status": ".body.event.data.status", "urgency": ".body.event.data.urgency"}}}}}
        ]}}),
    )
    .await;
    let incident = fixture("pagerduty/incident_triggered.json");
    let signature = format!("v1={}", hmac_hex(&serde_json::to_vec(&incident).expect("json")));
    assert_eq!(post_hook(&pagerduty, &[("x-pagerduty-signature", signature)], &incident).await, StatusCode::ACCEPTED);
    app.drain_jobs().await;

    let attributes = &merge_request["object_attributes"];
    let id = format!("{}-{}", merge_request["project"]["id"], attributes["iid"]);
    let shown = app.get(&format!("/api/v1/blueprints/mergeRequest/entities/{id}")).await;
    assert_eq!(shown.body["entity"]["title"], attributes["title"], "{}", shown.body);
    assert_eq!(shown.body["entity"]["properties"]["author"], merge_request["user"]["username"]);
    let shown = app.get(&format!("/api/v1/blueprints/pipeline/entities/{}", pipeline["object_attributes"]["id"])).await;
    assert_eq!(shown.body["entity"]["properties"]["status"], pipeline["object_attributes"]["status"], "{}", shown.body);
    let data = &incident["event"]["data"];
    let shown =
        app.get(&format!("/api/v1/blueprints/pagerdutyIncident/entities/{}", data["id"].as_str().unwrap_or("?"))).await;
    assert_eq!(shown.body["entity"]["title"], data["title"], "{}", shown.body);
    assert_eq!(shown.body["entity"]["properties"]["urgency"], data["urgency"]);
}

// ---- the GITHUB action backend ----

/// A local GitHub with the app installed, a `github` integration that gives actions its
/// credentials, and a `deploy` action in Port's shape.
async fn github_action(report: bool) -> (TestApp, GitHub) {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    assert_eq!(
        app.post("/api/v1/blueprints/service/entities", crate::service("cart")).await.status,
        StatusCode::CREATED
    );
    let (private_key, public_key) = rsa_key_pair();
    let github = GitHub { public_key: Arc::new(public_key), ..GitHub::default() };
    *github.repositories.lock().expect("lock") = vec!["cart".into()];
    *github.conclusion.lock().expect("lock") = "success".into();
    let base = github.start().await;
    app.post("/api/v1/secrets", json!({"name": "github-app-key", "value": private_key})).await;
    let integration = json!({"identifier": "github", "type": "github",
        "vendor": {"baseUrl": base, "organization": "acme",
                   "app": {"appId": APP_ID, "installationId": 7, "privateKeySecret": "github-app-key"}},
        "mapping": {"resources": [{"kind": "repository", "port": {"entity": {"mappings": {
            "identifier": ".name", "blueprint": "\"service\""}}}}]}});
    assert_eq!(app.post("/api/v1/integrations", integration).await.status, StatusCode::CREATED);
    let action = json!({"identifier": "deploy", "title": "Deploy",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
                    "userInputs": {"properties": {"version": {"type": "string"}}}},
        "invocationMethod": {"type": "GITHUB", "org": "acme", "repo": "cart", "workflow": "deploy.yml",
            "workflowInputs": {"service": "{{ .entity.identifier }}", "version": "{{ .inputs.version }}",
                               "replicas": 3, "port_context": {"runId": "{{ .run.id }}"}},
            "reportWorkflowStatus": report}});
    let created = app.post("/v1/actions", action).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (app, github)
}

async fn deploy(app: &TestApp) -> Value {
    let started =
        app.post("/api/v1/actions/deploy/runs", json!({"entity": "cart", "properties": {"version": "1.2.3"}})).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let id = started.body["run"]["id"].as_str().expect("run id").to_string();
    crate::run_until(app, &id, std::time::Duration::from_secs(20), crate::ended).await
}

#[tokio::test]
async fn a_github_action_dispatches_its_workflow_and_ends_with_the_workflow_runs_conclusion() {
    let (app, github) = github_action(true).await;
    github.run_details.store(true, Ordering::SeqCst);
    github.running_looks.store(2, Ordering::SeqCst);
    github.limit_dispatch.store(true, Ordering::SeqCst);
    let done = deploy(&app).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");
    let run_id = done["run"]["id"].as_str().unwrap_or_default();
    let dispatches = github.dispatches.lock().expect("lock").clone();
    assert_eq!(dispatches.len(), 1, "the 429 was waited out and the dispatch made once");
    assert_eq!(dispatches[0]["ref"], "master", "the repository's default branch");
    assert_eq!(
        dispatches[0]["inputs"],
        json!({"service": "cart", "version": "1.2.3", "replicas": "3",
               "port_context": json!({"runId": run_id}).to_string()}),
        "inputs are text"
    );
    let html = "https://github.com/acme/cart/actions/runs/30433642";
    assert!(done["run"]["links"].as_array().is_some_and(|l| l.contains(&json!(html))), "{done}");
    assert_eq!(github.tokens_issued.load(Ordering::SeqCst), 1, "the installation token is kept between calls");

    // The workflow run fails: so does the run, saying so.
    *github.conclusion.lock().expect("lock") = "failure".into();
    let done = deploy(&app).await;
    assert_eq!(done["run"]["status"], "FAILURE", "{done}");
    assert!(done["run"]["reason"].as_str().unwrap_or_default().contains("failure"), "{done}");
}

#[tokio::test]
async fn without_run_details_the_dispatched_run_is_found_by_listing_even_when_it_appears_late() {
    let (app, github) = github_action(true).await;
    github.hidden_looks.store(3, Ordering::SeqCst);
    let done = deploy(&app).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");
    let html = "https://github.com/acme/cart/actions/runs/30433642";
    assert!(done["run"]["links"].as_array().is_some_and(|l| l.contains(&json!(html))), "{done}");
    let logs = app.get(&format!("/api/v1/actions/runs/{}/logs", done["run"]["id"].as_str().unwrap_or("?"))).await;
    assert!(logs.body.to_string().contains("waiting for GitHub to start the workflow run"), "{}", logs.body);
}

#[tokio::test]
async fn a_github_action_that_reports_itself_is_linked_and_left_in_progress() {
    let (app, github) = github_action(false).await;
    github.run_details.store(true, Ordering::SeqCst);
    let started =
        app.post("/api/v1/actions/deploy/runs", json!({"entity": "cart", "properties": {"version": "2"}})).await;
    let id = started.body["run"]["id"].as_str().expect("run id").to_string();
    let linked = crate::run_until(&app, &id, std::time::Duration::from_secs(10), |r| {
        r["links"].as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    assert_eq!(linked["run"]["status"], "IN_PROGRESS", "the workflow reports on the run itself: {linked}");
}

#[tokio::test]
async fn a_github_action_fails_with_githubs_reason_and_refuses_what_github_would() {
    let (app, github) = github_action(true).await;
    // A workflow GitHub does not know.
    let mut action = app.get("/api/v1/actions/deploy").await.body["action"].clone();
    action["invocationMethod"]["workflow"] = json!("missing.yml");
    for key in ["createdAt", "createdBy", "updatedAt", "updatedBy"] {
        action.as_object_mut().map(|a| a.remove(key));
    }
    assert_eq!(app.put("/api/v1/actions/deploy", action.clone()).await.status, StatusCode::OK);
    let done = deploy(&app).await;
    assert_eq!(done["run"]["status"], "FAILURE");
    assert!(done["run"]["reason"].as_str().unwrap_or_default().contains("404: Not Found"), "{done}");
    assert!(github.dispatches.lock().expect("lock").is_empty());

    // An organization no integration reads.
    action["invocationMethod"]["org"] = json!("elsewhere");
    assert_eq!(app.put("/api/v1/actions/deploy", action.clone()).await.status, StatusCode::OK);
    let done = deploy(&app).await;
    assert!(done["run"]["reason"].as_str().unwrap_or_default().contains("no GitHub integration"), "{done}");

    // More inputs than GitHub takes are refused when the action is saved.
    let inputs: serde_json::Map<String, Value> = (0..26).map(|i| (format!("in{i}"), json!("x"))).collect();
    action["invocationMethod"]["workflowInputs"] = Value::Object(inputs);
    let refused = app.put("/api/v1/actions/deploy", action).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.detail_paths(), ["/invocationMethod/workflowInputs"]);
}

// ---- the GITLAB action backend ----

/// A local GitLab, the `gitlab` integration reading the group, and a `build` action in Port's shape
/// with a pipeline trigger token.
async fn gitlab_action() -> (TestApp, GitLab) {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    assert_eq!(
        app.post("/api/v1/blueprints/service/entities", crate::service("cart")).await.status,
        StatusCode::CREATED
    );
    let gitlab = GitLab::default();
    *gitlab.pipeline_status.lock().expect("lock") = "success".into();
    let base = gitlab.start().await;
    app.post("/api/v1/secrets", json!({"name": "gitlab-token", "value": "glpat-local"})).await;
    app.post("/api/v1/secrets", json!({"name": "cart-trigger", "value": "glptt-trigger"})).await;
    let integration = json!({"identifier": "gitlab", "type": "gitlab",
        "vendor": {"baseUrl": format!("{base}/api/v4"), "organization": "acme/platform", "tokenSecret": "gitlab-token"},
        "mapping": {"resources": [{"kind": "project", "port": {"entity": {"mappings": {
            "identifier": ".path", "blueprint": "\"service\""}}}}]}});
    assert_eq!(app.post("/api/v1/integrations", integration).await.status, StatusCode::CREATED);
    let action = json!({"identifier": "build", "title": "Build",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
                    "userInputs": {"properties": {}}},
        "invocationMethod": {"type": "GITLAB", "groupName": "acme/platform", "projectName": "cart", "agent": true,
            "defaultRef": "main", "triggerTokenSecret": "cart-trigger",
            "pipelineVariables": {"SERVICE": "{{ .entity.identifier }}", "REPLICAS": 3, "RUN_ID": "{{ .run.id }}"}}});
    let created = app.post("/v1/actions", action).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (app, gitlab)
}

async fn build(app: &TestApp, within: u64) -> Value {
    let started = app.post("/api/v1/actions/build/runs", json!({"entity": "cart"})).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let id = started.body["run"]["id"].as_str().expect("run id").to_string();
    crate::run_until(app, &id, std::time::Duration::from_secs(within), crate::ended).await
}

#[tokio::test]
async fn a_gitlab_action_triggers_its_pipeline_and_ends_with_the_pipelines_status() {
    let (app, gitlab) = gitlab_action().await;
    gitlab.running_looks.store(2, Ordering::SeqCst);
    gitlab.failing_triggers.store(1, Ordering::SeqCst);
    let done = build(&app, 20).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");
    let triggers = gitlab.triggers.lock().expect("lock").clone();
    assert_eq!(triggers.len(), 1, "the 500 was tried again");
    let run_id = done["run"]["id"].as_str().unwrap_or_default();
    let sent: HashMap<String, String> = [
        ("token", "glptt-trigger"),
        ("ref", "main"),
        ("variables[SERVICE]", "cart"),
        ("variables[REPLICAS]", "3"),
        ("variables[RUN_ID]", run_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(triggers[0], sent);
    let link = "https://gitlab.example.com/acme/platform/cart/-/pipelines/800001";
    assert!(done["run"]["links"].as_array().is_some_and(|l| l.contains(&json!(link))), "{done}");
    let everything = format!("{done}{}", app.get(&format!("/api/v1/actions/runs/{run_id}/logs")).await.body);
    assert!(!everything.contains("glptt-trigger"), "the trigger token is not shown: {everything}");

    *gitlab.pipeline_status.lock().expect("lock") = "failed".into();
    let done = build(&app, 20).await;
    assert_eq!(done["run"]["status"], "FAILURE", "{done}");
    assert!(done["run"]["reason"].as_str().unwrap_or_default().contains("the pipeline ended: failed"), "{done}");
}

#[tokio::test]
async fn a_gitlab_that_keeps_failing_fails_the_run_with_its_answer() {
    let (app, gitlab) = gitlab_action().await;
    gitlab.failing_triggers.store(100, Ordering::SeqCst);
    let done = build(&app, 40).await;
    assert_eq!(done["run"]["status"], "FAILURE", "{done}");
    let reason = done["run"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("gave up after 5 attempts") && reason.contains("GitLab answered 500"), "{done}");
}
