//! Storage of accounts, sessions, API tokens and permission documents. As in [`crate::actions`],
//! the SQL is the same on both backends and one macro writes the functions for each.

use portolan_model::Millis;
use portolan_model::permission::Role;

/// Whether an account belongs to a person or is a service account (for CI and scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Person,
    Service,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Person => "person",
            AccountKind::Service => "service",
        }
    }
}

/// How a `_user` entity signs in, and its role.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub user: String,
    pub password_hash: Option<String>,
    pub role: Role,
    pub kind: AccountKind,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A signed-in browser; the cookie value is known only to the browser.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id_sha256: String,
    pub user: String,
    /// The token form posts and API calls made with the cookie must echo.
    pub csrf: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    /// The absolute end, however active the session is.
    pub expires_at: Millis,
}

/// A personal or service-account API token.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: String,
    pub user: String,
    pub name: String,
    pub token_sha256: String,
    pub created_at: Millis,
    pub created_by: String,
    pub expires_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

macro_rules! queries {
    ($db:ty) => {
        use portolan_model::Millis;
        use portolan_model::permission::Role;
        use sqlx::{Row, Transaction};

        use crate::identity::{Account, AccountKind, ApiToken, Session};
        use crate::{Result, StoreError};

        type Tx = Transaction<'static, $db>;
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

        pub async fn account(tx: &mut Tx, user: &str) -> Result<Option<Account>> {
            let row =
                sqlx::query("SELECT * FROM accounts WHERE user_id = $1").bind(user).fetch_optional(&mut **tx).await?;
            row.as_ref().map(account_from_row).transpose()
        }

        pub async fn accounts(tx: &mut Tx) -> Result<Vec<Account>> {
            let rows = sqlx::query("SELECT * FROM accounts ORDER BY user_id").fetch_all(&mut **tx).await?;
            rows.iter().map(account_from_row).collect()
        }

        pub async fn put_account(tx: &mut Tx, account: &Account) -> Result<()> {
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
            .execute(&mut **tx)
            .await?;
            Ok(())
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

        pub async fn insert_session(tx: &mut Tx, session: &Session) -> Result<()> {
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
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        pub async fn session(tx: &mut Tx, id_sha256: &str) -> Result<Option<Session>> {
            let row = sqlx::query("SELECT * FROM sessions WHERE id_sha256 = $1")
                .bind(id_sha256)
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(session_from_row).transpose()
        }

        pub async fn touch_session(tx: &mut Tx, id_sha256: &str, at: Millis) -> Result<()> {
            sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id_sha256 = $1")
                .bind(id_sha256)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        pub async fn delete_session(tx: &mut Tx, id_sha256: &str) -> Result<bool> {
            let done =
                sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1").bind(id_sha256).execute(&mut **tx).await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn delete_sessions_of(tx: &mut Tx, user: &str) -> Result<u64> {
            let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user).execute(&mut **tx).await?;
            Ok(done.rows_affected())
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
            })
        }

        pub async fn insert_api_token(tx: &mut Tx, token: &ApiToken) -> Result<()> {
            sqlx::query(
                "INSERT INTO api_tokens (id, user_id, name, token_sha256, created_at, created_by, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&token.id)
            .bind(&token.user)
            .bind(&token.name)
            .bind(&token.token_sha256)
            .bind(token.created_at)
            .bind(&token.created_by)
            .bind(token.expires_at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        pub async fn api_token(tx: &mut Tx, token_sha256: &str) -> Result<Option<ApiToken>> {
            let row = sqlx::query("SELECT * FROM api_tokens WHERE token_sha256 = $1")
                .bind(token_sha256)
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(api_token_from_row).transpose()
        }

        /// Every token, or only `user`'s.
        pub async fn api_tokens(tx: &mut Tx, user: Option<&str>) -> Result<Vec<ApiToken>> {
            let rows = sqlx::query(
                "SELECT * FROM api_tokens WHERE CAST($1 AS TEXT) IS NULL OR user_id = $1 ORDER BY created_at, id",
            )
            .bind(user)
            .fetch_all(&mut **tx)
            .await?;
            rows.iter().map(api_token_from_row).collect()
        }

        pub async fn revoke_api_token(tx: &mut Tx, id: &str, at: Millis) -> Result<bool> {
            let done = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn touch_api_token(tx: &mut Tx, id: &str, at: Millis) -> Result<()> {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        pub async fn permissions(tx: &mut Tx, resource: &str) -> Result<Option<serde_json::Value>> {
            let text: Option<String> = sqlx::query_scalar("SELECT document FROM permissions WHERE resource = $1")
                .bind(resource)
                .fetch_optional(&mut **tx)
                .await?;
            text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
        }

        /// Stores a permissions document, or with `None` removes it (back to the defaults).
        pub async fn put_permissions(
            tx: &mut Tx,
            resource: &str,
            document: Option<&serde_json::Value>,
            at: Millis,
            by: &str,
        ) -> Result<()> {
            match document {
                None => {
                    sqlx::query("DELETE FROM permissions WHERE resource = $1")
                        .bind(resource)
                        .execute(&mut **tx)
                        .await?;
                }
                Some(document) => {
                    sqlx::query(
                        "INSERT INTO permissions (resource, document, updated_at, updated_by) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (resource) DO UPDATE SET document = excluded.document,
                           updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    )
                    .bind(resource)
                    .bind(document.to_string())
                    .bind(at)
                    .bind(by)
                    .execute(&mut **tx)
                    .await?;
                }
            }
            Ok(())
        }
    };
}

pub(crate) mod sqlite {
    queries!(sqlx::Sqlite);
}

pub(crate) mod postgres {
    queries!(sqlx::Postgres);
}
