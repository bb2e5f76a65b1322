//! The JSON API under `/api/v1`. Handlers only translate HTTP to service calls and back.

pub mod actions;
pub mod audit;
pub mod backstage;
pub mod blueprints;
pub mod dashboards;
pub mod dora;
pub mod entities;
pub mod events;
pub mod gallery;
pub mod identity;
pub mod initiatives;
pub mod installations;
pub mod integrations;
pub mod locations;
pub mod manifests;
pub mod notifications;
pub mod oauth;
mod openapi;
pub mod ops;
pub mod runs;
pub mod scorecards;
pub mod search;

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// `{"ok": true}`: the answer to a change that has nothing more to tell (a deletion, say).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Done {
    ok: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Portolan API", description = "Software catalog, scorecards and self-service actions."),
    tags((name = "blueprints", description = "Types of the catalog"), (name = "entities", description = "Catalog entries"),
          (name = "search", description = "The query language: search, counts and facets"),
          (name = "scorecards", description = "Levels and rules that grade entities"),
          (name = "dora", description = "Deployment frequency, lead time, change failure rate and time to restore"),
          (name = "initiatives", description = "Goals for a set of entities by a date: progress, burn-up, reminders"),
          (name = "dashboards", description = "Pages of widgets: shared, per team and personal"),
          (name = "events", description = "Live changes"),
          (name = "actions", description = "Self-service actions and automations"),
          (name = "runs", description = "Executions of actions, their logs and results"),
          (name = "secrets", description = "Write-only values templates can read"),
          (name = "runners", description = "Pull-based agents that run actions' commands"),
          (name = "auth", description = "Sign-in, accounts and API tokens"),
          (name = "notifications", description = "Each person's inbox and notification preferences"),
          (name = "permissions", description = "Who may read, change and run what"),
          (name = "audit", description = "The tamper-evident record of every change and refusal"),
          (name = "catalog as code", description = "Apply and export the catalog as documents"),
          (name = "gallery", description = "Golden paths: ready-made self-service actions to install"),
          (name = "integrations", description = "Data brought in from webhooks and sources, mapped with jq"))
)]
struct ApiDoc;

/// The API routes and the OpenAPI document generated from them.
pub fn router() -> Router<AppState> {
    let (router, generated) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(blueprints::list_blueprints, blueprints::create_blueprint))
        .routes(routes!(
            blueprints::get_blueprint,
            blueprints::replace_blueprint,
            blueprints::patch_blueprint,
            blueprints::delete_blueprint
        ))
        .routes(routes!(entities::list_entities, entities::create_entity))
        .routes(routes!(entities::bulk_entities))
        .routes(routes!(search::search_blueprint))
        .routes(routes!(search::search_all))
        .routes(routes!(search::aggregate))
        .routes(routes!(scorecards::list_scorecards, scorecards::create_scorecard))
        .routes(routes!(scorecards::get_scorecard, scorecards::replace_scorecard, scorecards::delete_scorecard))
        .routes(routes!(scorecards::scorecard_summary))
        .routes(routes!(scorecards::scorecard_history))
        .routes(routes!(dora::report))
        .routes(routes!(dora::get_definition, dora::put_definition))
        .routes(routes!(initiatives::list_initiatives, initiatives::create_initiative))
        .routes(routes!(initiatives::get_initiative, initiatives::replace_initiative, initiatives::delete_initiative))
        .routes(routes!(initiatives::remind))
        .routes(routes!(initiatives::promote))
        .routes(routes!(dashboards::list_dashboards, dashboards::create_dashboard))
        .routes(routes!(
            dashboards::get_my_dashboard,
            dashboards::replace_my_dashboard,
            dashboards::delete_my_dashboard
        ))
        .routes(routes!(
            dashboards::get_team_dashboard,
            dashboards::replace_team_dashboard,
            dashboards::delete_team_dashboard
        ))
        .routes(routes!(dashboards::get_dashboard, dashboards::replace_dashboard, dashboards::delete_dashboard))
        .routes(routes!(events::stream))
        .routes(routes!(actions::list_actions, actions::create_action))
        .routes(routes!(actions::get_action, actions::replace_action, actions::delete_action))
        .routes(routes!(runs::create_run))
        .routes(routes!(runs::list_runs))
        .routes(routes!(runs::get_run, runs::report_run))
        .routes(routes!(runs::run_logs, runs::append_logs))
        .routes(routes!(runs::stream_logs))
        .routes(routes!(runs::decide))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::inbox))
        .routes(routes!(runs::entity_runs))
        .routes(routes!(actions::list_secrets, actions::create_secret))
        .routes(routes!(actions::replace_secret, actions::delete_secret))
        .routes(routes!(actions::signing_key))
        .routes(routes!(actions::rotate_signing_key))
        .routes(routes!(actions::list_runner_tokens, actions::create_runner_token))
        .routes(routes!(actions::revoke_runner_token))
        .routes(routes!(identity::login))
        .routes(routes!(identity::providers))
        .routes(routes!(identity::oidc_login))
        .routes(routes!(identity::oidc_callback))
        .routes(routes!(identity::logout))
        .routes(routes!(identity::me))
        .routes(routes!(identity::list_users, identity::create_user))
        .routes(routes!(identity::change_user))
        .routes(routes!(identity::list_tokens, identity::create_token))
        .routes(routes!(identity::revoke_token))
        .routes(routes!(identity::access_token))
        .routes(routes!(identity::list_teams))
        .routes(routes!(identity::get_credentials, identity::rotate_credentials, identity::delete_credentials))
        .routes(routes!(identity::get_blueprint_permissions, identity::put_blueprint_permissions))
        .routes(routes!(identity::get_action_permissions, identity::put_action_permissions))
        .routes(routes!(manifests::export))
        .routes(routes!(manifests::sources))
        .routes(routes!(gallery::list_templates))
        .routes(routes!(gallery::get_template))
        .routes(routes!(gallery::install_template))
        .routes(routes!(locations::list_locations, locations::create_location))
        .routes(routes!(locations::get_location, locations::delete_location))
        .routes(routes!(locations::sync_location))
        .routes(routes!(locations::location_webhook))
        .routes(routes!(integrations::test_mapping))
        .routes(routes!(integrations::list_integrations, integrations::create_integration))
        .routes(routes!(
            integrations::get_integration,
            integrations::replace_integration,
            integrations::delete_integration
        ))
        .routes(routes!(integrations::rotate_key))
        .routes(routes!(integrations::sync_integration))
        .routes(routes!(integrations::list_events))
        .routes(routes!(integrations::get_event))
        .routes(routes!(installations::list_installations, installations::create_installation))
        .routes(routes!(installations::provision_enabled))
        .routes(routes!(
            installations::get_installation,
            installations::patch_installation,
            installations::delete_installation
        ))
        .routes(routes!(installations::patch_installation_config))
        .routes(routes!(installations::report_resync))
        .routes(routes!(installations::kind_examples))
        .routes(routes!(installations::organization))
        .routes(routes!(installations::ingest_logs))
        .routes(routes!(installations::sync_metrics))
        .routes(routes!(installations::kind_sync_metrics))
        .routes(routes!(installations::heartbeat))
        .routes(routes!(entities::bulk_delete_entities))
        .routes(routes!(entities::datasource_entities))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(integrations::ingest))
                .layer(axum::extract::DefaultBodyLimit::max(integrations::INGEST_BODY_LIMIT)),
        )
        .merge(
            OpenApiRouter::new()
                .routes(routes!(manifests::apply))
                .layer(axum::extract::DefaultBodyLimit::max(manifests::APPLY_BODY_LIMIT)),
        )
        .routes(routes!(notifications::inbox))
        .routes(routes!(notifications::mark_read))
        .routes(routes!(notifications::mark_all_read))
        .routes(routes!(notifications::preferences, notifications::set_preferences))
        .routes(routes!(notifications::team_preferences, notifications::set_team_preferences))
        .routes(routes!(notifications::slack))
        .routes(routes!(notifications::unlink_slack))
        .routes(routes!(audit::audit_log))
        .routes(routes!(audit::sign_checkpoint))
        .routes(routes!(audit::entity_history))
        .routes(routes!(runs::claim))
        .routes(routes!(runs::heartbeat))
        .routes(routes!(
            entities::get_entity,
            entities::replace_entity,
            entities::patch_entity,
            entities::delete_entity
        ))
        .split_for_parts();
    let document = std::sync::Arc::new(openapi::document(&generated));
    router
        .route("/api/v1/openapi.json", get(move || async move { Json(document.as_ref().clone()) }))
        .merge(backstage::router())
        .merge(oauth::router())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
}
