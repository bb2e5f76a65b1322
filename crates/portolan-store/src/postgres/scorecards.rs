//! Scorecards and computed values.

use super::PgTx;
use super::entities::ROWS_PER_STATEMENT;
use crate::shared::to_json;

crate::shared::scorecard_store!(PgTx, sqlx::Postgres, {
    async fn put_scorecard_results(&mut self, blueprint: &str, results: &[(String, Map<String, Value>)]) -> Result<()> {
        for chunk in results.chunks(ROWS_PER_STATEMENT) {
            let identifiers: Vec<&str> = chunk.iter().map(|(i, _)| i.as_str()).collect();
            let scores = chunk.iter().map(|(_, s)| to_json(s)).collect::<Result<Vec<String>>>()?;
            sqlx::query(
                "UPDATE entities SET scorecards = v.s::jsonb FROM UNNEST($2::text[], $3::text[]) AS v(i, s)
                 WHERE entities.blueprint = $1 AND entities.identifier = v.i",
            )
            .bind(blueprint)
            .bind(&identifiers)
            .bind(&scores)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
});
