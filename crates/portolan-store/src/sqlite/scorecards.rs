//! Scorecards and computed values.

use sqlx::AssertSqlSafe;

use super::SqliteTx;
use super::entities::IN_CHUNK;
use crate::shared::to_json;

crate::shared::scorecard_store!(SqliteTx, sqlx::Sqlite, {
    async fn put_scorecard_results(&mut self, blueprint: &str, results: &[(String, Map<String, Value>)]) -> Result<()> {
        for chunk in results.chunks(IN_CHUNK) {
            let rows = vec!["(?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "UPDATE entities SET scorecards = v.column2 FROM (VALUES {rows}) AS v
                 WHERE entities.blueprint = ? AND entities.identifier = v.column1"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (identifier, scores) in chunk {
                query = query.bind(identifier).bind(to_json(scores)?);
            }
            query.bind(blueprint).execute(&mut *self.tx).await?;
        }
        Ok(())
    }
});
