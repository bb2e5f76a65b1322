//! `portolan demo-task NAME`: the work behind the demo's actions, as a platform team would write
//! it for its runner. Each task reads the run's payload on stdin, does its work in the current
//! directory (the demo workspace), prints what it does (the runner streams it into the run's log),
//! and records the result in the catalog through the API, naming the run so the changed entities
//! are linked to it.

use std::io::Read;
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

fn text<'a>(value: &'a Value, pointer: &str) -> anyhow::Result<&'a str> {
    value.pointer(pointer).and_then(Value::as_str).with_context(|| format!("the payload has no {pointer}"))
}

/// A name that is safe as one directory under the workspace.
fn directory_name<'a>(value: &'a Value, pointer: &str) -> anyhow::Result<&'a str> {
    let name = text(value, pointer)?;
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        bail!("'{name}' cannot name a directory");
    }
    Ok(name)
}

/// The tasks the demo's runner is configured with.
pub const TASKS: &[&str] = &[
    "scaffold",
    "provision-environment",
    "teardown-environment",
    "deploy",
    "revert",
    "add-environment-variable",
    "update-pod-count",
];

/// Runs a task; the exit code is the run's result.
pub async fn run(task: &str) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("cannot read the payload")?;
    let payload: Value = serde_json::from_str(&input).context("the payload is not JSON")?;
    let api = Api::from_env()?;
    match task {
        "scaffold" => scaffold(&api, &payload).await,
        "provision-environment" => provision_environment(&api, &payload).await,
        "teardown-environment" => teardown_environment(&api, &payload).await,
        "deploy" => deploy(&api, &payload, None).await,
        "revert" => revert(&api, &payload).await,
        "add-environment-variable" => add_environment_variable(&api, &payload).await,
        "update-pod-count" => update_pod_count(&api, &payload).await,
        other => bail!("no demo task named '{other}'"),
    }
}

/// Runs git if it is installed; without it the repository is a plain directory.
fn git(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .args(["-c", "user.name=Portolan demo", "-c", "user.email=demo@portolan.dev", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn scaffold(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let name = directory_name(payload, "/inputs/name")?;
    let language = text(payload, "/inputs/language")?;
    let system = text(payload, "/inputs/system")?;
    let team = text(payload, "/inputs/team")?;
    let description = payload.pointer("/inputs/description").and_then(Value::as_str).unwrap_or("");
    let repo = Path::new("repos").join(name);
    if repo.exists() {
        bail!("a repository named '{name}' exists already");
    }
    println!("creating {} from the {language} template", repo.display());
    std::fs::create_dir_all(repo.join("src"))?;
    std::fs::write(
        repo.join("README.md"),
        format!("# {name}\n\n{description}\n\nOwned by {team}; part of {system}.\n"),
    )?;
    let (file, body) = match language {
        "Go" => ("main.go", "package main\n\nfunc main() {}\n"),
        "Python" => ("main.py", "def main():\n    pass\n"),
        "Java" => ("Main.java", "public class Main { public static void main(String[] a) {} }\n"),
        "TypeScript" => ("main.ts", "export function main(): void {}\n"),
        _ => ("main.rs", "fn main() {}\n"),
    };
    std::fs::write(repo.join("src").join(file), body)?;
    std::fs::write(
        repo.join("catalog-info.json"),
        serde_json::to_string_pretty(&json!({"identifier": name, "blueprint": "service", "team": [team]}))?,
    )?;
    if git(&repo, &["init", "-q"]) && git(&repo, &["add", "."]) && git(&repo, &["commit", "-q", "-m", "Scaffold"]) {
        println!("initialised a git repository with one commit");
    } else {
        eprintln!("git is not available: the repository is a plain directory");
    }
    let path = repo.canonicalize()?;
    let repository = format!("file://{}", path.display());
    let entity = json!({
        "identifier": name, "title": name, "team": [team],
        "properties": {"language": language, "lifecycle": "experimental", "repository": repository, "replicas": 1,
                       "readme": format!("# {name}\n\n{description}")},
        "relations": {"system": system}
    });
    api.send(reqwest::Method::POST, "/api/v1/blueprints/service/entities", Some(entity)).await?;
    println!("registered service '{name}' in the catalog");
    api.report(vec![repository, api.entity_url("service", name)], &format!("Scaffolded {name} ({language})")).await
}

async fn provision_environment(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let name = directory_name(payload, "/inputs/name")?;
    let service = text(payload, "/inputs/service")?;
    let days = payload.pointer("/inputs/days").and_then(Value::as_f64).unwrap_or(5.0);
    let ttl = portolan_model::format_millis(now_millis() + (days * 86_400_000.0) as i64);
    let dir = Path::new("environments").join(name);
    if dir.exists() {
        bail!("an environment named '{name}' exists already");
    }
    println!("provisioning {name} for {service}");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("environment.json"),
        serde_json::to_string_pretty(&json!({"service": service, "ttl": ttl}))?,
    )?;
    println!("started 1 instance of {service}; it lives until {ttl}");
    let path = dir.canonicalize()?.display().to_string();
    let url = format!("https://{name}.dev.portolan.local");
    let entity = json!({
        "identifier": name, "title": name,
        "properties": {"type": "development", "ttl": ttl, "url": url, "path": path},
        "relations": {"service": service}
    });
    api.send(reqwest::Method::POST, "/api/v1/blueprints/environment/entities", Some(entity)).await?;
    api.report(vec![url, api.entity_url("environment", name)], &format!("{name} is up until {ttl}")).await
}

async fn teardown_environment(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let name = directory_name(payload, "/entity/identifier")?;
    let dir = Path::new("environments").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
        println!("removed {}", dir.display());
    } else {
        println!("{} was already gone", dir.display());
    }
    let path = format!("/api/v1/blueprints/environment/entities/{name}");
    match api.send(reqwest::Method::DELETE, &path, None).await {
        Ok(_) => println!("removed environment '{name}' from the catalog"),
        Err(err) if err.to_string().contains("404") => println!("environment '{name}' was already out of the catalog"),
        Err(err) => return Err(err),
    }
    api.report(vec![], &format!("{name} expired and was torn down")).await
}

async fn deploy(api: &Api, payload: &Value, version: Option<&str>) -> anyhow::Result<()> {
    let service = text(payload, "/entity/identifier")?;
    let version = match version {
        Some(v) => v.to_string(),
        None => text(payload, "/inputs/version")?.to_string(),
    };
    let strategy = payload.pointer("/inputs/strategy").and_then(Value::as_str).unwrap_or("revert");
    let environment = payload.pointer("/inputs/environment").and_then(Value::as_str);
    println!("deploying {service} {version} ({strategy})");
    let steps: &[&str] = match strategy {
        "canary" => &["canary at 10% of traffic: error rate 0.0%", "canary at 50%: healthy", "promoted to 100%"],
        "blue-green" => {
            &["green stack started", "health checks passed", "traffic switched to green", "blue stack drained"]
        }
        _ => &["previous version restored", "health checks passed"],
    };
    for step in steps {
        println!("{step}");
    }
    let at = now_millis();
    let identifier = format!("{service}-{}-{at}", version.trim_start_matches('v').replace('.', "-"));
    let mut relations = json!({"service": service});
    if let Some(environment) = environment {
        relations["environment"] = environment.into();
    }
    let deployment = json!({
        "identifier": identifier, "title": format!("{service} {version}"),
        "properties": {"version": version, "strategy": strategy, "status": "succeeded",
                       "deployedAt": portolan_model::format_millis(at)},
        "relations": relations
    });
    api.send(reqwest::Method::POST, "/api/v1/blueprints/deployment/entities", Some(deployment)).await?;
    let path = format!("/api/v1/blueprints/service/entities/{service}");
    api.send(reqwest::Method::PATCH, &path, Some(json!({"properties": {"version": version}}))).await?;
    println!("recorded deployment '{identifier}'");
    api.report(vec![api.entity_url("deployment", &identifier)], &format!("{service} runs {version}")).await
}

async fn revert(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = text(payload, "/entity/identifier")?;
    let current = text(payload, "/entity/properties/version")?;
    let query = json!({"combinator": "and", "rules": [
        {"relation": "service", "operator": "=", "value": service},
        {"property": "version", "operator": "!=", "value": current}
    ]});
    let found = api
        .send(
            reqwest::Method::POST,
            "/api/v1/blueprints/deployment/entities/search",
            Some(json!({"query": query, "sort": {"property": "deployedAt", "order": "desc"}, "limit": 1})),
        )
        .await?;
    let Some(previous) = found.pointer("/entities/0/properties/version").and_then(Value::as_str) else {
        bail!("{service} has no earlier version to revert to");
    };
    println!("reverting {service} from {current} to {previous}");
    deploy(api, payload, Some(previous)).await
}

async fn add_environment_variable(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = text(payload, "/entity/identifier")?;
    let key = text(payload, "/inputs/key")?;
    let value = text(payload, "/inputs/value")?;
    let mut variables = payload.pointer("/entity/properties/environmentVariables").cloned().unwrap_or(json!({}));
    variables[key] = value.into();
    println!("setting {key} on {service} and restarting its pods");
    let path = format!("/api/v1/blueprints/service/entities/{service}");
    api.send(reqwest::Method::PATCH, &path, Some(json!({"properties": {"environmentVariables": variables}}))).await?;
    api.report(vec![api.entity_url("service", service)], &format!("{key} set on {service}")).await
}

async fn update_pod_count(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = text(payload, "/entity/identifier")?;
    let replicas = payload.pointer("/inputs/replicas").filter(|v| v.is_number()).context("no replicas")?;
    let before = payload.pointer("/entity/properties/replicas").cloned().unwrap_or(json!(0));
    println!("scaling {service} from {before} to {replicas} pods");
    let path = format!("/api/v1/blueprints/service/entities/{service}");
    api.send(reqwest::Method::PATCH, &path, Some(json!({"properties": {"replicas": replicas}}))).await?;
    println!("{replicas} pods ready");
    api.report(vec![api.entity_url("service", service)], &format!("{service} runs {replicas} pods")).await
}
