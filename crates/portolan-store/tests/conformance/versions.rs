//! A database that a newer Portolan migrated further is refused when opened, naming both
//! versions, rather than served on a schema this build would misread.

const FUTURE: &str = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                      VALUES (9999, 'from a newer Portolan', true, '', 0)";

fn assert_refused(err: portolan_store::StoreError) {
    let message = err.to_string();
    assert!(message.contains(&format!("by Portolan {}", env!("CARGO_PKG_VERSION"))), "{message}");
    assert!(message.contains("schema version 9999"), "{message}");
    assert!(message.contains("does not know"), "{message}");
}

#[tokio::test]
async fn sqlite_refuses_a_database_from_a_newer_portolan() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(portolan_store::open(&dir.path().to_string_lossy()).await.expect("opens"));
    let url = format!("sqlite://{}", dir.path().join(portolan_store::sqlite::DATABASE_FILE).display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.expect("file");
    sqlx::query(FUTURE).execute(&pool).await.expect("a migration from the future");
    pool.close().await;
    match portolan_store::open(&dir.path().to_string_lossy()).await {
        Ok(_) => panic!("a database from a newer Portolan opened"),
        Err(err) => assert_refused(err),
    }
}

#[tokio::test]
async fn postgres_refuses_a_database_from_a_newer_portolan() {
    let Ok(url) = std::env::var("PORTOLAN_TEST_DATABASE_URL") else { return };
    let schema = format!("versions_{}", uuid::Uuid::new_v4().simple());
    let open = || portolan_store::postgres::PostgresStore::open_in_schema(&url, &schema);
    let store = open().await.expect("PORTOLAN_TEST_DATABASE_URL is set but PostgreSQL is unusable");
    drop(store);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(FUTURE.replace("_sqlx_migrations", &format!("{schema}._sqlx_migrations"))))
        .execute(&pool)
        .await
        .expect("a migration from the future");
    pool.close().await;
    match open().await {
        Ok(_) => panic!("a database from a newer Portolan opened"),
        Err(err) => assert_refused(err),
    }
}
