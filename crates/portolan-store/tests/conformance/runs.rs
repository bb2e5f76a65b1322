//! Actions, runs, logs, leases, secrets, runner tokens and settings: the same on every backend.

use portolan_model::action::{Action, BackendKind};
use portolan_model::run::{Run, RunStatus, RunTrigger};
use portolan_model::{EntityRef, Millis};
use portolan_store::actions::{CREATED, DELETED, UPDATED};
use portolan_store::{ActionRecord, KpiSample, NewRunLog, RunFilter, RunnerToken, Store, StoreError};
use serde_json::{Map, Value, json};

fn action(identifier: &str) -> ActionRecord {
    let action = Action::from_json(json!({
        "identifier": identifier,
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "RUNNER", "labels": ["db"], "task": "noop"}
    }))
    .expect("valid action");
    ActionRecord { action, created_at: 1, created_by: "ann".into(), updated_at: 1, updated_by: "ann".into() }
}

pub(crate) fn run(id: &str, action: &str, by: &str, at: Millis) -> Run {
    Run {
        id: id.into(),
        action: action.into(),
        action_title: None,
        blueprint: Some("service".into()),
        entity: Some("cart".into()),
        status: RunStatus::Queued,
        status_label: None,
        links: vec![],
        summary: None,
        external_run_id: None,
        reason: None,
        inputs: Map::new(),
        backend: BackendKind::Runner,
        trigger: RunTrigger {
            by: by.into(),
            origin: "api".into(),
            at,
            event: None,
            teams: vec![],
            override_reason: None,
        },
        payload: None,
        attempt: 0,
        depth: 0,
        created_at: at,
        updated_at: at,
        ended_at: None,
        approval: None,
    }
}

pub async fn actions_and_runs_round_trip_and_filter(store: &dyn Store) {
    let mut tx = store.write().await.expect("tx");
    tx.put_action(&action("migrate"), true).await.expect("insert");
    tx.commit().await.expect("commit");
    // A second insert conflicts (and, as after any conflict, its transaction is dropped).
    let mut tx = store.write().await.expect("tx");
    assert!(matches!(tx.put_action(&action("migrate"), true).await, Err(StoreError::Conflict(_))));
    drop(tx);
    let mut tx = store.write().await.expect("tx");
    tx.put_action(&action("seed"), false).await.expect("upsert");
    let labels = ["db".to_string()];
    let a = tx.insert_run(&run("r_a", "migrate", "ann", 10), Some(&labels)).await.expect("run a");
    let b = tx.insert_run(&run("r_b", "seed", "bob", 20), None).await.expect("run b");
    assert!(b > a, "seq grows");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("tx");
    assert_eq!(
        tx.actions().await.expect("actions").iter().map(|r| r.action.identifier.as_str()).collect::<Vec<_>>(),
        ["migrate", "seed"]
    );
    assert_eq!(tx.run("r_a", false).await.expect("read"), Some(run("r_a", "migrate", "ann", 10)));
    let ids = |rows: Vec<(i64, Run)>| rows.into_iter().map(|(_, r)| r.id).collect::<Vec<_>>();
    let all = tx.list_runs(&RunFilter::default(), 10).await.expect("list");
    assert_eq!(ids(all.clone()), ["r_b", "r_a"], "newest first");
    let by_bob = RunFilter { created_by: Some("bob".into()), ..RunFilter::default() };
    assert_eq!(ids(tx.list_runs(&by_bob, 10).await.expect("list")), ["r_b"]);
    let older = RunFilter { before: Some(all[0].0), ..RunFilter::default() };
    assert_eq!(ids(tx.list_runs(&older, 10).await.expect("list")), ["r_a"]);
    let done = RunFilter { statuses: vec![RunStatus::Success, RunStatus::Failure], ..RunFilter::default() };
    assert!(tx.list_runs(&done, 10).await.expect("list").is_empty());
    drop(tx);

    let mut tx = store.write().await.expect("tx");
    let mut finished = run("r_b", "seed", "bob", 20);
    finished.end(RunStatus::Failure, "broken", 30).expect("may end");
    tx.update_run(&finished).await.expect("update");
    tx.append_run_logs(
        "r_b",
        &[
            NewRunLog { at: 21, stream: "stdout".into(), message: "one".into() },
            NewRunLog { at: 22, stream: "stderr".into(), message: "two".into() },
        ],
    )
    .await
    .expect("logs");
    let service = |id: &str| EntityRef { blueprint: "service".into(), identifier: id.into() };
    tx.link_run_entities("r_b", &[(service("cart"), CREATED)], 23).await.expect("link");
    tx.link_run_entities("r_b", &[(service("cart"), UPDATED), (service("old"), DELETED)], 24).await.expect("link");
    assert!(tx.delete_action("seed").await.expect("delete"));
    assert!(!tx.delete_action("seed").await.expect("delete"));
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("tx");
    assert_eq!(
        tx.run("r_b", false).await.expect("read").map(|r| (r.status, r.reason, r.ended_at)),
        Some((RunStatus::Failure, Some("broken".into()), Some(30)))
    );
    let logs = tx.run_logs("r_b", 0, 10).await.expect("logs");
    assert_eq!(logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(tx.run_logs("r_b", logs[0].seq, 10).await.expect("logs").len(), 1, "a cursor skips what was read");
    let affected = tx.run_entities("r_b").await.expect("affected");
    assert_eq!(
        affected,
        [(service("cart"), CREATED.to_string()), (service("old"), DELETED.to_string())],
        "created stays created"
    );
    assert_eq!(tx.entity_runs(&service("cart"), 5).await.expect("runs"), [("r_b".to_string(), CREATED.to_string())]);
}

pub async fn runner_runs_are_leased_to_one_claimer(store: &dyn Store) {
    let labels = ["db".to_string()];
    let mut tx = store.write().await.expect("tx");
    tx.insert_run(&run("r_1", "migrate", "ann", 10), Some(&labels)).await.expect("run");
    tx.commit().await.expect("commit");

    // Two claimers at once: the first holds the run's row; the second skips it (or, on SQLite,
    // waits for the single writer) and then finds it no longer queued.
    let mut first = store.write().await.expect("tx");
    let linux_only = ["linux".to_string()];
    assert_eq!(first.claimable_run(&linux_only).await.expect("claimable"), None, "a runner without 'db' gets nothing");
    let runner_labels = ["db".to_string(), "linux".to_string()];
    let mut claimed = first.claimable_run(&runner_labels).await.expect("claimable").expect("the run");
    assert_eq!(claimed.id, "r_1");
    claimed.attempt = 1;
    claimed.transition(RunStatus::InProgress, 11).expect("may start");
    first.update_run(&claimed).await.expect("update");
    assert!(first.lease_run("r_1", "runner-a", 1_000, false).await.expect("lease"));
    let second = async {
        let mut second = store.write().await.expect("tx");
        let found = second.claimable_run(&runner_labels).await.expect("claimable");
        second.commit().await.expect("commit");
        found
    };
    let commit_first = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        first.commit().await.expect("commit");
    };
    let (seen_by_second, ()) = tokio::join!(second, commit_first);
    assert_eq!(seen_by_second, None, "a claimed run is nobody else's");

    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.run_lease("r_1").await.expect("lease"), Some(("runner-a".into(), 1_000)));
    assert!(!tx.lease_run("r_1", "runner-b", 2_000, true).await.expect("renew"), "only the holder renews");
    assert!(tx.lease_run("r_1", "runner-a", 2_000, true).await.expect("renew"));
    assert!(tx.lost_runs(1_999, 10).await.expect("lost").is_empty());
    assert_eq!(tx.lost_runs(2_001, 10).await.expect("lost").len(), 1);
    claimed.end(RunStatus::Success, "done", 12).expect("may end");
    tx.update_run(&claimed).await.expect("update");
    assert_eq!(tx.run_lease("r_1").await.expect("lease"), None, "an ended run holds no lease");
    assert!(tx.lost_runs(9_999, 10).await.expect("lost").is_empty());
    tx.commit().await.expect("commit");

    // A backlog for one label does not hide another label's run.
    let mut tx = store.write().await.expect("tx");
    let prod = ["prod".to_string()];
    for i in 0..300 {
        tx.insert_run(&run(&format!("r_prod_{i}"), "deploy", "ann", 100 + i), Some(&prod)).await.expect("run");
    }
    let dev = ["dev".to_string()];
    tx.insert_run(&run("r_dev", "deploy", "ann", 500), Some(&dev)).await.expect("run");
    tx.commit().await.expect("commit");
    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.claimable_run(&dev).await.expect("claimable").map(|r| r.id), Some("r_dev".into()));
}

pub async fn secrets_tokens_and_settings_are_kept(store: &dyn Store) {
    let mut tx = store.write().await.expect("tx");
    assert!(tx.put_secret("db", b"sealed-1", 5, "ann").await.expect("put"));
    assert!(!tx.put_secret("db", b"sealed-2", 6, "bob").await.expect("replace"));
    let token = RunnerToken {
        id: "rt_1".into(),
        name: "runner".into(),
        token_sha256: "abc".into(),
        labels: vec!["db".into(), "linux".into()],
        created_at: 5,
        created_by: "ann".into(),
        last_used_at: None,
        revoked_at: None,
    };
    tx.insert_runner_token(&token).await.expect("token");
    tx.touch_runner_token("rt_1", 9).await.expect("touch");
    assert_eq!(tx.setting_or_insert("key", "first").await.expect("setting"), "first");
    assert_eq!(tx.setting_or_insert("key", "second").await.expect("setting"), "first", "the first value stays");
    tx.put_setting("key", "third").await.expect("put setting");
    assert_eq!(tx.setting("key").await.expect("setting").as_deref(), Some("third"), "a put replaces the value");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.secret("db").await.expect("secret"), Some(b"sealed-2".to_vec()));
    let meta = tx.secrets().await.expect("list");
    assert_eq!((meta[0].created_by.as_str(), meta[0].updated_by.as_str(), meta[0].updated_at), ("ann", "bob", 6));
    let found = tx.runner_token("abc").await.expect("by hash").expect("found");
    assert_eq!((found.labels.clone(), found.last_used_at), (vec!["db".to_string(), "linux".to_string()], Some(9)));
    assert!(tx.revoke_runner_token("rt_1", 10).await.expect("revoke"));
    assert!(!tx.revoke_runner_token("rt_1", 11).await.expect("revoke again"));
    assert_eq!(tx.runner_tokens().await.expect("list")[0].revoked_at, Some(10));
    assert!(tx.delete_secret("db").await.expect("delete"));
    assert_eq!(tx.secret("db").await.expect("secret"), None);
    tx.commit().await.expect("commit");
}

pub async fn kpi_samples_are_one_per_day_and_expire(store: &dyn Store) {
    const DAY: Millis = 86_400_000;
    let sample = |team: &str, label: &str, value: f64| KpiSample {
        metric: "scorecard/service/readiness".into(),
        team: team.into(),
        label: label.into(),
        value,
    };
    let mut tx = store.write().await.expect("tx");
    tx.put_samples(DAY, &[sample("*", "Gold", 3.0), sample("team-a", "Gold", 1.0)]).await.expect("day 1");
    tx.put_samples(2 * DAY, &[sample("*", "Gold", 4.0)]).await.expect("day 2");
    tx.put_samples(2 * DAY, &[sample("*", "Gold", 5.0), sample("", "Bronze", 2.0)]).await.expect("day 2 again");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("tx");
    let all = tx.samples(Some("scorecard/service/readiness"), 0, 10 * DAY).await.expect("samples");
    let read: Vec<(Millis, &str, &str, f64)> =
        all.iter().map(|(day, s)| (*day, s.team.as_str(), s.label.as_str(), s.value)).collect();
    assert_eq!(
        read,
        vec![
            (DAY, "*", "Gold", 3.0),
            (DAY, "team-a", "Gold", 1.0),
            (2 * DAY, "", "Bronze", 2.0),
            (2 * DAY, "*", "Gold", 5.0)
        ],
        "by day, team and label; a day's value replaced by its last sample"
    );
    assert_eq!(tx.samples(Some("scorecard/service/readiness"), 2 * DAY, 3 * DAY).await.expect("samples").len(), 2);
    assert!(tx.samples(Some("scorecard/service/other"), 0, 10 * DAY).await.expect("samples").is_empty());
    assert_eq!(tx.samples(None, 0, 10 * DAY).await.expect("every metric").len(), 4);
    drop(tx);
    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.delete_samples_before(2 * DAY).await.expect("expire"), 2);
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("tx");
    assert_eq!(tx.samples(Some("scorecard/service/readiness"), 0, 10 * DAY).await.expect("samples").len(), 2);
}

pub async fn kpi_documents_are_kept_per_kind(store: &dyn Store) {
    let mut tx = store.write().await.expect("tx");
    tx.put_kpi_document("initiative", "gold", &json!({"identifier": "gold", "v": 1})).await.expect("put");
    tx.put_kpi_document("initiative", "gold", &json!({"identifier": "gold", "v": 2})).await.expect("replace");
    tx.put_kpi_document("initiative", "alpha", &json!({"identifier": "alpha"})).await.expect("put");
    tx.put_kpi_document("dashboard", "gold", &json!({"identifier": "gold", "widgets": []})).await.expect("other kind");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("tx");
    assert_eq!(tx.kpi_document("initiative", "gold").await.expect("read"), Some(json!({"identifier": "gold", "v": 2})));
    let ids: Vec<Value> =
        tx.kpi_documents("initiative").await.expect("list").iter().map(|d| d["identifier"].clone()).collect();
    assert_eq!(ids, vec![json!("alpha"), json!("gold")], "by identifier, one kind only");
    drop(tx);
    let mut tx = store.write().await.expect("tx");
    assert!(tx.delete_kpi_document("initiative", "gold").await.expect("delete"));
    assert!(!tx.delete_kpi_document("initiative", "gold").await.expect("delete again"));
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("tx");
    assert_eq!(tx.kpi_document("initiative", "gold").await.expect("read"), None);
    assert!(tx.kpi_document("dashboard", "gold").await.expect("read").is_some(), "the other kind stays");
}
