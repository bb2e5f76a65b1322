//! Property schemas: checking their definitions, and the values entities give them.

use crate::error::FieldErrors;
use serde_json::Value;

use super::*;

impl PropertySchema {
    pub(super) fn validate_definition(&self, path: &str, top_level: bool, errors: &mut FieldErrors) {
        use PropertyType as T;
        if let Some(format) = self.format
            && self.kind != format.kind()
        {
            errors.push(
                format!("{path}/format"),
                format!("format '{}' needs type {}", format.as_str(), format.kind().as_str()),
            );
        }
        let bounds = [self.minimum, self.maximum, self.exclusive_minimum, self.exclusive_maximum];
        if bounds.iter().any(Option::is_some) && !self.kind.is_numeric() {
            errors.push(path, "minimum, maximum, exclusiveMinimum and exclusiveMaximum apply only to numbers");
        }
        if let (Some(min), Some(max)) = (self.minimum, self.maximum)
            && min > max
        {
            errors.push(path, "minimum is greater than maximum");
        }
        let string_only = self.min_length.is_some() || self.max_length.is_some() || self.pattern.is_some();
        if string_only && self.kind != T::String {
            errors.push(path, "minLength, maxLength and pattern apply only to strings");
        }
        if let (Some(min), Some(max)) = (self.min_length, self.max_length)
            && min > max
        {
            errors.push(path, "minLength is greater than maxLength");
        }
        if let Some(pattern) = &self.pattern {
            if pattern.len() > MAX_PATTERN_LEN {
                errors.push(format!("{path}/pattern"), "pattern is longer than 1000 characters");
            } else if let Err(err) = compile_pattern(pattern) {
                errors.push(format!("{path}/pattern"), format!("invalid pattern: {err}"));
            }
        }
        let array_only =
            self.items.is_some() || self.min_items.is_some() || self.max_items.is_some() || self.unique_items;
        if array_only && self.kind != T::Array {
            errors.push(path, "items, minItems, maxItems and uniqueItems apply only to arrays");
        }
        if let Some(items) = &self.items {
            if !top_level {
                errors.push(format!("{path}/items"), "arrays of arrays are not supported");
            } else if matches!(items.kind, T::Array) {
                errors.push(format!("{path}/items/type"), "arrays of arrays are not supported");
            } else {
                items.validate_definition(&format!("{path}/items"), false, errors);
            }
        }
        if let Some(values) = &self.enum_values {
            if values.is_empty() {
                errors.push(format!("{path}/enum"), "enum must list at least one value");
            }
            if self.kind == T::Array {
                errors.push(format!("{path}/enum"), "enum applies to single values: give items an enum instead");
            }
            for (i, value) in values.iter().enumerate() {
                if !self.kind.admits(value) {
                    errors.push(
                        format!("{path}/enum/{i}"),
                        format!("enum value {value} is not a {}", self.kind.as_str()),
                    );
                }
                if values[..i].contains(value) {
                    errors.push(format!("{path}/enum/{i}"), format!("enum value {value} is listed twice"));
                }
            }
        }
        if self.facet && (matches!(self.kind, T::Object | T::Array) || !top_level) {
            errors.push(format!("{path}/facet"), "facet applies to a blueprint's own strings, numbers and booleans");
        }
        let object_only =
            self.properties.is_some() || !self.required.is_empty() || self.additional_properties.is_some();
        if object_only && self.kind != T::Object {
            errors.push(path, "properties, required and additionalProperties apply only to objects");
        }
        if let Some(fields) = &self.properties {
            for (name, field) in fields {
                field.validate_definition(
                    &format!("{path}/properties/{}", crate::error::pointer_token(name)),
                    true,
                    errors,
                );
            }
        }
        for (i, name) in self.required.iter().enumerate() {
            if !self.properties.as_ref().is_some_and(|p| p.contains_key(name)) {
                errors.push(format!("{path}/required/{i}"), format!("'{name}' is not one of the object's properties"));
            }
        }
        if let Some(default) = &self.default {
            let mut default_errors = FieldErrors::default();
            self.validate_value(default, &format!("{path}/default"), &mut default_errors);
            errors.0.extend(default_errors.0);
        }
    }

    /// The value as stored: a whole number given to an integer property (or list of integers)
    /// loses its fractional form, `7.0` becoming `7`. Anything else is returned as it was.
    pub fn normalize(&self, value: Value) -> Value {
        match (self.kind, value) {
            (PropertyType::Array, Value::Array(items)) => match &self.items {
                Some(item) => Value::Array(items.into_iter().map(|v| item.normalize(v)).collect()),
                None => Value::Array(items),
            },
            (kind, value) => kind.normalize(value),
        }
    }

    /// Validates one value against this property. Reference checks (team format) are the caller's.
    pub fn validate_value(&self, value: &Value, path: &str, errors: &mut FieldErrors) {
        if !self.kind.admits(value) {
            let got = match value {
                Value::Number(n) => n.to_string(),
                other => json_kind(other).to_string(),
            };
            errors.push(path, format!("expected {}, got {got}", self.kind.article()));
            return;
        }
        if let Some(values) = &self.enum_values
            && !values.iter().any(|allowed| json_equal(allowed, value))
        {
            let list: Vec<String> = values.iter().map(Value::to_string).collect();
            errors.push(path, format!("{value} is not one of {}", list.join(", ")));
        }
        match value {
            Value::Number(n) => {
                let n = n.as_f64().unwrap_or(f64::NAN);
                if let Some(min) = self.minimum
                    && n < min
                {
                    errors.push(path, format!("{n} is less than the minimum {min}"));
                }
                if let Some(max) = self.maximum
                    && n > max
                {
                    errors.push(path, format!("{n} is greater than the maximum {max}"));
                }
                if let Some(min) = self.exclusive_minimum
                    && n <= min
                {
                    errors.push(path, format!("{n} is not greater than {min} (exclusiveMinimum)"));
                }
                if let Some(max) = self.exclusive_maximum
                    && n >= max
                {
                    errors.push(path, format!("{n} is not less than {max} (exclusiveMaximum)"));
                }
            }
            Value::Object(fields) if self.format == Some(Format::LabeledUrl) => check_labeled_url(fields, path, errors),
            Value::Object(fields) => self.validate_fields(fields, path, errors),
            Value::String(s) => self.validate_string(s, path, errors),
            Value::Array(items) => {
                let len = items.len() as u64;
                if let Some(min) = self.min_items
                    && len < min
                {
                    errors.push(path, format!("has {len} items; at least {min} are required"));
                }
                if let Some(max) = self.max_items
                    && len > max
                {
                    errors.push(path, format!("has {len} items; at most {max} are allowed"));
                }
                if self.unique_items {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].iter().any(|earlier| json_equal(earlier, item)) {
                            errors.push(format!("{path}/{i}"), format!("{item} is listed twice; items must be unique"));
                        }
                    }
                }
                if let Some(item_schema) = &self.items {
                    for (i, item) in items.iter().enumerate() {
                        item_schema.validate_value(item, &format!("{path}/{i}"), errors);
                    }
                }
            }
            _ => {}
        }
    }

    /// An object's fields against its `properties`, `required` and `additionalProperties`.
    fn validate_fields(&self, fields: &serde_json::Map<String, Value>, path: &str, errors: &mut FieldErrors) {
        let field_path = |name: &str| format!("{path}/{}", crate::error::pointer_token(name));
        for name in &self.required {
            if fields.get(name).is_none_or(Value::is_null) {
                errors.push(field_path(name), "is required");
            }
        }
        let Some(schemas) = &self.properties else { return };
        for (name, value) in fields {
            match schemas.get(name) {
                Some(schema) if !value.is_null() => schema.validate_value(value, &field_path(name), errors),
                None if self.additional_properties == Some(false) => errors
                    .push(field_path(name), "is not one of the object's properties (additionalProperties is false)"),
                _ => {}
            }
        }
    }

    fn validate_string(&self, s: &str, path: &str, errors: &mut FieldErrors) {
        let chars = s.chars().count() as u64;
        if let Some(min) = self.min_length
            && chars < min
        {
            errors.push(path, format!("is {chars} characters long; the minimum is {min}"));
        }
        if let Some(max) = self.max_length
            && chars > max
        {
            errors.push(path, format!("is {chars} characters long; the maximum is {max}"));
        }
        if let Some(pattern) = &self.pattern
            && let Ok(re) = compile_pattern(pattern)
            && !re.is_match(s)
        {
            errors.push(path, format!("does not match the pattern {pattern}"));
        }
        if let Some(format) = self.format
            && let Err(msg) = format.check(s)
        {
            errors.push(path, msg);
        }
    }
}

fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).size_limit(1 << 20).build()
}

impl PropertyType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
        }
    }

    fn article(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Number => "a number",
            Self::Integer => "an integer (a whole number)",
            Self::Boolean => "a boolean",
            Self::Object => "an object",
            Self::Array => "an array",
        }
    }

    /// A whole number given as an integer loses its fractional form (`7.0` becomes `7`).
    pub fn normalize(self, value: Value) -> Value {
        match (self, value) {
            (Self::Integer, Value::Number(n)) => Value::Number(as_integer(&n).unwrap_or(n)),
            (_, value) => value,
        }
    }

    /// Number or integer: what minimum, maximum, bounds, sums and averages apply to.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Number | Self::Integer)
    }

    pub fn admits(self, value: &Value) -> bool {
        if let (Self::Integer, Value::Number(n)) = (self, value) {
            return as_integer(n).is_some();
        }
        matches!(
            (self, value),
            (Self::String, Value::String(_))
                | (Self::Number, Value::Number(_))
                | (Self::Boolean, Value::Bool(_))
                | (Self::Object, Value::Object(_))
                | (Self::Array, Value::Array(_))
        )
    }
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DateTime => "date-time",
            Self::Url => "url",
            Self::Email => "email",
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::Markdown => "markdown",
            Self::Yaml => "yaml",
            Self::User => "user",
            Self::Team => "team",
            Self::Timer => "timer",
            Self::Date => "date",
            Self::IdnEmail => "idn-email",
            Self::Proto => "proto",
            Self::LabeledUrl => "labeled-url",
        }
    }

    /// The property type the format refines.
    pub fn kind(self) -> PropertyType {
        match self {
            Self::LabeledUrl => PropertyType::Object,
            _ => PropertyType::String,
        }
    }

    /// Checks the syntax of a string in this format.
    pub fn check(self, s: &str) -> Result<(), String> {
        let ok = match self {
            Self::DateTime | Self::Timer => parse_date_time(s).is_some(),
            Self::Url => url::Url::parse(s).is_ok_and(|u| u.has_host() || matches!(u.scheme(), "mailto" | "file")),
            Self::Email | Self::User => is_email(s),
            Self::Ipv4 => s.parse::<std::net::Ipv4Addr>().is_ok(),
            Self::Ipv6 => s.parse::<std::net::Ipv6Addr>().is_ok(),
            Self::Date => time::Date::parse(s, DATE).is_ok(),
            Self::IdnEmail => is_email(s),
            Self::Markdown | Self::Yaml | Self::Team | Self::Proto | Self::LabeledUrl => true,
        };
        if ok { Ok(()) } else { Err(format!("{s:?} is not a valid {}", self.as_str())) }
    }
}

const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// A labeled URL: `url` (required, a URL) and `displayText` (a string), nothing else.
fn check_labeled_url(fields: &serde_json::Map<String, Value>, path: &str, errors: &mut FieldErrors) {
    match fields.get("url") {
        Some(Value::String(url)) => {
            if let Err(message) = Format::Url.check(url) {
                errors.push(format!("{path}/url"), message);
            }
        }
        Some(_) => errors.push(format!("{path}/url"), "must be a string"),
        None => errors.push(format!("{path}/url"), "is required in a labeled URL"),
    }
    if fields.get("displayText").is_some_and(|text| !text.is_string()) {
        errors.push(format!("{path}/displayText"), "must be a string");
    }
    for name in fields.keys().filter(|name| !matches!(name.as_str(), "url" | "displayText")) {
        errors.push(format!("{path}/{}", crate::error::pointer_token(name)), "is not a field of a labeled URL");
    }
}

/// Parses an RFC 3339 date-time into milliseconds since the epoch.
pub fn parse_date_time(s: &str) -> Option<crate::Millis> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

/// What kind of JSON value this is, as messages name it ("a string", "an array", ...).
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON number as an integer, if it has no fractional part and fits in 64 bits.
fn as_integer(n: &serde_json::Number) -> Option<serde_json::Number> {
    if n.is_i64() || n.is_u64() {
        return Some(n.clone());
    }
    let f = n.as_f64()?;
    // 2^63 is the first float outside i64; every float below it with no fraction is exact.
    (f.fract() == 0.0 && f.abs() < 9_223_372_036_854_775_808.0).then(|| (f as i64).into())
}

/// A number typed as text (a web form's field, a filter) as JSON: `7` stays the integer 7, not
/// 7.0; `2.5` and `1e3` are floats. `None` for anything that is not a finite number.
pub fn number_from_text(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Some(n.into());
    }
    let n = text.parse::<f64>().ok().filter(|n| n.is_finite())?;
    serde_json::Number::from_f64(n).map(Value::Number)
}

/// JSON equality that treats `1` and `1.0` as the same number.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}
