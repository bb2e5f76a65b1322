//! The consent page of the OAuth flow: a signed-in user allows (or declines) an AI assistant to
//! act as them through the MCP server.

use portolan_model::oauth::{AuthorizationRequest, Refusal};

use super::*;

#[derive(Template)]
#[template(path = "oauth_consent.html")]
struct ConsentPage {
    signed_in: Option<SignedIn>,
    client_name: String,
    /// Where the browser goes afterwards, which tells a person more than the name the client chose.
    redirect_to: String,
    resource: String,
    hours: i64,
    request: AuthorizationRequest,
}

pub(super) async fn consent_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    QueryParams(request): QueryParams<AuthorizationRequest>,
) -> PageResult {
    let authorization = match app.oauth.check(&request) {
        Ok(authorization) => authorization,
        Err(refusal) => return Ok(refused(&app, refusal)),
    };
    let page = ConsentPage {
        signed_in: layout_user(&app, &signed_in).await,
        client_name: authorization.client.name.clone(),
        redirect_to: redirect_target(&authorization.redirect_uri),
        resource: authorization.resource.clone(),
        hours: crate::services::identity::ASSISTANT_TOKEN_SECONDS / 3_600,
        request,
    };
    let mut response = render(&page);
    if let Ok(policy) = HeaderValue::from_str(&consent_policy(&authorization.redirect_uri)) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct DecisionForm {
    csrf: String,
    decision: String,
    #[serde(flatten)]
    request: AuthorizationRequest,
}

pub(super) async fn decide(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<DecisionForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let authorization = match app.oauth.check(&form.request) {
        Ok(authorization) => authorization,
        Err(refusal) => return Ok(refused(&app, refusal)),
    };
    let to = app.oauth.decide(&signed_in.actor, &authorization, form.decision == "allow").await?;
    Ok(Redirect::to(&to).into_response())
}

/// A refusal of the request goes to the person (a page) until the client's redirect URI
/// is known good, and to the client (a redirect) after.
fn refused(app: &AppState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::ToPerson(error) => {
            let message = format!(
                "This assistant's request cannot be answered ({}): {}.",
                error.code.as_str(),
                error.description
            );
            PageError::from(Error::new(ErrorCode::InvalidQuery, message)).into_response()
        }
        Refusal::ToClient { redirect_uri, state, error } => {
            Redirect::to(&app.oauth.redirect_error(&redirect_uri, state.as_deref(), &error)).into_response()
        }
    }
}

/// Where a redirect URI leads: its origin, or an app's scheme (`vscode:`). The URI was checked
/// when the client registered, so it parses.
fn redirect_target(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) if url.host_str().is_some() => url.origin().ascii_serialization(),
        Ok(url) => format!("{}:", url.scheme()),
        Err(_) => String::new(),
    }
}

/// The portal's policy, with the form allowed to lead to the client's redirect URI (browsers
/// hold a form's redirects to `form-action` too).
fn consent_policy(redirect_uri: &str) -> String {
    let target = redirect_target(redirect_uri);
    CONTENT_SECURITY_POLICY.replace("form-action 'self'", &format!("form-action 'self' {target}"))
}
