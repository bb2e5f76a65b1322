//! Storage of secrets, runner tokens and settings.

/// Implements [`crate::SecretStore`] for a backend's transaction type: `$tx` has a field
/// `tx: sqlx::Transaction<'static, $db>`.
macro_rules! secret_store {
    ($tx:ty, $db:ty) => {
        use portolan_model::Millis;
        use sqlx::Row;

        use crate::shared::{parse_json, to_json};
        use crate::{Result, RunnerToken, SecretMeta, SecretStore};

        type DbRow = <$db as sqlx::Database>::Row;

        fn runner_token_from_row(row: &DbRow) -> Result<RunnerToken> {
            Ok(RunnerToken {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                token_sha256: row.try_get("token_sha256")?,
                labels: parse_json(&row.try_get::<String, _>("labels")?)?,
                created_at: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
                last_used_at: row.try_get("last_used_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        #[async_trait::async_trait]
        impl SecretStore for $tx {
            async fn put_secret(&mut self, name: &str, sealed: &[u8], at: Millis, by: &str) -> Result<bool> {
                let existed: Option<String> = sqlx::query_scalar("SELECT name FROM secrets WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO secrets (name, sealed, created_at, created_by, updated_at, updated_by)
                     VALUES ($1, $2, $3, $4, $3, $4)
                     ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at,
                        updated_by = excluded.updated_by",
                )
                .bind(name)
                .bind(sealed)
                .bind(at)
                .bind(by)
                .execute(&mut *self.tx)
                .await?;
                Ok(existed.is_none())
            }

            async fn secret(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
                Ok(sqlx::query_scalar("SELECT sealed FROM secrets WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *self.tx)
                    .await?)
            }

            async fn secrets(&mut self) -> Result<Vec<SecretMeta>> {
                let rows = sqlx::query("SELECT name, created_at, created_by, updated_at, updated_by FROM secrets ORDER BY name")
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(SecretMeta {
                            name: row.try_get("name")?,
                            created_at: row.try_get("created_at")?,
                            created_by: row.try_get("created_by")?,
                            updated_at: row.try_get("updated_at")?,
                            updated_by: row.try_get("updated_by")?,
                        })
                    })
                    .collect()
            }

            async fn delete_secret(&mut self, name: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM secrets WHERE name = $1").bind(name).execute(&mut *self.tx).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_runner_token(&mut self, token: &RunnerToken) -> Result<()> {
                sqlx::query(
                    "INSERT INTO runner_tokens (id, name, token_sha256, labels, created_at, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&token.id)
                .bind(&token.name)
                .bind(&token.token_sha256)
                .bind(to_json(&token.labels)?)
                .bind(token.created_at)
                .bind(&token.created_by)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn runner_token(&mut self, token_sha256: &str) -> Result<Option<RunnerToken>> {
                let row = sqlx::query("SELECT * FROM runner_tokens WHERE token_sha256 = $1")
                    .bind(token_sha256)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.as_ref().map(runner_token_from_row).transpose()
            }

            async fn runner_tokens(&mut self) -> Result<Vec<RunnerToken>> {
                let rows = sqlx::query("SELECT * FROM runner_tokens ORDER BY created_at, id").fetch_all(&mut *self.tx).await?;
                rows.iter().map(runner_token_from_row).collect()
            }

            async fn revoke_runner_token(&mut self, id: &str, at: Millis) -> Result<bool> {
                let done = sqlx::query("UPDATE runner_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn touch_runner_token(&mut self, id: &str, at: Millis) -> Result<()> {
                sqlx::query("UPDATE runner_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn setting(&mut self, name: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *self.tx)
                    .await?)
            }

            /// The stored value of a setting, storing `value` first if there is none.
            async fn setting_or_insert(&mut self, name: &str, value: &str) -> Result<String> {
                sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .bind(value)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_one(&mut *self.tx).await?)
            }

            async fn put_setting(&mut self, name: &str, value: &str) -> Result<()> {
                sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
                    .bind(name)
                    .bind(value)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use secret_store;
