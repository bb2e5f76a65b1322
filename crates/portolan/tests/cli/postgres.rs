//! `portolan serve` over PostgreSQL: replicas sharing a database, and riding out a database outage.
//! These run when `PORTOLAN_TEST_DATABASE_URL` is set (CI sets it); each makes its own database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::{Server, get_json};

/// A database of its own on the test server, dropped when the guard goes.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Option<TestDatabase> {
        let admin_url = std::env::var("PORTOLAN_TEST_DATABASE_URL").ok()?;
        let name = format!("portolan_cli_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url).await.expect("PORTOLAN_TEST_DATABASE_URL is usable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create db");
        let mut url = url::Url::parse(&admin_url).expect("URL");
        url.set_path(&name);
        Some(TestDatabase { admin_url, name, url: url.to_string() })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop on a thread of its own: Drop cannot await, and the test's runtime may be gone.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

#[tokio::test]
async fn two_replicas_share_one_database() {
    let Some(db) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Server::start(&["--database-url", &db.url, "--demo"], dir.path());
    let b = Server::start(&["--database-url", &db.url, "--demo"], dir.path());
    let client = crate::http();

    let (status, body) = get_json(&format!("{}/readyz", b.base)).await;
    assert_eq!((status, body["database"].as_str()), (200, Some("postgres")));

    // B's live stream hears what A commits (NOTIFY fans it out to every replica).
    let mut stream_b = client.get(format!("{}/api/v1/events", b.base)).send().await.expect("stream");
    let created = client
        .post(format!("{}/api/v1/blueprints/_team/entities", a.base))
        .json(&json!({"identifier": "team-sre", "title": "SRE"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let (status, body) = get_json(&format!("{}/api/v1/blueprints/_team/entities/team-sre", b.base)).await;
    assert_eq!(status, 200, "written on A, read on B at once: {body}");
    assert_eq!(body["entity"]["title"], "SRE");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !seen.contains("team-sre") {
        match tokio::time::timeout_at(deadline, stream_b.chunk()).await {
            Ok(Ok(Some(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("B's stream did not carry A's change ({other:?}): {seen}"),
        }
    }
    assert!(seen.contains("event: entity.created"), "{seen}");

    // Both replicas loaded the demo; the catalog holds it once.
    let (_, services) = get_json(&format!("{}/api/v1/blueprints/service/entities", a.base)).await;
    assert_eq!(services["entities"].as_array().map(Vec::len), Some(2));

    // Optimistic concurrency holds across replicas: the same If-Match wins once.
    let url_a = format!("{}/api/v1/blueprints/_team/entities/team-sre", a.base);
    let url_b = format!("{}/api/v1/blueprints/_team/entities/team-sre", b.base);
    let patch = json!({"title": "Site reliability"});
    let (ra, rb) = tokio::join!(
        client.patch(&url_a).header("if-match", "\"1\"").json(&patch).send(),
        client.patch(&url_b).header("if-match", "\"1\"").json(&patch).send(),
    );
    let mut statuses = [ra.expect("a").status().as_u16(), rb.expect("b").status().as_u16()];
    statuses.sort();
    assert!(statuses == [200, 409] || statuses == [200, 412], "one wins, one is refused: {statuses:?}");
    a.terminate();
    b.terminate();
}

/// A TCP proxy in front of PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (up, _) = watch::channel(true);
        let up_rx = up.subscribe();
        let upstream = Arc::new(upstream);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut up_rx = up_rx.clone();
                if !*up_rx.borrow() {
                    continue; // dropped: the database is "down"
                }
                let upstream = Arc::clone(&upstream);
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream.as_str()).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = up_rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { port, up }
    }
}

// Multi-threaded: `Server::start` blocks while it reads the child's output, and the proxy must
// keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_fast_503s_and_the_server_recovers_by_itself() {
    let Some(db) = TestDatabase::create().await else { return };
    let mut url = url::Url::parse(&db.url).expect("URL");
    let upstream = format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.port)).expect("port");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--database-url", url.as_str()], dir.path());
    let entities = format!("{}/api/v1/blueprints/_team/entities", server.base);
    assert_eq!(get_json(&entities).await.0, 200);

    proxy.up.send_replace(false);
    let started = Instant::now();
    let (status, body) = get_json(&entities).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast: {:?}", started.elapsed());
    assert_eq!(get_json(&format!("{}/readyz", server.base)).await.0, 503);
    assert_eq!(get_json(&format!("{}/healthz", server.base)).await.0, 200, "alive, just not ready");

    proxy.up.send_replace(true);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if get_json(&entities).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get_json(&format!("{}/readyz", server.base)).await.0, 200);
    server.terminate();
}

/// Sets whether new sessions of the test's database are read-only (as on a standby, or a
/// database an operator froze), and ends the current ones so that the server reconnects.
async fn set_read_only(db: &TestDatabase, read_only: bool) {
    let admin = sqlx::PgPool::connect(&db.admin_url).await.expect("admin connection");
    let setting =
        if read_only { "SET default_transaction_read_only = on" } else { "RESET default_transaction_read_only" };
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {} {setting}", db.name)))
        .execute(&admin)
        .await
        .expect("alter");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .execute(&admin)
    .await
    .expect("terminate sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_gone_read_only_refuses_writes_with_503_and_the_server_recovers_by_itself() {
    let Some(db) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--database-url", &db.url], dir.path());
    let client = crate::http();
    let blueprints = format!("{}/api/v1/blueprints", server.base);
    let blueprint = |id: &str| json!({"identifier": id, "title": id});
    assert_eq!(client.post(&blueprints).json(&blueprint("before")).send().await.expect("request").status(), 201);

    set_read_only(&db, true).await;
    // The first requests may meet the ended sessions (503 too); then the read-only database.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let response = client.post(&blueprints).json(&blueprint("during")).send().await.expect("request");
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = response.json().await.expect("json");
        if body["message"].as_str().is_some_and(|m| m.contains("read-only")) {
            break body;
        }
        assert!(Instant::now() < deadline, "no read-only refusal within 15 s: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["error"], "unavailable", "{body}");
    let (status, listed) = get_json(&format!("{blueprints}/before")).await;
    assert_eq!(status, 200, "reads go on: {listed}");

    set_read_only(&db, false).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = client.post(&blueprints).json(&blueprint("during")).send().await.expect("request");
        if response.status() == 201 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(Instant::now() < deadline, "writes did not come back within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!server.output().contains("panicked"), "{}", server.output());
    server.terminate();
}

#[tokio::test]
async fn migrate_store_copies_a_sqlite_deployment_into_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Server::start(&["--demo"], dir.path());
    let client = crate::http();
    let patched = client
        .patch(format!("{}/api/v1/blueprints/service/entities/cart-service", sqlite.base))
        .json(&json!({"properties": {"replicas": 9}}))
        .send()
        .await
        .expect("request");
    assert_eq!(patched.status(), 200);
    let secret = json!({"name": "deploy-key", "value": "k-8d1f"});
    let stored = client.post(format!("{}/api/v1/secrets", sqlite.base)).json(&secret).send().await.expect("request");
    assert_eq!(stored.status(), 201);
    let started = client
        .post(format!("{}/api/v1/actions/update_pod_count/runs", sqlite.base))
        .json(&json!({"entity": "cart-service", "properties": {"replicas": 9}}))
        .send()
        .await
        .expect("request");
    let run: serde_json::Value = started.json().await.expect("JSON");
    let run_id = run["run"]["id"].as_str().expect("run id").to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_json(&format!("{}/api/v1/actions/runs/{run_id}", sqlite.base)).await.1["run"]["status"] != "SUCCESS" {
        assert!(Instant::now() < deadline, "the demo run did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The demo's inventory is pulled at start: its five resources are part of what is copied.
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_json(&format!("{}/api/v1/integrations/cloud-inventory", sqlite.base)).await.1["integration"]["status"]["state"]
        != "ok"
    {
        assert!(Instant::now() < deadline, "the demo inventory was not pulled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The demo's generated history (deployments and incidents of the 90 days before it was first
    // loaded) depends on the day: the total is read, not written down.
    let count = client
        .post(format!("{}/api/v1/entities/aggregate", sqlite.base))
        .json(&json!({"function": "count"}))
        .send()
        .await
        .expect("request");
    let count: serde_json::Value = count.json().await.expect("JSON");
    let entities = count["value"].as_f64().expect("a count") as u64;
    assert!(entities > 100, "the demo's catalog and history: {count}");
    sqlite.terminate();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(["migrate-store", "--from", "portolan-data", "--to", &db.url])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains(&format!(
            "29 blueprints, 2 scorecards, {entities} entities, 44 actions, 2 secrets, 6 accounts, 2 integrations and 1 runs"
        )),
        "{stdout}"
    );

    let again = std::process::Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(["migrate-store", "--from", "portolan-data", "--to", &db.url])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert!(!again.status.success(), "a second copy into a filled database is refused");

    let postgres = Server::start(&["--database-url", &db.url], dir.path());
    let (status, body) = get_json(&format!("{}/api/v1/blueprints/service/entities/cart-service", postgres.base)).await;
    assert_eq!(status, 200);
    assert_eq!(body["entity"]["properties"]["replicas"], 9);
    assert_eq!(body["entity"]["version"], 3, "versions survive the copy");
    assert_eq!(
        body["entity"]["scorecards"]["production-readiness"]["level"], "Gold",
        "scorecard results survive the copy"
    );
    let (_, card) = get_json(&format!("{}/api/v1/blueprints/service/scorecards/ownership", postgres.base)).await;
    assert_eq!(card["scorecard"]["levels"][2]["title"], "Reachable", "scorecards survive the copy");
    let history = format!("{}/api/v1/blueprints/service/scorecards/production-readiness/history", postgres.base);
    let (_, history) = get_json(&history).await;
    assert!(history["history"]["days"].as_array().is_some_and(|d| d.len() >= 89), "level history survives the copy");
    let (_, initiative) = get_json(&format!("{}/api/v1/initiatives/gold-readiness", postgres.base)).await;
    assert!(
        initiative["burnup"].as_array().is_some_and(|d| d.len() >= 60),
        "initiatives survive the copy: {initiative}"
    );
    let refused =
        client.delete(format!("{}/api/v1/blueprints/system/entities/cart-system", postgres.base)).send().await;
    assert_eq!(refused.expect("request").status(), 409, "references survive the copy");
    let (_, logs) = get_json(&format!("{}/api/v1/actions/runs/{run_id}/logs", postgres.base)).await;
    assert!(logs.to_string().contains("scaling cart-service"), "runs and their logs survive the copy: {logs}");
    let (_, runs) = get_json(&format!("{}/api/v1/blueprints/service/entities/cart-service/runs", postgres.base)).await;
    assert_eq!(runs["runs"][0]["run"]["id"], run_id.as_str(), "what runs changed survives the copy");
    let (_, secrets) = get_json(&format!("{}/api/v1/secrets", postgres.base)).await;
    let names: Vec<&str> =
        secrets["secrets"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    assert!(names.contains(&"deploy-key"), "secrets survive the copy: {names:?}");
    let (status, inventory) = get_json(&format!("{}/api/v1/integrations/cloud-inventory", postgres.base)).await;
    assert_eq!((status, &inventory["integration"]["type"]), (200, &json!("rest")), "integrations survive the copy");
    postgres.terminate();
}

/// The current holder of the timer sweeper.
async fn sweeper_owner(store: &dyn portolan_store::Store) -> Option<String> {
    let mut tx = store.read().await.expect("read tx");
    tx.singleton_owner(portolan_server::sweeper::TIMER_SWEEPER).await.expect("owner").map(|(owner, _)| owner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_passes_to_the_survivor_when_a_replica_is_killed() {
    let Some(db) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Server::start(&["--database-url", &db.url, "--demo", "--lease-ms", "1500"], dir.path());
    let store = portolan_store::open(&db.url).await.expect("store");
    let deadline = Instant::now() + Duration::from_secs(3);
    let first = loop {
        if let Some(owner) = sweeper_owner(store.as_ref()).await {
            break owner;
        }
        assert!(Instant::now() < deadline, "nobody took the sweeper");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let b = Server::start(&["--database-url", &db.url, "--lease-ms", "1500"], dir.path());

    // While both live, the sweeper stays with one of them.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sweeper_owner(store.as_ref()).await.as_deref(), Some(first.as_str()), "one holder at a time");
    }

    // A job claimed by a replica that then died is taken over once its lease runs out.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let mut tx = store.write().await.expect("write tx");
    tx.enqueue_jobs(&[portolan_store::NewJob {
        kind: "recompute".into(),
        dedupe_key: Some("test:orphan".into()),
        payload: json!({"blueprint": "system", "identifier": "cart-system"}),
        run_after: now,
    }])
    .await
    .expect("enqueue");
    let orphan = tx.claim_jobs("dead-replica", now, 1_500, 100).await.expect("claim");
    tx.commit().await.expect("commit");
    assert_eq!(orphan.len(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        store.read().await.expect("read").count_jobs().await.expect("count"),
        1,
        "still leased to the dead replica"
    );

    // Kill the sweeper's holder without warning; the survivor takes the sweeper over.
    a.kill();
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let owner = sweeper_owner(store.as_ref()).await;
        if owner.as_deref().is_some_and(|o| o != first) {
            break;
        }
        assert!(Instant::now() < deadline, "the sweeper was not taken over: {owner:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(6);
    while store.read().await.expect("read").count_jobs().await.expect("count") > 0 {
        assert!(Instant::now() < deadline, "the orphaned job was not taken over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = get_json(&format!("{}/readyz", b.base)).await;
    assert_eq!(status, 200);
    b.terminate();
}

/// README's PostgreSQL backup: `pg_dump` of a serving database, `pg_restore` into an empty one,
/// and `portolan audit verify` as the check; a server on the copy serves what was there.
#[tokio::test]
async fn a_pg_dump_restores_into_an_empty_database_that_verifies_and_serves() {
    let Some(db) = TestDatabase::create().await else { return };
    let Some(copy) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--demo", "--database-url", &db.url], dir.path());
    let secret = json!({"name": "deploy-key", "value": "k-8d1f"});
    let stored =
        crate::http().post(format!("{}/api/v1/secrets", server.base)).json(&secret).send().await.expect("request");
    assert_eq!(stored.status(), 201);
    let dump = dir.path().join("portolan.dump");
    let run = |program: &str, args: &[&str]| {
        let output =
            std::process::Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{program} {args:?}: {text}");
        text
    };
    run("pg_dump", &["--format=custom", "--file", &dump.to_string_lossy(), &db.url]);
    server.kill();
    run("pg_restore", &["--no-owner", "--dbname", &copy.url, &dump.to_string_lossy()]);
    let verified = run(env!("CARGO_BIN_EXE_portolan"), &["audit", "verify", "--database-url", &copy.url]);
    assert!(verified.contains("the audit log is intact"), "{verified}");
    let restored = Server::start(&["--database-url", &copy.url], dir.path());
    let (status, service) =
        get_json(&format!("{}/api/v1/blueprints/service/entities/cart-service", restored.base)).await;
    assert_eq!(status, 200, "{service}");
    let (_, secrets) = get_json(&format!("{}/api/v1/secrets", restored.base)).await;
    assert!(secrets.to_string().contains("deploy-key"), "{secrets}");
}
