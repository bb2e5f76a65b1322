//! Home, the catalog and its blueprint tables with their facets.

use super::*;
use crate::services::search::SortOrder;

// ---- home ----

struct OwnedRow {
    blueprint: String,
    identifier: String,
    title: String,
    /// Each scorecard's title and the level reached on it.
    levels: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    signed_in: Option<SignedIn>,
    name: String,
    owned: Vec<OwnedRow>,
    approvals: Vec<present::RunRow>,
    runs: Vec<present::RunRow>,
    /// The actions one runs most: identifier and title.
    favourites: Vec<(String, String)>,
}

/// Runs of one's own that decide one's favourite actions, and how many favourites to show.
const FAVOURITES_FROM: u32 = 100;
const FAVOURITES: usize = 5;

pub(super) async fn home(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let actor = &signed_in.actor;
    let now = app.core.now();
    let mine = json!({"combinator": "and", "rules": [
        {"property": "$team", "operator": "containsAny", "value": {"context": "userTeams"}},
        {"property": "$blueprint", "operator": "notIn", "value": ["_user", "_team"]}]});
    let owned_entities = app
        .search
        .search(actor, None, SearchRequest { query: Some(mine), limit: Some(20), ..SearchRequest::default() })
        .await?
        .entities;
    // Scorecards by blueprint and identifier, for their titles.
    let mut titles: std::collections::HashMap<(String, String), String> = std::collections::HashMap::new();
    let mut read: std::collections::HashSet<String> = std::collections::HashSet::new();
    for e in owned_entities.iter().filter(|e| !e.scorecards.is_empty()) {
        if read.insert(e.blueprint.clone()) {
            for record in app.scorecards.list_scorecards(&e.blueprint).await? {
                let card = record.scorecard;
                let title = card.title.clone().unwrap_or_else(|| card.identifier.clone());
                titles.insert((e.blueprint.clone(), card.identifier), title);
            }
        }
    }
    let owned = owned_entities
        .iter()
        .map(|e| OwnedRow {
            blueprint: e.blueprint.clone(),
            identifier: e.identifier.clone(),
            title: title_of(e),
            levels: e
                .scorecards
                .iter()
                .filter_map(|(id, s)| {
                    let title = titles.get(&(e.blueprint.clone(), id.clone())).cloned().unwrap_or_else(|| id.clone());
                    s["level"].as_str().map(|level| (title, level.to_string()))
                })
                .collect(),
        })
        .collect();
    let approvals = app.approvals.approval_inbox(actor).await?.iter().map(|r| present::RunRow::new(r, now)).collect();
    let filter = RunFilter { created_by: Some(actor.id.clone()), ..RunFilter::default() };
    let mine = app.runs.list_runs(actor, filter, FAVOURITES_FROM).await?.0;
    let mut favourites: Vec<(String, String, usize)> = Vec::new();
    for run in &mine {
        match favourites.iter_mut().find(|(id, _, _)| *id == run.action) {
            Some((_, _, n)) => *n += 1,
            None => favourites.push((run.action.clone(), present::RunRow::new(run, now).action, 1)),
        }
    }
    // Most used first; of equals, the one used last.
    favourites.sort_by_key(|(_, _, n)| std::cmp::Reverse(*n));
    let favourites = favourites.into_iter().take(FAVOURITES).map(|(id, title, _)| (id, title)).collect();
    let runs = mine.iter().take(10).map(|r| present::RunRow::new(r, now)).collect();
    let page = HomePage {
        name: actor.id.clone(),
        signed_in: layout_user(&app, &signed_in).await,
        owned,
        approvals,
        runs,
        favourites,
    };
    Ok(render(&page))
}

// ---- the catalog ----

struct BlueprintRow {
    identifier: String,
    title: String,
    description: String,
    count: u64,
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    signed_in: Option<SignedIn>,
    blueprints: Vec<BlueprintRow>,
}

async fn count(app: &AppState, actor: &Actor, blueprint: &str) -> Result<u64, Error> {
    let request = AggregateRequest {
        query: None,
        blueprint: Some(blueprint.to_string()),
        function: "count".into(),
        property: None,
        relation: None,
        scorecard: None,
        as_of: None,
    };
    Ok(match app.search.aggregate(actor, request).await? {
        portolan_store::query_sql::AggregateResult::Value(v) => v.unwrap_or(0.0) as u64,
        portolan_store::query_sql::AggregateResult::Groups(_) => 0,
    })
}

pub(super) async fn catalog(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let mut blueprints = Vec::new();
    for record in app.catalog.list_blueprints().await? {
        let b = record.blueprint;
        blueprints.push(BlueprintRow {
            count: count(&app, &signed_in.actor, &b.identifier).await?,
            title: b.title.clone().unwrap_or_else(|| b.identifier.clone()),
            description: b.description.as_deref().map(present::inline_markdown).unwrap_or_default(),
            identifier: b.identifier,
        });
    }
    Ok(render(&CatalogPage { signed_in: layout_user(&app, &signed_in).await, blueprints }))
}

struct EntityRow {
    identifier: String,
    title: String,
    teams: String,
    /// The chosen columns' values, as HTML.
    values: Vec<String>,
}

/// A column heading: its name, where a click on it sorts, and which way it sorts now.
struct Heading {
    name: String,
    sort_link: String,
    sorted: &'static str,
}

struct FacetValue {
    label: String,
    count: u64,
    link: String,
    on: bool,
}

struct Facet {
    title: String,
    values: Vec<FacetValue>,
}

struct ColumnChoice {
    name: String,
    on: bool,
}

#[derive(Template)]
#[template(path = "blueprint.html")]
struct BlueprintPage {
    signed_in: Option<SignedIn>,
    identifier: String,
    title: String,
    table: Table,
    headings: Vec<Heading>,
    choices: Vec<ColumnChoice>,
    facets: Vec<Facet>,
    /// Where the page's script fetches the facets, and where a reader without it counts them.
    facets_source: String,
    facets_link: String,
    rows: Vec<EntityRow>,
    next: Option<String>,
    error: Option<String>,
    /// The table shows only entities failing a scorecard rule: which, in words.
    failing: Option<String>,
    /// The same table now (for a table `asOf` a past time).
    now_link: String,
    /// What an entity's link adds: the table's `asOf`.
    entity_suffix: String,
}

/// What a catalog table shows, read from its address: `q` (words in the title), `f.<field>`
/// (facet filters), `where` (a query-language rule group, as JSON), `sort` and `order`, `col`
/// (repeated: the columns), `cursor`, `asOf` (the catalog as it was then).
#[derive(Clone, Default)]
struct Table {
    q: String,
    filters: Vec<(String, String)>,
    advanced: String,
    sort: Option<String>,
    descending: bool,
    columns: Vec<String>,
    cursor: Option<String>,
    /// Count the facets while drawing the page (without the page's script to fetch them).
    with_facets: bool,
    /// Only the entities failing a scorecard rule: `scorecard/rule`.
    failing: String,
    /// The catalog as it was at this time (RFC 3339), or now when empty.
    as_of: String,
}

/// Values shown per facet.
const MAX_FACET_VALUES: usize = 8;

impl Table {
    fn read(query: Option<&str>) -> Table {
        let mut table = Table::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "q" => table.q = value.trim().to_string(),
                "where" => table.advanced = value.trim().to_string(),
                "sort" if !value.is_empty() => table.sort = Some(value),
                "order" => table.descending = value == "desc",
                "col" => table.columns.push(value),
                "cursor" if !value.is_empty() => table.cursor = Some(value),
                "facets" => table.with_facets = value == "1",
                "failing" => table.failing = value.trim().to_string(),
                "asOf" => table.as_of = value.trim().to_string(),
                other => {
                    if let Some(field) = other.strip_prefix("f.")
                        && !value.is_empty()
                    {
                        table.filters.push((field.to_string(), value));
                    }
                }
            }
        }
        table
    }

    /// The address of this table in another state (always from its first page).
    fn link(&self, blueprint: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            query.append_pair("q", &self.q);
        }
        for (field, value) in &self.filters {
            query.append_pair(&format!("f.{field}"), value);
        }
        if !self.advanced.is_empty() {
            query.append_pair("where", &self.advanced);
        }
        if let Some(sort) = &self.sort {
            query.append_pair("sort", sort);
            query.append_pair("order", if self.descending { "desc" } else { "asc" });
        }
        for column in &self.columns {
            query.append_pair("col", column);
        }
        if self.with_facets {
            query.append_pair("facets", "1");
        }
        if !self.failing.is_empty() {
            query.append_pair("failing", &self.failing);
        }
        if !self.as_of.is_empty() {
            query.append_pair("asOf", &self.as_of);
        }
        format!("/catalog/{blueprint}?{}", query.finish())
    }

    fn as_of(&self) -> Option<String> {
        (!self.as_of.is_empty()).then(|| self.as_of.clone())
    }

    fn next_link(&self, blueprint: &str, cursor: &str) -> String {
        let link = self.link(blueprint);
        let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("cursor", cursor).finish();
        format!("{link}&{query}")
    }

    /// The rules the table's state adds up to, in the query language.
    fn rules(&self, schema: &portolan_model::blueprint::BlueprintSchema) -> Result<Value, String> {
        let mut rules = Vec::new();
        if !self.q.is_empty() {
            rules.push(json!({"combinator": "or", "rules": [
                {"property": "$title", "operator": "contains", "value": self.q},
                {"property": "$identifier", "operator": "contains", "value": self.q}]}));
        }
        for (field, value) in &self.filters {
            let rule = match schema.properties.get(field).map(|p| p.kind) {
                _ if field == "$team" => json!({"property": "$team", "operator": "containsAny", "value": [value]}),
                Some(PropertyType::Boolean) => json!({"property": field, "operator": "=", "value": value == "true"}),
                Some(PropertyType::Number | PropertyType::Integer) => match number_from_text(value) {
                    Some(n) => json!({"property": field, "operator": "=", "value": n}),
                    None => return Err(format!("'{value}' is not a number for '{field}'")),
                },
                _ => json!({"property": field, "operator": "=", "value": value}),
            };
            rules.push(rule);
        }
        if !self.advanced.is_empty() {
            let group: Value = serde_json::from_str(&self.advanced).map_err(|e| {
                format!("the filter is not JSON: {e} (expected {{\"combinator\": ..., \"rules\": [...]}})")
            })?;
            rules.push(group);
        }
        Ok(json!({"combinator": "and", "rules": rules}))
    }
}

/// Entities of the blueprint (of the first [`FAILING_SAMPLE`] the actor may read) failing a
/// scorecard's rule, as the table's `failing` (`scorecard/rule`) asks: a rule on identifiers
/// added to `query`, and the rule's and scorecard's titles for the page to say so.
async fn only_failing(
    app: &AppState,
    actor: &Actor,
    blueprint: &str,
    failing: &str,
    query: &mut Value,
) -> Result<Option<String>, Error> {
    let Some((card, rule)) = failing.split_once('/') else { return Ok(None) };
    let definition = app.scorecards.get_scorecard(blueprint, card).await?.scorecard;
    let sample = SearchRequest { limit: Some(FAILING_SAMPLE), ..SearchRequest::default() };
    let entities = app.search.search(actor, Some(blueprint), sample).await?.entities;
    let mut ids: Vec<Value> = entities
        .iter()
        .filter(|e| {
            e.scorecards
                .get(card)
                .and_then(|r| r["rules"].as_array())
                .is_some_and(|rules| rules.iter().any(|r| r["identifier"] == rule && r["status"] == "FAILURE"))
        })
        .map(|e| Value::from(e.identifier.clone()))
        .collect();
    if ids.is_empty() {
        // No identifier is empty: with none failing, the table matches nothing.
        ids.push(Value::from(""));
    }
    if let Some(rules) = query["rules"].as_array_mut() {
        rules.push(json!({"property": "$identifier", "operator": "in", "value": ids}));
    }
    let rule_title = definition.rules.iter().find(|r| r.identifier == rule).and_then(|r| r.title.clone());
    let card_title = definition.title.clone().unwrap_or_else(|| card.to_string());
    Ok(Some(format!("failing “{}” of {card_title}", rule_title.unwrap_or_else(|| rule.to_string()))))
}

/// Entities read to find those failing a scorecard rule.
const FAILING_SAMPLE: u32 = 1_000;

/// A refused search as one line: the first detail's place and message, or the message.
fn refusal(error: &Error) -> String {
    match error.details.first() {
        Some(detail) => format!(
            "{} ({})",
            detail["message"].as_str().unwrap_or(&error.message),
            detail["path"].as_str().unwrap_or_default()
        ),
        None => error.message.clone(),
    }
}

pub(super) async fn blueprint_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    uri: OriginalUri,
    PathParams(blueprint): PathParams<String>,
) -> PageResult {
    let actor = &signed_in.actor;
    let definition = app.catalog.get_blueprint(&blueprint).await?.blueprint;
    let schema = &definition.schema;
    let mut table = Table::read(uri.0.query());
    table.columns.retain(|c| schema.properties.contains_key(c));
    // Without a choice, the first four properties (and the address stays short).
    let columns: Vec<String> = match table.columns.is_empty() {
        true => schema.properties.keys().take(4).cloned().collect(),
        false => table.columns.clone(),
    };
    let mut page = BlueprintPage {
        signed_in: layout_user(&app, &signed_in).await,
        title: definition.title.clone().unwrap_or_else(|| blueprint.clone()),
        identifier: blueprint.clone(),
        headings: Vec::new(),
        choices: schema
            .properties
            .keys()
            .map(|name| ColumnChoice { on: columns.contains(name), name: name.clone() })
            .collect(),
        facets: Vec::new(),
        facets_source: table.link(&blueprint).replacen("/catalog/", "/facets/", 1),
        facets_link: Table { with_facets: true, ..table.clone() }.link(&blueprint),
        rows: Vec::new(),
        next: None,
        error: None,
        failing: None,
        now_link: Table { as_of: String::new(), ..table.clone() }.link(&blueprint),
        entity_suffix: table.as_of().map_or_else(String::new, |at| {
            format!("?{}", url::form_urlencoded::Serializer::new(String::new()).append_pair("asOf", &at).finish())
        }),
        table: table.clone(),
    };
    let mut query = match table.rules(schema) {
        Ok(query) => query,
        Err(message) => {
            page.error = Some(message);
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    page.failing = only_failing(&app, actor, &blueprint, &table.failing, &mut query).await?;
    let sort = table.sort.as_ref().map(|property| crate::services::search::SortRequest {
        property: property.clone(),
        order: if table.descending { SortOrder::Desc } else { SortOrder::Asc },
    });
    let request = SearchRequest {
        query: Some(query.clone()),
        limit: Some(PAGE_SIZE),
        cursor: table.cursor.clone(),
        sort,
        as_of: table.as_of(),
        ..SearchRequest::default()
    };
    let found = match app.search.search(actor, Some(&blueprint), request).await {
        Ok(found) => found,
        Err(error) if matches!(error.code, ErrorCode::ValidationFailed | ErrorCode::InvalidQuery) => {
            page.error = Some(refusal(&error));
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
        Err(error) => return Err(error.into()),
    };
    page.rows = found
        .entities
        .iter()
        .map(|e| EntityRow {
            identifier: e.identifier.clone(),
            title: title_of(e),
            teams: e.team.join(", "),
            values: columns.iter().map(|c| e.properties.get(c).map(present::value_html).unwrap_or_default()).collect(),
        })
        .collect();
    page.next = found.next.map(|cursor| table.next_link(&blueprint, &cursor));
    let heading = |name: &str, field: &str| {
        let now = table.sort.as_deref() == Some(field);
        let mut sorted = table.clone();
        sorted.sort = Some(field.to_string());
        sorted.descending = now && !table.descending;
        Heading {
            name: name.to_string(),
            sort_link: sorted.link(&blueprint),
            sorted: match (now, table.descending) {
                (false, _) => "none",
                (true, false) => "ascending",
                (true, true) => "descending",
            },
        }
    };
    page.headings = [heading("Title", "$title"), heading("Identifier", "$identifier")]
        .into_iter()
        .chain(columns.iter().map(|c| {
            let name = schema.properties[c].title.clone().unwrap_or_else(|| c.clone());
            // Lists and objects have no order to sort by.
            let sortable = !matches!(schema.properties[c].kind, PropertyType::Array | PropertyType::Object);
            let mut h = heading(&name, c);
            if !sortable {
                h.sort_link.clear();
            }
            h
        }))
        .collect();
    if table.with_facets {
        page.facets = facets(&app, actor, &blueprint, schema, &table, &query).await?;
    }
    Ok(render(&page))
}

#[derive(Template)]
#[template(path = "facets.html")]
struct FacetsFragment {
    facets: Vec<Facet>,
}

/// A table's facets with their counts, as a piece of the table's page: its script asks for them
/// after the table is shown (counting every entity takes longer than a page of them).
pub(super) async fn facets_fragment(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    uri: OriginalUri,
    PathParams(blueprint): PathParams<String>,
) -> PageResult {
    let definition = app.catalog.get_blueprint(&blueprint).await?.blueprint;
    let table = Table::read(uri.0.query());
    let mut query = table.rules(&definition.schema).map_err(|message| Error::invalid_at("/where", message))?;
    only_failing(&app, &signed_in.actor, &blueprint, &table.failing, &mut query).await?;
    let facets = facets(&app, &signed_in.actor, &blueprint, &definition.schema, &table, &query).await?;
    Ok(render(&FacetsFragment { facets }))
}

/// Counts per value of the team and of the first few enum and boolean properties, over the
/// entities the table's query finds; each value links to the table filtered by it (or unfiltered).
async fn facets(
    app: &AppState,
    actor: &Actor,
    blueprint: &str,
    schema: &portolan_model::blueprint::BlueprintSchema,
    table: &Table,
    query: &Value,
) -> Result<Vec<Facet>, Error> {
    let facet_fields: Vec<(String, String)> = std::iter::once(("$team".to_string(), "Team".to_string()))
        .chain(
            schema
                .facet_properties()
                .map(|(name, p)| (name.to_string(), p.title.clone().unwrap_or_else(|| name.to_string()))),
        )
        .collect();
    // Each count reads every entity the query finds: run them side by side.
    let counts = futures_util::future::try_join_all(facet_fields.iter().map(|(field, _)| {
        let request = AggregateRequest {
            query: Some(query.clone()),
            blueprint: Some(blueprint.to_string()),
            function: "countBy".into(),
            property: Some(field.clone()),
            relation: None,
            scorecard: None,
            as_of: table.as_of(),
        };
        app.search.aggregate(actor, request)
    }))
    .await?;
    let mut facets = Vec::new();
    for ((field, title), counted) in facet_fields.into_iter().zip(counts) {
        let portolan_store::query_sql::AggregateResult::Groups(mut groups) = counted else { continue };
        groups.retain(|(value, _)| !value.is_null());
        groups.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        groups.truncate(MAX_FACET_VALUES);
        let values = groups
            .into_iter()
            .map(|(value, count)| {
                let label = shown(&value);
                let on = table.filters.iter().any(|(f, v)| *f == field && *v == label);
                let mut toggled = table.clone();
                if on {
                    toggled.filters.retain(|(f, v)| !(*f == field && *v == label));
                } else {
                    toggled.filters.push((field.clone(), label.clone()));
                }
                FacetValue { link: toggled.link(blueprint), label, count, on }
            })
            .collect::<Vec<_>>();
        if !values.is_empty() {
            facets.push(Facet { title, values });
        }
    }
    Ok(facets)
}
