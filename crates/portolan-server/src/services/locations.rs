//! Locations: repositories, folders and files whose manifests the catalog follows. A sync fetches
//! (with the `git` command line), reads the files, and applies the difference as the location's
//! own source: created, updated and deleted entities, under the location and the commit. A fetch
//! that fails, a file that does not parse, or a sync that would delete more than the threshold
//! changes nothing and is kept as the location's status.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use portolan_model::Millis;
use portolan_model::integration::security::{Security, SignatureAlgorithm};
use portolan_model::manifest::location::{Location, LocationInput, LocationKind, SyncStatus};

use super::actions::Actions;
use super::actor::{Actor, Origin};
use super::core::{Core, to_json};
use super::manifests::files::read_tree;
use super::manifests::{ApplyRequest, Manifests, Op, SourcedDocument};
use super::permissions::Permissions;
use crate::error::{Error, Result};

/// The longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct Locations {
    core: Core,
    permissions: Permissions,
    manifests: Manifests,
    actions: Actions,
    /// One lock per location, holding when its last sync started: a sync asked for while another
    /// runs waits, and is answered by the one that ran if that one started after it was asked.
    syncing: Arc<Mutex<HashMap<String, SyncTurn>>>,
}

/// A location's sync lock, holding when its last sync started.
type SyncTurn = Arc<tokio::sync::Mutex<Option<Millis>>>;

/// The headers a push webhook may carry.
pub struct PushHeaders {
    pub github_signature: Option<String>,
    pub gitlab_token: Option<String>,
}

impl Locations {
    pub fn new(core: Core, permissions: Permissions, manifests: Manifests, actions: Actions) -> Self {
        Self { core, permissions, manifests, actions, syncing: Arc::default() }
    }

    /// Registers a location; the scheduler syncs it at once, unless `sync_now` (then it is
    /// synced before this returns, and next after its interval).
    pub async fn register(&self, actor: &Actor, input: LocationInput, sync_now: bool) -> Result<Location> {
        let id = format!("loc_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut location = input.into_location(id, self.core.now(), &actor.id)?;
        if sync_now {
            location.next_sync_at += location.interval_seconds * 1000;
        }
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        for (pointer, secret) in
            [("/tokenSecret", &location.token_secret), ("/webhookSecret", &location.webhook_secret)]
        {
            if let Some(name) = secret
                && tx.secret(name).await?.is_none()
            {
                return Err(Error::invalid_at(pointer, format!("secret '{name}' does not exist")));
            }
        }
        tx.put_location(&location).await?;
        let entry = actor
            .entry(self.core.now(), "location.create", "location", &location.id)
            .changed(None, Some(to_json(&location)));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        if sync_now {
            location.status = self.sync(&location.id).await?;
        }
        Ok(location)
    }

    pub async fn list(&self, actor: &Actor) -> Result<Vec<Location>> {
        let mut tx = self.core.store().read().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        Ok(tx.locations().await?)
    }

    pub async fn get(&self, actor: &Actor, id: &str) -> Result<Location> {
        let mut tx = self.core.store().read().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        tx.location(id).await?.ok_or_else(|| Error::not_found(format!("location '{id}'")))
    }

    /// Removes a location and the entities it brought.
    pub async fn delete(&self, actor: &Actor, id: &str) -> Result<()> {
        let location = self.get(actor, id).await?;
        let request = ApplyRequest {
            source: location.source(),
            documents: Vec::new(),
            dry_run: false,
            prune: true,
            max_delete_share: None,
        };
        self.manifests.apply(&location_actor(&location, None), request).await?;
        let mut tx = self.core.store().write().await?;
        tx.delete_location(id).await?;
        let entry =
            actor.entry(self.core.now(), "location.delete", "location", id).changed(Some(to_json(&location)), None);
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Syncs every location that is due (one replica claims each).
    pub async fn sync_due(&self) -> Result<()> {
        loop {
            let claimed = {
                let mut tx = self.core.store().write().await?;
                let claimed = tx.claim_due_location(self.core.now()).await?;
                tx.commit().await?;
                claimed
            };
            let Some(location) = claimed else { return Ok(()) };
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(err) = this.sync(&location.id).await {
                    tracing::warn!(location = %location.id, %err, "location sync failed");
                }
            });
        }
    }

    /// Checks a push webhook (GitHub's HMAC signature or GitLab's token, against the location's
    /// webhook secret) and starts a sync.
    pub async fn push(&self, id: &str, headers: PushHeaders, body: &[u8]) -> Result<()> {
        let location = {
            let mut tx = self.core.store().read().await?;
            tx.location(id).await?.ok_or_else(|| Error::not_found(format!("location '{id}'")))?
        };
        let Some(secret_name) = &location.webhook_secret else {
            return Err(Error::forbidden("this location takes no webhooks: it has no webhookSecret"));
        };
        let secret = {
            let mut tx = self.core.store().read().await?;
            self.actions
                .secret_values(tx.as_mut(), std::slice::from_ref(secret_name))
                .await?
                .remove(secret_name)
                .unwrap_or_default()
        };
        let algorithm = match headers.github_signature {
            Some(_) => SignatureAlgorithm::Sha256,
            None => SignatureAlgorithm::Plain,
        };
        let security = Security {
            secret: None,
            signature_algorithm: algorithm,
            signature_header_name: None,
            signature_prefix: None,
            request_identifier_path: None,
        };
        let header = |name: &str| match name {
            "x-hub-signature-256" => headers.github_signature.clone(),
            "x-gitlab-token" => headers.gitlab_token.clone(),
            _ => None,
        };
        if security.verify(&secret, &header, body, 0).is_err() {
            return Err(Error::unauthorized("the webhook's signature or token does not match the location's secret"));
        }
        let this = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(err) = this.sync(&id).await {
                tracing::warn!(location = %id, %err, "location sync failed");
            }
        });
        Ok(())
    }

    /// Fetches, reads and applies a location now; the outcome is its new status.
    pub async fn sync(&self, id: &str) -> Result<SyncStatus> {
        let lock =
            Arc::clone(self.syncing.lock().unwrap_or_else(|p| p.into_inner()).entry(id.to_string()).or_default());
        let asked = self.core.now();
        let mut last_start = lock.lock().await;
        if last_start.is_some_and(|started| started >= asked) {
            let mut tx = self.core.store().read().await?;
            let location = tx.location(id).await?.ok_or_else(|| Error::not_found(format!("location '{id}'")))?;
            return Ok(location.status);
        }
        *last_start = Some(self.core.now());
        self.sync_once(id).await
    }

    async fn sync_once(&self, id: &str) -> Result<SyncStatus> {
        let location = {
            let mut tx = self.core.store().read().await?;
            tx.location(id).await?.ok_or_else(|| Error::not_found(format!("location '{id}'")))?
        };
        let status = match self.fetch_and_apply(&location).await {
            Ok(status) => status,
            Err((error, problems)) => {
                SyncStatus { state: "failed".into(), error: Some(error), problems, ..location.status.clone() }
            }
        };
        let mut tx = self.core.store().write().await?;
        if let Some(mut current) = tx.location(id).await? {
            current.status = status.clone();
            tx.put_location(&current).await?;
        }
        tx.commit().await?;
        Ok(status)
    }

    /// What a location would bring, read without registering it (Backstage's analyze-location
    /// and dry-run registration): its documents, and whether a location with the same target
    /// is registered already.
    pub async fn preview(&self, actor: &Actor, input: LocationInput) -> Result<Preview> {
        let location = input.into_location(String::new(), self.core.now(), &actor.id)?;
        let registered = {
            let mut tx = self.core.store().read().await?;
            self.permissions.require_manage(tx.as_mut(), actor, None).await?;
            tx.locations().await?.iter().any(|l| l.kind == location.kind && l.target == location.target)
        };
        let outcome = match self.checkout(&location).await {
            Ok(checkout) => read(&location, &checkout),
            Err(err) => Err(err),
        };
        let documents = outcome.map_err(|(message, problems)| {
            Error::invalid_at("/target", message)
                .with_details(problems.into_iter().map(|p| serde_json::json!({"message": p})).collect())
        })?;
        Ok(Preview { location, documents, registered })
    }

    /// The location's files in a work folder (a git location cloned at its branch).
    async fn checkout(&self, location: &Location) -> std::result::Result<Checkout, (String, Vec<String>)> {
        let folder = tempfile::tempdir().map_err(|e| (format!("cannot make a work folder: {e}"), Vec::new()))?;
        let (root, commit) = match location.kind {
            LocationKind::Git => {
                let token = self.token(location).await?;
                let commit = clone(location, token.as_deref(), folder.path()).await.map_err(|e| (e, Vec::new()))?;
                (folder.path().to_path_buf(), Some(commit))
            }
            LocationKind::File => (PathBuf::from(&location.target), None),
        };
        Ok(Checkout { _folder: folder, root, commit })
    }

    /// A git location's token, from the secret it names.
    async fn token(&self, location: &Location) -> std::result::Result<Option<String>, (String, Vec<String>)> {
        let Some(name) = &location.token_secret else { return Ok(None) };
        let mut tx = self.core.store().read().await.map_err(|e| (e.to_string(), Vec::new()))?;
        let mut values = self
            .actions
            .secret_values(tx.as_mut(), std::slice::from_ref(name))
            .await
            .map_err(|e| (e.message, Vec::new()))?;
        Ok(values.remove(name))
    }

    async fn fetch_and_apply(&self, location: &Location) -> std::result::Result<SyncStatus, (String, Vec<String>)> {
        // The commit the last good sync applied: the catalog already holds it (its entities
        // refuse direct edits), so there is nothing to fetch, read or write. The branch's head is
        // asked first, without fetching; when it cannot be, the clone says why.
        let last_good = location.status.commit.as_deref().filter(|_| location.status.state == "ok");
        let applied = |commit: Option<&str>| commit.is_some() && commit == last_good;
        let unchanged = || {
            let s = &location.status;
            SyncStatus {
                synced_at: Some(self.core.now()),
                created: 0,
                updated: 0,
                deleted: 0,
                unchanged: s.created + s.updated + s.unchanged,
                ..s.clone()
            }
        };
        if location.kind == LocationKind::Git && last_good.is_some() {
            let token = self.token(location).await?;
            if applied(remote_head(location, token.as_deref()).await.ok().as_deref()) {
                return Ok(unchanged());
            }
        }
        let checkout = self.checkout(location).await?;
        let commit = checkout.commit.clone();
        if applied(commit.as_deref()) {
            return Ok(unchanged());
        }
        let documents = read(location, &checkout)?;
        let request = ApplyRequest {
            source: location.source(),
            documents,
            dry_run: false,
            prune: true,
            max_delete_share: Some(location.deletion_threshold),
        };
        let report =
            self.manifests.apply(&location_actor(location, commit.as_deref()), request).await.map_err(|err| {
                let problems: Vec<String> = err
                    .details
                    .iter()
                    .map(|d| {
                        format!(
                            "{}:{}: {} {}",
                            d["file"].as_str().unwrap_or_default(),
                            d["line"],
                            d["path"].as_str().unwrap_or_default(),
                            d["message"].as_str().unwrap_or_default()
                        )
                    })
                    .collect();
                (err.message, problems)
            })?;
        let count = |op: Op| report.changes.iter().filter(|c| c.op == op && !c.implied).count() as u64;
        Ok(SyncStatus {
            state: "ok".into(),
            synced_at: Some(self.core.now()),
            commit,
            created: count(Op::Create),
            updated: count(Op::Update),
            unchanged: count(Op::Unchanged),
            deleted: count(Op::Delete),
            error: None,
            problems: Vec::new(),
        })
    }
}

/// What [`Locations::preview`] found.
pub struct Preview {
    pub location: Location,
    pub documents: Vec<SourcedDocument>,
    pub registered: bool,
}

struct Checkout {
    /// Removed with the checkout.
    _folder: tempfile::TempDir,
    root: PathBuf,
    commit: Option<String>,
}

/// The documents of a location's files, or every file problem.
fn read(location: &Location, checkout: &Checkout) -> std::result::Result<Vec<SourcedDocument>, (String, Vec<String>)> {
    let root = &checkout.root;
    let files = match location.kind {
        LocationKind::File if root.is_file() => vec![root.clone()],
        _ => matching_files(root, &location.paths),
    };
    let base = if root.is_file() { root.parent().map(Path::to_path_buf).unwrap_or_default() } else { root.clone() };
    let tree = read_tree(&files, &base);
    if let Some(first) = tree.problems.first() {
        return Err((
            format!("{} file problem(s), nothing changed; first: {first}", tree.problems.len()),
            tree.problems,
        ));
    }
    Ok(tree.documents.into_iter().map(|(file, d)| SourcedDocument { file, line: d.line, document: d.value }).collect())
}

/// Who a location's changes are made by: the location, at its commit (as `updatedBy` shows).
fn location_actor(location: &Location, commit: Option<&str>) -> Actor {
    let id = match commit {
        Some(commit) => format!("{}@{}", location.source(), &commit[..commit.len().min(12)]),
        None => location.source(),
    };
    Actor::system(id, Origin::Automation)
}

/// The files under `root` that match the location's globs.
fn matching_files(root: &Path, patterns: &[String]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for pattern in patterns {
        let full = root.join(pattern).display().to_string();
        if let Ok(paths) = glob::glob(&full) {
            files.extend(paths.filter_map(std::result::Result::ok).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files.dedup();
    files
}

/// A shallow clone of the location's branch into `into`; the commit it checked out.
/// `git` with the location's token in an environment-borne setting (never in the command line or
/// the URL), no prompts, and the location's URL (a path on this machine as a `file://` URL).
fn git(location: &Location, token: Option<&str>) -> std::result::Result<(tokio::process::Command, String), String> {
    let url = match location.target.contains("://") || location.target.contains('@') {
        true => location.target.clone(),
        false => format!("file://{}", std::path::absolute(&location.target).map_err(|e| e.to_string())?.display()),
    };
    let mut command = tokio::process::Command::new("git");
    command.env("GIT_TERMINAL_PROMPT", "0").env("GIT_ASKPASS", "true");
    if let Some(token) = token {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        command
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
    }
    command.kill_on_drop(true).stdin(std::process::Stdio::null());
    Ok((command, url))
}

/// Runs a git command against the location, within the fetch timeout; its output if it succeeded.
async fn run_git(location: &Location, mut command: tokio::process::Command) -> std::result::Result<Vec<u8>, String> {
    let output = tokio::time::timeout(FETCH_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("fetching {} took longer than {}s", location.target, FETCH_TIMEOUT.as_secs()))?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("cannot fetch {}: {}", location.target, stderr.trim()));
    }
    Ok(output.stdout)
}

/// The commit the location's branch (or the repository's default branch) is at, asked of the
/// remote without fetching anything.
async fn remote_head(location: &Location, token: Option<&str>) -> std::result::Result<String, String> {
    let (mut command, url) = git(location, token)?;
    let head = location.branch.as_ref().map_or_else(|| "HEAD".to_string(), |b| format!("refs/heads/{b}"));
    command.args(["ls-remote", "--", &url, &head]);
    let listed = run_git(location, command).await?;
    let listed = String::from_utf8_lossy(&listed);
    let commit = listed.split_whitespace().next().unwrap_or_default();
    if commit.is_empty() {
        return Err(format!("{} has no {head}", location.target));
    }
    Ok(commit.to_string())
}

async fn clone(location: &Location, token: Option<&str>, into: &Path) -> std::result::Result<String, String> {
    let (mut command, url) = git(location, token)?;
    command.args(["clone", "--quiet", "--depth", "1", "--no-tags", "--single-branch"]);
    if let Some(branch) = &location.branch {
        command.args(["--branch", branch]);
    }
    command.arg("--").arg(&url).arg(into);
    run_git(location, command).await?;
    let head = tokio::process::Command::new("git")
        .arg("-C")
        .arg(into)
        .args(["rev-parse", "HEAD"])
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    Ok(String::from_utf8_lossy(&head.stdout).trim().to_string())
}
