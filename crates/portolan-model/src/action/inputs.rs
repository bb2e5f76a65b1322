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

impl UserInputs {
    /// Inputs whose default or visibility is a jq expression, as one program yielding
    /// `{defaults: {name: value}, visible: {name: bool}}` over `{form, entity, user, trigger}`.
    pub fn dynamic_program(&self) -> Option<String> {
        let mut defaults = Vec::new();
        let mut visible = Vec::new();
        for (name, input) in &self.properties {
            let key = Value::from(name.as_str());
            if let Some(code) = input.default.as_ref().and_then(jq_query) {
                defaults.push(format!("{key}: ([{code}] | .[0])"));
            }
            if let Some(code) = input.visible.as_ref().and_then(jq_query) {
                visible.push(format!("{key}: (([{code}] | .[0]) == true)"));
            }
        }
        (!defaults.is_empty() || !visible.is_empty())
            .then(|| format!("{{defaults: {{{}}}, visible: {{{}}}}}", defaults.join(", "), visible.join(", ")))
    }

    pub(super) fn validate_definition(&self, blueprints: &[Blueprint], errors: &mut FieldErrors) {
        let base = "/trigger/userInputs";
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
            for (key, value) in [("default", &input.default), ("visible", &input.visible)] {
                match value.as_ref().map(|v| (v, jq_query(v))) {
                    Some((_, Some(code))) => {
                        if let Err(msg) = crate::jq::check(code) {
                            errors.push(format!("{path}/{key}/jqQuery"), msg);
                        }
                    }
                    Some((Value::Bool(_), None)) if key == "visible" => {}
                    Some(_) if key == "visible" => {
                        errors.push(format!("{path}/visible"), "must be true, false or {\"jqQuery\": ...}")
                    }
                    Some((literal, None)) => {
                        let mut found = FieldErrors::default();
                        input.value_schema().validate_value(literal, &format!("{path}/default"), &mut found);
                        errors.0.extend(found.0);
                    }
                    None => {}
                }
            }
        }
        let listed = [("required", &self.required), ("order", &self.order)];
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
        }
    }

    /// Validates a submission: unknown inputs, required ones, types, formats, bounds. `defaults`
    /// and `visible` are the values of the jq defaults and visibility conditions; hidden inputs
    /// are dropped.
    pub fn validate(
        &self,
        submitted: &Map<String, Value>,
        defaults: &Map<String, Value>,
        visible: &Map<String, Value>,
    ) -> Result<ValidInputs, FieldErrors> {
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
            let shown = match &input.visible {
                Some(Value::Bool(shown)) => *shown,
                Some(_) => visible.get(name).and_then(Value::as_bool).unwrap_or(false),
                None => true,
            };
            if !shown {
                continue;
            }
            let given = submitted.get(name).filter(|v| !v.is_null());
            let value = match given {
                Some(value) => value.clone(),
                None => match &input.default {
                    Some(default) if jq_query(default).is_some() => match defaults.get(name) {
                        Some(Value::Null) | None => Value::Null,
                        Some(value) => value.clone(),
                    },
                    Some(literal) => literal.clone(),
                    None => Value::Null,
                },
            };
            if value.is_null() {
                if self.required.contains(name) {
                    errors.push(&path, "is required");
                }
                continue;
            }
            let before = errors.0.len();
            let schema = input.value_schema();
            let value = schema.normalize(value);
            schema.validate_value(&value, &path, &mut errors);
            if errors.0.len() == before
                && let Some(picked) = input.picked(&value, &path)
            {
                pickers.push(picked);
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
                check_query(dataset, blueprints, bp, &format!("{path}/dataset"), errors)
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
            enum_values: self.enum_values.clone(),
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
            spec: None,
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
