//! Data engineering: the demo's SQLite warehouse (`warehouse.db`), whose tables are the catalog's
//! `data_table` entities and whose pipelines are `data_pipeline` entities.

use anyhow::bail;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection};

// Every name put into SQL here went through `sql_name` (or is a closed type list).

use super::{Api, blueprint, entity, now_text, text, warehouse};

/// A table or column name that is safe to put in SQL as it is.
fn sql_name(name: &str) -> anyhow::Result<&str> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("'{name}' is not a table or column name (lowercase letters, digits and _)");
    }
    Ok(name)
}

/// A table's columns and row count, as the catalog shows them.
/// Prints a statement and runs it on the warehouse; a refusal fails the run with its reason.
async fn execute(conn: &mut sqlx::SqliteConnection, sql: &str) -> anyhow::Result<()> {
    println!("{sql}");
    if let Err(err) = sqlx::query(AssertSqlSafe(sql)).execute(conn).await {
        bail!("the warehouse refused it: {err}");
    }
    Ok(())
}

async fn describe(conn: &mut sqlx::SqliteConnection, table: &str) -> anyhow::Result<Value> {
    let columns: Vec<(String,)> =
        sqlx::query_as(AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid")))
            .fetch_all(&mut *conn)
            .await?;
    if columns.is_empty() {
        bail!("the warehouse has no table '{table}'");
    }
    let (rows,): (i64,) =
        sqlx::query_as(AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&mut *conn).await?;
    Ok(json!({"columns": columns.into_iter().map(|(c,)| c).collect::<Vec<_>>(), "rows": rows, "warehouse": "demo"}))
}

/// Runs one statement on the run's table, then records the table's new shape.
async fn alter(
    api: &Api,
    payload: &Value,
    statement: impl Fn(&str) -> anyhow::Result<String>,
    done: &str,
) -> anyhow::Result<()> {
    let table = sql_name(entity(payload)?)?;
    let mut conn = warehouse(false).await?;
    describe(&mut conn, table).await?;
    let sql = statement(table)?;
    execute(&mut conn, &sql).await?;
    let shape = describe(&mut conn, table).await?;
    conn.close().await?;
    println!("{table} now has columns {}", shape["columns"]);
    api.update_and_report(blueprint(payload, "data_table"), table, shape, &format!("{table}: {done}")).await
}

pub(super) async fn add_column(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let column = sql_name(text(payload, "/inputs/column")?)?;
    let kind = text(payload, "/inputs/type")?;
    if !["TEXT", "INTEGER", "REAL", "BOOLEAN", "TIMESTAMP"].contains(&kind) {
        bail!("'{kind}' is not a column type here");
    }
    alter(
        api,
        payload,
        |table| Ok(format!("ALTER TABLE {table} ADD COLUMN {column} {kind}")),
        &format!("{column} added"),
    )
    .await
}

pub(super) async fn drop_column(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let column = sql_name(text(payload, "/inputs/column")?)?;
    alter(api, payload, |table| Ok(format!("ALTER TABLE {table} DROP COLUMN {column}")), &format!("{column} removed"))
        .await
}

pub(super) async fn rename_column(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let column = sql_name(text(payload, "/inputs/column")?)?;
    let new_name = sql_name(text(payload, "/inputs/newName")?)?;
    let statement = |table: &str| Ok(format!("ALTER TABLE {table} RENAME COLUMN {column} TO {new_name}"));
    alter(api, payload, statement, &format!("{column} is now {new_name}")).await
}

pub(super) async fn duplicate_table(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let table = sql_name(entity(payload)?)?;
    let copy = sql_name(text(payload, "/inputs/name")?)?;
    let mut conn = warehouse(false).await?;
    describe(&mut conn, table).await?;
    let sql = format!("CREATE TABLE {copy} AS SELECT * FROM {table}");
    execute(&mut conn, &sql).await?;
    let shape = describe(&mut conn, copy).await?;
    conn.close().await?;
    println!("copied {} rows", shape["rows"]);
    let blueprint = blueprint(payload, "data_table");
    api.create(blueprint, json!({"identifier": copy, "title": copy, "properties": shape})).await?;
    api.report(vec![api.entity_url(blueprint, copy)], &format!("{table} copied to {copy}")).await
}

/// The demo's pipelines all roll orders up by day into the table they write.
pub(super) async fn run_dag(api: &Api, payload: &Value) -> anyhow::Result<()> {
    let pipeline = entity(payload)?;
    let target = payload.pointer("/entity/relations/writes").and_then(Value::as_str).unwrap_or("daily_revenue");
    let target = sql_name(target)?;
    let date =
        payload.pointer("/inputs/logicalDate").and_then(Value::as_str).map(str::to_string).unwrap_or_else(now_text);
    let mut conn = warehouse(false).await?;
    println!("DAG {pipeline}, logical date {date}");
    let steps = [
        ("create the target", format!("CREATE TABLE IF NOT EXISTS {target} (day TEXT, revenue REAL)")),
        ("clear the last load", format!("DELETE FROM {target}")),
        (
            "aggregate orders by day",
            format!(
                "INSERT INTO {target} (day, revenue) SELECT created_at, sum(total) FROM orders GROUP BY created_at"
            ),
        ),
    ];
    let mut failed = None;
    for (name, sql) in &steps {
        match sqlx::query(AssertSqlSafe(sql.as_str())).execute(&mut conn).await {
            Ok(done) => println!("task '{name}': success ({} rows)", done.rows_affected()),
            Err(err) => {
                println!("task '{name}': failed: {err}");
                failed = Some(format!("task '{name}' failed: {err}"));
                break;
            }
        }
    }
    let status = if failed.is_some() { "failed" } else { "success" };
    api.update(
        blueprint(payload, "data_pipeline"),
        pipeline,
        json!({"lastRunAt": now_text(), "lastRunStatus": status}),
    )
    .await?;
    if let Some(message) = failed {
        bail!(message);
    }
    let shape = describe(&mut conn, target).await?;
    conn.close().await?;
    api.upsert("data_table", json!({"identifier": target, "title": target, "properties": shape})).await?;
    api.report(
        vec![api.entity_url(blueprint(payload, "data_pipeline"), pipeline), api.entity_url("data_table", target)],
        &format!("{pipeline} loaded {target}"),
    )
    .await
}
