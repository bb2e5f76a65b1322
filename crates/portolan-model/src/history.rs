//! The catalog's past, read back from the audit log: the record of every entity write carries the
//! whole entity after it, so an entity as of a time is what its newest record up to then says.

use serde_json::Value;

use crate::Millis;
use crate::audit::AuditEntry;
use crate::entity::Entity;

/// What an entity's newest record up to some time says it was.
#[derive(Debug, Clone, PartialEq)]
pub enum Version {
    /// It existed, so.
    Present(Box<Entity>),
    /// It had been deleted, at this time.
    Deleted(Millis),
    /// The version was larger than a record keeps (the record has only its size and hash).
    Unrecorded,
}

impl Version {
    /// The version a successful `entity.*` record leaves the entity in.
    pub fn after(entry: &AuditEntry) -> Version {
        let after = entry.diff.as_ref().and_then(|diff| diff.get("after"));
        match after {
            Some(Value::Null) => Version::Deleted(entry.at),
            Some(document) => match serde_json::from_value::<Entity>(document.clone()) {
                Ok(entity) => Version::Present(Box::new(entity)),
                Err(_) => Version::Unrecorded,
            },
            None => Version::Unrecorded,
        }
    }
}

/// Refuses a time the log cannot answer for: one in the future.
pub fn check_as_of(at: Millis, now: Millis) -> Result<(), String> {
    if at > now {
        return Err(format!("{} is in the future", crate::format_millis(at)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(diff: Option<Value>) -> AuditEntry {
        AuditEntry {
            at: 5_000,
            actor: "ana".into(),
            origin: "api".into(),
            action: "entity.update".into(),
            resource_type: "entity".into(),
            resource_id: "cart".into(),
            blueprint: Some("service".into()),
            run: None,
            status: "success".into(),
            request_id: None,
            reason: None,
            diff,
        }
    }

    #[test]
    fn a_record_gives_back_the_entity_as_it_was_written() {
        let entity = Entity {
            identifier: "cart".into(),
            title: Some("Cart".into()),
            icon: None,
            blueprint: "service".into(),
            team: vec!["team-a".into()],
            properties: json!({"replicas": 3}).as_object().cloned().unwrap_or_default(),
            relations: json!({"system": "shop"}).as_object().cloned().unwrap_or_default(),
            scorecards: Default::default(),
            diagnostics: Default::default(),
            version: 4,
            created_at: 1_000,
            created_by: "ana".into(),
            updated_at: 5_000,
            updated_by: "ana".into(),
        };
        let written = serde_json::to_value(&entity).expect("json");
        let diff = AuditEntry::diff(None, Some(written));
        assert_eq!(Version::after(&entry(Some(diff))), Version::Present(Box::new(entity)));
        let deleted = AuditEntry::diff(Some(json!({"identifier": "cart"})), None);
        assert_eq!(Version::after(&entry(Some(deleted))), Version::Deleted(5_000));
        let huge = json!({"truncated": true, "bytes": 70_000, "sha256": "00"});
        assert_eq!(Version::after(&entry(Some(huge))), Version::Unrecorded);
    }

    #[test]
    fn only_the_past_is_answered_for() {
        assert!(check_as_of(10, 10).is_ok());
        assert!(check_as_of(11, 10).is_err_and(|e| e.contains("in the future")));
    }
}
