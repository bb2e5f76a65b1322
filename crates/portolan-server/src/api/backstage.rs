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
use portolan_model::manifest::backstage_query::{Predicate, facet_values, flatten, select_fields};
use portolan_model::manifest::location::{Location, LocationInput, LocationKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, ErrorCode};
use crate::extract::Caller;
use crate::services::manifests::SourcedDocument;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/catalog/entities", get(entities))
        .route("/api/catalog/entities/by-query", get(by_query).post(by_predicate))
        .route("/api/catalog/entities/by-name/{kind}/{namespace}/{name}", get(by_name))
        .route("/api/catalog/entities/by-uid/{uid}", get(by_uid).delete(delete_by_uid))
        .route("/api/catalog/entities/by-refs", post(by_refs))
        .route("/api/catalog/entity-facets", get(facets).post(facets_by_predicate))
        .route("/api/catalog/refresh", post(refresh))
        .route("/api/catalog/validate-entity", post(validate_entity))
        .route("/api/catalog/analyze-location", post(analyze_location))
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

impl LocationBody {
    /// `url` is a git repository, `file` a path on the server.
    fn input(self, paths: Vec<String>) -> Reply<LocationInput> {
        let kind = match self.kind.as_str() {
            "url" => LocationKind::Git,
            "file" => LocationKind::File,
            other => return Err(bad(format!("location type '{other}' is neither url nor file"))),
        };
        Ok(LocationInput {
            kind,
            target: self.target,
            branch: None,
            paths,
            token_secret: None,
            webhook_secret: None,
            interval_seconds: None,
            deletion_threshold: None,
        })
    }
}

/// The Backstage descriptors among a location's documents.
fn descriptors(documents: Vec<SourcedDocument>) -> Vec<Value> {
    documents
        .into_iter()
        .map(|d| d.document)
        .filter(|d| d["apiVersion"].as_str().is_some_and(|v| v.starts_with("backstage.io/")))
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnalyzeBody {
    location: LocationBody,
    catalog_filename: Option<String>,
}

/// `POST /analyze-location`: the descriptors a repository holds, read without registering it;
/// for one that holds none, a Component to start from, with the owner left to the user.
async fn analyze_location(State(app): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Reply<Json<Value>> {
    let body: AnalyzeBody = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body is not {{location: {{type, target}}, catalogFilename}}: {e}")))?;
    let paths = body.catalog_filename.map(|name| vec![format!("**/{name}")]).unwrap_or_default();
    let input = body.location.input(paths)?;
    let spec = json!({"type": if input.kind == LocationKind::Git { "url" } else { "file" }, "target": input.target});
    let preview = app.locations.preview(&caller.actor, input).await?;
    let existing: Vec<Value> = descriptors(preview.documents)
        .into_iter()
        .map(|entity| json!({"location": spec, "isRegistered": preview.registered, "entity": entity}))
        .collect();
    let generate = match existing.is_empty() {
        false => Vec::new(),
        true => {
            let name = suggested_name(&preview.location.target);
            vec![json!({
                "entity": {"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                           "metadata": {"name": name}, "spec": {"type": "service", "lifecycle": "production"}},
                "fields": [{"field": "spec.owner", "state": "needsUserInput", "value": null,
                            "description": "The team that owns this component: the repository does not say."}]
            })]
        }
    };
    Ok(Json(json!({"existingEntityFiles": existing, "generateEntities": generate})))
}

/// A Backstage name from a repository's last path segment (`.../cart-service.git` -> `cart-service`).
fn suggested_name(target: &str) -> String {
    let last = target.trim_end_matches('/').rsplit(['/', ':']).next().unwrap_or_default();
    let name: String = last
        .trim_end_matches(".git")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .take(63)
        .collect();
    if name.is_empty() { "new-component".into() } else { name }
}

/// `POST /locations {type, target}`: `url` registers a git repository, `file` a path on the
/// server; the first sync runs before the answer, whose `entities` are what it brought.
async fn add_location(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Reply<Response> {
    let body: LocationBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not {{type, target}}: {e}")))?;
    let input = body.input(Vec::new())?;
    // A dry run reads what the location holds and registers nothing.
    if Params::read(raw).one("dryRun") == Some("true") {
        let preview = app.locations.preview(&caller.actor, input).await?;
        let view = location_view(&preview.location);
        let body = json!({"location": view, "entities": descriptors(preview.documents), "exists": preview.registered});
        return Ok((StatusCode::CREATED, Json(body)).into_response());
    }
    let location = app.locations.register(&caller.actor, input, true).await?;
    // As in Backstage, a location that cannot be read is not registered.
    if let Some(error) = location.status.error.clone() {
        app.locations.delete(&caller.actor, &location.id).await?;
        return Err(bad(error));
    }
    let entities = app.backstage.query(&caller.actor, &Predicate::All(Vec::new())).await?;
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

/// What a by-query page is: the query, and where the page starts. A cursor of the POST form
/// carries its predicate as `query`, which is how the client knows to POST the next page.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cursor {
    filters: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<Value>,
    order: Vec<String>,
    full_text: Option<String>,
    full_text_fields: Vec<String>,
    offset: usize,
}

impl Cursor {
    fn predicate(&self) -> Reply<Predicate> {
        let filters = Predicate::from_filters(&self.filters).map_err(bad)?;
        match &self.query {
            None => Ok(filters),
            Some(query) => {
                let query = Predicate::parse(query).map_err(|e| bad(format!("query: {e}")))?;
                Ok(if self.filters.is_empty() { query } else { Predicate::All(vec![query, filters]) })
            }
        }
    }
}

// Standard base64, as the client reads it (`atob`) to tell the two forms apart.
fn encode(cursor: &Cursor) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode(text: &str) -> Result<Cursor, BackstageError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| bad("cursor is not one this server gave"))
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
    let predicate = Predicate::from_filters(&params.all("filter")).map_err(bad)?;
    let mut items = app.backstage.query(&caller.actor, &predicate).await?;
    sort(&mut items, &params.list("order"))?;
    let offset = params.number("offset")?.unwrap_or(0);
    let limit = params.number("limit")?.unwrap_or(usize::MAX);
    let fields = params.list("fields");
    let page = app.backstage.complete(&predicate, items.into_iter().skip(offset).take(limit).collect()).await?;
    Ok(Json(page.iter().map(|e| select_fields(e, &fields)).collect()))
}

/// `GET /entities/by-query`: a page, its total, and cursors to the next and previous pages.
async fn by_query(State(app): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Reply<Json<Value>> {
    let params = Params::read(raw);
    let cursor = match params.one("cursor") {
        Some(text) => decode(text)?,
        None => Cursor {
            filters: params.all("filter"),
            query: None,
            order: params.all("orderField"),
            full_text: params.one("fullTextFilterTerm").map(str::to_string),
            full_text_fields: params.list("fullTextFilterFields"),
            offset: params.number("offset")?.unwrap_or(0),
        },
    };
    let limit = params.number("limit")?.unwrap_or(20);
    let count = params.one("totalItems").is_none_or(|v| v == "include");
    page(&app, &caller, cursor, limit, &params.list("fields"), count).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PredicateQuery {
    query: Option<Value>,
    cursor: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    #[serde(default)]
    order_by: Vec<OrderBy>,
    full_text_filter: Option<FullTextFilter>,
    #[serde(default)]
    fields: Vec<String>,
    total_items: Option<String>,
}

#[derive(Deserialize)]
struct OrderBy {
    field: String,
    order: String,
}

#[derive(Deserialize)]
struct FullTextFilter {
    term: Option<String>,
    #[serde(default)]
    fields: Vec<String>,
}

/// `POST /entities/by-query`: the same page, with a predicate body instead of `filter`s.
async fn by_predicate(State(app): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Reply<Json<Value>> {
    let body: PredicateQuery = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body is not {{query, limit, offset, orderBy, fullTextFilter, fields}}: {e}")))?;
    let cursor = match &body.cursor {
        Some(text) => decode(text)?,
        None => {
            let full_text = body.full_text_filter.unwrap_or(FullTextFilter { term: None, fields: Vec::new() });
            Cursor {
                filters: Vec::new(),
                query: Some(body.query.unwrap_or_else(|| json!({"$all": []}))),
                order: body.order_by.iter().map(|o| format!("{},{}", o.field, o.order)).collect(),
                full_text: full_text.term,
                full_text_fields: full_text.fields,
                offset: body.offset.unwrap_or(0),
            }
        }
    };
    let count = body.total_items.as_deref().is_none_or(|v| v == "include");
    page(&app, &caller, cursor, body.limit.unwrap_or(20), &body.fields, count).await
}

/// One page of a by-query answer: its items, its total (0 when not counted, as Backstage
/// answers), and cursors to the next and previous pages.
async fn page(
    app: &AppState,
    caller: &Caller,
    cursor: Cursor,
    limit: usize,
    fields: &[String],
    count: bool,
) -> Reply<Json<Value>> {
    let predicate = cursor.predicate()?;
    // Only a page in uid order, without a text filter, can come from the store's indexes.
    let plain = cursor.order.is_empty() && cursor.full_text.as_deref().is_none_or(|t| t.trim().is_empty());
    let indexed =
        if plain { app.backstage.indexed_page(&caller.actor, &predicate, cursor.offset, limit).await? } else { None };
    let (page, total) = match indexed {
        Some(found) => found,
        None => {
            let mut items = app.backstage.query(&caller.actor, &predicate).await?;
            full_text(&mut items, cursor.full_text.as_deref(), &cursor.full_text_fields);
            sort(&mut items, &cursor.order)?;
            let total = items.len();
            (
                app.backstage.complete(&predicate, items.into_iter().skip(cursor.offset).take(limit).collect()).await?,
                total,
            )
        }
    };
    let page_len = page.len();
    let page: Vec<Value> = page.iter().map(|e| select_fields(e, fields)).collect();
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
    Ok(Json(json!({"items": page, "pageInfo": page_info, "totalItems": if count { total } else { 0 }})))
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
    query: Option<Value>,
}

async fn by_refs(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Reply<Json<Value>> {
    let body: RefsBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not {{entityRefs, fields}}: {e}")))?;
    let mut predicate = Predicate::from_filters(&Params::read(raw).all("filter")).map_err(bad)?;
    if let Some(query) = &body.query {
        let query = Predicate::parse(query).map_err(|e| bad(format!("query: {e}")))?;
        predicate = Predicate::All(vec![predicate, query]);
    }
    let items = app.backstage.by_refs(&caller.actor, &body.entity_refs).await?;
    let items: Vec<Value> = items
        .iter()
        .map(|e| if e.is_null() || !predicate.matches(e) { Value::Null } else { select_fields(e, &body.fields) })
        .collect();
    Ok(Json(json!({"items": items})))
}

/// `GET /entity-facets`: for each facet, its values and how many entities have each.
async fn facets(State(app): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Reply<Json<Value>> {
    let params = Params::read(raw);
    let predicate = Predicate::from_filters(&params.all("filter")).map_err(bad)?;
    facet_counts(&app, &caller, &predicate, params.all("facet")).await
}

#[derive(Deserialize)]
struct FacetsBody {
    facets: Vec<String>,
    query: Option<Value>,
}

/// `POST /entity-facets`: the same counts, with a predicate body.
async fn facets_by_predicate(
    State(app): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Reply<Json<Value>> {
    let body: FacetsBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not {{facets, query}}: {e}")))?;
    let predicate = match &body.query {
        Some(query) => Predicate::parse(query).map_err(|e| bad(format!("query: {e}")))?,
        None => Predicate::All(Vec::new()),
    };
    facet_counts(&app, &caller, &predicate, body.facets).await
}

async fn facet_counts(
    app: &AppState,
    caller: &Caller,
    predicate: &Predicate,
    names: Vec<String>,
) -> Reply<Json<Value>> {
    let mut items: Option<Vec<Value>> = None;
    let mut facets = serde_json::Map::new();
    // Relations that point at an entity are only read when a facet asks for them.
    let with_reverse = names.iter().any(|f| f.to_lowercase().starts_with("relations"));
    for facet in names {
        let mut list = match app.backstage.facet_counts(&caller.actor, predicate, &facet).await? {
            Some(counts) => counts,
            None => {
                if items.is_none() {
                    let found = app.backstage.query(&caller.actor, predicate).await?;
                    items = Some(if with_reverse { app.backstage.complete(predicate, found).await? } else { found });
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
