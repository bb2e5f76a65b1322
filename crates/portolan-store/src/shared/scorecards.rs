//! Storage of scorecards and of the values computed for entities.

/// Implements [`crate::ScorecardStore`] for a backend's transaction type `$tx` (a field
/// `tx: sqlx::Transaction<'static, $db>`, `json_param`/`json_column` for JSON values): the
/// methods in braces are the backend's own.
macro_rules! scorecard_store {
    ($tx:ty, $db:ty, { $($own:tt)* }) => {
        use portolan_model::EntityRef;
        use serde_json::{Map, Value};
        use sqlx::Row;

        use crate::{Result, ScorecardRecord, ScorecardStore};

        #[async_trait::async_trait]
        impl ScorecardStore for $tx {
            $($own)*

            async fn scorecards(&mut self, blueprint: &str) -> Result<Vec<ScorecardRecord>> {
                let rows = sqlx::query("SELECT * FROM scorecards WHERE blueprint = $1 ORDER BY identifier")
                    .bind(blueprint)
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(ScorecardRecord {
                            blueprint: row.try_get("blueprint")?,
                            scorecard: <$tx>::json_column(row, "document")?,
                            created_at: row.try_get("created_at")?,
                            created_by: row.try_get("created_by")?,
                            updated_at: row.try_get("updated_at")?,
                            updated_by: row.try_get("updated_by")?,
                        })
                    })
                    .collect()
            }

            async fn put_scorecard(&mut self, record: &ScorecardRecord) -> Result<()> {
                sqlx::query(
                    "INSERT INTO scorecards (blueprint, identifier, document, created_at, created_by, updated_at, updated_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (blueprint, identifier) DO UPDATE SET document = excluded.document,
                         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(&record.blueprint)
                .bind(&record.scorecard.identifier)
                .bind(<$tx>::json_param(&record.scorecard)?)
                .bind(record.created_at)
                .bind(&record.created_by)
                .bind(record.updated_at)
                .bind(&record.updated_by)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn delete_scorecard(&mut self, blueprint: &str, identifier: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM scorecards WHERE blueprint = $1 AND identifier = $2")
                    .bind(blueprint)
                    .bind(identifier)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn put_computed(
                &mut self,
                entity: &EntityRef,
                version: i64,
                properties: &Map<String, Value>,
                scorecards: &Map<String, Value>,
                diagnostics: &Map<String, Value>,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE entities SET properties = $1, scorecards = $2, diagnostics = $3
                     WHERE blueprint = $4 AND identifier = $5 AND version = $6",
                )
                .bind(<$tx>::json_param(properties)?)
                .bind(<$tx>::json_param(scorecards)?)
                .bind(<$tx>::json_param(diagnostics)?)
                .bind(&entity.blueprint)
                .bind(&entity.identifier)
                .bind(version)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use scorecard_store;
