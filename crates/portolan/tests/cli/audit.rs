//! `portolan audit verify` against a database tampered with directly (with and without a
//! checkpoint kept outside it), `portolan audit export`, and the audit guarantee: a change whose
//! record cannot be written does not happen.

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
    verdict_with(dir, &["verify"])
}

fn verdict_with(dir: &Path, args: &[&str]) -> (bool, String) {
    crate::portolan(dir, &[&["audit"], args].concat())
}

/// What someone who can write the database file but has no audit key can do: rewrite records from
/// `from` on with `edit` and recompute the hash chain and the head to match. `drop_macs`: also
/// clear every record's MAC (they cannot compute new ones).
async fn rechain(dir: &Path, from: i64, edit: impl Fn(i64, String) -> String, drop_macs: bool) {
    use sqlx::Row;
    let url = format!("sqlite://{}", dir.join("portolan-data/portolan.db").display());
    let pool = SqlitePoolOptions::new().max_connections(1).connect(&url).await.expect("open the file");
    let rows =
        sqlx::query("SELECT seq, record, hash FROM audit_log ORDER BY seq").fetch_all(&pool).await.expect("rows");
    let mut prev = portolan_model::audit::GENESIS.to_string();
    for row in rows {
        let seq: i64 = row.get("seq");
        let record: String = row.get("record");
        if seq < from {
            prev = row.get("hash");
            continue;
        }
        let record = edit(seq, record);
        let hash = portolan_model::audit::chain_hash(&prev, &record);
        sqlx::query("UPDATE audit_log SET record = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&record)
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(&pool)
            .await
            .expect("rewrite");
        prev = hash;
    }
    if drop_macs {
        sqlx::query("UPDATE audit_log SET mac = NULL").execute(&pool).await.expect("drop MACs");
    }
    sqlx::query("UPDATE audit_head SET hash = $1").bind(&prev).execute(&pool).await.expect("head");
    pool.close().await;
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
        ("newest removed", "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)", "was removed"),
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
async fn audit_verify_against_a_checkpoint_catches_a_wiped_a_rechained_and_a_cut_log() {
    let original = tempfile::tempdir().expect("temp dir");
    recorded(original.path()).await;
    assert!(original.path().join("portolan-data/audit.key").exists(), "serve made the audit key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(original.path().join("portolan-data/audit.key")).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner may read the key");
    }
    // The operator keeps a checkpoint away from the data (the server keeps its own in the data
    // directory too; these cases hold the log to the operator's copy only).
    let signed = audit(original.path(), &["checkpoint"]);
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let checkpoint: serde_json::Value = serde_json::from_slice(&signed.stdout).expect("a JSON checkpoint");
    let last = checkpoint["seq"].as_i64().expect("seq");
    assert!(last > 10, "{checkpoint}");
    let kept = tempfile::tempdir().expect("temp dir");
    let file = kept.path().join("checkpoint.json");
    std::fs::write(&file, &signed.stdout).expect("keep the checkpoint");
    let file = file.to_string_lossy().into_owned();
    let held = ["verify", "--checkpoint", file.as_str()];

    // Untouched, with `--data` after the subcommand and from another directory.
    let data = original.path().join("portolan-data").to_string_lossy().into_owned();
    let (ok, text) = verdict_with(kept.path(), &["verify", "--data", &data, "--checkpoint", &file]);
    assert!(ok, "{text}");
    assert!(text.contains("intact") && text.contains("it still reaches the checkpoint of"), "{text}");

    let create_t3 = |_: i64, record: String| record.replace("\"n\":3", "\"n\":30");
    let edited_seq = {
        let export = audit(original.path(), &["export"]);
        String::from_utf8_lossy(&export.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .find(|r| r["action"] == "entity.create" && r["resourceId"] == "t3")
            .and_then(|r| r["seq"].as_i64())
            .expect("t3's record")
    };
    let fresh = || {
        let copy = tempfile::tempdir().expect("temp dir");
        copy_dir(original.path(), copy.path());
        // Only the operator's copy of a checkpoint counts here.
        std::fs::remove_dir_all(copy.path().join("portolan-data/audit-checkpoints")).expect("rm");
        copy
    };

    // Everything deleted and the head reset: a consistent, empty log.
    let wiped = fresh();
    tamper(
        wiped.path(),
        &format!("DELETE FROM audit_log; UPDATE audit_head SET seq = 0, hash = '{}'", portolan_model::audit::GENESIS),
    )
    .await;
    let (ok, text) = verdict(wiped.path());
    assert!(ok, "without a checkpoint an emptied log looks whole: {text}");
    let (ok, text) = verdict_with(wiped.path(), &held);
    assert!(!ok, "the wipe went unnoticed: {text}");
    assert!(text.contains(&format!("records 1 to {last} were removed")), "{text}");

    // A record edited and the chain recomputed after it: its MAC no longer matches.
    let rechained = fresh();
    rechain(rechained.path(), edited_seq, create_t3, false).await;
    for args in [&["verify"][..], &held[..]] {
        let (ok, text) = verdict_with(rechained.path(), args);
        assert!(!ok, "the rewrite went unnoticed: {text}");
        assert!(text.contains(&format!("record {edited_seq} was rewritten: its MAC does not match")), "{text}");
    }

    // The same with every MAC dropped: it would pass as a log from before audit keys, so without a
    // checkpoint verify refuses unsigned records unless told how many predate the key; the
    // checkpoint catches it anyway.
    let stripped = fresh();
    rechain(stripped.path(), edited_seq, create_t3, true).await;
    let (ok, text) = verdict(stripped.path());
    assert!(!ok, "a log stripped of its MACs passed: {text}");
    assert!(text.contains("have no MAC and no checkpoint says where the audit key began"), "{text}");
    let (ok, text) = verdict_with(stripped.path(), &held);
    assert!(!ok, "the rewrite went unnoticed: {text}");
    assert!(text.contains(&format!("record {last} is not the record the checkpoint of")), "{text}");

    // The newest three records removed and the head moved back to match.
    let cut = fresh();
    tamper(
        cut.path(),
        &format!(
            "DELETE FROM audit_log WHERE seq > {keep};
             UPDATE audit_head SET seq = {keep}, hash = (SELECT hash FROM audit_log WHERE seq = {keep})",
            keep = last - 3
        ),
    )
    .await;
    let (ok, text) = verdict(cut.path());
    assert!(ok, "without a checkpoint a cut log looks whole: {text}");
    let (ok, text) = verdict_with(cut.path(), &held);
    assert!(!ok, "the cut went unnoticed: {text}");
    assert!(text.contains(&format!("records {} to {last} were removed", last - 2)), "{text}");

    // A checkpoint edited to match a rewritten log does not check out.
    let mut forged = checkpoint.clone();
    forged["seq"] = serde_json::json!(last - 3);
    std::fs::write(kept.path().join("forged.json"), forged.to_string()).expect("write");
    let forged_path = kept.path().join("forged.json").to_string_lossy().into_owned();
    let (ok, text) = verdict_with(cut.path(), &["verify", "--checkpoint", &forged_path]);
    assert!(!ok && text.contains("the checkpoint's MAC does not match"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_writes_checkpoints_and_verify_holds_the_log_to_the_newest() {
    let dir = tempfile::tempdir().expect("temp dir");
    recorded(dir.path()).await;
    let checkpoints = dir.path().join("portolan-data/audit-checkpoints");
    let names: Vec<String> = std::fs::read_dir(&checkpoints)
        .expect("the server wrote checkpoints")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("checkpoint-")), "{names:?}");
    let (ok, text) = verdict(dir.path());
    assert!(ok && text.contains("it still reaches the checkpoint of"), "{text}");

    // Admins can have one signed on demand; members cannot.
    let server = Server::start(&[], dir.path());
    let client = crate::http();
    let signed = client.post(format!("{}/api/v1/audit-log/checkpoints", server.base)).send().await.expect("post");
    assert_eq!(signed.status().as_u16(), 200);
    let body: serde_json::Value = signed.json().await.expect("json");
    let head = body["checkpoint"]["seq"].as_i64().expect("seq");
    let made = crate::admin(&[], dir.path(), &["create-user", "viewer", "--service"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let token = crate::admin(&[], dir.path(), &["create-token", "--user", "viewer", "--name", "t"]);
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let member = reqwest::Client::new()
        .post(format!("{}/api/v1/audit-log/checkpoints", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("post");
    assert_eq!(member.status().as_u16(), 403, "a member may not sign checkpoints");
    assert!(server.terminate().success());
    // A stopped server leaves its database as one file: the write-ahead log folded back in.
    assert!(!dir.path().join("portolan-data/portolan.db-wal").exists(), "the server closed its database");

    // The newest record removed after the server stopped: the server's own checkpoint tells.
    tamper(
        dir.path(),
        "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log);
         UPDATE audit_head SET seq = seq - 1, hash = (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1)",
    )
    .await;
    let (ok, text) = verdict(dir.path());
    assert!(!ok && text.contains("was removed"), "{text}");
    assert!(head > 10, "the admin's checkpoint reached the head: {body}");
}

#[test]
fn commands_that_inspect_data_refuse_a_missing_data_directory_and_create_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in
        [&["audit", "verify"][..], &["audit", "export"], &["admin", "create-token", "--user", "x", "--name", "y"]]
    {
        let output = Command::new(env!("CARGO_BIN_EXE_portolan"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("PORTOLAN_DATA")
            .env_remove("PORTOLAN_DATABASE_URL")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} passed: {}", String::from_utf8_lossy(&output.stdout));
        assert!(stderr.contains("there is no data directory portolan-data"), "{args:?}: {stderr}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0, "{args:?} created something");
    }
    // A directory without a database is refused too, and stays empty.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let output = audit(dir.path(), &["verify", "--data", &empty.to_string_lossy()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("holds no Portolan database"));
    assert_eq!(std::fs::read_dir(&empty).expect("read").count(), 0);
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
