//! Which audit records to list (the log is stored by `shared::audit`).

use portolan_model::Millis;

/// Which records to list; newest first, before `before` (a record's `seq`) when given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub blueprint: Option<String>,
    pub run: Option<String>,
    pub actor: Option<String>,
    pub origin: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    pub before: Option<i64>,
}
