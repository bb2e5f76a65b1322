//! Locations: a real git repository made by the test (commits, a deletion, a bad commit, a
//! force push), synced on request and by a signed push webhook; failures change nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use portolan_model::permission::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{TestApp, account_token, spawn_app};

fn git(repo: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn component(name: &str, owner: &str) -> String {
    format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: service\n  lifecycle: production\n  owner: {owner}\n"
    )
}

fn write(repo: &Path, file: &str, text: &str) {
    let path = repo.join(file);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn commit(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

async fn sync(app: &TestApp, id: &str) -> Value {
    let reply = app.post(&format!("/api/v1/locations/{id}/sync"), json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["status"].clone()
}

async fn names(app: &TestApp) -> Vec<String> {
    let reply = app.get("/api/v1/blueprints/backstage-component/entities").await;
    let mut names: Vec<String> = reply.body["entities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["identifier"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_git_repository_stays_in_step_with_the_catalog() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("dir");
    let repo = dir.path().join("catalog");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    write(
        &repo,
        "groups/catalog-info.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: team-a\nspec:\n  type: team\n  children: []\n",
    );
    for name in ["cart", "pay", "ship", "search"] {
        write(&repo, &format!("services/{name}/catalog-info.yaml"), &component(name, "team-a"));
    }
    write(&repo, "README.md", "not a manifest");
    let first = commit(&repo, "four services");

    let created = app
        .post("/api/v1/locations", json!({"type": "git", "target": repo.display().to_string(), "branch": "main"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["location"]["id"].as_str().expect("id").to_string();
    let status = sync(&app, &id).await;
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["commit"], first);
    // The scheduler may have synced the new location first: then this sync finds it all in place.
    let created = status["created"].as_u64().unwrap_or(0);
    assert_eq!(created + status["unchanged"].as_u64().unwrap_or(0), 5, "{status}");
    assert_eq!(names(&app).await, ["cart", "pay", "search", "ship"]);
    let cart = app.get("/api/v1/blueprints/backstage-component/entities/cart").await;
    assert_eq!(cart.body["entity"]["updatedBy"], format!("location:{id}@{}", &first[..12]), "the location and commit");
    assert_eq!(cart.body["source"]["file"], "services/cart/catalog-info.yaml");
    assert_eq!(cart.body["source"]["source"], format!("location:{id}"));

    // Direct edits are refused with the file to change.
    let edit = app
        .patch(
            "/api/v1/blueprints/backstage-component/entities/cart",
            json!({"properties": {"lifecycle": "deprecated"}}),
        )
        .await;
    assert_eq!(edit.status, StatusCode::CONFLICT, "{}", edit.body);
    assert_eq!(edit.error_code(), "managed_by_source");
    assert!(
        edit.body["message"].as_str().is_some_and(|m| m.contains("services/cart/catalog-info.yaml")),
        "{}",
        edit.body
    );

    // An unchanged repository changes nothing.
    let again = sync(&app, &id).await;
    assert_eq!(
        (again["unchanged"].as_u64(), again["created"].as_u64(), again["updated"].as_u64()),
        (Some(5), Some(0), Some(0))
    );

    // A change and a deletion.
    write(&repo, "services/cart/catalog-info.yaml", &component("cart", "team-a").replace("production", "deprecated"));
    std::fs::remove_file(repo.join("services/ship/catalog-info.yaml")).expect("rm");
    let second = commit(&repo, "cart deprecated, ship gone");
    let status = sync(&app, &id).await;
    assert_eq!((status["updated"].as_u64(), status["deleted"].as_u64()), (Some(1), Some(1)), "{status}");
    assert_eq!(status["commit"], second);
    assert_eq!(names(&app).await, ["cart", "pay", "search"]);

    // A commit that does not parse changes nothing, and says where.
    write(&repo, "services/pay/catalog-info.yaml", "kind: [unclosed\n");
    std::fs::remove_file(repo.join("services/search/catalog-info.yaml")).expect("rm");
    commit(&repo, "broken");
    let status = sync(&app, &id).await;
    assert_eq!(status["state"], "failed", "{status}");
    assert!(status["error"].as_str().is_some_and(|e| e.contains("services/pay/catalog-info.yaml:")), "{status}");
    assert_eq!(status["commit"], second, "the last good commit stays");
    assert_eq!(names(&app).await, ["cart", "pay", "search"], "nothing deleted");

    // A force push that rewrites history: the new head is what counts.
    git(&repo, &["reset", "-q", "--hard", &first]);
    write(&repo, "services/cart/catalog-info.yaml", &component("cart", "team-a").replace("service", "website"));
    let rewritten = commit(&repo, "rewritten");
    let status = sync(&app, &id).await;
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["commit"], rewritten);
    assert_eq!(names(&app).await, ["cart", "pay", "search", "ship"]);

    // Deleting nearly everything is over the threshold: refused, nothing deleted.
    for name in ["pay", "ship", "search", "cart"] {
        std::fs::remove_file(repo.join(format!("services/{name}/catalog-info.yaml"))).expect("rm");
    }
    std::fs::remove_file(repo.join("groups/catalog-info.yaml")).expect("rm");
    commit(&repo, "everything gone");
    let status = sync(&app, &id).await;
    assert_eq!(status["state"], "failed", "{status}");
    assert!(status["error"].as_str().is_some_and(|e| e.contains("would delete 5 of the 5")), "{status}");
    assert_eq!(names(&app).await.len(), 4);

    let listed = app.get("/api/v1/locations").await;
    assert_eq!(listed.body["locations"][0]["status"]["state"], "failed");
    let page =
        app.client.get(format!("{}/locations", app.base)).header("accept", "text/html").send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);

    // Removing the location removes what it brought.
    assert_eq!(app.delete(&format!("/api/v1/locations/{id}")).await.status, StatusCode::NO_CONTENT);
    assert!(names(&app).await.is_empty());
}

#[tokio::test]
async fn a_signed_push_starts_a_sync_and_a_bad_one_is_refused() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("dir");
    let repo = dir.path().to_path_buf();
    git(&repo, &["init", "-q", "-b", "main"]);
    write(&repo, "catalog-info.yaml", &component("cart", "team-a"));
    commit(&repo, "one");
    assert_eq!(
        app.post("/api/v1/secrets", json!({"name": "HOOK", "value": "s3cret"})).await.status,
        StatusCode::CREATED
    );
    let created = app
        .post("/api/v1/locations", json!({"type": "git", "target": repo.display().to_string(), "webhookSecret": "HOOK", "intervalSeconds": 3600}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["location"]["id"].as_str().expect("id").to_string();

    let body = br#"{"ref":"refs/heads/main"}"#;
    let url = format!("{}/api/v1/locations/{id}/webhook", app.base);
    let bad = reqwest::Client::new()
        .post(&url)
        .header("x-hub-signature-256", "sha256=00")
        .body(body.to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"s3cret").expect("key");
    mac.update(body);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let good = reqwest::Client::new()
        .post(&url)
        .header("x-hub-signature-256", format!("sha256={signature}"))
        .body(body.to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(good.status(), StatusCode::ACCEPTED);
    let gitlab =
        reqwest::Client::new().post(&url).header("x-gitlab-token", "s3cret").body("{}").send().await.expect("sent");
    assert_eq!(gitlab.status(), StatusCode::ACCEPTED);

    let started = Instant::now();
    loop {
        let location = app.get(&format!("/api/v1/locations/{id}")).await;
        if location.body["location"]["status"]["state"] == "ok" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no sync after the push: {}", location.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names(&app).await, ["cart"]);
}

#[tokio::test]
async fn a_repository_that_cannot_be_reached_is_a_status_not_a_failure_of_the_server() {
    let app = spawn_app().await;
    let created = app
        .post("/api/v1/locations", json!({"type": "git", "target": "/nonexistent/repository", "branch": "main"}))
        .await;
    let id = created.body["location"]["id"].as_str().expect("id").to_string();
    let status = sync(&app, &id).await;
    assert_eq!(status["state"], "failed");
    assert!(status["error"].as_str().is_some_and(|e| e.contains("cannot fetch")), "{status}");
    let refused = app.post("/api/v1/locations", json!({"type": "git", "target": "--upload-pack=touch /tmp/x"})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let member = account_token(&app.state, "mo", Role::Member, &[]).await;
    let forbidden = app.call_as(Method::GET, "/api/v1/locations", &member, None).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
}
