//! The catalog-as-code page: locations with their last sync, and every source that applied.

use super::*;

struct LocationRow {
    id: String,
    kind: &'static str,
    target: String,
    branch: String,
    state: String,
    synced: Option<present::When>,
    commit: String,
    counts: String,
    error: String,
    problems: Vec<String>,
}

struct SourceRow {
    source: String,
    objects: i64,
    applied: present::When,
}

#[derive(Template)]
#[template(path = "locations.html")]
struct LocationsPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    locations: Vec<LocationRow>,
    sources: Vec<SourceRow>,
}

pub(super) async fn locations_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let now = app.core.now();
    let actor = &signed_in.actor;
    let locations = app
        .locations
        .list(actor)
        .await?
        .into_iter()
        .map(|l| {
            let s = &l.status;
            LocationRow {
                kind: match l.kind {
                    portolan_model::manifest::location::LocationKind::Git => "git",
                    portolan_model::manifest::location::LocationKind::File => "file",
                },
                branch: l.branch.clone().unwrap_or_default(),
                state: s.state.clone(),
                synced: s.synced_at.map(|at| present::When::new(at, now)),
                commit: s.commit.as_deref().map(|c| c[..c.len().min(12)].to_string()).unwrap_or_default(),
                counts: format!(
                    "{} created, {} updated, {} unchanged, {} deleted",
                    s.created, s.updated, s.unchanged, s.deleted
                ),
                error: s.error.clone().unwrap_or_default(),
                problems: s.problems.iter().take(20).cloned().collect(),
                id: l.id,
                target: l.target,
            }
        })
        .collect();
    let sources = app
        .manifests
        .sources(actor)
        .await?
        .into_iter()
        .map(|s| SourceRow { source: s.source, objects: s.objects, applied: present::When::new(s.applied_at, now) })
        .collect();
    let page = LocationsPage {
        signed_in: layout_user(&app, &signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        locations,
        sources,
    };
    Ok(render(&page))
}

pub(super) async fn sync_now(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    Form(form): Form<super::admin::PlainForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    app.locations.get(&signed_in.actor, &id).await?;
    app.locations.sync(&id).await?;
    Ok(Redirect::to("/locations").into_response())
}
