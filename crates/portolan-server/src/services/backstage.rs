//! Backstage's catalog API over Portolan's catalog: entities of the ready Backstage blueprints
//! (and teams and users) in Backstage's shape, with relations both ways, queried with
//! Backstage's filter semantics and the caller's own read grants.

use std::collections::{BTreeMap, HashMap, HashSet};

use portolan_model::manifest::ObjectKey;
use portolan_model::manifest::backstage::{self, BackstageRef, KINDS, reference_of, relation_types};
use portolan_model::manifest::backstage_query::{Predicate, stored_property};
use portolan_model::{Blueprint, Entity, EntityRef};
use portolan_store::Tx;
use serde_json::{Value, json};

use super::actor::Actor;
use super::catalog::Catalog;
use super::core::{Core, all_blueprints};
use super::search::{AggregateRequest, Search, SearchRequest};
use crate::error::{Error, ErrorCode, Result};
use portolan_store::query_sql::AggregateResult;

/// The most entities one query reads before it filters.
const SCAN_LIMIT: usize = 250_000;

#[derive(Clone)]
pub struct BackstageCatalog {
    core: Core,
    search: Search,
    catalog: Catalog,
}

/// A uid for an entity: opaque to clients, and naming it without a lookup table.
pub fn uid(entity: &EntityRef) -> String {
    format!("{}~{}", entity.blueprint, entity.identifier)
}

fn from_uid(uid: &str) -> Option<EntityRef> {
    let (blueprint, identifier) = uid.split_once('~')?;
    Some(EntityRef { blueprint: blueprint.into(), identifier: identifier.into() })
}

impl BackstageCatalog {
    pub fn new(core: Core, search: Search, catalog: Catalog) -> Self {
        Self { core, search, catalog }
    }

    /// An entity in Backstage's shape, with its relations both ways (`reverse`) or only those it
    /// declares (enough to filter on anything but relations, and one query cheaper).
    async fn view(
        &self,
        tx: &mut dyn Tx,
        blueprints: &HashMap<String, Blueprint>,
        entity: &Entity,
        reverse: bool,
    ) -> Result<Option<Value>> {
        let Some(mut view) = backstage::to_descriptor(entity) else { return Ok(None) };
        let me = entity.entity_ref();
        view["metadata"]["uid"] = json!(uid(&me));
        view["metadata"]["etag"] = json!(format!("{}-{}", entity.version, entity.updated_at));
        let mut relations: Vec<(String, String)> = Vec::new();
        let mut add = |kind: &str, target: &EntityRef| {
            if let Some(reference) = reference_of(target) {
                let pair = (kind.to_string(), reference);
                if !relations.contains(&pair) {
                    relations.push(pair);
                }
            }
        };
        let blueprint = blueprints.get(&entity.blueprint);
        for (via, value) in &entity.relations {
            let Some((kind, _)) = relation_types(&entity.blueprint, via) else { continue };
            let Some(target) = blueprint.and_then(|b| b.relations.get(via)).map(|r| r.target.clone()) else { continue };
            let ids: Vec<&str> = match value {
                Value::String(id) => vec![id.as_str()],
                Value::Array(ids) => ids.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            for id in ids {
                add(kind, &EntityRef { blueprint: target.clone(), identifier: id.into() });
            }
        }
        if let Some((kind, _)) = relation_types(&entity.blueprint, "$team") {
            for team in &entity.team {
                add(kind, &EntityRef { blueprint: portolan_model::system::TEAM.into(), identifier: team.clone() });
            }
        }
        let referrers = if reverse { tx.referrers(&me, 1000).await? } else { Vec::new() };
        for referrer in referrers {
            if let Some((_, reverse)) = relation_types(&referrer.source.blueprint, &referrer.via) {
                add(reverse, &referrer.source);
            }
        }
        view["relations"] = Value::Array(
            relations
                .into_iter()
                .map(|(kind, target)| {
                    let parsed = BackstageRef::parse(&target, None, "default").ok();
                    json!({"type": kind, "targetRef": target,
                           "target": parsed.map(|p| json!({"kind": p.kind, "namespace": p.namespace, "name": p.name}))})
                })
                .collect(),
        );
        Ok(Some(view))
    }

    /// The entity a Backstage reference names, if the caller may read it.
    pub async fn by_name(&self, actor: &Actor, kind: &str, namespace: &str, name: &str) -> Result<Value> {
        let reference =
            BackstageRef { kind: kind.to_ascii_lowercase(), namespace: namespace.into(), name: name.into() };
        let missing = || Error::not_found(format!("entity {reference}"));
        let target = reference.entity().ok_or_else(missing)?;
        self.by_ref(actor, &target).await?.ok_or_else(missing)
    }

    async fn by_ref(&self, actor: &Actor, target: &EntityRef) -> Result<Option<Value>> {
        let entity = match self.catalog.get_entity(actor, &target.blueprint, &target.identifier).await {
            Ok(entity) => entity,
            Err(err) if err.code == ErrorCode::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let mut tx = self.core.store().read().await?;
        let blueprints = blueprint_map(tx.as_mut()).await?;
        self.view(tx.as_mut(), &blueprints, &entity, true).await
    }

    pub async fn by_uid(&self, actor: &Actor, uid: &str) -> Result<Value> {
        let missing = || Error::not_found(format!("entity with uid {uid}"));
        let target = from_uid(uid).ok_or_else(missing)?;
        self.by_ref(actor, &target).await?.ok_or_else(missing)
    }

    /// The source that brought the entity with this uid, if any.
    pub async fn source_of_uid(&self, uid: &str) -> Result<Option<String>> {
        let Some(target) = from_uid(uid) else { return Ok(None) };
        Ok(self.core.store().read().await?.applied_object(&ObjectKey::entity(&target)).await?.map(|o| o.source))
    }

    pub async fn delete_by_uid(&self, actor: &Actor, uid: &str) -> Result<()> {
        let target = from_uid(uid).ok_or_else(|| Error::not_found(format!("entity with uid {uid}")))?;
        self.catalog.delete_entity(actor, &target.blueprint, &target.identifier, false, None).await.map(drop)
    }

    /// Each reference's entity, or null, in the order asked.
    pub async fn by_refs(&self, actor: &Actor, references: &[String]) -> Result<Vec<Value>> {
        let mut items = Vec::with_capacity(references.len());
        for text in references {
            let target = BackstageRef::parse(text, None, "default").ok().and_then(|r| r.entity());
            items.push(match target {
                Some(target) => self.by_ref(actor, &target).await?.unwrap_or(Value::Null),
                None => Value::Null,
            });
        }
        Ok(items)
    }

    /// The same entities with their relations both ways: [`Self::query`] with this predicate left
    /// out those pointing at them, unless the predicate names relations (then they are there).
    pub async fn complete(&self, predicate: &Predicate, items: Vec<Value>) -> Result<Vec<Value>> {
        if predicate.names_relations() {
            return Ok(items);
        }
        let mut tx = self.core.store().read().await?;
        let known = blueprint_map(tx.as_mut()).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let target = item["metadata"]["uid"].as_str().and_then(from_uid);
            let entity = match target {
                Some(target) => tx.entity(&target.blueprint, &target.identifier).await?,
                None => None,
            };
            match entity {
                Some(entity) => out.push(self.view(tx.as_mut(), &known, &entity, true).await?.unwrap_or(item)),
                None => out.push(item),
            }
        }
        Ok(out)
    }

    /// A facet's counts straight from the store, from each kind's blueprint, when the filters
    /// name kinds only and the facet is the kind or a property every such blueprint
    /// has: no entity is read. None otherwise.
    pub async fn facet_counts(
        &self,
        actor: &Actor,
        predicate: &Predicate,
        facet: &str,
    ) -> Result<Option<Vec<(String, u64)>>> {
        let property = match facet.to_ascii_lowercase().as_str() {
            "kind" => "$blueprint",
            path => match stored_property(path) {
                Some(property) => property,
                None => return Ok(None),
            },
        };
        if !predicate.only_kinds() {
            return Ok(None);
        }
        let kinds = predicate.kinds();
        let known = {
            let mut tx = self.core.store().read().await?;
            blueprint_map(tx.as_mut()).await?
        };
        let mut blueprints = Vec::new();
        for blueprint in kind_blueprints(kinds.as_deref()) {
            let Some(schema) = known.get(blueprint) else { continue };
            if property != "$blueprint" && !schema.schema.properties.contains_key(property) {
                return Ok(None);
            }
            blueprints.push(blueprint);
        }
        // One count per blueprint, side by side: each reads its blueprint's index on the property,
        // which a count over several blueprints at once does not.
        let counted = futures_util::future::try_join_all(blueprints.iter().map(|blueprint| {
            let request = AggregateRequest {
                blueprint: Some(blueprint.to_string()),
                function: if property == "$blueprint" { "count" } else { "countBy" }.into(),
                property: (property != "$blueprint").then(|| property.to_string()),
                ..AggregateRequest::default()
            };
            self.search.aggregate(actor, request)
        }))
        .await?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (blueprint, result) in blueprints.iter().zip(counted) {
            let groups = match result {
                AggregateResult::Value(count) => {
                    let kind = backstage::kind_of_blueprint(blueprint).unwrap_or_default();
                    vec![(json!(kind), count.unwrap_or(0.0) as u64)]
                }
                AggregateResult::Groups(groups) => groups,
            };
            for (value, count) in groups {
                let value = match (value, property) {
                    (Value::String(value), _) => value,
                    // A descriptor without a namespace is in `default`, as Backstage shows it.
                    (Value::Null, "namespace") => "default".to_string(),
                    _ => continue,
                };
                if count > 0 {
                    *counts.entry(value).or_default() += count;
                }
            }
        }
        Ok(Some(counts.into_iter().collect()))
    }

    /// One page of what the predicate matches, and how many match, read from the store's indexes
    /// without loading the other matches, when the predicate asks only for kinds and values of
    /// `spec.type` and `spec.lifecycle` ([`Predicate::property_equalities`]). Backstage compares
    /// values ignoring case while the index compares them exactly, so None when a value is stored
    /// in another case too (or a kind lacks the property): [`Self::query`] then reads every
    /// candidate. Entities come in uid order, as from [`Self::query`], with relations both ways.
    pub async fn indexed_page(
        &self,
        actor: &Actor,
        predicate: &Predicate,
        offset: usize,
        limit: usize,
    ) -> Result<Option<(Vec<Value>, usize)>> {
        let Some(asked) = predicate.property_equalities() else { return Ok(None) };
        let mut tx = self.core.store().read().await?;
        let known = blueprint_map(tx.as_mut()).await?;
        let kinds = predicate.kinds();
        let mut blueprints: Vec<&str> = kind_blueprints(kinds.as_deref()).filter(|b| known.contains_key(*b)).collect();
        blueprints.sort_unstable();
        let rules: Vec<Value> = asked
            .iter()
            .map(|(property, value)| json!({"property": property, "operator": "=", "value": value}))
            .collect();
        let query = (!rules.is_empty()).then(|| json!({"combinator": "and", "rules": rules}));
        let mut counts = Vec::new();
        for blueprint in blueprints {
            for (property, value) in &asked {
                if !known[blueprint].schema.properties.contains_key(*property) {
                    return Ok(None);
                }
                let request = AggregateRequest {
                    blueprint: Some(blueprint.to_string()),
                    function: "countBy".into(),
                    property: Some(property.to_string()),
                    ..AggregateRequest::default()
                };
                let AggregateResult::Groups(groups) = self.search.aggregate(actor, request).await? else {
                    return Ok(None);
                };
                let other_case =
                    groups.iter().any(|(v, _)| v.as_str().is_some_and(|v| v != *value && v.to_lowercase() == *value));
                if other_case || groups.len() as u32 >= portolan_store::query_sql::MAX_GROUPS {
                    return Ok(None);
                }
            }
            let request = AggregateRequest {
                query: query.clone(),
                blueprint: Some(blueprint.to_string()),
                function: "count".into(),
                ..AggregateRequest::default()
            };
            let AggregateResult::Value(count) = self.search.aggregate(actor, request).await? else { return Ok(None) };
            counts.push((blueprint, count.unwrap_or(0.0) as usize));
        }
        let total = counts.iter().map(|(_, n)| n).sum();
        let mut skip = offset;
        let mut items = Vec::new();
        for (blueprint, count) in counts {
            if items.len() == limit {
                break;
            }
            if skip >= count {
                skip -= count;
                continue;
            }
            let mut cursor = None;
            while items.len() < limit {
                let wanted = (skip + limit - items.len()).min(super::search::MAX_LIMIT as usize);
                let request = SearchRequest {
                    query: query.clone(),
                    limit: Some(wanted as u32),
                    cursor,
                    ..SearchRequest::default()
                };
                let page = self.search.search(actor, Some(blueprint), request).await?;
                for entity in &page.entities {
                    if skip > 0 {
                        skip -= 1;
                    } else if items.len() < limit
                        && let Some(view) = self.view(tx.as_mut(), &known, entity, true).await?
                    {
                        items.push(view);
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(Some((items, total)))
    }

    /// Every readable entity the predicate matches, in Backstage's shape, ordered by uid. The
    /// relations that point at an entity are there only when the predicate names relations: call
    /// [`Self::complete`] on what is returned to the client.
    pub async fn query(&self, actor: &Actor, predicate: &Predicate) -> Result<Vec<Value>> {
        let reverse = predicate.names_relations();
        let mut blueprints: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        candidates(predicate, &mut blueprints);
        let mut tx = self.core.store().read().await?;
        let known = blueprint_map(tx.as_mut()).await?;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (blueprint, queries) in blueprints {
            let query = match queries.iter().any(Value::is_null) {
                true => None,
                false => Some(json!({"combinator": "or", "rules": queries})),
            };
            let mut cursor = None;
            loop {
                let request =
                    SearchRequest { query: query.clone(), limit: Some(1000), cursor, ..SearchRequest::default() };
                let page = match self.search.search(actor, Some(blueprint), request).await {
                    Ok(page) => page,
                    Err(err) if err.code == ErrorCode::NotFound => break,
                    Err(err) => return Err(err),
                };
                for entity in &page.entities {
                    if !seen.insert(entity.entity_ref()) {
                        continue;
                    }
                    let Some(view) = self.view(tx.as_mut(), &known, entity, reverse).await? else { continue };
                    if predicate.matches(&view) {
                        out.push(view);
                    }
                }
                if seen.len() > SCAN_LIMIT {
                    return Err(Error::new(
                        ErrorCode::PayloadTooLarge,
                        "the query reads too many entities; narrow it with kind",
                    ));
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

/// The ready blueprints of these kinds (of every kind: None).
fn kind_blueprints(kinds: Option<&[String]>) -> impl Iterator<Item = &'static str> {
    KINDS
        .iter()
        .filter(move |(kind, _)| kinds.is_none_or(|kinds| kinds.iter().any(|k| kind.eq_ignore_ascii_case(k))))
        .map(|(_, blueprint)| *blueprint)
}

async fn blueprint_map(tx: &mut dyn Tx) -> Result<HashMap<String, Blueprint>> {
    Ok(all_blueprints(tx).await?.into_iter().map(|b| (b.identifier.clone(), b)).collect())
}

/// Which blueprints can hold a match, each with the store queries that find its candidates
/// (any of them; null: every entity is one). A branch of `$any` that names a kind reads only
/// that kind's blueprint.
fn candidates(predicate: &Predicate, blueprints: &mut BTreeMap<&'static str, Vec<Value>>) {
    if let Predicate::Any(branches) = predicate
        && branches.len() > 1
    {
        for branch in branches {
            candidates(branch, blueprints);
        }
        return;
    }
    let kinds = predicate.kinds();
    let query = narrowing(predicate);
    for blueprint in kind_blueprints(kinds.as_deref()) {
        blueprints.entry(blueprint).or_default().push(query.clone());
    }
}

/// A Portolan query that every entity the predicate matches also matches (it may admit more:
/// the predicate is checked exactly afterwards), so that only candidates are read. Null: no
/// narrowing.
fn narrowing(predicate: &Predicate) -> Value {
    let mut rules = Vec::new();
    for (key, value) in predicate.required() {
        if value.is_empty() {
            continue;
        }
        let property = match key {
            "metadata.name" => "$identifier",
            "relations.ownedby" => {
                if let Some(team) = value.rsplit_once('/').map(|(_, name)| name) {
                    rules.push(json!({"property": "$team", "operator": "containsAny", "value": [team]}));
                }
                continue;
            }
            _ => match stored_property(key) {
                Some(property) => property,
                None => continue,
            },
        };
        // Text operators compare case-insensitively, as Backstage does.
        rules.push(json!({"property": property, "operator": "beginsWith", "value": value}));
        rules.push(json!({"property": property, "operator": "endsWith", "value": value}));
    }
    if rules.is_empty() { Value::Null } else { json!({"combinator": "and", "rules": rules}) }
}
