//! Storage of blueprints. Each backend reads one for sharing or locking its own way and keeps
//! its property indexes in step (`sync_property_indexes`); the rest is written here.

/// Implements [`crate::BlueprintStore`] for a backend's transaction type `$tx` (a field
/// `tx: sqlx::Transaction<'static, $db>`, `json_param`/`json_column` for JSON values and
/// `sync_property_indexes`): the methods in braces are the backend's own. Also defines
/// `blueprint_from_row`.
macro_rules! blueprint_store {
    ($tx:ty, $db:ty, { $($own:tt)* }) => {
        use crate::{BlueprintRecord, BlueprintStore, Result};

        fn blueprint_from_row(row: &<$db as sqlx::Database>::Row) -> Result<BlueprintRecord> {
            use sqlx::Row;
            Ok(BlueprintRecord {
                blueprint: <$tx>::json_column(row, "document")?,
                created_at: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
                updated_at: row.try_get("updated_at")?,
                updated_by: row.try_get("updated_by")?,
            })
        }

        /// Inserts a blueprint; with `upsert`, replaces the one with its identifier (keeping its
        /// creation stamp). Without, an existing one is a conflict.
        async fn write_blueprint(tx: &mut $tx, record: &BlueprintRecord, upsert: bool) -> Result<()> {
            let sql = if upsert {
                "INSERT INTO blueprints (identifier, document, created_at, created_by, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (identifier) DO UPDATE SET document = excluded.document,
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by"
            } else {
                "INSERT INTO blueprints (identifier, document, created_at, created_by, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6)"
            };
            sqlx::query(sql)
                .bind(&record.blueprint.identifier)
                .bind(<$tx>::json_param(&record.blueprint)?)
                .bind(record.created_at)
                .bind(&record.created_by)
                .bind(record.updated_at)
                .bind(&record.updated_by)
                .execute(&mut *tx.tx)
                .await?;
            tx.sync_property_indexes().await
        }

        #[async_trait::async_trait]
        impl BlueprintStore for $tx {
            $($own)*

            async fn insert_blueprint(&mut self, record: &BlueprintRecord) -> Result<()> {
                write_blueprint(self, record, false).await
            }

            async fn blueprints(&mut self) -> Result<Vec<BlueprintRecord>> {
                let rows = sqlx::query("SELECT * FROM blueprints ORDER BY identifier").fetch_all(&mut *self.tx).await?;
                rows.iter().map(blueprint_from_row).collect()
            }

            async fn put_blueprint(&mut self, record: &BlueprintRecord) -> Result<()> {
                write_blueprint(self, record, true).await
            }

            async fn delete_blueprint(&mut self, identifier: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM blueprints WHERE identifier = $1")
                    .bind(identifier)
                    .execute(&mut *self.tx)
                    .await?;
                self.sync_property_indexes().await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use blueprint_store;
