//! Storage of what catalog-as-code sources applied.

/// Implements [`crate::SourceStore`] for a backend's transaction type: `$tx` has a field
/// `tx: sqlx::Transaction`.
macro_rules! source_store {
    ($tx:ty, $db:ty) => {
        use std::collections::HashMap;

        use portolan_model::Millis;
        use portolan_model::manifest::{Kind, ObjectKey};
        use sqlx::Row;

        use crate::{AppliedObject, Result, SourceStore, SourceSummary, StoreError};

        fn key_from(kind: &str, name: String) -> Result<ObjectKey> {
            let kind =
                Kind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("unknown applied kind '{kind}'")))?;
            Ok(ObjectKey::new(kind, name))
        }

        #[async_trait::async_trait]
        impl SourceStore for $tx {
            async fn applied_objects(&mut self, source: Option<&str>) -> Result<HashMap<ObjectKey, AppliedObject>> {
                let rows = sqlx::query(
                    "SELECT kind, name, source, file, applied_at FROM applied_objects WHERE $1 IS NULL OR source = $1",
                )
                .bind(source)
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|row| {
                        let key = key_from(&row.try_get::<String, _>("kind")?, row.try_get("name")?)?;
                        let object = AppliedObject {
                            source: row.try_get("source")?,
                            file: row.try_get("file")?,
                            applied_at: row.try_get("applied_at")?,
                        };
                        Ok((key, object))
                    })
                    .collect()
            }

            async fn applied_object(&mut self, key: &ObjectKey) -> Result<Option<AppliedObject>> {
                let row =
                    sqlx::query("SELECT source, file, applied_at FROM applied_objects WHERE kind = $1 AND name = $2")
                        .bind(key.kind.as_str())
                        .bind(&key.name)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                row.map(|row| {
                    Ok(AppliedObject {
                        source: row.try_get("source")?,
                        file: row.try_get("file")?,
                        applied_at: row.try_get("applied_at")?,
                    })
                })
                .transpose()
            }

            async fn record_applied(
                &mut self,
                source: &str,
                objects: &[(ObjectKey, String)],
                at: Millis,
            ) -> Result<()> {
                // Many rows a statement: an apply of a large catalog records every entity.
                for chunk in objects.chunks(500) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO applied_objects (kind, name, source, file, applied_at) ",
                    );
                    insert.push_values(chunk, |mut row, (key, file)| {
                        row.push_bind(key.kind.as_str())
                            .push_bind(&key.name)
                            .push_bind(source)
                            .push_bind(file)
                            .push_bind(at);
                    });
                    insert.push(
                        " ON CONFLICT (kind, name) DO UPDATE SET source = excluded.source, file = excluded.file,
                           applied_at = excluded.applied_at",
                    );
                    insert.build().execute(&mut *self.tx).await?;
                }
                Ok(())
            }

            async fn forget_applied(&mut self, keys: &[ObjectKey]) -> Result<()> {
                for key in keys {
                    sqlx::query("DELETE FROM applied_objects WHERE kind = $1 AND name = $2")
                        .bind(key.kind.as_str())
                        .bind(&key.name)
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(())
            }

            async fn sources(&mut self) -> Result<Vec<SourceSummary>> {
                let rows = sqlx::query(
                    "SELECT source, COUNT(*) AS objects, MAX(applied_at) AS applied_at FROM applied_objects
                     GROUP BY source ORDER BY source",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(SourceSummary {
                            source: row.try_get("source")?,
                            objects: row.try_get::<i64, _>("objects")?,
                            applied_at: row.try_get("applied_at")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use source_store;
