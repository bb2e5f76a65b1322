//! Port's integration framework, Ocean (PyPI `port-ocean`, pinned with its dependencies in
//! `tests/ocean-integration/requirements.txt`), unchanged, syncing a small integration written
//! for this test (`tests/ocean-integration`: squads and services read from a JSON file, mapped by
//! its `port-app-config.yml`) into Portolan as its Port.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::TestApp;

/// The integration's identifier in Port's API (its `installationId`).
const INSTALLATION: &str = "shipyard-test";

/// A Python of at least 3.12 (Ocean's floor): `PORTOLAN_TEST_PYTHON`, else one on `PATH`, else
/// one pyenv installed.
fn python_312() -> PathBuf {
    if let Ok(python) = std::env::var("PORTOLAN_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let recent = |python: &Path| {
        Command::new(python)
            .args(["-c", "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    let on_path = ["python3.12", "python3.13", "python3"].into_iter().map(PathBuf::from);
    let pyenv = std::env::var("HOME").map(|home| PathBuf::from(home).join(".pyenv/versions")).ok();
    let mut installed: Vec<PathBuf> = pyenv
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin/python")))
        .collect();
    installed.sort();
    installed.reverse();
    on_path
        .chain(installed)
        .find(|python| recent(python))
        .expect("Ocean needs Python 3.12 or later: install one, or point PORTOLAN_TEST_PYTHON at it")
}

/// The test integration's directory, with Ocean installed in its `.venv` (once, from PyPI).
fn ocean_harness() -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ocean-integration");
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let venv = dir.join(".venv");
    if !venv.join("installed").exists() {
        let made = Command::new(python_312()).args(["-m", "venv", "--clear"]).arg(&venv).status();
        assert!(made.is_ok_and(|s| s.success()), "cannot make a virtual environment in {}", venv.display());
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"])
            .current_dir(&dir)
            .status();
        assert!(pip.is_ok_and(|s| s.success()), "pip could not install Ocean from requirements.txt");
        std::fs::write(venv.join("installed"), "").expect("mark the environment installed");
    }
    dir
}

/// Client credentials of a new admin account, as an Ocean deployment is given.
async fn admin_credentials(app: &TestApp) -> (String, String) {
    let user = json!({"identifier": "ocean-bot", "service": true, "role": "admin"});
    let made = app.post("/api/v1/users", user).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let credentials = app.call(Method::POST, "/api/v1/users/ocean-bot/credentials", None).await;
    assert_eq!(credentials.status, StatusCode::CREATED, "{}", credentials.body);
    let field = |name: &str| credentials.body["credentials"][name].as_str().expect("credentials").to_string();
    (field("clientId"), field("clientSecret"))
}

/// Runs one sync of the integration (Ocean's `ONCE` listener) over `source`; its output, for
/// failure messages.
async fn sail(app: &TestApp, (client_id, secret): &(String, String), source: &Value) -> String {
    let dir = ocean_harness();
    let data = tempfile::NamedTempFile::new().expect("a source file");
    std::fs::write(data.path(), source.to_string()).expect("write the source");
    let http_port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut command = tokio::process::Command::new(dir.join(".venv/bin/python"));
    command
        .args(["-c", &format!("from port_ocean.run import run; run('.', port={http_port})")])
        .current_dir(&dir)
        .env("OCEAN__PORT__BASE_URL", &app.base)
        .env("OCEAN__PORT__CLIENT_ID", client_id)
        .env("OCEAN__PORT__CLIENT_SECRET", secret)
        .env("OCEAN__INTEGRATION__IDENTIFIER", INSTALLATION)
        .env("OCEAN__INTEGRATION__TYPE", "shipyard")
        .env("OCEAN__EVENT_LISTENER__TYPE", "ONCE")
        .env("OCEAN__INITIALIZE_PORT_RESOURCES", "true")
        .env("OCEAN__INTEGRATION__CONFIG__DATA_FILE", data.path())
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("Ocean's sync ends within two minutes")
        .expect("Ocean runs");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "Ocean failed:\n{log}");
    log
}

/// The identifiers of a blueprint's entities, sorted, and the entities by identifier.
async fn entities(app: &TestApp, blueprint: &str) -> std::collections::BTreeMap<String, Value> {
    let listed = app.get(&format!("/api/v1/blueprints/{blueprint}/entities")).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let all = listed.body["entities"].as_array().cloned().unwrap_or_default();
    all.into_iter().map(|e| (e["identifier"].as_str().unwrap_or_default().to_string(), e)).collect()
}

fn service(slug: &str, lang: &str, stars: f64, owner: &str) -> Value {
    json!({"slug": slug, "name": slug.to_uppercase(), "lang": lang, "stars": stars, "owner": owner})
}

#[tokio::test]
async fn an_ocean_integration_syncs_into_portolan_unchanged() {
    let app = TestApp::builder().start().await;
    let credentials = admin_credentials(&app).await;
    let squads = json!([
        {"id": "payments", "name": "Payments", "slack": "https://example.slack.com/archives/C1"},
        {"id": "search", "name": "Search", "slack": null}
    ]);
    let mut archived = service("old-cart", "go", 0.0, "payments");
    archived["archived"] = json!(true);
    let first = json!({"squad": squads, "service": [
        service("ledger", "rust", 5.0, "payments"),
        service("checkout", "go", 12.5, "payments"),
        service("indexer", "python", 3.0, "discovery"),
        archived,
    ]});
    let log = sail(&app, &credentials, &first).await;

    // The integration's blueprints, as its .port/resources declare them (Port's display fields kept).
    let blueprint = app.get("/api/v1/blueprints/shipyardService").await;
    assert_eq!(blueprint.status, StatusCode::OK, "Ocean did not create its blueprint:\n{log}");
    assert_eq!(blueprint.body["blueprint"]["relations"]["squad"]["target"], "shipyardSquad");
    assert_eq!(blueprint.body["blueprint"]["schema"]["properties"]["language"]["enumColors"]["rust"], "orange");

    // Entities as the mapping makes them; the archived one filtered out by its selector.
    let services = entities(&app, "shipyardService").await;
    assert_eq!(services.keys().collect::<Vec<_>>(), ["checkout", "indexer", "ledger"], "{log}");
    let ledger = &services["ledger"];
    assert_eq!(ledger["title"], "LEDGER");
    assert_eq!(ledger["properties"], json!({"language": "rust", "stars": 5, "archived": false}));
    assert_eq!(ledger["relations"]["squad"], "payments");
    assert_eq!(services["checkout"]["properties"]["stars"], 12.5);
    // A relation to a squad that the source lacks made the squad (createMissingRelatedEntities).
    let squads = entities(&app, "shipyardSquad").await;
    assert_eq!(squads.keys().collect::<Vec<_>>(), ["discovery", "payments", "search"]);
    assert_eq!(squads["payments"]["properties"]["slack"], "https://example.slack.com/archives/C1");

    // The integration's own record: its type, version, mapping and the state of the sync.
    let record = app.get(&format!("/v1/integration/{INSTALLATION}")).await;
    assert_eq!(record.status, StatusCode::OK, "{}", record.body);
    let integration = &record.body["integration"];
    assert_eq!(integration["installationAppType"], "shipyard");
    assert_eq!(integration["version"], "0.3.0");
    assert_eq!(integration["config"]["entityDeletionThreshold"], 0.6);
    assert_eq!(integration["config"]["resources"][1]["selector"]["query"], ".archived != true");
    assert_eq!(integration["resyncState"]["status"], "completed", "{integration}");
    let mut tx = app.state.core.store().read().await.expect("read");
    let installation = tx.installation(INSTALLATION).await.expect("read").expect("the installation");
    drop(tx);
    assert!(installation.examples.contains_key("service"), "Ocean sends examples of each kind");
    assert!(!installation.logs.is_empty(), "Ocean ships its log lines to logAttributes.ingestUrl");
    assert!(!log.contains("'logAttributes'") && !log.contains("'metricAttributes'"), "{log}");

    // Its page: each kind's last sync, the mapping and the log lines it shipped.
    let person = json!({"identifier": "platform@example.com", "role": "admin", "password": crate::web::PASSWORD});
    assert_eq!(app.post("/api/v1/users", person).await.status, StatusCode::CREATED);
    let session = crate::web::sign_in(&app, "platform@example.com").await;
    let (status, listed) = crate::web::page(&app, "/integrations", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed.contains("href=\"/integrations/ocean/shipyard-test\""), "{listed}");
    let (status, html) = crate::web::page(&app, "/integrations/ocean/shipyard-test", &session).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<td><code>service</code></td><td>completed</td><td>4</td><td>1</td><td>3</td>"), "{html}");
    assert!(html.contains("entityDeletionThreshold: 0.6"), "{html}");
    assert!(html.contains("Resync"), "log lines are shown: {html}");

    // Second sync: checkout left the source and ledger changed; one of three services going is
    // under the 0.6 deletion threshold, so it is deleted. Unchanged entities keep their version.
    let second = json!({"squad": first["squad"], "service": [
        service("ledger", "rust", 6.0, "payments"),
        service("indexer", "python", 3.0, "discovery"),
    ]});
    let log = sail(&app, &credentials, &second).await;
    let services = entities(&app, "shipyardService").await;
    assert_eq!(services.keys().collect::<Vec<_>>(), ["indexer", "ledger"], "{log}");
    assert_eq!(services["ledger"]["properties"]["stars"], 6);
    assert_eq!(services["ledger"]["version"], 2);
    assert_eq!(services["indexer"]["version"], 1, "an unchanged upsert writes nothing");

    // Third sync: the source answers empty. Deleting everything passes the threshold: Ocean
    // deletes nothing.
    let log = sail(&app, &credentials, &json!({"squad": [], "service": []})).await;
    assert!(log.contains("Skipping deletion"), "{log}");
    assert_eq!(entities(&app, "shipyardService").await.len(), 2);
    assert_eq!(entities(&app, "shipyardSquad").await.len(), 3);
}
