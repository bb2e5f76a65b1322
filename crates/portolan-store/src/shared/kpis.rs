//! Storage of KPI time series.

/// Implements [`crate::KpiStore`] for a backend's transaction type `$tx` (a field
/// `tx: sqlx::Transaction<'static, $db>`).
macro_rules! kpi_store {
    ($tx:ty, $db:ty) => {
        use portolan_model::Millis;
        use sqlx::Row;

        use crate::{KpiSample, KpiStore, Result};

        #[async_trait::async_trait]
        impl KpiStore for $tx {
            async fn put_samples(&mut self, day: Millis, samples: &[KpiSample]) -> Result<()> {
                for sample in samples {
                    sqlx::query(
                        "INSERT INTO kpi_samples (metric, day, team, label, value) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (metric, day, team, label) DO UPDATE SET value = excluded.value",
                    )
                    .bind(&sample.metric)
                    .bind(day)
                    .bind(&sample.team)
                    .bind(&sample.label)
                    .bind(sample.value)
                    .execute(&mut *self.tx)
                    .await?;
                }
                Ok(())
            }

            async fn samples(
                &mut self,
                metric: Option<&str>,
                from: Millis,
                to: Millis,
            ) -> Result<Vec<(Millis, KpiSample)>> {
                let rows = sqlx::query(
                    "SELECT metric, day, team, label, value FROM kpi_samples
                     WHERE ($1 IS NULL OR metric = $1) AND day >= $2 AND day < $3 ORDER BY metric, day, team, label",
                )
                .bind(metric)
                .bind(from)
                .bind(to)
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|row| {
                        let sample = KpiSample {
                            metric: row.try_get("metric")?,
                            team: row.try_get("team")?,
                            label: row.try_get("label")?,
                            value: row.try_get("value")?,
                        };
                        Ok((row.try_get("day")?, sample))
                    })
                    .collect()
            }

            async fn delete_samples_before(&mut self, day: Millis) -> Result<u64> {
                let done =
                    sqlx::query("DELETE FROM kpi_samples WHERE day < $1").bind(day).execute(&mut *self.tx).await?;
                Ok(done.rows_affected())
            }

            async fn put_kpi_document(
                &mut self,
                kind: &str,
                identifier: &str,
                document: &serde_json::Value,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO kpi_documents (kind, identifier, document) VALUES ($1, $2, $3)
                     ON CONFLICT (kind, identifier) DO UPDATE SET document = excluded.document",
                )
                .bind(kind)
                .bind(identifier)
                .bind(document.to_string())
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn kpi_document(&mut self, kind: &str, identifier: &str) -> Result<Option<serde_json::Value>> {
                let text: Option<String> =
                    sqlx::query_scalar("SELECT document FROM kpi_documents WHERE kind = $1 AND identifier = $2")
                        .bind(kind)
                        .bind(identifier)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                text.map(|text| crate::shared::parse_json(&text)).transpose()
            }

            async fn kpi_documents(&mut self, kind: &str) -> Result<Vec<serde_json::Value>> {
                let texts: Vec<String> =
                    sqlx::query_scalar("SELECT document FROM kpi_documents WHERE kind = $1 ORDER BY identifier")
                        .bind(kind)
                        .fetch_all(&mut *self.tx)
                        .await?;
                texts.iter().map(|text| crate::shared::parse_json(text)).collect()
            }

            async fn delete_kpi_document(&mut self, kind: &str, identifier: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM kpi_documents WHERE kind = $1 AND identifier = $2")
                    .bind(kind)
                    .bind(identifier)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use kpi_store;
