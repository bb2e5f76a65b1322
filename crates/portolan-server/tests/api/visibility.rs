//! A property: for random organisations, catalogs and read grants, no search, list, count or facet
//! ever shows a user an entity they may not read, and none hides one they may, compared with a
//! reference written here from the grant's plain meaning.

use std::collections::{BTreeMap, BTreeSet};

use portolan_model::permission::{Role, User};
use portolan_server::AppState;
use portolan_server::services::catalog::WriteMode;
use portolan_server::services::search::{AggregateRequest, SearchRequest};
use portolan_server::services::{Actor, Origin};
use portolan_store::query_sql::AggregateResult;
use proptest::prelude::*;
use serde_json::{Value, json};

const TEAMS: [&str; 4] = ["t0", "t1", "t2", "t3"];
const TIERS: [&str; 3] = ["gold", "silver", "bronze"];

#[derive(Debug, Clone)]
struct Thing {
    teams: BTreeSet<usize>,
    tier: usize,
}

/// The read grant of the blueprint, in a shape the reference can interpret.
#[derive(Debug, Clone)]
struct ReadGrant {
    members: bool,
    owned_by_team: bool,
    teams: BTreeSet<usize>,
    users: BTreeSet<usize>,
    /// Only entities of this tier.
    tier: Option<usize>,
}

impl ReadGrant {
    fn document(&self) -> Value {
        let mut grant = json!({
            "roles": if self.members { vec!["member"] } else { vec![] },
            "ownedByTeam": self.owned_by_team,
            "teams": self.teams.iter().map(|t| TEAMS[*t]).collect::<Vec<_>>(),
            "users": self.users.iter().map(|u| format!("u{u}")).collect::<Vec<_>>(),
        });
        if let Some(tier) = self.tier {
            grant["condition"] =
                json!({"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": TIERS[tier]}]});
        }
        json!({"read": grant})
    }

    /// The plain meaning: named (by role, team or user) or owning, and of the right tier.
    fn admits(&self, user: usize, user_teams: &BTreeSet<usize>, thing: &Thing) -> bool {
        let named = self.members || self.users.contains(&user) || !self.teams.is_disjoint(user_teams);
        let owner = self.owned_by_team && !thing.teams.is_disjoint(user_teams);
        (named || owner) && self.tier.is_none_or(|t| t == thing.tier)
    }
}

fn team_set() -> impl Strategy<Value = BTreeSet<usize>> {
    proptest::collection::btree_set(0..TEAMS.len(), 0..=2)
}

fn grant() -> impl Strategy<Value = ReadGrant> {
    (
        proptest::bool::weighted(0.2),
        any::<bool>(),
        team_set(),
        proptest::collection::btree_set(0..4usize, 0..=1),
        proptest::option::of(0..TIERS.len()),
    )
        .prop_map(|(members, owned_by_team, teams, users, tier)| ReadGrant {
            members,
            owned_by_team,
            teams,
            users,
            tier,
        })
}

fn org() -> impl Strategy<Value = (Vec<BTreeSet<usize>>, Vec<Thing>, ReadGrant)> {
    let users = proptest::collection::vec(team_set(), 4);
    let things =
        proptest::collection::vec((team_set(), 0..TIERS.len()).prop_map(|(teams, tier)| Thing { teams, tier }), 0..25);
    (users, things, grant())
}

async fn check(users: Vec<BTreeSet<usize>>, things: Vec<Thing>, grant: ReadGrant) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = portolan_store::open(&dir.path().to_string_lossy()).await.expect("store");
    let state = AppState::new(store).await.expect("state");
    let catalog = &state.catalog;
    let system = Actor::system("tests", Origin::Cli);
    let create = WriteMode::Create { upsert: false, merge: false };
    for team in TEAMS {
        catalog.write_entity(&system, "_team", None, json!({"identifier": team}), create, None).await.expect("team");
    }
    let blueprint =
        json!({"identifier": "thing", "schema": {"properties": {"tier": {"type": "string", "enum": TIERS}}}});
    catalog.create_blueprint(&system, blueprint).await.expect("blueprint");
    for (i, thing) in things.iter().enumerate() {
        let teams: Vec<&str> = thing.teams.iter().map(|t| TEAMS[*t]).collect();
        let entity =
            json!({"identifier": format!("e{i:02}"), "team": teams, "properties": {"tier": TIERS[thing.tier]}});
        catalog.write_entity(&system, "thing", None, entity, create, None).await.expect("entity");
    }
    state.permissions.put_blueprint_permissions(&system, "thing", grant.document()).await.expect("grant");

    for (u, user_teams) in users.iter().enumerate() {
        let user = User {
            id: format!("u{u}"),
            role: Role::Member,
            teams: user_teams.iter().map(|t| TEAMS[*t].to_string()).collect(),
        };
        let actor = Actor::user(user, Origin::Api);
        let expected: BTreeSet<String> = things
            .iter()
            .enumerate()
            .filter(|(_, thing)| grant.admits(u, user_teams, thing))
            .map(|(i, _)| format!("e{i:02}"))
            .collect();
        let why = format!("user u{u} in {user_teams:?}, grant {grant:?}");

        // Searched page by page, scoped to the blueprint and across all blueprints.
        for scope in [Some("thing"), None] {
            let mut seen = BTreeSet::new();
            let mut cursor = None;
            loop {
                let request = SearchRequest { limit: Some(7), cursor, ..SearchRequest::default() };
                let page = state.search.search(&actor, scope, request).await.expect("search");
                seen.extend(page.entities.into_iter().filter(|e| e.blueprint == "thing").map(|e| e.identifier));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "search over {scope:?}: {why}");
        }
        // With a query of its own, the filter still applies.
        let gold = json!({"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": "gold"}]});
        let request = SearchRequest { query: Some(gold), limit: Some(100), ..SearchRequest::default() };
        let found: BTreeSet<String> = state
            .search
            .search(&actor, Some("thing"), request)
            .await
            .expect("search")
            .entities
            .into_iter()
            .map(|e| e.identifier)
            .collect();
        let expected_gold: BTreeSet<String> =
            expected.iter().filter(|id| things[id[1..].parse::<usize>().expect("index")].tier == 0).cloned().collect();
        assert_eq!(found, expected_gold, "gold only: {why}");

        let aggregate = |function: &str, property: Option<&str>| AggregateRequest {
            query: None,
            blueprint: Some("thing".into()),
            function: function.into(),
            property: property.map(str::to_string),
            relation: None,
            scorecard: None,
            as_of: None,
        };
        match state.search.aggregate(&actor, aggregate("count", None)).await.expect("count") {
            AggregateResult::Value(count) => assert_eq!(count, Some(expected.len() as f64), "count: {why}"),
            other => panic!("count gave {other:?}"),
        }
        let mut per_team: BTreeMap<String, u64> = BTreeMap::new();
        for id in &expected {
            for t in &things[id[1..].parse::<usize>().expect("index")].teams {
                *per_team.entry(TEAMS[*t].to_string()).or_default() += 1;
            }
        }
        match state.search.aggregate(&actor, aggregate("countBy", Some("$team"))).await.expect("facets") {
            AggregateResult::Groups(groups) => {
                let got: BTreeMap<String, u64> =
                    groups.into_iter().filter_map(|(k, n)| k.as_str().map(|k| (k.to_string(), n))).collect();
                assert_eq!(got, per_team, "team facet: {why}");
            }
            other => panic!("countBy gave {other:?}"),
        }
        // One by one: what is hidden reads as missing.
        for i in 0..things.len() {
            let id = format!("e{i:02}");
            let got = catalog.get_entity(&actor, "thing", &id).await;
            assert_eq!(got.is_ok(), expected.contains(&id), "get {id}: {why}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_read_path_shows_what_the_grant_hides((users, things, grant) in org()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(check(users, things, grant));
    }
}
