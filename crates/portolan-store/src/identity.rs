//! The records of accounts, sessions and API tokens (stored by `shared::identity`).

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

/// An account's client credentials: its client id, and the SHA-256 of its client secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCredentials {
    pub user: String,
    pub client_id: String,
    pub secret_sha256: String,
    pub created_at: Millis,
    pub created_by: String,
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
    /// The one resource the token is good for (`mcp` for an assistant's OAuth token); `None`
    /// for the whole API.
    pub audience: Option<String>,
}
