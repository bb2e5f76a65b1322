//! The query language: any JSON document either is refused with located errors, or parses to a
//! query that the in-memory evaluator and both SQL translations accept.

use portolan_model::query::{self, MemoryGraph, QueryContext, Scope};
use portolan_store::query_sql::{Aggregate, AggregatePlan, Dialect, SearchPlan, aggregate, search};

pub fn check(data: &[u8]) {
    let Some(document) = crate::fixtures::json(data) else { return };
    let blueprints = crate::fixtures::blueprints();
    let entities = crate::fixtures::entities();
    let context = QueryContext { now: 1_800_000_000_000, user: Some("fuzz".into()), user_teams: vec!["team-a".into()] };
    for searched in [Some("service"), None] {
        let scope = Scope::new(&blueprints, searched);
        let parsed = match query::parse(&document, &scope, &context) {
            Ok(parsed) => parsed,
            Err(errors) => {
                assert!(!errors.0.is_empty(), "a refusal names at least one problem");
                for error in &errors.0 {
                    assert!(
                        error.path.is_empty() || error.path.starts_with('/'),
                        "{:?} is not a JSON pointer",
                        error.path
                    );
                }
                continue;
            }
        };
        let graph = MemoryGraph::new(&blueprints, &entities);
        for entity in &entities {
            parsed.matches(entity, &graph);
        }
        let required_relations = vec![("service".to_string(), "system".to_string())];
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let plan = SearchPlan {
                blueprint: searched.map(str::to_string),
                query: parsed.clone(),
                sort: None,
                after: None,
                limit: 50,
                required_relations: required_relations.clone(),
            };
            if let Err(error) = search(dialect, &plan, vec![]) {
                panic!("a query the parser accepted has no SQL: {error}");
            }
            let plan = AggregatePlan {
                blueprint: searched.map(str::to_string),
                query: parsed.clone(),
                function: Aggregate::Count,
                required_relations: required_relations.clone(),
            };
            if let Err(error) = aggregate(dialect, &plan, None) {
                panic!("a query the parser accepted cannot be counted: {error}");
            }
        }
    }
}
