//! Storage of entities and their references: reading and deleting are the same on both backends;
//! each writes (and locks) its own way.

/// The entity columns, in the order a multi-row write binds them.
pub(crate) const ENTITY_COLUMNS: &str = "blueprint, identifier, title, icon, team, properties, relations, scorecards, diagnostics, version, \
     created_at, created_by, updated_at, updated_by";

/// What makes an entity insert a write guarded by version (see [`crate::EntityStore::put_entities`]):
/// a row comes back for each entity written.
pub(crate) const GUARDED_UPSERT: &str = "ON CONFLICT (blueprint, identifier) DO UPDATE SET
     title = excluded.title, icon = excluded.icon, team = excluded.team,
     properties = excluded.properties, relations = excluded.relations, scorecards = excluded.scorecards, diagnostics = excluded.diagnostics,
     version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by
     WHERE entities.version = excluded.version - 1
     RETURNING id, identifier";

/// Implements [`crate::EntityStore`] for a backend's transaction type `$tx` (a field
/// `tx: sqlx::Transaction<'static, $db>`, and `json_column` reading a JSON column): the methods
/// in braces are the backend's own, the rest are written here. Also defines `entity_from_row`.
macro_rules! entity_store {
    ($tx:ty, $db:ty, { $($own:tt)* }) => {
        use portolan_model::{Entity, EntityRef};
        use sqlx::{AssertSqlSafe, Row};

        use crate::shared::entities::ENTITY_COLUMNS;
        use crate::{EntityStore, Referrer, Result};

        pub(super) fn entity_from_row(row: &<$db as sqlx::Database>::Row) -> Result<Entity> {
            Ok(Entity {
                blueprint: row.try_get("blueprint")?,
                identifier: row.try_get("identifier")?,
                title: row.try_get("title")?,
                icon: row.try_get("icon")?,
                team: <$tx>::json_column(row, "team")?,
                properties: <$tx>::json_column(row, "properties")?,
                relations: <$tx>::json_column(row, "relations")?,
                scorecards: <$tx>::json_column(row, "scorecards")?,
                diagnostics: <$tx>::json_column(row, "diagnostics")?,
                version: row.try_get("version")?,
                created_at: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
                updated_at: row.try_get("updated_at")?,
                updated_by: row.try_get("updated_by")?,
            })
        }

        #[async_trait::async_trait]
        impl EntityStore for $tx {
            $($own)*

            async fn delete_entity(&mut self, blueprint: &str, identifier: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM entities WHERE blueprint = $1 AND identifier = $2")
                    .bind(blueprint)
                    .bind(identifier)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_entities_of(&mut self, blueprint: &str) -> Result<u64> {
                let done =
                    sqlx::query("DELETE FROM entities WHERE blueprint = $1").bind(blueprint).execute(&mut *self.tx).await?;
                Ok(done.rows_affected())
            }

            async fn list_entities(&mut self, blueprint: &str, after: Option<&str>, limit: u32) -> Result<Vec<Entity>> {
                let sql = format!(
                    "SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = $1 AND identifier > $2 ORDER BY identifier LIMIT $3"
                );
                let rows = sqlx::query(AssertSqlSafe(sql))
                    .bind(blueprint)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(entity_from_row).collect()
            }

            async fn count_entities(&mut self, blueprint: &str) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entities WHERE blueprint = $1")
                    .bind(blueprint)
                    .fetch_one(&mut *self.tx)
                    .await?;
                Ok(n.max(0) as u64)
            }

            async fn referrers(&mut self, target: &EntityRef, limit: u32) -> Result<Vec<Referrer>> {
                let rows = sqlx::query(
                    "SELECT DISTINCT e.blueprint, e.identifier, r.via
                     FROM entity_references r JOIN entities e ON e.id = r.source_id
                     WHERE r.target_blueprint = $1 AND r.target_identifier = $2
                     ORDER BY e.blueprint, e.identifier, r.via LIMIT $3",
                )
                .bind(&target.blueprint)
                .bind(&target.identifier)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(Referrer {
                            source: EntityRef { blueprint: row.try_get("blueprint")?, identifier: row.try_get("identifier")? },
                            via: row.try_get("via")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use entity_store;

/// Which entities of a chunk of writes were written, by identifier, from the `RETURNING id,
/// identifier` rows; a conflict when a version guard held one back.
pub(crate) fn written_ids<R: sqlx::Row>(
    rows: &[R],
    expected: usize,
) -> crate::Result<std::collections::HashMap<String, i64>>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    if rows.len() != expected {
        return Err(crate::StoreError::Conflict(format!(
            "{} of {} entities were changed by another writer",
            expected - rows.len(),
            expected
        )));
    }
    let mut ids = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        ids.insert(row.try_get::<String, _>("identifier")?, row.try_get::<i64, _>("id")?);
    }
    Ok(ids)
}

/// The ids of the written entities that existed before: their old references go.
pub(crate) fn updated_ids<'a>(
    writes: impl IntoIterator<Item = &'a crate::EntityWrite>,
    ids: &std::collections::HashMap<String, i64>,
) -> Vec<i64> {
    writes.into_iter().filter(|w| w.entity.version > 1).filter_map(|w| ids.get(&w.entity.identifier).copied()).collect()
}
