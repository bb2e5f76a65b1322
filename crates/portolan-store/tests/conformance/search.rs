//! The query language means the same in memory and in SQL: random catalogs, random queries, and
//! the store's answer must equal the model's evaluator's.

use portolan_model::query::{self, MemoryGraph, Query, QueryContext, Scope};
use portolan_model::{Blueprint, Entity, EntityInput};
use portolan_store::query_sql::{Position, SearchPlan, Sort};
use portolan_store::{BlueprintRecord, EntityWrite, Store};
use serde_json::{Value, json};

/// A small deterministic generator: failures replay exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const WORDS: [&str; 7] = ["Go", "go", "Rust", "rusty", "Élan", "", "Python"];
const TAGS: [&str; 4] = ["web", "eu", "us", "batch"];
const TEAMS: [&str; 3] = ["t0", "t1", "t2"];
const DATES: [&str; 4] =
    ["2026-01-01T00:00:00Z", "2026-06-15T12:30:00+02:00", "2025-12-31T23:59:59Z", "2027-03-01T08:00:00Z"];
const NOW: i64 = 1_780_000_000_000; // 2026-05-28

pub fn blueprints() -> Vec<Blueprint> {
    [
        json!({"identifier": "system", "schema": {"properties": {
            "tier": {"type": "string", "enum": WORDS}, "size": {"type": "number"}}}}),
        json!({"identifier": "service", "schema": {"properties": {
            "language": {"type": "string", "enum": WORDS},
            "replicas": {"type": "number"},
            "public": {"type": "boolean"},
            "pods": {"type": "integer", "enum": [0, 1, 2, 3]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "expires": {"type": "string", "format": "timer"},
            "size": {"type": "number"}
        }}, "relations": {
            "system": {"target": "system", "required": true},
            "dependsOn": {"target": "service", "many": true}
        }}),
    ]
    .into_iter()
    .map(|v| Blueprint::from_json(v).expect("valid blueprint"))
    .collect()
}

/// A valid entity of `bp` as first stored, and its references.
fn stored(bp: &Blueprint, input: Value, created_at: i64) -> (Entity, Vec<portolan_model::Reference>) {
    let valid = EntityInput::from_json(input).expect("input").validate(bp).expect("generated entity is valid");
    let entity = Entity {
        identifier: valid.identifier,
        title: valid.title,
        icon: None,
        blueprint: bp.identifier.clone(),
        team: valid.team,
        properties: valid.properties,
        relations: valid.relations,
        scorecards: Default::default(),
        diagnostics: Default::default(),
        version: 1,
        created_at,
        created_by: "gen".into(),
        updated_at: NOW,
        updated_by: "gen".into(),
    };
    (entity, valid.references)
}

fn catalog(rng: &mut Rng, blueprints: &[Blueprint]) -> Vec<(Entity, Vec<portolan_model::Reference>)> {
    let mut out = Vec::new();
    let make = |bp: &Blueprint, input: Value, i: i64| stored(bp, input, NOW - i * 3_600_000);
    for i in 0..5 {
        let mut props = serde_json::Map::new();
        if rng.chance(70) {
            props.insert("tier".into(), json!(rng.pick(&WORDS)));
        }
        if rng.chance(70) {
            props.insert("size".into(), json!(rng.below(5)));
        }
        out.push(make(&blueprints[0], json!({"identifier": format!("sys{i}"), "properties": props}), i));
    }
    for i in 0..40usize {
        let mut props = serde_json::Map::new();
        if rng.chance(80) {
            props.insert("language".into(), json!(rng.pick(&WORDS)));
        }
        if rng.chance(80) {
            props.insert("replicas".into(), json!(rng.below(6) as f64 / 2.0));
        }
        if rng.chance(60) {
            props.insert("public".into(), json!(rng.chance(50)));
        }
        if rng.chance(70) {
            // Sent as 2 or as 2.0: an integer property keeps both as the integer.
            let pods = rng.below(4);
            props.insert("pods".into(), if rng.chance(50) { json!(pods) } else { json!(pods as f64) });
        }
        if rng.chance(70) {
            let n = rng.below(3);
            let tags: Vec<&str> =
                (0..n).map(|_| *rng.pick(&TAGS)).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            props.insert("tags".into(), json!(tags));
        }
        if rng.chance(60) {
            props.insert("expires".into(), json!(rng.pick(&DATES)));
        }
        let mut relations = serde_json::Map::new();
        relations.insert("system".into(), json!(format!("sys{}", rng.below(5))));
        if i > 0 && rng.chance(60) {
            let deps: std::collections::BTreeSet<String> =
                (0..1 + rng.below(2)).map(|_| format!("svc{:02}", rng.below(i))).collect();
            relations.insert("dependsOn".into(), json!(deps));
        }
        let team: Vec<&str> = if rng.chance(80) { vec![*rng.pick(&TEAMS)] } else { vec![] };
        let title = if rng.chance(80) { json!(format!("{} service", rng.pick(&WORDS))) } else { Value::Null };
        out.push(make(
            &blueprints[1],
            json!({"identifier": format!("svc{i:02}"), "title": title, "team": team, "properties": props, "relations": relations}),
            i as i64,
        ));
    }
    out
}

fn random_rule(rng: &mut Rng, depth: usize) -> Value {
    if depth < 2 && rng.chance(20) {
        let n = 1 + rng.below(3);
        let rules: Vec<Value> = (0..n).map(|_| random_rule(rng, depth + 1)).collect();
        return json!({"combinator": if rng.chance(50) { "and" } else { "or" }, "rules": rules});
    }
    let word = *rng.pick(&WORDS);
    let needle = if word.is_empty() { "o" } else { word };
    let number = rng.below(6) as f64 / 2.0;
    match rng.below(26) {
        0 => json!({"property": "language", "operator": "=", "value": word}),
        1 => json!({"property": "language", "operator": "!=", "value": word}),
        2 => {
            json!({"property": "language", "operator": rng.pick(&["contains", "doesNotContains", "beginsWith", "endsWith", "doesNotBeginsWith", "doesNotEndsWith"]), "value": needle})
        }
        3 => {
            json!({"property": rng.pick(&["replicas", "pods"]), "operator": rng.pick(&["=", "!=", ">", ">=", "<", "<="]), "value": number})
        }
        4 => json!({"property": "language", "operator": rng.pick(&[">", "<=", ">="]), "value": word}),
        5 => {
            json!({"property": "language", "operator": rng.pick(&["in", "notIn"]), "value": [word, *rng.pick(&WORDS)]})
        }
        6 => json!({"property": "public", "operator": rng.pick(&["=", "!="]), "value": rng.chance(50)}),
        7 => {
            json!({"property": "tags", "operator": rng.pick(&["containsAny", "in", "notIn"]), "value": [*rng.pick(&TAGS)]})
        }
        8 => {
            json!({"property": "tags", "operator": rng.pick(&["=", "!=", "beginsWith", "contains"]), "value": *rng.pick(&TAGS)})
        }
        9 => {
            json!({"property": *rng.pick(&["tags", "language", "replicas", "public", "expires", "size", "pods"]), "operator": rng.pick(&["isEmpty", "isNotEmpty"])})
        }
        10 => json!({"property": "expires", "operator": rng.pick(&["isExpired", "isNotExpired"])}),
        11 => {
            json!({"property": "expires", "operator": rng.pick(&["between", "notBetween"]), "value": {"from": "2025-12-31T00:00:00Z", "to": *rng.pick(&DATES)}})
        }
        12 => json!({"property": "expires", "operator": rng.pick(&[">", "<", "="]), "value": *rng.pick(&DATES)}),
        13 => match rng.below(3) {
            0 => json!({"property": "$team", "operator": "containsAny", "value": [*rng.pick(&TEAMS)]}),
            1 => json!({"property": "$team", "operator": rng.pick(&["=", "!="]), "value": *rng.pick(&TEAMS)}),
            _ => json!({"property": "$team", "operator": "isEmpty"}),
        },
        14 => json!({"property": "$team", "operator": "containsAny", "value": {"context": "userTeams"}}),
        15 => {
            json!({"property": "$title", "operator": rng.pick(&["contains", "isEmpty", "isNotEmpty", "beginsWith"]), "value": needle})
        }
        16 => {
            json!({"property": "$identifier", "operator": rng.pick(&["=", ">", "beginsWith", "in"]), "value": format!("svc{:02}", rng.below(40))})
        }
        17 => {
            json!({"property": "$createdAt", "operator": rng.pick(&["between", "notBetween"]), "value": {"preset": "lastWeek"}})
        }
        18 => {
            json!({"relation": "system", "operator": rng.pick(&["=", "!=", "in", "isEmpty"]), "value": format!("sys{}", rng.below(5))})
        }
        19 => {
            json!({"relation": "dependsOn", "operator": rng.pick(&["containsAny", "isEmpty", "isNotEmpty", "notIn"]), "value": [format!("svc{:02}", rng.below(40))]})
        }
        20 => json!({"operator": "relatedTo", "blueprint": "service", "value": format!("svc{:02}", rng.below(40)),
                     "direction": rng.pick(&["upstream", "downstream"]), "required": rng.chance(30)}),
        21 => json!({"property": "pods", "operator": rng.pick(&["in", "notIn"]), "value": [rng.below(4), number]}),
        // Port's path rule: each step one relation, in order (nested `matchAny` steps in SQL).
        22 => {
            let first =
                if rng.chance(50) { json!("dependsOn") } else { json!({"relation": "dependsOn", "maxHops": 2}) };
            json!({"property": {"path": [first, "system"]}, "operator": "matchAny", "value": [format!("sys{}", rng.below(5))]})
        }
        23 => {
            json!({"property": {"path": ["dependsOn"]}, "operator": "matchAny", "value": format!("svc{:02}", rng.below(40))})
        }
        _ => {
            json!({"operator": "relatedTo", "blueprint": "system", "value": [format!("sys{}", rng.below(5))], "required": rng.chance(50)})
        }
    }
}

fn sort_key(entity: &Entity, sort: &Option<Sort>) -> (bool, Option<f64>, Option<String>) {
    let Some(sort) = sort else { return (false, None, None) };
    match query::raw(entity, &sort.target.field) {
        Some(Value::Number(n)) => (false, n.as_f64(), None),
        Some(Value::Bool(b)) => (false, Some(f64::from(u8::from(b))), None),
        Some(Value::String(s)) => (false, None, Some(s)),
        _ => (true, None, None),
    }
}

/// Replaces the catalog with a generated one; returns its entities.
async fn load_catalog(store: &dyn Store, blueprints: &[Blueprint], rng: &mut Rng) -> Vec<Entity> {
    let mut tx = store.write().await.expect("write tx");
    for id in ["service", "system"] {
        tx.delete_entities_of(id).await.expect("clear");
    }
    put_blueprints(tx.as_mut(), blueprints).await;
    let generated = catalog(rng, blueprints);
    let entities: Vec<Entity> = generated.iter().map(|(e, _)| e.clone()).collect();
    let writes: Vec<EntityWrite> =
        generated.into_iter().map(|(entity, references)| EntityWrite { entity, references }).collect();
    tx.put_entities(&writes).await.expect("put");
    tx.commit().await.expect("commit");
    entities
}

pub async fn search_agrees_with_the_in_memory_evaluator(store: &dyn Store) {
    let blueprints = blueprints();
    let required = vec![("service".to_string(), "system".to_string())];
    for seed in 1..=4u64 {
        let mut rng = Rng::new(seed);
        let entities = load_catalog(store, &blueprints, &mut rng).await;

        let graph = MemoryGraph::new(&blueprints, &entities);
        let context = QueryContext { now: NOW, user: Some("u".into()), user_teams: vec!["t1".into()] };
        let (mut some, mut none) = (0, 0);
        for case in 0..60 {
            let scoped = rng.chance(60);
            let scope = Scope::new(&blueprints, scoped.then_some("service"));
            let rules: Vec<Value> = (0..1 + rng.below(3)).map(|_| random_rule(&mut rng, 0)).collect();
            let document = json!({"combinator": if rng.chance(50) { "and" } else { "or" }, "rules": rules});
            let query: Query = match query::parse(&document, &scope, &context) {
                Ok(q) => q,
                Err(errors) => panic!("generated query should parse: {document}: {errors:?}"),
            };
            // `language`, `public` and `pods` (an integer) are facets: their sorts read the store's
            // property indexes.
            let sorted_by = ["replicas", "$title", "language", "public", "pods"].get(rng.below(7)).copied();
            let sort = sorted_by
                .and_then(|field| scope.target(field, false).ok())
                .map(|target| Sort { target, descending: rng.chance(50) });
            let mut expected: Vec<&Entity> = entities
                .iter()
                .filter(|e| !scoped || e.blueprint == "service")
                .filter(|e| query.matches(e, &graph))
                .collect();
            let descending = sort.as_ref().is_some_and(|s| s.descending);
            expected.sort_by(|a, b| {
                let (ka, kb) = (sort_key(a, &sort), sort_key(b, &sort));
                let by_value =
                    ka.1.partial_cmp(&kb.1).unwrap_or(std::cmp::Ordering::Equal).then_with(|| ka.2.cmp(&kb.2));
                let by_id = (&a.blueprint, &a.identifier).cmp(&(&b.blueprint, &b.identifier));
                let rest = if descending { by_value.then(by_id).reverse() } else { by_value.then(by_id) };
                ka.0.cmp(&kb.0).then(rest)
            });
            let expected: Vec<String> = expected.iter().map(|e| format!("{}/{}", e.blueprint, e.identifier)).collect();

            // Page through in sevens: keyset pagination must neither skip nor repeat.
            let mut found = Vec::new();
            let mut after: Option<Position> = None;
            loop {
                let plan = SearchPlan {
                    blueprint: scoped.then(|| "service".to_string()),
                    query: query.clone(),
                    sort: sort.clone(),
                    after: after.clone(),
                    limit: 7,
                    required_relations: required.clone(),
                };
                let mut tx = store.read().await.expect("read tx");
                let page = tx.search(&plan).await.unwrap_or_else(|e| panic!("search failed for {document}: {e}"));
                found.extend(page.iter().map(|e| format!("{}/{}", e.blueprint, e.identifier)));
                if page.len() < 7 {
                    break;
                }
                after = page.last().map(|e| Position::after(e, sort.as_ref()));
            }
            let whole = if found != expected {
                let plan = SearchPlan {
                    blueprint: scoped.then(|| "service".to_string()),
                    query: query.clone(),
                    sort: sort.clone(),
                    after: None,
                    limit: 1000,
                    required_relations: required.clone(),
                };
                let mut tx = store.read().await.expect("read tx");
                let all = tx.search(&plan).await.expect("search");
                all.iter().map(|e| e.identifier.clone()).collect::<Vec<_>>()
            } else {
                Vec::new()
            };
            let differing: Vec<String> = entities
                .iter()
                .filter(|e| {
                    let id = format!("{}/{}", e.blueprint, e.identifier);
                    found.contains(&id) != expected.contains(&id)
                })
                .map(|e| format!("{}: {}", e.identifier, serde_json::Value::Object(e.properties.clone())))
                .collect();
            assert_eq!(
                found,
                expected,
                "seed {seed} case {case}: {document} sorted {:?}; differing: {differing:?}; scoped {scoped}; in one page: {whole:?}",
                sort.map(|s| (s.target.field, s.descending))
            );
            if found.is_empty() { none += 1 } else { some += 1 }
        }
        // The generator must exercise both outcomes, or agreement proves little.
        assert!(some >= 20 && none >= 3, "seed {seed}: {some} queries matched something, {none} nothing");
    }
}

pub async fn aggregates_agree_with_memory(store: &dyn Store) {
    use portolan_store::query_sql::{Aggregate, AggregatePlan, AggregateResult};
    let blueprints = blueprints();
    let entities = load_catalog(store, &blueprints, &mut Rng::new(99)).await;

    let scope = Scope::new(&blueprints, Some("service"));
    let services: Vec<&Entity> = entities.iter().filter(|e| e.blueprint == "service").collect();
    let replicas: Vec<f64> =
        services.iter().filter_map(|e| e.properties.get("replicas").and_then(Value::as_f64)).collect();
    let mut sorted = replicas.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = sorted.len();
    let median = if n.is_multiple_of(2) { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 } else { sorted[n / 2] };
    let target = |name: &str, relation: bool| scope.target(name, relation).expect("target");
    let run = |function: Aggregate| AggregatePlan {
        blueprint: Some("service".into()),
        query: Query::And(vec![]),
        function,
        required_relations: vec![],
    };
    let mut tx = store.read().await.expect("read tx");
    let cases = [
        (run(Aggregate::Count), AggregateResult::Value(Some(services.len() as f64))),
        (run(Aggregate::Sum(target("replicas", false))), AggregateResult::Value(Some(replicas.iter().sum()))),
        (run(Aggregate::Min(target("replicas", false))), AggregateResult::Value(sorted.first().copied())),
        (run(Aggregate::Max(target("replicas", false))), AggregateResult::Value(sorted.last().copied())),
        (run(Aggregate::Median(target("replicas", false))), AggregateResult::Value(Some(median))),
    ];
    for (plan, expected) in cases {
        assert_eq!(tx.aggregate(&plan).await.expect("aggregate"), expected, "{:?}", plan.function);
    }
    let avg = tx.aggregate(&run(Aggregate::Avg(target("replicas", false)))).await.expect("avg");
    let AggregateResult::Value(Some(avg)) = avg else { panic!("avg: {avg:?}") };
    assert!((avg - replicas.iter().sum::<f64>() / n as f64).abs() < 1e-9);

    // countBy: per value, per element of lists, booleans as booleans, absent as null; over a
    // blueprint, over the entities a query selects, and (for teams) over every blueprint.
    let go = query::parse(
        &json!({"combinator": "and", "rules": [{"property": "language", "operator": "=", "value": "Go"}]}),
        &scope,
        &QueryContext::default(),
    )
    .expect("query");
    let is_go = |e: &&&Entity| e.properties.get("language") == Some(&json!("Go"));
    let all: Vec<&Entity> = entities.iter().collect();
    let go_services: Vec<&Entity> = services.iter().copied().filter(|e| is_go(&e)).collect();
    assert!(!go_services.is_empty() && go_services.len() < services.len());
    for (name, relation, selection) in [
        ("language", false, "services"),
        ("tags", false, "services"),
        ("public", false, "services"),
        ("$team", false, "services"),
        ("system", true, "services"),
        ("dependsOn", true, "services"),
        ("$team", false, "Go services"),
        ("dependsOn", true, "Go services"),
        ("$team", false, "every blueprint"),
    ] {
        let t = target(name, relation);
        let (counted, plan) = match selection {
            "services" => (&services, run(Aggregate::CountBy(t.clone()))),
            "Go services" => (&go_services, AggregatePlan { query: go.clone(), ..run(Aggregate::CountBy(t.clone())) }),
            _ => (&all, AggregatePlan { blueprint: None, ..run(Aggregate::CountBy(t.clone())) }),
        };
        let mut expected: std::collections::BTreeMap<String, u64> = Default::default();
        for e in counted {
            let value = query::raw(e, &t.field).unwrap_or(Value::Null);
            let keys: std::collections::BTreeSet<String> = match (&value, t.shape) {
                (Value::Array(items), query::Shape::Many(_)) => items.iter().map(Value::to_string).collect(),
                (Value::Null, query::Shape::Many(_)) => Default::default(),
                _ => [value.to_string()].into(),
            };
            for k in keys {
                *expected.entry(k).or_default() += 1;
            }
        }
        let AggregateResult::Groups(groups) = tx.aggregate(&plan).await.expect("countBy") else {
            panic!("countBy gives groups")
        };
        let found: std::collections::BTreeMap<String, u64> =
            groups.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        assert_eq!(found, expected, "countBy {name} over {selection}");
    }
}

async fn put_blueprints(tx: &mut dyn portolan_store::Tx, blueprints: &[Blueprint]) {
    for blueprint in blueprints {
        let record = BlueprintRecord {
            blueprint: blueprint.clone(),
            created_at: 0,
            created_by: "t".into(),
            updated_at: 0,
            updated_by: "t".into(),
        };
        tx.put_blueprint(&record).await.expect("blueprint");
    }
}

/// The identifiers a search of `blueprint` finds, in pages of `page`, sorted by `stage` if asked.
async fn staged(
    tx: &mut dyn portolan_store::Tx,
    blueprints: &[Blueprint],
    blueprint: &str,
    sort: Option<bool>,
    page: u32,
) -> Vec<String> {
    let scope = Scope::new(blueprints, Some(blueprint));
    let sort = sort.map(|descending| Sort { target: scope.target("stage", false).expect("stage"), descending });
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let plan = SearchPlan {
            blueprint: Some(blueprint.into()),
            query: Query::And(vec![]),
            sort: sort.clone(),
            after: after.clone(),
            limit: page,
            required_relations: vec![],
        };
        let rows = tx.search(&plan).await.expect("search");
        let Some(last) = rows.last() else { return found };
        after = Some(Position::after(last, sort.as_ref()));
        found.extend(rows.iter().map(|e| e.identifier.clone()));
    }
}

/// Making a property a facet builds an index on it (and dropping it drops the index) while
/// statements prepared before are still cached: every blueprint's searches, sorts, counts and
/// deletions stay right. (SQLite once answered `blueprint = ?` for another blueprint through a
/// partial index made for the first.)
pub async fn property_indexes_follow_blueprint_changes(store: &dyn Store) {
    use portolan_store::query_sql::{Aggregate, AggregatePlan, AggregateResult};
    let blueprints = |app_facet: bool, lib_facet: bool| -> Vec<Blueprint> {
        // A facet by its enum (app) or marked as one (lib).
        let stage = |id: &str, facet: bool| match (facet, id) {
            (false, _) => json!({"type": "string"}),
            (true, "app") => json!({"type": "string", "enum": ["dev", "prod"]}),
            (true, _) => json!({"type": "string", "facet": true}),
        };
        [("app", app_facet), ("lib", lib_facet)]
            .into_iter()
            .map(|(id, facet)| {
                let schema = json!({"properties": {"stage": stage(id, facet), "meta": {"type": "object"}}});
                Blueprint::from_json(json!({"identifier": id, "schema": schema})).expect("blueprint")
            })
            .collect()
    };
    let plain = blueprints(false, false);
    let mut tx = store.write().await.expect("write tx");
    put_blueprints(tx.as_mut(), &plain).await;
    let mut writes = Vec::new();
    for (bp, id, stage) in [
        ("app", "a1", Some("prod")),
        ("app", "a2", Some("dev")),
        ("app", "a3", None),
        ("lib", "l1", Some("dev")),
        ("lib", "l2", Some("prod")),
    ] {
        let blueprint = plain.iter().find(|b| b.identifier == bp).expect("blueprint");
        let mut input = json!({"identifier": id, "properties": stage.map_or(json!({}), |s| json!({"stage": s}))});
        if id == "a1" {
            input["properties"]["meta"] = json!({"a": 1});
        }
        let (entity, references) = stored(blueprint, input, NOW);
        writes.push(EntityWrite { entity, references });
    }
    tx.put_entities(&writes).await.expect("put");
    tx.commit().await.expect("commit");

    // One write transaction per round: on SQLite, one connection with its cache of statements.
    for (app_facet, lib_facet) in [(false, false), (true, false), (true, true), (false, true), (false, false)] {
        let defined = blueprints(app_facet, lib_facet);
        let mut tx = store.write().await.expect("write tx");
        put_blueprints(tx.as_mut(), &defined).await;
        tx.commit().await.expect("commit");
        let context = format!("app facet {app_facet}, lib facet {lib_facet}");
        let mut tx = store.write().await.expect("write tx");
        assert_eq!(tx.count_entities("app").await.expect("count"), 3, "{context}");
        assert_eq!(tx.count_entities("lib").await.expect("count"), 2, "{context}");
        let listed = tx.list_entities("lib", None, 10).await.expect("list");
        assert_eq!(listed.iter().map(|e| e.identifier.as_str()).collect::<Vec<_>>(), ["l1", "l2"], "{context}");
        assert_eq!(staged(tx.as_mut(), &defined, "app", None, 2).await, ["a1", "a2", "a3"], "{context}");
        assert_eq!(staged(tx.as_mut(), &defined, "lib", None, 2).await, ["l1", "l2"], "{context}");
        // Nulls last both ways; pages of one cross from the valued entities to the others.
        assert_eq!(staged(tx.as_mut(), &defined, "app", Some(false), 1).await, ["a2", "a1", "a3"], "{context}");
        assert_eq!(staged(tx.as_mut(), &defined, "app", Some(true), 1).await, ["a1", "a2", "a3"], "{context}");
        assert_eq!(staged(tx.as_mut(), &defined, "lib", Some(true), 5).await, ["l2", "l1"], "{context}");
        let scope = Scope::new(&defined, Some("app"));
        let by_stage = AggregatePlan {
            blueprint: Some("app".into()),
            query: Query::And(vec![]),
            function: Aggregate::CountBy(scope.target("stage", false).expect("stage")),
            required_relations: vec![],
        };
        let AggregateResult::Groups(mut groups) = tx.aggregate(&by_stage).await.expect("countBy") else {
            panic!("countBy gives groups")
        };
        groups.sort_by_key(|(value, _)| value.to_string());
        assert_eq!(groups, vec![(json!("dev"), 1), (json!("prod"), 1), (Value::Null, 1)], "{context}");
        // An object is counted by its JSON value, not as a string.
        let by_meta =
            AggregatePlan { function: Aggregate::CountBy(scope.target("meta", false).expect("meta")), ..by_stage };
        let AggregateResult::Groups(mut groups) = tx.aggregate(&by_meta).await.expect("countBy") else {
            panic!("countBy gives groups")
        };
        groups.sort_by_key(|(value, _)| value.to_string());
        assert_eq!(groups, vec![(Value::Null, 2), (json!({"a": 1}), 1)], "{context}");
        tx.commit().await.expect("commit");
    }
    let mut tx = store.write().await.expect("write tx");
    assert_eq!(tx.delete_entities_of("lib").await.expect("delete"), 2);
    assert_eq!(tx.count_entities("app").await.expect("count"), 3);
    assert_eq!(tx.count_entities("lib").await.expect("count"), 0);
    tx.commit().await.expect("commit");
}
