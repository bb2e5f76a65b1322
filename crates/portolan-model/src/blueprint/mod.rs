//! Blueprints: the types of the catalog, shaped like Port's blueprints.

use std::collections::HashSet;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{FieldErrors, pointer_token};
use crate::ident::check_schema_identifier;

mod values;
pub use values::*;

/// A catalog type: its properties (a JSON-Schema subset) and its relations to other blueprints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blueprint {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default)]
    pub schema: BlueprintSchema,
    #[serde(default)]
    pub relations: IndexMap<String, RelationDef>,
    /// Properties read from a related entity, kept up to date by the server.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub mirror_properties: IndexMap<String, MirrorProperty>,
    /// Statistics over the entities that point here, kept up to date by the server.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub aggregation_properties: IndexMap<String, AggregationProperty>,
    /// Values computed by a jq expression over the entity (after mirrors and aggregations).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub calculation_properties: IndexMap<String, CalculationProperty>,
    /// Port's ownership: `{"type": "Direct"}` (each entity names its teams) is what Portolan does;
    /// inherited ownership is refused, saying so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ownership: Option<Value>,
    /// Port's destination of change logs; kept as written (Portolan's changes stream at
    /// `/api/v1/events` and are in the audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub changelog_destination: Option<Value>,
}

/// A property computed by a jq expression over the entity document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalculationProperty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The jq expression; its first output is the value.
    pub calculation: String,
    /// The type the value must have (a value of another type is recorded as a diagnostic).
    #[serde(rename = "type")]
    pub kind: PropertyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Display fields, as in Port; kept, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colorized: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub colors: Option<serde_json::Map<String, Value>>,
}

/// A property mirrored from a related entity: `path` is relations then a property or
/// meta-property, dot-separated (`system.domain.$title`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorProperty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub path: String,
}

/// A statistic over the entities of `target` that point at the entity through `relation` (or
/// through any relation of `target` to this blueprint), optionally filtered by `query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AggregationProperty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    pub calculation_spec: CalculationSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub query: Option<Value>,
    /// Display fields, as in Port (`type` is always `number`); kept, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalculationSpec {
    /// `entities` (count them) or `property` (a statistic of one of their number properties).
    pub calculation_by: CalculationBy,
    pub func: AggregationFunction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// With `func: average`, as in Port: the average per `hour`, `day`, `week` or `month` (the
    /// count, or the property's sum, divided by the periods since the earliest entity, a partial
    /// period counting as a whole), or over the entities (`total`, property averages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_of: Option<AveragePeriod>,
    /// The date that places an entity in time for `averageOf`: `$createdAt` (the default),
    /// `$updatedAt` or a date-time property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure_time_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AveragePeriod {
    Hour,
    Day,
    Week,
    Month,
    Total,
}

impl AveragePeriod {
    /// The period's length (a month is 30 days), or `None` for `total`.
    pub fn millis(self) -> Option<crate::Millis> {
        const HOUR: crate::Millis = 3_600_000;
        Some(match self {
            AveragePeriod::Hour => HOUR,
            AveragePeriod::Day => 24 * HOUR,
            AveragePeriod::Week => 7 * 24 * HOUR,
            AveragePeriod::Month => 30 * 24 * HOUR,
            AveragePeriod::Total => return None,
        })
    }
}

impl CalculationSpec {
    /// The period an average is taken per, if it is one over time (entities default to a day).
    pub fn period(&self) -> Option<crate::Millis> {
        match (self.func, self.calculation_by, self.average_of) {
            (AggregationFunction::Average, CalculationBy::Entities, None) => AveragePeriod::Day.millis(),
            (AggregationFunction::Average, _, Some(period)) => period.millis(),
            _ => None,
        }
    }

    /// The date `averageOf` measures time by.
    pub fn measure_time_by(&self) -> &str {
        self.measure_time_by.as_deref().unwrap_or("$createdAt")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CalculationBy {
    Entities,
    Property,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AggregationFunction {
    Count,
    Sum,
    Average,
    Min,
    Max,
    Median,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueprintSchema {
    #[serde(default)]
    pub properties: IndexMap<String, PropertySchema>,
    #[serde(default)]
    pub required: Vec<String>,
}

/// How many facet properties (enum, boolean or marked `facet`) of a blueprint a catalog table
/// counts.
pub const MAX_FACETS: usize = 4;

impl BlueprintSchema {
    /// The properties a catalog table counts as facets: the first enum, boolean and `facet` ones.
    /// The store keeps an index on each, so their counts and sorts need not read every entity.
    pub fn facet_properties(&self) -> impl Iterator<Item = (&str, &PropertySchema)> {
        self.properties
            .iter()
            .filter(|(_, p)| {
                ((p.enum_values.is_some() || p.facet) && !matches!(p.kind, PropertyType::Object | PropertyType::Array))
                    || p.kind == PropertyType::Boolean
            })
            .take(MAX_FACETS)
            .map(|(name, p)| (name.as_str(), p))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    String,
    Number,
    /// A number without a fractional part, as in JSON Schema: `7.0` is accepted and kept as `7`.
    Integer,
    Boolean,
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    DateTime,
    Url,
    Email,
    Ipv4,
    Ipv6,
    Markdown,
    Yaml,
    User,
    Team,
    Timer,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An email address whose parts may use any script.
    IdnEmail,
    /// A Protocol Buffers definition (shown as code).
    Proto,
    /// An object `{url, displayText}`: a link with its label.
    LabeledUrl,
}

/// One property of a blueprint, or the item schema of an array property.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PropertySchema {
    #[serde(rename = "type")]
    pub kind: PropertyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<Value>>,
    /// Display colours of enum values, as in Port; not interpreted by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub enum_colors: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// A number must be greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_minimum: Option<f64>,
    /// A number must be less than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_maximum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub items: Option<Box<PropertySchema>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_items: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u64>,
    /// No two items of an array may be equal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique_items: bool,
    /// Counted as a facet in the catalog table, and indexed, like enum and boolean properties:
    /// for a text or number property with few distinct values (a type, a tier).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub facet: bool,
    /// Rendering hint such as `open-api` or `embedded-url`, as in Port; not interpreted by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// For objects: the schema of named fields (JSON Schema's `properties`), checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub properties: Option<IndexMap<String, PropertySchema>>,
    /// For objects: fields that must be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    /// For objects: `false` refuses fields `properties` does not name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_properties: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RelationDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub target: String,
    #[serde(default)]
    pub many: bool,
    #[serde(default)]
    pub required: bool,
}

/// Longest regular expression accepted in a `pattern`, so a schema cannot make validation slow.
const MAX_PATTERN_LEN: usize = 1_000;

impl Blueprint {
    /// Parses a submitted blueprint document, reporting unknown or mistyped fields by path.
    pub fn from_json(value: Value) -> Result<Self, FieldErrors> {
        crate::error::from_json(value)
    }

    /// Whether `name` is a computed (mirror or aggregation) property.
    pub fn is_computed(&self, name: &str) -> bool {
        self.mirror_properties.contains_key(name)
            || self.aggregation_properties.contains_key(name)
            || self.calculation_properties.contains_key(name)
    }

    fn computed_kind(&self, name: &str) -> &'static str {
        if self.mirror_properties.contains_key(name) {
            "mirrorProperties"
        } else if self.aggregation_properties.contains_key(name) {
            "aggregationProperties"
        } else {
            "calculationProperties"
        }
    }

    /// The names of its `timer` properties.
    pub fn timer_properties(&self) -> impl Iterator<Item = &str> {
        self.schema
            .properties
            .iter()
            .filter(|(_, p)| p.kind == PropertyType::String && p.format == Some(Format::Timer))
            .map(|(name, _)| name.as_str())
    }

    pub fn title_or_identifier(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.identifier)
    }

    /// Checks the blueprint on its own. `blueprint_exists` answers whether a relation target is a
    /// known blueprint (the blueprint itself counts, for self-relations).
    pub fn validate(&self, blueprint_exists: impl Fn(&str) -> bool) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Err(msg) = check_schema_identifier(&self.identifier) {
            errors.push("/identifier", format!("identifier {msg}"));
        }
        if let Some(ownership) = &self.ownership
            && ownership["type"] != "Direct"
        {
            errors.push(
                "/ownership",
                "Portolan has direct ownership only (each entity names its teams in `team`): use {\"type\": \"Direct\"} \
                 or leave it out, and set the teams an entity would inherit on the entity",
            );
        }
        for (name, prop) in &self.schema.properties {
            let path = format!("/schema/properties/{}", pointer_token(name));
            if let Err(msg) = check_schema_identifier(name) {
                errors.push(&path, format!("property name {msg}"));
            }
            prop.validate_definition(&path, true, &mut errors);
        }
        let mut seen_required = HashSet::new();
        for (i, name) in self.schema.required.iter().enumerate() {
            if !self.schema.properties.contains_key(name) {
                errors.push(format!("/schema/required/{i}"), format!("'{name}' is required but is not a property"));
            }
            if !seen_required.insert(name) {
                errors.push(format!("/schema/required/{i}"), format!("'{name}' is listed twice"));
            }
        }
        let computed = self
            .mirror_properties
            .keys()
            .chain(self.aggregation_properties.keys())
            .chain(self.calculation_properties.keys());
        let mut seen_computed = HashSet::new();
        for name in computed {
            if self.schema.properties.contains_key(name) || self.relations.contains_key(name) {
                errors.push(
                    format!("/{}/{}", self.computed_kind(name), pointer_token(name)),
                    format!("'{name}' is already a property or relation"),
                );
            }
            if !seen_computed.insert(name) {
                errors.push(
                    format!("/{}/{}", self.computed_kind(name), pointer_token(name)),
                    format!("'{name}' is defined twice"),
                );
            }
        }
        for (name, calculation) in &self.calculation_properties {
            let path = format!("/calculationProperties/{}", pointer_token(name));
            if let Err(msg) = crate::jq::check(&calculation.calculation) {
                errors.push(format!("{path}/calculation"), format!("the jq expression {msg}"));
            }
            if calculation.format.is_some() && calculation.kind != PropertyType::String {
                errors.push(format!("{path}/format"), "a format needs type string");
            }
        }
        for (name, rel) in &self.relations {
            let path = format!("/relations/{}", pointer_token(name));
            if let Err(msg) = check_schema_identifier(name) {
                errors.push(&path, format!("relation name {msg}"));
            }
            if self.schema.properties.contains_key(name) {
                errors.push(&path, format!("'{name}' is both a property and a relation"));
            }
            if rel.many && rel.required {
                errors.push(&path, "a relation cannot be both many and required");
            }
            if rel.target != self.identifier && !blueprint_exists(&rel.target) {
                errors.push(format!("{path}/target"), format!("target blueprint '{}' does not exist", rel.target));
            }
        }
        errors.into_result(())
    }
}

/// Checks one property definition (or, with `top_level` false, an item schema).
pub(crate) fn check_property_definition(
    schema: &PropertySchema,
    path: &str,
    top_level: bool,
    errors: &mut FieldErrors,
) {
    schema.validate_definition(path, top_level, errors);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Blueprint {
        Blueprint::from_json(value).expect("parses")
    }

    fn paths(result: Result<(), FieldErrors>) -> Vec<String> {
        result.err().map(|e| e.0.into_iter().map(|f| f.path).collect()).unwrap_or_default()
    }

    #[test]
    fn a_well_formed_blueprint_validates() {
        let bp = parse(json!({
            "identifier": "service",
            "title": "Service",
            "schema": {
                "properties": {
                    "language": {"type": "string", "enum": ["Go", "Rust"]},
                    "port": {"type": "number", "minimum": 1, "maximum": 65535},
                    "repo": {"type": "string", "format": "url"},
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["language"]
            },
            "relations": {"system": {"target": "system", "required": true}}
        }));
        assert_eq!(bp.validate(|t| t == "system"), Ok(()));
    }

    #[test]
    fn facets_are_enums_booleans_and_marked_properties() {
        let bp = parse(json!({
            "identifier": "service",
            "schema": {"properties": {
                "name": {"type": "string"},
                "tier": {"type": "string", "enum": ["1", "2"]},
                "type": {"type": "string", "facet": true},
                "public": {"type": "boolean"},
                "replicas": {"type": "integer", "facet": true},
                "tags": {"type": "array", "items": {"type": "string"}}
            }}
        }));
        assert_eq!(bp.validate(|_| false), Ok(()));
        let facets: Vec<&str> = bp.schema.facet_properties().map(|(name, _)| name).collect();
        assert_eq!(facets, ["tier", "type", "public", "replicas"]);
        let bad = parse(json!({
            "identifier": "service",
            "schema": {"properties": {
                "tags": {"type": "array", "facet": true, "items": {"type": "string", "facet": true}},
                "owner": {"type": "object", "facet": true}
            }}
        }));
        assert_eq!(
            paths(bad.validate(|_| false)),
            ["/schema/properties/tags/items/facet", "/schema/properties/tags/facet", "/schema/properties/owner/facet"]
        );
    }

    #[test]
    fn blueprint_errors_name_each_bad_field() {
        let bp = parse(json!({
            "identifier": "bad id",
            "schema": {
                "properties": {
                    "n": {"type": "number", "enum": ["one"], "format": "url"},
                    "s": {"type": "string", "pattern": "("},
                    "system": {"type": "string"}
                },
                "required": ["missing"]
            },
            "relations": {
                "system": {"target": "system"},
                "deps": {"target": "nowhere", "many": true, "required": true}
            }
        }));
        let found = paths(bp.validate(|t| t == "system"));
        for expected in [
            "/identifier",
            "/schema/properties/n/format",
            "/schema/properties/n/enum/0",
            "/schema/properties/s/pattern",
            "/schema/required/0",
            "/relations/system",
            "/relations/deps",
            "/relations/deps/target",
        ] {
            assert!(found.iter().any(|p| p == expected), "{expected} missing from {found:?}");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_reported_by_path() {
        let err = Blueprint::from_json(json!({"identifier": "x", "schema": {"properties": {"a": {"type": "strng"}}}}))
            .expect_err("bad type");
        assert_eq!(err.0[0].path, "/schema/properties/a/type");
        let err = Blueprint::from_json(json!({"identifier": "x", "colour": 1})).expect_err("unknown field");
        assert!(err.0[0].message.contains("colour"), "{err:?}");
        // Every unknown field in one answer, then the first other problem.
        let err = Blueprint::from_json(json!({"identifier": "x", "colour": 1, "owner": "me",
            "schema": {"properties": {"a": {"type": "string", "colr": 1}, "b": {"type": 7}}}}))
        .expect_err("unknown fields");
        let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/colour", "/owner", "/schema/properties/a/colr", "/schema/properties/b/type"], "{err:?}");
    }

    #[test]
    fn formats_are_checked() {
        assert!(Format::Email.check("a@b.io").is_ok());
        assert!(Format::Email.check("nope").is_err());
        assert!(Format::Url.check("https://example.com/x").is_ok());
        assert!(Format::Url.check("example.com").is_err());
        assert!(Format::DateTime.check("2026-11-26T10:00:00Z").is_ok());
        assert!(Format::DateTime.check("yesterday").is_err());
        assert!(Format::Ipv4.check("10.0.0.1").is_ok());
        assert!(Format::Ipv6.check("10.0.0.1").is_err());
    }

    /// Port's documented types and constraints: `date`, `idn-email`, `proto`, `labeled-url`,
    /// `uniqueItems`, `exclusiveMinimum` and `exclusiveMaximum`.
    #[test]
    fn ports_further_formats_and_constraints_hold() {
        assert!(Format::Date.check("2026-12-06").is_ok());
        assert!(Format::Date.check("2026-02-30").is_err());
        assert!(Format::IdnEmail.check("jürgen@bücher.de").is_ok());
        let schema =
            |definition: Value| -> PropertySchema { crate::error::from_json(definition).expect("a property schema") };
        let problems = |schema: &PropertySchema, value: Value| {
            let mut errors = FieldErrors::default();
            schema.validate_value(&value, "/properties/p", &mut errors);
            errors.0.into_iter().map(|e| e.path).collect::<Vec<_>>()
        };
        let link = schema(json!({"type": "object", "format": "labeled-url"}));
        assert!(problems(&link, json!({"url": "https://grafana.example/d/1", "displayText": "Latency"})).is_empty());
        assert_eq!(
            problems(&link, json!({"url": "nope", "displayText": 3, "colour": "red"})),
            ["/properties/p/url", "/properties/p/displayText", "/properties/p/colour"]
        );
        let tags = schema(json!({"type": "array", "uniqueItems": true, "items": {"type": "string"}}));
        assert_eq!(problems(&tags, json!(["a", "b", "a"])), ["/properties/p/2"]);
        let share = schema(json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}));
        assert!(problems(&share, json!(0.5)).is_empty());
        assert_eq!(problems(&share, json!(0)).len(), 1);
        assert_eq!(problems(&share, json!(1)).len(), 1);

        let mut errors = FieldErrors::default();
        schema(json!({"type": "string", "format": "labeled-url", "uniqueItems": true, "exclusiveMinimum": 1}))
            .validate_definition("/p", true, &mut errors);
        assert_eq!(errors.0.len(), 3, "{errors:?}");
    }

    #[test]
    fn integers_are_whole_numbers_and_keep_their_integer_form() {
        let bp = parse(json!({"identifier": "pool", "schema": {"properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3.0},
            "sizes": {"type": "array", "items": {"type": "integer"}},
            "bad": {"type": "integer", "enum": [1, 1.5], "default": 0.5}
        }}}));
        let found = paths(bp.validate(|_| false));
        assert_eq!(found, vec!["/schema/properties/bad/enum/1", "/schema/properties/bad/default"]);
        let size = &bp.schema.properties["size"];
        for (given, kept) in [(json!(7), "7"), (json!(7.0), "7"), (json!(-0.0), "0"), (json!(1e3), "1000")] {
            assert_eq!(size.normalize(given.clone()).to_string(), kept, "{given}");
        }
        assert_eq!(size.normalize(json!(2.5)), json!(2.5), "a fraction is left for validation to refuse");
        let sizes = &bp.schema.properties["sizes"];
        assert_eq!(sizes.normalize(json!([1.0, 2])).to_string(), "[1,2]");

        let mut errors = FieldErrors::default();
        size.validate_value(&json!(2.5), "/properties/size", &mut errors);
        size.validate_value(&json!(1e300), "/properties/size", &mut errors);
        assert_eq!(errors.0.len(), 2, "{errors:?}");
        assert_eq!(errors.0[0].path, "/properties/size");
        assert!(errors.0[0].message.contains("integer") && errors.0[0].message.contains("2.5"), "{errors:?}");
        let mut errors = FieldErrors::default();
        size.validate_value(&json!(7.0), "/properties/size", &mut errors);
        assert!(errors.0.is_empty(), "7.0 is the integer 7, as in JSON Schema: {errors:?}");

        assert_eq!(number_from_text("7").map(|v| v.to_string()), Some("7".into()));
        assert_eq!(number_from_text(" 2.5 ").map(|v| v.to_string()), Some("2.5".into()));
        assert_eq!(number_from_text("NaN"), None);
        assert_eq!(number_from_text("seven"), None);
    }
}
