//! Blueprints, and the property indexes that follow them.

use sqlx::AssertSqlSafe;

use super::PgTx;
use crate::query_sql::{self, Dialect};

crate::shared::blueprint_store!(PgTx, sqlx::Postgres, {
    async fn blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>> {
        let sql = format!("SELECT * FROM blueprints WHERE identifier = $1{}", self.share());
        let row = sqlx::query(AssertSqlSafe(sql)).bind(identifier).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(blueprint_from_row).transpose()
    }

    async fn lock_blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>> {
        // Before anything else the change writes: a blueprint's deletion removes its entities
        // first, and must not then wait for the lock while another change builds an index.
        self.lock_property_indexes().await?;
        let row = sqlx::query("SELECT * FROM blueprints WHERE identifier = $1 FOR UPDATE")
            .bind(identifier)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(blueprint_from_row).transpose()
    }
});

impl PgTx {
    /// Blueprint changes take turns (across replicas too) until they commit, so that two never
    /// build or drop the same index.
    async fn lock_property_indexes(&mut self) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('portolan property indexes'))")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Creates and drops property indexes to match the blueprints (`query_sql::property_index_changes`).
    pub(super) async fn sync_property_indexes(&mut self) -> Result<()> {
        self.lock_property_indexes().await?;
        let blueprints: Vec<_> = self.blueprints().await?.into_iter().map(|r| r.blueprint).collect();
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'entities'
             AND left(indexname, length($1)) = $1",
        )
        .bind(query_sql::PROPERTY_INDEX_PREFIX)
        .fetch_all(&mut *self.tx)
        .await?;
        for statement in query_sql::property_index_changes(Dialect::Postgres, &blueprints, &existing) {
            sqlx::query(AssertSqlSafe(statement)).execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}
