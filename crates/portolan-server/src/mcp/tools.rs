//! The tools an assistant may call. Each reads or acts as the caller through the same services as
//! the API, so it sees and may do exactly what the caller may. Outputs are small by default (a
//! search returns identifiers and titles unless asked for more); approving a run is not a tool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::protocol::{RpcError, tool_result};
use crate::error::{Error, Result};
use crate::services::Actor;
use crate::services::runs::RunRequest;
use crate::services::search::{AggregateRequest, SearchRequest, project};
use crate::state::AppState;
use portolan_model::run::Run;
use portolan_store::query_sql::AggregateResult;
use tokio::sync::{Notify, mpsc};

/// What a tool call may report as it goes, and how it learns that its caller gave up.
pub struct Call {
    /// The request's progress token, and where its notifications go (an event stream).
    pub progress: Option<(Value, mpsc::UnboundedSender<Value>)>,
    pub cancelled: Arc<Notify>,
    pub gave_up: AtomicBool,
}

impl Call {
    pub fn new(progress: Option<(Value, mpsc::UnboundedSender<Value>)>, cancelled: Arc<Notify>) -> Self {
        Self { progress, cancelled, gave_up: AtomicBool::new(false) }
    }

    fn report(&self, step: u64, message: &str) {
        if let Some((token, sink)) = &self.progress {
            let _ = sink.send(super::protocol::progress(token, step, message));
        }
    }
}

/// Longest a tool waits for a run, and how often it looks.
const MAX_WAIT_SECONDS: u64 = 120;
const POLL: Duration = Duration::from_millis(250);

/// A tool's definition, as `tools/list` gives it.
fn tool(name: &str, title: &str, description: &str, properties: Value, required: &[&str], read_only: bool) -> Value {
    json!({
        "name": name,
        "title": title,
        "description": description,
        "inputSchema": {"type": "object", "properties": properties, "required": required, "additionalProperties": false},
        "annotations": {"title": title, "readOnlyHint": read_only, "destructiveHint": !read_only,
                        "idempotentHint": read_only, "openWorldHint": false},
    })
}

const QUERY: &str = "A rule group of the query language: {\"combinator\": \"and\"|\"or\", \"rules\": [{\"property\": \
    \"tier\", \"operator\": \"=\", \"value\": \"tier-1\"}, ...]}. Properties are a blueprint's, or $identifier, $title, \
    $team, $createdAt, $updatedAt; operators =, !=, >, >=, <, <=, in, contains, beginsWith, isEmpty, containsAny, \
    relatedTo.";

/// Every tool's definition, built once.
pub fn list() -> &'static [Value] {
    static TOOLS: std::sync::LazyLock<Vec<Value>> = std::sync::LazyLock::new(definitions);
    &TOOLS
}

fn definitions() -> Vec<Value> {
    let text = |description: &str| json!({"type": "string", "description": description});
    let query = json!({"type": "object", "description": QUERY});
    let form = json!({"type": "object", "description": "The action's inputs, by identifier (see list_actions)."});
    let wait = json!({"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0,
        "description": "Wait up to this long for the run to end, reporting each change of status as progress \
                        when the request has a progress token."});
    vec![
        tool(
            "describe_data_model",
            "Describe the data model",
            "The blueprints (kinds of entity: service, team, environment, ...), with their properties and relations.",
            json!({"blueprint": text("Only this blueprint.")}),
            &[],
            true,
        ),
        tool(
            "search_entities",
            "Search the catalog",
            "Entities a query selects that you may read: identifier, title, blueprint and teams, plus the fields asked for.",
            json!({
                "blueprint": text("Only this blueprint's entities."),
                "query": query,
                "fields": {"type": "array", "items": {"type": "string"},
                           "description": "More fields to return: properties, relations, scorecards, or one of them as properties.<name>."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                "cursor": text("The 'next' of the page before."),
            }),
            &[],
            true,
        ),
        tool(
            "count_entities",
            "Count entities",
            "How many entities a query selects that you may read, or how many per value of a property ($team, tier, ...).",
            json!({"blueprint": text("Only this blueprint's entities."), "query": query,
                   "groupBy": text("Count per value of this property instead.")}),
            &[],
            true,
        ),
        tool(
            "get_entity",
            "Get an entity",
            "One entity whole: properties, relations, owning teams and its scorecards' levels and rules.",
            json!({"blueprint": text("The entity's blueprint."), "identifier": text("The entity's identifier.")}),
            &["blueprint", "identifier"],
            true,
        ),
        tool(
            "list_actions",
            "List actions",
            "The self-service actions you may run, with their inputs (types, required fields, choices) and guardrails.",
            json!({"blueprint": text("Only actions on this blueprint's entities.")}),
            &[],
            true,
        ),
        tool(
            "dry_run_action",
            "Dry-run an action",
            "What running an action would do, without running it: whether it would start, wait for approval, or be \
             refused, and each guardrail's verdict (bounds, quotas, freezes, locks).",
            json!({"action": text("The action's identifier."), "entity": text("For DAY-2 and DELETE actions: the entity."),
                   "properties": form}),
            &["action"],
            true,
        ),
        tool(
            "run_action",
            "Run an action",
            "Starts a run as you, under the same permissions, approvals, quotas, bounds and freezes as the portal. A run \
             that needs approval waits (status WAITING_FOR_APPROVAL) until a person decides; follow it with get_run.",
            json!({"action": text("The action's identifier."), "entity": text("For DAY-2 and DELETE actions: the entity."),
                   "properties": form,
                   "overrideReason": text("Why a bound is gone past, when your role may override it."),
                   "waitSeconds": wait.clone()}),
            &["action"],
            false,
        ),
        tool(
            "get_run",
            "Track a run",
            "A run's status, links and summary, what it changed in the catalog, and its log lines.",
            json!({"run": text("The run's id."),
                   "afterSeq": {"type": "integer", "minimum": 0, "default": 0, "description": "Log lines after this one."},
                   "logLines": {"type": "integer", "minimum": 0, "maximum": 500, "default": 50},
                   "waitSeconds": wait}),
            &["run"],
            true,
        ),
        tool(
            "list_my_approvals",
            "List my approvals",
            "Runs waiting for your decision. Deciding stays with you, in the portal: no tool approves.",
            json!({}),
            &[],
            true,
        ),
    ]
}

/// Runs `tools/call`: an unknown tool is a protocol error; anything the tool itself refuses
/// (bad arguments, permissions, guardrails) is a result with `isError`, recorded in the audit log
/// with every other call. `None` when the caller cancelled the call (it gets no response).
pub async fn call(
    app: &AppState,
    actor: &Actor,
    params: &Value,
    call: &Call,
) -> Option<std::result::Result<Value, RpcError>> {
    let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
    if !list().iter().any(|t| t["name"] == name) {
        return Some(Err(RpcError::invalid_params(format!("Unknown tool: '{name}'"))));
    }
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(arguments) => arguments.clone(),
    };
    let outcome = run(app, actor, name, arguments, call).await;
    // A refusal (permissions) is recorded as denied; any other error the tool answered with is the
    // record's reason.
    let mut entry = actor.entry(app.core.now(), "mcp.call", "mcp_tool", name);
    match &outcome {
        Err(error) if error.denied => entry = entry.denied(error.message.clone()),
        Err(error) => entry.reason = Some(error.message.clone()),
        Ok(_) => {}
    }
    app.audit.record_apart(entry).await;
    if call.gave_up.load(Ordering::Relaxed) {
        return None;
    }
    Some(Ok(match outcome {
        Ok(value) => tool_result(value, false),
        Err(error) => super::tool_error(&error),
    }))
}

/// `run` again and again until it ends, `seconds` pass or the caller gives up; each change of
/// status is a step of progress.
async fn wait_for(
    app: &AppState,
    actor: &Actor,
    call: &Call,
    mut run: Run,
    WaitSeconds(seconds): WaitSeconds,
) -> Result<Run> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut step = 0;
    let mut reported = None;
    loop {
        if reported != Some(run.status) {
            step += 1;
            let status = serde_json::to_value(run.status).unwrap_or_default();
            call.report(step, status.as_str().unwrap_or_default());
            reported = Some(run.status);
        }
        if seconds == 0 || run.status.is_terminal() || tokio::time::Instant::now() >= deadline {
            return Ok(run);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + POLL)) => {}
            _ = call.cancelled.notified() => {
                call.gave_up.store(true, Ordering::Relaxed);
                return Ok(run);
            }
        }
        run = app.runs.get_run(actor, &run.id).await?.0;
    }
}

fn parse_arguments<T: DeserializeOwned>(value: Value) -> Result<T> {
    Ok(portolan_model::error::from_json(value)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfBlueprint {
    blueprint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArguments {
    blueprint: Option<String>,
    query: Option<Value>,
    #[serde(default)]
    fields: Vec<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CountArguments {
    blueprint: Option<String>,
    query: Option<Value>,
    group_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityAddress {
    blueprint: String,
    identifier: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RunAction {
    action: String,
    entity: Option<String>,
    #[serde(default)]
    properties: Map<String, Value>,
    override_reason: Option<String>,
    #[serde(default)]
    wait_seconds: WaitSeconds,
}

/// How long a tool waits for a run: checked with the other arguments, before a run starts.
#[derive(Default, Clone, Copy)]
struct WaitSeconds(u64);

impl<'de> Deserialize<'de> for WaitSeconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        match u64::deserialize(deserializer)? {
            seconds if seconds <= MAX_WAIT_SECONDS => Ok(WaitSeconds(seconds)),
            _ => Err(serde::de::Error::custom(format!("wait at most {MAX_WAIT_SECONDS} seconds"))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RunAddress {
    run: String,
    #[serde(default)]
    after_seq: i64,
    log_lines: Option<u32>,
    #[serde(default)]
    wait_seconds: WaitSeconds,
}

/// Most entities a search returns at once; the default is smaller still.
const MAX_SEARCH: u32 = 100;
const DEFAULT_SEARCH: u32 = 20;
/// What a search returns of each entity besides the fields asked for.
const BRIEF: [&str; 4] = ["identifier", "title", "blueprint", "team"];

async fn run(app: &AppState, actor: &Actor, name: &str, arguments: Value, call: &Call) -> Result<Value> {
    match name {
        "describe_data_model" => {
            let OfBlueprint { blueprint } = parse_arguments(arguments)?;
            let records = match &blueprint {
                Some(id) => vec![app.catalog.get_blueprint(id).await?],
                None => app.catalog.list_blueprints().await?,
            };
            let blueprints: Vec<Value> = records
                .into_iter()
                .map(|r| {
                    let b = serde_json::to_value(&r.blueprint).unwrap_or_default();
                    json!({"identifier": b["identifier"], "title": b["title"], "description": b["description"],
                           "properties": b["schema"]["properties"], "required": b["schema"]["required"],
                           "relations": b["relations"]})
                })
                .collect();
            Ok(json!({"blueprints": blueprints}))
        }
        "search_entities" => {
            let search: SearchArguments = parse_arguments(arguments)?;
            let limit = search.limit.unwrap_or(DEFAULT_SEARCH);
            if !(1..=MAX_SEARCH).contains(&limit) {
                return Err(Error::invalid_at("/limit", format!("limit must be between 1 and {MAX_SEARCH}")));
            }
            let include: Vec<String> = BRIEF.iter().map(|f| f.to_string()).chain(search.fields).collect();
            let request = SearchRequest {
                query: search.query,
                limit: Some(limit),
                cursor: search.cursor,
                ..SearchRequest::default()
            };
            let page = app.search.search(actor, search.blueprint.as_deref(), request).await?;
            let entities: Vec<Value> = page
                .entities
                .iter()
                .map(|e| project(serde_json::to_value(e).unwrap_or_default(), &include, &[]))
                .collect();
            Ok(json!({"entities": entities, "next": page.next}))
        }
        "count_entities" => {
            let count: CountArguments = parse_arguments(arguments)?;
            let function = if count.group_by.is_some() { "countBy" } else { "count" };
            let request = AggregateRequest {
                query: count.query,
                blueprint: count.blueprint,
                function: function.into(),
                property: count.group_by,
                ..AggregateRequest::default()
            };
            Ok(match app.search.aggregate(actor, request).await? {
                AggregateResult::Value(n) => json!({"count": n.unwrap_or(0.0) as u64}),
                AggregateResult::Groups(groups) => {
                    let groups: Vec<Value> = groups.into_iter().map(|(v, n)| json!({"value": v, "count": n})).collect();
                    json!({"groups": groups})
                }
            })
        }
        "get_entity" => {
            let EntityAddress { blueprint, identifier } = parse_arguments(arguments)?;
            let entity = app.catalog.get_entity(actor, &blueprint, &identifier).await?;
            Ok(json!({"entity": entity}))
        }
        "list_actions" => {
            let OfBlueprint { blueprint } = parse_arguments(arguments)?;
            let actions: Vec<Value> = app
                .actions
                .list_actions(actor, blueprint.as_deref())
                .await?
                .into_iter()
                .filter(|r| matches!(r.action.trigger, portolan_model::action::Trigger::SelfService { .. }))
                .map(|r| {
                    // How a run is carried out (URLs, templates) is the platform team's, not the
                    // assistant's business.
                    let a = serde_json::to_value(&r.action).unwrap_or_default();
                    json!({"identifier": a["identifier"], "title": a["title"], "description": a["description"],
                           "category": a["category"], "trigger": a["trigger"], "guardrails": a["guardrails"]})
                })
                .collect();
            Ok(json!({"actions": actions}))
        }
        "dry_run_action" => {
            let RunAction { action, entity, properties, override_reason, .. } = parse_arguments(arguments)?;
            let request = RunRequest { properties, entity, override_reason };
            let dry = app.runs.dry_run(actor, &action, request).await?;
            Ok(json!({"wouldStart": dry.would_start, "status": dry.status, "guardrails": dry.guardrails,
                      "renderError": dry.render_error}))
        }
        "run_action" => {
            let RunAction { action, entity, properties, override_reason, wait_seconds } = parse_arguments(arguments)?;
            let request = RunRequest { properties, entity, override_reason };
            let run = app.runs.create_run(actor, &action, request).await?;
            let run = wait_for(app, actor, call, run, wait_seconds).await?;
            Ok(json!({"run": brief_run(&run)}))
        }
        "get_run" => {
            let RunAddress { run: id, after_seq, log_lines, wait_seconds } = parse_arguments(arguments)?;
            let (run, _) = app.runs.get_run(actor, &id).await?;
            let run = wait_for(app, actor, call, run, wait_seconds).await?;
            let (run, changed) = app.runs.get_run(actor, &run.id).await?;
            let lines = log_lines.unwrap_or(50).min(500);
            let logs = match lines {
                0 => Vec::new(),
                n => app.runs.run_logs(actor, &id, after_seq, n).await?,
            };
            let changed: Vec<Value> = changed
                .into_iter()
                .map(|(e, change)| json!({"blueprint": e.blueprint, "identifier": e.identifier, "change": change}))
                .collect();
            Ok(json!({"run": brief_run(&run), "changed": changed, "logs": logs}))
        }
        "list_my_approvals" => {
            let _: Map<String, Value> = parse_arguments(arguments)?;
            let waiting: Vec<Value> = app.approvals.approval_inbox(actor).await?.iter().map(brief_run).collect();
            Ok(json!({"waitingForYou": waiting,
                      "decide": "in the portal, at /approvals: approving is a person's act, not an assistant's"}))
        }
        _ => Err(Error::not_found(format!("tool '{name}'"))),
    }
}

/// A run as an assistant needs it: no rendered payload (which a backend receives, not a person).
fn brief_run(run: &portolan_model::run::Run) -> Value {
    let whole = serde_json::to_value(run).unwrap_or_default();
    let keep = [
        "id",
        "action",
        "actionTitle",
        "blueprint",
        "entity",
        "status",
        "statusLabel",
        "links",
        "summary",
        "reason",
        "inputs",
        "approval",
        "createdBy",
        "createdAt",
        "updatedAt",
    ];
    Value::Object(
        whole
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}
