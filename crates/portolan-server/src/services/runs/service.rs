//! The runs service: its collaborators, and what every part of a run's life uses.

use std::sync::{Arc, OnceLock};

use portolan_model::Millis;
use portolan_model::action::Action;
use portolan_model::run::Run;
use serde_json::Value;

use crate::backends::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::keys::{Keys, RunTokenError};
use crate::sandbox::JqSandbox;
use crate::services::actions::Actions;
use crate::services::actor::Actor;
use crate::services::catalog::Catalog;
use crate::services::core::Core;
use crate::services::guardrails::Guardrails;
use crate::services::identity::Identity;
use crate::services::permissions::Permissions;
use crate::services::search::Search;

/// Runs from request to result: see the modules of `services::runs` for each part of a run's life.
/// A run to store, and who waits for it to be stored.
pub struct NewRun {
    pub(super) action: Action,
    pub(super) run: Run,
    pub(super) actor: Actor,
    /// The span of the request that asked for it (traces follow the run into its job).
    pub(super) requested_in: tracing::Span,
    pub(super) done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// What the runs service works with; its fields read as the service's own (`self.core`).
#[derive(Clone)]
pub struct RunsParts {
    pub core: Core,
    pub permissions: Permissions,
    pub search: Search,
    pub catalog: Catalog,
    pub actions: Actions,
    pub guardrails: Guardrails,
    pub identity: Identity,
    /// Where runs are delivered: webhooks and NATS.
    pub engine: Arc<Engine>,
    /// Signs run tokens and opens secrets.
    pub keys: Arc<Keys>,
    /// Evaluates approval policies, dynamic inputs, conditions and templates' jq.
    pub jq: Option<Arc<JqSandbox>>,
    /// Where backends reach this server (`{public_url}/api/v1/actions/runs/{id}`), without a
    /// trailing slash.
    pub public_url: Arc<str>,
    /// How long a runner holds a claimed run without a heartbeat.
    pub runner_lease_ms: i64,
    /// The first wait between two looks at a CI run (see [`crate::Settings::ci_poll_ms`]).
    pub ci_poll_ms: i64,
}

#[derive(Clone)]
pub struct Runs {
    parts: Arc<RunsParts>,
    /// The group-commit writer of new runs, started on first use.
    pub(super) writer: Arc<OnceLock<tokio::sync::mpsc::Sender<NewRun>>>,
}

impl std::ops::Deref for Runs {
    type Target = RunsParts;

    fn deref(&self) -> &RunsParts {
        &self.parts
    }
}

impl Runs {
    pub fn new(parts: RunsParts) -> Self {
        Self { parts: Arc::new(parts), writer: Arc::default() }
    }

    /// How long a runner holds a claimed run without a heartbeat.
    pub fn runner_lease_ms(&self) -> i64 {
        self.runner_lease_ms
    }
}

/// How long a run token stays valid after the run starts.
pub(super) const RUN_TOKEN_TTL_MS: Millis = 7 * 24 * 3600 * 1000;

pub(super) fn new_run_id() -> String {
    format!("r_{}", uuid::Uuid::new_v4().simple())
}

impl Runs {
    /// Checks a run token against the run's current hand-over.
    pub(super) fn verify_run_token(&self, token: &str, run: &Run) -> Result<()> {
        match self.keys.verify_run_token(token, &run.id, run.attempt, self.core.now()) {
            Ok(()) => {}
            Err(RunTokenError::Invalid) => {
                return Err(Error::new(ErrorCode::Unauthorized, "this token is not valid for this run"));
            }
            Err(RunTokenError::Expired) => {
                return Err(Error::new(ErrorCode::TokenExpired, "the run token has expired"));
            }
            Err(RunTokenError::Superseded) => {
                return Err(Error::new(
                    ErrorCode::LeaseLost,
                    "this token is from an earlier hand-over of the run; another runner holds it now",
                ));
            }
        }
        Ok(())
    }

    pub(super) async fn eval_one(&self, program: &str, input: &Value) -> std::result::Result<Value, String> {
        let sandbox = self.jq.as_deref().ok_or("this server runs no jq sandbox")?;
        sandbox.eval(program, input).await?.into_iter().next().ok_or_else(|| "the template gave no output".into())
    }
}
