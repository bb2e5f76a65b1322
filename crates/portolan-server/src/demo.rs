//! The demo catalog of the product brief (Order Domain, Cart and Products systems and their
//! services, APIs, libraries and resources), loaded idempotently: what exists is left alone.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, ErrorCode, Result};
use crate::services::Actor;
use crate::services::catalog::WriteMode;
use crate::services::identity::NewAccount;
use crate::services::manifests::{ApplyRequest, SourcedDocument};
use crate::state::AppState;
use portolan_model::permission::Role;

pub mod integrations;

const CATALOG: &str = include_str!("../demo/catalog.json");
const BACKSTAGE: &str = include_str!("../demo/backstage.yaml");

#[derive(Deserialize)]
struct DemoCatalog {
    blueprints: Vec<Value>,
    /// Entities per blueprint, in an order where every reference points backwards (serde_json
    /// is built with `preserve_order`, so the map keeps the file's order).
    entities: Map<String, Value>,
    /// Scorecards per blueprint.
    scorecards: Map<String, Value>,
    /// Computed properties added once every blueprint exists (they point at each other).
    computed: Map<String, Value>,
    /// Self-service actions and automations, run by the demo's runner.
    actions: Vec<Value>,
    /// Permissions of some blueprints and actions, by identifier.
    permissions: DemoPermissions,
    /// The demo users who can sign in, all with [`DEMO_PASSWORD`].
    accounts: Vec<DemoAccount>,
}

#[derive(Deserialize)]
struct DemoPermissions {
    blueprints: Map<String, Value>,
    actions: Map<String, Value>,
}

#[derive(Deserialize)]
struct DemoAccount {
    identifier: String,
    role: Role,
}

/// The password of every demo user. For the demo only: README says so, and a real deployment
/// creates its users with `portolan admin create-user` or SSO.
pub const DEMO_PASSWORD: &str = "portolan-demo";

/// The label of the runner the demo starts; the demo actions' runs need it.
pub const RUNNER_LABEL: &str = "demo";

/// What loading the demo added.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub blueprints_created: usize,
    pub entities_created: usize,
    pub scorecards_created: usize,
    pub actions_written: usize,
    pub accounts_created: usize,
}

pub async fn load(app: &AppState) -> Result<DemoSummary> {
    let demo: DemoCatalog = serde_json::from_str(CATALOG)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("demo catalog is malformed: {e}")))?;
    let actor = Actor::demo();
    let mut summary = DemoSummary::default();
    for blueprint in demo.blueprints {
        match app.catalog.create_blueprint(&actor, blueprint).await {
            Ok(_) => summary.blueprints_created += 1,
            Err(err) if err.code == ErrorCode::AlreadyExists => {}
            Err(err) => return Err(err),
        }
    }
    for (blueprint, computed) in demo.computed {
        let current = app.catalog.get_blueprint(&blueprint).await?.blueprint;
        let missing = computed.as_object().into_iter().flatten().any(|(kind, definitions)| {
            definitions.as_object().into_iter().flatten().any(|(name, _)| match kind.as_str() {
                "mirrorProperties" => !current.mirror_properties.contains_key(name),
                _ => !current.aggregation_properties.contains_key(name),
            })
        });
        if missing {
            app.catalog.update_blueprint(&actor, &blueprint, computed, true).await?;
        }
    }
    for (blueprint, entities) in demo.entities {
        for entity in entities.as_array().into_iter().flatten() {
            let mode = WriteMode::Create { upsert: false, merge: false };
            match app.catalog.write_entity(&actor, &blueprint, None, entity.clone(), mode, None).await {
                Ok(_) => summary.entities_created += 1,
                Err(err) if err.code == ErrorCode::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
    }
    for (blueprint, scorecards) in demo.scorecards {
        for scorecard in scorecards.as_array().into_iter().flatten() {
            match app.scorecards.put_scorecard(&actor, &blueprint, None, scorecard.clone()).await {
                Ok(_) => summary.scorecards_created += 1,
                Err(err) if err.code == ErrorCode::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
    }
    // Actions are written on every start, so a changed demo definition reaches old data directories.
    for action in demo.actions {
        let identifier = action["identifier"].as_str().unwrap_or_default().to_string();
        let exists = app.actions.get_action(&actor, &identifier).await.is_ok();
        let path = exists.then_some(identifier.as_str());
        app.actions.put_action(&actor, path, action.clone()).await?;
        summary.actions_written += 1;
    }
    for (blueprint, permissions) in demo.permissions.blueprints {
        app.permissions.put_blueprint_permissions(&actor, &blueprint, permissions).await?;
    }
    for (action, permissions) in demo.permissions.actions {
        app.permissions.put_action_permissions(&actor, &action, permissions).await?;
    }
    for account in demo.accounts {
        let new = NewAccount {
            identifier: account.identifier,
            role: Some(account.role),
            password: Some(DEMO_PASSWORD.into()),
            ..NewAccount::default()
        };
        match app.identity.create_account(&actor, new).await {
            Ok(_) => summary.accounts_created += 1,
            Err(err) if err.code == ErrorCode::AlreadyExists => {}
            Err(err) => return Err(err),
        }
    }
    // Backstage descriptors go through catalog as code, as a repository's files would.
    let documents = portolan_model::manifest::read_documents(BACKSTAGE)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("demo descriptors are malformed: {}", e.message)))?
        .into_iter()
        .map(|d| SourcedDocument { file: "demo/backstage.yaml".into(), line: d.line, document: d.value })
        .collect();
    let request =
        ApplyRequest { source: "demo".into(), documents, dry_run: false, prune: true, max_delete_share: None };
    app.manifests.apply(&actor, request).await?;
    Ok(summary)
}
