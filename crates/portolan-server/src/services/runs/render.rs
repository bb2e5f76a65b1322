//! Rendering an action's invocation for a run: its templates with the run, entity, secrets and
//! run token, and the same masked for what the run shows.

use portolan_model::action::Action;
use portolan_model::run::Run;
use portolan_model::template;
use portolan_store::Tx;
use serde_json::{Value, json};

use super::service::Runs;
use crate::services::triggers::entity_document;

/// A rendered invocation.
pub(super) struct Rendered {
    /// With the secrets: only for the backend.
    pub(super) full: Value,
    /// With what read a secret (or the run token) shown as `********`: what the run shows.
    pub(super) masked: Value,
    pub(super) secrets: std::collections::BTreeMap<String, String>,
    /// The values to mask anywhere the run is recorded: the secrets, the run token and what
    /// expressions made of them.
    pub(super) hidden: Vec<String>,
}

impl Runs {
    /// Renders an action's templates for a run: the full result (secrets included), the copy to
    /// show (what reads a secret masked, and secret values masked as text too), and the secrets.
    /// Errors are masked too.
    pub(super) async fn render(
        &self,
        tx: &mut dyn Tx,
        action: &Action,
        run: &Run,
        run_token: &str,
    ) -> std::result::Result<Rendered, String> {
        let secrets = self.actions.secret_values(tx, &action.secret_names()).await.map_err(|e| e.message)?;
        let entity = match (&run.blueprint, &run.entity) {
            (Some(blueprint), Some(identifier)) => {
                tx.entity(blueprint, identifier).await.map_err(|e| e.to_string())?.map(|e| entity_document(&e))
            }
            _ => None,
        };
        // A deleted entity is still what an automation on its deletion is about.
        let entity = entity
            .or_else(|| {
                let diff = &run.trigger.event.as_ref()?["diff"];
                Some(if diff["after"].is_null() { diff["before"].clone() } else { diff["after"].clone() })
            })
            .unwrap_or(Value::Null);
        let context = json!({
            "inputs": run.inputs,
            "entity": entity,
            "action": {"identifier": action.identifier, "title": action.title, "blueprint": action.blueprint()},
            "run": {
                "id": run.id,
                "url": format!("{}/api/v1/actions/runs/{}", self.public_url, run.id),
                "token": run_token,
            },
            "trigger": run.trigger,
            "secrets": secrets,
        });
        let renderer = action.renderer().map_err(|e| e.to_string())?;
        let mut hidden: Vec<String> = secrets.values().cloned().collect();
        hidden.push(run_token.to_string());
        // Expressions that read no secret run without them; those that do show masked (see template).
        let public = match renderer.public_program() {
            Some(program) => Some(
                self.eval_one(&program, &template::public_context(&context))
                    .await
                    .map_err(|e| template::mask_text(&e, &hidden))?,
            ),
            None => None,
        };
        let secret = match renderer.hidden_program() {
            Some(program) => {
                Some(self.eval_one(&program, &context).await.map_err(|_| template::hidden_program_failure())?)
            }
            None => None,
        };
        let rendering = renderer.assemble(public, secret).map_err(|e| template::mask_text(&e, &hidden))?;
        hidden.extend(rendering.derived);
        let full = rendering.real;
        let mut masked = rendering.display;
        template::mask(&mut masked, &hidden);
        Ok(Rendered { full, masked, secrets, hidden })
    }
}
