//! The cases, written once against the `Store` trait.

use portolan_model::{Blueprint, Entity, EntityRef, Reference};
use portolan_store::{BlueprintRecord, EntityWrite, Referrer, Store, StoreError, Tx};
use serde_json::{Map, Value, json};

fn blueprint(identifier: &str, relations: Value) -> BlueprintRecord {
    let blueprint = Blueprint::from_json(json!({
        "identifier": identifier,
        "title": identifier.to_uppercase(),
        "schema": {"properties": {"n": {"type": "number"}}},
        "relations": relations
    }))
    .expect("valid blueprint");
    BlueprintRecord {
        blueprint,
        created_at: 1_000,
        created_by: "tester".into(),
        updated_at: 2_000,
        updated_by: "tester".into(),
    }
}

fn entity(blueprint: &str, identifier: &str, n: i64) -> Entity {
    let mut properties = Map::new();
    properties.insert("n".into(), json!(n));
    Entity {
        identifier: identifier.into(),
        title: Some(format!("Title of {identifier}")),
        icon: None,
        blueprint: blueprint.into(),
        team: vec!["team-a".into()],
        properties,
        relations: Map::new(),
        scorecards: Map::new(),
        diagnostics: Default::default(),
        version: 1,
        created_at: 1_700_000_000_123,
        created_by: "tester".into(),
        updated_at: 1_700_000_000_123,
        updated_by: "tester".into(),
    }
}

fn reference(via: &str, blueprint: &str, target: &str) -> Reference {
    Reference { via: via.into(), target_blueprint: blueprint.into(), target: target.into(), path: String::new() }
}

async fn put(tx: &mut dyn Tx, entity: &Entity, references: &[Reference]) -> Result<(), StoreError> {
    tx.put_entities(&[EntityWrite { entity: entity.clone(), references: references.to_vec() }]).await
}

async fn setup(store: &dyn Store) {
    let mut tx = store.write().await.expect("write tx");
    tx.put_blueprint(&blueprint("system", json!({}))).await.expect("put system");
    tx.put_blueprint(&blueprint("service", json!({"system": {"target": "system"}}))).await.expect("put service");
    tx.commit().await.expect("commit");
}

pub async fn blueprints_round_trip(store: &dyn Store) {
    setup(store).await;
    let mut tx = store.read().await.expect("read tx");
    let got = tx.blueprint("service").await.expect("get").expect("exists");
    assert_eq!(got, blueprint("service", json!({"system": {"target": "system"}})));
    let all: Vec<String> = tx.blueprints().await.expect("list").into_iter().map(|r| r.blueprint.identifier).collect();
    assert_eq!(all, vec!["service", "system"]);
    drop(tx);

    let mut tx = store.write().await.expect("write tx");
    let mut changed = blueprint("service", json!({}));
    changed.created_at = 5;
    changed.updated_at = 9_000;
    changed.updated_by = "someone".into();
    tx.put_blueprint(&changed).await.expect("replace");
    assert!(tx.delete_blueprint("system").await.expect("delete"));
    assert!(!tx.delete_blueprint("system").await.expect("delete again"));
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read tx");
    let got = tx.blueprint("service").await.expect("get").expect("exists");
    assert_eq!(got.created_at, 1_000, "a replace keeps the creation stamp");
    assert_eq!((got.updated_at, got.updated_by.as_str()), (9_000, "someone"));
    assert!(got.blueprint.relations.is_empty());
    assert!(tx.blueprint("system").await.expect("get").is_none());
}

pub async fn entity_round_trip_and_versioned_update(store: &dyn Store) {
    setup(store).await;
    let mut tx = store.write().await.expect("write tx");
    let shop = entity("system", "shop", 1);
    put(tx.as_mut(), &shop, &[]).await.expect("insert");
    let mut cart = entity("service", "cart", 2);
    cart.relations.insert("system".into(), json!("shop"));
    cart.properties.insert("nested".into(), json!({"a": [1, "two", null, true]}));
    put(tx.as_mut(), &cart, &[reference("system", "system", "shop")]).await.expect("insert");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read tx");
    assert_eq!(tx.entity("service", "cart").await.expect("get"), Some(cart.clone()));
    assert_eq!(tx.entity("system", "cart").await.expect("get"), None, "identifiers are per blueprint");
    drop(tx);

    let mut tx = store.write().await.expect("write tx");
    let mut updated = cart.clone();
    updated.version = 2;
    updated.title = None;
    updated.team = vec![];
    updated.updated_at += 10;
    updated.updated_by = "other".into();
    put(tx.as_mut(), &updated, &[]).await.expect("update");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read tx");
    assert_eq!(tx.entity("service", "cart").await.expect("get"), Some(updated));
    let shop_ref = EntityRef { blueprint: "system".into(), identifier: "shop".into() };
    assert!(tx.referrers(&shop_ref, 10).await.expect("referrers").is_empty(), "an update replaces references");
    drop(tx);

    let mut tx = store.write().await.expect("write tx");
    assert!(tx.delete_entity("service", "cart").await.expect("delete"));
    assert!(!tx.delete_entity("service", "cart").await.expect("delete again"));
    tx.commit().await.expect("commit");
    assert_eq!(store.read().await.expect("read").entity("service", "cart").await.expect("get"), None);
}

pub async fn writes_are_guarded_by_version(store: &dyn Store) {
    setup(store).await;
    let mut tx = store.write().await.expect("write tx");
    put(tx.as_mut(), &entity("system", "shop", 1), &[]).await.expect("insert");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("write tx");
    let err = put(tx.as_mut(), &entity("system", "shop", 2), &[]).await.expect_err("a second version 1");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    drop(tx);

    let mut tx = store.write().await.expect("write tx");
    let mut stale = entity("system", "shop", 3);
    stale.version = 3;
    let fresh = entity("system", "new", 0);
    let err = tx
        .put_entities(&[
            EntityWrite { entity: fresh, references: vec![] },
            EntityWrite { entity: stale, references: vec![] },
        ])
        .await
        .expect_err("version 3 over stored version 1");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    drop(tx);

    let mut tx = store.write().await.expect("write tx");
    let mut next = entity("system", "shop", 4);
    next.version = 2;
    put(tx.as_mut(), &next, &[]).await.expect("version 2 over version 1");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read tx");
    assert_eq!(tx.entity("system", "shop").await.expect("get").map(|e| e.version), Some(2));
    assert_eq!(tx.entity("system", "new").await.expect("get"), None, "the failed call wrote nothing");
}

pub async fn batch_lookups_span_chunks(store: &dyn Store) {
    setup(store).await;
    let mut tx = store.write().await.expect("write tx");
    let writes: Vec<EntityWrite> = (0..1_200)
        .map(|i| EntityWrite { entity: entity("system", &format!("s{i:04}"), i), references: vec![] })
        .collect();
    tx.put_entities(&writes).await.expect("one call, several statements");
    tx.commit().await.expect("commit");

    let mut wanted: Vec<String> = (0..1_200).step_by(2).map(|i| format!("s{i:04}")).collect();
    wanted.push("missing".into());
    wanted.push("s9999".into());
    let mut tx = store.read().await.expect("read tx");
    let existing = tx.existing("system", &wanted).await.expect("existing");
    assert_eq!(existing.len(), 600);
    assert!(existing.contains("s0000") && existing.contains("s1198") && !existing.contains("missing"));
    let entities = tx.entities("system", &wanted).await.expect("entities");
    assert_eq!(entities.len(), 600);
    assert!(entities.iter().all(|e| e.properties["n"].as_i64().is_some_and(|n| n % 2 == 0)));
    assert_eq!(tx.count_entities("system").await.expect("count"), 1_200);
    assert!(tx.existing("service", &wanted).await.expect("existing").is_empty());
}

pub async fn list_pages_in_identifier_order(store: &dyn Store) {
    setup(store).await;
    let mut tx = store.write().await.expect("write tx");
    for id in ["delta", "alpha", "charlie", "bravo", "echo"] {
        put(tx.as_mut(), &entity("system", id, 0), &[]).await.expect("insert");
    }
    put(tx.as_mut(), &entity("service", "aardvark", 0), &[]).await.expect("insert");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read tx");
    let first: Vec<String> =
        tx.list_entities("system", None, 2).await.expect("page").into_iter().map(|e| e.identifier).collect();
    assert_eq!(first, vec!["alpha", "bravo"]);
    let second: Vec<String> =
        tx.list_entities("system", Some("bravo"), 2).await.expect("page").into_iter().map(|e| e.identifier).collect();
    assert_eq!(second, vec!["charlie", "delta"]);
    let last: Vec<String> =
        tx.list_entities("system", Some("delta"), 2).await.expect("page").into_iter().map(|e| e.identifier).collect();
    assert_eq!(last, vec!["echo"]);
    assert!(tx.list_entities("system", Some("echo"), 2).await.expect("page").is_empty());
}

pub async fn referrers_follow_references_and_vanish_with_their_source(store: &dyn Store) {
    setup(store).await;
    let mut tx = store.write().await.expect("write tx");
    put(tx.as_mut(), &entity("system", "shop", 0), &[]).await.expect("insert");
    for id in ["b-cart", "a-pay"] {
        put(
            tx.as_mut(),
            &entity("service", id, 0),
            &[reference("system", "system", "shop"), reference("$team", "_team", "team-a")],
        )
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");

    let shop = EntityRef { blueprint: "system".into(), identifier: "shop".into() };
    let mut tx = store.read().await.expect("read tx");
    let referrers = tx.referrers(&shop, 10).await.expect("referrers");
    let expected: Vec<Referrer> = ["a-pay", "b-cart"]
        .iter()
        .map(|id| Referrer {
            source: EntityRef { blueprint: "service".into(), identifier: (*id).into() },
            via: "system".into(),
        })
        .collect();
    assert_eq!(referrers, expected);
    assert_eq!(tx.referrers(&shop, 1).await.expect("referrers").len(), 1, "the limit holds");
    let team = EntityRef { blueprint: "_team".into(), identifier: "team-a".into() };
    assert_eq!(tx.referrers(&team, 10).await.expect("referrers").len(), 2);
    drop(tx);

    let mut tx = store.write().await.expect("write tx");
    tx.delete_entity("service", "a-pay").await.expect("delete");
    tx.commit().await.expect("commit");
    let remaining = store.read().await.expect("read").referrers(&shop, 10).await.expect("referrers");
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].source.identifier, "b-cart");
}

pub async fn uncommitted_writes_roll_back(store: &dyn Store) {
    setup(store).await;
    {
        let mut tx = store.write().await.expect("write tx");
        put(tx.as_mut(), &entity("system", "ghost", 0), &[]).await.expect("insert");
        tx.put_blueprint(&blueprint("extra", json!({}))).await.expect("put");
        // dropped without commit
    }
    let mut tx = store.read().await.expect("read tx");
    assert_eq!(tx.entity("system", "ghost").await.expect("get"), None);
    assert!(tx.blueprint("extra").await.expect("get").is_none());
}

pub async fn delete_all_entities_of_a_blueprint(store: &dyn Store) {
    setup(store).await;
    let mut tx = store.write().await.expect("write tx");
    for i in 0..7 {
        put(tx.as_mut(), &entity("system", &format!("s{i}"), i), &[]).await.expect("insert");
    }
    put(tx.as_mut(), &entity("service", "keep", 0), &[]).await.expect("insert");
    assert_eq!(tx.delete_entities_of("system").await.expect("delete"), 7);
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read tx");
    assert_eq!(tx.count_entities("system").await.expect("count"), 0);
    assert_eq!(tx.count_entities("service").await.expect("count"), 1);
}

fn job(key: &str) -> portolan_store::NewJob {
    portolan_store::NewJob {
        kind: "test".into(),
        dedupe_key: Some(key.into()),
        payload: json!({"key": key}),
        run_after: 0,
    }
}

/// Claims and completes jobs until none is left; returns the payload keys it handled.
async fn drain(store: &dyn Store, owner: &str) -> Vec<String> {
    let mut handled = Vec::new();
    loop {
        let mut tx = store.write().await.expect("write tx");
        let claimed = tx.claim_jobs(owner, 1_000, 60_000, 3).await.expect("claim");
        tx.commit().await.expect("commit");
        if claimed.is_empty() {
            return handled;
        }
        for job in claimed {
            tokio::task::yield_now().await;
            let mut tx = store.write().await.expect("write tx");
            assert!(tx.complete_job(job.id, owner).await.expect("complete"), "{owner} holds its lease");
            tx.commit().await.expect("commit");
            handled.push(job.payload["key"].as_str().unwrap_or_default().to_string());
        }
    }
}

pub async fn jobs_coalesce_and_each_is_claimed_once(store: &dyn Store) {
    let mut tx = store.write().await.expect("write tx");
    let jobs: Vec<_> = (0..40).map(|i| job(&format!("k{i}"))).chain((0..10).map(|i| job(&format!("k{i}")))).collect();
    tx.enqueue_jobs(&jobs).await.expect("enqueue");
    tx.commit().await.expect("commit");
    assert_eq!(store.read().await.expect("read").count_jobs().await.expect("count"), 40, "waiting duplicates coalesce");

    let (a, b) = tokio::join!(drain(store, "replica-a"), drain(store, "replica-b"));
    let mut all: Vec<String> = a.iter().chain(b.iter()).cloned().collect();
    all.sort();
    let mut expected: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "every job handled exactly once (a: {}, b: {})", a.len(), b.len());
    assert_eq!(store.read().await.expect("read").count_jobs().await.expect("count"), 0);
}

pub async fn an_expired_lease_hands_the_job_over(store: &dyn Store) {
    let mut tx = store.write().await.expect("write tx");
    tx.enqueue_jobs(&[job("only")]).await.expect("enqueue");
    let claimed = tx.claim_jobs("dying", 1_000, 500, 10).await.expect("claim");
    tx.commit().await.expect("commit");
    assert_eq!(claimed.len(), 1);

    let mut tx = store.write().await.expect("write tx");
    assert!(tx.claim_jobs("other", 1_400, 500, 10).await.expect("claim").is_empty(), "leased jobs are not claimable");
    let taken = tx.claim_jobs("other", 1_600, 500, 10).await.expect("claim");
    tx.commit().await.expect("commit");
    assert_eq!(taken.len(), 1, "after the lease runs out another worker takes the job");
    assert_eq!(taken[0].attempts, 2);

    let mut tx = store.write().await.expect("write tx");
    assert!(!tx.complete_job(taken[0].id, "dying").await.expect("complete"), "the first owner lost its lease");
    drop(tx);

    // A newer change to the same key waits beside the claimed job; releasing the claimed one
    // then drops it, since the waiting one covers it.
    let mut tx = store.write().await.expect("write tx");
    tx.enqueue_jobs(&[job("only")]).await.expect("enqueue");
    assert_eq!(tx.count_jobs().await.expect("count"), 2);
    tx.release_job(taken[0].id, "other", 2_000).await.expect("release");
    assert_eq!(tx.count_jobs().await.expect("count"), 1);
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("write tx");
    let next = tx.claim_jobs("other", 2_000, 500, 10).await.expect("claim");
    assert_eq!(next.len(), 1);
    tx.release_job(next[0].id, "other", 9_000).await.expect("release");
    assert!(tx.claim_jobs("other", 3_000, 500, 10).await.expect("claim").is_empty(), "released for later");
    assert_eq!(tx.claim_jobs("other", 9_000, 500, 10).await.expect("claim").len(), 1);
}

pub async fn singleton_work_has_one_holder_and_is_handed_over(store: &dyn Store) {
    let mut tx = store.write().await.expect("write tx");
    assert_eq!(tx.acquire_singleton("sweeper", "a", 1_000, 500).await.expect("acquire"), Some(json!({})));
    assert_eq!(tx.acquire_singleton("sweeper", "b", 1_200, 500).await.expect("acquire"), None, "held by a");
    assert!(tx.acquire_singleton("sweeper", "a", 1_400, 500).await.expect("renew").is_some(), "a renews");
    assert!(tx.save_singleton("sweeper", "a", &json!({"sweptUntil": 1_400})).await.expect("save"));
    assert_eq!(tx.acquire_singleton("sweeper", "b", 1_800, 500).await.expect("acquire"), None, "a renewed until 1900");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("write tx");
    let state = tx.acquire_singleton("sweeper", "b", 2_000, 500).await.expect("acquire");
    assert_eq!(state, Some(json!({"sweptUntil": 1_400})), "b takes over a's expired lease, with a's progress");
    assert!(!tx.save_singleton("sweeper", "a", &json!({})).await.expect("save"), "a no longer holds it");
    assert_eq!(tx.singleton_owner("sweeper").await.expect("owner"), Some(("b".to_string(), 2_500)));

    let expiry = ("service".to_string(), "cart".to_string(), "ttl".to_string(), 1_000);
    assert_eq!(tx.record_expiries(std::slice::from_ref(&expiry)).await.expect("record"), vec![true]);
    assert_eq!(
        tx.record_expiries(&[expiry.clone(), (expiry.0, expiry.1, expiry.2, 2_000)]).await.expect("record"),
        vec![false, true]
    );
}

pub async fn what_a_writer_read_cannot_be_deleted_under_it(store: &dyn Store) {
    setup(store).await;
    let mut tx = store.write().await.expect("write tx");
    put(tx.as_mut(), &entity("system", "shop", 1), &[]).await.expect("insert");
    tx.commit().await.expect("commit");

    // A checks that "shop" exists before pointing at it; B wants to delete "shop".
    let mut a = store.write().await.expect("write tx");
    assert!(a.existing("system", &["shop".to_string()]).await.expect("existing").contains("shop"));
    let deleter = async {
        let mut b = store.write().await.expect("write tx");
        let found = b.lock_entity("system", "shop").await.expect("lock");
        let referrers = b
            .referrers(&EntityRef { blueprint: "system".into(), identifier: "shop".into() }, 10)
            .await
            .expect("referrers");
        (found.is_some(), referrers.len())
    };
    let writer = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        put(a.as_mut(), &entity("service", "cart", 0), &[reference("system", "system", "shop")]).await.expect("insert");
        a.commit().await.expect("commit");
    };
    let (deleter_saw, ()) = tokio::join!(deleter, writer);
    assert_eq!(deleter_saw, (true, 1), "the deleter waited for the writer, then saw its reference");
}
