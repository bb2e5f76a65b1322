//! Backstage's catalog filters: any `filter` parameters and any predicate body are read or
//! refused with a reason, and both readings of the parameters agree on what they accept.

use portolan_model::manifest::backstage_query::{Predicate, parse_filters};
use serde_json::json;

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line holds the `filter` parameters (tab-separated); the rest, a predicate body.
    let (parameters, body) = text.split_once('\n').unwrap_or((text, ""));
    let filters: Vec<String> = parameters.split('\t').map(str::to_string).collect();
    let entity = json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "cart", "namespace": "default", "tags": ["rust", "Shop"], "annotations": {"a/b": "c"}},
        "spec": {"type": "service", "lifecycle": "production", "owner": "group:team-a"},
        "relations": [{"type": "ownedBy", "targetRef": "group:default/team-a"}]
    });
    match (parse_filters(&filters), Predicate::from_filters(&filters)) {
        (Ok(sets), Ok(predicate)) => {
            assert!(sets.iter().all(|set| set.iter().all(|c| c.key == c.key.to_lowercase())), "keys are lowercase");
            predicate.matches(&entity);
        }
        (Err(_), Err(_)) => {}
        (one, other) => panic!("the two readings of {filters:?} disagree: {one:?} and {other:?}"),
    }
    if let Some(body) = crate::fixtures::json(body.as_bytes())
        && let Ok(predicate) = Predicate::parse(&body)
    {
        let matched = predicate.matches(&entity);
        assert_eq!(Predicate::Not(Box::new(predicate)).matches(&entity), !matched);
    }
}
