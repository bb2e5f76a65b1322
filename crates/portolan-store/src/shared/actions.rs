//! Storage of actions.

/// Implements [`crate::ActionStore`] for a backend's transaction type: `$tx` has a field
/// `tx: sqlx::Transaction<'static, $db>`.
macro_rules! action_store {
    ($tx:ty, $db:ty) => {
        use portolan_model::action::Action;
        use sqlx::Row;

        use crate::shared::to_json;
        use crate::{ActionRecord, ActionStore, Result, StoreError};

        type DbRow = <$db as sqlx::Database>::Row;

        fn action_from_row(row: &DbRow) -> Result<ActionRecord> {
            Ok(ActionRecord {
                action: Action::from_stored(&row.try_get::<String, _>("document")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                created_at: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
                updated_at: row.try_get("updated_at")?,
                updated_by: row.try_get("updated_by")?,
            })
        }

        #[async_trait::async_trait]
        impl ActionStore for $tx {
            async fn actions(&mut self) -> Result<Vec<ActionRecord>> {
                let rows = sqlx::query("SELECT * FROM actions ORDER BY identifier").fetch_all(&mut *self.tx).await?;
                rows.iter().map(action_from_row).collect()
            }

            async fn action(&mut self, identifier: &str) -> Result<Option<ActionRecord>> {
                let row = sqlx::query("SELECT * FROM actions WHERE identifier = $1")
                    .bind(identifier)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.as_ref().map(action_from_row).transpose()
            }

            async fn put_action(&mut self, record: &ActionRecord, insert_only: bool) -> Result<()> {
                let sql = if insert_only {
                    "INSERT INTO actions (identifier, document, created_at, created_by, updated_at, updated_by)
                     VALUES ($1, $2, $3, $4, $5, $6)"
                } else {
                    "INSERT INTO actions (identifier, document, created_at, created_by, updated_at, updated_by)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (identifier) DO UPDATE SET document = excluded.document,
                        updated_at = excluded.updated_at, updated_by = excluded.updated_by"
                };
                sqlx::query(sql)
                    .bind(&record.action.identifier)
                    .bind(to_json(&record.action)?)
                    .bind(record.created_at)
                    .bind(&record.created_by)
                    .bind(record.updated_at)
                    .bind(&record.updated_by)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn delete_action(&mut self, identifier: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM actions WHERE identifier = $1")
                    .bind(identifier)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use action_store;
