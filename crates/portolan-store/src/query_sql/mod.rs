//! Translation of the query language to SQL, for both backends. The meaning is fixed by the
//! model's in-memory evaluator (`portolan_model::query`); this module must agree with it, and the
//! conformance suite's property test checks that it does.
//!
//! Every predicate produced here is a boolean that is never NULL, so `NOT` negates it exactly.
//! Property and relation names are inlined into JSON paths: they are schema identifiers, which
//! the model restricts to `[A-Za-z0-9_@=-]`, and are checked again here before use.

mod aggregate;
mod past;
mod plan;
mod predicate;
mod search;

use portolan_model::query::Scalar;

pub use aggregate::{SqlRunner, aggregate, group_key, run_aggregate};
pub use past::{add_past, merge_page};
pub use plan::{Aggregate, AggregatePlan, AggregateResult, MAX_GROUPS, Position, SearchPlan, Sort};
pub use predicate::{COMMON_TEXT, predicate, text_frequency, text_phrases};
pub use search::{PROPERTY_INDEX_PREFIX, property_index_changes, search};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// SQL text and its bound parameters, numbered (`?N` on SQLite, `$N` on PostgreSQL).
pub struct Sql {
    pub dialect: Dialect,
    pub text: String,
    pub params: Vec<Param>,
    /// FTS5 queries of text rules common enough that a search reads its ordered index instead.
    pub common_text: Vec<String>,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Sql { dialect, text: String::new(), params: Vec::new(), common_text: Vec::new() }
    }

    /// Adds a parameter and returns its placeholder.
    pub fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.params.len()),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }

    pub(super) fn bind_scalar(&mut self, value: &Scalar) -> String {
        let param = match (value, self.dialect) {
            (Scalar::Str(s), _) => Param::Text(s.clone()),
            (Scalar::Num(n), _) => Param::Float(*n),
            (Scalar::Bool(b), Dialect::Postgres) => Param::Bool(*b),
            // SQLite's JSON functions give booleans as 1 and 0.
            (Scalar::Bool(b), Dialect::Sqlite) => Param::Int(i64::from(*b)),
        };
        self.bind(param)
    }

    pub(super) fn false_literal(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "0",
            Dialect::Postgres => "FALSE",
        }
    }
}
