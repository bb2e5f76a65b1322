//! Copying a whole deployment from one store to another (`portolan migrate-store`).

use std::collections::BTreeMap;

use portolan_model::action::InvocationMethod;
use portolan_model::blueprint::parse_date_time;
use portolan_model::run::RunStatus;
use portolan_model::{EntityRef, Millis};
use portolan_store::{EntityWrite, KpiSample, NewRunLog, RunFilter, Store, Tx};
use serde_json::Value;

use crate::error::{Error, ErrorCode, Result};

const PAGE: u32 = 1_000;

/// What was copied: per blueprint (identifier, entities), and how many scorecards.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub blueprints: Vec<(String, u64)>,
    pub scorecards: usize,
    pub actions: usize,
    pub runs: usize,
    pub secrets: usize,
    pub accounts: usize,
    pub integrations: usize,
    pub audit_records: usize,
}

impl CopyReport {
    pub fn entities(&self) -> u64 {
        self.blueprints.iter().map(|(_, n)| n).sum()
    }
}

/// Copies every blueprint and entity (with versions and stamps) from `from` into `to` in one
/// transaction, then checks that each blueprint has as many entities on both sides. `to` must not
/// hold any entity or non-system blueprint yet.
pub async fn copy_store(from: &dyn Store, to: &dyn Store, now: Millis) -> Result<CopyReport> {
    let mut source = from.read().await?;
    let mut target = to.write().await?;
    let existing = target.blueprints().await?;
    for record in &existing {
        let id = &record.blueprint.identifier;
        if !portolan_model::system::is_system(id) || target.count_entities(id).await? > 0 {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("the target already holds data (blueprint '{id}'); migrate into an empty database"),
            ));
        }
    }

    let blueprints = source.blueprints().await?;
    let mut report = CopyReport::default();
    for record in &blueprints {
        target.put_blueprint(record).await?;
    }
    for record in &blueprints {
        for scorecard in source.scorecards(&record.blueprint.identifier).await? {
            target.put_scorecard(&scorecard).await?;
            report.scorecards += 1;
        }
    }
    for record in &blueprints {
        let blueprint = &record.blueprint;
        let mut copied = 0u64;
        let mut after: Option<String> = None;
        loop {
            let page = source.list_entities(&blueprint.identifier, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.identifier.clone());
            let mut writes = Vec::with_capacity(page.len());
            let mut passed_timers = Vec::new();
            for entity in page {
                for name in blueprint.timer_properties() {
                    if let Some(at) = entity.properties.get(name).and_then(Value::as_str).and_then(parse_date_time)
                        && at <= now
                    {
                        passed_timers.push((entity.blueprint.clone(), entity.identifier.clone(), name.to_string(), at));
                    }
                }
                let valid = entity.revalidate(blueprint).map_err(|errors| {
                    let at = EntityRef { blueprint: entity.blueprint.clone(), identifier: entity.identifier.clone() };
                    Error::new(
                        ErrorCode::Internal,
                        format!("stored entity {at:?} does not match its blueprint: {errors}"),
                    )
                })?;
                writes.push(EntityWrite { entity, references: valid.references });
            }
            copied += writes.len() as u64;
            target.put_entities(&writes).await?;
            // Expiries that passed before the move were the source's to announce, not the target's.
            target.record_expiries(&passed_timers).await?;
        }
        report.blueprints.push((blueprint.identifier.clone(), copied));
    }
    copy_actions_and_runs(source.as_mut(), target.as_mut(), &mut report).await?;
    copy_kpis(source.as_mut(), target.as_mut()).await?;
    // What catalog-as-code sources applied, so that their next apply or prune knows it.
    let mut by_source: std::collections::BTreeMap<(String, Millis), Vec<_>> = std::collections::BTreeMap::new();
    for (key, object) in source.applied_objects(None).await? {
        by_source.entry((object.source, object.applied_at)).or_default().push((key, object.file));
    }
    for ((name, at), objects) in by_source {
        target.record_applied(&name, &objects, at).await?;
    }
    for location in source.locations().await? {
        target.put_location(&location).await?;
    }
    copy_integrations(source.as_mut(), target.as_mut(), &mut report).await?;
    target.commit().await?;

    let mut check = to.read().await?;
    for (blueprint, expected) in &report.blueprints {
        let found = check.count_entities(blueprint).await?;
        if found != *expected {
            return Err(Error::new(
                ErrorCode::Internal,
                format!(
                    "verification failed: blueprint '{blueprint}' has {found} entities in the target, {expected} in the source"
                ),
            ));
        }
    }
    Ok(report)
}

/// Integrations with their ingest keys' hashes (their URLs keep working) and their event logs.
async fn copy_integrations(source: &mut dyn Tx, target: &mut dyn Tx, report: &mut CopyReport) -> Result<()> {
    for integration in source.integrations().await? {
        let key = source.integration_key(&integration.identifier).await?;
        target.put_integration(&integration, key.as_deref()).await?;
        let mut before = None;
        loop {
            let page = source.events(&integration.identifier, before, PAGE).await?;
            let Some(last) = page.last() else { break };
            before = Some((last.received_at, last.id.clone()));
            for event in &page {
                target.insert_event(event).await?;
            }
        }
        report.integrations += 1;
    }
    for installation in source.installations().await? {
        target.put_installation(&installation).await?;
    }
    Ok(())
}

/// Appends the source's audit records to the target's log, in order: the target's chain stays
/// whole (with its own numbers and hashes); `portolan audit export` of the source keeps the
/// original ones.
async fn copy_audit_log(source: &mut dyn Tx, target: &mut dyn Tx, report: &mut CopyReport) -> Result<()> {
    let mut after = 0;
    loop {
        let page = source.audit_chain(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let entries = page
            .iter()
            .map(|stored| {
                serde_json::from_str::<portolan_model::audit::AuditEntry>(&stored.text)
                    .map_err(|e| Error::new(ErrorCode::Internal, format!("audit record {}: {e}", stored.seq)))
            })
            .collect::<Result<Vec<_>>>()?;
        target.append_audit(&entries).await?;
        report.audit_records += entries.len();
    }
    Ok(())
}

/// Copies accounts, API tokens, client credentials and the permissions of blueprints and actions. Sessions are not
/// copied: after a move people sign in again.
async fn copy_identity(
    source: &mut dyn Tx,
    target: &mut dyn Tx,
    actions: &[portolan_store::ActionRecord],
    report: &mut CopyReport,
) -> Result<()> {
    for account in source.accounts().await? {
        target.put_account(&account).await?;
        report.accounts += 1;
    }
    for token in source.api_tokens(None).await? {
        target.insert_api_token(&token).await?;
        if let Some(at) = token.last_used_at {
            target.touch_api_token(&token.id, at).await?;
        }
        if let Some(at) = token.revoked_at {
            target.revoke_api_token(&token.id, at).await?;
        }
    }
    for credentials in source.client_credentials_of(None).await? {
        target.put_client_credentials(&credentials).await?;
    }
    let blueprints = source.blueprints().await?;
    let resources = blueprints
        .iter()
        .map(|b| format!("blueprint:{}", b.blueprint.identifier))
        .chain(actions.iter().map(|a| format!("action:{}", a.action.identifier)));
    for resource in resources {
        if let Some(document) = source.permissions(&resource).await? {
            target.put_permissions(&resource, Some(&document), 0, "migrate-store").await?;
        }
    }
    Ok(())
}

/// Copies the DORA definition and the KPI time series.
async fn copy_kpis(source: &mut dyn Tx, target: &mut dyn Tx) -> Result<()> {
    if let Some(value) = source.setting(super::dora::DEFINITION_SETTING).await? {
        target.put_setting(super::dora::DEFINITION_SETTING, &value).await?;
    }
    let mut days: BTreeMap<Millis, Vec<KpiSample>> = BTreeMap::new();
    for (day, sample) in source.samples(None, Millis::MIN, Millis::MAX).await? {
        days.entry(day).or_default().push(sample);
    }
    for (day, samples) in days {
        target.put_samples(day, &samples).await?;
    }
    // Each kind's documents carry their key: an initiative its identifier, a dashboard its address.
    for (kind, key) in
        [(super::initiatives::DOCUMENT_KIND, "/definition/identifier"), (super::dashboards::DOCUMENT_KIND, "/key")]
    {
        for document in source.kpi_documents(kind).await? {
            let identifier = document.pointer(key).and_then(Value::as_str).unwrap_or_default().to_string();
            target.put_kpi_document(kind, &identifier, &document).await?;
        }
    }
    Ok(())
}

/// Copies the server's key (secrets are sealed with it), actions, secrets, runner tokens, and
/// runs with their logs and affected entities.
async fn copy_actions_and_runs(source: &mut dyn Tx, target: &mut dyn Tx, report: &mut CopyReport) -> Result<()> {
    const SETTINGS: [&str; 1] = ["secrets_key"];
    for name in SETTINGS {
        if let Some(value) = source.setting(name).await? {
            let kept = target.setting_or_insert(name, &value).await?;
            if kept != value {
                return Err(Error::new(ErrorCode::Conflict, format!("the target already has another '{name}'")));
            }
        }
    }
    let actions = source.actions().await?;
    for record in &actions {
        target.put_action(record, true).await?;
    }
    report.actions = actions.len();
    for meta in source.secrets().await? {
        let sealed = source.secret(&meta.name).await?.unwrap_or_default();
        target.put_secret(&meta.name, &sealed, meta.created_at, &meta.created_by).await?;
        if meta.updated_at != meta.created_at || meta.updated_by != meta.created_by {
            target.put_secret(&meta.name, &sealed, meta.updated_at, &meta.updated_by).await?;
        }
        report.secrets += 1;
    }
    for token in source.runner_tokens().await? {
        target.insert_runner_token(&token).await?;
        if let Some(at) = token.last_used_at {
            target.touch_runner_token(&token.id, at).await?;
        }
        if let Some(at) = token.revoked_at {
            target.revoke_runner_token(&token.id, at).await?;
        }
    }
    copy_identity(source, target, &actions, report).await?;
    copy_audit_log(source, target, report).await?;
    // Oldest first, so the target numbers them in the same order.
    let mut runs = Vec::new();
    let mut filter = RunFilter::default();
    loop {
        let page = source.list_runs(&filter, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        filter.before = Some(*last);
        runs.extend(page.into_iter().map(|(_, run)| run));
    }
    runs.reverse();
    for run in &runs {
        let labels = actions.iter().find(|r| r.action.identifier == run.action).and_then(|r| {
            match &r.action.invocation_method {
                InvocationMethod::Runner { labels, .. } => Some(labels.clone()),
                _ => None,
            }
        });
        target.insert_run(run, labels.as_deref()).await?;
        // Runs still going on move with what gets them going: a dispatch for the server's own
        // backends, and for a runner's run an expired lease, so that it is handed out again.
        if !run.status.is_terminal() {
            match (&labels, run.status) {
                (Some(_), RunStatus::InProgress) => {
                    target.lease_run(&run.id, "lost in the migration", 0, false).await?;
                }
                (Some(_), _) => {}
                (None, _) => target.enqueue_jobs(&[crate::services::runlog::dispatch_job(run)]).await?,
            }
        }
        let mut after = 0;
        loop {
            let logs = source.run_logs(&run.id, after, PAGE).await?;
            let Some(last) = logs.last() else { break };
            after = last.seq;
            let lines: Vec<NewRunLog> =
                logs.into_iter().map(|l| NewRunLog { at: l.at, stream: l.stream, message: l.message }).collect();
            target.append_run_logs(&run.id, &lines).await?;
        }
        for (entity, change) in source.run_entities(&run.id).await? {
            target.link_run_entities(&run.id, &[(entity, change.as_str())], run.updated_at).await?;
        }
    }
    report.runs = runs.len();
    Ok(())
}
