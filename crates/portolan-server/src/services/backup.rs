//! Backups (`portolan backup`, `portolan restore`): what a copy of a deployment must hold before
//! it is worth keeping or serving from.

use portolan_store::Store;

use super::audit::{self, AuditOptions};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::Keys;

/// What a checked copy holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub blueprints: usize,
    pub entities: u64,
    pub accounts: usize,
    pub secrets: usize,
    pub audit_records: u64,
}

/// Checks a copy of a deployment as a server started on it would need it: every secret opens with
/// the secrets key that server would use (the configured one, else the one the database keeps),
/// and the audit log verifies under its key and reaches the newest checkpoint. `Ok(Err(reason))`
/// when the copy fails a check.
pub async fn check_copy(
    store: &dyn Store,
    secrets_key: Option<&str>,
    options: &AuditOptions,
) -> Result<std::result::Result<Checked, String>> {
    let mut tx = store.read().await?;
    let secrets = tx.secrets().await?;
    let kept = tx.setting("secrets_key").await?;
    if !secrets.is_empty() {
        let Some(master) = secrets_key.map(str::to_string).or(kept) else {
            return Ok(Err(format!(
                "the backup's {} secrets were sealed with a configured secrets key, and none is given: configure the key \
                 the backed-up server used (secrets_key_file)",
                secrets.len()
            )));
        };
        let master = Keys::parse_master(&master).map_err(|e| Error::new(ErrorCode::Internal, e))?;
        let keys = Keys::new(&master);
        for meta in &secrets {
            let sealed = tx.secret(&meta.name).await?.unwrap_or_default();
            if keys.open(&meta.name, &sealed).is_err() {
                return Ok(Err(format!(
                    "the secrets key does not open the backup's secret '{}': configure the key the backed-up server used",
                    meta.name
                )));
            }
        }
    }
    let blueprints = tx.blueprints().await?;
    let mut entities = 0;
    for record in &blueprints {
        entities += tx.count_entities(&record.blueprint.identifier).await?;
    }
    let accounts = tx.accounts().await?.len();
    drop(tx);

    let key = audit::audit_key(store, secrets_key, options).await?;
    let newest = options.checkpoint_dir.as_deref().and_then(|dir| audit::checkpoint_files(dir).pop());
    let checkpoint = match newest {
        Some(path) => Some(audit::read_checkpoint(&path).map_err(|e| Error::new(ErrorCode::Internal, e))?),
        None => None,
    };
    let audit_records = match audit::verify(store, key.as_ref().map(|(k, _)| k), checkpoint).await? {
        Ok(verified) => verified.records,
        Err(broken) => {
            let under = key.map(|(k, origin)| format!(" under audit key {} ({origin})", k.id())).unwrap_or_default();
            return Ok(Err(format!("the backup's audit log does not verify{under}: {broken}")));
        }
    };
    Ok(Ok(Checked { blueprints: blueprints.len(), entities, accounts, secrets: secrets.len(), audit_records }))
}
