//! Dashboards: pages of widgets written as JSON or YAML. This module checks a dashboard's shape —
//! which fields each kind of widget needs, and the limits that keep a page cheap — and builds the
//! queries behind its numbers; the service checks the queries against the catalog by running them.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::FieldErrors;
use crate::ident::check_schema_identifier;

/// Most widgets on one dashboard.
pub const MAX_WIDGETS: usize = 24;
/// Most rows a table widget shows.
pub const MAX_ROWS: u32 = 50;
/// Most days a line or a DORA panel covers.
pub const MAX_DAYS: u32 = 365;
const MAX_MARKDOWN: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dashboard {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub widgets: Vec<Widget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WidgetKind {
    /// One aggregate (`function` over `blueprint`'s entities that `query` admits).
    Number,
    /// Entities per value of `property` (or `relation`), as bars or a pie.
    Bar,
    Pie,
    /// A history, day by day: a scorecard level's count, an initiative's burn-up, or an aggregate
    /// the server samples daily.
    Line,
    /// The entities a query finds, with `columns`.
    Table,
    /// A scorecard's entities per level.
    Scorecard,
    /// An initiative's progress.
    Initiative,
    /// The four DORA keys of the organisation, a team or a service.
    Dora,
    Markdown,
}

/// One widget; which fields apply depends on its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Widget {
    #[serde(rename = "type")]
    pub kind: WidgetKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub query: Option<Value>,
    /// `count` (default), `sum`, `avg`, `min`, `max` or `median`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scorecard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiative: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Where a line's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LineSource<'a> {
    /// Entities at `level` of a scorecard, per day.
    Level { blueprint: &'a str, scorecard: &'a str, level: &'a str },
    /// An initiative's entities meeting its goal, per day.
    Initiative(&'a str),
    /// An aggregate sampled daily, under its series key.
    Aggregate(String),
}

impl Dashboard {
    pub fn from_json(value: Value) -> Result<Self, FieldErrors> {
        crate::error::from_json(value)
    }

    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.identifier)
    }

    /// Checks the shape: each widget has what its kind needs and nothing another kind needs, within
    /// the limits. Queries, blueprints and properties are the catalog's to check.
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Err(msg) = check_schema_identifier(&self.identifier) {
            errors.push("/identifier", format!("identifier {msg}"));
        }
        if self.widgets.len() > MAX_WIDGETS {
            errors.push("/widgets", format!("a dashboard holds at most {MAX_WIDGETS} widgets"));
        }
        for (i, widget) in self.widgets.iter().enumerate() {
            widget.check(&format!("/widgets/{i}"), &mut errors);
        }
        errors.into_result(())
    }
}

impl Widget {
    fn check(&self, path: &str, errors: &mut FieldErrors) {
        use WidgetKind::*;
        let given: [(&str, bool); 14] = [
            ("blueprint", self.blueprint.is_some()),
            ("query", self.query.is_some()),
            ("function", self.function.is_some()),
            ("property", self.property.is_some()),
            ("relation", self.relation.is_some()),
            ("columns", !self.columns.is_empty()),
            ("limit", self.limit.is_some()),
            ("scorecard", self.scorecard.is_some()),
            ("level", self.level.is_some()),
            ("initiative", self.initiative.is_some()),
            ("team", self.team.is_some()),
            ("service", self.service.is_some()),
            ("days", self.days.is_some()),
            ("text", self.text.is_some()),
        ];
        let (required, allowed): (&[&str], &[&str]) = match self.kind {
            Number => (&["blueprint"], &["query", "function", "property"]),
            Bar | Pie => (&["blueprint"], &["query", "property", "relation"]),
            Line => (
                &[],
                &["blueprint", "query", "function", "property", "scorecard", "level", "initiative", "team", "days"],
            ),
            Table => (&["blueprint"], &["query", "columns", "limit"]),
            Scorecard => (&["blueprint", "scorecard"], &["team"]),
            Initiative => (&["initiative"], &["team"]),
            Dora => (&[], &["team", "service", "days"]),
            Markdown => (&["text"], &[]),
        };
        for (field, present) in given {
            if required.contains(&field) && !present {
                errors.push(format!("{path}/{field}"), format!("a {} widget needs {field}", self.kind.name()));
            }
            if present && !required.contains(&field) && !allowed.contains(&field) {
                errors.push(format!("{path}/{field}"), format!("a {} widget has no {field}", self.kind.name()));
            }
        }
        if matches!(self.kind, Bar | Pie) && self.property.is_some() == self.relation.is_some() {
            errors.push(path.to_string(), "count by one property or one relation");
        }
        if let Some(function) = &self.function {
            let numeric = ["sum", "avg", "min", "max", "median"].contains(&function.as_str());
            if function != "count" && !numeric {
                errors.push(format!("{path}/function"), "count, sum, avg, min, max or median");
            } else if numeric != self.property.is_some() {
                errors.push(format!("{path}/property"), format!("'{function}' needs exactly one number property"));
            }
        }
        if self.kind == Line {
            let aggregate = self.blueprint.is_some() && self.scorecard.is_none();
            let sources = [self.scorecard.is_some(), self.initiative.is_some(), aggregate];
            if sources.iter().filter(|s| **s).count() != 1 {
                errors.push(path.to_string(), "a line follows one scorecard, initiative or aggregate (blueprint)");
            }
            if self.scorecard.is_some() && (self.blueprint.is_none() || self.level.is_none()) {
                errors.push(path.to_string(), "a scorecard line names the blueprint and the level it counts");
            }
        }
        if self.limit.is_some_and(|l| !(1..=MAX_ROWS).contains(&l)) {
            errors.push(format!("{path}/limit"), format!("a table shows 1 to {MAX_ROWS} rows"));
        }
        if self.days.is_some_and(|d| !(1..=MAX_DAYS).contains(&d)) {
            errors.push(format!("{path}/days"), format!("1 to {MAX_DAYS} days"));
        }
        if self.text.as_ref().is_some_and(|t| t.len() > MAX_MARKDOWN) {
            errors.push(format!("{path}/text"), format!("at most {MAX_MARKDOWN} bytes"));
        }
    }

    /// The widget's title, or one made from what it shows.
    pub fn heading(&self) -> String {
        if let Some(title) = &self.title {
            return title.clone();
        }
        let of = |what: &Option<String>| what.clone().unwrap_or_default();
        match self.kind {
            WidgetKind::Number => format!("{} of {}", self.function.as_deref().unwrap_or("count"), of(&self.blueprint)),
            WidgetKind::Bar | WidgetKind::Pie => {
                format!(
                    "{} by {}",
                    of(&self.blueprint),
                    self.property.clone().or(self.relation.clone()).unwrap_or_default()
                )
            }
            WidgetKind::Line => {
                self.scorecard.clone().or(self.initiative.clone()).or(self.blueprint.clone()).unwrap_or_default()
            }
            WidgetKind::Table => of(&self.blueprint),
            WidgetKind::Scorecard => of(&self.scorecard),
            WidgetKind::Initiative => of(&self.initiative),
            WidgetKind::Dora => "DORA metrics".into(),
            WidgetKind::Markdown => String::new(),
        }
    }

    pub fn line_source(&self) -> Option<LineSource<'_>> {
        if self.kind != WidgetKind::Line {
            return None;
        }
        match (&self.scorecard, &self.initiative, &self.blueprint, &self.level) {
            (Some(scorecard), None, Some(blueprint), Some(level)) => {
                Some(LineSource::Level { blueprint, scorecard, level })
            }
            (None, Some(initiative), None, _) => Some(LineSource::Initiative(initiative)),
            (None, None, Some(_), _) => Some(LineSource::Aggregate(self.series_key())),
            _ => None,
        }
    }

    /// The key of an aggregate's daily series: the same aggregate on two dashboards is one series.
    pub fn series_key(&self) -> String {
        let aggregate = json!([self.blueprint, self.query, self.function.as_deref().unwrap_or("count"), self.property]);
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(aggregate.to_string().as_bytes());
        format!("aggregate/{}", crate::hex(&digest[..8]))
    }

    /// The widget's query, narrowed to `value` of its property (a bar's or a pie's group): the
    /// search behind one group.
    pub fn group_query(&self, value: &Value) -> Value {
        let field = match (&self.property, &self.relation) {
            (Some(p), _) => json!({"property": p}),
            (None, Some(r)) => json!({"relation": r}),
            (None, None) => return self.query_or_all(),
        };
        let mut rule = field;
        if value.is_null() {
            rule["operator"] = json!("isEmpty");
        } else if self.property.as_deref() == Some("$team") || self.relation.is_some() {
            rule["operator"] = json!("containsAny");
            rule["value"] = json!([value]);
        } else {
            rule["operator"] = json!("=");
            rule["value"] = value.clone();
        }
        json!({"combinator": "and", "rules": [self.query_or_all(), rule]})
    }

    /// The widget's query, or one that admits everything.
    pub fn query_or_all(&self) -> Value {
        self.query.clone().unwrap_or_else(|| json!({"combinator": "and", "rules": []}))
    }
}

impl WidgetKind {
    pub fn name(self) -> &'static str {
        match self {
            WidgetKind::Number => "number",
            WidgetKind::Bar => "bar",
            WidgetKind::Pie => "pie",
            WidgetKind::Line => "line",
            WidgetKind::Table => "table",
            WidgetKind::Scorecard => "scorecard",
            WidgetKind::Initiative => "initiative",
            WidgetKind::Dora => "dora",
            WidgetKind::Markdown => "markdown",
        }
    }
}

/// What a team's default dashboard shows: its services' blueprint, their scorecards (blueprint,
/// scorecard), whether DORA has deployments to read, and the initiatives about its services.
pub struct TeamContext<'a> {
    pub service_blueprint: Option<&'a str>,
    pub scorecards: &'a [(String, String)],
    pub dora: bool,
    pub initiatives: &'a [String],
}

/// The dashboard a team gets until it saves its own: what it owns, its readiness, its delivery and
/// the initiatives that concern it.
pub fn team_default(team: &str, title: &str, context: &TeamContext) -> Dashboard {
    let TeamContext { service_blueprint, scorecards, dora, initiatives } = *context;
    let owned =
        json!({"combinator": "and", "rules": [{"property": "$team", "operator": "containsAny", "value": [team]}]});
    let mut widgets = vec![Widget::markdown(&format!(
        "What **{title}** owns, how ready it is, how it delivers, and the initiatives that concern it. \
         Change this page with *Edit*: it is a JSON or YAML document of widgets."
    ))];
    if let Some(blueprint) = service_blueprint {
        widgets.push(Widget {
            title: Some("Services".into()),
            blueprint: Some(blueprint.into()),
            query: Some(owned.clone()),
            ..Widget::of(WidgetKind::Number)
        });
        widgets.push(Widget {
            title: Some("Services".into()),
            blueprint: Some(blueprint.into()),
            query: Some(owned.clone()),
            columns: vec!["$title".into(), "lifecycle".into()],
            limit: Some(10),
            ..Widget::of(WidgetKind::Table)
        });
    }
    for (blueprint, scorecard) in scorecards {
        widgets.push(Widget {
            blueprint: Some(blueprint.clone()),
            scorecard: Some(scorecard.clone()),
            team: Some(team.into()),
            ..Widget::of(WidgetKind::Scorecard)
        });
    }
    if dora {
        widgets.push(Widget { team: Some(team.into()), days: Some(30), ..Widget::of(WidgetKind::Dora) });
    }
    for initiative in initiatives {
        widgets.push(Widget {
            initiative: Some(initiative.clone()),
            team: Some(team.into()),
            ..Widget::of(WidgetKind::Initiative)
        });
    }
    Dashboard { identifier: team.to_string(), title: Some(title.to_string()), description: None, widgets }
}

impl Widget {
    pub fn of(kind: WidgetKind) -> Widget {
        Widget {
            kind,
            title: None,
            blueprint: None,
            query: None,
            function: None,
            property: None,
            relation: None,
            columns: Vec::new(),
            limit: None,
            scorecard: None,
            level: None,
            initiative: None,
            team: None,
            service: None,
            days: None,
            text: None,
        }
    }

    fn markdown(text: &str) -> Widget {
        Widget { text: Some(text.into()), ..Widget::of(WidgetKind::Markdown) }
    }
}

#[cfg(test)]
mod tests;
