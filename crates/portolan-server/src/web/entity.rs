//! An entity's page: its properties, relations, scorecards, runs and what points at it.

use super::*;

/// How a property's value is shown.
enum Shown {
    Text(String),
    /// A web address, and the words shown for it.
    Link {
        url: String,
        label: String,
    },
    /// Already-safe HTML (rendered markdown).
    Html(String),
    /// A timer: the moment it ends and how long until then.
    Countdown {
        until: String,
        words: String,
    },
}

struct PropertyRow {
    name: String,
    value: Shown,
}

struct RelationRow {
    name: String,
    title: String,
    blueprint: String,
    targets: Vec<String>,
}

/// Entities of another blueprint whose relation points at this one.
struct IncomingRow {
    name: String,
    blueprint: String,
    sources: Vec<(String, String)>,
}

struct RuleRow {
    title: String,
    level: String,
    passed: bool,
}

struct ScorecardRow {
    name: String,
    level: String,
    rules: Vec<RuleRow>,
}

struct EntityRun {
    id: String,
    action: String,
    change: String,
    status: present::Badge,
    at: present::When,
}

#[derive(Template)]
#[template(path = "entity.html")]
struct EntityPage {
    signed_in: Option<SignedIn>,
    blueprint: String,
    identifier: String,
    title: String,
    version: i64,
    teams: Vec<String>,
    created: present::When,
    updated: present::When,
    created_by_run: Option<String>,
    properties: Vec<PropertyRow>,
    relations: Vec<RelationRow>,
    incoming: Vec<IncomingRow>,
    graph: String,
    scorecards: Vec<ScorecardRow>,
    actions: Vec<present::ActionLink>,
    runs: Vec<EntityRun>,
    /// When, what and who, newest first.
    /// When, what, who, and the address of the entity as it was just after.
    history: Vec<(present::When, String, String, String)>,
    /// The page shows the entity as it was at this time (RFC 3339), not as it is.
    as_of: Option<String>,
    /// The last 30 days' DORA keys, for a service or a team.
    dora: Option<super::dora::Summary>,
    /// The catalog-as-code source and file that declare it, and whether that is a location
    /// (whose entities are changed in their files).
    source: Option<(String, String, bool)>,
}

/// Most entities shown per incoming relation on an entity page.
const INCOMING_LIMIT: u32 = 20;

fn show_property(schema: Option<&portolan_model::PropertySchema>, value: &Value, now: i64) -> Shown {
    use portolan_model::Format;
    let text = shown(value);
    match (schema.and_then(|s| s.format), value) {
        (Some(Format::Markdown), Value::String(source)) => Shown::Html(present::markdown(source)),
        (Some(Format::Timer), Value::String(at)) => match portolan_model::blueprint::parse_date_time(at) {
            Some(until) => Shown::Countdown { until: at.clone(), words: present::countdown(until, now) },
            None => Shown::Text(text),
        },
        (Some(Format::LabeledUrl), Value::Object(link)) => match link.get("url").and_then(Value::as_str) {
            Some(url) if is_web(url) => Shown::Link {
                url: url.to_string(),
                label: link.get("displayText").and_then(Value::as_str).unwrap_or(url).to_string(),
            },
            _ => Shown::Text(text),
        },
        _ if is_web(&text) => Shown::Link { url: text.clone(), label: text },
        (_, Value::Object(_) | Value::Array(_)) => Shown::Html(present::value_html(value)),
        _ => Shown::Text(text),
    }
}

fn is_web(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// A property's title as its blueprint gives it (a schema, mirror, aggregation or calculation
/// property), else its name.
fn property_title(blueprint: &portolan_model::Blueprint, name: &str) -> String {
    let title = match blueprint.schema.properties.get(name) {
        Some(p) => p.title.clone(),
        None => blueprint
            .mirror_properties
            .get(name)
            .and_then(|m| m.title.clone())
            .or_else(|| blueprint.aggregation_properties.get(name).and_then(|a| a.title.clone()))
            .or_else(|| blueprint.calculation_properties.get(name).and_then(|c| c.title.clone())),
    };
    title.unwrap_or_else(|| name.to_string())
}

/// Identifiers a relation value names.
fn targets(value: &Value) -> Vec<String> {
    match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => vec![],
    }
}

fn node(entity: &Entity) -> present::Node {
    present::Node {
        blueprint: entity.blueprint.clone(),
        identifier: entity.identifier.clone(),
        title: title_of(entity),
    }
}

/// The system above an entity and the domain above that (relations named so), as far as the
/// user may read them.
async fn parents(app: &AppState, actor: &Actor, entity: &Entity) -> Vec<(String, Entity)> {
    let mut chain: Vec<(String, Entity)> = Vec::new();
    let mut current = entity.clone();
    for relation in ["system", "domain"] {
        let Some(Value::String(target)) = current.relations.get(relation) else { continue };
        let Ok(definition) = app.catalog.get_blueprint(&current.blueprint).await else { break };
        let Some(target_blueprint) = definition.blueprint.relations.get(relation).map(|r| r.target.clone()) else {
            break;
        };
        let Ok(parent) = app.catalog.get_entity(actor, &target_blueprint, target).await else { break };
        chain.push((relation.to_string(), parent.clone()));
        current = parent;
    }
    chain
}

/// `asOf`: the entity as it was at that time.
#[derive(serde::Deserialize)]
pub(super) struct PastQuery {
    #[serde(rename = "asOf")]
    as_of: Option<String>,
}

pub(super) async fn entity_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
    QueryParams(past): QueryParams<PastQuery>,
) -> PageResult {
    let actor = &signed_in.actor;
    let definition = app.catalog.get_blueprint(&blueprint).await?.blueprint;
    let entity = match &past.as_of {
        Some(text) => {
            let at = crate::extract::time_at(text, "/asOf")?;
            app.catalog.entity_as_of(actor, &blueprint, &identifier, at).await?
        }
        None => app.catalog.get_entity(actor, &blueprint, &identifier).await?,
    };
    let now = app.core.now();
    let schema = &definition.schema.properties;
    let mut names: Vec<&String> = schema.keys().filter(|k| entity.properties.contains_key(*k)).collect();
    names.extend(entity.properties.keys().filter(|k| !schema.contains_key(*k)));
    let properties = names
        .into_iter()
        .map(|name| PropertyRow {
            value: show_property(schema.get(name), &entity.properties[name], now),
            name: property_title(&definition, name),
        })
        .collect();
    let relations: Vec<RelationRow> = entity
        .relations
        .iter()
        .filter_map(|(name, value)| {
            let target = definition.relations.get(name)?.target.clone();
            let targets = targets(value);
            let title = definition.relations[name].title.clone().unwrap_or_else(|| name.clone());
            (!targets.is_empty()).then_some(RelationRow { name: name.clone(), title, blueprint: target, targets })
        })
        .collect();
    let mut incoming = Vec::new();
    for other in app.catalog.list_blueprints().await? {
        let other = other.blueprint;
        for (name, relation) in other.relations.iter().filter(|(_, r)| r.target == blueprint) {
            let query =
                json!({"combinator": "and", "rules": [{"relation": name, "operator": "=", "value": identifier}]});
            let request = SearchRequest { query: Some(query), limit: Some(INCOMING_LIMIT), ..SearchRequest::default() };
            let found = app.search.search(actor, Some(&other.identifier), request).await?.entities;
            if !found.is_empty() {
                incoming.push(IncomingRow {
                    name: relation.title.clone().unwrap_or_else(|| name.clone()),
                    blueprint: other.identifier.clone(),
                    sources: found.iter().map(|e| (e.identifier.clone(), title_of(e))).collect(),
                });
            }
        }
    }
    let parents = parents(&app, actor, &entity).await;
    let neighbourhood = present::Neighbourhood {
        centre: node(&entity),
        depends_on: relations
            .iter()
            .filter(|r| !(r.name == "system" && parents.first().is_some_and(|(n, _)| n == "system")))
            .flat_map(|r| {
                r.targets.iter().map(|t| {
                    let target =
                        present::Node { blueprint: r.blueprint.clone(), identifier: t.clone(), title: t.clone() };
                    (r.title.clone(), target)
                })
            })
            .collect(),
        used_by: incoming
            .iter()
            .flat_map(|i| {
                i.sources.iter().map(|(id, title)| {
                    let source =
                        present::Node { blueprint: i.blueprint.clone(), identifier: id.clone(), title: title.clone() };
                    (i.name.clone(), source)
                })
            })
            .collect(),
        parents: parents.iter().map(|(name, e)| (name.clone(), node(e))).collect(),
    };
    let scorecards = entity
        .scorecards
        .iter()
        .map(|(name, result)| ScorecardRow {
            name: name.clone(),
            level: shown(&result["level"]),
            rules: result["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|rule| RuleRow {
                    title: rule["title"].as_str().or(rule["identifier"].as_str()).unwrap_or_default().to_string(),
                    level: shown(&rule["level"]),
                    passed: rule["status"] == "SUCCESS",
                })
                .collect(),
        })
        .collect();
    let actions = app
        .actions
        .list_actions(actor, Some(&blueprint))
        .await?
        .into_iter()
        .map(|r| r.action)
        .filter(|a| matches!(a.trigger, Trigger::SelfService { .. }))
        .filter(|a| matches!(a.operation(), Some(Operation::Day2 | Operation::Delete)))
        .map(present::ActionLink::from)
        .collect();
    let entity_runs = app.runs.entity_runs(actor, &blueprint, &identifier).await?;
    let created_by_run = entity_runs.iter().find(|(_, change)| change == "created").map(|(run, _)| run.id.clone());
    let runs = entity_runs
        .into_iter()
        .take(10)
        .map(|(run, change)| EntityRun {
            action: run.action_title.clone().unwrap_or_else(|| run.action.clone()),
            status: present::Badge::of(run.status),
            at: present::When::new(run.created_at, now),
            change,
            id: run.id,
        })
        .collect();
    let history = app
        .audit
        .entity_history(actor, &blueprint, &identifier, None, 10)
        .await?
        .0
        .iter()
        .map(|r| {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("asOf", &portolan_model::format_millis(r.entry.at))
                .finish();
            (present::When::new(r.entry.at, now), r.entry.action.clone(), r.entry.actor.clone(), query)
        })
        .collect();
    let source = app.manifests.entity_source(&entity.entity_ref()).await?.map(|o| {
        let location = o.source.starts_with("location:");
        (o.source, o.file, location)
    });
    let page = EntityPage {
        source,
        signed_in: layout_user(&app, &signed_in).await,
        actions,
        runs,
        history,
        dora: super::dora::summary(&app, actor, &entity).await,
        as_of: past.as_of,
        title: title_of(&entity),
        graph: present::neighbourhood_svg(&neighbourhood),
        created: present::When::new(entity.created_at, now),
        updated: present::When::new(entity.updated_at, now),
        created_by_run,
        blueprint,
        identifier,
        version: entity.version,
        teams: entity.team.clone(),
        properties,
        relations,
        incoming,
        scorecards,
    };
    Ok(render(&page))
}
