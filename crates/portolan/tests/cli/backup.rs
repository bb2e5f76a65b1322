//! `portolan backup` of a server that is writing, and `portolan restore`: the restored copy serves
//! every entity, account and secret, and its audit log verifies; a restore into a full directory,
//! with the wrong secrets key, or of a database from a newer Portolan is refused and writes
//! nothing. And `portolan probe`, the container's health check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::json;

use crate::Server;

/// How many notes the server at `base` holds, page by page.
async fn notes(base: &str) -> u64 {
    let (mut count, mut cursor) = (0, String::new());
    loop {
        let url = format!("{base}/api/v1/blueprints/note/entities?limit=1000{cursor}");
        let body: serde_json::Value = crate::http().get(url).send().await.expect("get").json().await.expect("json");
        count += body["entities"].as_array().unwrap_or_else(|| panic!("entities: {body}")).len() as u64;
        match body["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return count,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_server_writes_restores_whole_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--demo"], dir.path());
    let client = crate::http();
    let secret = json!({"name": "deploy_key", "value": "s3cret-value"});
    let made = client.post(format!("{}/api/v1/secrets", server.base)).json(&secret).send().await.expect("post");
    assert_eq!(made.status().as_u16(), 201);
    let blueprint = json!({"identifier": "note", "title": "Note", "schema": {"properties": {}}});
    let made = client.post(format!("{}/api/v1/blueprints", server.base)).json(&blueprint).send().await.expect("post");
    assert_eq!(made.status().as_u16(), 201);
    let before = notes(&server.base).await;

    // A writer adds notes for as long as the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let (stop, written, base) = (stop.clone(), written.clone(), server.base.clone());
        async move {
            let client = crate::http();
            while !stop.load(Ordering::SeqCst) {
                let n = written.load(Ordering::SeqCst);
                let body = json!({"identifier": format!("busy-{n}"), "title": format!("Busy {n}")});
                let reply = client.post(format!("{base}/api/v1/blueprints/note/entities")).json(&body).send().await;
                assert_eq!(reply.expect("post").status().as_u16(), 201);
                written.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    while written.load(Ordering::SeqCst) < 20 {
        assert!(!writer.is_finished(), "the writer stopped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let path = dir.path().to_path_buf();
    let (ok, said) = tokio::task::spawn_blocking(move || crate::portolan(&path, &["backup", "--to", "backup"]))
        .await
        .expect("backup");
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the writer");
    assert!(ok, "{said}");
    assert!(said.contains("audit log of") && said.contains("secrets (all open with the secrets key)"), "{said}");
    let after = notes(&server.base).await;
    assert!(after >= before + 20, "the server kept writing: {before} → {after}");
    // A container's health check asks the server itself; a server that is gone is not ready.
    let readyz = format!("{}/readyz", server.base);
    let (ok, said) = crate::portolan(dir.path(), &["probe", &readyz]);
    assert!(ok, "{said}");
    server.kill();
    let (ok, said) = crate::portolan(dir.path(), &["probe", &readyz]);
    assert!(!ok && said.contains("not ready"), "{said}");

    // Into a new directory: everything the backup holds, served and verified.
    let (ok, said) = crate::portolan(dir.path(), &["restore", "--from", "backup", "--data", "restored"]);
    assert!(ok, "{said}");
    let restored = Server::start(&["--data", "restored"], dir.path());
    let count = notes(&restored.base).await;
    assert!((before + 20..=after).contains(&count), "a snapshot between {before} and {after}: {count}");
    let listed = |path: &'static str, field: &'static str, key: &'static str| {
        let url = format!("{}{path}", restored.base);
        async move {
            let body: serde_json::Value = crate::http().get(url).send().await.expect("get").json().await.expect("json");
            body[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s[key].as_str().map(String::from))
                .collect::<Vec<_>>()
        }
    };
    assert!(listed("/api/v1/secrets", "secrets", "name").await.contains(&"deploy_key".to_string()));
    assert!(listed("/api/v1/users", "users", "identifier").await.contains(&"alice@portolan.dev".to_string()));
    restored.kill();
    let (ok, said) = crate::portolan(dir.path(), &["audit", "verify", "--data", "restored"]);
    assert!(ok && said.contains("the audit log is intact"), "{said}");

    // Into a directory that holds data: refused.
    let (ok, said) = crate::portolan(dir.path(), &["restore", "--from", "backup", "--data", "restored"]);
    assert!(!ok && said.contains("is not empty"), "{said}");

    // With a secrets key other than the one that sealed the secrets: refused, nothing written.
    let other_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (ok, said) = crate::portolan(
        dir.path(),
        &["restore", "--from", "backup", "--data", "elsewhere", "--secrets-key", other_key],
    );
    assert!(!ok && said.contains("the secrets key does not open the backup's secret"), "{said}");
    assert!(said.contains("nothing was restored"), "{said}");
    assert!(!dir.path().join("elsewhere").exists(), "the refused restore wrote nothing");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with(".portolan-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "no staging left behind: {leftovers:?}");

    // A backup a newer Portolan migrated further: refused, naming both versions.
    let future = dir.path().join("future");
    std::fs::create_dir(&future).expect("mkdir");
    std::fs::copy(dir.path().join("backup/portolan.db"), future.join("portolan.db")).expect("copy");
    let url = format!("sqlite://{}", future.join("portolan.db").display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.expect("open");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer Portolan', 1, X'00', 0)",
    )
    .execute(&pool)
    .await
    .expect("insert");
    sqlx::query("UPDATE settings SET value = '9.9.9' WHERE name = 'portolan_version'")
        .execute(&pool)
        .await
        .expect("set");
    pool.close().await;
    let (ok, said) = crate::portolan(dir.path(), &["restore", "--from", "future", "--data", "from-the-future"]);
    assert!(!ok, "{said}");
    assert!(said.contains("by Portolan 9.9.9 to schema version 9999"), "{said}");
    assert!(said.contains(&format!("Portolan {} does not know", env!("CARGO_PKG_VERSION"))), "{said}");
    assert!(!dir.path().join("from-the-future").exists());
    let (ok, said) = crate::portolan(dir.path(), &["serve", "--data", "future", "--listen", "127.0.0.1:0"]);
    assert!(!ok && said.contains("schema version 9999"), "serve refuses it too: {said}");
}

#[test]
fn backup_refuses_a_directory_that_holds_something_and_postgres() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("full")).expect("mkdir");
    std::fs::write(dir.path().join("full/note"), "keep me").expect("write");
    let (ok, said) = crate::portolan(dir.path(), &["backup", "--data", "full", "--to", "full"]);
    assert!(!ok && said.contains("is not empty"), "{said}");
    assert_eq!(std::fs::read_to_string(dir.path().join("full/note")).expect("kept"), "keep me");
    let (ok, said) = crate::portolan(dir.path(), &["backup", "--data", "nothing-here", "--to", "out"]);
    assert!(!ok && said.contains("holds no Portolan database"), "{said}");
    assert!(!dir.path().join("out").exists(), "a failed backup leaves nothing");
    let url = "postgres://postgres@127.0.0.1:1/portolan";
    let (ok, said) = crate::portolan(dir.path(), &["backup", "--database-url", url, "--to", "out"]);
    assert!(!ok && said.contains("pg_dump"), "{said}");
}
