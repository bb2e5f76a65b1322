//! Microservices SDLC: the demo's git repositories (`repos/`), its flag store and its vault.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{
    Api, blueprint, commit, directory_name, entity, git, now_millis, number, read_json, repository, text, with_item,
    write_json,
};

pub(super) async fn scaffold(api: &Api, payload: &Value) -> anyhow::Result<()> {
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
    api.report(
        vec![repository, api.entity_url(blueprint(payload, "service"), name)],
        &format!("Scaffolded {name} ({language})"),
    )
    .await
}

pub(super) async fn deploy(api: &Api, payload: &Value, version: Option<&str>) -> anyhow::Result<()> {
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

pub(super) async fn revert(api: &Api, payload: &Value) -> anyhow::Result<()> {
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

pub(super) async fn add_environment_variable(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = text(payload, "/entity/identifier")?;
    let key = text(payload, "/inputs/key")?;
    let value = text(payload, "/inputs/value")?;
    let mut variables = payload.pointer("/entity/properties/environmentVariables").cloned().unwrap_or(json!({}));
    variables[key] = value.into();
    println!("setting {key} on {service} and restarting its pods");
    let path = format!("/api/v1/blueprints/service/entities/{service}");
    api.send(reqwest::Method::PATCH, &path, Some(json!({"properties": {"environmentVariables": variables}}))).await?;
    api.report(vec![api.entity_url(blueprint(payload, "service"), service)], &format!("{key} set on {service}")).await
}

pub(super) async fn set_feature_flag(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = entity(payload)?;
    let flag = directory_name(payload, "/inputs/flag")?;
    let environment = text(payload, "/inputs/environment")?;
    let enabled = payload.pointer("/inputs/enabled").and_then(Value::as_bool).unwrap_or(false);
    let rollout = number(payload, "/inputs/rollout")?;
    let store = Path::new("flags.json");
    let mut flags = read_json(store)?;
    let before = flags[service][environment][flag].clone();
    flags[service][environment][flag] = json!({"enabled": enabled, "rollout": rollout});
    write_json(store, &flags)?;
    println!(
        "{flag} in {environment} of {service}: was {before}, now {} at {rollout}%",
        if enabled { "on" } else { "off" }
    );
    let identifier = format!("{service}-{flag}-{environment}");
    let entity = json!({
        "identifier": identifier, "title": format!("{flag} ({environment})"),
        "properties": {"enabled": enabled, "rollout": rollout, "environment": environment},
        "relations": {"service": service}
    });
    api.upsert("feature_flag", entity).await?;
    api.report(
        vec![api.entity_url("feature_flag", &identifier)],
        &format!("{flag} is {} for {rollout}% in {environment}", if enabled { "on" } else { "off" }),
    )
    .await
}

pub(super) async fn add_secret(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = entity(payload)?;
    let name = text(payload, "/inputs/name")?;
    // An encrypted input arrives as ciphertext: the vault keeps it so; a real vault writer
    // decrypts it with the server's key (the first 32 bytes of its signing secret).
    let sealed = text(payload, "/inputs/value")?;
    let path = Path::new("vault").join(format!("{service}.json"));
    let mut vault = read_json(&path)?;
    vault[name] = sealed.into();
    write_json(&path, &vault)?;
    println!("stored secret {name} of {service} in {} (sealed; its value is never printed)", path.display());
    let names = with_item(payload, "secrets", name);
    api.update_and_report(
        blueprint(payload, "service"),
        service,
        json!({"secrets": names}),
        &format!("{name} added to {service}"),
    )
    .await
}

pub(super) async fn force_merge(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let pull_request = entity(payload)?;
    let number = payload
        .pointer("/entity/properties/number")
        .and_then(Value::as_i64)
        .context("the pull request has no number")?;
    let branch = directory_name(payload, "/entity/properties/branch")?;
    let service = payload.pointer("/entity/relations/service").and_then(Value::as_str).unwrap_or(pull_request);
    let reason = text(payload, "/inputs/reason")?;
    let by = payload.pointer("/trigger/by").and_then(Value::as_str).unwrap_or("someone");
    let repo = repository(service)?;
    println!("skipping the required checks of #{number} ({branch}): {reason}");
    if git(&repo, &["checkout", "-q", "-B", branch]) {
        std::fs::write(repo.join(format!("fix-{number}.txt")), format!("{reason}\n"))?;
        commit(&repo, &format!("Fix from #{number}"));
        let message = format!("Force merge #{number} by {by} (checks skipped): {reason}");
        if !(git(&repo, &["checkout", "-q", "main"]) && git(&repo, &["merge", "--no-ff", "-q", "-m", &message, branch]))
        {
            bail!("git could not merge {branch} into main in {}", repo.display());
        }
        println!("merged {branch} into main of {}", repo.display());
    } else {
        let log = repo.join("MERGES");
        let line = format!("#{number} {branch} forced by {by}: {reason}\n");
        std::fs::write(&log, line)?;
        eprintln!("git is not available: the merge is recorded in {}", log.display());
    }
    api.update(
        blueprint(payload, "pull_request"),
        pull_request,
        json!({"status": "merged", "forcedBy": by, "forceReason": reason}),
    )
    .await?;
    api.report(
        vec![api.entity_url(blueprint(payload, "pull_request"), pull_request)],
        &format!("#{number} merged without its checks"),
    )
    .await
}

pub(super) async fn add_iac(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = entity(payload)?;
    let tool = text(payload, "/inputs/tool")?;
    let modules: Vec<&str> = payload
        .pointer("/inputs/modules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let repo = repository(service)?;
    let infra = repo.join("infra");
    std::fs::create_dir_all(&infra)?;
    let (file, body) = match tool {
        "pulumi" => (
            "Pulumi.yaml",
            format!(
                "name: {service}\nruntime: yaml\nresources:\n{}",
                modules.iter().map(|m| format!("  {m}:\n    type: platform:{m}\n")).collect::<String>()
            ),
        ),
        _ => (
            "main.tf",
            modules
                .iter()
                .map(|m| format!("module \"{m}\" {{\n  source  = \"platform/{m}\"\n  service = \"{service}\"\n}}\n\n"))
                .collect(),
        ),
    };
    std::fs::write(infra.join(file), body)?;
    println!("wrote infra/{file} with {}", modules.join(", "));
    commit(&repo, &format!("Add {tool} for {}", modules.join(", ")));
    let location = format!("file://{}", repo.canonicalize()?.display());
    api.update(blueprint(payload, "service"), service, json!({"iac": tool, "repository": location})).await?;
    api.report(
        vec![location, api.entity_url(blueprint(payload, "service"), service)],
        &format!("{service} has {tool} for {}", modules.join(", ")),
    )
    .await
}

pub(super) async fn upgrade_package(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = entity(payload)?;
    let package = text(payload, "/inputs/package")?;
    let version = text(payload, "/inputs/version")?;
    let repo = repository(service)?;
    let manifest = repo.join("dependencies.json");
    let mut dependencies = read_json(&manifest)?;
    let before = dependencies[package].as_str().unwrap_or("none").to_string();
    dependencies[package] = version.into();
    write_json(&manifest, &dependencies)?;
    println!("{package}: {before} -> {version}");
    commit(&repo, &format!("Upgrade {package} to {version}"));
    let mut known =
        payload.pointer("/entity/properties/dependencies").cloned().filter(Value::is_object).unwrap_or(json!({}));
    known[package] = version.into();
    api.update_and_report(
        blueprint(payload, "service"),
        service,
        json!({"dependencies": known}),
        &format!("{service} uses {package} {version}"),
    )
    .await
}
