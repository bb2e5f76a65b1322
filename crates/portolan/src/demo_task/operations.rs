//! One-click operations: logs (`logs/`), health checklists, queries against the demo's
//! production database (the warehouse) and billing reports over the file-based cloud.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sqlx::{Column, Connection, Row, TypeInfo, ValueRef};

use super::{Api, blueprint, entity, now_millis, now_text, number, text, warehouse};

const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

/// A service's log in an environment; the demo's services write a day of it on first read.
fn log_lines(service: &str, environment: &str) -> anyhow::Result<Vec<String>> {
    let path = Path::new("logs").join(format!("{service}-{environment}.log"));
    if !path.exists() {
        std::fs::create_dir_all("logs")?;
        let messages = [
            "GET /health 200",
            "checkout completed",
            "slow query on carts (812 ms)",
            "payment gateway timeout, retrying",
        ];
        let start = now_millis() - 86_400_000;
        let lines: Vec<String> = (0..400_i64)
            .map(|i| {
                let level = LEVELS[(i * 7 % 13 % 4) as usize];
                let at = portolan_model::format_millis(start + i * 216_000);
                format!("{at} {level:>5} {service}: {}", messages[(i % 4) as usize])
            })
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n")?;
    }
    Ok(std::fs::read_to_string(&path)?.lines().map(str::to_string).collect())
}

pub(super) async fn fetch_logs(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = entity(payload)?;
    let environment = text(payload, "/inputs/environment")?;
    let level = text(payload, "/inputs/level")?;
    let wanted = number(payload, "/inputs/lines")? as usize;
    let least = LEVELS.iter().position(|l| *l == level).with_context(|| format!("'{level}' is not a log level"))?;
    let lines = log_lines(service, environment)?;
    let matching: Vec<&String> =
        lines.iter().filter(|line| LEVELS[least..].iter().any(|l| line.contains(&format!(" {l} ")))).collect();
    let shown = &matching[matching.len().saturating_sub(wanted)..];
    println!("the last {} {level}+ lines of {service} in {environment}:", shown.len());
    for line in shown {
        println!("{line}");
    }
    api.report(vec![], &format!("{} lines of {service} ({environment})", shown.len())).await
}

pub(super) async fn health_checklist(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let service = entity(payload)?;
    let property = |name: &str| payload.pointer(&format!("/entity/properties/{name}")).filter(|v| !v.is_null());
    let open = api
        .send(
            reqwest::Method::POST,
            "/api/v1/blueprints/incident/entities/search",
            Some(json!({"query": {"combinator": "and", "rules": [
                {"relation": "service", "operator": "=", "value": service},
                {"property": "status", "operator": "!=", "value": "resolved"}]}, "limit": 10})),
        )
        .await
        .map(|found| found["entities"].as_array().map_or(0, Vec::len))
        .unwrap_or(0);
    let checks = [
        ("has a repository", property("repository").is_some()),
        ("runs more than one pod", property("replicas").and_then(Value::as_i64).is_some_and(|r| r > 1)),
        ("has someone on call", property("onCall").is_some()),
        ("has a runbook", property("runbook").is_some()),
        ("runs a released version", property("version").is_some()),
        ("has no open incident", open == 0),
    ];
    for (check, passed) in checks {
        println!("[{}] {check}", if passed { "pass" } else { "FAIL" });
    }
    let failed = checks.iter().filter(|(_, passed)| !passed).count();
    let result = if failed == 0 { "passing" } else { "failing" };
    api.update(blueprint(payload, "service"), service, json!({"healthCheck": result, "healthCheckedAt": now_text()}))
        .await?;
    let summary = format!("{} of {} checks pass", checks.len() - failed, checks.len());
    api.report(vec![api.entity_url(blueprint(payload, "service"), service)], &format!("{service}: {summary}")).await
}

/// At most this many rows are printed.
const MAX_ROWS: usize = 200;

pub(super) async fn production_query(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let environment = entity(payload)?;
    let query = text(payload, "/inputs/query")?;
    let read_only = text(payload, "/inputs/mode")? != "read-write";
    println!("{} on {environment}: {query}", if read_only { "read-only" } else { "READ-WRITE" });
    let mut conn = warehouse(read_only).await?;
    // The query is the person's on purpose: what guards the data is the read-only connection
    // (and the approval a read-write run needs), not the text.
    let rows = match sqlx::query(sqlx::AssertSqlSafe(query.to_string())).fetch_all(&mut conn).await {
        Ok(rows) => rows,
        Err(err) => bail!("the database refused the query: {err}"),
    };
    conn.close().await?;
    if let Some(first) = rows.first() {
        println!("{}", first.columns().iter().map(|c| c.name()).collect::<Vec<_>>().join(" | "));
    }
    for row in rows.iter().take(MAX_ROWS) {
        let cells: Vec<String> = (0..row.len()).map(|i| cell(row, i)).collect();
        println!("{}", cells.join(" | "));
    }
    if rows.len() > MAX_ROWS {
        println!("… {} more rows not shown", rows.len() - MAX_ROWS);
    }
    api.report(vec![], &format!("{} rows from {environment}", rows.len())).await
}

/// One value of a row, as text.
fn cell(row: &sqlx::sqlite::SqliteRow, index: usize) -> String {
    let kind =
        row.try_get_raw(index).map(|v| if v.is_null() { "NULL".to_string() } else { v.type_info().name().to_string() });
    match kind.as_deref() {
        Ok("INTEGER") => row.try_get::<i64, _>(index).map(|v| v.to_string()),
        Ok("REAL") => row.try_get::<f64, _>(index).map(|v| v.to_string()),
        Ok("NULL") => Ok("NULL".to_string()),
        _ => row.try_get::<String, _>(index),
    }
    .unwrap_or_else(|_| "?".into())
}

pub(super) async fn billing_report(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let group_by = text(payload, "/inputs/groupBy")?;
    let mut totals: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    let dir = Path::new("cloud").join("resources");
    let mut resources = 0;
    for file in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let resource: Value = serde_json::from_str(&std::fs::read_to_string(file.path())?).unwrap_or(Value::Null);
        let key = resource[group_by].as_str().unwrap_or("(none)").to_string();
        *totals.entry(key).or_default() += resource["monthlyCost"].as_f64().unwrap_or(0.0);
        resources += 1;
    }
    println!("monthly cost of {resources} cloud resources by {group_by}:");
    let mut csv = format!("{group_by},monthly_cost_usd\n");
    for (key, total) in &totals {
        println!("{key:<30} {total:>10.2} USD");
        csv.push_str(&format!("{key},{total:.2}\n"));
    }
    let sum: f64 = totals.values().sum();
    println!("{:<30} {sum:>10.2} USD", "total");
    let path = Path::new("reports").join(format!("billing-by-{group_by}-{}.csv", now_millis()));
    std::fs::create_dir_all("reports")?;
    std::fs::write(&path, csv)?;
    let link = format!("file://{}", path.canonicalize()?.display());
    api.report(vec![link], &format!("{sum:.2} USD a month over {resources} resources")).await
}
