//! The self-service hub, action forms, run pages and the approvals inbox.

use super::*;

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

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// Entities to pick from: a list, or (when there are too many for one) a text field the browser
/// completes from the first of them.
struct Picker {
    /// The identifier asked for (also when it is not among the options listed).
    value: String,
    options: Vec<Choice>,
    searchable: bool,
}

struct Field {
    name: String,
    label: String,
    help: String,
    kind: &'static str,
    /// A number field's `step` (`1` for integers), `min` and `max`; empty when not set.
    step: &'static str,
    min: String,
    max: String,
    value: String,
    required: bool,
    options: Vec<Choice>,
    /// Entity inputs with more choices than a list holds: type to search.
    searchable: bool,
    /// Inputs to fill in first (space-separated).
    depends_on: String,
    hidden: bool,
    /// Shows its default and takes no value.
    disabled: bool,
    error: String,
}

/// A step of a form: its inputs under a title (the one untitled section when it has no steps).
struct Section {
    title: String,
    fields: Vec<Field>,
}

struct EntityPicker {
    label: String,
    picker: Picker,
}

struct Preview {
    verdicts: Vec<Verdict>,
    /// What would be sent, as a readable list (HTML) and as JSON.
    rendered: String,
    raw: String,
    /// Why it could not be rendered.
    problem: Option<String>,
}

/// A guardrail as the form shows it: whether it stands in the way now.
struct Note {
    text: String,
    blocks: bool,
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

/// Most entities a picker lists; with more, it becomes a field to type in.
const PICKER_SIZE: u32 = 200;

/// Entities of `blueprint` the user may read, as choices.
async fn picker(app: &AppState, actor: &Actor, blueprint: &str, selected: &str) -> Result<Picker, Error> {
    let request = SearchRequest { limit: Some(PICKER_SIZE), ..SearchRequest::default() };
    let page = app.search.search(actor, Some(blueprint), request).await?;
    let options = page
        .entities
        .iter()
        .map(|e| Choice { value: e.identifier.clone(), label: title_of(e), selected: e.identifier == selected })
        .collect();
    Ok(Picker { value: selected.to_string(), options, searchable: page.next.is_some() })
}

/// What a person should know before running an action, in words: who must approve, what must
/// hold, and where they stand now with its quotas, limits, freezes and locks.
async fn guardrail_notes(
    app: &AppState,
    actor: &Actor,
    action: &portolan_model::action::Action,
    entity: Option<(&str, &str)>,
) -> Result<Vec<Note>, Error> {
    let mut notes = Vec::new();
    if let Some(rule) = action.approval() {
        let who = rule
            .approvers
            .as_ref()
            .map(|a| {
                [&a.users, &a.teams, &a.roles].iter().flat_map(|l| l.iter()).cloned().collect::<Vec<_>>().join(", ")
            })
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "an approver".into());
        notes.push(Note { text: format!("Needs approval from {who} before it runs."), blocks: false });
    }
    notes.extend(
        action
            .guardrails
            .preconditions
            .iter()
            .map(|p| Note { text: format!("Only when: {}.", p.title), blocks: false }),
    );
    for verdict in app.guardrails.standing(actor, action, entity).await? {
        let mut text = verdict.message;
        if let Some(first) = text.get(..1) {
            text = format!("{}{}.", first.to_uppercase(), &text[1..]);
        }
        notes.push(Note { text, blocks: !verdict.passed });
    }
    Ok(notes)
}

async fn action_form(
    app: &AppState,
    signed_in: &SessionActor,
    identifier: &str,
    values: &serde_json::Map<String, Value>,
    entity: &str,
) -> Result<ActionPage, Error> {
    let actor = &signed_in.actor;
    let action = app.actions.get_action(actor, identifier).await?.action;
    let Trigger::SelfService { user_inputs, operation, blueprint_identifier, .. } = &action.trigger else {
        return Err(Error::not_found(format!("action '{identifier}'")));
    };
    let on_entity = matches!(operation, Operation::Day2 | Operation::Delete);
    let entity_picker = match (on_entity, blueprint_identifier) {
        (true, Some(blueprint)) => Some(EntityPicker {
            label: format!("Which {blueprint}"),
            picker: picker(app, actor, blueprint, entity).await?,
        }),
        _ => None,
    };
    let mut steps: Vec<(String, Vec<String>)> =
        user_inputs.steps.iter().map(|s| (s.title.clone(), s.order.clone())).collect();
    // Inputs no step names come first, in their own order.
    let mut rest: Vec<String> = user_inputs.order.clone();
    rest.extend(user_inputs.properties.keys().cloned());
    rest.retain(|n| !steps.iter().any(|(_, order)| order.contains(n)));
    steps.insert(0, (String::new(), rest));
    let state = app.runs.form_state(actor, identifier, values, Some(entity).filter(|e| !e.is_empty())).await?;
    let mut seen = std::collections::HashSet::new();
    let mut sections = Vec::new();
    for (title, mut names) in steps {
        names.retain(|n| user_inputs.properties.contains_key(n) && seen.insert(n.clone()));
        let mut fields = Vec::new();
        for name in names {
            fields.push(form_field(app, actor, user_inputs, &state, name, values).await?);
        }
        if !fields.is_empty() || !title.is_empty() {
            sections.push(Section { title, fields });
        }
    }
    let override_role = action
        .guardrails
        .bounds
        .iter()
        .find_map(|b| b.override_role.clone())
        .or_else(|| (!action.guardrails.bounds.is_empty()).then(String::new));
    // Limits per entity are told only about an entity the user may read.
    let readable = match (blueprint_identifier, on_entity && !entity.is_empty()) {
        (Some(blueprint), true) => app.catalog.get_entity(actor, blueprint, entity).await.is_ok(),
        _ => false,
    };
    let on = blueprint_identifier.as_deref().zip(Some(entity).filter(|_| readable));
    Ok(ActionPage {
        signed_in: layout_user(app, signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        identifier: action.identifier.clone(),
        title: action.title.clone().unwrap_or_else(|| action.identifier.clone()),
        description: action.description.as_deref().map(present::inline_markdown).unwrap_or_default(),
        guardrails: guardrail_notes(app, actor, &action, on).await?,
        entity_picker,
        sections,
        override_role,
        override_reason: String::new(),
        error: None,
        preview: None,
    })
}

async fn form_field(
    app: &AppState,
    actor: &Actor,
    user_inputs: &portolan_model::action::UserInputs,
    state: &portolan_model::action::FormState,
    name: String,
    values: &serde_json::Map<String, Value>,
) -> Result<Field, Error> {
    let input = &user_inputs.properties[&name];
    // A default computed by jq is the server's to fill in; the field starts empty.
    let literal_default = input.default.as_ref().filter(|d| d.get("jqQuery").is_none());
    let value = values.get(&name).or(literal_default).map(shown).unwrap_or_default();
    let picked_from = match input.format {
        Some(InputFormat::Entity) => input.blueprint.clone(),
        Some(InputFormat::User) => Some(portolan_model::system::USER.to_string()),
        Some(InputFormat::Team) => Some(portolan_model::system::TEAM.to_string()),
        _ => None,
    };
    // Choices a jq expression computes are those for the form as it starts.
    let choices = input.enum_values.as_ref().map(|e| match e.jq() {
        Some(_) => state.enums.get(&name).and_then(Value::as_array).cloned().unwrap_or_default(),
        None => e.list().to_vec(),
    });
    let (options, searchable) = match (&choices, picked_from) {
        (Some(values), _) => {
            let options = values
                .iter()
                .map(|v| Choice { value: shown(v), label: shown(v), selected: shown(v) == value })
                .collect();
            (options, false)
        }
        (None, Some(blueprint)) => {
            let picker = picker(app, actor, &blueprint, &value).await?;
            (picker.options, picker.searchable)
        }
        (None, None) => (Vec::new(), false),
    };
    let kind = match (input.kind, input.format) {
        (PropertyType::Boolean, _) => "checkbox",
        (PropertyType::Number | PropertyType::Integer, _) => "number",
        (_, Some(InputFormat::Markdown | InputFormat::Yaml | InputFormat::MultiLine)) | (PropertyType::Array, _) => {
            "textarea"
        }
        (_, Some(InputFormat::Email)) => "email",
        (_, Some(InputFormat::Url)) => "url",
        // Encrypted when the run is requested: not shown as it is typed either.
        _ if input.encryption.is_some() => "password",
        _ => "text",
    };
    let step = match input.kind {
        PropertyType::Integer => "1",
        PropertyType::Number => "any",
        _ => "",
    };
    let limit = |bound: Option<f64>| bound.map(|b| b.to_string()).unwrap_or_default();
    Ok(Field {
        step,
        min: limit(input.minimum),
        max: limit(input.maximum),
        label: input.title.clone().unwrap_or_else(|| name.clone()),
        help: input.description.as_deref().map(present::inline_markdown).unwrap_or_default(),
        required: user_inputs.required(&name, state),
        depends_on: input.depends_on.join(" "),
        hidden: !user_inputs.shown(&name, state),
        disabled: user_inputs.disabled(&name, state),
        name,
        kind,
        value,
        options,
        searchable,
        error: String::new(),
    })
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

/// The form's values typed as the action's inputs say (`in.<name>` fields).
fn typed_inputs(
    inputs: &portolan_model::action::UserInputs,
    form: &std::collections::HashMap<String, String>,
) -> serde_json::Map<String, Value> {
    let mut values = serde_json::Map::new();
    for (name, input) in &inputs.properties {
        let raw = form.get(&format!("in.{name}")).map(|v| v.trim().to_string());
        let value = match (input.kind, raw) {
            (PropertyType::Boolean, raw) => Value::Bool(raw.as_deref() == Some("true")),
            (_, None) => continue,
            (_, Some(raw)) if raw.is_empty() => continue,
            // Only a finite number is a number, and `7` stays 7 (not 7.0); anything else goes on
            // as text, for validation to refuse.
            (PropertyType::Number | PropertyType::Integer, Some(raw)) => {
                number_from_text(&raw).unwrap_or(Value::String(raw))
            }
            (PropertyType::Array, Some(raw)) => {
                Value::Array(raw.split([',', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(Value::from).collect())
            }
            (_, Some(raw)) => Value::String(raw),
        };
        values.insert(name.clone(), value);
    }
    values
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
