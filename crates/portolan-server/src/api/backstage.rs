//! `/api/catalog/...`: the paths `@backstage/catalog-client` calls, answered in Backstage's
//! shapes (errors too), with Portolan's own authentication and read grants.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use portolan_model::manifest::backstage;
use portolan_model::manifest::backstage_query::{facet_values, flatten, parse_filters, select_fields};
use portolan_model::manifest::location::{Location, LocationInput, LocationKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, ErrorCode};
use crate::extract::Caller;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/catalog/entities", get(entities))
        .route("/api/catalog/entities/by-query", get(by_query))
        .route("/api/catalog/entities/by-name/{kind}/{namespace}/{name}", get(by_name))
        .route("/api/catalog/entities/by-uid/{uid}", get(by_uid).delete(delete_by_uid))
        .route("/api/catalog/entities/by-refs", post(by_refs))
        .route("/api/catalog/entity-facets", get(facets))
        .route("/api/catalog/refresh", post(refresh))
        .route("/api/catalog/validate-entity", post(validate_entity))
        .route("/api/catalog/locations", get(locations).post(add_location))
        .route("/api/catalog/locations/{id}", get(location).delete(remove_location))
        .route("/api/catalog/locations/by-entity/{kind}/{namespace}/{name}", get(location_by_entity))
}

fn location_view(location: &Location) -> Value {
    let kind = match location.kind {
        LocationKind::Git => "url",
        LocationKind::File => "file",
    };
    json!({"id": location.id, "type": kind, "target": location.target})
}

async fn locations(State(app): State<AppState>, caller: Caller) -> Reply<Json<Vec<Value>>> {
    let all = app.locations.list(&caller.actor).await?;
    Ok(Json(all.iter().map(|l| json!({"data": location_view(l)})).collect()))
}

async fn location(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> Reply<Json<Value>> {
    Ok(Json(location_view(&app.locations.get(&caller.actor, &id).await?)))
}

async fn remove_location(State(app): State<AppState>, caller: Caller, Path(id): Path<String>) -> Reply<StatusCode> {
    app.locations.delete(&caller.actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LocationBody {
    #[serde(rename = "type")]
    kind: String,
    target: String,
}

/// `POST /locations {type, target}`: `url` registers a git repository, `file` a path on the
/// server; the first sync runs before the answer, whose `entities` are what it brought.
async fn add_location(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Reply<Response> {
    if Params::read(raw).one("dryRun") == Some("true") {
        return Err(bad("dryRun is not supported: use POST /api/v1/apply with dryRun to see what files would change"));
    }
    let body: LocationBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not {{type, target}}: {e}")))?;
    let kind = match body.kind.as_str() {
        "url" => LocationKind::Git,
        "file" => LocationKind::File,
        other => return Err(bad(format!("location type '{other}' is neither url nor file"))),
    };
    let input = LocationInput {
        kind,
        target: body.target,
        branch: None,
        paths: Vec::new(),
        token_secret: None,
        webhook_secret: None,
        interval_seconds: None,
        deletion_threshold: None,
    };
    let location = app.locations.register(&caller.actor, input).await?;
    let status = app.locations.sync(&location.id).await?;
    // As in Backstage, a location that cannot be read is not registered.
    if let Some(error) = status.error {
        app.locations.delete(&caller.actor, &location.id).await?;
        return Err(bad(error));
    }
    let entities = app.backstage.query(&caller.actor, &[]).await?;
    let source = location.source();
    let mut brought = Vec::new();
    for entity in entities {
        let uid = entity["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        if app.backstage.source_of_uid(&uid).await?.is_some_and(|s| s == source) {
            brought.push(entity);
        }
    }
    Ok((StatusCode::CREATED, Json(json!({"location": location_view(&location), "entities": brought}))).into_response())
}

async fn location_by_entity(
    State(app): State<AppState>,
    caller: Caller,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Reply<Json<Value>> {
    let entity = app.backstage.by_name(&caller.actor, &kind, &namespace, &name).await?;
    let uid = entity["metadata"]["uid"].as_str().unwrap_or_default();
    let source = app.backstage.source_of_uid(uid).await?;
    let id = source.as_deref().and_then(|s| s.strip_prefix("location:"));
    match id {
        Some(id) => Ok(Json(location_view(&app.locations.get(&caller.actor, id).await?))),
        None => Err(BackstageError(Error::not_found(format!("a location of {kind}:{namespace}/{name}")))),
    }
}

/// An error as Backstage's backend writes it: `{error: {name, message}, response: {statusCode}}`.
pub struct BackstageError(Error);

impl From<Error> for BackstageError {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

impl IntoResponse for BackstageError {
    fn into_response(self) -> Response {
        let status = self.0.code.status();
        let name = match status {
            StatusCode::NOT_FOUND => "NotFoundError",
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "InputError",
            StatusCode::UNAUTHORIZED => "AuthenticationError",
            StatusCode::FORBIDDEN => "NotAllowedError",
            StatusCode::CONFLICT => "ConflictError",
            _ => "Error",
        };
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { status };
        if self.0.code == ErrorCode::Internal {
            return self.0.into_response();
        }
        let mut response = (
            status,
            Json(json!({"error": {"name": name, "message": self.0.message}, "response": {"statusCode": status.as_u16()}})),
        )
            .into_response();
        if self.0.denied {
            response.extensions_mut().insert(crate::error::Refusal(self.0.message.clone()));
        }
        response
    }
}

type Reply<T> = Result<T, BackstageError>;

fn bad(message: impl Into<String>) -> BackstageError {
    BackstageError(Error::invalid_at("", message))
}

/// Query parameters, repeated keys kept (`filter=a&filter=b`).
struct Params(BTreeMap<String, Vec<String>>);

impl Params {
    fn read(raw: Option<String>) -> Self {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            map.entry(key.into_owned()).or_default().push(value.into_owned());
        }
        Self(map)
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0.get(key).cloned().unwrap_or_default()
    }

    /// A list parameter: repeated, or comma-separated.
    fn list(&self, key: &str) -> Vec<String> {
        self.all(key)
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    fn number(&self, key: &str) -> Result<Option<usize>, BackstageError> {
        self.one(key).map(|v| v.parse().map_err(|_| bad(format!("{key} must be a non-negative integer")))).transpose()
    }
}

/// What a by-query page is: the query, and where the page starts.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cursor {
    filters: Vec<String>,
    order: Vec<String>,
    full_text: Option<String>,
    full_text_fields: Vec<String>,
    offset: usize,
}

fn encode(cursor: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode(text: &str) -> Result<Cursor, BackstageError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| bad("cursor is not one this server gave"))
}

async fn matching(app: &AppState, caller: &Caller, filters: &[String]) -> Reply<Vec<Value>> {
    let sets = parse_filters(filters).map_err(bad)?;
    Ok(app.backstage.query(&caller.actor, &sets).await?)
}

fn sort(items: &mut [Value], order: &[String]) -> Reply<()> {
    let mut keys = Vec::new();
    for directive in order {
        let (field, direction) = match directive.split_once(',') {
            Some((field, direction)) => (field, direction),
            None => match directive.split_once(':') {
                Some((direction, field)) => (field, direction),
                None => (directive.as_str(), "asc"),
            },
        };
        let descending = match direction {
            "asc" => false,
            "desc" => true,
            other => return Err(bad(format!("order direction '{other}' is neither asc nor desc"))),
        };
        keys.push((field.to_string(), descending));
    }
    if keys.is_empty() {
        return Ok(());
    }
    items.sort_by(|a, b| {
        for (field, descending) in &keys {
            let value = |v: &Value| facet_values(v, field).first().map(|s| s.to_lowercase());
            let ordering = value(a).cmp(&value(b));
            let ordering = if *descending { ordering.reverse() } else { ordering };
            if ordering.is_ne() {
                return ordering;
            }
        }
        std::cmp::Ordering::Equal
    });
    Ok(())
}

fn full_text(items: &mut Vec<Value>, term: Option<&str>, fields: &[String]) {
    let Some(term) = term.map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase) else { return };
    let fields: Vec<String> = fields.iter().map(|f| f.to_lowercase()).collect();
    items.retain(|item| {
        flatten(item).iter().any(|(key, value)| (fields.is_empty() || fields.contains(key)) && value.contains(&term))
    });
}

/// `GET /entities`: the older list call, a plain array.
async fn entities(State(app): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Reply<Json<Vec<Value>>> {
    let params = Params::read(raw);
    let mut items = matching(&app, &caller, &params.all("filter")).await?;
    sort(&mut items, &params.list("order"))?;
    let offset = params.number("offset")?.unwrap_or(0);
    let limit = params.number("limit")?.unwrap_or(usize::MAX);
    let fields = params.list("fields");
    let page = app.backstage.complete(items.into_iter().skip(offset).take(limit).collect()).await?;
    Ok(Json(page.iter().map(|e| select_fields(e, &fields)).collect()))
}

/// `GET /entities/by-query`: a page, its total, and cursors to the next and previous pages.
async fn by_query(State(app): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Reply<Json<Value>> {
    let params = Params::read(raw);
    let cursor = match params.one("cursor") {
        Some(text) => decode(text)?,
        None => Cursor {
            filters: params.all("filter"),
            order: params.all("orderField"),
            full_text: params.one("fullTextFilterTerm").map(str::to_string),
            full_text_fields: params.list("fullTextFilterFields"),
            offset: params.number("offset")?.unwrap_or(0),
        },
    };
    let limit = params.number("limit")?.unwrap_or(20);
    let mut items = matching(&app, &caller, &cursor.filters).await?;
    full_text(&mut items, cursor.full_text.as_deref(), &cursor.full_text_fields);
    sort(&mut items, &cursor.order)?;
    let total = items.len();
    let page_len = items.len().saturating_sub(cursor.offset).min(limit);
    let fields = params.list("fields");
    let page = app.backstage.complete(items.into_iter().skip(cursor.offset).take(limit).collect()).await?;
    let page: Vec<Value> = page.iter().map(|e| select_fields(e, &fields)).collect();
    let mut page_info = serde_json::Map::new();
    if cursor.offset + page_len < total {
        page_info
            .insert("nextCursor".into(), json!(encode(&Cursor { offset: cursor.offset + limit, ..cursor.clone() })));
    }
    if cursor.offset > 0 {
        page_info.insert(
            "prevCursor".into(),
            json!(encode(&Cursor { offset: cursor.offset.saturating_sub(limit), ..cursor.clone() })),
        );
    }
    let mut body = json!({"items": page, "pageInfo": page_info});
    if params.one("totalItems") != Some("false") {
        body["totalItems"] = json!(total);
    }
    Ok(Json(body))
}

async fn by_name(
    State(app): State<AppState>,
    caller: Caller,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Reply<Json<Value>> {
    Ok(Json(app.backstage.by_name(&caller.actor, &kind, &namespace, &name).await?))
}

async fn by_uid(State(app): State<AppState>, caller: Caller, Path(uid): Path<String>) -> Reply<Json<Value>> {
    Ok(Json(app.backstage.by_uid(&caller.actor, &uid).await?))
}

async fn delete_by_uid(State(app): State<AppState>, caller: Caller, Path(uid): Path<String>) -> Reply<StatusCode> {
    app.backstage.delete_by_uid(&caller.actor, &uid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefsBody {
    entity_refs: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
}

async fn by_refs(State(app): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Reply<Json<Value>> {
    let body: RefsBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not {{entityRefs, fields}}: {e}")))?;
    let items = app.backstage.by_refs(&caller.actor, &body.entity_refs).await?;
    let items: Vec<Value> =
        items.iter().map(|e| if e.is_null() { Value::Null } else { select_fields(e, &body.fields) }).collect();
    Ok(Json(json!({"items": items})))
}

/// `GET /entity-facets`: for each facet, its values and how many entities have each.
async fn facets(State(app): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Reply<Json<Value>> {
    let params = Params::read(raw);
    let filters = params.all("filter");
    let sets = parse_filters(&filters).map_err(bad)?;
    let mut items: Option<Vec<Value>> = None;
    let mut facets = serde_json::Map::new();
    for facet in params.all("facet") {
        let mut list = match app.backstage.facet_counts(&caller.actor, &sets, &facet).await? {
            Some(counts) => counts,
            None => {
                if items.is_none() {
                    let found = app.backstage.query(&caller.actor, &sets).await?;
                    // Relations that point at an entity are only read when a facet asks for them.
                    let with_reverse = params.all("facet").iter().any(|f| f.to_lowercase().starts_with("relations"));
                    items = Some(if with_reverse { app.backstage.complete(found).await? } else { found });
                }
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for item in items.iter().flatten() {
                    let mut values = facet_values(item, &facet);
                    values.sort();
                    values.dedup();
                    for value in values {
                        *counts.entry(value).or_default() += 1;
                    }
                }
                counts.into_iter().collect()
            }
        };
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        facets.insert(
            facet,
            Value::Array(list.into_iter().map(|(value, count)| json!({"value": value, "count": count})).collect()),
        );
    }
    Ok(Json(json!({"facets": facets})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    entity_ref: String,
}

/// Entities here are always current (an apply or a location sync writes them at once): a refresh
/// only checks that the entity exists for the caller.
async fn refresh(State(app): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Reply<StatusCode> {
    let body: RefreshBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not {{entityRef}}: {e}")))?;
    let target = backstage::BackstageRef::parse(&body.entity_ref, None, "default").map_err(bad)?;
    app.backstage.by_name(&caller.actor, &target.kind, &target.namespace, &target.name).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct ValidateBody {
    entity: Value,
}

/// `POST /validate-entity`: whether a descriptor would import, with each problem by pointer.
async fn validate_entity(_caller: Caller, body: axum::body::Bytes) -> Response {
    let body: ValidateBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return bad(format!("the body is not {{entity, location}}: {e}")).into_response(),
    };
    match backstage::translate(&body.entity) {
        Ok(_) => (StatusCode::OK, Json(json!({}))).into_response(),
        Err(errors) => {
            let errors: Vec<Value> = errors
                .0
                .iter()
                .map(|e| json!({"name": "InputError", "message": format!("{}: {}", e.path, e.message)}))
                .collect();
            (StatusCode::BAD_REQUEST, Json(json!({"errors": errors}))).into_response()
        }
    }
}
