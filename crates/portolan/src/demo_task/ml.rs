//! Machine learning: the demo's model registry and serving (`cloud/ml/`), datasets
//! (`cloud/datasets/`) and notebooks (`cloud/notebooks/`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{Api, blueprint, directory_name, entity, now_millis, now_text, number, read_json, text, write_json};

fn serving(model: &str) -> PathBuf {
    Path::new("cloud").join("ml").join("serving").join(format!("{model}.json"))
}

fn latest_version(payload: &Value) -> u64 {
    payload
        .pointer("/entity/properties/latestVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A version the registry holds: one up to the model's latest.
fn known_version(payload: &Value, pointer: &str) -> anyhow::Result<u64> {
    let version: u64 = text(payload, pointer)?.parse().context("a version is a whole number")?;
    let latest = latest_version(payload);
    if version == 0 || version > latest {
        bail!("the registry has versions 1 to {latest} of this model, not {version}");
    }
    Ok(version)
}

pub(super) async fn train(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let model = entity(payload)?;
    let dataset = text(payload, "/inputs/dataset")?;
    let epochs = number(payload, "/inputs/epochs")? as u32;
    let compute = text(payload, "/inputs/compute")?;
    let version = latest_version(payload) + 1;
    let mut loss = 1.0_f64;
    for epoch in 1..=epochs {
        loss *= 0.8;
        println!("epoch {epoch}/{epochs} on {compute}: loss {loss:.4}");
    }
    let accuracy = ((0.95 - loss * 0.2) * 1000.0).round() / 1000.0;
    let file = Path::new("cloud").join("ml").join(model).join(format!("v{version}.json"));
    write_json(
        &file,
        &json!({"dataset": dataset, "epochs": epochs, "compute": compute, "accuracy": accuracy, "trainedAt": now_text()}),
    )?;
    println!("registered {model} version {version} (accuracy {accuracy})");
    let blueprint = blueprint(payload, "ml_model");
    api.update_and_report(
        blueprint,
        model,
        json!({"latestVersion": version.to_string(), "accuracy": accuracy}),
        &format!("{model} v{version}: accuracy {accuracy}"),
    )
    .await
}

pub(super) async fn preprocess(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let dataset = entity(payload)?;
    let steps: Vec<String> = payload
        .pointer("/inputs/steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let mut rows = payload.pointer("/entity/properties/rows").and_then(Value::as_i64).unwrap_or(0);
    for step in &steps {
        let before = rows;
        if step == "deduplicate" {
            rows -= rows / 33;
        }
        println!("{step}: {before} rows in, {rows} out");
    }
    let file = Path::new("cloud").join("datasets").join(dataset).join("processed.json");
    write_json(&file, &json!({"steps": steps, "rows": rows, "processedAt": now_text()}))?;
    let blueprint = blueprint(payload, "dataset");
    api.update_and_report(
        blueprint,
        dataset,
        json!({"rows": rows, "steps": steps, "processedAt": now_text()}),
        &format!("{dataset}: {rows} rows after {}", steps.join(", ")),
    )
    .await
}

pub(super) async fn deploy(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let model = entity(payload)?;
    let version = known_version(payload, "/inputs/version")?.to_string();
    let current =
        payload.pointer("/entity/properties/deployedVersion").and_then(Value::as_str).unwrap_or("").to_string();
    write_json(&serving(model), &json!({"routes": {version.as_str(): 100}, "updatedAt": now_text()}))?;
    println!("{model}: serving version {version} (was {})", if current.is_empty() { "none" } else { &current });
    let previous = if current.is_empty() || current == version { Value::Null } else { current.into() };
    let blueprint = blueprint(payload, "ml_model");
    let properties =
        json!({"deployedVersion": version, "previousVersion": previous, "trafficSplit": {version.as_str(): 100}});
    api.update_and_report(blueprint, model, properties, &format!("{model} serves v{version}")).await
}

pub(super) async fn route_traffic(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let model = entity(payload)?;
    let challenger = known_version(payload, "/inputs/challenger")?.to_string();
    let percent = number(payload, "/inputs/percent")?;
    let champion =
        text(payload, "/entity/properties/deployedVersion").context("the model serves no version yet")?.to_string();
    let mut routes = serde_json::Map::new();
    routes.insert(champion.clone(), json!(100.0 - percent));
    if percent > 0.0 && challenger != champion {
        routes.insert(challenger.clone(), json!(percent));
    }
    write_json(&serving(model), &json!({"routes": routes, "updatedAt": now_text()}))?;
    println!("{model}: {}% to v{champion}, {percent}% to v{challenger}", 100.0 - percent);
    let blueprint = blueprint(payload, "ml_model");
    api.update_and_report(
        blueprint,
        model,
        json!({"trafficSplit": routes}),
        &format!("{model}: {percent}% of traffic to v{challenger}"),
    )
    .await
}

pub(super) async fn revert(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let model = entity(payload)?;
    let previous =
        text(payload, "/entity/properties/previousVersion").context("the model has no previous version")?.to_string();
    let current = payload.pointer("/entity/properties/deployedVersion").and_then(Value::as_str).unwrap_or("none");
    write_json(&serving(model), &json!({"routes": {previous.as_str(): 100}, "updatedAt": now_text()}))?;
    println!("{model}: back from v{current} to v{previous}; any A/B test ended");
    let blueprint = blueprint(payload, "ml_model");
    let properties =
        json!({"deployedVersion": previous, "previousVersion": null, "trafficSplit": {previous.as_str(): 100}});
    api.update_and_report(blueprint, model, properties, &format!("{model} serves v{previous} again")).await
}

pub(super) async fn start_notebook(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let name = directory_name(payload, "/inputs/name")?;
    let size = text(payload, "/inputs/size")?;
    let hours = number(payload, "/inputs/hours")?;
    let file = Path::new("cloud").join("notebooks").join(format!("{name}.json"));
    if file.exists() {
        bail!("a notebook named '{name}' is running already");
    }
    let ttl = portolan_model::format_millis(now_millis() + (hours * 3_600_000.0) as i64);
    let url = format!("https://{name}.notebooks.portolan.local/lab");
    write_json(&file, &json!({"size": size, "url": url, "ttl": ttl, "owner": payload.pointer("/trigger/by")}))?;
    println!("started a {size} Jupyter server at {url}; it stops at {ttl}");
    let blueprint = blueprint(payload, "notebook");
    let notebook = json!({"identifier": name, "title": name,
        "properties": {"size": size, "ttl": ttl, "url": url, "path": file.canonicalize()?.display().to_string()}});
    api.create(blueprint, notebook).await?;
    api.report(vec![url, api.entity_url(blueprint, name)], &format!("{name} runs until {ttl}")).await
}

pub(super) async fn stop_notebook(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let name = entity(payload)?;
    let file = Path::new("cloud").join("notebooks").join(format!("{name}.json"));
    let notebook = read_json(&file)?;
    let _ = std::fs::remove_file(&file);
    println!("stopped notebook {name} ({})", notebook["url"].as_str().unwrap_or("already gone"));
    api.remove(blueprint(payload, "notebook"), name).await?;
    api.report(vec![], &format!("{name} expired and was stopped")).await
}
