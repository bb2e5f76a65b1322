//! What a scorecard is, as written: its levels and rules. Kept apart from scoring so that the
//! query language (whose `scorecard` rules compare levels) and scorecards do not depend on each
//! other.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FieldErrors;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scorecard {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Lowest first; the first is where every scored entity starts.
    #[serde(default = "default_levels")]
    pub levels: Vec<Level>,
    /// Which entities of the blueprint are scored (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    pub rules: Vec<ScorecardRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScorecardRule {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The title of the level this rule is needed for.
    pub level: String,
    #[schema(value_type = Object)]
    pub query: Value,
}

fn default_levels() -> Vec<Level> {
    [("Basic", "paleBlue"), ("Bronze", "bronze"), ("Silver", "silver"), ("Gold", "gold")]
        .into_iter()
        .map(|(title, color)| Level { title: title.into(), color: Some(color.into()) })
        .collect()
}

/// A scorecard with its queries parsed, ready to score entities.
impl Scorecard {
    pub fn from_json(value: Value) -> Result<Self, FieldErrors> {
        crate::error::from_json(value)
    }

    /// The index of a level title.
    pub fn level_index(&self, title: &str) -> Option<usize> {
        self.levels.iter().position(|l| l.title == title)
    }
}
