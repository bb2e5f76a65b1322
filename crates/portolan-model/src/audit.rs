//! The audit log's records and their hash chain. Each record is stored as one canonical JSON text
//! beside the hash of the record before it; its own hash covers both, so editing, deleting,
//! reordering or inserting a record breaks the chain at that record.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Millis;

/// The hash the first record chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// A diff larger than this (in JSON bytes) is replaced by its size and hash, so that every record
/// stays a line a person and a log shipper can handle.
pub const MAX_DIFF_BYTES: usize = 64 * 1024;

/// What happened, as a service reports it; the store gives it a sequence number and chains it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub at: Millis,
    /// A `_user` identifier, `run:<id>`, `automation:<id>`, `runner:<token id>` or `portolan`.
    pub actor: String,
    /// `api`, `ui`, `automation`, `runner`, `backend`, `cli`, `demo`.
    pub origin: String,
    /// What was done: `entity.create`, `entity.update`, `entity.delete`, `blueprint.update`,
    /// `run.create`, `run.status`, `login`, `login.failed`, `permissions.update`, ...
    pub action: String,
    /// `entity`, `blueprint`, `scorecard`, `action`, `run`, `permissions`, `secret`, `token`,
    /// `runner-token`, `account`, `session`.
    pub resource_type: String,
    pub resource_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// `success` or `denied`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Why it was denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `{"before": ..., "after": ...}` of what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub diff: Option<Value>,
}

pub const SUCCESS: &str = "success";
pub const DENIED: &str = "denied";

/// A stored record: the entry, its place in the log and the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// A `{"before", "after"}` diff of two documents, bounded by [`MAX_DIFF_BYTES`].
    pub fn diff(before: Option<Value>, after: Option<Value>) -> Value {
        let diff = serde_json::json!({"before": before, "after": after});
        let text = diff.to_string();
        if text.len() <= MAX_DIFF_BYTES {
            return diff;
        }
        serde_json::json!({"truncated": true, "bytes": text.len(), "sha256": hex(&Sha256::digest(text.as_bytes()))})
    }

    /// The same entry about something of `blueprint`.
    pub fn on(mut self, blueprint: impl Into<String>) -> Self {
        self.blueprint = Some(blueprint.into());
        self
    }

    /// The same entry with what changed.
    pub fn changed(mut self, before: Option<Value>, after: Option<Value>) -> Self {
        self.diff = Some(Self::diff(before, after));
        self
    }

    /// The same entry as a refusal, with why.
    pub fn denied(mut self, reason: impl Into<String>) -> Self {
        self.status = DENIED.into();
        self.reason = Some(reason.into());
        self
    }

    /// This entry as record `seq`, chained to `prev_hash`: the canonical text stored and hashed.
    pub fn seal(self, seq: i64, prev_hash: &str) -> (AuditRecord, String) {
        let text = canonical(seq, &self);
        let hash = chain_hash(prev_hash, &text);
        (AuditRecord { seq, entry: self, prev_hash: prev_hash.to_string(), hash }, text)
    }
}

/// The text a record's hash covers: its sequence number and entry as compact JSON, in field order.
pub fn canonical(seq: i64, entry: &AuditEntry) -> String {
    let mut value = serde_json::to_value(entry).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        let mut ordered = serde_json::Map::new();
        ordered.insert("seq".into(), Value::from(seq));
        ordered.extend(std::mem::take(map));
        *map = ordered;
    }
    value.to_string()
}

pub fn chain_hash(prev_hash: &str, text: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(prev_hash.as_bytes());
    digest.update(b"\n");
    digest.update(text.as_bytes());
    hex(&digest.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A record as read back for verification: the columns the log is searched by, and the stored
/// text and hashes.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub seq: i64,
    pub at: Millis,
    pub actor: String,
    pub origin: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub blueprint: Option<String>,
    pub run: Option<String>,
    pub status: String,
    pub text: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Walks records in storage order, checking each against the one before: the sequence has no
/// gap, each record chains to its predecessor's hash, its own hash matches its text, and the
/// searchable columns say what the text says.
#[derive(Debug, Default)]
pub struct ChainCheck {
    next_seq: i64,
    prev_hash: String,
    pub checked: u64,
}

impl ChainCheck {
    pub fn new() -> Self {
        Self { next_seq: 1, prev_hash: GENESIS.to_string(), checked: 0 }
    }

    /// Checks the next record; the error names the first record that is wrong and how.
    pub fn next(&mut self, record: &StoredRecord) -> Result<(), String> {
        let seq = record.seq;
        if seq != self.next_seq {
            return Err(if seq > self.next_seq {
                format!("record {} is missing (the next stored record is {seq})", self.next_seq)
            } else {
                format!("record {seq} is out of order or repeated (expected {})", self.next_seq)
            });
        }
        if record.prev_hash != self.prev_hash {
            return Err(format!("record {seq} does not chain to record {}: a record was removed or inserted", seq - 1));
        }
        if chain_hash(&record.prev_hash, &record.text) != record.hash {
            return Err(format!("record {seq} was edited: its hash does not match its content"));
        }
        let parsed: Value = serde_json::from_str(&record.text).map_err(|_| format!("record {seq} is not JSON"))?;
        let entry: Option<AuditEntry> = serde_json::from_value(parsed.clone()).ok();
        let agrees = entry.is_some_and(|e| {
            e.at == record.at
                && e.actor == record.actor
                && e.origin == record.origin
                && e.action == record.action
                && e.resource_type == record.resource_type
                && e.resource_id == record.resource_id
                && e.blueprint == record.blueprint
                && e.run == record.run
                && e.status == record.status
        });
        if parsed.get("seq").and_then(Value::as_i64) != Some(seq) || !agrees {
            return Err(format!("record {seq} was edited: its columns disagree with its content"));
        }
        self.next_seq += 1;
        self.prev_hash = record.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// After the last record: the log's head (last sequence and hash) must be where the walk ended,
    /// so that removing the newest records is noticed too.
    pub fn finish(&self, head: Option<(i64, String)>) -> Result<u64, String> {
        let (seq, hash) = head.unwrap_or((0, GENESIS.to_string()));
        if seq != self.next_seq - 1 || hash != self.prev_hash {
            return Err(format!(
                "the log ends at record {} but its head says {seq}: the newest records were removed",
                self.next_seq - 1
            ));
        }
        Ok(self.checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            at: 1_800_000_000_000,
            actor: "ana".into(),
            origin: "api".into(),
            action: action.into(),
            resource_type: "entity".into(),
            resource_id: "cart".into(),
            blueprint: Some("service".into()),
            run: None,
            status: SUCCESS.into(),
            request_id: Some("req-1".into()),
            reason: None,
            diff: Some(AuditEntry::diff(None, Some(serde_json::json!({"a": "line\nbreak\u{7}"})))),
        }
    }

    fn chain(actions: &[&str]) -> Vec<StoredRecord> {
        let mut prev = GENESIS.to_string();
        actions
            .iter()
            .enumerate()
            .map(|(i, action)| {
                let (record, text) = entry(action).seal(i as i64 + 1, &prev);
                prev = record.hash.clone();
                StoredRecord {
                    seq: record.seq,
                    at: record.entry.at,
                    actor: record.entry.actor,
                    origin: record.entry.origin,
                    action: record.entry.action,
                    resource_type: record.entry.resource_type,
                    resource_id: record.entry.resource_id,
                    blueprint: record.entry.blueprint,
                    run: record.entry.run,
                    status: record.entry.status,
                    text,
                    prev_hash: record.prev_hash,
                    hash: record.hash,
                }
            })
            .collect()
    }

    fn verify(records: &[StoredRecord]) -> Result<u64, String> {
        let mut check = ChainCheck::new();
        for r in records {
            check.next(r)?;
        }
        let head = records.last().map(|r| (r.seq, r.hash.clone()));
        check.finish(head)
    }

    #[test]
    fn an_intact_chain_verifies_and_every_tampering_is_named() {
        let records = chain(&["entity.create", "entity.update", "entity.delete"]);
        assert_eq!(verify(&records), Ok(3));
        assert!(!records[0].text.contains('\n'), "one line, control characters escaped");

        let mut edited = records.clone();
        edited[1].text = edited[1].text.replace("cart", "cafe");
        assert_eq!(verify(&edited), Err("record 2 was edited: its hash does not match its content".into()));

        let mut column = records.clone();
        column[1].resource_id = "other".into();
        assert!(verify(&column).expect_err("column").starts_with("record 2 was edited"));

        let mut removed = records.clone();
        removed.remove(1);
        assert_eq!(verify(&removed), Err("record 2 is missing (the next stored record is 3)".into()));

        let mut swapped = records.clone();
        swapped.swap(1, 2);
        assert!(verify(&swapped).is_err());

        // Re-numbered after a removal: the chain still breaks at the record after the gap.
        let mut renumbered = records.clone();
        renumbered.remove(1);
        renumbered[1].seq = 2;
        assert!(verify(&renumbered).expect_err("renumbered").starts_with("record 2"));

        // The newest record removed: only the head tells.
        let mut check = ChainCheck::new();
        for r in &records[..2] {
            check.next(r).expect("prefix is intact");
        }
        assert!(check.finish(Some((3, records[2].hash.clone()))).is_err());
    }

    #[test]
    fn large_diffs_are_summarised() {
        let big = serde_json::json!({"blob": "x".repeat(MAX_DIFF_BYTES)});
        let diff = AuditEntry::diff(None, Some(big));
        assert_eq!(diff["truncated"], true);
        assert!(diff.to_string().len() < 200);
    }
}
