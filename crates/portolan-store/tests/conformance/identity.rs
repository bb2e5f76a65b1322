//! Accounts, sessions, API tokens, permission documents and run visibility: the same on every
//! backend.

use portolan_model::permission::Role;
use portolan_model::run::Run;
use portolan_model::{Blueprint, Entity, Reference};
use portolan_store::{
    Account, AccountKind, ApiToken, BlueprintRecord, ClientCredentials, EntityWrite, Notification, RunFilter, Session,
    SlackLink, SlackThread, Store,
};
use serde_json::{Map, json};

fn account(user: &str, role: Role) -> Account {
    Account {
        user: user.into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        role,
        kind: AccountKind::Person,
        created_at: 1,
        updated_at: 1,
    }
}

pub async fn accounts_sessions_and_tokens_are_kept(store: &dyn Store) {
    let mut tx = store.write().await.expect("tx");
    tx.put_account(&account("ann", Role::Admin)).await.expect("ann");
    tx.put_account(&Account { kind: AccountKind::Service, password_hash: None, ..account("ci", Role::Member) })
        .await
        .expect("ci");
    let session = Session {
        id_sha256: "s1".into(),
        user: "ann".into(),
        csrf: "c1".into(),
        created_at: 10,
        last_seen_at: 10,
        expires_at: 1_000,
    };
    tx.insert_session(&session).await.expect("session");
    tx.insert_session(&Session { id_sha256: "s2".into(), ..session.clone() }).await.expect("second session");
    let token = ApiToken {
        id: "tok_1".into(),
        user: "ci".into(),
        name: "deploys".into(),
        token_sha256: "h1".into(),
        created_at: 5,
        created_by: "ann".into(),
        expires_at: Some(99),
        last_used_at: None,
        revoked_at: None,
        audience: None,
    };
    tx.insert_api_token(&token).await.expect("token");
    tx.insert_api_token(&ApiToken {
        id: "tok_2".into(),
        user: "ann".into(),
        token_sha256: "h2".into(),
        audience: Some("mcp".into()),
        ..token.clone()
    })
    .await
    .expect("token 2");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.account("ann").await.expect("read"), Some(account("ann", Role::Admin)));
    assert_eq!(tx.account("nobody").await.expect("read"), None);
    assert_eq!(tx.accounts().await.expect("all").iter().map(|a| a.user.as_str()).collect::<Vec<_>>(), ["ann", "ci"]);
    // An upsert changes the role and keeps the creation time.
    tx.put_account(&Account { role: Role::Member, updated_at: 7, ..account("ann", Role::Admin) })
        .await
        .expect("upsert");
    assert_eq!(
        tx.account("ann").await.expect("read").map(|a| (a.role, a.created_at, a.updated_at)),
        Some((Role::Member, 1, 7))
    );

    assert_eq!(tx.session("s1").await.expect("read"), Some(session.clone()));
    tx.touch_session("s1", 20).await.expect("touch");
    assert_eq!(tx.session("s1").await.expect("read").map(|s| s.last_seen_at), Some(20));
    assert!(tx.delete_session("s1").await.expect("delete"));
    assert!(!tx.delete_session("s1").await.expect("delete again"), "gone already");
    assert_eq!(tx.delete_sessions_of("ann").await.expect("all of ann"), 1);
    assert_eq!(tx.session("s2").await.expect("read"), None);

    assert_eq!(tx.api_token("h1").await.expect("read"), Some(token.clone()));
    assert_eq!(tx.api_tokens(None).await.expect("all").len(), 2);
    let audience = tx.api_token("h2").await.expect("read").and_then(|t| t.audience);
    assert_eq!(audience.as_deref(), Some("mcp"), "a token keeps the one resource it is good for");
    assert_eq!(tx.api_tokens(Some("ci")).await.expect("ci's"), vec![token.clone()]);
    tx.touch_api_token("tok_1", 30).await.expect("touch");
    assert!(tx.revoke_api_token("tok_1", 40).await.expect("revoke"));
    assert!(!tx.revoke_api_token("tok_1", 50).await.expect("revoke again"), "revoked once");
    let stored = tx.api_token("h1").await.expect("read").expect("kept");
    assert_eq!((stored.last_used_at, stored.revoked_at), (Some(30), Some(40)));
    // Expired tokens go by name: both expired at 99, only those called `deploys`, not before 99.
    assert_eq!(tx.delete_expired_api_tokens("deploys", 99).await.expect("none yet"), 0);
    assert_eq!(tx.delete_expired_api_tokens("other", 100).await.expect("another name"), 0);
    assert_eq!(tx.delete_expired_api_tokens("deploys", 100).await.expect("deleted"), 2);
    assert_eq!(tx.api_tokens(None).await.expect("all"), vec![]);

    // Client credentials: one pair per account, found by client id; a rotation replaces it.
    let credentials = ClientCredentials {
        user: "ci".into(),
        client_id: "cid_1".into(),
        secret_sha256: "s1".into(),
        created_at: 5,
        created_by: "ann".into(),
    };
    tx.put_client_credentials(&credentials).await.expect("credentials");
    assert_eq!(tx.client_credentials("cid_1").await.expect("read"), Some(credentials.clone()));
    let rotated = ClientCredentials { secret_sha256: "s2".into(), created_at: 6, ..credentials };
    tx.put_client_credentials(&rotated).await.expect("rotate");
    assert_eq!(tx.client_credentials_of(Some("ci")).await.expect("ci's"), vec![rotated]);
    assert_eq!(tx.client_credentials_of(Some("ann")).await.expect("ann's"), vec![]);
    assert!(tx.delete_client_credentials("ci").await.expect("delete"));
    assert_eq!(tx.client_credentials("cid_1").await.expect("read"), None);
    assert!(!tx.delete_client_credentials("ci").await.expect("delete again"));
    tx.commit().await.expect("commit");
}

pub async fn permission_documents_are_replaced_and_removed(store: &dyn Store) {
    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.permissions("blueprint:service").await.expect("read"), None);
    let first = json!({"read": {"ownedByTeam": true}});
    tx.put_permissions("blueprint:service", Some(&first), 1, "ann").await.expect("put");
    let second = json!({"read": {"roles": ["member"]}, "updateProperties": {"replicas": {"teams": ["sre"]}}});
    tx.put_permissions("blueprint:service", Some(&second), 2, "ann").await.expect("replace");
    tx.put_permissions("action:deploy", Some(&first), 2, "ann").await.expect("another resource");
    tx.commit().await.expect("commit");
    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.permissions("blueprint:service").await.expect("read"), Some(second));
    tx.put_permissions("blueprint:service", None, 3, "ann").await.expect("remove");
    assert_eq!(tx.permissions("blueprint:service").await.expect("read"), None);
    assert_eq!(tx.permissions("action:deploy").await.expect("read"), Some(first), "others stay");
    tx.commit().await.expect("commit");
}

fn run(id: &str, by: &str, entity: &str) -> Run {
    Run { entity: Some(entity.into()), ..crate::runs::run(id, "deploy", by, 1) }
}

fn owned(identifier: &str, team: &str) -> EntityWrite {
    let entity = Entity {
        identifier: identifier.into(),
        title: None,
        icon: None,
        blueprint: "service".into(),
        team: vec![team.into()],
        properties: Map::new(),
        relations: Map::new(),
        scorecards: Map::new(),
        diagnostics: Default::default(),
        version: 1,
        created_at: 1,
        created_by: "t".into(),
        updated_at: 1,
        updated_by: "t".into(),
    };
    let team_ref =
        Reference { via: "$team".into(), target_blueprint: "_team".into(), target: team.into(), path: String::new() };
    EntityWrite { entity, references: vec![team_ref] }
}

pub async fn runs_are_listed_to_their_requester_and_the_owning_teams(store: &dyn Store) {
    let mut tx = store.write().await.expect("tx");
    let blueprint = Blueprint::from_json(json!({"identifier": "service", "schema": {"properties": {}}})).expect("bp");
    let record =
        BlueprintRecord { blueprint, created_at: 1, created_by: "t".into(), updated_at: 1, updated_by: "t".into() };
    tx.put_blueprint(&record).await.expect("blueprint");
    tx.put_entities(&[owned("cart", "team-cart"), owned("search", "team-search")]).await.expect("entities");
    for (id, by, entity) in
        [("r1", "ann", "cart"), ("r2", "bob", "search"), ("r3", "bob", "cart"), ("r4", "cy", "gone")]
    {
        tx.insert_run(&run(id, by, entity), None).await.expect("run");
    }
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("tx");
    let visible = |user: &str, teams: &[&str]| RunFilter {
        visible_to: Some((user.into(), teams.iter().map(|t| t.to_string()).collect())),
        ..RunFilter::default()
    };
    let ids = |rows: Vec<(i64, Run)>| rows.into_iter().map(|(_, r)| r.id).collect::<Vec<_>>();
    assert_eq!(ids(tx.list_runs(&visible("ann", &[]), 10).await.expect("ann")), ["r1"], "only their own");
    assert_eq!(ids(tx.list_runs(&visible("ann", &["team-cart"]), 10).await.expect("ann")), ["r3", "r1"]);
    assert_eq!(ids(tx.list_runs(&visible("bob", &["team-x"]), 10).await.expect("bob")), ["r3", "r2"]);
    assert_eq!(
        ids(tx.list_runs(&visible("dee", &["team-search", "team-cart"]), 10).await.expect("dee")),
        ["r3", "r2", "r1"]
    );
    assert_eq!(ids(tx.list_runs(&RunFilter::default(), 10).await.expect("all")), ["r4", "r3", "r2", "r1"]);
}

fn entry(action: &str, resource_id: &str, blueprint: Option<&str>) -> portolan_model::audit::AuditEntry {
    portolan_model::audit::AuditEntry {
        at: 1_800_000_000_000,
        actor: "ann".into(),
        origin: "api".into(),
        action: action.into(),
        resource_type: "entity".into(),
        resource_id: resource_id.into(),
        blueprint: blueprint.map(str::to_string),
        run: None,
        status: "success".into(),
        request_id: None,
        reason: None,
        diff: Some(json!({"before": null, "after": {"title": "line\nbreak \u{1b}[31m"}})),
    }
}

async fn verify(store: &dyn Store) -> Result<u64, String> {
    verify_with(store, None).await.map(|v| v.records)
}

async fn verify_with(
    store: &dyn Store,
    key: Option<portolan_model::audit::AuditKey>,
) -> Result<portolan_model::audit::Verified, String> {
    let mut tx = store.read().await.expect("tx");
    let mut check = portolan_model::audit::ChainCheck::new(key);
    for record in tx.audit_chain(0, 10_000).await.expect("chain") {
        check.next(&record)?;
    }
    check.finish(Some(tx.audit_head().await.expect("head")))
}

pub async fn audit_records_carry_a_mac_once_the_store_has_a_key(store: &dyn Store) {
    use portolan_model::audit::AuditKey;
    let key = AuditKey::new([3; AuditKey::BYTES]);
    let mut tx = store.write().await.expect("tx");
    tx.append_audit(&[entry("entity.create", "a", Some("service")), entry("entity.update", "a", Some("service"))])
        .await
        .expect("append");
    tx.commit().await.expect("commit");
    store.set_audit_key(key.clone()).expect("set the key");
    store.set_audit_key(key.clone()).expect("the same key again is fine");
    assert!(store.set_audit_key(AuditKey::new([4; AuditKey::BYTES])).is_err(), "another key is refused");
    let mut tx = store.write().await.expect("tx");
    let many: Vec<_> = (0..3).map(|i| entry("entity.create", &format!("b{i}"), Some("service"))).collect();
    tx.append_audit(&many).await.expect("append");
    tx.commit().await.expect("commit");

    let verified = verify_with(store, Some(key.clone())).await.expect("intact");
    assert_eq!((verified.records, verified.unkeyed), (5, 2), "the first two predate the key");
    assert!(verify_with(store, Some(AuditKey::new([4; AuditKey::BYTES]))).await.is_err(), "checked with the key");
    let mut tx = store.read().await.expect("tx");
    let stored = tx.audit_chain(0, 10).await.expect("chain");
    assert_eq!(stored.iter().map(|r| r.mac.is_some()).collect::<Vec<_>>(), [false, false, true, true, true]);
    let shown = tx.audit_records(&portolan_store::AuditFilter::default(), 10).await.expect("records");
    assert_eq!(shown[0].mac.as_deref(), Some(key.record_mac(5, &stored[4].hash).as_str()));
    assert_eq!(shown[4].mac, None);
}

pub async fn the_audit_log_is_one_gapless_chain_even_with_concurrent_writers(store: &dyn Store) {
    let mut tx = store.write().await.expect("tx");
    tx.append_audit(&[entry("entity.create", "a", Some("service")), entry("entity.update", "a", Some("service"))])
        .await
        .expect("append");
    tx.commit().await.expect("commit");
    // A rolled-back append leaves no trace and no gap.
    let mut tx = store.write().await.expect("tx");
    tx.append_audit(&[entry("entity.delete", "a", Some("service"))]).await.expect("append");
    drop(tx);
    // Writers in parallel: each takes the head in turn.
    let writers = (0..8).map(|i| async move {
        let mut tx = store.write().await.expect("tx");
        let many: Vec<_> = (0..3).map(|j| entry("entity.create", &format!("w{i}-{j}"), Some("thing"))).collect();
        tx.append_audit(&many).await.expect("append");
        tx.commit().await.expect("commit");
    });
    futures_util::future::join_all(writers).await;
    assert_eq!(verify(store).await, Ok(26));

    let mut tx = store.read().await.expect("tx");
    assert_eq!(tx.audit_head().await.expect("head").0, 26);
    let filter = portolan_store::AuditFilter { blueprint: Some("service".into()), ..Default::default() };
    let service = tx.audit_records(&filter, 10).await.expect("records");
    assert_eq!(service.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 1], "newest first");
    assert_eq!(
        service[0].entry.diff.as_ref().map(|d| d["after"]["title"].clone()),
        Some(json!("line\nbreak \u{1b}[31m"))
    );
    let page =
        portolan_store::AuditFilter { before: Some(10), resource_type: Some("entity".into()), ..Default::default() };
    assert_eq!(tx.audit_records(&page, 3).await.expect("page").iter().map(|r| r.seq).collect::<Vec<_>>(), [9, 8, 7]);
}

/// An entity's records before and after a time: the newest up to then is its version then.
pub async fn entity_records_at_a_time_are_the_newest_up_to_then_of_what_changed_since(store: &dyn Store) {
    let at = |t: i64, action: &str, id: &str, blueprint: &str, status: &str| portolan_model::audit::AuditEntry {
        at: t,
        status: status.into(),
        ..entry(action, id, Some(blueprint))
    };
    let mut tx = store.write().await.expect("tx");
    tx.append_audit(&[
        at(10, "entity.create", "a", "service", "success"),
        at(20, "entity.update", "a", "service", "success"),
        at(20, "entity.create", "same", "service", "success"),
        at(20, "entity.create", "same", "team", "success"),
        at(25, "entity.create", "quiet", "service", "success"),
        at(30, "entity.update", "a", "service", "success"),
        at(30, "entity.update", "same", "team", "success"),
        at(31, "entity.update", "quiet", "service", "failure"),
        at(40, "entity.create", "new", "service", "success"),
    ])
    .await
    .expect("append");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("tx");
    let seqs = |records: Vec<portolan_model::audit::AuditRecord>| records.iter().map(|r| r.seq).collect::<Vec<_>>();
    // At 25: `a` (seq 2) and `same` of team (seq 4) changed since; `quiet` only failed to, and
    // `new` did not exist.
    assert_eq!(seqs(tx.entity_records_at(None, 25).await.expect("records")), [2, 4]);
    assert_eq!(seqs(tx.entity_records_at(Some("service"), 25).await.expect("records")), [2]);
    assert_eq!(seqs(tx.entity_records_at(Some("service"), 40).await.expect("records")), Vec::<i64>::new());
    assert_eq!(seqs(tx.entity_records_at(Some("service"), 5).await.expect("records")), Vec::<i64>::new());
}

pub async fn applied_objects_belong_to_one_source(store: &dyn Store) {
    use portolan_model::manifest::{Kind, ObjectKey};
    let cart = ObjectKey::new(Kind::Entity, "service/cart");
    let service = ObjectKey::new(Kind::Blueprint, "service");
    let mut tx = store.write().await.expect("tx");
    tx.record_applied("repo-a", &[(service.clone(), "model.yaml".into()), (cart.clone(), "cart.yaml".into())], 10)
        .await
        .expect("record");
    tx.record_applied("repo-b", &[(cart.clone(), "other/cart.yaml".into())], 20).await.expect("take over");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("tx");
    let of_a = tx.applied_objects(Some("repo-a")).await.expect("a");
    assert_eq!(of_a.keys().collect::<Vec<_>>(), [&service], "the entity moved to repo-b");
    let cart_record = tx.applied_object(&cart).await.expect("cart").expect("recorded");
    assert_eq!(
        (cart_record.source.as_str(), cart_record.file.as_str(), cart_record.applied_at),
        ("repo-b", "other/cart.yaml", 20)
    );
    assert_eq!(tx.applied_objects(None).await.expect("all").len(), 2);
    let sources: Vec<(String, i64, i64)> =
        tx.sources().await.expect("sources").into_iter().map(|s| (s.source, s.objects, s.applied_at)).collect();
    assert_eq!(sources, [("repo-a".to_string(), 1, 10), ("repo-b".to_string(), 1, 20)]);
    drop(tx);

    let mut tx = store.write().await.expect("tx");
    tx.forget_applied(std::slice::from_ref(&cart)).await.expect("forget");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("tx");
    assert_eq!(tx.applied_object(&cart).await.expect("cart"), None);
}

pub async fn a_due_location_is_claimed_once(store: &dyn Store) {
    use portolan_model::manifest::location::{LocationInput, LocationKind};
    let input = LocationInput {
        kind: LocationKind::Git,
        target: "file:///srv/catalog".into(),
        branch: None,
        paths: Vec::new(),
        token_secret: None,
        webhook_secret: None,
        interval_seconds: Some(60),
        deletion_threshold: None,
    };
    let location = input.into_location("loc_1".into(), 1_000, "ann").expect("valid");
    let mut tx = store.write().await.expect("tx");
    tx.put_location(&location).await.expect("put");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.claim_due_location(999).await.expect("claim"), None, "not due yet");
    let claimed = tx.claim_due_location(1_000).await.expect("claim").expect("due");
    assert_eq!(claimed.next_sync_at, 61_000, "the next sync is one interval on");
    assert_eq!(tx.claim_due_location(1_000).await.expect("claim"), None, "claimed once");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.locations().await.expect("list").len(), 1);
    assert!(tx.delete_location("loc_1").await.expect("delete"));
    assert_eq!(tx.location("loc_1").await.expect("get"), None);
}

pub async fn integrations_are_found_by_key_and_their_events_deduplicated(store: &dyn Store) {
    use portolan_model::integration::{EventState, IntegrationEvent, IntegrationInput};
    let input: IntegrationInput = serde_json::from_value(json!({
        "identifier": "github", "type": "webhook",
        "mapping": {"resources": [{"kind": "push", "port": {"entity": {"mappings": {
            "identifier": ".body.repository.name", "blueprint": "\"service\""}}}}]}
    }))
    .expect("input");
    let hook = input.into_integration(1_000, "ann", None).expect("valid");
    let pull: IntegrationInput = serde_json::from_value(json!({
        "identifier": "repos", "type": "rest", "intervalSeconds": 60, "source": {"url": "https://example.com/repos"},
        "mapping": {"resources": [{"kind": "repo", "port": {"entity": {"mappings": {
            "identifier": ".name", "blueprint": "\"service\""}}}}]}
    }))
    .expect("input");
    let pull = pull.into_integration(1_000, "ann", None).expect("valid");
    let mut tx = store.write().await.expect("tx");
    tx.put_integration(&hook, Some("hash-1")).await.expect("put");
    tx.put_integration(&pull, None).await.expect("put");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.integration_by_key("hash-1").await.expect("by key").map(|i| i.identifier), Some("github".into()));
    assert_eq!(tx.integration_by_key("hash-2").await.expect("by key"), None);
    // A change that names no new key keeps the old one; a new key replaces it.
    tx.put_integration(&hook, None).await.expect("put");
    assert!(tx.integration_by_key("hash-1").await.expect("by key").is_some());
    tx.put_integration(&hook, Some("hash-2")).await.expect("rotate");
    assert_eq!(tx.integration_by_key("hash-1").await.expect("by key"), None);
    assert_eq!(tx.integration_key("github").await.expect("key").as_deref(), Some("hash-2"));
    assert_eq!(tx.integration_key("repos").await.expect("key"), None, "a REST integration has none");
    // Only REST integrations are pulled, each claimed once.
    let claimed = tx.claim_due_integration(1_000).await.expect("claim").expect("due");
    assert_eq!((claimed.identifier.as_str(), claimed.next_sync_at), ("repos", 61_000));
    assert_eq!(tx.claim_due_integration(1_000).await.expect("claim"), None);
    tx.commit().await.expect("commit");

    let event = |id: &str, at: i64, request: Option<&str>| IntegrationEvent {
        id: id.into(),
        integration: "github".into(),
        received_at: at,
        request_id: request.map(str::to_string),
        request: json!({"body": {"n": id}}),
        state: EventState::Pending,
        processed_at: None,
        items: Vec::new(),
    };
    let mut tx = store.write().await.expect("tx");
    assert!(tx.insert_event(&event("e1", 10, Some("d-1"))).await.expect("insert"));
    assert!(!tx.insert_event(&event("e2", 11, Some("d-1"))).await.expect("insert"), "a replay is refused");
    assert!(tx.insert_event(&event("e3", 12, None)).await.expect("insert"));
    assert!(tx.insert_event(&event("e4", 13, None)).await.expect("insert"), "no identifier: never a replay");
    let mut done = event("e1", 10, Some("d-1"));
    done.state = EventState::Done;
    tx.update_event(&done).await.expect("update");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.event("github", "e1").await.expect("get").map(|e| e.state), Some(EventState::Done));
    let ids = |events: Vec<IntegrationEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(tx.events("github", None, 2).await.expect("page")), ["e4", "e3"]);
    assert_eq!(ids(tx.events("github", Some((12, "e3".into())), 10).await.expect("page")), ["e1"]);
    assert_eq!(tx.delete_events_before("github", 12).await.expect("prune"), 1);
    assert!(tx.delete_integration("github").await.expect("delete"));
    assert_eq!(tx.events("github", None, 10).await.expect("page"), Vec::new(), "its events go with it");
    assert_eq!(tx.integrations().await.expect("list").len(), 1);
}

pub async fn inboxes_are_kept_per_person_newest_first(store: &dyn Store) {
    let note = |id: &str, user: &str, at: i64| Notification {
        id: id.into(),
        user: user.into(),
        topic: "run.failed".into(),
        title: format!("note {id}"),
        link: format!("/runs/{id}"),
        created_at: at,
        read_at: None,
        delivery: None,
    };
    let mut tx = store.write().await.expect("tx");
    for (id, user, at) in [("n1", "ana", 10), ("n2", "ana", 20), ("n3", "bo", 30)] {
        tx.insert_notification(&note(id, user, at)).await.expect("insert");
    }
    tx.put_notification_preferences("ana", &serde_json::json!({"inbox": ["run.failed"]})).await.expect("prefs");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("tx");
    let ids = |notes: Vec<Notification>| notes.into_iter().map(|n| n.id).collect::<Vec<_>>();
    assert_eq!(ids(tx.notifications("ana", false, 10).await.expect("list")), ["n2", "n1"], "newest first");
    assert_eq!(ids(tx.notifications("ana", false, 1).await.expect("list")), ["n2"], "at most the limit");
    assert_eq!(tx.count_unread_notifications("ana").await.expect("count"), 2);
    assert_eq!(tx.mark_notifications_read("ana", Some("n3"), 40).await.expect("mark"), 0, "not hers");
    assert_eq!(tx.mark_notifications_read("ana", Some("n1"), 40).await.expect("mark"), 1);
    assert_eq!(ids(tx.notifications("ana", true, 10).await.expect("unread")), ["n2"]);
    assert_eq!(tx.mark_notifications_read("ana", None, 50).await.expect("mark all"), 1);
    assert_eq!(tx.count_unread_notifications("ana").await.expect("count"), 0);
    assert_eq!(tx.count_unread_notifications("bo").await.expect("count"), 1, "another's inbox untouched");
    tx.set_notification_delivery("n3", "delivered").await.expect("delivery");
    let kept = tx.notification("n3").await.expect("read").expect("kept");
    assert_eq!((kept.delivery.as_deref(), kept.read_at), (Some("delivered"), None));
    assert_eq!(tx.notification("n1").await.expect("read").and_then(|n| n.read_at), Some(40));
    assert_eq!(
        tx.notification_preferences("ana").await.expect("prefs"),
        Some(serde_json::json!({"inbox": ["run.failed"]}))
    );
    assert_eq!(tx.notification_preferences("bo").await.expect("prefs"), None);
    assert_eq!(tx.delete_notifications_before(25).await.expect("expire"), 2);
    assert_eq!(ids(tx.notifications("bo", false, 10).await.expect("list")), ["n3"]);
    tx.commit().await.expect("commit");
}

pub async fn slack_users_are_linked_one_portolan_user_each(store: &dyn Store) {
    let link = |slack_user: &str, user: &str, at: i64| SlackLink {
        team: "T1".into(),
        slack_user: slack_user.into(),
        user: user.into(),
        linked_at: at,
        method: "email".into(),
    };
    let mut tx = store.write().await.expect("tx");
    tx.put_slack_link(&link("U1", "ana", 10)).await.expect("link");
    tx.put_slack_link(&link("U2", "ana", 20)).await.expect("link");
    tx.put_slack_link(&link("U3", "bo", 30)).await.expect("link");
    // A Slack user linked again acts as the new user only.
    tx.put_slack_link(&SlackLink { method: "link".into(), ..link("U3", "cy", 40) }).await.expect("relink");
    tx.put_slack_thread(&SlackThread { run: "r1".into(), channel: "D1".into(), ts: "1.000100".into() })
        .await
        .expect("thread");
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("tx");
    let slack_users = |links: Vec<SlackLink>| links.into_iter().map(|l| l.slack_user).collect::<Vec<_>>();
    assert_eq!(slack_users(tx.slack_links_of("ana").await.expect("links")), ["U1", "U2"], "oldest first");
    assert!(tx.slack_links_of("bo").await.expect("links").is_empty(), "relinked away");
    let relinked = tx.slack_link("T1", "U3").await.expect("read").expect("kept");
    assert_eq!((relinked.user.as_str(), relinked.method.as_str(), relinked.linked_at), ("cy", "link", 40));
    assert_eq!(tx.slack_link("T2", "U1").await.expect("read"), None, "another workspace's U1");
    assert_eq!(tx.delete_slack_links("ana").await.expect("unlink"), 2);
    assert_eq!(tx.slack_link("T1", "U1").await.expect("read"), None);
    let thread = tx.slack_thread("r1").await.expect("read").expect("kept");
    assert_eq!((thread.channel.as_str(), thread.ts.as_str()), ("D1", "1.000100"));
    assert_eq!(tx.slack_thread("r2").await.expect("read"), None);
    tx.commit().await.expect("commit");
}
