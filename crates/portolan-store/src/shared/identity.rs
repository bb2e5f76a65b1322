//! Storage of accounts, sessions and API tokens.

/// Implements [`crate::IdentityStore`] for a backend's transaction type: `$tx` has a field
/// `tx: sqlx::Transaction<'static, $db>`.
macro_rules! identity_store {
    ($tx:ty, $db:ty) => {
        use portolan_model::Millis;
        use portolan_model::permission::Role;
        use sqlx::Row;

        use crate::{Account, AccountKind, ApiToken, ClientCredentials, IdentityStore, Result, Session, StoreError};

        type DbRow = <$db as sqlx::Database>::Row;

        fn account_from_row(row: &DbRow) -> Result<Account> {
            let role: String = row.try_get("role")?;
            let kind: String = row.try_get("kind")?;
            Ok(Account {
                user: row.try_get("user_id")?,
                password_hash: row.try_get("password_hash")?,
                role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role '{role}'")))?,
                kind: if kind == "service" { AccountKind::Service } else { AccountKind::Person },
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        fn session_from_row(row: &DbRow) -> Result<Session> {
            Ok(Session {
                id_sha256: row.try_get("id_sha256")?,
                user: row.try_get("user_id")?,
                csrf: row.try_get("csrf")?,
                created_at: row.try_get("created_at")?,
                last_seen_at: row.try_get("last_seen_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        }

        fn api_token_from_row(row: &DbRow) -> Result<ApiToken> {
            Ok(ApiToken {
                id: row.try_get("id")?,
                user: row.try_get("user_id")?,
                name: row.try_get("name")?,
                token_sha256: row.try_get("token_sha256")?,
                created_at: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
                expires_at: row.try_get("expires_at")?,
                last_used_at: row.try_get("last_used_at")?,
                revoked_at: row.try_get("revoked_at")?,
                audience: row.try_get("audience")?,
            })
        }

        fn client_credentials_from_row(row: &DbRow) -> Result<ClientCredentials> {
            Ok(ClientCredentials {
                user: row.try_get("user_id")?,
                client_id: row.try_get("client_id")?,
                secret_sha256: row.try_get("secret_sha256")?,
                created_at: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
            })
        }

        #[async_trait::async_trait]
        impl IdentityStore for $tx {
            async fn account(&mut self, user: &str) -> Result<Option<Account>> {
                let row = sqlx::query("SELECT * FROM accounts WHERE user_id = $1")
                    .bind(user)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.as_ref().map(account_from_row).transpose()
            }

            async fn accounts(&mut self) -> Result<Vec<Account>> {
                let rows = sqlx::query("SELECT * FROM accounts ORDER BY user_id").fetch_all(&mut *self.tx).await?;
                rows.iter().map(account_from_row).collect()
            }

            async fn put_account(&mut self, account: &Account) -> Result<()> {
                sqlx::query(
                    "INSERT INTO accounts (user_id, password_hash, role, kind, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash,
                       role = excluded.role, kind = excluded.kind, updated_at = excluded.updated_at",
                )
                .bind(&account.user)
                .bind(&account.password_hash)
                .bind(account.role.as_str())
                .bind(account.kind.as_str())
                .bind(account.created_at)
                .bind(account.updated_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn insert_session(&mut self, session: &Session) -> Result<()> {
                sqlx::query(
                    "INSERT INTO sessions (id_sha256, user_id, csrf, created_at, last_seen_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&session.id_sha256)
                .bind(&session.user)
                .bind(&session.csrf)
                .bind(session.created_at)
                .bind(session.last_seen_at)
                .bind(session.expires_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn session(&mut self, id_sha256: &str) -> Result<Option<Session>> {
                let row = sqlx::query("SELECT * FROM sessions WHERE id_sha256 = $1")
                    .bind(id_sha256)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.as_ref().map(session_from_row).transpose()
            }

            async fn touch_session(&mut self, id_sha256: &str, at: Millis) -> Result<()> {
                sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id_sha256 = $1")
                    .bind(id_sha256)
                    .bind(at)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn delete_session(&mut self, id_sha256: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1")
                    .bind(id_sha256)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_sessions_of(&mut self, user: &str) -> Result<u64> {
                let done =
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user).execute(&mut *self.tx).await?;
                Ok(done.rows_affected())
            }

            async fn insert_api_token(&mut self, token: &ApiToken) -> Result<()> {
                sqlx::query(
                    "INSERT INTO api_tokens (id, user_id, name, token_sha256, created_at, created_by, expires_at, audience)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&token.id)
                .bind(&token.user)
                .bind(&token.name)
                .bind(&token.token_sha256)
                .bind(token.created_at)
                .bind(&token.created_by)
                .bind(token.expires_at)
                .bind(&token.audience)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn api_token(&mut self, token_sha256: &str) -> Result<Option<ApiToken>> {
                let row = sqlx::query("SELECT * FROM api_tokens WHERE token_sha256 = $1")
                    .bind(token_sha256)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.as_ref().map(api_token_from_row).transpose()
            }

            /// Every token, or only `user`'s.
            async fn api_tokens(&mut self, user: Option<&str>) -> Result<Vec<ApiToken>> {
                let rows = sqlx::query(
                    "SELECT * FROM api_tokens WHERE CAST($1 AS TEXT) IS NULL OR user_id = $1 ORDER BY created_at, id",
                )
                .bind(user)
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(api_token_from_row).collect()
            }

            async fn revoke_api_token(&mut self, id: &str, at: Millis) -> Result<bool> {
                let done = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_expired_api_tokens(&mut self, name: &str, before: Millis) -> Result<u64> {
                let done = sqlx::query("DELETE FROM api_tokens WHERE name = $1 AND expires_at < $2")
                    .bind(name)
                    .bind(before)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn touch_api_token(&mut self, id: &str, at: Millis) -> Result<()> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn put_client_credentials(&mut self, credentials: &ClientCredentials) -> Result<()> {
                sqlx::query(
                    "INSERT INTO client_credentials (user_id, client_id, secret_sha256, created_at, created_by)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (user_id) DO UPDATE SET client_id = excluded.client_id,
                       secret_sha256 = excluded.secret_sha256, created_at = excluded.created_at,
                       created_by = excluded.created_by",
                )
                .bind(&credentials.user)
                .bind(&credentials.client_id)
                .bind(&credentials.secret_sha256)
                .bind(credentials.created_at)
                .bind(&credentials.created_by)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn client_credentials(&mut self, client_id: &str) -> Result<Option<ClientCredentials>> {
                let row = sqlx::query("SELECT * FROM client_credentials WHERE client_id = $1")
                    .bind(client_id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.as_ref().map(client_credentials_from_row).transpose()
            }

            async fn client_credentials_of(&mut self, user: Option<&str>) -> Result<Vec<ClientCredentials>> {
                let rows = sqlx::query(
                    "SELECT * FROM client_credentials WHERE CAST($1 AS TEXT) IS NULL OR user_id = $1 ORDER BY user_id",
                )
                .bind(user)
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(client_credentials_from_row).collect()
            }

            async fn delete_client_credentials(&mut self, user: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM client_credentials WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use identity_store;
