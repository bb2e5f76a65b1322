//! Reading runs: one run with what it changed, lists, logs, the runs of an entity, and what a
//! run token may read.

use portolan_model::EntityRef;
use portolan_model::run::{Run, RunLog};
use portolan_store::RunFilter;

use super::service::Runs;
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::{Actor, Principal};

pub const DEFAULT_RUN_PAGE: u32 = 50;

pub const MAX_RUN_PAGE: u32 = 500;

impl Runs {
    /// A run the actor may see, and what it changed in the catalog that they may read.
    pub async fn get_run(&self, actor: &Actor, id: &str) -> Result<(Run, Vec<(EntityRef, String)>)> {
        let mut tx = self.core.store().read().await?;
        let run = self.permissions.visible_run(tx.as_mut(), actor, id).await?;
        let mut affected = Vec::new();
        for (entity, change) in tx.run_entities(id).await? {
            let readable = match tx.entity(&entity.blueprint, &entity.identifier).await? {
                Some(current) => self.permissions.readable_entity(tx.as_mut(), actor, current).await.is_ok(),
                // Deleted since: what the run did is history, shown to whoever sees the run.
                None => true,
            };
            if readable {
                affected.push((entity, change));
            }
        }
        Ok((run, affected))
    }

    /// Runs matching `filter` that the actor may see, newest first, and the cursor of the next page.
    pub async fn list_runs(&self, actor: &Actor, filter: RunFilter, limit: u32) -> Result<(Vec<Run>, Option<String>)> {
        if !(1..=MAX_RUN_PAGE).contains(&limit) {
            return Err(Error::invalid_at("/limit", format!("limit must be between 1 and {MAX_RUN_PAGE}")));
        }
        let filter = match &actor.principal {
            Principal::User(user) if !user.is_admin() => {
                RunFilter { visible_to: Some((user.id.clone(), user.teams.clone())), ..filter }
            }
            Principal::Run(_) => return Err(Error::forbidden("a run token may only report on its run")),
            _ => filter,
        };
        let rows = self.core.store().read().await?.list_runs(&filter, limit).await?;
        let next = (rows.len() as u32 == limit).then(|| rows.last().map(|(seq, _)| seq.to_string())).flatten();
        Ok((rows.into_iter().map(|(_, run)| run).collect(), next))
    }

    pub async fn run_logs(&self, actor: &Actor, id: &str, after: i64, limit: u32) -> Result<Vec<RunLog>> {
        let mut tx = self.core.store().read().await?;
        self.permissions.visible_run(tx.as_mut(), actor, id).await?;
        Ok(tx.run_logs(id, after, limit).await?)
    }

    /// The runs that created, changed or deleted an entity (latest first), and how: those the
    /// actor may see, of an entity they may read.
    pub async fn entity_runs(&self, actor: &Actor, blueprint: &str, identifier: &str) -> Result<Vec<(Run, String)>> {
        let mut tx = self.core.store().read().await?;
        let hidden = || Error::not_found(format!("entity '{identifier}' of blueprint '{blueprint}'"));
        let current = tx.entity(blueprint, identifier).await?.ok_or_else(hidden)?;
        self.permissions.readable_entity(tx.as_mut(), actor, current).await?;
        let entity = EntityRef { blueprint: blueprint.into(), identifier: identifier.into() };
        let mut out = Vec::new();
        for (run_id, change) in tx.entity_runs(&entity, 100).await? {
            if let Ok(run) = self.permissions.visible_run(tx.as_mut(), actor, &run_id).await {
                out.push((run, change));
            }
        }
        Ok(out)
    }

    /// Checks that catalog writes may name `run_id` as their cause: the run exists and is not
    /// over, and the writer holds its run token (`token`), requested it, or is an admin.
    pub async fn check_run_open(&self, actor: &Actor, run_id: &str, token: Option<&str>) -> Result<()> {
        let mut tx = self.core.store().read().await?;
        let Some(run) = tx.run(run_id, false).await? else {
            return Err(Error::invalid_at("/run_id", format!("there is no run '{run_id}'")));
        };
        match (token, actor.as_user()) {
            (Some(token), _) => self.verify_run_token(token, &run)?,
            (None, Some(user)) if !user.is_admin() && run.trigger.by != user.id => {
                return Err(Error::forbidden(format!("only the requester of run '{run_id}' may link changes to it")));
            }
            _ => {}
        }
        if run.status.is_terminal() {
            return Err(Error::new(
                ErrorCode::RunFinished,
                format!("run '{run_id}' ended ({}); it can no longer change the catalog", run.status.as_str()),
            ));
        }
        Ok(())
    }

    /// The actor of a run token that reads the catalog: while the run is open, the backend reads
    /// what the run's requester may read (a run an automation started has no one to read as).
    pub async fn run_reader(&self, token: &str, run_id: &str) -> Result<Actor> {
        let mut tx = self.core.store().read().await?;
        let run =
            tx.run(run_id, false).await?.ok_or_else(|| Error::unauthorized("this token is not valid for this run"))?;
        self.verify_run_token(token, &run)?;
        if run.status.is_terminal() {
            return Err(Error::new(
                ErrorCode::RunFinished,
                format!("run '{run_id}' ended ({}); its token reads nothing more", run.status.as_str()),
            ));
        }
        let requester = self.identity.signed_in_user(tx.as_mut(), &run.trigger.by).await.map_err(|_| {
            Error::forbidden(format!("run '{run_id}' has no signed-in requester whose reads its token could make"))
        })?;
        Ok(Actor::run_reader(run_id, requester))
    }
}
