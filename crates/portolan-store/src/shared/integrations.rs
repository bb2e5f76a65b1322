//! Storage of integrations and their events.

/// Implements [`crate::IntegrationStore`] for a backend's transaction type: `$tx` has a field
/// `tx: sqlx::Transaction`.
macro_rules! integration_store {
    ($tx:ty) => {
        use portolan_model::Millis;
        use portolan_model::integration::{Installation, Integration, IntegrationEvent};

        use crate::shared::{parse_json, to_json};
        use crate::{IntegrationStore, Result};

        #[async_trait::async_trait]
        impl IntegrationStore for $tx {
            async fn put_integration(&mut self, integration: &Integration, key_hash: Option<&str>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO integrations (id, document, kind, key_hash, next_sync_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (id) DO UPDATE SET document = excluded.document, kind = excluded.kind,
                       key_hash = COALESCE(excluded.key_hash, integrations.key_hash),
                       next_sync_at = excluded.next_sync_at",
                )
                .bind(&integration.identifier)
                .bind(to_json(integration)?)
                .bind(integration.kind.name())
                .bind(key_hash)
                .bind(integration.next_sync_at)
                .bind(integration.created_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn integration(&mut self, id: &str) -> Result<Option<Integration>> {
                let text: Option<String> = sqlx::query_scalar("SELECT document FROM integrations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                text.as_deref().map(parse_json).transpose()
            }

            async fn integration_key(&mut self, id: &str) -> Result<Option<String>> {
                let hash: Option<Option<String>> =
                    sqlx::query_scalar("SELECT key_hash FROM integrations WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                Ok(hash.flatten())
            }

            async fn integration_by_key(&mut self, key_hash: &str) -> Result<Option<Integration>> {
                let text: Option<String> = sqlx::query_scalar("SELECT document FROM integrations WHERE key_hash = $1")
                    .bind(key_hash)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                text.as_deref().map(parse_json).transpose()
            }

            async fn integrations(&mut self) -> Result<Vec<Integration>> {
                let texts: Vec<String> =
                    sqlx::query_scalar("SELECT document FROM integrations ORDER BY created_at, id")
                        .fetch_all(&mut *self.tx)
                        .await?;
                texts.iter().map(|t| parse_json(t)).collect()
            }

            async fn delete_integration(&mut self, id: &str) -> Result<bool> {
                sqlx::query("DELETE FROM integration_events WHERE integration = $1")
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await?;
                let done =
                    sqlx::query("DELETE FROM integrations WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn claim_due_integration(&mut self, now: Millis) -> Result<Option<Integration>> {
                let due: Option<(String, i64)> = sqlx::query_as(
                    "SELECT id, next_sync_at FROM integrations WHERE kind <> 'webhook' AND next_sync_at <= $1
                     ORDER BY next_sync_at LIMIT 1",
                )
                .bind(now)
                .fetch_optional(&mut *self.tx)
                .await?;
                let Some((id, was)) = due else { return Ok(None) };
                let Some(mut integration) = self.integration(&id).await? else { return Ok(None) };
                integration.next_sync_at = now + integration.interval_seconds * 1000;
                // Only one claimer moves the time on: another replica's claim finds it moved.
                let claimed = sqlx::query(
                    "UPDATE integrations SET next_sync_at = $1, document = $2 WHERE id = $3 AND next_sync_at = $4",
                )
                .bind(integration.next_sync_at)
                .bind(to_json(&integration)?)
                .bind(&id)
                .bind(was)
                .execute(&mut *self.tx)
                .await?;
                Ok((claimed.rows_affected() == 1).then_some(integration))
            }

            async fn insert_event(&mut self, event: &IntegrationEvent) -> Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO integration_events (integration, id, received_at, request_id, state, document)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(&event.integration)
                .bind(&event.id)
                .bind(event.received_at)
                .bind(&event.request_id)
                .bind(to_json(&event.state)?.trim_matches('"'))
                .bind(to_json(event)?)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn update_event(&mut self, event: &IntegrationEvent) -> Result<()> {
                sqlx::query(
                    "UPDATE integration_events SET state = $1, document = $2 WHERE integration = $3 AND id = $4",
                )
                .bind(to_json(&event.state)?.trim_matches('"'))
                .bind(to_json(event)?)
                .bind(&event.integration)
                .bind(&event.id)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn event(&mut self, integration: &str, id: &str) -> Result<Option<IntegrationEvent>> {
                let text: Option<String> =
                    sqlx::query_scalar("SELECT document FROM integration_events WHERE integration = $1 AND id = $2")
                        .bind(integration)
                        .bind(id)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                text.as_deref().map(parse_json).transpose()
            }

            async fn events(
                &mut self,
                integration: &str,
                before: Option<(Millis, String)>,
                limit: u32,
            ) -> Result<Vec<IntegrationEvent>> {
                let texts: Vec<String> = match before {
                    None => {
                        sqlx::query_scalar(
                            "SELECT document FROM integration_events WHERE integration = $1
                             ORDER BY received_at DESC, id DESC LIMIT $2",
                        )
                        .bind(integration)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self.tx)
                        .await?
                    }
                    Some((at, id)) => {
                        sqlx::query_scalar(
                            "SELECT document FROM integration_events
                             WHERE integration = $1 AND (received_at < $2 OR (received_at = $2 AND id < $3))
                             ORDER BY received_at DESC, id DESC LIMIT $4",
                        )
                        .bind(integration)
                        .bind(at)
                        .bind(id)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self.tx)
                        .await?
                    }
                };
                texts.iter().map(|t| parse_json(t)).collect()
            }

            async fn delete_events_before(&mut self, integration: &str, before: Millis) -> Result<u64> {
                let done = sqlx::query("DELETE FROM integration_events WHERE integration = $1 AND received_at < $2")
                    .bind(integration)
                    .bind(before)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn put_installation(&mut self, installation: &Installation) -> Result<()> {
                sqlx::query(
                    "INSERT INTO installations (id, document, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET document = excluded.document",
                )
                .bind(&installation.id)
                .bind(to_json(installation)?)
                .bind(installation.created_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn installation(&mut self, id: &str) -> Result<Option<Installation>> {
                let text: Option<String> = sqlx::query_scalar("SELECT document FROM installations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                text.as_deref().map(parse_json).transpose()
            }

            async fn installations(&mut self) -> Result<Vec<Installation>> {
                let texts: Vec<String> =
                    sqlx::query_scalar("SELECT document FROM installations ORDER BY created_at, id")
                        .fetch_all(&mut *self.tx)
                        .await?;
                texts.iter().map(|t| parse_json(t)).collect()
            }

            async fn delete_installation(&mut self, id: &str) -> Result<bool> {
                let done =
                    sqlx::query("DELETE FROM installations WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use integration_store;
