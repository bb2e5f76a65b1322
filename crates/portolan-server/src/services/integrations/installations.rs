//! Installations: integrations that run elsewhere (Port's Ocean framework) and keep their record
//! here through Port's `/v1/integration` API. Admins only, as in Port: an installation's client
//! credentials are an admin's or a service account's.

use portolan_model::integration::Installation;
use portolan_model::integration::installation::datasource_matches;
use portolan_model::manifest::Kind;
use portolan_model::{Entity, Millis};
use portolan_store::Tx;
use serde_json::Value;

use super::Integrations;
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::Actor;
use crate::services::core::to_json;

/// The most entities one `datasource-entities` page holds.
pub const MAX_DATASOURCE_PAGE: usize = 5_000;

/// One page of the entities a datasource wrote.
pub struct DatasourcePage {
    pub entities: Vec<Entity>,
    /// Pass as `from` for the next page; none on the last.
    pub next: Option<String>,
}

impl Integrations {
    pub async fn create_installation(&self, actor: &Actor, body: Value) -> Result<Installation> {
        let installation = Installation::create(body, &actor.id, self.core.now())?;
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        if tx.installation(&installation.id).await?.is_some() {
            let message = format!("integration '{}' already exists", installation.id);
            return Err(Error::new(ErrorCode::AlreadyExists, message));
        }
        tx.put_installation(&installation).await?;
        let entry = actor
            .entry(self.core.now(), "installation.create", "installation", &installation.id)
            .changed(None, Some(to_json(&installation)));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(installation)
    }

    /// An installation in Port's shape, pointing Ocean's logs and metrics at this server.
    pub fn port_record(&self, installation: &Installation) -> Value {
        installation.to_port(&self.public_url)
    }

    pub async fn installation(&self, actor: &Actor, id: &str) -> Result<Installation> {
        let mut tx = self.core.store().read().await?;
        self.held(tx.as_mut(), actor, id).await
    }

    /// An installation, for an admin.
    async fn held(&self, tx: &mut dyn Tx, actor: &Actor, id: &str) -> Result<Installation> {
        self.permissions.require_manage(tx, actor, None).await?;
        tx.installation(id).await?.ok_or_else(|| Error::not_found(format!("integration '{id}'")))
    }

    pub async fn installations(&self, actor: &Actor) -> Result<Vec<Installation>> {
        let mut tx = self.core.store().read().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        Ok(tx.installations().await?)
    }

    /// Changes an installation: merges fields, replaces its sync state or keeps a kind's examples.
    pub async fn change_installation(
        &self,
        actor: &Actor,
        id: &str,
        change: InstallationChange<'_>,
        body: Value,
    ) -> Result<Installation> {
        let mut tx = self.core.store().write().await?;
        let before = self.held(tx.as_mut(), actor, id).await?;
        let mut installation = before.clone();
        let now = self.core.now();
        match change {
            InstallationChange::Patch => installation.patch(body, &actor.id, now)?,
            InstallationChange::Resync => installation.report_resync(body, &actor.id, now)?,
            InstallationChange::Examples(kind) => installation.keep_examples(kind, body)?,
            InstallationChange::Logs => installation.append_logs(body)?,
            InstallationChange::Metrics => installation.record_metrics(body)?,
        }
        tx.put_installation(&installation).await?;
        // A sync reports its state, examples, logs and metrics many times a run: the
        // installation itself holds those.
        if change == InstallationChange::Patch {
            let entry = actor
                .entry(now, "installation.update", "installation", id)
                .changed(Some(to_json(&before)), Some(to_json(&installation)));
            tx.append_audit(&[entry]).await?;
        }
        tx.commit().await?;
        Ok(installation)
    }

    /// Deletes an installation's record; the entities it wrote stay in the catalog.
    pub async fn delete_installation(&self, actor: &Actor, id: &str) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        let installation = self.held(tx.as_mut(), actor, id).await?;
        tx.delete_installation(id).await?;
        let entry = actor
            .entry(self.core.now(), "installation.delete", "installation", id)
            .changed(Some(to_json(&installation)), None);
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The entities written by the datasources that start with `prefix` and end with `suffix`
    /// (Port's `datasource-entities`), last changed before `before` when given, in blueprint and
    /// identifier order from after `from`.
    pub async fn datasource_entities(
        &self,
        actor: &Actor,
        prefix: &str,
        suffix: &str,
        before: Option<Millis>,
        from: Option<&str>,
        limit: usize,
    ) -> Result<DatasourcePage> {
        let limit = limit.clamp(1, MAX_DATASOURCE_PAGE);
        let mut tx = self.core.store().read().await?;
        let mut keys: Vec<_> = tx
            .applied_objects(None)
            .await?
            .into_iter()
            .filter(|(key, object)| key.kind == Kind::Entity && datasource_matches(&object.source, prefix, suffix))
            .map(|(key, _)| key)
            .filter(|key| from.is_none_or(|from| key.name.as_str() > from))
            .collect();
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        let mut entities = Vec::new();
        let mut next = None;
        for key in keys {
            if entities.len() == limit {
                next = entities.last().map(|e: &Entity| format!("{}/{}", e.blueprint, e.identifier));
                break;
            }
            let target = key.entity_ref();
            let Some(entity) = tx.entity(&target.blueprint, &target.identifier).await? else { continue };
            if before.is_some_and(|before| entity.updated_at >= before) {
                continue;
            }
            if let Ok(entity) = self.permissions.readable_entity(tx.as_mut(), actor, entity).await {
                entities.push(entity);
            }
        }
        Ok(DatasourcePage { entities, next })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallationChange<'a> {
    /// Port's `PATCH /v1/integration/{id}` (and `/config`).
    Patch,
    /// `PATCH /v1/integration/{id}/resync-state`.
    Resync,
    /// `POST /v1/integration/{id}/kinds/{kind}/examples`.
    Examples(&'a str),
    /// Log lines Ocean ships.
    Logs,
    /// Sync metrics Ocean reports, one kind's or an array of them.
    Metrics,
}
