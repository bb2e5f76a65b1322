//! Blueprints, and the property indexes that follow them.

use sqlx::AssertSqlSafe;

use super::SqliteTx;
use crate::query_sql::{self, Dialect};

crate::shared::blueprint_store!(SqliteTx, sqlx::Sqlite, {
    async fn blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>> {
        let row = sqlx::query("SELECT * FROM blueprints WHERE identifier = ?")
            .bind(identifier)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(blueprint_from_row).transpose()
    }

    // One writer at a time: whatever a write transaction reads stays as read until it ends.
    async fn lock_blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>> {
        self.blueprint(identifier).await
    }
});

impl SqliteTx {
    /// Creates and drops property indexes to match the blueprints (`query_sql::property_index_changes`).
    pub(super) async fn sync_property_indexes(&mut self) -> Result<()> {
        let blueprints: Vec<_> = self.blueprints().await?.into_iter().map(|r| r.blueprint).collect();
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entities' AND substr(name, 1, length(?1)) = ?1",
        )
        .bind(query_sql::PROPERTY_INDEX_PREFIX)
        .fetch_all(&mut *self.tx)
        .await?;
        let changes = query_sql::property_index_changes(Dialect::Sqlite, &blueprints, &existing);
        if changes.is_empty() {
            return Ok(());
        }
        for statement in changes {
            sqlx::query(AssertSqlSafe(statement)).execute(&mut *self.tx).await?;
        }
        // The shape migration 0007 gives the planner for the other entity indexes: without it a
        // new index is guessed to find ten rows per blueprint, and SQLite chose one for every
        // search of a blueprint (a relation search went from milliseconds to seconds).
        let prefix = query_sql::PROPERTY_INDEX_PREFIX;
        sqlx::query("DELETE FROM sqlite_stat1 WHERE tbl = 'entities' AND substr(idx, 1, length(?1)) = ?1")
            .bind(prefix)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat)
             SELECT 'entities', name, '1000000 100000 10000 1' FROM sqlite_master
             WHERE type = 'index' AND tbl_name = 'entities' AND substr(name, 1, length(?1)) = ?1",
        )
        .bind(prefix)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("ANALYZE sqlite_schema").execute(&mut *self.tx).await?;
        Ok(())
    }
}
