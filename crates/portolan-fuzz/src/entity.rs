//! Entity validation: for any blueprint the server would accept and any entity document, either
//! the document is refused with located errors, or what would be stored validates again to
//! exactly itself (a stored entity never becomes invalid by being read back and resubmitted).

use portolan_model::blueprint::Blueprint;
use portolan_model::entity::{Entity, EntityInput};
use serde_json::{Map, Value};

pub fn check(data: &[u8]) {
    let Some(Value::Object(mut document)) = crate::fixtures::json(data) else { return };
    let (Some(blueprint), Some(entity)) = (document.remove("blueprint"), document.remove("entity")) else { return };
    let Ok(blueprint) = Blueprint::from_json(blueprint) else { return };
    if blueprint.validate(|_| true).is_err() {
        return;
    }
    let Ok(input) = EntityInput::from_json(entity) else { return };
    let valid = match input.validate(&blueprint) {
        Ok(valid) => valid,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refusal names at least one problem");
            return;
        }
    };
    let stored = Entity {
        identifier: valid.identifier.clone(),
        title: valid.title.clone(),
        icon: valid.icon.clone(),
        blueprint: blueprint.identifier.clone(),
        team: valid.team.clone(),
        properties: valid.properties.clone(),
        relations: valid.relations.clone(),
        scorecards: Map::new(),
        diagnostics: Map::new(),
        version: 1,
        created_at: 0,
        created_by: "fuzz".into(),
        updated_at: 0,
        updated_by: "fuzz".into(),
    };
    match stored.revalidate(&blueprint) {
        Ok(again) => assert_eq!(again, valid, "a stored entity changes when validated again"),
        Err(errors) => panic!("a stored entity is refused when validated again: {errors:?}"),
    }
}
