//! The self-service hub, action forms, run pages and the approvals inbox.

use super::*;
use crate::forms::{self, EntityPicker, Field, Note, Section, typed_inputs};

// ---- self-service ----

struct ActionGroup {
    title: String,
    actions: Vec<present::ActionLink>,
}

#[derive(Template)]
#[template(path = "actions.html")]
struct ActionsPage {
    signed_in: Option<SignedIn>,
    groups: Vec<ActionGroup>,
}

/// Actions one may run, by category (or, without one, by blueprint), in the order defined.
pub(super) async fn actions_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let mut groups: Vec<ActionGroup> = Vec::new();
    for record in app.actions.list_actions(&signed_in.actor, None).await? {
        let action = record.action;
        if !matches!(action.trigger, Trigger::SelfService { .. }) {
            continue;
        }
        let group_title = action.category.clone().or_else(|| action.blueprint().map(str::to_string));
        let group_title = group_title.unwrap_or_else(|| "General".into());
        let link = present::ActionLink::from(action);
        match groups.iter_mut().find(|g| g.title == group_title) {
            Some(group) => group.actions.push(link),
            None => groups.push(ActionGroup { title: group_title, actions: vec![link] }),
        }
    }
    Ok(render(&ActionsPage { signed_in: layout_user(&app, &signed_in).await, groups }))
}

struct Preview {
    verdicts: Vec<Verdict>,
    /// What would be sent, as a readable list (HTML) and as JSON.
    rendered: String,
    raw: String,
    /// Why it could not be rendered.
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "action.html")]
struct ActionPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    identifier: String,
    title: String,
    description: String,
    guardrails: Vec<Note>,
    entity_picker: Option<EntityPicker>,
    sections: Vec<Section>,
    /// The action has safe-change bounds: who may go past them, giving a reason.
    override_role: Option<String>,
    override_reason: String,
    error: Option<String>,
    preview: Option<Preview>,
}

impl ActionPage {
    fn fields_mut(&mut self) -> impl Iterator<Item = &mut Field> {
        self.sections.iter_mut().flat_map(|s| s.fields.iter_mut())
    }
}

/// The action's form as the portal shows it (markdown drawn as HTML).
async fn action_form(
    app: &AppState,
    signed_in: &SessionActor,
    identifier: &str,
    values: &serde_json::Map<String, Value>,
    entity: &str,
) -> Result<ActionPage, Error> {
    let form = forms::action_form(app, &signed_in.actor, identifier, values, entity).await?;
    let mut page = ActionPage {
        signed_in: layout_user(app, signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        identifier: form.identifier,
        title: form.title,
        description: present::inline_markdown(&form.description),
        guardrails: form.guardrails,
        entity_picker: form.entity_picker,
        sections: form.sections,
        override_role: form.override_role,
        override_reason: String::new(),
        error: None,
        preview: None,
    };
    for field in page.fields_mut() {
        field.help = present::inline_markdown(&field.help);
    }
    Ok(page)
}

#[derive(Deserialize)]
pub struct ActionQuery {
    entity: Option<String>,
    /// A run to start again: its inputs fill the form.
    rerun: Option<String>,
}

pub(super) async fn action_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    PathParams(identifier): PathParams<String>,
    QueryParams(query): QueryParams<ActionQuery>,
) -> PageResult {
    let (values, entity) = match &query.rerun {
        Some(run) => {
            let (run, _) = app.runs.get_run(&signed_in.actor, run).await?;
            (run.inputs.clone(), run.entity.clone().unwrap_or_default())
        }
        None => (serde_json::Map::new(), query.entity.unwrap_or_default()),
    };
    let page = action_form(&app, &signed_in, &identifier, &values, &entity).await?;
    Ok(render(&page))
}

pub(super) async fn run_action(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(identifier): PathParams<String>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> PageResult {
    check_form(&headers, &signed_in, form.get("csrf").map(String::as_str).unwrap_or(""))?;
    let action = app.actions.get_action(&signed_in.actor, &identifier).await?.action;
    let Trigger::SelfService { user_inputs, .. } = &action.trigger else {
        return Err(Error::not_found(format!("action '{identifier}'")).into());
    };
    let properties = typed_inputs(user_inputs, &form);
    let entity = form.get("entity").cloned().filter(|e| !e.is_empty());
    let override_reason = form.get("override_reason").map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    let request = || RunRequest {
        properties: properties.clone(),
        entity: entity.clone(),
        override_reason: override_reason.clone(),
    };
    let mut page = action_form(&app, &signed_in, &identifier, &properties, entity.as_deref().unwrap_or("")).await?;
    page.override_reason = override_reason.clone().unwrap_or_default();
    if form.get("mode").map(String::as_str) == Some("dry") {
        match app.runs.dry_run(&signed_in.actor, &identifier, request()).await {
            Ok(dry) => {
                page.preview = Some(Preview {
                    verdicts: dry.guardrails,
                    rendered: dry.rendered.as_ref().map(present::value_html).unwrap_or_default(),
                    raw: dry.rendered.as_ref().map(raw_json).unwrap_or_default(),
                    problem: dry.render_error,
                });
            }
            Err(error) => explain(&mut page, error),
        }
        return Ok(render(&page));
    }
    match app.runs.create_run(&signed_in.actor, &identifier, request()).await {
        Ok(run) => Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response()),
        Err(error) => {
            let status = error.code.status();
            explain(&mut page, error);
            Ok((status, render(&page)).into_response())
        }
    }
}

/// Which of the form's inputs apply, for what is filled in so far: `{"visible": {name: bool},
/// "disabled": {name: bool}, "defaults": {name: value}}` for the form's script.
pub(super) async fn form_state(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(identifier): PathParams<String>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> PageResult {
    check_form(&headers, &signed_in, form.get("csrf").map(String::as_str).unwrap_or(""))?;
    let actor = &signed_in.actor;
    let action = app.actions.get_action(actor, &identifier).await?.action;
    let Trigger::SelfService { user_inputs, .. } = &action.trigger else {
        return Err(Error::not_found(format!("action '{identifier}'")).into());
    };
    let properties = typed_inputs(user_inputs, &form);
    let entity = form.get("entity").map(String::as_str).filter(|e| !e.is_empty());
    let state = app.runs.form_state(actor, &identifier, &properties, entity).await?;
    let each = |f: &dyn Fn(&str) -> bool| -> serde_json::Map<String, Value> {
        user_inputs.properties.keys().map(|name| (name.clone(), Value::from(f(name)))).collect()
    };
    let visible = each(&|name| user_inputs.shown(name, &state));
    let disabled = each(&|name| user_inputs.disabled(name, &state));
    Ok(axum::Json(json!({"visible": visible, "disabled": disabled, "defaults": state.defaults})).into_response())
}

/// Puts a refusal on the form: each field's own message beside it, the rest at the top.
fn explain(page: &mut ActionPage, error: Error) {
    for detail in &error.details {
        let path = detail["path"].as_str().unwrap_or_default();
        if let Some(field) = page.fields_mut().find(|f| path == format!("/properties/{}", f.name)) {
            field.error = detail["message"].as_str().unwrap_or_default().to_string();
        }
    }
    page.error = Some(error.message);
}

// ---- runs and approvals ----

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    id: String,
    action: String,
    status: present::Badge,
    by: String,
    at: present::When,
    /// How long it took, once it ended.
    took: Option<String>,
    /// When a run waiting for approval stops waiting.
    expires: Option<present::When>,
    blueprint: String,
    entity: Option<String>,
    reason: Option<String>,
    summary: Option<String>,
    /// Where the run points: the portal's own page for what it can show, and the text shown.
    links: Vec<(String, String)>,
    may_decide: bool,
    may_cancel: bool,
    /// The action's identifier, for starting it again with the same inputs.
    action_id: String,
    /// The inputs as a readable list (HTML) and as JSON.
    inputs: String,
    inputs_raw: String,
    /// Entities the run created, changed or deleted: blueprint, identifier, how.
    affected: Vec<(String, String, String)>,
    /// Each decision in words, and when.
    decisions: Vec<(String, present::When)>,
    logs: Vec<String>,
    /// The last log line shown, where the live stream goes on from.
    last_log: i64,
    ended: bool,
}

pub(super) async fn run_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    PathParams(id): PathParams<String>,
) -> PageResult {
    let actor = &signed_in.actor;
    let (run, affected) = app.runs.get_run(actor, &id).await?;
    let now = app.core.now();
    let logs = app.runs.run_logs(actor, &id, 0, 500).await?;
    let may_decide = run.status == portolan_model::run::RunStatus::WaitingForApproval
        && app.permissions.may_decide_on(actor, &run).await?;
    let decisions = run
        .approval
        .iter()
        .flat_map(|a| a.decisions.iter())
        .map(|d| {
            let said = d.comment.clone().filter(|c| !c.is_empty()).map(|c| format!(": {c}")).unwrap_or_default();
            let what = match d.decision {
                Decision::Approve => "Approved",
                Decision::Decline => "Declined",
            };
            (format!("{what} by {}{said}", d.by), present::When::new(d.at, now))
        })
        .collect();
    let waiting = run.status == portolan_model::run::RunStatus::WaitingForApproval;
    let page = RunPage {
        signed_in: layout_user(&app, &signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        action: run.action_title.clone().unwrap_or_else(|| run.action.clone()),
        status: present::Badge::of(run.status),
        by: run.trigger.by.clone(),
        at: present::When::new(run.created_at, now),
        took: run.ended_at.map(|end| present::duration(end - run.created_at)),
        expires: run.approval.as_ref().filter(|_| waiting).map(|a| present::When::new(a.expires_at, now)),
        blueprint: run.blueprint.clone().unwrap_or_default(),
        entity: run.entity.clone(),
        reason: run.reason.clone(),
        summary: run.summary.clone(),
        links: run.links.iter().map(|l| run_link(l)).collect(),
        may_decide,
        may_cancel: waiting && (run.trigger.by == actor.id || actor.as_user().is_some_and(|u| u.is_admin())),
        action_id: run.action.clone(),
        inputs: inputs_html(&app, actor, &run).await,
        inputs_raw: raw_json(&run.inputs),
        affected: affected.into_iter().map(|(e, change)| (e.blueprint, e.identifier, change)).collect(),
        decisions,
        logs: logs
            .iter()
            .map(|l| format!("{} [{}] {}", portolan_model::format_millis(l.at), l.stream, l.message))
            .collect(),
        last_log: logs.last().map_or(0, |l| l.seq),
        ended: run.status.is_terminal(),
        id: run.id,
    };
    Ok(render(&page))
}

/// A run's inputs as a list, each by the title its action gives it (by name when the action is
/// gone or not the viewer's to read).
async fn inputs_html(app: &AppState, actor: &Actor, run: &Run) -> String {
    let titles: std::collections::HashMap<String, String> = match app.actions.get_action(actor, &run.action).await {
        Ok(record) => match record.action.trigger {
            Trigger::SelfService { user_inputs, .. } => user_inputs
                .properties
                .into_iter()
                .filter_map(|(name, input)| input.title.map(|title| (name, title)))
                .collect(),
            _ => Default::default(),
        },
        Err(_) => Default::default(),
    };
    present::key_values_titled(&run.inputs, &|key| titles.get(key).cloned().unwrap_or_else(|| key.to_string()))
}

/// A link a run gave, as its page shows it: the portal's own page where there is one (labelled by
/// its path), else the link itself.
fn run_link(link: &str) -> (String, String) {
    let href = present::portal_link(link);
    let label = if href == link { link.to_string() } else { href.clone() };
    (href, label)
}

#[derive(Deserialize)]
pub struct DecisionForm {
    csrf: String,
    decision: String,
    comment: Option<String>,
}

pub(super) async fn decide(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    Form(form): Form<DecisionForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let decision = match form.decision.as_str() {
        "APPROVE" => Decision::Approve,
        "DECLINE" => Decision::Decline,
        other => {
            return Err(Error::invalid_at("/decision", format!("'{other}' is not APPROVE or DECLINE")).into());
        }
    };
    let comment = form.comment.filter(|c| !c.trim().is_empty());
    app.approvals.decide_run(&signed_in.actor, &id, decision, comment).await?;
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct CancelForm {
    csrf: String,
}

pub(super) async fn cancel(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    Form(form): Form<CancelForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    app.approvals.cancel_run(&signed_in.actor, &id).await?;
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

struct WaitingRun {
    run: present::RunRow,
    /// The inputs as a readable list (HTML) and as JSON.
    inputs: String,
    inputs_raw: String,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    runs: Vec<WaitingRun>,
}

pub(super) async fn approvals_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let now = app.core.now();
    let mut runs = Vec::new();
    for run in app.approvals.approval_inbox(&signed_in.actor).await? {
        runs.push(WaitingRun {
            run: present::RunRow::new(&run, now),
            inputs: inputs_html(&app, &signed_in.actor, &run).await,
            inputs_raw: raw_json(&run.inputs),
        });
    }
    Ok(render(&ApprovalsPage {
        signed_in: layout_user(&app, &signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        runs,
    }))
}
