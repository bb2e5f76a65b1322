//! An action's user inputs: checking their definitions, and the values a person submits.

use crate::blueprint::{Format, PropertySchema, PropertyType};
use crate::error::{FieldErrors, pointer_token};
use crate::ident::check_schema_identifier;
use crate::{Blueprint, system};
use serde_json::{Map, Value};

use super::*;

/// An entity (or user or team) picker's value to check against the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct PickedEntities {
    /// JSON pointer of the input.
    pub path: String,
    pub blueprint: String,
    pub identifiers: Vec<String>,
    /// The query the picked entities must satisfy.
    pub dataset: Option<Value>,
}

/// A submission that matches its form; pickers still need checking against the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidInputs {
    pub values: Map<String, Value>,
    pub pickers: Vec<PickedEntities>,
}

/// What a form's jq expressions give for the values filled in so far: computed defaults,
/// visibility (of inputs and steps), disabled inputs, choices, the required inputs and the values
/// of entity pickers' datasets. An expression that fails gives nothing.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FormState {
    pub defaults: Map<String, Value>,
    pub visible: Map<String, Value>,
    pub disabled: Map<String, Value>,
    pub enums: Map<String, Value>,
    /// By the step's position: whether it shows.
    pub steps: Map<String, Value>,
    /// The names of the required inputs, or `true` for all.
    pub required: Value,
    /// Per picker: JSON pointer in its dataset → the value there.
    pub datasets: Map<String, Value>,
}

/// Whether a `visible` or `disabled` setting holds: `true`/`false` as written, a jq expression by
/// what it gave (`computed`), absent as `absent`.
fn holds(setting: Option<&Value>, computed: Option<&Value>, absent: bool) -> bool {
    match setting {
        None => absent,
        Some(Value::Bool(b)) => *b,
        Some(_) => computed.and_then(Value::as_bool).unwrap_or(false),
    }
}

/// The `{"jqQuery": ...}` values in a dataset, by JSON pointer.
fn dataset_queries<'a>(value: &'a Value, pointer: String, found: &mut Vec<(String, &'a str)>) {
    if let Some(code) = jq_query(value) {
        found.push((pointer, code));
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                dataset_queries(item, format!("{pointer}/{}", pointer_token(key)), found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                dataset_queries(item, format!("{pointer}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// A dataset without the rules whose value a jq expression gives, to check what is written.
fn without_computed_rules(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| match (key.as_str(), item) {
                    ("rules", Value::Array(rules)) => (
                        key.clone(),
                        Value::Array(
                            rules
                                .iter()
                                .filter(|r| r.get("value").is_none_or(|v| jq_query(v).is_none()))
                                .map(without_computed_rules)
                                .collect(),
                        ),
                    ),
                    _ => (key.clone(), without_computed_rules(item)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

impl UserInputs {
    /// The form's jq expressions (defaults, visibility, disabled, choices, required inputs,
    /// dataset values, step visibility) as one program yielding a [`FormState`] over
    /// `{form, entity, user, trigger}`.
    pub fn dynamic_program(&self) -> Option<String> {
        // Each setting is the first output of its expression; visibility and disabling are true
        // only when it is `true`.
        let first = |code: &str| format!("([{code}] | .[0])");
        let is_true = |code: &str| format!("(([{code}] | .[0]) == true)");
        let entry = |key: &str, value: String| format!("{}: {value}", Value::from(key));
        let (mut defaults, mut visible, mut disabled, mut enums, mut datasets) = <[Vec<String>; 5]>::default().into();
        for (name, input) in &self.properties {
            if let Some(code) = input.default.as_ref().and_then(jq_query) {
                defaults.push(entry(name, first(code)));
            }
            if let Some(code) = input.visible.as_ref().and_then(jq_query) {
                visible.push(entry(name, is_true(code)));
            }
            if let Some(code) = input.disabled.as_ref().and_then(jq_query) {
                disabled.push(entry(name, is_true(code)));
            }
            if let Some(code) = input.enum_values.as_ref().and_then(ListOrJq::jq) {
                enums.push(entry(name, first(code)));
            }
            let mut queries = Vec::new();
            if let Some(dataset) = input.dataset.as_ref().or(input.items.as_ref().and_then(|i| i.dataset.as_ref())) {
                dataset_queries(dataset, String::new(), &mut queries);
            }
            if !queries.is_empty() {
                let values: Vec<String> = queries.iter().map(|(pointer, code)| entry(pointer, first(code))).collect();
                datasets.push(entry(name, format!("{{{}}}", values.join(", "))));
            }
        }
        let steps: Vec<String> = (self.steps.iter().enumerate())
            .filter_map(|(i, step)| {
                step.visible.as_ref().and_then(jq_query).map(|code| entry(&i.to_string(), is_true(code)))
            })
            .collect();
        let required = self.required.jq().map(first);
        let objects = [
            ("defaults", defaults),
            ("visible", visible),
            ("disabled", disabled),
            ("enums", enums),
            ("datasets", datasets),
            ("steps", steps),
        ];
        if required.is_none() && objects.iter().all(|(_, entries)| entries.is_empty()) {
            return None;
        }
        let mut fields: Vec<String> =
            objects.iter().map(|(key, entries)| format!("{key}: {{{}}}", entries.join(", "))).collect();
        fields.push(format!("required: {}", required.unwrap_or_else(|| "null".into())));
        Some(format!("{{{}}}", fields.join(", ")))
    }

    /// Whether input `name` shows: its own visibility and its step's.
    pub fn shown(&self, name: &str, state: &FormState) -> bool {
        let Some(input) = self.properties.get(name) else { return false };
        let step_shown = self.steps.iter().enumerate().all(|(i, step)| {
            !step.order.iter().any(|n| n == name) || holds(step.visible.as_ref(), state.steps.get(&i.to_string()), true)
        });
        step_shown && holds(input.visible.as_ref(), state.visible.get(name), true)
    }

    /// Whether input `name` is disabled (shows its default, takes no value).
    pub fn disabled(&self, name: &str, state: &FormState) -> bool {
        self.properties.get(name).is_some_and(|input| holds(input.disabled.as_ref(), state.disabled.get(name), false))
    }

    /// Whether input `name` must be filled in.
    pub fn required(&self, name: &str, state: &FormState) -> bool {
        match (&self.required, &state.required) {
            (ListOrJq::List(names), _) => names.iter().any(|n| n == name),
            (ListOrJq::Jq(_), Value::Bool(all)) => *all,
            (ListOrJq::Jq(_), Value::Array(names)) => names.iter().any(|n| n.as_str() == Some(name)),
            (ListOrJq::Jq(_), _) => false,
        }
    }

    pub(super) fn validate_definition(&self, blueprints: &[Blueprint], errors: &mut FieldErrors) {
        let base = "/trigger/userInputs";
        let check_jq = |errors: &mut FieldErrors, path: String, code: &str| {
            if let Err(msg) = crate::jq::check(code) {
                errors.push(format!("{path}/jqQuery"), msg);
            }
        };
        for (name, input) in &self.properties {
            let path = format!("{base}/properties/{}", pointer_token(name));
            if let Err(msg) = check_schema_identifier(name) {
                errors.push(&path, msg);
            }
            input.validate_definition(&path, true, blueprints, errors);
            for (i, other) in input.depends_on.iter().enumerate() {
                if !self.properties.contains_key(other) || other == name {
                    errors.push(format!("{path}/dependsOn/{i}"), format!("'{other}' is not another input"));
                }
            }
            for (key, value) in
                [("default", &input.default), ("visible", &input.visible), ("disabled", &input.disabled)]
            {
                match value.as_ref().map(|v| (v, jq_query(v))) {
                    Some((_, Some(code))) => check_jq(errors, format!("{path}/{key}"), code),
                    Some((Value::Bool(_), None)) if key != "default" => {}
                    Some(_) if key != "default" => {
                        errors.push(format!("{path}/{key}"), "must be true, false or {\"jqQuery\": ...}")
                    }
                    Some((literal, None)) => {
                        let mut found = FieldErrors::default();
                        input.value_schema().validate_value(literal, &format!("{path}/default"), &mut found);
                        errors.0.extend(found.0);
                    }
                    None => {}
                }
            }
            if let Some(code) = input.enum_values.as_ref().and_then(ListOrJq::jq) {
                check_jq(errors, format!("{path}/enum"), code);
            }
        }
        if let Some(code) = self.required.jq() {
            check_jq(errors, format!("{base}/required"), code);
        }
        let listed = [("required", self.required.list()), ("order", self.order.as_slice())];
        for (key, names) in listed {
            for (i, name) in names.iter().enumerate() {
                if !self.properties.contains_key(name) {
                    errors.push(format!("{base}/{key}/{i}"), format!("'{name}' is not an input"));
                }
            }
        }
        for (s, step) in self.steps.iter().enumerate() {
            for (i, name) in step.order.iter().enumerate() {
                if !self.properties.contains_key(name) {
                    errors.push(format!("{base}/steps/{s}/order/{i}"), format!("'{name}' is not an input"));
                }
            }
            match step.visible.as_ref().map(|v| (v, jq_query(v))) {
                Some((_, Some(code))) => check_jq(errors, format!("{base}/steps/{s}/visible"), code),
                Some((Value::Bool(_), None)) | None => {}
                Some(_) => {
                    errors.push(format!("{base}/steps/{s}/visible"), "must be true, false or {\"jqQuery\": ...}")
                }
            }
        }
    }

    /// Validates a submission: unknown inputs, required ones, types, formats, bounds and
    /// computed choices, with what the form's jq expressions gave (`state`). Hidden inputs are
    /// dropped; disabled ones take their default.
    pub fn validate(&self, submitted: &Map<String, Value>, state: &FormState) -> Result<ValidInputs, FieldErrors> {
        let mut errors = FieldErrors::default();
        for name in submitted.keys() {
            if !self.properties.contains_key(name) {
                errors.push(format!("/properties/{}", pointer_token(name)), "is not an input of this action");
            }
        }
        let mut values = Map::new();
        let mut pickers = Vec::new();
        for (name, input) in &self.properties {
            let path = format!("/properties/{}", pointer_token(name));
            if !self.shown(name, state) {
                continue;
            }
            let given = submitted.get(name).filter(|v| !v.is_null() && !self.disabled(name, state));
            let value = match given {
                Some(value) => value.clone(),
                None => match &input.default {
                    Some(default) if jq_query(default).is_some() => match state.defaults.get(name) {
                        Some(Value::Null) | None => Value::Null,
                        Some(value) => value.clone(),
                    },
                    Some(literal) => literal.clone(),
                    None => Value::Null,
                },
            };
            if value.is_null() {
                if self.required(name, state) {
                    errors.push(&path, "is required");
                }
                continue;
            }
            let before = errors.0.len();
            let schema = input.value_schema();
            let value = schema.normalize(value);
            schema.validate_value(&value, &path, &mut errors);
            if input.enum_values.as_ref().and_then(ListOrJq::jq).is_some() {
                let choices = state.enums.get(name).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                let items = match &value {
                    Value::Array(items) if input.kind == PropertyType::Array => items.as_slice(),
                    one => std::slice::from_ref(one),
                };
                if let Some(other) = items.iter().find(|v| !choices.contains(v)) {
                    errors.push(
                        &path,
                        format!("{other} is not one of this input's choices now: {}", Value::from(choices)),
                    );
                }
            }
            if errors.0.len() == before
                && let Some(mut picked) = input.picked(&value, &path)
            {
                if let (Some(dataset), Some(Value::Object(computed))) = (&mut picked.dataset, state.datasets.get(name))
                {
                    for (pointer, value) in computed {
                        if let Some(slot) = dataset.pointer_mut(pointer) {
                            *slot = value.clone();
                        }
                    }
                }
                let mut uncomputed = Vec::new();
                if let Some(dataset) = &picked.dataset {
                    dataset_queries(dataset, String::new(), &mut uncomputed);
                }
                if uncomputed.is_empty() {
                    pickers.push(picked);
                } else {
                    errors.push(&path, "its choices could not be worked out: the jq in its dataset failed");
                }
            }
            values.insert(name.clone(), value);
        }
        errors.into_result(ValidInputs { values, pickers })
    }
}

impl UserInput {
    pub(super) fn validate_definition(
        &self,
        path: &str,
        top_level: bool,
        blueprints: &[Blueprint],
        errors: &mut FieldErrors,
    ) {
        let mut found = FieldErrors::default();
        let mut schema = self.value_schema();
        schema.default = None;
        crate::blueprint::check_property_definition(&schema, path, top_level, &mut found);
        errors.0.extend(found.0);
        if self.format.is_some() && self.kind != PropertyType::String {
            errors.push(format!("{path}/format"), "formats apply to string inputs (use items for lists)");
        }
        match &self.encryption {
            None => {}
            Some(Value::String(a))
                if a == "aes256-gcm" && matches!(self.kind, PropertyType::String | PropertyType::Object) => {}
            Some(Value::String(a)) if a == "aes256-gcm" => {
                errors.push(format!("{path}/encryption"), "string and object inputs are encrypted, not others")
            }
            Some(_) => errors.push(
                format!("{path}/encryption"),
                "Portolan encrypts on the server: use \"aes256-gcm\" (under the webhook signing key); \
                 client-side encryption in the browser is not offered",
            ),
        }
        let is_entity = self.format == Some(InputFormat::Entity);
        match (&self.blueprint, is_entity) {
            (Some(id), true) if !blueprints.iter().any(|b| &b.identifier == id) => {
                errors.push(format!("{path}/blueprint"), format!("blueprint '{id}' does not exist"))
            }
            (None, true) => errors.push(format!("{path}/blueprint"), "an entity picker names its blueprint"),
            (Some(_), false) => errors.push(format!("{path}/blueprint"), "only entity pickers name a blueprint"),
            _ => {}
        }
        match (&self.dataset, &self.blueprint) {
            (Some(dataset), Some(bp)) if is_entity && blueprints.iter().any(|b| &b.identifier == bp) => {
                let mut queries = Vec::new();
                dataset_queries(dataset, format!("{path}/dataset"), &mut queries);
                for (pointer, code) in queries {
                    if let Err(msg) = crate::jq::check(code) {
                        errors.push(format!("{pointer}/jqQuery"), msg);
                    }
                }
                check_query(&without_computed_rules(dataset), blueprints, bp, &format!("{path}/dataset"), errors)
            }
            (Some(_), _) if !is_entity => errors.push(format!("{path}/dataset"), "only entity pickers take a dataset"),
            _ => {}
        }
        if let Some(items) = &self.items {
            items.validate_definition(&format!("{path}/items"), false, blueprints, errors);
        }
    }

    /// The property schema a value of this input must satisfy.
    fn value_schema(&self) -> PropertySchema {
        let format = self.format.and_then(|f| match f {
            InputFormat::DateTime => Some(Format::DateTime),
            InputFormat::Url => Some(Format::Url),
            InputFormat::Email | InputFormat::User => Some(Format::Email),
            InputFormat::Ipv4 => Some(Format::Ipv4),
            InputFormat::Ipv6 => Some(Format::Ipv6),
            InputFormat::Markdown => Some(Format::Markdown),
            InputFormat::Yaml => Some(Format::Yaml),
            InputFormat::MultiLine | InputFormat::Entity | InputFormat::Team => None,
        });
        PropertySchema {
            kind: self.kind,
            title: None,
            description: None,
            icon: None,
            format,
            enum_values: self.enum_values.as_ref().and_then(|e| e.jq().is_none().then(|| e.list().to_vec())),
            enum_colors: None,
            default: self.default.clone().filter(|d| jq_query(d).is_none()),
            minimum: self.minimum,
            maximum: self.maximum,
            exclusive_minimum: None,
            exclusive_maximum: None,
            min_length: self.min_length,
            max_length: self.max_length,
            pattern: self.pattern.clone(),
            items: self.items.as_ref().map(|i| Box::new(i.value_schema())),
            min_items: self.min_items,
            max_items: self.max_items,
            unique_items: false,
            facet: false,
            spec: None,
            properties: None,
            required: Vec::new(),
            additional_properties: None,
        }
    }

    /// The catalog entries a picker's (well-typed) value names.
    fn picked(&self, value: &Value, path: &str) -> Option<PickedEntities> {
        let (picker, identifiers) = match (value, &self.items) {
            (Value::Array(items), Some(item)) => {
                (item.as_ref(), items.iter().filter_map(Value::as_str).map(str::to_string).collect())
            }
            (Value::String(s), _) => (self, vec![s.clone()]),
            _ => return None,
        };
        let blueprint = match picker.format? {
            InputFormat::Entity => picker.blueprint.clone()?,
            InputFormat::User => system::USER.to_string(),
            InputFormat::Team => system::TEAM.to_string(),
            _ => return None,
        };
        Some(PickedEntities { path: path.to_string(), blueprint, identifiers, dataset: picker.dataset.clone() })
    }
}
