//! Storage of permission documents.

/// Implements [`crate::PermissionStore`] for a backend's transaction type: `$tx` has a field
/// `tx: sqlx::Transaction`.
macro_rules! permission_store {
    ($tx:ty) => {
        use portolan_model::Millis;

        use crate::shared::parse_json;
        use crate::{PermissionStore, Result};

        #[async_trait::async_trait]
        impl PermissionStore for $tx {
            async fn permissions(&mut self, resource: &str) -> Result<Option<serde_json::Value>> {
                let text: Option<String> = sqlx::query_scalar("SELECT document FROM permissions WHERE resource = $1")
                    .bind(resource)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                text.as_deref().map(parse_json).transpose()
            }

            /// Stores a permissions document, or with `None` removes it (back to the defaults).
            async fn put_permissions(
                &mut self,
                resource: &str,
                document: Option<&serde_json::Value>,
                at: Millis,
                by: &str,
            ) -> Result<()> {
                match document {
                    None => {
                        sqlx::query("DELETE FROM permissions WHERE resource = $1")
                            .bind(resource)
                            .execute(&mut *self.tx)
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
                        .execute(&mut *self.tx)
                        .await?;
                    }
                }
                Ok(())
            }
        }
    };
}

pub(crate) use permission_store;
