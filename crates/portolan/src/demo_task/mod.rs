//! `portolan demo-task NAME`: the work behind the gallery's actions in `--demo`, as a platform
//! team would write it for its runner. Each task reads the run's payload on stdin, does its work
//! in the current directory (the demo workspace) against local stand-ins that really do it — git
//! repositories (`repos/`), a file-based cloud (`cloud/`), a SQLite warehouse (`warehouse.db`), a
//! feature-flag store (`flags.json`), a secrets store (`vault/`), a customer registry
//! (`customers/`) — prints what it does (the runner streams it into the run's log), and records
//! the result in the catalog through the API, naming the run so the changed entities are linked
//! to it. A real deployment points the same actions at its own automation instead.

mod backoffice;
mod cloud;
mod data;
mod environments;
mod ml;
mod operations;
mod sdlc;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use portolan_model::ident::url_segment;
use serde_json::{Value, json};

struct Api {
    client: reqwest::Client,
    base: String,
    run_id: String,
    run_token: String,
}

impl Api {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set (run me from a runner)"));
        portolan_server::outbound::install_crypto();
        Ok(Self {
            client: reqwest::Client::new(),
            base: var("PORTOLAN_URL")?.trim_end_matches('/').to_string(),
            run_id: var("PORTOLAN_RUN_ID")?,
            run_token: var("PORTOLAN_RUN_TOKEN")?,
        })
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{separator}run_id={}", self.base, self.run_id);
        let mut request = self.client.request(method, url).bearer_auth(&self.run_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path} answered {status}: {}", body["message"].as_str().unwrap_or("no message"));
        }
        Ok(body)
    }

    async fn create(&self, blueprint: &str, entity: Value) -> anyhow::Result<()> {
        self.send(reqwest::Method::POST, &format!("/api/v1/blueprints/{blueprint}/entities"), Some(entity)).await?;
        Ok(())
    }

    /// Creates the entity, or merges these fields into the one that exists.
    async fn upsert(&self, blueprint: &str, entity: Value) -> anyhow::Result<()> {
        let path = format!("/api/v1/blueprints/{blueprint}/entities?upsert=true&merge=true");
        self.send(reqwest::Method::POST, &path, Some(entity)).await?;
        Ok(())
    }

    async fn update(&self, blueprint: &str, identifier: &str, properties: Value) -> anyhow::Result<()> {
        let path = format!("/api/v1/blueprints/{blueprint}/entities/{}", url_segment(identifier));
        self.send(reqwest::Method::PATCH, &path, Some(json!({"properties": properties}))).await?;
        Ok(())
    }

    /// Changes an entity's properties, then reports the change as the run's result, linked to it.
    async fn update_and_report(
        &self,
        blueprint: &str,
        identifier: &str,
        properties: Value,
        summary: &str,
    ) -> anyhow::Result<()> {
        self.update(blueprint, identifier, properties).await?;
        self.report(vec![self.entity_url(blueprint, identifier)], summary).await
    }

    /// Removes an entity; one already gone is not an error.
    async fn remove(&self, blueprint: &str, identifier: &str) -> anyhow::Result<()> {
        let path = format!("/api/v1/blueprints/{blueprint}/entities/{}", url_segment(identifier));
        match self.send(reqwest::Method::DELETE, &path, None).await {
            Ok(_) => println!("removed {blueprint} '{identifier}' from the catalog"),
            Err(err) if err.to_string().contains("404") => {
                println!("{blueprint} '{identifier}' was already out of the catalog")
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }

    fn entity_url(&self, blueprint: &str, identifier: &str) -> String {
        format!("{}/api/v1/blueprints/{blueprint}/entities/{}", self.base, url_segment(identifier))
    }

    /// Adds links and a summary to the run (the runner reports the result when the task exits).
    async fn report(&self, links: Vec<String>, summary: &str) -> anyhow::Result<()> {
        let url = format!("{}/api/v1/actions/runs/{}", self.base, self.run_id);
        let response = self
            .client
            .patch(url)
            .bearer_auth(&self.run_token)
            .json(&json!({"link": links, "summary": summary}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("reporting the run's links answered {}", response.status());
        }
        Ok(())
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn now_text() -> String {
    portolan_model::format_millis(now_millis())
}

fn text<'a>(value: &'a Value, pointer: &str) -> anyhow::Result<&'a str> {
    value.pointer(pointer).and_then(Value::as_str).with_context(|| format!("the payload has no {pointer}"))
}

fn number(value: &Value, pointer: &str) -> anyhow::Result<f64> {
    value.pointer(pointer).and_then(Value::as_f64).with_context(|| format!("the payload has no number at {pointer}"))
}

/// A name that is safe as one directory or file under the workspace.
fn directory_name<'a>(value: &'a Value, pointer: &str) -> anyhow::Result<&'a str> {
    let name = text(value, pointer)?;
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        bail!("'{name}' cannot name a directory");
    }
    Ok(name)
}

/// The run's entity (a day-2 or delete action's).
fn entity(payload: &Value) -> anyhow::Result<&str> {
    directory_name(payload, "/entity/identifier")
}

/// The blueprint of the run's action (so that a template installed under another name works).
fn blueprint<'a>(payload: &'a Value, otherwise: &'a str) -> &'a str {
    payload.pointer("/action/blueprint").and_then(Value::as_str).unwrap_or(otherwise)
}

/// The run's entity's list property with `item` added (once).
fn with_item(payload: &Value, property: &str, item: &str) -> Vec<Value> {
    let pointer = format!("/entity/properties/{property}");
    let mut items = payload.pointer(&pointer).and_then(Value::as_array).cloned().unwrap_or_default();
    if !items.contains(&json!(item)) {
        items.push(json!(item));
    }
    items
}

/// A stand-in's record of the run's entity; one it lacks (made outside it, as the demo's entities
/// are) is adopted as the catalog describes it.
fn record_or_adopt(path: &Path, payload: &Value) -> anyhow::Result<Value> {
    let record = read_json(path)?;
    if record.as_object().is_some_and(|o| !o.is_empty()) {
        return Ok(record);
    }
    println!("adopted {} into {}", payload.pointer("/entity/identifier").unwrap_or(&Value::Null), path.display());
    Ok(payload.pointer("/entity/properties").cloned().unwrap_or(json!({})))
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the file whole or not at all (a temporary file renamed over it): the runner runs tasks
/// side by side, and another may be reading the same file.
fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&temporary, serde_json::to_string_pretty(value)?)
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The tasks the demo's runner is configured with.
pub const TASKS: &[&str] = &[
    "scaffold",
    "deploy",
    "revert",
    "set-feature-flag",
    "add-secret",
    "force-merge",
    "add-environment-variable",
    "add-iac",
    "upgrade-package",
    "provision-environment",
    "teardown-environment",
    "load-mock-data",
    "invite-developer",
    "provision-cloud-resource",
    "modify-cloud-resource",
    "grant-cloud-access",
    "revoke-cloud-access",
    "update-pod-count",
    "update-autoscaling",
    "run-incident-runbook",
    "add-column",
    "drop-column",
    "rename-column",
    "run-dag",
    "duplicate-table",
    "create-customer",
    "delete-customer",
    "configure-customer",
    "update-customer-version",
    "change-plan",
    "train-model",
    "preprocess-dataset",
    "deploy-model",
    "route-model-traffic",
    "revert-model",
    "start-notebook",
    "stop-notebook",
    "fetch-logs",
    "health-checklist",
    "production-query",
    "billing-report",
];

/// Runs a task; the exit code is the run's result.
pub async fn run(task: &str) -> anyhow::Result<()> {
    use std::io::Read;
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("cannot read the payload")?;
    let payload: Value = serde_json::from_str(&input).context("the payload is not JSON")?;
    let api = Api::from_env()?;
    let p = &payload;
    match task {
        "scaffold" => sdlc::scaffold(&api, p).await,
        "deploy" => sdlc::deploy(&api, p, None).await,
        "revert" => sdlc::revert(&api, p).await,
        "set-feature-flag" => sdlc::set_feature_flag(&api, p).await,
        "add-secret" => sdlc::add_secret(&api, p).await,
        "force-merge" => sdlc::force_merge(&api, p).await,
        "add-environment-variable" => sdlc::add_environment_variable(&api, p).await,
        "add-iac" => sdlc::add_iac(&api, p).await,
        "upgrade-package" => sdlc::upgrade_package(&api, p).await,
        "provision-environment" => environments::provision(&api, p).await,
        "teardown-environment" => environments::teardown(&api, p).await,
        "load-mock-data" => environments::load_mock_data(&api, p).await,
        "invite-developer" => environments::invite_developer(&api, p).await,
        "provision-cloud-resource" => cloud::provision(&api, p).await,
        "modify-cloud-resource" => cloud::modify(&api, p).await,
        "grant-cloud-access" => cloud::grant_access(&api, p).await,
        "revoke-cloud-access" => cloud::revoke_access(&api, p).await,
        "update-pod-count" => cloud::update_pod_count(&api, p).await,
        "update-autoscaling" => cloud::update_autoscaling(&api, p).await,
        "run-incident-runbook" => cloud::run_incident_runbook(&api, p).await,
        "add-column" => data::add_column(&api, p).await,
        "drop-column" => data::drop_column(&api, p).await,
        "rename-column" => data::rename_column(&api, p).await,
        "run-dag" => data::run_dag(&api, p).await,
        "duplicate-table" => data::duplicate_table(&api, p).await,
        "create-customer" => backoffice::create(&api, p).await,
        "delete-customer" => backoffice::delete(&api, p).await,
        "configure-customer" => backoffice::configure(&api, p).await,
        "update-customer-version" => backoffice::update_version(&api, p).await,
        "change-plan" => backoffice::change_plan(&api, p).await,
        "train-model" => ml::train(&api, p).await,
        "preprocess-dataset" => ml::preprocess(&api, p).await,
        "deploy-model" => ml::deploy(&api, p).await,
        "route-model-traffic" => ml::route_traffic(&api, p).await,
        "revert-model" => ml::revert(&api, p).await,
        "start-notebook" => ml::start_notebook(&api, p).await,
        "stop-notebook" => ml::stop_notebook(&api, p).await,
        "fetch-logs" => operations::fetch_logs(&api, p).await,
        "health-checklist" => operations::health_checklist(&api, p).await,
        "production-query" => operations::production_query(&api, p).await,
        "billing-report" => operations::billing_report(&api, p).await,
        other => bail!("no demo task named '{other}'"),
    }
}

/// Runs git if it is installed; without it a repository is a plain directory.
fn git(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .args(["-c", "user.name=Portolan demo", "-c", "user.email=demo@portolan.dev", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Commits everything in a repository; says so when git is not there.
fn commit(repo: &Path, message: &str) {
    if git(repo, &["add", "."]) && git(repo, &["commit", "-q", "-m", message]) {
        println!("committed: {message}");
    } else {
        eprintln!("git is not available (or nothing changed): the change is left uncommitted in {}", repo.display());
    }
}

/// A service's repository in the demo's git host (`repos/<name>`), made with a first commit when
/// the service was not scaffolded here.
fn repository(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let repo = Path::new("repos").join(name);
    if !repo.exists() {
        std::fs::create_dir_all(&repo)?;
        std::fs::write(repo.join("README.md"), format!("# {name}\n"))?;
        if git(&repo, &["init", "-q"]) {
            commit(&repo, "Initial commit");
        }
        println!("opened {} (the service's repository in the demo's git host)", repo.display());
    }
    Ok(repo)
}

/// The demo's warehouse (`warehouse.db`): an SQLite database with a few tables of orders,
/// customers and products, made on first use. Read-only opens refuse every write.
async fn warehouse(read_only: bool) -> anyhow::Result<sqlx::SqliteConnection> {
    use sqlx::Connection;
    use sqlx::sqlite::SqliteConnectOptions;
    let path = Path::new("warehouse.db");
    if !path.exists() {
        let options = SqliteConnectOptions::new().filename(path).create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        for statement in [
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL, created_at TEXT)",
            "INSERT INTO orders VALUES (1, 'acme', 120.5, '2026-12-01'), (2, 'globex', 80.0, '2026-12-01'), (3, 'acme', 310.25, '2026-12-02')",
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, legacy_code TEXT)",
            "INSERT INTO customers VALUES (1, 'Acme Corp', 'ops@acme.test', 'A1'), (2, 'Globex', 'it@globex.test', 'G7'), (3, 'Initech', 'tps@initech.test', NULL)",
            "CREATE TABLE products (id INTEGER PRIMARY KEY, title TEXT, price_cents INTEGER)",
            "INSERT INTO products VALUES (1, 'Anvil', 4999), (2, 'Rocket skates', 12999), (3, 'Bird seed', 499)",
            "CREATE TABLE daily_revenue (day TEXT, revenue REAL)",
        ] {
            sqlx::query(statement).execute(&mut conn).await?;
        }
        conn.close().await?;
        println!("created the demo warehouse (warehouse.db)");
    }
    let options = SqliteConnectOptions::new().filename(path).read_only(read_only);
    Ok(sqlx::SqliteConnection::connect_with(&options).await?)
}
