//! The audit log: records of refusals (changes write their own records in their transactions),
//! reading the log with the reader's permissions, verifying the chain, the audit key that signs
//! it, and signed checkpoints of its head.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portolan_model::Millis;
use portolan_model::audit::{AuditEntry, AuditKey, AuditRecord, ChainCheck, Checkpoint, GENESIS, Verified};
use portolan_model::permission::{Access, EntityOp};
use portolan_store::{AuditFilter, Store, Tx};

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use super::actor::{Actor, Principal};
use super::core::Core;
use super::permissions::Permissions;
use crate::error::{Error, ErrorCode, Result};
use crate::keys::{KEY_BYTES, Keys};

/// The key file `serve` creates beside a SQLite database when no audit key is configured.
pub const AUDIT_KEY_FILE: &str = "audit.key";
/// The directory beside a SQLite database that checkpoints are written to by default.
pub const CHECKPOINT_DIR: &str = "audit-checkpoints";

/// Records read per step when walking the whole chain.
const CHAIN_PAGE: u32 = 5_000;
pub const DEFAULT_AUDIT_PAGE: u32 = 100;
pub const MAX_AUDIT_PAGE: u32 = 1_000;
/// How many pages of records a member's listing looks through for ones they may see.
const MEMBER_SCAN_PAGES: u32 = 10;

/// The audit log: reading it, recording refusals, and its signed checkpoints.
#[derive(Clone)]
pub struct Audit {
    core: Core,
    permissions: Permissions,
    signer: Arc<AuditSigner>,
    /// Records written apart, committed together (started with the first one).
    apart: Arc<OnceLock<mpsc::Sender<Apart>>>,
}

/// A record to write apart, and who waits for it to be written.
type Apart = (AuditEntry, oneshot::Sender<()>);

/// The most records one commit of [`Audit::record_apart`] writes.
const APART_BATCH: usize = 256;

impl Audit {
    /// What signs the log and where its checkpoints go.
    pub fn signer(&self) -> &AuditSigner {
        &self.signer
    }

    pub fn new(core: Core, permissions: Permissions, signer: Arc<AuditSigner>) -> Self {
        Self { core, permissions, signer, apart: Arc::default() }
    }
}

impl Audit {
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
        let mut tx = self.core.store().read().await?;
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
            "run" => Ok(self.permissions.visible_run(tx, actor, &entry.resource_id).await.is_ok()),
            "entity" => {
                let Some(blueprint) = &entry.blueprint else { return Ok(false) };
                if !reads.contains_key(blueprint) {
                    let access = self.permissions.entity_access(tx, actor, blueprint, EntityOp::Read).await?;
                    reads.insert(blueprint.clone(), access);
                }
                let access = &reads[blueprint];
                if *access == Access::Everything {
                    return Ok(true);
                }
                // Only entities that still exist can be checked; the history of a deleted one is
                // shown to those who may read every entity of its blueprint.
                let ids = [entry.resource_id.clone()];
                Ok(!self.permissions.admitted_by(tx, actor, blueprint, access, &ids).await?.is_empty())
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
            let mut tx = self.core.store().read().await?;
            let hidden = || Error::not_found(format!("entity '{identifier}' of blueprint '{blueprint}'"));
            let access = self.permissions.entity_access(tx.as_mut(), actor, blueprint, EntityOp::Read).await?;
            let ids = [identifier.to_string()];
            let exists = tx.entity(blueprint, identifier).await?.is_some();
            let readable = match exists {
                true => !self.permissions.admitted_by(tx.as_mut(), actor, blueprint, &access, &ids).await?.is_empty(),
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

    /// Writes one record apart from any change — a refusal, or an assistant's tool call — and
    /// returns once it is committed. Records that arrive together share one commit (group
    /// commit), so a burst of tool calls costs a write each no longer.
    pub(crate) async fn record_apart(&self, entry: AuditEntry) {
        let sender = self.apart.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(APART_BATCH * 4);
            tokio::spawn(write_apart(self.core.clone(), receiver));
            sender
        });
        let (written, done) = oneshot::channel();
        if sender.send((entry, written)).await.is_err() {
            tracing::warn!("the audit log's writer has stopped: a record was not written");
            return;
        }
        // The writer answers when the commit is over; a failure is in its log.
        let _ = done.await;
    }
}

/// Commits the records sent apart, as many at once as are waiting.
async fn write_apart(core: Core, mut receiver: mpsc::Receiver<Apart>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < APART_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (entries, waiting): (Vec<AuditEntry>, Vec<oneshot::Sender<()>>) = batch.into_iter().unzip();
        let written = async {
            let mut tx = core.store().write().await?;
            tx.append_audit(&entries).await?;
            tx.commit().await
        };
        if let Err(err) = written.await {
            let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
            tracing::warn!(%err, ?actions, "records could not be written to the audit log");
        }
        for waiter in waiting {
            let _ = waiter.send(());
        }
    }
}

/// Walks the whole chain of `store`, checking MACs with `key` and holding the log to
/// `checkpoint` (whose signature is checked first); `Ok` with what it found, or the first broken
/// record.
pub async fn verify(
    store: &dyn Store,
    key: Option<&AuditKey>,
    checkpoint: Option<Checkpoint>,
) -> Result<std::result::Result<Verified, String>> {
    let mut check = ChainCheck::new(key.cloned());
    if let Some(checkpoint) = checkpoint {
        let signed = match key {
            Some(key) => checkpoint.check(key),
            None => Err("no audit key was found to check the checkpoint's signature with".to_string()),
        };
        if let Err(err) = signed {
            return Ok(Err(err));
        }
        check = check.against(checkpoint);
    }
    let mut tx = store.read().await?;
    walk(tx.as_mut(), &mut check, 0).await
}

/// Goes on with `check` from record `after` to the head.
async fn walk(
    tx: &mut dyn Tx,
    check: &mut ChainCheck,
    mut after: i64,
) -> Result<std::result::Result<Verified, String>> {
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

/// Where the audit key and checkpoints live; see [`audit_key`].
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// A configured key (`audit_key` or `audit_key_file`): base64 of 32 bytes.
    pub key: Option<String>,
    /// The key file beside a SQLite database (`<data>/audit.key`).
    pub key_file: Option<PathBuf>,
    /// Create `key_file` when no key is found (for the commands that write; never for the ones
    /// that only check).
    pub create_key_file: bool,
    /// Where signed checkpoints are written.
    pub checkpoint_dir: Option<PathBuf>,
    /// How often the server writes one while the log grows; `None`: only when it starts and stops
    /// (and on request).
    pub checkpoint_every: Option<Duration>,
}

/// Where the audit key in use came from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyOrigin {
    /// `audit_key` or `audit_key_file`.
    Configured,
    /// The key file beside the SQLite database.
    File(PathBuf),
    /// Derived from the configured `secrets_key`.
    SecretsKey,
    /// Derived from the secrets key kept in the database itself: it protects nothing against
    /// someone who can read the database.
    Database,
}

impl std::fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOrigin::Configured => f.write_str("the configured audit_key"),
            KeyOrigin::File(path) => write!(f, "the key file {}", path.display()),
            KeyOrigin::SecretsKey => f.write_str("derived from the configured secrets_key"),
            KeyOrigin::Database => f.write_str("derived from the secrets key kept in the database (no protection)"),
        }
    }
}

fn parse_key(text: &str, what: &str) -> Result<AuditKey> {
    Keys::parse_master(text)
        .map(AuditKey::new)
        .map_err(|_| Error::new(ErrorCode::Internal, format!("{what} must be base64 of {KEY_BYTES} bytes")))
}

/// The audit key, from the first of: the configured `audit_key`; the key file beside a SQLite
/// database; the configured `secrets_key`; a new key file (when `create_key_file`); the secrets
/// key the database keeps (with a warning: that key is no protection). A key file, once made,
/// wins over a `secrets_key` configured later, so the key does not change under the log.
/// `None` when there is no key at all (a database no server has started on).
pub async fn audit_key(
    store: &dyn Store,
    secrets_key: Option<&str>,
    options: &AuditOptions,
) -> Result<Option<(AuditKey, KeyOrigin)>> {
    if let Some(text) = &options.key {
        return Ok(Some((parse_key(text, "the audit key")?, KeyOrigin::Configured)));
    }
    if let Some(path) = options.key_file.as_deref().filter(|p| p.exists()) {
        return Ok(Some((read_key_file(path)?, KeyOrigin::File(path.to_path_buf()))));
    }
    if let Some(text) = secrets_key {
        let master = Keys::parse_master(text).map_err(|e| Error::new(ErrorCode::Internal, e))?;
        return Ok(Some((Keys::derive_audit_key(&master), KeyOrigin::SecretsKey)));
    }
    if let Some(path) = options.key_file.as_deref().filter(|_| options.create_key_file) {
        let key = create_key_file(path)?;
        tracing::info!(path = %path.display(), "created the audit key file: keep it, and in production keep it away from the database");
        return Ok(Some((key, KeyOrigin::File(path.to_path_buf()))));
    }
    let stored = {
        let mut tx = store.read().await?;
        tx.setting("secrets_key").await?
    };
    let Some(text) = stored else { return Ok(None) };
    let master = Keys::parse_master(&text).map_err(|e| Error::new(ErrorCode::Internal, e))?;
    Ok(Some((Keys::derive_audit_key(&master), KeyOrigin::Database)))
}

fn read_key_file(path: &Path) -> Result<AuditKey> {
    let what = format!("the audit key file {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot read {what}: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            tracing::warn!(path = %path.display(), "the audit key file can be read by others than its owner");
        }
    }
    parse_key(&text, &what)
}

/// Writes a new random key to `path`, readable by its owner only. Another process making it at
/// the same moment is fine: then its key is the one read.
fn create_key_file(path: &Path) -> Result<AuditKey> {
    use std::io::Write;
    let text = Keys::generate_master();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let cannot = |e: std::io::Error| {
        Error::new(ErrorCode::Internal, format!("cannot create the audit key file {}: {e}", path.display()))
    };
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{text}\n").as_bytes()).map_err(cannot)?;
            file.sync_all().map_err(cannot)?;
            parse_key(&text, "the audit key")
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(cannot(e)),
    }
}

/// The audit key of a running server, and its checkpoints.
#[derive(Debug)]
pub struct AuditSigner {
    pub key: AuditKey,
    pub origin: KeyOrigin,
    pub checkpoint_dir: Option<PathBuf>,
    pub checkpoint_every: Option<Duration>,
    /// The newest checkpoint this process signed: the next one checks only the records after it.
    last: tokio::sync::Mutex<Option<Checkpoint>>,
}

impl AuditSigner {
    pub fn new(key: AuditKey, origin: KeyOrigin, options: &AuditOptions) -> Self {
        Self {
            key,
            origin,
            checkpoint_dir: options.checkpoint_dir.clone(),
            checkpoint_every: options.checkpoint_every,
            last: tokio::sync::Mutex::new(None),
        }
    }
}

/// The checkpoint files in `dir`, oldest first (by the record they reach).
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("checkpoint-") && n.ends_with(".json"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

pub fn read_checkpoint(path: &Path) -> std::result::Result<Checkpoint, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not an audit checkpoint: {e}", path.display()))
}

/// Writes `checkpoint` into `dir` as `checkpoint-<seq>.json` (numbered so names sort by record),
/// whole or not at all.
pub fn write_checkpoint(dir: &Path, checkpoint: &Checkpoint) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("checkpoint-{:012}.json", checkpoint.seq));
    let partial = dir.join(format!(".checkpoint-{:012}.json.partial", checkpoint.seq));
    let text = serde_json::to_string_pretty(checkpoint).map_err(std::io::Error::other)?;
    std::fs::write(&partial, format!("{text}\n"))?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// Checks the records after `since` (or all of them) and signs the head they end at.
pub async fn sign_checkpoint(
    store: &dyn Store,
    key: &AuditKey,
    since: Option<&Checkpoint>,
    now: Millis,
) -> Result<std::result::Result<Checkpoint, String>> {
    let (mut check, after) = match since {
        Some(c) => (ChainCheck::resume(Some(key.clone()), c.seq, &c.hash, c.record_mac.is_some()), c.seq),
        None => (ChainCheck::new(Some(key.clone())), 0),
    };
    // One snapshot: the head signed is the one the walk ended at.
    let mut tx = store.read().await?;
    if let Err(broken) = walk(tx.as_mut(), &mut check, after).await? {
        return Ok(Err(broken));
    }
    let (seq, hash) = check.position();
    if seq == 0 {
        return Ok(Ok(Checkpoint::sign(key, 0, GENESIS, None, now)));
    }
    let record_mac = tx.audit_chain(seq - 1, 1).await?.into_iter().next().and_then(|r| r.mac);
    Ok(Ok(Checkpoint::sign(key, seq, hash, record_mac.as_deref(), now)))
}

impl Audit {
    /// [`Audit::audit_checkpoint`] on request: admins only.
    pub async fn request_audit_checkpoint(&self, actor: &Actor) -> Result<Checkpoint> {
        match &actor.principal {
            Principal::System => {}
            Principal::User(user) if user.is_admin() => {}
            _ => return Err(Error::forbidden("only an admin may sign audit checkpoints")),
        }
        Ok(self.audit_checkpoint().await?.0)
    }

    /// Signs a checkpoint of the log as it is now (after checking the records since the last one
    /// this process signed) and writes it to the checkpoint directory, if there is one. A broken
    /// log gets no checkpoint: the error says where it broke.
    pub async fn audit_checkpoint(&self) -> Result<(Checkpoint, Option<PathBuf>)> {
        let signer = &self.signer;
        let mut last = signer.last.lock().await;
        if last.is_none() {
            *last = self.newest_checkpoint_file();
        }
        let checkpoint =
            match sign_checkpoint(self.core.store().as_ref(), &signer.key, last.as_ref(), self.core.now()).await? {
                Ok(checkpoint) => checkpoint,
                Err(broken) => {
                    return Err(Error::new(
                        ErrorCode::Internal,
                        format!("the audit log is broken, so no checkpoint was signed: {broken}"),
                    ));
                }
            };
        let mut written = None;
        if let Some(dir) = &signer.checkpoint_dir
            && last.as_ref().is_none_or(|l| l.seq != checkpoint.seq)
        {
            let path = write_checkpoint(dir, &checkpoint).map_err(|e| {
                Error::new(ErrorCode::Internal, format!("cannot write a checkpoint to {}: {e}", dir.display()))
            })?;
            written = Some(path);
        }
        *last = Some(checkpoint.clone());
        Ok((checkpoint, written))
    }

    /// The newest checkpoint in the checkpoint directory that this key signed.
    fn newest_checkpoint_file(&self) -> Option<Checkpoint> {
        let signer = &self.signer;
        let dir = signer.checkpoint_dir.as_deref()?;
        checkpoint_files(dir)
            .iter()
            .rev()
            .find_map(|path| read_checkpoint(path).ok().filter(|c| c.check(&signer.key).is_ok()))
    }

    /// Whether a checkpoint is due: the log grew since the last one.
    pub async fn audit_grew(&self) -> Result<bool> {
        let head = self.core.store().read().await?.audit_head().await?.0;
        let last = self.signer.last.lock().await.as_ref().map(|c| c.seq);
        Ok(last != Some(head))
    }
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
            if let Some(mac) = s.mac {
                value["mac"] = mac.into();
            }
            serde_json::from_value(value)
                .map_err(|e| crate::error::Error::new(crate::error::ErrorCode::Internal, e.to_string()))
        })
        .collect()
}
