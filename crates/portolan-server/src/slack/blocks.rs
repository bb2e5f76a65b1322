//! What the app shows in Slack, in Block Kit: an action's form as a modal (the portal's own form
//! definition), search results, approval requests and run updates; and a modal's submitted
//! values read back. Slack's limits (title 24 characters, 100 blocks, 100 options, ...) are kept
//! here, so that Slack never refuses a view for its size.

use std::collections::HashMap;

use portolan_model::Entity;
use portolan_model::run::{Run, RunStatus};
use portolan_model::slack::{clip, escape, link};
use serde_json::{Value, json};

use crate::forms::{ActionForm, Choice, Field};

/// The modal that runs an action.
pub const RUN_CALLBACK: &str = "run";
/// The modal that approves or declines a run, with a comment.
pub const APPROVAL_CALLBACK: &str = "approval";
/// The block of an action's entity picker; each input's block is `in.<name>`.
pub const ENTITY_BLOCK: &str = "entity";
pub const COMMENT_BLOCK: &str = "comment";
pub const APPROVE: &str = "approval.approve";
pub const DECLINE: &str = "approval.decline";
/// Most blocks in a modal or message (Slack's limit).
const MAX_BLOCKS: usize = 100;
/// Most options in a select (Slack's limit); with more, the select asks as the person types.
pub const MAX_OPTIONS: usize = 100;

fn plain(text: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": clip(text, max), "emoji": true})
}

fn mrkdwn(text: &str) -> Value {
    json!({"type": "mrkdwn", "text": clip(text, 3000)})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": mrkdwn(text)})
}

fn option(value: &str, label: &str) -> Value {
    json!({"text": plain(if label.is_empty() { value } else { label }, 75), "value": clip(value, 150)})
}

/// Options for a select from a form's choices (at most [`MAX_OPTIONS`]).
pub fn options(choices: &[Choice]) -> Vec<Value> {
    choices.iter().take(MAX_OPTIONS).map(|c| option(&c.value, &c.label)).collect()
}

/// Options for a select from entities.
pub fn entity_options(entities: &[Entity]) -> Vec<Value> {
    entities
        .iter()
        .take(MAX_OPTIONS)
        .map(|e| option(&e.identifier, e.title.as_deref().unwrap_or(&e.identifier)))
        .collect()
}

/// A select of `choices`, or one that asks Slack's options URL as the person types when there
/// are more than a Slack list holds.
fn select(action_id: &str, choices: &[Choice], searchable: bool, value: &str) -> Value {
    let mut element = if searchable || choices.len() > MAX_OPTIONS {
        json!({"type": "external_select", "action_id": action_id, "min_query_length": 1})
    } else {
        json!({"type": "static_select", "action_id": action_id, "options": options(choices)})
    };
    if !value.is_empty() {
        let label = choices.iter().find(|c| c.value == value).map(|c| c.label.as_str()).unwrap_or(value);
        element["initial_option"] = option(value, label);
    }
    element
}

fn input_element(field: &Field) -> Value {
    let action_id = format!("in.{}", field.name);
    if !field.options.is_empty() || field.searchable {
        return select(&action_id, &field.options, field.searchable, &field.value);
    }
    let mut element = match field.kind {
        "checkbox" => {
            let mut element =
                json!({"type": "checkboxes", "action_id": action_id, "options": [option("true", &field.label)]});
            if field.value == "true" {
                element["initial_options"] = json!([option("true", &field.label)]);
            }
            return element;
        }
        "number" => {
            let mut element = json!({"type": "number_input", "action_id": action_id,
                "is_decimal_allowed": field.step != "1"});
            if !field.min.is_empty() {
                element["min_value"] = json!(field.min);
            }
            if !field.max.is_empty() {
                element["max_value"] = json!(field.max);
            }
            element
        }
        "textarea" => json!({"type": "plain_text_input", "action_id": action_id, "multiline": true}),
        "email" => json!({"type": "email_text_input", "action_id": action_id}),
        "url" => json!({"type": "url_text_input", "action_id": action_id}),
        _ => json!({"type": "plain_text_input", "action_id": action_id}),
    };
    if !field.value.is_empty() {
        element["initial_value"] = json!(clip(&field.value, 3000));
    }
    element
}

fn input_block(field: &Field) -> Value {
    let mut hint = field.help.clone();
    if field.kind == "password" {
        hint = format!("{hint} Kept encrypted once sent; Slack shows it as it is typed.").trim().to_string();
    }
    let mut block = json!({
        "type": "input",
        "block_id": format!("in.{}", field.name),
        "label": plain(&field.label, 2000),
        "optional": !field.required || field.kind == "checkbox",
        "element": input_element(field),
    });
    if !hint.is_empty() {
        block["hint"] = plain(&hint, 2000);
    }
    block
}

/// An action's form as a modal: its description, its guardrails in words, the entity picker
/// and each input that applies (as the form starts), step by step.
pub fn run_modal(form: &ActionForm, form_url: &str, metadata: &str) -> Value {
    let mut blocks = Vec::new();
    if !form.description.is_empty() {
        blocks.push(section(&form.description));
    }
    for notes in form.guardrails.chunks(10) {
        let elements: Vec<Value> = notes
            .iter()
            .map(|n| mrkdwn(&format!("{} {}", if n.blocks { ":no_entry:" } else { ":shield:" }, escape(&n.text))))
            .collect();
        blocks.push(json!({"type": "context", "elements": elements}));
    }
    if let Some(picker) = &form.entity_picker {
        blocks.push(json!({
            "type": "input",
            "block_id": ENTITY_BLOCK,
            "label": plain(&picker.label, 2000),
            "element": select(ENTITY_BLOCK, &picker.picker.options, picker.picker.searchable, &picker.picker.value),
        }));
    }
    for section in &form.sections {
        let fields: Vec<&Field> = section.fields.iter().filter(|f| !f.hidden && !f.disabled).collect();
        if !section.title.is_empty() && !fields.is_empty() {
            blocks.push(json!({"type": "header", "text": plain(&section.title, 150)}));
        }
        blocks.extend(fields.into_iter().map(input_block));
    }
    let portal = format!("Also in the portal: {}", link(form_url, "open the form"));
    if blocks.len() >= MAX_BLOCKS {
        blocks.truncate(MAX_BLOCKS - 1);
        blocks.push(section(&format!("This form is longer than Slack shows. {portal}")));
    } else {
        blocks.push(json!({"type": "context", "elements": [mrkdwn(&portal)]}));
    }
    json!({
        "type": "modal",
        "callback_id": RUN_CALLBACK,
        "title": plain(&form.title, 24),
        "submit": plain("Run", 24),
        "close": plain("Cancel", 24),
        "private_metadata": metadata,
        "blocks": blocks,
    })
}

/// The modal that records an approver's decision, with an optional comment.
pub fn approval_modal(what: &str, approve: bool, metadata: &str) -> Value {
    let (title, verb) = if approve { ("Approve run", "Approve") } else { ("Decline run", "Decline") };
    json!({
        "type": "modal",
        "callback_id": APPROVAL_CALLBACK,
        "title": plain(title, 24),
        "submit": plain(verb, 24),
        "close": plain("Cancel", 24),
        "private_metadata": metadata,
        "blocks": [
            section(&format!("{verb} *{}*?", escape(what))),
            {"type": "input", "block_id": COMMENT_BLOCK, "optional": true, "label": plain("Comment", 2000),
             "element": {"type": "plain_text_input", "action_id": COMMENT_BLOCK, "multiline": true}},
        ],
    })
}

/// What a person submitted in a modal, by block: `in.<name>` and `entity` as text, as the
/// portal's form sends them (a ticked box as `true`).
pub fn submitted_values(state: &Value) -> HashMap<String, String> {
    let mut values = HashMap::new();
    let Some(blocks) = state.get("values").and_then(Value::as_object) else { return values };
    for (block, actions) in blocks {
        let Some(element) = actions.as_object().and_then(|a| a.values().next()) else { continue };
        let text = match element.get("type").and_then(Value::as_str) {
            Some("static_select" | "external_select") => {
                element.pointer("/selected_option/value").and_then(Value::as_str).map(str::to_string)
            }
            Some("checkboxes") => Some(
                element.get("selected_options").and_then(Value::as_array).is_some_and(|o| !o.is_empty()).to_string(),
            ),
            Some("datepicker") => element.get("selected_date").and_then(Value::as_str).map(str::to_string),
            _ => element.get("value").and_then(Value::as_str).map(str::to_string),
        };
        if let Some(text) = text {
            values.insert(block.clone(), text);
        }
    }
    values
}

/// Entities found by a search, as a message only its asker sees.
pub fn search_results(query: &str, entities: &[Entity], more: bool, base: &str) -> Value {
    if entities.is_empty() {
        return ephemeral(&format!("Nothing you may read matches “{}”.", escape(query)));
    }
    let mut blocks = vec![section(&format!("Found for “{}”:", escape(query)))];
    for entity in entities {
        let title = entity.title.as_deref().unwrap_or(&entity.identifier);
        let url = format!("{base}/catalog/{}/{}", segment(&entity.blueprint), segment(&entity.identifier));
        let teams =
            if entity.team.is_empty() { String::new() } else { format!(" · {}", escape(&entity.team.join(", "))) };
        blocks.push(section(&format!("{} · {}{teams}", link(&url, title), escape(&entity.blueprint))));
    }
    if more {
        let url =
            format!("{base}/search?q={}", url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>());
        blocks.push(json!({"type": "context", "elements": [mrkdwn(&format!("More in {}", link(&url, "the portal")))]}));
    }
    json!({"response_type": "ephemeral", "text": format!("Found for “{query}”"), "blocks": blocks})
}

fn segment(text: &str) -> String {
    portolan_model::ident::url_segment(text).into_owned()
}

/// A message only the person who asked sees.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "text": text, "blocks": [section(text)]})
}

/// How to use the command.
pub fn help(command: &str) -> Value {
    ephemeral(&format!(
        "*{command} search <words>* finds entities by title or identifier.\n\
         *{command} run <action> [entity]* opens an action's form.\n\
         *{command} link* ties your Slack user to your Portolan user; *{command} unlink* undoes it."
    ))
}

/// A notice: its title and a button to the portal.
pub fn notice(title: &str, url: &str) -> Value {
    json!([
        section(&escape(title)),
        {"type": "actions", "elements": [{"type": "button", "action_id": "open", "text": plain("Open in Portolan", 75), "url": url}]},
    ])
}

/// An approver's request: what waits, and buttons to approve or decline it (each asks for a
/// comment first).
pub fn approval_request(title: &str, url: &str, run: &str) -> Value {
    json!([
        section(&escape(title)),
        {"type": "actions", "block_id": "approval", "elements": [
            {"type": "button", "action_id": APPROVE, "style": "primary", "text": plain("Approve", 75), "value": run},
            {"type": "button", "action_id": DECLINE, "style": "danger", "text": plain("Decline", 75), "value": run},
            {"type": "button", "action_id": "open", "text": plain("Open in Portolan", 75), "url": url},
        ]},
    ])
}

/// An approval request once decided: the buttons give way to who decided what.
pub fn approval_decided(title: &str, url: &str, outcome: &str) -> Value {
    json!([
        section(&escape(title)),
        {"type": "context", "elements": [mrkdwn(&format!("{} · {}", escape(outcome), link(url, "open in Portolan")))]},
    ])
}

/// A run as its Slack message shows it (and, updated, as it goes on).
pub fn run_message(run: &Run, url: &str) -> (String, Value) {
    let what = match (&run.action_title, &run.entity) {
        (Some(title), Some(entity)) => format!("{title} on {entity}"),
        (Some(title), None) => title.clone(),
        (None, Some(entity)) => format!("{} on {entity}", run.action),
        (None, None) => run.action.clone(),
    };
    let status = status_words(run);
    let text = format!("{what}: {status}");
    let blocks = json!([
        section(&format!("*{}* — {}", escape(&what), escape(&status))),
        {"type": "context", "elements": [mrkdwn(&format!("Run {} · {}", escape(&run.id), link(url, "open in Portolan")))]},
    ]);
    (text, blocks)
}

/// A run's status in words, with its reason when it has one.
pub fn status_words(run: &Run) -> String {
    let status = match run.status {
        RunStatus::WaitingForApproval => "waiting for approval",
        RunStatus::Queued => "queued",
        RunStatus::InProgress => "in progress",
        RunStatus::Success => "succeeded",
        RunStatus::Failure => "failed",
        RunStatus::TimedOut => "timed out",
        RunStatus::Declined => "declined",
        RunStatus::Cancelled => "cancelled",
    };
    match run.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(reason) => format!("{status} ({reason})"),
        None => status.to_string(),
    }
}
