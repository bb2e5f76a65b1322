//! The store conformance suite: every case runs against SQLite, and against PostgreSQL when
//! `PORTOLAN_TEST_DATABASE_URL` is set (then a connection failure fails the test).

mod identity;
mod runs;
mod search;
mod suite;
mod versions;

use std::sync::Arc;

use portolan_store::Store;

/// A fresh store and whatever keeps it alive (a temporary directory).
pub struct Fresh {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send>,
}

pub async fn sqlite_store() -> Fresh {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = portolan_store::open(&dir.path().to_string_lossy()).await.expect("sqlite store opens");
    Fresh { store, _guard: Box::new(dir) }
}

/// A fresh schema in the database `PORTOLAN_TEST_DATABASE_URL` names, or `None` when it is unset.
/// When it is set, failing to connect fails the test.
pub async fn postgres_store() -> Option<Fresh> {
    let url = std::env::var("PORTOLAN_TEST_DATABASE_URL").ok()?;
    let schema = format!("conformance_{}", uuid::Uuid::new_v4().simple());
    let store = portolan_store::postgres::PostgresStore::open_in_schema(&url, &schema)
        .await
        .unwrap_or_else(|e| panic!("PORTOLAN_TEST_DATABASE_URL is set but PostgreSQL is unusable: {e}"));
    Some(Fresh { store: std::sync::Arc::new(store), _guard: Box::new(()) })
}

mod cases {
    pub use crate::identity::*;
    pub use crate::runs::*;
    pub use crate::search::{
        aggregates_agree_with_memory, property_indexes_follow_blueprint_changes,
        search_agrees_with_the_in_memory_evaluator,
    };
    pub use crate::suite::*;
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let fresh = crate::sqlite_store().await;
                    crate::cases::$case(fresh.store.as_ref()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(fresh) = crate::postgres_store().await else { return };
                    crate::cases::$case(fresh.store.as_ref()).await;
                }
            )*
        }
    };
}

conformance!(
    blueprints_round_trip,
    entity_round_trip_and_versioned_update,
    writes_are_guarded_by_version,
    batch_lookups_span_chunks,
    list_pages_in_identifier_order,
    referrers_follow_references_and_vanish_with_their_source,
    uncommitted_writes_roll_back,
    delete_all_entities_of_a_blueprint,
    search_agrees_with_the_in_memory_evaluator,
    aggregates_agree_with_memory,
    property_indexes_follow_blueprint_changes,
    jobs_coalesce_and_each_is_claimed_once,
    an_expired_lease_hands_the_job_over,
    singleton_work_has_one_holder_and_is_handed_over,
    what_a_writer_read_cannot_be_deleted_under_it,
    actions_and_runs_round_trip_and_filter,
    runner_runs_are_leased_to_one_claimer,
    secrets_tokens_and_settings_are_kept,
    kpi_samples_are_one_per_day_and_expire,
    kpi_documents_are_kept_per_kind,
    accounts_sessions_and_tokens_are_kept,
    permission_documents_are_replaced_and_removed,
    runs_are_listed_to_their_requester_and_the_owning_teams,
    applied_objects_belong_to_one_source,
    a_due_location_is_claimed_once,
    integrations_are_found_by_key_and_their_events_deduplicated,
    the_audit_log_is_one_gapless_chain_even_with_concurrent_writers,
    audit_records_carry_a_mac_once_the_store_has_a_key,
    entity_records_at_a_time_are_the_newest_up_to_then_of_what_changed_since,
    inboxes_are_kept_per_person_newest_first,
    slack_users_are_linked_one_portolan_user_each,
);

/// Commands that inspect data open an existing store only: a missing directory, a directory
/// without a database, or an empty PostgreSQL database is refused and nothing is created.
#[tokio::test]
async fn opening_an_existing_store_never_creates_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("portolan-data");
    let err = portolan_store::open_existing(&missing.to_string_lossy()).await.err().expect("missing dir refused");
    assert!(err.to_string().contains("no data directory"), "{err}");
    assert!(!missing.exists(), "nothing created");
    std::fs::create_dir(&missing).expect("mkdir");
    let err = portolan_store::open_existing(&missing.to_string_lossy()).await.err().expect("empty dir refused");
    assert!(err.to_string().contains("holds no Portolan database"), "{err}");
    assert_eq!(std::fs::read_dir(&missing).expect("read").count(), 0, "nothing created");
    drop(portolan_store::open(&missing.to_string_lossy()).await.expect("serve creates it"));
    portolan_store::open_existing(&missing.to_string_lossy()).await.expect("then it opens");

    let Ok(admin_url) = std::env::var("PORTOLAN_TEST_DATABASE_URL") else { return };
    let name = format!("portolan_existing_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("PORTOLAN_TEST_DATABASE_URL is usable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create db");
    let mut url = url::Url::parse(&admin_url).expect("URL");
    url.set_path(&name);
    let refused = portolan_store::open_existing(url.as_str()).await.err().map(|e| e.to_string());
    let opened = match &refused {
        None => Err("an empty database was opened".to_string()),
        Some(_) => {
            drop(portolan_store::open(url.as_str()).await.expect("serve sets it up"));
            portolan_store::open_existing(url.as_str()).await.map(|_| ()).map_err(|e| e.to_string())
        }
    };
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&admin)
        .await
        .expect("drop db");
    assert!(refused.is_some_and(|e| e.contains("no Portolan catalog")), "an empty database is refused");
    opened.expect("an existing database opens");
}
