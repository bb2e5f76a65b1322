//! Running searches and aggregates: the SQL comes from `query_sql` in the backend's dialect.

/// Implements [`crate::SearchStore`] and [`crate::query_sql::SqlRunner`] for a backend's
/// transaction type `$tx` (a field `tx: sqlx::Transaction<'static, $db>`); `$entity_from_row`
/// reads an entity row.
macro_rules! search_store {
    ($tx:ty, $db:ty, $dialect:expr, $entity_from_row:path) => {
        use portolan_model::Entity;
        use sqlx::{AssertSqlSafe, Row};

        use crate::query_sql::{self, AggregatePlan, AggregateResult, Param, SearchPlan, Sql, SqlRunner};
        use crate::{Result, SearchStore};

        type DbQuery = sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments>;

        fn bind(mut query: DbQuery, params: Vec<Param>) -> DbQuery {
            for param in params {
                query = match param {
                    Param::Text(s) => query.bind(s),
                    Param::Int(i) => query.bind(i),
                    Param::Float(f) => query.bind(f),
                    Param::Bool(b) => query.bind(b),
                };
            }
            query
        }

        #[async_trait::async_trait]
        impl SearchStore for $tx {
            async fn search(&mut self, plan: &SearchPlan) -> Result<Vec<Entity>> {
                // A page of a text found everywhere is quicker read in order than from the text
                // index (SQLite cannot tell which; PostgreSQL's planner can).
                let mut common_text = Vec::new();
                if $dialect == query_sql::Dialect::Sqlite {
                    for phrase in query_sql::text_phrases(&plan.query) {
                        let probe = query_sql::text_frequency(&phrase);
                        let row =
                            bind(sqlx::query(AssertSqlSafe(probe.text)), probe.params).fetch_one(&mut *self.tx).await?;
                        if row.try_get::<i64, _>("n")? >= query_sql::COMMON_TEXT {
                            common_text.push(phrase);
                        }
                    }
                }
                let sql = query_sql::search($dialect, plan, common_text)?;
                let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), sql.params).fetch_all(&mut *self.tx).await?;
                rows.iter().map($entity_from_row).collect()
            }

            async fn aggregate(&mut self, plan: &AggregatePlan) -> Result<AggregateResult> {
                query_sql::run_aggregate(self, $dialect, plan).await
            }
        }

        #[async_trait::async_trait]
        impl SqlRunner for $tx {
            async fn floats(&mut self, sql: Sql) -> Result<Vec<Option<f64>>> {
                let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), sql.params).fetch_all(&mut *self.tx).await?;
                rows.iter().map(|row| Ok(row.try_get::<Option<f64>, _>("value")?)).collect()
            }

            async fn groups(&mut self, sql: Sql) -> Result<Vec<(Option<String>, i64)>> {
                let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), sql.params).fetch_all(&mut *self.tx).await?;
                rows.iter().map(|row| Ok((row.try_get("group_key")?, row.try_get("n")?))).collect()
            }
        }
    };
}

pub(crate) use search_store;
