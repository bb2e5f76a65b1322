//! The system blueprints: users and teams are entities like any other, so ownership, pickers,
//! search and permissions treat them the same way. Admins may add properties; the ones defined
//! here cannot be removed, and the blueprints cannot be deleted.

use serde_json::json;

use crate::blueprint::Blueprint;
use crate::error::FieldErrors;

pub const TEAM: &str = "_team";
pub const USER: &str = "_user";

/// The system blueprints, as created on first start.
pub fn blueprints() -> Vec<Blueprint> {
    let team = json!({
        "identifier": TEAM,
        "title": "Team",
        "icon": "Team",
        "description": "A team of people; entities name their owning teams in `team`.",
        "schema": {"properties": {
            "description": {"type": "string", "title": "Description"},
            "slackChannel": {"type": "string", "title": "Slack channel"}
        }}
    });
    // A user's teams are the `team` of their `_user` entity.
    let user = json!({
        "identifier": USER,
        "title": "User",
        "icon": "User",
        "description": "A person who uses the portal; their `team` lists the teams they belong to.",
        "schema": {"properties": {
            "email": {"type": "string", "format": "email", "title": "Email"},
            "fullName": {"type": "string", "title": "Full name"},
            "status": {"type": "string", "enum": ["active", "disabled"], "default": "active", "title": "Status"}
        }}
    });
    [team, user].into_iter().filter_map(|doc| Blueprint::from_json(doc).ok()).collect()
}

pub fn is_system(identifier: &str) -> bool {
    identifier == TEAM || identifier == USER
}

/// Checks a replacement of a system blueprint: its built-in properties must stay as they are.
pub fn check_system_change(new: &Blueprint) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    let Some(builtin) = blueprints().into_iter().find(|b| b.identifier == new.identifier) else {
        return Ok(());
    };
    for (name, prop) in &builtin.schema.properties {
        if new.schema.properties.get(name) != Some(prop) {
            errors.push(
                format!("/schema/properties/{name}"),
                format!("'{name}' is a built-in property of {} and cannot be changed or removed", new.identifier),
            );
        }
    }
    errors.into_result(())
}

/// Whether a new blueprint identifier is reserved for the system.
pub fn check_user_blueprint_identifier(identifier: &str) -> Result<(), String> {
    if identifier.starts_with('_') {
        Err(format!("identifiers starting with '_' are reserved for system blueprints ('{identifier}')"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_blueprints_are_valid() {
        let all = blueprints();
        assert_eq!(all.len(), 2);
        for bp in &all {
            assert_eq!(bp.validate(|_| true), Ok(()));
        }
    }
}
