//! `portolan backup` and `portolan restore`: a consistent copy of a SQLite deployment (its
//! database, audit key file and checkpoints) taken while the server runs, and its way back,
//! checked before anything is put in place.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use portolan_server::services::audit::{AUDIT_KEY_FILE, CHECKPOINT_DIR};
use portolan_server::services::backup::Checked;
use portolan_store::sqlite::DATABASE_FILE;

use crate::config::{Database, ServeArgs, ServeConfig};

#[derive(clap::Args)]
#[command(mut_args = crate::hide_serve_only)]
pub struct BackupArgs {
    #[command(flatten)]
    config: ServeArgs,
    /// The directory to write the backup into: new, or empty
    #[arg(long)]
    to: PathBuf,
}

#[derive(clap::Args)]
#[command(mut_args = crate::hide_serve_only)]
pub struct RestoreArgs {
    #[command(flatten)]
    config: ServeArgs,
    /// The backup to restore (a directory `portolan backup` wrote) into the data directory, which
    /// must be new or empty
    #[arg(long)]
    from: PathBuf,
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let config = args.config.resolve()?;
    let Database::Sqlite(data) = &config.database else {
        bail!(
            "`portolan backup` copies a SQLite data directory; back PostgreSQL up with pg_dump (README: Backup and restore)"
        );
    };
    let started = Instant::now();
    let made = make_empty(&args.to)?;
    let copied = async {
        // Checkpoints first: each then names a record the database copy holds.
        copy_beside_database(data, &args.to)?;
        portolan_store::sqlite::backup(data, &args.to.join(DATABASE_FILE))
            .await
            .with_context(|| format!("cannot copy the database of {}", data.display()))?;
        check(&config, &args.to).await?.map_err(|reason| anyhow::anyhow!("the backup fails its check: {reason}"))
    }
    .await;
    let checked = match copied {
        Ok(checked) => checked,
        Err(err) => {
            remove_made(&args.to, made);
            return Err(err);
        }
    };
    println!(
        "backed up {} into {} in {:.1} s ({}): {}",
        data.display(),
        args.to.display(),
        started.elapsed().as_secs_f64(),
        size(&args.to.join(DATABASE_FILE)),
        describe(&checked)
    );
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let config = args.config.resolve()?;
    let Database::Sqlite(target) = &config.database else {
        bail!(
            "`portolan restore` restores into a SQLite data directory; to move a backup into PostgreSQL, run \
             `portolan migrate-store --from BACKUP --to URL`"
        );
    };
    if !args.from.join(DATABASE_FILE).is_file() {
        bail!("{} is not a Portolan backup (it has no {DATABASE_FILE})", args.from.display());
    }
    if target.exists() && std::fs::read_dir(target)?.next().is_some() {
        bail!("{} is not empty: restore into a new or empty data directory (nothing was written)", target.display());
    }
    let started = Instant::now();
    // Everything is copied and checked beside the target first; only a copy that passes moves in.
    let parent = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".portolan-restore-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot stage the restore in {}", parent.display()))?;
    copy_beside_database(&args.from, staging.path())?;
    portolan_store::sqlite::backup(&args.from, &staging.path().join(DATABASE_FILE))
        .await
        .with_context(|| format!("cannot read the backup {}", args.from.display()))?;
    let checked = match check(&config, staging.path()).await? {
        Ok(checked) => checked,
        Err(reason) => bail!("refused: {reason}; nothing was restored from {}", args.from.display()),
    };
    let staged = staging.keep();
    let moved = match target.exists() {
        true => std::fs::read_dir(&staged)?
            .try_for_each(|entry| entry.and_then(|e| std::fs::rename(e.path(), target.join(e.file_name()))))
            .and_then(|()| std::fs::remove_dir(&staged)),
        false => std::fs::rename(&staged, target),
    };
    moved.with_context(|| format!("cannot move the restored copy into {}", target.display()))?;
    println!(
        "restored {} into {} in {:.1} s: {}",
        args.from.display(),
        target.display(),
        started.elapsed().as_secs_f64(),
        describe(&checked)
    );
    Ok(())
}

/// Opens the copy in `dir` as a server would (applying the migrations an older copy lacks) and
/// checks its secrets and audit log with the keys `config` gives.
async fn check(config: &ServeConfig, dir: &Path) -> anyhow::Result<Result<Checked, String>> {
    let mut copy = config.clone();
    copy.database = Database::Sqlite(dir.to_path_buf());
    let store = portolan_store::open_existing(&dir.to_string_lossy()).await.context("cannot open the copy")?;
    let secrets_key = config.secrets_key.as_ref().map(|k| k.0.as_str());
    let checked =
        portolan_server::services::backup::check_copy(store.as_ref(), secrets_key, &copy.audit_options(false))
            .await
            .map_err(|e| anyhow::anyhow!("cannot check the copy: {e}"));
    store.close().await;
    checked
}

/// Copies the audit key file and the checkpoints kept in the data directory `from` into `to`.
fn copy_beside_database(from: &Path, to: &Path) -> anyhow::Result<()> {
    let copy = |name: &Path| {
        std::fs::copy(from.join(name), to.join(name))
            .with_context(|| format!("cannot copy {}", from.join(name).display()))
    };
    if from.join(AUDIT_KEY_FILE).is_file() {
        copy(Path::new(AUDIT_KEY_FILE))?;
    }
    let checkpoints = from.join(CHECKPOINT_DIR);
    if checkpoints.is_dir() {
        std::fs::create_dir_all(to.join(CHECKPOINT_DIR))?;
        for entry in std::fs::read_dir(&checkpoints)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                copy(&Path::new(CHECKPOINT_DIR).join(entry.file_name()))?;
            }
        }
    }
    Ok(())
}

/// Creates `dir` (or takes it empty); whether it was made here, to undo on failure.
fn make_empty(dir: &Path) -> anyhow::Result<bool> {
    if dir.exists() {
        if std::fs::read_dir(dir)?.next().is_some() {
            bail!("{} is not empty: back up into a new or empty directory", dir.display());
        }
        return Ok(false);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(true)
}

/// Removes what a failed backup wrote into `dir`.
fn remove_made(dir: &Path, made: bool) {
    let _ = match made {
        true => std::fs::remove_dir_all(dir),
        false => std::fs::read_dir(dir).map(|entries| {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
            }
        }),
    };
}

fn describe(checked: &Checked) -> String {
    let secrets = match checked.secrets {
        0 => "no secrets".to_string(),
        n => format!("{n} secrets (all open with the secrets key)"),
    };
    format!(
        "{} blueprints, {} entities, {} accounts, {secrets}, and an audit log of {} records that verifies",
        checked.blueprints, checked.entities, checked.accounts, checked.audit_records
    )
}

fn size(path: &Path) -> String {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    format!("{:.1} MB", bytes as f64 / 1e6)
}
