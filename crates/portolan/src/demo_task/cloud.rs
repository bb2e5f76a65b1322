//! Cloud resources and SRE: the demo's file-based cloud (`cloud/`): one JSON document per
//! resource, access grant, scaling group and runbook log.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{
    Api, blueprint, directory_name, entity, now_millis, now_text, number, read_json, record_or_adopt, text, write_json,
};

/// What a size costs a month, in US dollars.
fn monthly_cost(size: &str) -> f64 {
    match size {
        "small" => 25.0,
        "medium" => 100.0,
        "large" => 400.0,
        _ => 1600.0,
    }
}

fn resource_file(name: &str) -> std::path::PathBuf {
    Path::new("cloud").join("resources").join(format!("{name}.json"))
}

pub(super) async fn provision(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let name = directory_name(payload, "/inputs/name")?;
    let kind = text(payload, "/inputs/kind")?;
    let size = text(payload, "/inputs/size")?;
    let region = text(payload, "/inputs/region")?;
    let service = text(payload, "/inputs/service")?;
    let file = resource_file(name);
    if file.exists() {
        bail!("the cloud has a resource named '{name}' already");
    }
    let cost = monthly_cost(size);
    write_json(
        &file,
        &json!({"kind": kind, "size": size, "region": region, "service": service, "monthlyCost": cost, "createdAt": now_text()}),
    )?;
    println!("created {kind} {name} ({size}) in {region} for {service}: {} USD a month", cost);
    let path = file.canonicalize()?.display().to_string();
    let resource = json!({
        "identifier": name, "title": name,
        "properties": {"kind": kind, "size": size, "region": region, "monthlyCost": cost, "path": path},
        "relations": {"service": service}
    });
    let blueprint = blueprint(payload, "cloud_resource");
    api.create(blueprint, resource).await?;
    api.report(vec![api.entity_url(blueprint, name)], &format!("{kind} {name} is ready in {region}")).await
}

pub(super) async fn modify(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let name = entity(payload)?;
    let size = text(payload, "/inputs/size")?;
    let file = resource_file(name);
    let mut resource = record_or_adopt(&file, payload)?;
    let before = resource["size"].as_str().unwrap_or("unknown").to_string();
    resource["size"] = size.into();
    resource["monthlyCost"] = monthly_cost(size).into();
    write_json(&file, &resource)?;
    println!("resized {name} from {before} to {size}");
    let blueprint = blueprint(payload, "cloud_resource");
    api.update(
        blueprint,
        name,
        json!({"size": size, "monthlyCost": monthly_cost(size), "path": file.canonicalize()?.display().to_string()}),
    )
    .await?;
    api.report(vec![api.entity_url(blueprint, name)], &format!("{name} is {size}")).await
}

pub(super) async fn grant_access(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let resource = entity(payload)?;
    let level = text(payload, "/inputs/level")?;
    let hours = number(payload, "/inputs/hours")?;
    let reason = text(payload, "/inputs/reason")?;
    let grantee = text(payload, "/trigger/by")?;
    let at = now_millis();
    let expires = portolan_model::format_millis(at + (hours * 3_600_000.0) as i64);
    let person: String = grantee.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let identifier = format!("{resource}-{person}-{at}");
    let file = Path::new("cloud").join("iam").join(format!("{identifier}.json"));
    write_json(&file, &json!({"resource": resource, "principal": grantee, "level": level, "expiresAt": expires}))?;
    println!("granted {grantee} {level} access to {resource} until {expires}");
    let grant = json!({
        "identifier": identifier, "title": format!("{grantee}: {level} on {resource}"),
        "properties": {"level": level, "grantee": grantee, "reason": reason, "expiresAt": expires,
                       "path": file.canonicalize()?.display().to_string()},
        "relations": {"resource": resource}
    });
    api.create("access_grant", grant).await?;
    api.report(
        vec![api.entity_url("access_grant", &identifier)],
        &format!("{level} access to {resource} until {expires}"),
    )
    .await
}

pub(super) async fn revoke_access(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let grant = entity(payload)?;
    let file = Path::new("cloud").join("iam").join(format!("{grant}.json"));
    match std::fs::remove_file(&file) {
        Ok(()) => println!("revoked {grant} in the cloud ({})", file.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => println!("{grant} was already revoked in the cloud"),
        Err(err) => return Err(err).context("cannot revoke the grant"),
    }
    api.remove(blueprint(payload, "access_grant"), grant).await?;
    api.report(vec![], &format!("{grant} expired and was revoked")).await
}

pub(super) async fn update_autoscaling(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = entity(payload)?;
    let (min, max, cpu) =
        (number(payload, "/inputs/min")?, number(payload, "/inputs/max")?, number(payload, "/inputs/targetCpu")?);
    if min > max {
        bail!("the smallest size ({min}) is above the largest ({max})");
    }
    let file = Path::new("cloud").join("autoscaling").join(format!("{service}.json"));
    let group = json!({"min": min, "max": max, "targetCpu": cpu});
    write_json(&file, &group)?;
    println!("auto-scaling group of {service}: {min} to {max} instances, aiming at {cpu}% CPU");
    api.update_and_report(
        blueprint(payload, "service"),
        service,
        json!({"autoscaling": group}),
        &format!("{service} scales between {min} and {max}"),
    )
    .await
}

pub(super) async fn run_incident_runbook(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let incident = entity(payload)?;
    let runbook = text(payload, "/inputs/runbook")?;
    let resolve = payload.pointer("/inputs/resolve").and_then(Value::as_bool).unwrap_or(false);
    let service = payload.pointer("/entity/relations/service").and_then(Value::as_str).unwrap_or("the service");
    let steps: &[&str] = match runbook {
        "restart-pods" => &["drained one pod at a time", "restarted every pod", "readiness checks passed"],
        "flush-cache" => &["paused cache writers", "flushed the cache", "warmed the hottest keys"],
        "failover-database" => {
            &["promoted the replica", "pointed the service at the new primary", "old primary fenced"]
        }
        _ => &["doubled the replicas", "load spread over the new pods"],
    };
    let log = Path::new("cloud").join("runbooks").join(format!("{incident}.log"));
    std::fs::create_dir_all(log.parent().context("no parent")?)?;
    let mut lines = std::fs::read_to_string(&log).unwrap_or_default();
    for step in steps {
        println!("{runbook} on {service}: {step}");
        lines.push_str(&format!("{} {runbook} {service}: {step}\n", now_text()));
    }
    std::fs::write(&log, lines)?;
    let properties = match resolve {
        true => json!({"status": "resolved", "resolvedAt": now_text()}),
        false => json!({"status": "acknowledged"}),
    };
    api.update(blueprint(payload, "incident"), incident, properties).await?;
    let outcome = if resolve { "resolved" } else { "acknowledged" };
    api.report(
        vec![api.entity_url(blueprint(payload, "incident"), incident)],
        &format!("{runbook} ran; {incident} {outcome}"),
    )
    .await
}

pub(super) async fn update_pod_count(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = entity(payload)?;
    let replicas = number(payload, "/inputs/replicas")? as i64;
    let file = Path::new("cloud").join("pods").join(format!("{service}.json"));
    let before = read_json(&file)?["replicas"]
        .as_i64()
        .or_else(|| payload.pointer("/entity/properties/replicas").and_then(Value::as_i64))
        .unwrap_or(0);
    println!("scaling {service} from {before} to {replicas} pods");
    write_json(&file, &json!({"replicas": replicas, "updatedAt": now_text()}))?;
    println!("{replicas} pods ready");
    api.update_and_report(
        blueprint(payload, "service"),
        service,
        json!({"replicas": replicas}),
        &format!("{service} runs {replicas} pods"),
    )
    .await
}
