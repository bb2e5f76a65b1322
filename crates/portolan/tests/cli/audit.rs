//! `portolan audit verify` against a database tampered with directly, `portolan audit export`, and
//! the audit guarantee: a change whose record cannot be written does not happen.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use sqlx::sqlite::SqlitePoolOptions;

use crate::{Server, get_json};

fn audit(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portolan"))
        .arg("audit")
        .args(args)
        .current_dir(dir)
        .env_remove("PORTOLAN_DATA")
        .env_remove("PORTOLAN_DATABASE_URL")
        .output()
        .expect("portolan audit runs")
}

/// Runs SQL on the data directory's database file directly, as an attacker with the file would.
async fn tamper(dir: &Path, sql: &str) {
    let url = format!("sqlite://{}", dir.join("portolan-data/portolan.db").display());
    let pool = SqlitePoolOptions::new().max_connections(1).connect(&url).await.expect("open the file");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&pool).await.expect("tamper");
    pool.close().await;
}

fn verdict(dir: &Path) -> (bool, String) {
    let output = audit(dir, &["verify"]);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A data directory with a few dozen records, copied fresh for each tampering.
async fn recorded(dir: &Path) {
    let server = Server::start(&[], dir);
    let client = crate::http();
    let blueprint = json!({"identifier": "thing", "schema": {"properties": {"n": {"type": "number"}}}});
    let made = client.post(format!("{}/api/v1/blueprints", server.base)).json(&blueprint).send().await.expect("post");
    assert_eq!(made.status().as_u16(), 201);
    for n in 0..5 {
        let entity = json!({"identifier": format!("t{n}"), "properties": {"n": n}});
        let url = format!("{}/api/v1/blueprints/thing/entities", server.base);
        assert_eq!(client.post(url).json(&entity).send().await.expect("post").status().as_u16(), 201);
    }
    server.terminate();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_first_edited_deleted_reordered_or_inserted_record() {
    let original = tempfile::tempdir().expect("temp dir");
    recorded(original.path()).await;
    let (ok, text) = verdict(original.path());
    assert!(ok, "{text}");
    assert!(text.contains("intact"), "{text}");

    let export = audit(original.path(), &["export"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON record"))
        .collect();
    assert!(lines.len() > 10, "{}", lines.len());
    assert!(
        lines
            .windows(2)
            .all(|w| w[1]["prevHash"] == w[0]["hash"] && w[1]["seq"] == w[0]["seq"].as_i64().unwrap_or(0) + 1)
    );
    let count = lines.len();

    let cases = [
        (
            "edited",
            "UPDATE audit_log SET record = replace(record, '\"n\":3', '\"n\":30') WHERE action = 'entity.create' AND resource_id = 't3'",
            "was edited",
        ),
        ("column", "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 4", "record 4 was edited"),
        ("deleted", "DELETE FROM audit_log WHERE seq = 5", "record 5 is missing"),
        (
            "reordered",
            "UPDATE audit_log SET seq = -1 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = 7; \
             UPDATE audit_log SET seq = 7 WHERE seq = -1",
            "record 6",
        ),
        (
            "newest removed",
            "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
            "newest records were removed",
        ),
    ];
    for (name, sql, expected) in cases {
        let copy = tempfile::tempdir().expect("temp dir");
        copy_dir(original.path(), copy.path());
        tamper(copy.path(), sql).await;
        let (ok, text) = verdict(copy.path());
        assert!(!ok, "{name} went unnoticed: {text}");
        assert!(text.contains(expected), "{name}: {text}");
    }

    // A forged record inserted with a fresh hash of its own still breaks the chain after it.
    let copy = tempfile::tempdir().expect("temp dir");
    copy_dir(original.path(), copy.path());
    tamper(
        copy.path(),
        &format!(
            "UPDATE audit_log SET seq = -(seq + 1) WHERE seq >= 3 AND seq <= {count}; \
             UPDATE audit_log SET seq = -seq WHERE seq < 0; \
             INSERT INTO audit_log (seq, at, actor, origin, action, resource_type, resource_id, status, record, prev_hash, hash)
             SELECT 3, at, 'mallory', origin, action, resource_type, resource_id, status, record, prev_hash, hash FROM audit_log WHERE seq = 2"
        ),
    )
    .await;
    let (ok, text) = verdict(copy.path());
    assert!(!ok && text.contains("record 3"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_audit_record_cannot_be_written_does_not_happen() {
    let dir = tempfile::tempdir().expect("temp dir");
    recorded(dir.path()).await;
    let server = Server::start(&[], dir.path());
    tamper(
        dir.path(),
        "CREATE TRIGGER audit_full BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .await;
    let client = crate::http();
    let entity = json!({"identifier": "lost", "properties": {"n": 1}});
    let refused = client
        .post(format!("{}/api/v1/blueprints/thing/entities", server.base))
        .json(&entity)
        .send()
        .await
        .expect("post");
    assert!(refused.status().is_server_error(), "{}", refused.status());
    let body: serde_json::Value = refused.json().await.expect("a JSON error");
    assert_eq!(body["ok"], false);
    let (status, _) = get_json(&format!("{}/api/v1/blueprints/thing/entities/lost", server.base)).await;
    assert_eq!(status, 404, "the entity was not stored without its record");
    let patch = json!({"properties": {"n": 99}});
    let url = format!("{}/api/v1/blueprints/thing/entities/t1", server.base);
    assert!(client.patch(&url).json(&patch).send().await.expect("patch").status().is_server_error());
    let (_, kept) = get_json(&url).await;
    assert_eq!(kept["entity"]["properties"]["n"], 1, "nor was the change");
    server.terminate();
    tamper(dir.path(), "DROP TRIGGER audit_full").await;
    let (ok, text) = verdict(dir.path());
    assert!(ok, "{text}");
}
