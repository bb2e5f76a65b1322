//! Entities and their references. One writer at a time: what a write transaction reads stays as
//! read until it ends, so reading for a change locks nothing more.

use std::collections::HashSet;

use portolan_model::Reference;

use super::SqliteTx;
use crate::EntityWrite;
use crate::shared::entities::{GUARDED_UPSERT, updated_ids, written_ids};
use crate::shared::to_json;

/// SQLite allows 32766 bound parameters per statement; lists and multi-row writes stay well below.
pub(super) const IN_CHUNK: usize = 500;
const ENTITY_ROWS_PER_STATEMENT: usize = 500;
const REFERENCE_ROWS_PER_STATEMENT: usize = 2_000;

/// `?, ?, ?` for an IN list of `n` bound values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

crate::shared::entity_store!(SqliteTx, sqlx::Sqlite, {
    async fn lock_entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>> {
        self.entity(blueprint, identifier).await
    }

    async fn entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>> {
        let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = ? AND identifier = ?");
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(blueprint).bind(identifier).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(entity_from_row).transpose()
    }

    async fn entities(&mut self, blueprint: &str, identifiers: &[String]) -> Result<Vec<Entity>> {
        let mut found = Vec::with_capacity(identifiers.len());
        for chunk in identifiers.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = ? AND identifier IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(blueprint);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&mut *self.tx).await? {
                found.push(entity_from_row(&row)?);
            }
        }
        Ok(found)
    }

    async fn existing(&mut self, blueprint: &str, identifiers: &[String]) -> Result<HashSet<String>> {
        let mut found = HashSet::with_capacity(identifiers.len());
        for chunk in identifiers.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT identifier FROM entities WHERE blueprint = ? AND identifier IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).bind(blueprint);
            for id in chunk {
                query = query.bind(id);
            }
            found.extend(query.fetch_all(&mut *self.tx).await?);
        }
        Ok(found)
    }

    async fn put_entities(&mut self, writes: &[EntityWrite]) -> Result<()> {
        for chunk in writes.chunks(ENTITY_ROWS_PER_STATEMENT) {
            let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO entities ({ENTITY_COLUMNS}) VALUES {rows}
                 {GUARDED_UPSERT}"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for write in chunk {
                let e = &write.entity;
                query = query
                    .bind(&e.blueprint)
                    .bind(&e.identifier)
                    .bind(&e.title)
                    .bind(&e.icon)
                    .bind(to_json(&e.team)?)
                    .bind(to_json(&e.properties)?)
                    .bind(to_json(&e.relations)?)
                    .bind(to_json(&e.scorecards)?)
                    .bind(to_json(&e.diagnostics)?)
                    .bind(e.version)
                    .bind(e.created_at)
                    .bind(&e.created_by)
                    .bind(e.updated_at)
                    .bind(&e.updated_by);
            }
            let written = query.fetch_all(&mut *self.tx).await?;
            let ids = written_ids(&written, chunk.len())?;
            let updated = updated_ids(chunk, &ids);
            for ids_chunk in updated.chunks(IN_CHUNK) {
                let sql =
                    format!("DELETE FROM entity_references WHERE source_id IN ({})", placeholders(ids_chunk.len()));
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for id in ids_chunk {
                    query = query.bind(id);
                }
                query.execute(&mut *self.tx).await?;
            }
            let references: Vec<(i64, &str, &Reference)> = chunk
                .iter()
                .filter_map(|w| ids.get(&w.entity.identifier).map(|id| (*id, w)))
                .flat_map(|(id, w)| w.references.iter().map(move |r| (id, w.entity.blueprint.as_str(), r)))
                .collect();
            for refs_chunk in references.chunks(REFERENCE_ROWS_PER_STATEMENT) {
                let rows = vec!["(?, ?, ?, ?, ?)"; refs_chunk.len()].join(", ");
                let sql = format!(
                    "INSERT INTO entity_references (source_id, source_blueprint, via, target_blueprint, target_identifier)
                     VALUES {rows}"
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for (id, blueprint, r) in refs_chunk {
                    query = query.bind(id).bind(blueprint).bind(&r.via).bind(&r.target_blueprint).bind(&r.target);
                }
                query.execute(&mut *self.tx).await?;
            }
        }
        Ok(())
    }
});
