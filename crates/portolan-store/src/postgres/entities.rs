//! Entities and their references. A write transaction shares (`FOR SHARE`) or locks
//! (`FOR UPDATE`) the entities it reads, always in identifier order.

use std::collections::HashSet;

use super::PgTx;
use crate::EntityWrite;
use crate::shared::entities::{GUARDED_UPSERT, updated_ids, written_ids};
use crate::shared::to_json;

/// Rows per multi-row write; arrays are bound whole, so this only bounds statement size.
pub(super) const ROWS_PER_STATEMENT: usize = 1_000;

crate::shared::entity_store!(PgTx, sqlx::Postgres, {
    async fn lock_entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>> {
        let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = $1 AND identifier = $2 FOR UPDATE");
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(blueprint).bind(identifier).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(entity_from_row).transpose()
    }

    async fn entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>> {
        let sql =
            format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = $1 AND identifier = $2{}", self.share());
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(blueprint).bind(identifier).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(entity_from_row).transpose()
    }

    async fn entities(&mut self, blueprint: &str, identifiers: &[String]) -> Result<Vec<Entity>> {
        // A join with UNNEST rather than `= ANY($2)`: the generic plan of a prepared `= ANY`
        // scanned the whole table once sqlx reused the statement (2 s at 100k entities).
        let sql = format!(
            "SELECT {ENTITY_COLUMNS} FROM entities JOIN UNNEST($2::text[]) AS wanted(identifier) USING (identifier)
             WHERE blueprint = $1 ORDER BY identifier{}",
            if self.writable { " FOR SHARE OF entities" } else { "" }
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(blueprint).bind(identifiers).fetch_all(&mut *self.tx).await?;
        rows.iter().map(entity_from_row).collect()
    }

    async fn existing(&mut self, blueprint: &str, identifiers: &[String]) -> Result<HashSet<String>> {
        let sql = format!(
            "SELECT identifier FROM entities JOIN UNNEST($2::text[]) AS wanted(identifier) USING (identifier)
             WHERE blueprint = $1 ORDER BY identifier{}",
            if self.writable { " FOR SHARE OF entities" } else { "" }
        );
        let found: Vec<String> =
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(blueprint).bind(identifiers).fetch_all(&mut *self.tx).await?;
        Ok(found.into_iter().collect())
    }

    async fn put_entities(&mut self, writes: &[EntityWrite]) -> Result<()> {
        self.entities_written += writes.len() as u64;
        // Rows are locked in one order by every writer (here and in `entities`/`existing`), so two
        // writers that touch the same entities wait for each other instead of deadlocking.
        let mut ordered: Vec<&EntityWrite> = writes.iter().collect();
        ordered.sort_by(|a, b| {
            (&a.entity.blueprint, &a.entity.identifier).cmp(&(&b.entity.blueprint, &b.entity.identifier))
        });
        for chunk in ordered.chunks(ROWS_PER_STATEMENT) {
            let mut columns = EntityColumns::default();
            for write in chunk {
                columns.push(&write.entity)?;
            }
            let sql = format!(
                "INSERT INTO entities ({ENTITY_COLUMNS})
                 SELECT b, i, t, ic, tm::jsonb, p::jsonb, r::jsonb, sc::jsonb, dg::jsonb, v, ca, cb, ua, ub
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::text[], $13::bigint[], $14::text[])
                      AS u(b, i, t, ic, tm, p, r, sc, dg, v, ca, cb, ua, ub)
                 {GUARDED_UPSERT}"
            );
            let c = columns;
            let written = sqlx::query(AssertSqlSafe(sql))
                .bind(c.blueprint)
                .bind(c.identifier)
                .bind(c.title)
                .bind(c.icon)
                .bind(c.team)
                .bind(c.properties)
                .bind(c.relations)
                .bind(c.scorecards)
                .bind(c.diagnostics)
                .bind(c.version)
                .bind(c.created_at)
                .bind(c.created_by)
                .bind(c.updated_at)
                .bind(c.updated_by)
                .fetch_all(&mut *self.tx)
                .await?;
            let ids = written_ids(&written, chunk.len())?;
            let updated = updated_ids(chunk.iter().copied(), &ids);
            if !updated.is_empty() {
                sqlx::query("DELETE FROM entity_references WHERE source_id = ANY($1)")
                    .bind(&updated)
                    .execute(&mut *self.tx)
                    .await?;
            }
            let (mut sources, mut source_blueprints, mut vias, mut blueprints, mut targets) =
                (vec![], vec![], vec![], vec![], vec![]);
            for write in chunk {
                let Some(id) = ids.get(&write.entity.identifier) else { continue };
                for r in &write.references {
                    sources.push(*id);
                    source_blueprints.push(write.entity.blueprint.as_str());
                    vias.push(r.via.as_str());
                    blueprints.push(r.target_blueprint.as_str());
                    targets.push(r.target.as_str());
                }
            }
            if !sources.is_empty() {
                sqlx::query(
                    "INSERT INTO entity_references (source_id, source_blueprint, via, target_blueprint, target_identifier)
                     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])",
                )
                .bind(&sources)
                .bind(&source_blueprints)
                .bind(&vias)
                .bind(&blueprints)
                .bind(&targets)
                .execute(&mut *self.tx)
                .await?;
            }
        }
        Ok(())
    }
});

/// The entity columns of a multi-row write, one array per column (bound to `UNNEST`).
#[derive(Default)]
struct EntityColumns {
    blueprint: Vec<String>,
    identifier: Vec<String>,
    title: Vec<Option<String>>,
    icon: Vec<Option<String>>,
    team: Vec<String>,
    properties: Vec<String>,
    relations: Vec<String>,
    scorecards: Vec<String>,
    diagnostics: Vec<String>,
    version: Vec<i64>,
    created_at: Vec<i64>,
    created_by: Vec<String>,
    updated_at: Vec<i64>,
    updated_by: Vec<String>,
}

impl EntityColumns {
    fn push(&mut self, e: &Entity) -> Result<()> {
        self.blueprint.push(e.blueprint.clone());
        self.identifier.push(e.identifier.clone());
        self.title.push(e.title.clone());
        self.icon.push(e.icon.clone());
        self.team.push(to_json(&e.team)?);
        self.properties.push(to_json(&e.properties)?);
        self.relations.push(to_json(&e.relations)?);
        self.scorecards.push(to_json(&e.scorecards)?);
        self.diagnostics.push(to_json(&e.diagnostics)?);
        self.version.push(e.version);
        self.created_at.push(e.created_at);
        self.created_by.push(e.created_by.clone());
        self.updated_at.push(e.updated_at);
        self.updated_by.push(e.updated_by.clone());
        Ok(())
    }
}
