//! `/api/v1/events`: a live stream (server-sent events) of catalog changes, from every replica.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use crate::extract::{Caller, QueryParams};
use crate::state::AppState;

/// How often a stream checks that its caller is still signed in and what they may see.
const RECHECK_EVERY: Duration = Duration::from_secs(10);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only changes to this blueprint's entities.
    blueprint: Option<String>,
}

/// Each change as an SSE event named by its kind (`entity.created`, `entity.updated`,
/// `entity.deleted`, `entity.computed`, `timer.expired`, and for runs `run.created`,
/// `run.updated`, `run.log` with the run id as `identifier`) with
/// `{kind, blueprint, identifier, version}` as data.
/// Only changes to what the caller may read are sent; deletions only of blueprints whose entities
/// they may all read. A client too slow to keep up gets a `lagged` event (some changes were missed). The stream
/// ends when the caller's token or session stops being valid.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of changes", content_type = "text/event-stream")))]
pub async fn stream(
    State(app): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = app.core.store().changes();
    let stopping = app.stopping();
    let checked = Instant::now();
    let state = (app, caller, checked, receiver, query.blueprint, stopping);
    let events = futures_util::stream::unfold(
        state,
        |(app, mut caller, mut checked, mut receiver, blueprint, mut stopping)| async move {
            loop {
                if *stopping.borrow() {
                    return None;
                }
                // A revoked token, an ended session or a disabled user ends the stream; changed
                // teams or role apply from here on.
                if checked.elapsed() > RECHECK_EVERY {
                    caller.actor = caller.recheck(&app).await.ok()?;
                    checked = Instant::now();
                }
                let actor = &caller.actor;
                let next = tokio::select! {
                    next = receiver.recv() => next,
                    _ = stopping.changed() => return None,
                };
                match next {
                    Ok(change) if blueprint.as_ref().is_some_and(|b| *b != change.blueprint) => continue,
                    Ok(change) if !app.permissions.may_see_change(actor, &change).await => continue,
                    Ok(change) => {
                        let data = serde_json::to_string(&change).unwrap_or_default();
                        let event = Event::default().event(change.kind.clone()).data(data);
                        return Some((Ok(event), (app, caller, checked, receiver, blueprint, stopping)));
                    }
                    // How many were missed would count hidden changes too: only that some were.
                    Err(RecvError::Lagged(_)) => {
                        let event = Event::default().event("lagged").data("{}");
                        return Some((Ok(event), (app, caller, checked, receiver, blueprint, stopping)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
