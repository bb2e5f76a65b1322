//! The integrations pages: every integration with its last pull, a form to add one (a webhook's
//! ingest URL is shown once), each webhook's event log, and the test-mapping page (a mapping and
//! a sample payload in, the entities or each problem by its JSON pointer out; nothing written),
//! and the Ocean integrations that report in through Port's API.

use portolan_model::integration::{EventState, Installation, IntegrationInput, IntegrationKind};
use portolan_model::manifest::read_documents;

use super::*;

/// What the page starts with: GitHub's `repository` event mapped to services.
const EXAMPLE_MAPPING: &str = r#"resources:
  - kind: repository
    selector:
      query: .item.archived | not
    port:
      itemsToParse: .repositories
      entity:
        mappings:
          identifier: .item.name
          title: .item.full_name
          blueprint: '"service"'
          properties:
            language: .item.language
            repository: .item.html_url
"#;

const EXAMPLE_PAYLOAD: &str = r#"{
  "action": "created",
  "repositories": [
    {"name": "cart-service", "full_name": "acme/cart-service", "html_url": "https://github.com/acme/cart-service", "language": "Rust", "archived": false},
    {"name": "legacy", "full_name": "acme/legacy", "html_url": "https://github.com/acme/legacy", "language": "Perl", "archived": false},
    {"name": "attic", "full_name": "acme/attic", "html_url": "https://github.com/acme/attic", "language": "Go", "archived": true}
  ]
}"#;

struct ItemRow {
    label: String,
    entity: String,
    problems: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "test_mapping.html")]
struct TestMappingPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    mapping: String,
    payload: String,
    /// Why the mapping or the payload could not be read, by pointer.
    errors: Vec<(String, String)>,
    items: Option<Vec<ItemRow>>,
}

#[derive(serde::Deserialize)]
pub(super) struct TestMappingForm {
    csrf: String,
    mapping: String,
    payload: String,
}

pub(super) async fn test_mapping_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let page = TestMappingPage {
        signed_in: layout_user(&app, &signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        mapping: EXAMPLE_MAPPING.into(),
        payload: EXAMPLE_PAYLOAD.into(),
        errors: Vec::new(),
        items: None,
    };
    Ok(render(&page))
}

pub(super) async fn run_test_mapping(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<TestMappingForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let mut errors = Vec::new();
    let mut items = None;
    match (read_one(&form.mapping, "/mapping"), read_one(&form.payload, "/payload")) {
        (Ok(mapping), Ok(payload)) => match app.integrations.test_mapping(&signed_in.actor, mapping, &payload).await {
            Ok(preview) => {
                let rows = preview
                    .items
                    .into_iter()
                    .map(|i| ItemRow {
                        label: format!(
                            "{} #{} ({})",
                            i.kind,
                            i.item,
                            serde_json::to_string(&i.operation).unwrap_or_default().trim_matches('"')
                        ),
                        entity: i
                            .entity
                            .map(|e| serde_json::to_string_pretty(&e).unwrap_or_default())
                            .unwrap_or_default(),
                        problems: i.problems.into_iter().map(|p| (p.path, p.message)).collect(),
                    })
                    .collect();
                items = Some(rows);
            }
            Err(err) => errors.extend(problems(err)),
        },
        (mapping, payload) => errors.extend(mapping.err().into_iter().chain(payload.err())),
    }
    let page = TestMappingPage {
        signed_in: layout_user(&app, &signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        mapping: form.mapping,
        payload: form.payload,
        errors,
        items,
    };
    Ok(render(&page))
}

/// One YAML or JSON document from a text box.
fn read_one(text: &str, field: &str) -> std::result::Result<serde_json::Value, (String, String)> {
    match read_documents(text) {
        Ok(mut documents) if documents.len() == 1 => Ok(documents.remove(0).value),
        Ok(documents) => Err((field.into(), format!("holds {} documents; give one", documents.len()))),
        Err(err) => Err((field.into(), format!("line {}: {}", err.line, err.message))),
    }
}

/// What the new-integration form starts with: a webhook for GitHub's push events.
const EXAMPLE_INTEGRATION: &str = r#"identifier: github-pushes
title: GitHub pushes
type: webhook
security:
  secret: github-webhook          # a secret stored under Administration
  requestIdentifierPath: .headers."x-github-delivery"
mapping:
  resources:
    - kind: push
      selector:
        query: .headers."x-github-event" == "push"
      port:
        entity:
          mappings:
            identifier: .body.repository.name
            title: .body.repository.full_name
            blueprint: '"service"'
            properties:
              repository: .body.repository.html_url
"#;

struct IntegrationRow {
    identifier: String,
    title: String,
    kind: String,
    state: String,
    synced: Option<present::When>,
    counts: String,
    error: String,
    problems: Vec<String>,
}

/// An Ocean integration, as the list shows it.
struct InstallationRow {
    id: String,
    app_type: String,
    version: String,
    state: String,
    synced: Option<present::When>,
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct IntegrationsPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    integrations: Vec<IntegrationRow>,
    installations: Vec<InstallationRow>,
    definition: String,
    errors: Vec<(String, String)>,
    /// An ingest URL just made: shown this once.
    ingest_url: Option<(String, String)>,
}

#[derive(serde::Deserialize)]
pub(super) struct NewIntegrationForm {
    csrf: String,
    definition: String,
}

pub(super) async fn integrations_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    integrations_view(&app, &signed_in, EXAMPLE_INTEGRATION.into(), Vec::new(), None).await
}

async fn integrations_view(
    app: &AppState,
    signed_in: &SessionActor,
    definition: String,
    errors: Vec<(String, String)>,
    ingest_url: Option<(String, String)>,
) -> PageResult {
    let now = app.core.now();
    let integrations = app
        .integrations
        .list(&signed_in.actor)
        .await?
        .into_iter()
        .map(|i| {
            let s = &i.status;
            let pulled = i.kind.is_pulled();
            IntegrationRow {
                kind: match i.kind.vendor() {
                    Some(vendor) => format!("{}, pulled", vendor.name()),
                    None if pulled => "REST, pulled".into(),
                    None => "webhook".into(),
                },
                state: if pulled { s.state.clone() } else { "receiving".into() },
                synced: s.synced_at.map(|at| present::When::new(at, now)),
                counts: match pulled && s.synced_at.is_some() {
                    true => format!(
                        "{} read: {} created, {} updated, {} unchanged, {} deleted, {} failed in {} ms",
                        s.fetched, s.created, s.updated, s.unchanged, s.deleted, s.failed, s.duration_ms
                    ),
                    false => String::new(),
                },
                error: s.error.clone().unwrap_or_default(),
                problems: s.problems.clone(),
                identifier: i.identifier,
                title: i.title,
            }
        })
        .collect();
    // Ocean integrations are admins'; others see none.
    let installations = match app.integrations.installations(&signed_in.actor).await {
        Ok(installations) => installations,
        Err(err) if err.code == ErrorCode::Forbidden => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    let installations = installations
        .iter()
        .map(|i| InstallationRow {
            id: i.id.clone(),
            app_type: i.app_type().unwrap_or_default().to_string(),
            version: i.version().unwrap_or_default().to_string(),
            state: resync_state(i),
            synced: i.resync_state.as_ref().map(|_| present::When::new(i.updated_at, now)),
        })
        .collect();
    let page = IntegrationsPage {
        signed_in: layout_user(app, signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        integrations,
        installations,
        definition,
        errors,
        ingest_url,
    };
    Ok(render(&page))
}

pub(super) async fn create_integration(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<NewIntegrationForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let created = match read_one(&form.definition, "") {
        Err(problem) => Err(vec![problem]),
        Ok(document) => match portolan_model::error::from_json::<IntegrationInput>(document) {
            Err(errors) => Err(errors.0.into_iter().map(|e| (e.path, e.message)).collect()),
            Ok(input) => app.integrations.create(&signed_in.actor, input).await.map_err(problems),
        },
    };
    match created {
        Ok(view) => {
            let shown = view.ingest_url.map(|url| (view.integration.identifier, url));
            integrations_view(&app, &signed_in, EXAMPLE_INTEGRATION.into(), Vec::new(), shown).await
        }
        Err(errors) => integrations_view(&app, &signed_in, form.definition, errors, None).await,
    }
}

pub(super) async fn sync_integration(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    Form(form): Form<super::admin::PlainForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    app.integrations.sync_now(&signed_in.actor, &id).await?;
    Ok(Redirect::to("/integrations").into_response())
}

pub(super) async fn rotate_key(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    Form(form): Form<super::admin::PlainForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let view = app.integrations.rotate_key(&signed_in.actor, &id).await?;
    let shown = view.ingest_url.map(|url| (id, url));
    integrations_view(&app, &signed_in, EXAMPLE_INTEGRATION.into(), Vec::new(), shown).await
}

struct EventRow {
    id: String,
    received: present::When,
    request_id: String,
    state: &'static str,
    items: Vec<String>,
    request: String,
}

#[derive(Template)]
#[template(path = "integration_events.html")]
struct EventsPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    identifier: String,
    title: String,
    webhook: bool,
    events: Vec<EventRow>,
    /// The next (older) page's `before`.
    next: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct EventsQuery {
    before: Option<String>,
}

pub(super) async fn events_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<EventsQuery>,
) -> PageResult {
    let integration = app.integrations.get(&signed_in.actor, &id).await?;
    let events = app.integrations.events(&signed_in.actor, &id, query.before.as_deref(), PAGE_SIZE).await?;
    let now = app.core.now();
    let next = (events.len() as u32 == PAGE_SIZE).then(|| events.last().map(|e| e.id.clone())).flatten();
    let events = events
        .into_iter()
        .map(|e| EventRow {
            received: present::When::new(e.received_at, now),
            request_id: e.request_id.unwrap_or_default(),
            state: match e.state {
                EventState::Pending => "pending",
                EventState::Done => "done",
                EventState::Partial => "partial",
                EventState::Failed => "failed",
                EventState::Ignored => "ignored",
            },
            items: e
                .items
                .iter()
                .map(|i| {
                    let entity =
                        format!("{}/{}", i.blueprint.as_deref().unwrap_or("?"), i.identifier.as_deref().unwrap_or("?"));
                    match (&i.error, &i.path) {
                        (Some(error), Some(path)) => format!("{entity} failed: {path}: {error}"),
                        (Some(error), None) => format!("{entity} failed: {error}"),
                        _ => format!("{entity} {}", i.result),
                    }
                })
                .collect(),
            request: serde_json::to_string_pretty(&e.request).unwrap_or_default(),
            id: e.id,
        })
        .collect();
    let page = EventsPage {
        signed_in: layout_user(&app, &signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        identifier: integration.identifier,
        title: integration.title,
        webhook: integration.kind == IntegrationKind::Webhook,
        events,
        next,
    };
    Ok(render(&page))
}

/// An error as the form shows it: each detail by its pointer, or the message.
fn problems(err: Error) -> Vec<(String, String)> {
    if err.details.is_empty() {
        return vec![(String::new(), err.message)];
    }
    err.details
        .iter()
        .map(|d| {
            (d["path"].as_str().unwrap_or_default().to_string(), d["message"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// An installation's last reported sync state (`completed`, `failed`, `running`, ...).
fn resync_state(installation: &Installation) -> String {
    let state = installation.resync_state.as_ref().and_then(|s| s["status"].as_str());
    state.unwrap_or("not synced yet").to_string()
}

struct LogRow {
    at: String,
    level: String,
    message: String,
}

#[derive(Template)]
#[template(path = "installation.html")]
struct InstallationPage {
    signed_in: Option<SignedIn>,
    id: String,
    app_type: String,
    version: String,
    state: String,
    updated: present::When,
    kinds: Vec<portolan_model::integration::installation::KindSync>,
    /// The mapping (Port's app config) as YAML.
    config: String,
    /// Each kind's example raw items, as JSON.
    examples: Vec<(String, String)>,
    /// Newest first.
    logs: Vec<LogRow>,
}

/// An Ocean integration: its mapping, each kind's last sync, example items and latest log lines.
pub(super) async fn installation_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    PathParams(id): PathParams<String>,
) -> PageResult {
    let installation = app.integrations.installation(&signed_in.actor, &id).await?;
    let text = |value: &serde_json::Value| value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
    let page = InstallationPage {
        signed_in: layout_user(&app, &signed_in).await,
        app_type: installation.app_type().unwrap_or_default().to_string(),
        version: installation.version().unwrap_or_default().to_string(),
        state: resync_state(&installation),
        updated: present::When::new(installation.updated_at, app.core.now()),
        kinds: installation.kind_syncs(),
        config: installation
            .fields
            .get("config")
            .map(|config| serde_saphyr::to_string(config).unwrap_or_else(|_| config.to_string()))
            .unwrap_or_default(),
        examples: installation
            .examples
            .iter()
            .map(|(kind, items)| (kind.clone(), serde_json::to_string_pretty(items).unwrap_or_default()))
            .collect(),
        logs: installation
            .logs
            .iter()
            .rev()
            .map(|line| LogRow {
                at: text(&line["timestamp"]),
                level: text(&line["level"]),
                message: text(&line["message"]),
            })
            .collect(),
        id: installation.id,
    };
    Ok(render(&page))
}
