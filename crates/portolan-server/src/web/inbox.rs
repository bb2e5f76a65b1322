//! The inbox: what the signed-in person was told, and where they want to be told.

use axum::body::Bytes;
use portolan_model::guardrail::{Notify, NotifyFormat};
use portolan_model::notification::{Preferences, TEAM_TOPICS, TeamPreferences, Topic};

use super::*;

struct NoteRow {
    title: String,
    link: String,
    when: String,
    unread: bool,
    delivery: Option<String>,
}

struct TopicRow {
    topic: &'static str,
    label: &'static str,
    inbox: bool,
    slack: bool,
    email: bool,
    webhook: bool,
}

/// One of the person's teams, and where what concerns it is sent.
struct TeamRow {
    team: String,
    has_webhook: bool,
    slack_format: bool,
    email: String,
    /// Each team topic: its value, its label, whether it is chosen.
    topics: Vec<(&'static str, &'static str, bool)>,
}

struct SlackLinkRow {
    slack_user: String,
    team: String,
    how: &'static str,
    when: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    signed_in: Option<SignedIn>,
    notes: Vec<NoteRow>,
    topics: Vec<TopicRow>,
    has_webhook: bool,
    slack_format: bool,
    /// The Slack app is configured: the Slack column and the links are shown.
    slack_app: bool,
    /// The server sends e-mail: the E-mail column is shown.
    sends_email: bool,
    slack_links: Vec<SlackLinkRow>,
    teams: Vec<TeamRow>,
    error: Option<String>,
}

pub(super) async fn inbox_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let preferences = app.notifications.preferences(&signed_in.actor).await?;
    page(&app, &signed_in, &preferences, None, StatusCode::OK).await
}

async fn page(
    app: &AppState,
    signed_in: &SessionActor,
    preferences: &Preferences,
    error: Option<String>,
    status: StatusCode,
) -> PageResult {
    let (notes, _) = app.notifications.inbox(&signed_in.actor, false, 100).await?;
    let now = app.core.now();
    let notes = notes
        .into_iter()
        .map(|n| NoteRow {
            title: n.title,
            link: n.link,
            when: present::relative(n.created_at, now),
            unread: n.read_at.is_none(),
            delivery: n.delivery,
        })
        .collect();
    let topics = Topic::ALL
        .into_iter()
        .map(|t| TopicRow {
            topic: t.as_str(),
            label: t.label(),
            inbox: preferences.to_inbox(t),
            slack: preferences.to_slack(t),
            email: preferences.to_email(t),
            webhook: preferences.webhook_topics.contains(&t),
        })
        .collect();
    let slack_links = app
        .slack
        .links(&signed_in.actor)
        .await?
        .into_iter()
        .map(|l| SlackLinkRow {
            how: if l.method == "email" { "by the same e-mail address" } else { "by a one-time link" },
            when: present::relative(l.linked_at, now),
            slack_user: l.slack_user,
            team: l.team,
        })
        .collect();
    let mut teams = Vec::new();
    for team in signed_in.actor.as_user().map(|u| u.teams.clone()).unwrap_or_default() {
        let Ok(chosen) = app.notifications.team_preferences(&signed_in.actor, &team).await else { continue };
        teams.push(TeamRow {
            has_webhook: chosen.webhook.is_some(),
            slack_format: chosen.webhook.as_ref().is_some_and(|w| w.format == NotifyFormat::Slack),
            email: chosen.email.clone().unwrap_or_default(),
            topics: TEAM_TOPICS.into_iter().map(|t| (t.as_str(), t.label(), chosen.wants(t))).collect(),
            team,
        });
    }
    let page = InboxPage {
        signed_in: layout_user(app, signed_in).await,
        notes,
        topics,
        has_webhook: preferences.webhook.is_some(),
        slack_format: preferences.webhook.as_ref().is_some_and(|w| w.format == NotifyFormat::Slack),
        slack_app: app.slack.api.settings().is_some(),
        sends_email: app.notifications.sends_email(),
        slack_links,
        teams,
        error,
    };
    Ok((status, render(&page)).into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub(super) async fn mark_all_read(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    app.notifications.mark_read(&signed_in.actor, None).await?;
    Ok(Redirect::to("/inbox").into_response())
}

/// The preferences form: a box per topic for each channel (repeated fields, read from the body
/// as pairs), the webhook's URL (empty: none) and format.
pub(super) async fn save_preferences(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string());
    let topics =
        |name: &str| pairs.iter().filter(|(k, _)| k == name).filter_map(|(_, v)| Topic::parse(v)).collect::<Vec<_>>();
    check_form(&headers, &signed_in, &field("csrf").unwrap_or_default())?;
    // Channels the page does not show (not configured) keep their topics.
    let kept = app.notifications.preferences(&signed_in.actor).await?;
    let webhook = webhook_from_form(&field, kept.webhook);
    let slack = if field("slack_shown").is_some() { topics("slack") } else { kept.slack };
    let email = if field("email_shown").is_some() { topics("email") } else { kept.email };
    let preferences = Preferences {
        inbox: topics("inbox"),
        slack,
        email,
        webhook_topics: if webhook.is_some() { topics("webhook") } else { Vec::new() },
        webhook,
    };
    match app.notifications.set_preferences(&signed_in.actor, preferences.clone()).await {
        Ok(_) => Ok(Redirect::to("/inbox").into_response()),
        Err(refused) if refused.code == ErrorCode::ValidationFailed => {
            page(&app, &signed_in, &preferences, Some(refused.message), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(other) => Err(other.into()),
    }
}

/// The webhook a preferences form asks for. Its URL is never shown again (a Slack webhook's URL
/// is its secret): left empty, the one set before stays, unless the form removes it.
fn webhook_from_form(field: &dyn Fn(&str) -> Option<String>, kept: Option<Notify>) -> Option<Notify> {
    let format =
        if field("webhook_format").as_deref() == Some("slack") { NotifyFormat::Slack } else { NotifyFormat::Json };
    match field("webhook_url").filter(|url| !url.is_empty()) {
        Some(url) => Some(Notify { url, format }),
        None if field("webhook_remove").is_some() => None,
        None => kept.map(|kept| Notify { format, ..kept }),
    }
}

pub(super) async fn unlink_slack(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    app.slack.unlink(&signed_in.actor).await?;
    Ok(Redirect::to("/inbox").into_response())
}

#[derive(Template)]
#[template(path = "slack_link.html")]
struct SlackLinkPage {
    signed_in: Option<SignedIn>,
    code: String,
    slack_user: String,
    team: String,
}

#[derive(Deserialize)]
pub struct LinkQuery {
    code: String,
}

/// A one-time link from Slack: asks the signed-in person to confirm that this Slack user acts as them.
pub(super) async fn slack_link_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    QueryParams(query): QueryParams<LinkQuery>,
) -> PageResult {
    let code = app.slack.open_link(&query.code)?;
    let page = SlackLinkPage {
        signed_in: layout_user(&app, &signed_in).await,
        code: query.code,
        slack_user: code.user,
        team: code.team,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct LinkForm {
    csrf: String,
    code: String,
}

pub(super) async fn link_slack(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<LinkForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    app.slack.link(&signed_in.actor, &form.code).await?;
    Ok(Redirect::to("/inbox").into_response())
}

/// A team's channels, from the inbox page: its webhook (the URL kept when left empty), format,
/// e-mail address and topics.
pub(super) async fn save_team_preferences(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(team): PathParams<String>,
    body: Bytes,
) -> PageResult {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string());
    check_form(&headers, &signed_in, &field("csrf").unwrap_or_default())?;
    let kept = app.notifications.team_preferences(&signed_in.actor, &team).await?;
    let webhook = webhook_from_form(&field, kept.webhook);
    let preferences = TeamPreferences {
        webhook,
        email: field("email").filter(|e| !e.is_empty()),
        topics: pairs.iter().filter(|(k, _)| k == "topic").filter_map(|(_, v)| Topic::parse(v)).collect(),
    };
    match app.notifications.set_team_preferences(&signed_in.actor, &team, preferences).await {
        Ok(_) => Ok(Redirect::to("/inbox").into_response()),
        Err(refused) if refused.code == ErrorCode::ValidationFailed => {
            let mine = app.notifications.preferences(&signed_in.actor).await?;
            let message = format!("{team}: {}", refused.message);
            page(&app, &signed_in, &mine, Some(message), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(other) => Err(other.into()),
    }
}
