//! The audit log's records and their hash chain. Each record is stored as one canonical JSON text
//! beside the hash of the record before it; its own hash covers both, so editing, deleting,
//! reordering or inserting a record breaks the chain at that record.
//!
//! The chain alone does not stop someone who can write the database: they can recompute it after
//! an edit. So each record also carries a MAC of its hash under the audit key, which is kept
//! outside the database, and signed [`Checkpoint`]s of the log's head are kept outside it too:
//! a log cut short or rewritten no longer reaches a checkpoint's record.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Millis, hex};

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
    /// The MAC of `hash` under the audit key; absent on records written before the log had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
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

    /// This entry as record `seq`, chained to `prev_hash` and signed with `key`: the canonical
    /// text stored and hashed.
    pub fn seal(self, seq: i64, prev_hash: &str, key: Option<&AuditKey>) -> (AuditRecord, String) {
        let text = canonical(seq, &self);
        let hash = chain_hash(prev_hash, &text);
        let mac = key.map(|key| key.record_mac(seq, &hash));
        (AuditRecord { seq, entry: self, prev_hash: prev_hash.to_string(), hash, mac }, text)
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

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// The key that signs the audit log: each record's MAC and the checkpoints. It must be kept
/// outside the database, or whoever can rewrite the log can re-sign it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey([u8; AuditKey::BYTES]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id())
    }
}

impl AuditKey {
    pub const BYTES: usize = 32;

    pub fn new(bytes: [u8; Self::BYTES]) -> Self {
        Self(bytes)
    }

    /// HMAC-SHA256 over length-prefixed parts (no two part lists give the same input).
    fn tagged(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn tag(&self, parts: &[&[u8]]) -> String {
        hex(&self.tagged(parts).finalize().into_bytes())
    }

    /// Compares in constant time.
    fn checks(&self, parts: &[&[u8]], mac: &str) -> bool {
        unhex(mac).is_some_and(|bytes| self.tagged(parts).verify_slice(&bytes).is_ok())
    }

    /// A name for the key that does not reveal it: which key signed a checkpoint.
    pub fn id(&self) -> String {
        self.tag(&[b"portolan/audit/key-id"])[..16].to_string()
    }

    /// The MAC of record `seq` with `hash` (which covers the record and, through the chain, every
    /// record before it).
    pub fn record_mac(&self, seq: i64, hash: &str) -> String {
        self.tag(&[b"portolan/audit/record/v1", &seq.to_be_bytes(), hash.as_bytes()])
    }

    pub fn checks_record(&self, seq: i64, hash: &str, mac: &str) -> bool {
        self.checks(&[b"portolan/audit/record/v1", &seq.to_be_bytes(), hash.as_bytes()], mac)
    }
}

/// The checkpoint format this version writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// A signed statement that the log reached record `seq` with `hash` at `at`. Kept outside the
/// database, it lets `audit verify` notice a log that was cut short (it no longer reaches `seq`)
/// or rewritten (record `seq` has another hash), even with the head reset to match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    /// The format, 1.
    pub version: u32,
    /// The newest record when the checkpoint was made (0: the log was empty).
    pub seq: i64,
    /// That record's hash.
    pub hash: String,
    /// That record's MAC; absent when it was written before the log had an audit key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_mac: Option<String>,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub at: Millis,
    /// Which audit key signed it ([`AuditKey::id`]).
    pub key_id: String,
    /// HMAC-SHA256 of the fields above under the audit key.
    pub mac: String,
}

impl Checkpoint {
    pub fn sign(key: &AuditKey, seq: i64, hash: &str, record_mac: Option<&str>, at: Millis) -> Checkpoint {
        let parts = Self::parts(seq, hash, record_mac, at);
        let mac = key.tag(&parts.each_ref().map(Vec::as_slice));
        Checkpoint {
            version: CHECKPOINT_VERSION,
            seq,
            hash: hash.to_string(),
            record_mac: record_mac.map(str::to_string),
            at,
            key_id: key.id(),
            mac,
        }
    }

    fn parts(seq: i64, hash: &str, record_mac: Option<&str>, at: Millis) -> [Vec<u8>; 5] {
        [
            b"portolan/audit/checkpoint/v1".to_vec(),
            seq.to_be_bytes().to_vec(),
            hash.as_bytes().to_vec(),
            record_mac.unwrap_or_default().as_bytes().to_vec(),
            at.to_be_bytes().to_vec(),
        ]
    }

    /// Checks the checkpoint's own signature.
    pub fn check(&self, key: &AuditKey) -> Result<(), String> {
        if self.version != CHECKPOINT_VERSION {
            return Err(format!("checkpoint format {} is not one this version reads", self.version));
        }
        if self.key_id != key.id() {
            return Err(format!(
                "the checkpoint was signed with audit key {}, not with this one ({})",
                self.key_id,
                key.id()
            ));
        }
        let parts = Self::parts(self.seq, &self.hash, self.record_mac.as_deref(), self.at);
        if !key.checks(&parts.each_ref().map(Vec::as_slice), &self.mac) {
            return Err("the checkpoint's MAC does not match: the checkpoint was edited".into());
        }
        Ok(())
    }

    /// How messages name it.
    pub fn describe(&self) -> String {
        format!("the checkpoint of {}", crate::format_millis(self.at))
    }
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
    pub mac: Option<String>,
}

/// What a walk of the whole log found, when it found nothing wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub records: u64,
    /// Records before the first one with a MAC (written before the log had an audit key): their
    /// chain is checked, but someone who could write the database could have recomputed it.
    pub unkeyed: u64,
    /// The checkpoint the log was held to.
    pub checkpoint: Option<Checkpoint>,
}

/// Walks records in storage order, checking each against the one before: the sequence has no
/// gap, each record chains to its predecessor's hash, its own hash matches its text, the
/// searchable columns say what the text says, and its MAC matches the audit key. Records without
/// a MAC may only come first (from before the log had a key). Held to a checkpoint, the walk must
/// pass the checkpoint's record unchanged.
#[derive(Debug)]
pub struct ChainCheck {
    next_seq: i64,
    prev_hash: String,
    key: Option<AuditKey>,
    checkpoint: Option<Checkpoint>,
    /// A record with a MAC was seen: every later one must have one.
    keyed: bool,
    pub checked: u64,
    unkeyed: u64,
}

impl ChainCheck {
    /// A walk from the first record, checking MACs with `key` (without one, a record with a MAC
    /// is an error: it cannot be checked).
    pub fn new(key: Option<AuditKey>) -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.to_string(),
            key,
            checkpoint: None,
            keyed: false,
            checked: 0,
            unkeyed: 0,
        }
    }

    /// A walk that goes on after a record already checked (`seq` with `hash`, whether it had a MAC).
    pub fn resume(key: Option<AuditKey>, seq: i64, hash: &str, keyed: bool) -> Self {
        Self { next_seq: seq + 1, prev_hash: hash.to_string(), keyed, ..Self::new(key) }
    }

    /// Holds the walk to `checkpoint`, whose own signature the caller has checked.
    pub fn against(mut self, checkpoint: Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
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
        match (&record.mac, &self.key) {
            (Some(mac), Some(key)) => {
                if !key.checks_record(seq, &record.hash, mac) {
                    return Err(format!(
                        "record {seq} was rewritten: its MAC does not match the audit key (the chain was \
                         recomputed by someone without the key, or the key was changed)"
                    ));
                }
                self.keyed = true;
            }
            (Some(_), None) => {
                return Err(format!("record {seq} has a MAC, but no audit key was given to check it"));
            }
            (None, _) if self.keyed => {
                return Err(format!("record {seq} was rewritten: it has no MAC though the records before it have"));
            }
            (None, _) => self.unkeyed += 1,
        }
        if let Some(checkpoint) = self.checkpoint.as_ref().filter(|c| c.seq == seq) {
            if checkpoint.hash != record.hash {
                return Err(format!(
                    "record {seq} is not the record {} signed: the log was rewritten",
                    checkpoint.describe()
                ));
            }
            if checkpoint.record_mac.is_some() && checkpoint.record_mac != record.mac {
                return Err(format!(
                    "record {seq} lost the MAC it had at {}: the log was rewritten",
                    checkpoint.describe()
                ));
            }
        }
        self.next_seq += 1;
        self.prev_hash = record.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// The last record checked: its number and hash.
    pub fn position(&self) -> (i64, &str) {
        (self.next_seq - 1, &self.prev_hash)
    }

    /// After the last record: the log must reach the checkpoint's record, and its head (last
    /// sequence and hash) must be where the walk ended, so that removing the newest records is
    /// noticed too.
    pub fn finish(&self, head: Option<(i64, String)>) -> Result<Verified, String> {
        let last = self.next_seq - 1;
        if let Some(checkpoint) = self.checkpoint.as_ref().filter(|c| c.seq > last) {
            let missing = if last + 1 == checkpoint.seq {
                format!("record {} was", checkpoint.seq)
            } else {
                format!("records {} to {} were", last + 1, checkpoint.seq)
            };
            return Err(format!(
                "the log ends at record {last} but {} reached record {}: {missing} removed",
                checkpoint.describe(),
                checkpoint.seq
            ));
        }
        let (seq, hash) = head.unwrap_or((0, GENESIS.to_string()));
        if seq != self.next_seq - 1 || hash != self.prev_hash {
            return Err(format!(
                "the log ends at record {} but its head says {seq}: the newest records were removed",
                self.next_seq - 1
            ));
        }
        Ok(Verified { records: self.checked, unkeyed: self.unkeyed, checkpoint: self.checkpoint.clone() })
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

    fn key() -> AuditKey {
        AuditKey::new([9; AuditKey::BYTES])
    }

    fn chain(actions: &[&str]) -> Vec<StoredRecord> {
        chain_keyed(actions, Some(&key()))
    }

    fn chain_keyed(actions: &[&str], key: Option<&AuditKey>) -> Vec<StoredRecord> {
        let mut prev = GENESIS.to_string();
        actions
            .iter()
            .enumerate()
            .map(|(i, action)| {
                let (record, text) = entry(action).seal(i as i64 + 1, &prev, key);
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
                    mac: record.mac,
                }
            })
            .collect()
    }

    fn walk(mut check: ChainCheck, records: &[StoredRecord]) -> Result<Verified, String> {
        for r in records {
            check.next(r)?;
        }
        let head = records.last().map(|r| (r.seq, r.hash.clone()));
        check.finish(head)
    }

    fn verify(records: &[StoredRecord]) -> Result<u64, String> {
        walk(ChainCheck::new(Some(key())), records).map(|v| v.records)
    }

    /// What someone who can write the database but lacks the key can do: rewrite records and
    /// recompute the chain after them (keeping or dropping the MACs they cannot compute).
    fn rechain(records: &mut [StoredRecord], drop_macs: bool) {
        let mut prev = GENESIS.to_string();
        for r in records.iter_mut() {
            let mut value: Value = serde_json::from_str(&r.text).expect("json");
            value["seq"] = Value::from(r.seq);
            r.text = value.to_string();
            r.prev_hash = prev.clone();
            r.hash = chain_hash(&prev, &r.text);
            if drop_macs {
                r.mac = None;
            }
            prev = r.hash.clone();
        }
    }

    fn checkpoint_of(records: &[StoredRecord]) -> Checkpoint {
        let last = records.last().expect("a record");
        Checkpoint::sign(&key(), last.seq, &last.hash, last.mac.as_deref(), 1_800_000_100_000)
    }

    #[test]
    fn a_recomputed_chain_fails_its_macs_and_a_checkpoint_catches_cuts_and_rewrites() {
        let records = chain(&["entity.create", "entity.update", "entity.delete", "entity.create"]);
        let checkpoint = checkpoint_of(&records[..3]);
        assert_eq!(checkpoint.check(&key()), Ok(()));
        let held = |records: &[StoredRecord]| walk(ChainCheck::new(Some(key())).against(checkpoint.clone()), records);
        assert_eq!(held(&records).map(|v| (v.records, v.unkeyed)), Ok((4, 0)));

        // Edited, chain recomputed: the MAC gives it away, with or without the checkpoint.
        let mut edited = records.clone();
        edited[1].text = edited[1].text.replace("cart", "cafe");
        edited[1].resource_id = "cafe".into();
        rechain(&mut edited, false);
        assert!(verify(&edited).expect_err("edited").starts_with("record 2 was rewritten: its MAC does not match"));

        // The same with every MAC dropped: alone it passes as a log from before audit keys, but
        // not past the checkpoint, whose record changed.
        let mut stripped = edited.clone();
        rechain(&mut stripped, true);
        assert_eq!(walk(ChainCheck::new(Some(key())), &stripped).map(|v| v.unkeyed), Ok(4));
        let err = held(&stripped).expect_err("rewritten");
        assert!(err.starts_with("record 3 is not the record the checkpoint of"), "{err}");

        // Only the MACs after the checkpoint dropped (and those records rewritten).
        let mut tail = records.clone();
        tail[3].text = tail[3].text.replace("ana", "eve");
        tail[3].actor = "eve".into();
        rechain(&mut tail, false);
        tail[3].mac = None;
        let err = verify(&tail).expect_err("no MAC after keyed records");
        assert_eq!(err, "record 4 was rewritten: it has no MAC though the records before it have");

        // Cut short with the head reset to match: only the checkpoint tells.
        assert_eq!(verify(&records[..2]), Ok(2));
        let err = held(&records[..2]).expect_err("cut");
        assert!(err.ends_with("reached record 3: record 3 was removed"), "{err}");
        let err = held(&[]).expect_err("emptied");
        assert!(err.contains("records 1 to 3 were removed"), "{err}");

        // A record with a MAC but no key to check it with.
        assert!(walk(ChainCheck::new(None), &records).expect_err("no key").contains("no audit key"));
        // Another key.
        let other = AuditKey::new([1; AuditKey::BYTES]);
        assert!(walk(ChainCheck::new(Some(other.clone())), &records).is_err());
        assert!(checkpoint.check(&other).expect_err("other key").contains("signed with audit key"));
    }

    #[test]
    fn checkpoints_are_signed_and_a_log_from_before_audit_keys_continues_with_macs() {
        let checkpoint = Checkpoint::sign(&key(), 7, GENESIS, Some("ab"), 1_800_000_000_000);
        let text = serde_json::to_string(&checkpoint).expect("json");
        let read: Checkpoint = serde_json::from_str(&text).expect("reads back");
        assert_eq!(read.check(&key()), Ok(()));
        for forged in [
            Checkpoint { seq: 6, ..read.clone() },
            Checkpoint { hash: "1".repeat(64), ..read.clone() },
            Checkpoint { record_mac: None, ..read.clone() },
            Checkpoint { at: read.at + 1, ..read.clone() },
        ] {
            assert!(forged.check(&key()).expect_err("forged").contains("MAC does not match"));
        }

        // Two records from before the key, then two with MACs: a walk counts the first two.
        let mut records = chain_keyed(&["a", "b", "c", "d"], None);
        let keyed = chain(&["a", "b", "c", "d"]);
        records[2].mac = keyed[2].mac.clone();
        records[3].mac = keyed[3].mac.clone();
        assert_eq!(walk(ChainCheck::new(Some(key())), &records).map(|v| v.unkeyed), Ok(2));

        // A walk resumed after a checked record goes on from there.
        let mut resumed = ChainCheck::resume(Some(key()), 2, &records[1].hash, false);
        for r in &records[2..] {
            resumed.next(r).expect("intact");
        }
        assert_eq!(resumed.position(), (4, records[3].hash.as_str()));
        let mut cut = records[3].clone();
        cut.mac = None;
        assert!(ChainCheck::resume(Some(key()), 3, &records[2].hash, true).next(&cut).is_err(), "MACs go on");
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
        let mut check = ChainCheck::new(Some(key()));
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
