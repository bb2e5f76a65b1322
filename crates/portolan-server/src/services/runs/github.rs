//! The `GITHUB` backend: the action's workflow is dispatched through GitHub's API with the
//! credentials of the `github` integration that reads its organization; the workflow run it
//! started is found and linked, and (with `reportWorkflowStatus`) watched until it ends. Each look
//! at GitHub is one job: a `dispatch` job whose payload carries the watch, enqueued again after a
//! wait that doubles (from `ci_poll_ms` up to 30 s) or that GitHub's rate limit asks for.

use portolan_model::Millis;
use portolan_model::integration::IntegrationKind;
use portolan_model::run::{Run, RunStatus};
use portolan_store::{Job, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::delivery::Outcome;
use super::dispatch::backoff_ms;
use super::service::Runs;
use crate::error::Result;
use crate::github::{Answer, Credential, GithubAccount};
use crate::services::runlog::DISPATCH;

/// The longest wait between two looks at a workflow run.
const MAX_POLL_MS: Millis = 30_000;
/// Dispatch attempts when GitHub fails or limits the request.
const DISPATCH_ATTEMPTS: i64 = 5;
/// How much earlier than the dispatch a run found by listing may have been created (clock skew).
const SKEW_MS: Millis = 5_000;

/// What a watch job knows: where the workflow is, when it was dispatched, and its run once found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Watch {
    org: String,
    repo: String,
    workflow: String,
    dispatched_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_url: Option<String>,
    report: bool,
    polls: u32,
}

impl Runs {
    /// Dispatches the workflow (`rendered` holds `org`, `repo`, `workflow`, `inputs`, `ref`).
    pub(super) async fn dispatch_github(&self, job: &Job, run: &Run, rendered: &Value, report: bool) -> Outcome {
        let text = |key: &str| rendered[key].as_str().unwrap_or_default().trim().to_string();
        let (org, repo, workflow) = (text("org"), text("repo"), text("workflow"));
        let account = match self.github_account(&org).await {
            Ok(account) => account,
            Err(reason) => return Outcome::End(RunStatus::Failure, reason),
        };
        let token = match self.engine.github.token(&account, self.core.now()).await {
            Ok(token) => token,
            Err(reason) => return retry_or_fail(format!("GitHub: {reason}"), None, job.attempts),
        };
        let github = &self.engine.github;
        let git_ref = match rendered["ref"].as_str().filter(|r| !r.trim().is_empty()) {
            Some(git_ref) => git_ref.to_string(),
            None => match github
                .call(&account.base_url, &token, reqwest::Method::GET, &format!("/repos/{org}/{repo}"), None)
                .await
            {
                Ok(answer) if answer.is_success() => {
                    answer.body["default_branch"].as_str().unwrap_or("main").to_string()
                }
                Ok(answer) => return answer_outcome(&answer, job.attempts),
                Err(reason) => return retry_or_fail(reason, None, job.attempts),
            },
        };
        let body = json!({"ref": git_ref, "inputs": text_values(&rendered["inputs"]), "return_run_details": true});
        let path = format!("/repos/{org}/{repo}/actions/workflows/{workflow}/dispatches");
        let dispatched_at = self.core.now();
        let answer = match github.call(&account.base_url, &token, reqwest::Method::POST, &path, Some(&body)).await {
            Ok(answer) if answer.is_success() => answer,
            Ok(answer) => return answer_outcome(&answer, job.attempts),
            Err(reason) => return retry_or_fail(reason, None, job.attempts),
        };
        let watch = Watch {
            run_url: answer.body["run_url"].as_str().map(str::to_string),
            org,
            repo,
            workflow,
            dispatched_at,
            report,
            polls: 0,
        };
        let link = answer.body["html_url"].as_str().map(str::to_string);
        let message = format!(
            "dispatched workflow '{}' of {}/{} on '{git_ref}'{}",
            watch.workflow,
            watch.org,
            watch.repo,
            link.as_deref().map(|l| format!(": {l}")).unwrap_or_else(|| "; looking for its run".into())
        );
        // Without `reportWorkflowStatus` the workflow reports itself; its run is still linked.
        let next = (watch.report || watch.run_url.is_none()).then(|| self.next_github_look(run, watch, None));
        Outcome::Watch { message: Some(message), link, next }
    }

    /// One look at the workflow run: found yet, ended yet.
    pub(super) async fn watch_github(&self, run: &Run, mut watch: Watch) -> Outcome {
        let account = match self.github_account(&watch.org).await {
            Ok(account) => account,
            Err(reason) => return Outcome::End(RunStatus::Failure, reason),
        };
        let github = &self.engine.github;
        let token = match github.token(&account, self.core.now()).await {
            Ok(token) => token,
            Err(reason) => return self.look_again(run, watch, None, Some(format!("GitHub: {reason}"))),
        };
        watch.polls += 1;
        let Some(run_url) = watch.run_url.clone() else {
            // GitHub did not say which run it started (an older GitHub Enterprise Server): the
            // earliest run of the workflow dispatched since is the one.
            let since = portolan_model::format_millis(watch.dispatched_at - SKEW_MS);
            let path = format!(
                "/repos/{}/{}/actions/workflows/{}/runs?event=workflow_dispatch&created=%3E%3D{since}&per_page=100",
                watch.org, watch.repo, watch.workflow
            );
            let answer = match github.call(&account.base_url, &token, reqwest::Method::GET, &path, None).await {
                Ok(answer) if answer.is_success() => answer,
                Ok(answer) => return self.look_again(run, watch, answer.wait, Some(answer.message())),
                Err(reason) => return self.look_again(run, watch, None, Some(reason)),
            };
            let found = answer.body["workflow_runs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["created_at"].as_str().and_then(portolan_model::parse_millis).is_some())
                .min_by_key(|r| r["created_at"].as_str().and_then(portolan_model::parse_millis));
            let Some(found) = found else {
                let note = (watch.polls == 1).then(|| "waiting for GitHub to start the workflow run".to_string());
                return self.look_again(run, watch, None, note);
            };
            let link = found["html_url"].as_str().map(str::to_string);
            watch.run_url = found["url"].as_str().map(str::to_string);
            let message = format!("the workflow run is {}", link.as_deref().unwrap_or("found"));
            let next = watch.report.then(|| self.next_github_look(run, Watch { polls: 0, ..watch }, None));
            return Outcome::Watch { message: Some(message), link, next };
        };
        let answer = match github.call(&account.base_url, &token, reqwest::Method::GET, &run_url, None).await {
            Ok(answer) if answer.is_success() => answer,
            Ok(answer) => return self.look_again(run, watch, answer.wait, Some(answer.message())),
            Err(reason) => return self.look_again(run, watch, None, Some(reason)),
        };
        match (answer.body["status"].as_str(), answer.body["conclusion"].as_str()) {
            (Some("completed"), Some("success")) => {
                Outcome::End(RunStatus::Success, "the workflow run succeeded".into())
            }
            (Some("completed"), conclusion) => Outcome::End(
                RunStatus::Failure,
                format!("the workflow run ended: {}", conclusion.unwrap_or("without a conclusion")),
            ),
            _ => self.look_again(run, watch, None, None),
        }
    }

    /// The next look, after the doubling wait or the one GitHub asked for.
    fn look_again(&self, run: &Run, watch: Watch, wait: Option<std::time::Duration>, note: Option<String>) -> Outcome {
        Outcome::Watch { message: note, link: None, next: Some(self.next_github_look(run, watch, wait)) }
    }

    fn next_github_look(&self, run: &Run, watch: Watch, wait: Option<std::time::Duration>) -> NewJob {
        let polls = watch.polls;
        self.next_look(run, "github", json!(watch), polls, wait)
    }

    /// The next look at a CI run: a `dispatch` job carrying `state` under `key`, after a wait
    /// that doubles with `polls` from `ci_poll_ms` up to 30 s, or longer when the CI asks.
    pub(super) fn next_look(
        &self,
        run: &Run,
        key: &str,
        state: Value,
        polls: u32,
        wait: Option<std::time::Duration>,
    ) -> NewJob {
        let doubled = self.ci_poll_ms.saturating_mul(1 << polls.min(10)).min(MAX_POLL_MS);
        let delay = wait.map_or(doubled, |w| (w.as_millis() as Millis).max(doubled));
        NewJob {
            kind: DISPATCH.into(),
            dedupe_key: None,
            payload: json!({"run": run.id, key: state}),
            run_after: self.core.now() + delay,
        }
    }

    /// The credentials of the `github` integration that reads `org`.
    async fn github_account(&self, org: &str) -> std::result::Result<GithubAccount, String> {
        match self.integration_account(org).await {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(format!(
                "no GitHub integration reads the organization '{org}': add one (type github, with a token or an app) \
                 to give its actions their credentials"
            )),
            Err(err) => Err(err.message),
        }
    }

    async fn integration_account(&self, org: &str) -> Result<Option<GithubAccount>> {
        let mut tx = self.core.store().read().await?;
        let found = tx.integrations().await?.into_iter().find_map(|i| {
            let vendor = i.vendor.filter(|_| i.kind == IntegrationKind::Github)?;
            vendor.organization.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(org)).then_some(vendor)
        });
        let Some(vendor) = found else { return Ok(None) };
        let names: Vec<String> = vendor.secret_names().map(str::to_string).collect();
        let secrets = self.actions.secret_values(tx.as_mut(), &names).await?;
        let secret = |name: &str| secrets.get(name).cloned().unwrap_or_default();
        let credential = match (&vendor.token_secret, &vendor.app) {
            (Some(name), _) => Credential::Token(secret(name)),
            (None, Some(app)) => Credential::App {
                app_id: app.app_id.clone(),
                installation_id: app.installation_id,
                private_key: secret(&app.private_key_secret),
            },
            (None, None) => return Ok(None),
        };
        let base_url = vendor.base_url(portolan_model::integration::Vendor::Github).to_string();
        Ok(Some(GithubAccount { base_url, credential }))
    }
}

/// Workflow inputs (or CI variables) as GitHub and GitLab take them: text; any other value is sent
/// as its JSON.
pub(super) fn text_values(rendered: &Value) -> Value {
    let inputs: Map<String, Value> = rendered
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (name.clone(), Value::String(text))
        })
        .collect();
    Value::Object(inputs)
}

/// What an answer that is not a success means for the dispatch: a limit or a server error is
/// tried again; anything else (a workflow that does not exist, inputs it refuses) fails the run.
fn answer_outcome(answer: &Answer, attempts: i64) -> Outcome {
    if answer.wait.is_some() || answer.status >= 500 {
        return retry_or_fail(answer.message(), answer.wait, attempts);
    }
    Outcome::End(RunStatus::Failure, answer.message())
}

pub(super) fn retry_or_fail(reason: String, wait: Option<std::time::Duration>, attempts: i64) -> Outcome {
    if attempts >= DISPATCH_ATTEMPTS {
        return Outcome::End(RunStatus::Failure, format!("gave up after {attempts} attempts; the last one: {reason}"));
    }
    Outcome::Retry {
        message: format!("attempt {attempts} of {DISPATCH_ATTEMPTS} failed: {reason}"),
        delay_ms: wait.map_or_else(|| backoff_ms(attempts - 1), |w| w.as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_sent_as_text() {
        let rendered = json!({"service": "cart", "replicas": 3, "port_context": {"runId": "r_1"}});
        assert_eq!(
            text_values(&rendered),
            json!({"service": "cart", "replicas": "3", "port_context": "{\"runId\":\"r_1\"}"})
        );
        assert_eq!(text_values(&Value::Null), json!({}));
    }
}
