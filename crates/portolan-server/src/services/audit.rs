//! The audit log: records of refusals (changes write their own records in their transactions),
//! reading the log with the reader's permissions, and verifying the chain.

use std::collections::HashMap;

use portolan_model::audit::{AuditEntry, AuditRecord, ChainCheck};
use portolan_model::permission::{Access, EntityOp};
use portolan_store::{AuditFilter, Store, Tx};

use super::catalog::Catalog;
use super::{Actor, Principal};
use crate::error::{Error, Result};

/// Records read per step when walking the whole chain.
const CHAIN_PAGE: u32 = 5_000;
pub const DEFAULT_AUDIT_PAGE: u32 = 100;
pub const MAX_AUDIT_PAGE: u32 = 1_000;
/// How many pages of records a member's listing looks through for ones they may see.
const MEMBER_SCAN_PAGES: u32 = 10;

impl Catalog {
    /// Records a refused attempt in a transaction of its own (the attempt's own was rolled back).
    /// A failure to record is logged: the refusal stands either way.
    /// Records matching `filter`, newest first, that the actor may see, and the cursor of the next
    /// page. Admins see everything; members their own doings, and what happened to the entities
    /// they may read, the runs they may see, and blueprints and scorecards.
    pub async fn audit_log(
        &self,
        actor: &Actor,
        mut filter: AuditFilter,
        limit: u32,
    ) -> Result<(Vec<AuditRecord>, Option<i64>)> {
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(Error::invalid_at("/limit", format!("limit must be between 1 and {MAX_AUDIT_PAGE}")));
        }
        let mut tx = self.store().read().await?;
        let everything = match &actor.principal {
            Principal::System => true,
            Principal::User(user) => user.is_admin(),
            Principal::Run(_) => return Err(Error::forbidden("a run token may only report on its run")),
        };
        if everything {
            let records = tx.audit_records(&filter, limit).await?;
            let next = (records.len() as u32 == limit).then(|| records.last().map(|r| r.seq)).flatten();
            return Ok((records, next));
        }
        let mut shown = Vec::new();
        let mut reads: HashMap<String, Access> = HashMap::new();
        for _ in 0..MEMBER_SCAN_PAGES {
            let page = tx.audit_records(&filter, limit).await?;
            let Some(last) = page.last().map(|r| r.seq) else { return Ok((shown, None)) };
            for record in page {
                if self.may_see_record(tx.as_mut(), actor, &record, &mut reads).await? {
                    shown.push(record);
                    if shown.len() as u32 == limit {
                        let next = shown.last().map(|r| r.seq);
                        return Ok((shown, next));
                    }
                }
            }
            filter.before = Some(last);
        }
        // Looked far enough for one request: the caller may go on from here.
        Ok((shown, filter.before))
    }

    async fn may_see_record(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        record: &AuditRecord,
        reads: &mut HashMap<String, Access>,
    ) -> Result<bool> {
        let entry = &record.entry;
        if entry.actor == actor.id {
            return Ok(true);
        }
        match entry.resource_type.as_str() {
            "blueprint" | "scorecard" => Ok(true),
            "run" => Ok(self.visible_run(tx, actor, &entry.resource_id).await.is_ok()),
            "entity" => {
                let Some(blueprint) = &entry.blueprint else { return Ok(false) };
                if !reads.contains_key(blueprint) {
                    let access = self.entity_access(tx, actor, blueprint, EntityOp::Read).await?;
                    reads.insert(blueprint.clone(), access);
                }
                let access = &reads[blueprint];
                if *access == Access::Everything {
                    return Ok(true);
                }
                // Only entities that still exist can be checked; the history of a deleted one is
                // shown to those who may read every entity of its blueprint.
                let ids = [entry.resource_id.clone()];
                Ok(!self.admitted_by(tx, actor, blueprint, access, &ids).await?.is_empty())
            }
            _ => Ok(false),
        }
    }

    /// An entity's history, newest first: 404 unless the actor may read the entity.
    pub async fn entity_history(
        &self,
        actor: &Actor,
        blueprint: &str,
        identifier: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<AuditRecord>, Option<i64>)> {
        {
            let mut tx = self.store().read().await?;
            let hidden = || Error::not_found(format!("entity '{identifier}' of blueprint '{blueprint}'"));
            let access = self.entity_access(tx.as_mut(), actor, blueprint, EntityOp::Read).await?;
            let ids = [identifier.to_string()];
            let exists = tx.entity(blueprint, identifier).await?.is_some();
            let readable = match exists {
                true => !self.admitted_by(tx.as_mut(), actor, blueprint, &access, &ids).await?.is_empty(),
                false => access == Access::Everything,
            };
            if !readable {
                return Err(hidden());
            }
        }
        let filter = AuditFilter {
            resource_type: Some("entity".into()),
            resource_id: Some(identifier.into()),
            blueprint: Some(blueprint.into()),
            before,
            ..AuditFilter::default()
        };
        let system = Actor::system(actor.id.clone(), actor.origin);
        self.audit_log(&system, filter, limit).await
    }

    pub(crate) async fn record_denial(&self, entry: AuditEntry) {
        let written = async {
            let mut tx = self.store().write().await?;
            tx.append_audit(&[entry]).await?;
            tx.commit().await
        };
        if let Err(err) = written.await {
            tracing::warn!(%err, "a refusal could not be written to the audit log");
        }
    }
}

/// Walks the whole chain of `store`; `Ok` with the number of records, or the first broken record.
pub async fn verify(store: &dyn Store) -> Result<std::result::Result<u64, String>> {
    let mut tx = store.read().await?;
    let mut check = ChainCheck::new();
    let mut after = 0;
    loop {
        let page = tx.audit_chain(after, CHAIN_PAGE).await?;
        for record in &page {
            if let Err(broken) = check.next(record) {
                return Ok(Err(broken));
            }
        }
        match page.last() {
            Some(last) if page.len() == CHAIN_PAGE as usize => after = last.seq,
            _ => break,
        }
    }
    let head = tx.audit_head().await?;
    Ok(check.finish(Some(head)))
}

/// Every record after `after`, oldest first, a page at a time (for export).
pub async fn export_page(store: &dyn Store, after: i64, limit: u32) -> Result<Vec<AuditRecord>> {
    let mut tx = store.read().await?;
    let stored = tx.audit_chain(after, limit).await?;
    stored
        .into_iter()
        .map(|s| {
            let mut value: serde_json::Value = serde_json::from_str(&s.text)
                .map_err(|e| crate::error::Error::new(crate::error::ErrorCode::Internal, e.to_string()))?;
            value["prevHash"] = s.prev_hash.into();
            value["hash"] = s.hash.into();
            serde_json::from_value(value)
                .map_err(|e| crate::error::Error::new(crate::error::ErrorCode::Internal, e.to_string()))
        })
        .collect()
}
