//! Global search and the search box's suggestions.

use super::*;

struct FoundRow {
    blueprint: String,
    identifier: String,
    title: String,
    teams: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    signed_in: Option<SignedIn>,
    q: String,
    rows: Vec<FoundRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
}

/// Every blueprint at once: entities whose title or identifier contains the words.
pub(super) async fn search_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    QueryParams(query): QueryParams<SearchQuery>,
) -> PageResult {
    let q = query.q.trim().to_string();
    let (rows, next) = if q.is_empty() {
        (Vec::new(), None)
    } else {
        let filter = json!({"combinator": "or", "rules": [
            {"property": "$title", "operator": "contains", "value": q},
            {"property": "$identifier", "operator": "contains", "value": q}]});
        let request = SearchRequest {
            query: Some(filter),
            limit: Some(PAGE_SIZE),
            cursor: query.cursor,
            ..SearchRequest::default()
        };
        let page = app.search.search(&signed_in.actor, None, request).await?;
        let rows = page
            .entities
            .iter()
            .map(|e| FoundRow {
                blueprint: e.blueprint.clone(),
                identifier: e.identifier.clone(),
                title: title_of(e),
                teams: e.team.join(", "),
            })
            .collect();
        (rows, page.next)
    };
    Ok(render(&SearchPage { signed_in: layout_user(&app, &signed_in).await, q, rows, next }))
}

/// Most suggestions of each kind while typing.
const SUGGESTIONS: usize = 6;

/// What the search box suggests while one types: entities (by title or identifier), blueprints
/// and self-service actions, each as far as the user may read them, with where it goes:
/// `[{"kind", "label", "detail", "href"}]`.
/// How well an entity matches what was typed, best first: the identifier or title is it, begins
/// with it, or holds it; then the shorter.
fn relevance(entity: &Entity, needle: &str) -> (u8, usize, String) {
    let title = entity.title.as_deref().unwrap_or_default().to_lowercase();
    let identifier = entity.identifier.to_lowercase();
    let class = if identifier == needle || title == needle {
        0
    } else if identifier.starts_with(needle) || title.starts_with(needle) {
        1
    } else {
        2
    };
    let length = if title.is_empty() { identifier.len() } else { identifier.len().min(title.len()) };
    (class, length, identifier)
}

pub(super) async fn suggest(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    QueryParams(query): QueryParams<SearchQuery>,
) -> PageResult {
    let q = query.q.trim().to_string();
    let mut found = Vec::new();
    if q.is_empty() {
        return Ok(axum::Json(found).into_response());
    }
    let needle = q.to_lowercase();
    let matches = |texts: &[&str]| texts.iter().any(|t| t.to_lowercase().contains(&needle));
    let blueprints: Vec<_> = app.catalog.list_blueprints().await?.into_iter().map(|r| r.blueprint).collect();
    let title_of_blueprint = |id: &str| {
        blueprints.iter().find(|b| b.identifier == id).and_then(|b| b.title.clone()).unwrap_or_else(|| id.to_string())
    };
    let filter = json!({"combinator": "or", "rules": [
        {"property": "$title", "operator": "contains", "value": q},
        {"property": "$identifier", "operator": "contains", "value": q}]});
    // The best few of each blueprint, so that a service is not buried under its many deployments.
    let searches = blueprints.iter().map(|b| {
        let request =
            SearchRequest { query: Some(filter.clone()), limit: Some(SUGGESTIONS as u32), ..SearchRequest::default() };
        app.search.search(&signed_in.actor, Some(&b.identifier), request)
    });
    let mut entities: Vec<Entity> =
        futures_util::future::try_join_all(searches).await?.into_iter().flat_map(|page| page.entities).collect();
    entities.sort_by_cached_key(|e| relevance(e, &needle));
    for e in entities.into_iter().take(SUGGESTIONS) {
        found.push(json!({
            "kind": title_of_blueprint(&e.blueprint),
            "label": title_of(&e),
            "detail": e.identifier,
            "href": format!("/catalog/{}/{}", e.blueprint, url_segment(&e.identifier)),
        }));
    }
    for b in blueprints.iter().filter(|b| matches(&[&b.identifier, b.title.as_deref().unwrap_or_default()])) {
        found.push(json!({
            "kind": "Blueprint",
            "label": b.title.clone().unwrap_or_else(|| b.identifier.clone()),
            "detail": b.identifier,
            "href": format!("/catalog/{}", b.identifier),
        }));
        if found.len() >= 2 * SUGGESTIONS {
            break;
        }
    }
    let actions = app.actions.list_actions(&signed_in.actor, None).await?;
    let self_service =
        actions.into_iter().map(|r| r.action).filter(|a| matches!(a.trigger, Trigger::SelfService { .. }));
    for a in
        self_service.filter(|a| matches(&[&a.identifier, a.title.as_deref().unwrap_or_default()])).take(SUGGESTIONS)
    {
        found.push(json!({
            "kind": "Action",
            "label": a.title.clone().unwrap_or_else(|| a.identifier.clone()),
            "detail": a.identifier,
            "href": format!("/actions/{}", a.identifier),
        }));
    }
    Ok(axum::Json(found).into_response())
}
