//! The demo catalog of the product brief (Order Domain, Cart and Products systems and their
//! services, APIs, libraries and resources), loaded idempotently: what exists is left alone.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, ErrorCode, Result};
use crate::gallery;
use crate::services::Actor;
use crate::services::catalog::{BulkOptions, MAX_BULK, WriteMode};
use crate::services::dashboards::Address;
use crate::services::identity::NewAccount;
use crate::services::manifests::{ApplyRequest, Op, SourcedDocument};
use crate::state::AppState;
use portolan_model::Millis;
use portolan_model::gallery::{Backend, Install};
use portolan_model::manifest::Kind;
use portolan_model::permission::Role;

pub mod history;
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
    /// Permissions of some blueprints and actions, by identifier.
    permissions: DemoPermissions,
    /// The demo users who can sign in, all with [`DEMO_PASSWORD`].
    accounts: Vec<DemoAccount>,
    /// Shared dashboards (each team has its default).
    dashboards: Vec<Value>,
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
    /// Deployments and incidents of the demo's past.
    pub history_created: usize,
    pub dashboards_created: usize,
}

pub async fn load(app: &AppState) -> Result<DemoSummary> {
    let demo: DemoCatalog = serde_json::from_str(CATALOG)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("demo catalog is malformed: {e}")))?;
    let actor = Actor::demo();
    let mut summary = DemoSummary::default();
    for blueprint in demo.blueprints {
        let identifier = blueprint["identifier"].as_str().unwrap_or_default().to_string();
        match app.catalog.create_blueprint(&actor, blueprint.clone()).await {
            Ok(_) => summary.blueprints_created += 1,
            Err(err) if err.code == ErrorCode::AlreadyExists => {
                add_new_properties(app, &actor, &identifier, &blueprint).await?
            }
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
    let first_loaded = first_loaded(app, &actor).await?;
    summary.history_created = load_history(app, &actor, first_loaded).await?;
    for (day, samples) in history::readiness_levels(first_loaded) {
        app.scorecards.record_samples(day, &samples).await?;
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
    // The gallery is installed on every start, so a changed template reaches old data directories.
    let backend = Backend::Runner { labels: vec![RUNNER_LABEL.into()] };
    let installs = gallery::templates()?
        .iter()
        .map(|t| (t.identifier.clone(), Install { backend: backend.clone(), renames: Default::default() }))
        .collect();
    let installed = app.manifests.install_templates(&actor, installs, false).await.map_err(|err| {
        let problems: Vec<String> = err.details.iter().map(|d| format!("{}: {}", d["file"], d["message"])).collect();
        Error { message: format!("{} ({})", err.message, problems.join("; ")), ..err }
    })?;
    summary.actions_written =
        installed.changes.iter().filter(|c| c.kind == Kind::Action && c.op != Op::Unchanged).count();
    for template in gallery::templates()? {
        for entity in &template.demo.entities {
            let blueprint = entity["blueprint"].as_str().unwrap_or_default();
            let mut entity = entity.clone();
            if let Value::Object(map) = &mut entity {
                map.remove("blueprint");
            }
            let mode = WriteMode::Create { upsert: false, merge: false };
            match app.catalog.write_entity(&actor, blueprint, None, entity, mode, None).await {
                Ok(_) => summary.entities_created += 1,
                Err(err) if err.code == ErrorCode::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
    }
    for (blueprint, permissions) in demo.permissions.blueprints {
        app.permissions.put_blueprint_permissions(&actor, &blueprint, permissions).await?;
    }
    for (action, permissions) in demo.permissions.actions {
        app.permissions.put_action_permissions(&actor, &action, permissions).await?;
    }
    match app.initiatives.put(&actor, None, history::gold_initiative(first_loaded)).await {
        Ok(_) => {
            for (day, samples) in history::gold_initiative_progress(first_loaded) {
                app.scorecards.record_samples(day, &samples).await?;
            }
        }
        Err(err) if err.code == ErrorCode::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    for dashboard in demo.dashboards {
        let address = Address::Shared(dashboard["identifier"].as_str().unwrap_or_default().to_string());
        match app.dashboards.put(&actor, &address, dashboard, true).await {
            Ok(_) => summary.dashboards_created += 1,
            Err(err) if err.code == ErrorCode::AlreadyExists => {}
            Err(err) => return Err(err),
        }
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

/// Gives a blueprint made by an older demo the properties the demo has added since, so that the
/// demo's entities fit it; what is there is left alone.
async fn add_new_properties(app: &AppState, actor: &Actor, identifier: &str, blueprint: &Value) -> Result<()> {
    let current = app.catalog.get_blueprint(identifier).await?.blueprint;
    let wanted = blueprint["schema"]["properties"].as_object().cloned().unwrap_or_default();
    let missing: Map<String, Value> =
        wanted.into_iter().filter(|(name, _)| !current.schema.properties.contains_key(name)).collect();
    if !missing.is_empty() {
        let patch = serde_json::json!({"schema": {"properties": missing}});
        app.catalog.update_blueprint(actor, identifier, patch, true).await?;
    }
    Ok(())
}

/// Writes the demo's past deployments and incidents that are not there yet; how many it wrote.
async fn load_history(app: &AppState, actor: &Actor, first_loaded: Millis) -> Result<usize> {
    let (deployments, incidents) = history::history(first_loaded, app.core.now());
    let mut created = 0;
    for (blueprint, documents) in [("deployment", deployments), ("incident", incidents)] {
        for chunk in documents.chunks(MAX_BULK) {
            let items = app.catalog.bulk_write(actor, blueprint, chunk.to_vec(), &BulkOptions::default()).await?;
            for item in items {
                match item.result {
                    Ok(_) => created += 1,
                    Err(err) if err.code == ErrorCode::AlreadyExists => {}
                    Err(err) => return Err(err),
                }
            }
        }
    }
    Ok(created)
}

/// When the demo was first loaded: when its first service was created (now, if it is gone).
async fn first_loaded(app: &AppState, actor: &Actor) -> Result<Millis> {
    match app.catalog.get_entity(actor, "service", "cart-service").await {
        Ok(service) => Ok(service.created_at),
        Err(err) if err.code == ErrorCode::NotFound => Ok(app.core.now()),
        Err(err) => Err(err),
    }
}
