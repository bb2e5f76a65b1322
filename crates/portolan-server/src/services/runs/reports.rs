//! What backends report on a run: status, links, summary, and log lines.

use portolan_model::action::BackendKind;
use portolan_model::run::{Run, RunStatus};
use portolan_model::template;
use portolan_store::{ChangeEvent, NewRunLog, Tx};
use serde::Deserialize;
use serde_json::Value;

use super::service::Runs;
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::{Actor, Origin};
use crate::services::runlog::{log, record_run};
use crate::services::triggers::automations;

/// Most log lines per append request.
pub const MAX_LOG_LINES: usize = 1_000;

/// Longest log line kept, in bytes (longer ones are cut).
pub(super) const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// `PATCH /api/v1/actions/runs/{id}`: what a backend reports.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunReport {
    /// `IN_PROGRESS`, `SUCCESS` or `FAILURE`.
    pub status: Option<String>,
    pub status_label: Option<String>,
    /// A link, or a list of links, to add to the run.
    pub link: Option<Value>,
    pub summary: Option<String>,
    pub external_run_id: Option<String>,
}

/// One line for a run's log.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    pub message: String,
    /// `stdout`, `stderr` or `backend` (the default).
    pub stream: Option<String>,
}

impl Runs {
    /// Loads a run for a backend's report and checks the token; refuses reports on ended runs.
    pub(super) async fn run_for_report(&self, tx: &mut dyn Tx, id: &str, token: Option<&str>) -> Result<Run> {
        let run = tx.run(id, true).await?.ok_or_else(|| Error::not_found(format!("run '{id}'")))?;
        let token = token.ok_or_else(|| {
            Error::new(ErrorCode::Unauthorized, "reports on a run need its run token as 'Authorization: Bearer'")
        })?;
        self.verify_run_token(token, &run)?;
        if run.status.is_terminal() {
            return Err(Error::new(
                ErrorCode::RunFinished,
                format!("run '{id}' already ended ({}); its result is final", run.status.as_str()),
            ));
        }
        if run.backend == BackendKind::Runner && run.status != RunStatus::InProgress {
            return Err(Error::new(ErrorCode::LeaseLost, "this run went back to the queue; no runner holds it now"));
        }
        Ok(run)
    }

    /// A backend's report: status, label, links, summary, external id.
    pub async fn report_run(&self, id: &str, token: Option<&str>, report: RunReport) -> Result<Run> {
        let status = match report.status.as_deref() {
            None => None,
            Some(s @ ("SUCCESS" | "FAILURE" | "IN_PROGRESS")) => RunStatus::parse(s),
            Some(other) => {
                return Err(Error::invalid_at(
                    "/status",
                    format!("'{other}' is not one of SUCCESS, FAILURE, IN_PROGRESS"),
                ));
            }
        };
        let links = match report.link {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(link)) => vec![link],
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                items.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
            }
            Some(_) => return Err(Error::invalid_at("/link", "must be a URL or a list of URLs")),
        };
        for (i, link) in links.iter().enumerate() {
            if !url::Url::parse(link).is_ok_and(|u| matches!(u.scheme(), "http" | "https" | "file")) {
                return Err(Error::invalid_at(&format!("/link/{i}"), format!("{link:?} is not a URL")));
            }
        }
        let mut tx = self.core.store().write().await?;
        let before = self.run_for_report(tx.as_mut(), id, token).await?;
        let listeners = automations(tx.as_mut()).await?;
        let mut run = before.clone();
        let now = self.core.now();
        let mut logs = Vec::new();
        if let Some(status) = status
            && status != run.status
        {
            run.transition(status, now).map_err(|m| Error::new(ErrorCode::Conflict, m))?;
            logs.push(log(now, format!("the backend reported {}", status.as_str())));
        }
        run.status_label = report.status_label.or(run.status_label);
        run.summary = report.summary.or(run.summary);
        run.external_run_id = report.external_run_id.or(run.external_run_id);
        for link in links {
            if !run.links.contains(&link) {
                run.links.push(link);
            }
        }
        run.updated_at = now;
        let backend = Actor::system(format!("run:{}", run.id), Origin::Backend);
        record_run(tx.as_mut(), &backend, &listeners, Some(&before), &run, logs, now).await?;
        tx.commit().await?;
        Ok(run)
    }

    /// Appends a backend's log lines to a run.
    pub async fn append_run_logs(&self, id: &str, token: Option<&str>, lines: Vec<LogLine>) -> Result<usize> {
        if lines.len() > MAX_LOG_LINES {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("{} lines sent; one request takes at most {MAX_LOG_LINES}", lines.len()),
            ));
        }
        let now = self.core.now();
        let mut logs = Vec::with_capacity(lines.len());
        for (i, line) in lines.into_iter().enumerate() {
            let stream = line.stream.unwrap_or_else(|| "backend".into());
            if !matches!(stream.as_str(), "stdout" | "stderr" | "backend") {
                return Err(Error::invalid_at(&format!("/lines/{i}/stream"), "must be stdout, stderr or backend"));
            }
            let mut message = line.message;
            if message.len() > MAX_LOG_LINE_BYTES {
                let mut cut = MAX_LOG_LINE_BYTES;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push_str(" [cut]");
            }
            logs.push(NewRunLog { at: now, stream, message });
        }
        let mut tx = self.core.store().write().await?;
        let run = self.run_for_report(tx.as_mut(), id, token).await?;
        // A backend's output may echo a secret its payload carried; a deleted one is not masked.
        if let Some(record) = tx.action(&run.action).await? {
            let mut secrets = Vec::new();
            for name in record.action.secret_names() {
                if let Ok(values) = self.actions.secret_values(tx.as_mut(), std::slice::from_ref(&name)).await {
                    secrets.extend(values.into_values());
                }
            }
            for line in &mut logs {
                line.message = template::mask_text(&line.message, &secrets);
            }
        }
        tx.append_run_logs(&run.id, &logs).await?;
        tx.publish(&ChangeEvent {
            kind: "run.log".into(),
            blueprint: run.blueprint.clone().unwrap_or_default(),
            identifier: run.id.clone(),
            version: None,
            property: None,
        })
        .await?;
        tx.commit().await?;
        Ok(logs.len())
    }
}
