//! Development environments: directories under `environments/`, each with its own SQLite
//! database for mock data.

use std::path::Path;

use anyhow::bail;
use serde_json::{Value, json};

use super::{Api, blueprint, directory_name, entity, now_millis, number, read_json, text, with_item, write_json};

pub(super) async fn provision(api: &Api, payload: &Value) -> anyhow::Result<()> {
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
    api.report(vec![url, api.entity_url(blueprint(payload, "environment"), name)], &format!("{name} is up until {ttl}"))
        .await
}

pub(super) async fn teardown(api: &Api, payload: &Value) -> anyhow::Result<()> {
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

pub(super) async fn load_mock_data(api: &Api, payload: &Value) -> anyhow::Result<()> {
    // The dataset is one of the generators' names, and the values are generated here.
    use sqlx::{AssertSqlSafe, Connection};
    let name = entity(payload)?;
    let dataset = text(payload, "/inputs/dataset")?;
    let rows = number(payload, "/inputs/rows")? as i64;
    let (columns, row): (&str, fn(i64) -> String) = match dataset {
        "orders" => ("id INTEGER, customer TEXT, total REAL", |i| {
            format!("({i}, 'customer-{}', {}.{:02})", i % 97, (i * 37) % 500, i % 100)
        }),
        "customers" => {
            ("id INTEGER, name TEXT, email TEXT", |i| format!("({i}, 'Customer {i}', 'user{i}@example.test')"))
        }
        "products" => ("id INTEGER, title TEXT, price_cents INTEGER", |i| {
            format!("({i}, 'Product {i}', {})", 100 + (i * 53) % 9900)
        }),
        other => bail!("no generator for dataset '{other}'"),
    };
    let dir = Path::new("environments").join(name);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("data.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {dataset}"))).execute(&mut conn).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE TABLE {dataset} ({columns})"))).execute(&mut conn).await?;
    for chunk in (1..=rows).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk.iter().map(|i| row(*i)).collect();
        sqlx::query(AssertSqlSafe(format!("INSERT INTO {dataset} VALUES {}", values.join(", "))))
            .execute(&mut conn)
            .await?;
    }
    let (count,): (i64,) =
        sqlx::query_as(AssertSqlSafe(format!("SELECT count(*) FROM {dataset}"))).fetch_one(&mut conn).await?;
    conn.close().await?;
    println!("extracted {rows} generated {dataset}, transformed and loaded {count} rows into {}", path.display());
    let datasets = with_item(payload, "datasets", dataset);
    api.update_and_report(
        blueprint(payload, "environment"),
        name,
        json!({"datasets": datasets}),
        &format!("{count} {dataset} rows loaded into {name}"),
    )
    .await
}

pub(super) async fn invite_developer(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let name = entity(payload)?;
    let developer = text(payload, "/inputs/developer")?;
    let path = Path::new("environments").join(name).join("members.json");
    let mut members = read_json(&path)?;
    members[developer] = json!({"role": "developer", "invitedBy": payload.pointer("/trigger/by")});
    write_json(&path, &members)?;
    println!("granted {developer} access to {name} ({})", path.display());
    let listed = with_item(payload, "members", developer);
    api.update_and_report(
        blueprint(payload, "environment"),
        name,
        json!({"members": listed}),
        &format!("{developer} can use {name}"),
    )
    .await
}
