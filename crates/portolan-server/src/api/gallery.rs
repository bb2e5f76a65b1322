//! `/api/v1/gallery`: the golden paths — every self-service action of the brief, ready to
//! install with the organisation's backend.

use axum::Json;
use axum::extract::State;
use portolan_model::gallery::{Install, Template};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::Result;
use crate::extract::{Caller, JsonBody, PathParams};
use crate::services::manifests::{ApplyReport, TemplateState};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GalleryEntry {
    #[serde(flatten)]
    template: Template,
    /// Every action of the template is stored.
    installed: bool,
    /// The backend the installed actions send their work to.
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
}

impl From<TemplateState> for GalleryEntry {
    fn from(state: TemplateState) -> Self {
        Self { template: state.template.clone(), installed: state.installed, backend: state.backend }
    }
}

#[derive(Serialize, ToSchema)]
pub struct GalleryResponse {
    ok: bool,
    templates: Vec<GalleryEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateResponse {
    ok: bool,
    template: GalleryEntry,
}

/// The install: `backend`, `renames`, and `dryRun` (check and show what would be written;
/// write nothing).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct InstallBody {
    backend: portolan_model::gallery::Backend,
    #[schema(value_type = Option<Object>)]
    renames: Option<Value>,
    dry_run: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct InstallResponse {
    ok: bool,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    report: ApplyReport,
}

/// Every template, by area, with whether it is installed.
#[utoipa::path(get, path = "/api/v1/gallery", tag = "gallery", responses((status = 200, body = GalleryResponse)))]
pub async fn list_templates(State(app): State<AppState>, _caller: Caller) -> Result<Json<GalleryResponse>> {
    let templates = app.manifests.gallery().await?.into_iter().map(GalleryEntry::from).collect();
    Ok(Json(GalleryResponse { ok: true, templates }))
}

#[utoipa::path(get, path = "/api/v1/gallery/{template}", tag = "gallery", params(("template" = String, Path)),
    responses((status = 200, body = TemplateResponse), (status = 404, description = "no such template")))]
pub async fn get_template(
    State(app): State<AppState>,
    _caller: Caller,
    PathParams(identifier): PathParams<String>,
) -> Result<Json<TemplateResponse>> {
    let template = GalleryEntry::from(app.manifests.gallery_template(&identifier).await?);
    Ok(Json(TemplateResponse { ok: true, template }))
}

/// Installs a template with the organisation's backend (admins only): its blueprints are created
/// or extended (never changed), its actions written, the entities it needs created. Installing
/// again changes only what differs. `dryRun` shows every change without writing. A stored
/// blueprint whose property differs is refused (422, naming it) unless `renames` installs the
/// template's beside it.
#[utoipa::path(post, path = "/api/v1/gallery/{template}/install", tag = "gallery", params(("template" = String, Path)),
    request_body = InstallBody,
    responses((status = 200, body = InstallResponse), (status = 403, description = "not an admin"),
              (status = 404, description = "no such template"),
              (status = 422, description = "a conflict with the catalog, or an invalid backend")))]
pub async fn install_template(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<InstallResponse>> {
    crate::gallery::template(&identifier)?;
    let mut body = body;
    let dry_run = match body.as_object_mut().and_then(|b| b.remove("dryRun")) {
        None => false,
        Some(Value::Bool(dry_run)) => dry_run,
        Some(_) => return Err(crate::error::Error::invalid_at("/dryRun", "must be true or false")),
    };
    let install: Install = portolan_model::error::from_json(body)?;
    let report = app.manifests.install_templates(&caller.actor, vec![(identifier, install)], dry_run).await?;
    Ok(Json(InstallResponse { ok: true, report }))
}
