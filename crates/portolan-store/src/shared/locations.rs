//! Storage of locations.

/// Implements [`crate::LocationStore`] for a backend's transaction type: `$tx` has a field
/// `tx: sqlx::Transaction`.
macro_rules! location_store {
    ($tx:ty) => {
        use portolan_model::Millis;
        use portolan_model::manifest::location::Location;

        use crate::shared::{parse_json, to_json};
        use crate::{LocationStore, Result};

        #[async_trait::async_trait]
        impl LocationStore for $tx {
            async fn put_location(&mut self, location: &Location) -> Result<()> {
                sqlx::query(
                    "INSERT INTO locations (id, document, next_sync_at, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET document = excluded.document, next_sync_at = excluded.next_sync_at",
                )
                .bind(&location.id)
                .bind(to_json(location)?)
                .bind(location.next_sync_at)
                .bind(location.created_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn location(&mut self, id: &str) -> Result<Option<Location>> {
                let text: Option<String> = sqlx::query_scalar("SELECT document FROM locations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                text.as_deref().map(parse_json).transpose()
            }

            async fn locations(&mut self) -> Result<Vec<Location>> {
                let texts: Vec<String> = sqlx::query_scalar("SELECT document FROM locations ORDER BY created_at, id")
                    .fetch_all(&mut *self.tx)
                    .await?;
                texts.iter().map(|t| parse_json(t)).collect()
            }

            async fn delete_location(&mut self, id: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM locations WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn claim_due_location(&mut self, now: Millis) -> Result<Option<Location>> {
                let due: Option<(String, i64)> = sqlx::query_as(
                    "SELECT id, next_sync_at FROM locations WHERE next_sync_at <= $1 ORDER BY next_sync_at LIMIT 1",
                )
                .bind(now)
                .fetch_optional(&mut *self.tx)
                .await?;
                let Some((id, was)) = due else { return Ok(None) };
                let Some(mut location) = self.location(&id).await? else { return Ok(None) };
                location.next_sync_at = now + location.interval_seconds * 1000;
                // Only one claimer moves the time on: another replica's claim finds it moved.
                let claimed = sqlx::query("UPDATE locations SET next_sync_at = $1, document = $2 WHERE id = $3 AND next_sync_at = $4")
                    .bind(location.next_sync_at)
                    .bind(to_json(&location)?)
                    .bind(&id)
                    .bind(was)
                    .execute(&mut *self.tx)
                    .await?;
                Ok((claimed.rows_affected() == 1).then_some(location))
            }
        }
    };
}

pub(crate) use location_store;
