//! Storage of each person's inbox and notification preferences.

/// Implements [`crate::NotificationStore`] for a backend's transaction type `$tx` (a field
/// `tx: sqlx::Transaction<'static, _>`).
macro_rules! notification_store {
    ($tx:ty, $db:ty) => {
        use portolan_model::Millis;
        use sqlx::Row;

        use crate::{Notification, NotificationStore, Result, SlackLink, SlackThread};

        #[async_trait::async_trait]
        impl NotificationStore for $tx {
            async fn insert_notification(&mut self, note: &Notification) -> Result<()> {
                sqlx::query(
                    "INSERT INTO notifications (id, user_id, topic, title, link, created_at, read_at, delivery)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&note.id)
                .bind(&note.user)
                .bind(&note.topic)
                .bind(&note.title)
                .bind(&note.link)
                .bind(note.created_at)
                .bind(note.read_at)
                .bind(&note.delivery)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn notification(&mut self, id: &str) -> Result<Option<Notification>> {
                let row = sqlx::query("SELECT * FROM notifications WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.map(|row| notification_from_row(&row)).transpose()
            }

            async fn notifications(&mut self, user: &str, unread_only: bool, limit: u32) -> Result<Vec<Notification>> {
                let rows = sqlx::query(
                    "SELECT * FROM notifications WHERE user_id = $1 AND ($2 = 0 OR read_at IS NULL)
                     ORDER BY created_at DESC, id DESC LIMIT $3",
                )
                .bind(user)
                .bind(i64::from(unread_only))
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(notification_from_row).collect()
            }

            async fn count_unread_notifications(&mut self, user: &str) -> Result<u64> {
                let n: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
                        .bind(user)
                        .fetch_one(&mut *self.tx)
                        .await?;
                Ok(n.max(0) as u64)
            }

            async fn mark_notifications_read(&mut self, user: &str, id: Option<&str>, at: Millis) -> Result<u64> {
                let done = sqlx::query(
                    "UPDATE notifications SET read_at = $3
                     WHERE user_id = $1 AND read_at IS NULL AND (CAST($2 AS TEXT) IS NULL OR id = $2)",
                )
                .bind(user)
                .bind(id)
                .bind(at)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected())
            }

            async fn set_notification_delivery(&mut self, id: &str, delivery: &str) -> Result<()> {
                sqlx::query("UPDATE notifications SET delivery = $2 WHERE id = $1")
                    .bind(id)
                    .bind(delivery)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn delete_notifications_before(&mut self, before: Millis) -> Result<u64> {
                let done = sqlx::query("DELETE FROM notifications WHERE created_at < $1")
                    .bind(before)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn put_notification_preferences(&mut self, user: &str, document: &serde_json::Value) -> Result<()> {
                sqlx::query(
                    "INSERT INTO notification_preferences (user_id, document) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET document = excluded.document",
                )
                .bind(user)
                .bind(document.to_string())
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn notification_preferences(&mut self, user: &str) -> Result<Option<serde_json::Value>> {
                let text: Option<String> =
                    sqlx::query_scalar("SELECT document FROM notification_preferences WHERE user_id = $1")
                        .bind(user)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                text.map(|text| crate::shared::parse_json(&text)).transpose()
            }

            async fn put_slack_link(&mut self, link: &SlackLink) -> Result<()> {
                sqlx::query(
                    "INSERT INTO slack_links (team_id, slack_user, user_id, linked_at, method)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (team_id, slack_user) DO UPDATE
                     SET user_id = excluded.user_id, linked_at = excluded.linked_at, method = excluded.method",
                )
                .bind(&link.team)
                .bind(&link.slack_user)
                .bind(&link.user)
                .bind(link.linked_at)
                .bind(&link.method)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn slack_link(&mut self, team: &str, slack_user: &str) -> Result<Option<SlackLink>> {
                let row = sqlx::query("SELECT * FROM slack_links WHERE team_id = $1 AND slack_user = $2")
                    .bind(team)
                    .bind(slack_user)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.map(|row| slack_link_from_row(&row)).transpose()
            }

            async fn slack_links_of(&mut self, user: &str) -> Result<Vec<SlackLink>> {
                let rows =
                    sqlx::query("SELECT * FROM slack_links WHERE user_id = $1 ORDER BY linked_at, team_id, slack_user")
                        .bind(user)
                        .fetch_all(&mut *self.tx)
                        .await?;
                rows.iter().map(slack_link_from_row).collect()
            }

            async fn delete_slack_links(&mut self, user: &str) -> Result<u64> {
                let done =
                    sqlx::query("DELETE FROM slack_links WHERE user_id = $1").bind(user).execute(&mut *self.tx).await?;
                Ok(done.rows_affected())
            }

            async fn put_slack_thread(&mut self, thread: &SlackThread) -> Result<()> {
                sqlx::query(
                    "INSERT INTO slack_threads (run_id, channel, ts) VALUES ($1, $2, $3)
                     ON CONFLICT (run_id) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
                )
                .bind(&thread.run)
                .bind(&thread.channel)
                .bind(&thread.ts)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn slack_thread(&mut self, run: &str) -> Result<Option<SlackThread>> {
                let row = sqlx::query("SELECT * FROM slack_threads WHERE run_id = $1")
                    .bind(run)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                Ok(match row {
                    Some(row) => Some(SlackThread {
                        run: row.try_get("run_id")?,
                        channel: row.try_get("channel")?,
                        ts: row.try_get("ts")?,
                    }),
                    None => None,
                })
            }
        }

        fn slack_link_from_row(row: &<$db as sqlx::Database>::Row) -> Result<SlackLink> {
            Ok(SlackLink {
                team: row.try_get("team_id")?,
                slack_user: row.try_get("slack_user")?,
                user: row.try_get("user_id")?,
                linked_at: row.try_get("linked_at")?,
                method: row.try_get("method")?,
            })
        }

        fn notification_from_row(row: &<$db as sqlx::Database>::Row) -> Result<Notification> {
            Ok(Notification {
                id: row.try_get("id")?,
                user: row.try_get("user_id")?,
                topic: row.try_get("topic")?,
                title: row.try_get("title")?,
                link: row.try_get("link")?,
                created_at: row.try_get("created_at")?,
                read_at: row.try_get("read_at")?,
                delivery: row.try_get("delivery")?,
            })
        }
    };
}

pub(crate) use notification_store;
