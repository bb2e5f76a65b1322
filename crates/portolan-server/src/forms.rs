//! An action's form as a person fills it in, in the portal or in a Slack modal: its inputs in
//! steps, each with its type, choices, limits and whether it applies for what is filled in so
//! far, and its guardrails in words.

use portolan_model::PropertyType;
use portolan_model::action::{InputFormat, Operation, Trigger};
use portolan_model::blueprint::number_from_text;
use serde_json::Value;

use crate::error::Error;
use crate::services::Actor;
use crate::services::search::SearchRequest;
use crate::state::AppState;

/// An action's form.
#[derive(Debug, Clone)]
pub struct ActionForm {
    pub identifier: String,
    pub title: String,
    /// Markdown.
    pub description: String,
    pub guardrails: Vec<Note>,
    /// Which entity a day-2 or delete action acts on.
    pub entity_picker: Option<EntityPicker>,
    pub sections: Vec<Section>,
    /// The action has safe-change bounds: who may go past them, giving a reason.
    pub override_role: Option<String>,
}

/// One of a list's choices.
#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// Entities to pick from: a list, or (when there are too many for one) a text field the browser
/// completes from the first of them.
#[derive(Debug, Clone)]
pub struct Picker {
    /// The identifier asked for (also when it is not among the options listed).
    pub value: String,
    pub options: Vec<Choice>,
    pub searchable: bool,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub label: String,
    /// Markdown.
    pub help: String,
    pub kind: &'static str,
    /// A number field's `step` (`1` for integers), `min` and `max`; empty when not set.
    pub step: &'static str,
    pub min: String,
    pub max: String,
    pub value: String,
    pub required: bool,
    pub options: Vec<Choice>,
    /// Entity inputs with more choices than a list holds: type to search.
    pub searchable: bool,
    /// Inputs to fill in first (space-separated).
    pub depends_on: String,
    pub hidden: bool,
    /// Shows its default and takes no value.
    pub disabled: bool,
    pub error: String,
}

/// A step of a form: its inputs under a title (the one untitled section when it has no steps).
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub struct EntityPicker {
    pub label: String,
    pub picker: Picker,
}

/// A guardrail as the form shows it: whether it stands in the way now.
#[derive(Debug, Clone)]
pub struct Note {
    pub text: String,
    pub blocks: bool,
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
        .map(|e| Choice {
            value: e.identifier.clone(),
            label: e.title.clone().unwrap_or_else(|| e.identifier.clone()),
            selected: e.identifier == selected,
        })
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
        let text = match &rule.when {
            Some(when) => format!("Needs approval from {who} before it runs when {when} holds."),
            None => format!("Needs approval from {who} before it runs."),
        };
        notes.push(Note { text, blocks: false });
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

/// An action's form for `actor`, filled with `values`, on `entity` (empty when none is chosen).
pub async fn action_form(
    app: &AppState,
    actor: &Actor,
    identifier: &str,
    values: &serde_json::Map<String, Value>,
    entity: &str,
) -> Result<ActionForm, Error> {
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
    Ok(ActionForm {
        identifier: action.identifier.clone(),
        title: action.title.clone().unwrap_or_else(|| action.identifier.clone()),
        description: action.description.clone().unwrap_or_default(),
        guardrails: guardrail_notes(app, actor, &action, on).await?,
        entity_picker,
        sections,
        override_role,
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
    let picked_from = picked_from(input);
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
        help: input.description.clone().unwrap_or_default(),
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

/// The form's values typed as the action's inputs say (`in.<name>` fields).
pub fn typed_inputs(
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

/// The blueprint whose entities an input picks from (an entity, a user or a team input).
pub fn picked_from(input: &portolan_model::action::UserInput) -> Option<String> {
    match input.format {
        Some(InputFormat::Entity) => input.blueprint.clone(),
        Some(InputFormat::User) => Some(portolan_model::system::USER.to_string()),
        Some(InputFormat::Team) => Some(portolan_model::system::TEAM.to_string()),
        _ => None,
    }
}

/// A value as a form field or a table cell shows it.
pub fn shown(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}
