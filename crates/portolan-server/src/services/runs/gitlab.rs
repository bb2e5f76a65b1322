//! The `GITLAB` backend: a pipeline triggered with the project's trigger token (or, without one,
//! with the token of the `gitlab` integration that reads the group), linked from the run and, with
//! `reportWorkflowStatus`, watched with that integration's token until it ends.

use std::time::Duration;

use portolan_model::integration::{IntegrationKind, Vendor};
use portolan_model::run::{Run, RunStatus};
use portolan_store::Job;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::delivery::Outcome;
use super::github::{retry_or_fail, text_values};
use super::service::Runs;
use crate::error::Result;
use crate::outbound::Purpose;

/// What a watch job knows: the pipeline, and where to ask about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Watch {
    group: String,
    /// The project's path, escaped as one segment (`acme%2Fcart`).
    project: String,
    pipeline: u64,
    polls: u32,
}

/// The `gitlab` integration reading a group: its API root and token.
struct Account {
    base_url: String,
    token: Option<String>,
}

/// A GitLab answer: status, JSON body, and the wait it asks for.
struct Answer {
    status: u16,
    body: Value,
    wait: Option<Duration>,
}

impl Answer {
    fn message(&self) -> String {
        let said = self.body["message"].as_str().or(self.body["error"].as_str()).map(str::to_string);
        let said = said.or_else(|| self.body.get("message").map(Value::to_string));
        match said {
            Some(message) => format!("GitLab answered {}: {message}", self.status),
            None => format!("GitLab answered {}", self.status),
        }
    }
}

impl Runs {
    /// Triggers the pipeline (`rendered` holds `groupName`, `projectName`, `defaultRef`,
    /// `pipelineVariables`); `trigger_token` is the trigger token secret's value, if one is named.
    pub(super) async fn dispatch_gitlab(
        &self,
        job: &Job,
        run: &Run,
        rendered: &Value,
        trigger_token: Option<&str>,
        report: bool,
    ) -> Outcome {
        let text = |key: &str| rendered[key].as_str().unwrap_or_default().trim().trim_matches('/').to_string();
        let (group, project_name) = (text("groupName"), text("projectName"));
        let account = match self.gitlab_account(&group).await {
            Ok(account) => account,
            Err(err) => return retry_or_fail(err.message, None, job.attempts),
        };
        let project = format!("{group}/{project_name}").replace('/', "%2F");
        let git_ref = rendered["defaultRef"].as_str().filter(|r| !r.trim().is_empty()).unwrap_or("main").to_string();
        let variables = text_values(&rendered["pipelineVariables"]);
        let variables = variables.as_object().cloned().unwrap_or_default();
        let answer = match (trigger_token, &account.token) {
            (Some(trigger), _) => {
                let form = trigger_form(trigger, &git_ref, &variables);
                let url = format!("{}/projects/{project}/trigger/pipeline", account.base_url);
                let body = ("application/x-www-form-urlencoded", form.into_bytes());
                self.gitlab_call(reqwest::Method::POST, &url, None, Some(body)).await
            }
            (None, Some(token)) => {
                let variables: Vec<Value> =
                    variables.iter().map(|(key, value)| json!({"key": key, "value": value})).collect();
                let body = json!({"ref": git_ref, "variables": variables}).to_string().into_bytes();
                let url = format!("{}/projects/{project}/pipeline", account.base_url);
                self.gitlab_call(reqwest::Method::POST, &url, Some(token), Some(("application/json", body))).await
            }
            (None, None) => {
                let reason = format!(
                    "no triggerTokenSecret, and no GitLab integration reads the group '{group}' to trigger with its token"
                );
                return Outcome::End(RunStatus::Failure, reason);
            }
        };
        let answer = match answer {
            Ok(answer) if (200..300).contains(&answer.status) => answer,
            Ok(answer) if answer.status >= 500 || answer.status == 429 => {
                return retry_or_fail(answer.message(), answer.wait, job.attempts);
            }
            Ok(answer) => return Outcome::End(RunStatus::Failure, answer.message()),
            Err(reason) => return retry_or_fail(reason, None, job.attempts),
        };
        let link = answer.body["web_url"].as_str().map(str::to_string);
        let Some(pipeline) = answer.body["id"].as_u64() else {
            return Outcome::End(RunStatus::Failure, "GitLab answered no pipeline id".into());
        };
        let mut message = format!("triggered pipeline {pipeline} of {group}/{project_name} on '{git_ref}'");
        let next = match (report, &account.token) {
            (true, Some(_)) => {
                let watch = Watch { group, project, pipeline, polls: 0 };
                Some(self.next_look(run, "gitlab", json!(watch), 0, None))
            }
            (true, None) => {
                message.push_str(&format!(
                    "; no GitLab integration reads '{group}', so it is not watched: the pipeline reports on the run"
                ));
                None
            }
            (false, _) => None,
        };
        Outcome::Watch { message: Some(message), link, next }
    }

    /// One look at the pipeline.
    pub(super) async fn watch_gitlab(&self, run: &Run, mut watch: Watch) -> Outcome {
        watch.polls += 1;
        let account = match self.gitlab_account(&watch.group).await {
            Ok(account) => account,
            Err(err) => return self.look_at_gitlab_again(run, watch, None, Some(err.message)),
        };
        let Some(token) = &account.token else {
            return Outcome::End(
                RunStatus::Failure,
                format!("the GitLab integration reading '{}' is gone", watch.group),
            );
        };
        let url = format!("{}/projects/{}/pipelines/{}", account.base_url, watch.project, watch.pipeline);
        let answer = match self.gitlab_call(reqwest::Method::GET, &url, Some(token), None).await {
            Ok(answer) if (200..300).contains(&answer.status) => answer,
            Ok(answer) => return self.look_at_gitlab_again(run, watch, answer.wait, Some(answer.message())),
            Err(reason) => return self.look_at_gitlab_again(run, watch, None, Some(reason)),
        };
        match answer.body["status"].as_str().unwrap_or_default() {
            "success" => Outcome::End(RunStatus::Success, "the pipeline succeeded".into()),
            status @ ("failed" | "canceled" | "skipped") => {
                Outcome::End(RunStatus::Failure, format!("the pipeline ended: {status}"))
            }
            _ => self.look_at_gitlab_again(run, watch, None, None),
        }
    }

    fn look_at_gitlab_again(&self, run: &Run, watch: Watch, wait: Option<Duration>, note: Option<String>) -> Outcome {
        let polls = watch.polls;
        Outcome::Watch {
            message: note,
            link: None,
            next: Some(self.next_look(run, "gitlab", json!(watch), polls, wait)),
        }
    }

    /// The `gitlab` integration reading `group` (or a parent group of it): its API root and
    /// token; GitLab.com's root and no token without one.
    async fn gitlab_account(&self, group: &str) -> Result<Account> {
        let mut tx = self.core.store().read().await?;
        let group = group.to_ascii_lowercase();
        let found = tx.integrations().await?.into_iter().find_map(|i| {
            let vendor = i.vendor.filter(|_| i.kind == IntegrationKind::Gitlab)?;
            let reads = vendor.organization.as_deref()?.to_ascii_lowercase();
            (group == reads || group.starts_with(&format!("{reads}/"))).then_some(vendor)
        });
        let Some(vendor) = found else {
            return Ok(Account { base_url: Vendor::Gitlab.default_base_url().into(), token: None });
        };
        let names: Vec<String> = vendor.token_secret.iter().cloned().collect();
        let token = self.actions.secret_values(tx.as_mut(), &names).await?.into_values().next();
        Ok(Account { base_url: vendor.base_url(Vendor::Gitlab).to_string(), token })
    }

    async fn gitlab_call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> std::result::Result<Answer, String> {
        let mut request = self
            .engine
            .outbound
            .request(Purpose::IntegrationSource, method, url)
            .map_err(|e| e.to_string())?
            .timeout(Duration::from_secs(30))
            .header("accept", "application/json");
        if let Some(token) = token {
            request = request.header("private-token", token);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.map_err(|e| format!("cannot reach GitLab: {e}"))?;
        let status = response.status().as_u16();
        let wait = crate::github::asked_wait(response.headers());
        let bytes = response.bytes().await.map_err(|e| format!("cannot read GitLab's answer: {e}"))?;
        Ok(Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), wait })
    }
}

/// The form GitLab's pipeline trigger takes: `token`, `ref` and `variables[NAME]`.
fn trigger_form(token: &str, git_ref: &str, variables: &serde_json::Map<String, Value>) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token).append_pair("ref", git_ref);
    for (name, value) in variables {
        form.append_pair(&format!("variables[{name}]"), value.as_str().unwrap_or_default());
    }
    form.finish()
}
