//! `/api/v1/integrations/...`: data brought in from where it lives.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::Result;
use crate::extract::{Caller, JsonBody};
use crate::services::integrations::MappingPreview;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestMappingBody {
    /// A mapping in Port's integration shape: `{resources: [{kind, selector: {query},
    /// port: {itemsToParse, entity: {mappings: {identifier, title, blueprint, ...}}}}]}`.
    #[schema(value_type = Object)]
    mapping: Value,
    /// A sample payload: a webhook's body, or one page of a source's items.
    #[schema(value_type = Object)]
    payload: Value,
}

/// Runs a mapping over a sample payload and shows what each item would become (the entity, or
/// each problem with the mapping's JSON pointer), checked against its blueprint. Writes nothing.
#[utoipa::path(post, path = "/api/v1/integrations/test-mapping", tag = "integrations", request_body = TestMappingBody,
    responses((status = 200, body = MappingPreview),
              (status = 422, description = "the mapping is not valid: each problem by its pointer under /mapping")))]
pub async fn test_mapping(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<TestMappingBody>,
) -> Result<Json<MappingPreview>> {
    Ok(Json(app.integrations.test_mapping(&caller.actor, body.mapping, &body.payload).await?))
}
