//! Backoffice: the demo's customer registry (`customers/<id>.json`; deleted ones are archived
//! under `customers/archive/`).

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::{Value, json};

use super::{Api, blueprint, directory_name, entity, now_text, record_or_adopt, text, write_json};

/// The release new customers start on.
const CURRENT_RELEASE: &str = "3.2.0";

fn record(identifier: &str) -> PathBuf {
    Path::new("customers").join(format!("{identifier}.json"))
}

/// What a plan gives.
fn limits(plan: &str) -> Value {
    match plan {
        "free" => json!({"seats": "3", "sso": "false"}),
        "team" => json!({"seats": "20", "sso": "false"}),
        "business" => json!({"seats": "200", "sso": "true"}),
        _ => json!({"seats": "unlimited", "sso": "true", "dedicatedSupport": "true"}),
    }
}

pub(super) async fn create(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let identifier = directory_name(payload, "/inputs/identifier")?;
    let name = text(payload, "/inputs/name")?;
    let plan = text(payload, "/inputs/plan")?;
    let region = text(payload, "/inputs/region")?;
    if record(identifier).exists() {
        bail!("the registry has a customer '{identifier}' already");
    }
    let configuration = limits(plan);
    let customer = json!({"name": name, "plan": plan, "region": region, "version": CURRENT_RELEASE,
                          "configuration": configuration, "createdAt": now_text()});
    write_json(&record(identifier), &customer)?;
    println!("created tenant {identifier} ({name}) on {plan} in {region}, release {CURRENT_RELEASE}");
    let blueprint = blueprint(payload, "customer");
    let entity = json!({"identifier": identifier, "title": name,
        "properties": {"plan": plan, "region": region, "version": CURRENT_RELEASE, "configuration": configuration}});
    api.create(blueprint, entity).await?;
    api.report(vec![api.entity_url(blueprint, identifier)], &format!("{name} is a customer on {plan}")).await
}

pub(super) async fn delete(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let identifier = entity(payload)?;
    let reason = text(payload, "/inputs/reason")?;
    let mut customer = record_or_adopt(&record(identifier), payload)?;
    customer["deletedAt"] = now_text().into();
    customer["deletionReason"] = reason.into();
    let archive = Path::new("customers").join("archive").join(format!("{identifier}.json"));
    write_json(&archive, &customer)?;
    let _ = std::fs::remove_file(record(identifier));
    println!("deleted tenant {identifier}; its record is archived in {}", archive.display());
    api.remove(blueprint(payload, "customer"), identifier).await?;
    api.report(vec![], &format!("{identifier} deleted: {reason}")).await
}

/// Changes a customer's record, then the catalog's copy of what changed.
async fn change(api: &Api, payload: &Value, edit: impl Fn(&mut Value) -> Value, summary: &str) -> anyhow::Result<()> {
    let identifier = entity(payload)?;
    let mut customer = record_or_adopt(&record(identifier), payload)?;
    let properties = edit(&mut customer);
    write_json(&record(identifier), &customer)?;
    println!("{identifier}: {summary}");
    let blueprint = blueprint(payload, "customer");
    api.update_and_report(blueprint, identifier, properties, &format!("{identifier}: {summary}")).await
}

pub(super) async fn configure(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let key = text(payload, "/inputs/key")?;
    let value = text(payload, "/inputs/value")?;
    let edit = |customer: &mut Value| {
        if !customer["configuration"].is_object() {
            customer["configuration"] = json!({});
        }
        customer["configuration"][key] = value.into();
        json!({"configuration": customer["configuration"]})
    };
    change(api, payload, edit, &format!("{key} = {value}")).await
}

pub(super) async fn update_version(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let version = text(payload, "/inputs/version")?;
    let edit = |customer: &mut Value| {
        println!("rolling the tenant from {} to {version}", customer["version"]);
        customer["version"] = version.into();
        json!({"version": version})
    };
    change(api, payload, edit, &format!("runs {version}")).await
}

pub(super) async fn change_plan(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let plan = text(payload, "/inputs/plan")?;
    let edit = |customer: &mut Value| {
        println!("moving from {} to {plan}", customer["plan"]);
        customer["plan"] = plan.into();
        let mut configuration = customer["configuration"].as_object().cloned().unwrap_or_default();
        configuration.extend(limits(plan).as_object().cloned().unwrap_or_default());
        customer["configuration"] = configuration.into();
        json!({"plan": plan, "configuration": customer["configuration"]})
    };
    change(api, payload, edit, &format!("is on {plan}")).await
}
