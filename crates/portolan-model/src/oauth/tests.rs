use serde_json::json;

use super::*;

const RESOURCE: &str = "https://portal.example.com/mcp";
/// RFC 7636, appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn client() -> Client {
    Client { name: "Editor".into(), redirect_uris: vec!["http://127.0.0.1:33418/callback".into()], issued_at: 1 }
}

fn request() -> AuthorizationRequest {
    AuthorizationRequest {
        response_type: Some("code".into()),
        client_id: Some("plc_sealed".into()),
        redirect_uri: Some("http://127.0.0.1:33418/callback".into()),
        code_challenge: Some(CHALLENGE.into()),
        code_challenge_method: Some("S256".into()),
        state: Some("xyz".into()),
        scope: Some("mcp".into()),
        resource: Some(RESOURCE.into()),
    }
}

fn code() -> Code {
    Code {
        nonce: "n1".into(),
        user: "ana".into(),
        client_id: "plc_sealed".into(),
        client_name: "Editor".into(),
        redirect_uri: "http://127.0.0.1:33418/callback".into(),
        code_challenge: CHALLENGE.into(),
        resource: RESOURCE.into(),
        expires_at: 1_000,
    }
}

fn token_request() -> TokenRequest {
    TokenRequest {
        grant_type: Some("authorization_code".into()),
        code: Some("sealed".into()),
        code_verifier: Some(VERIFIER.into()),
        redirect_uri: Some("http://127.0.0.1:33418/callback".into()),
        client_id: Some("plc_sealed".into()),
        resource: Some(RESOURCE.into()),
    }
}

#[test]
fn pkce_follows_the_rfc_example() {
    assert!(pkce_matches(VERIFIER, CHALLENGE));
    assert!(!pkce_matches(&VERIFIER.replace('d', "e"), CHALLENGE));
    assert!(!pkce_matches("short", CHALLENGE), "a verifier has 43 characters or more");
}

#[test]
fn public_clients_register_https_loopback_and_native_redirects() {
    let registered = register(
        &json!({"client_name": " Editor ", "redirect_uris": ["https://app.example/cb", "http://localhost:9/cb",
            "http://[::1]/cb", "vscode://portolan/cb"], "grant_types": ["authorization_code", "refresh_token"]}),
        5,
    )
    .expect("registered");
    assert_eq!(registered.name, "Editor");
    assert_eq!(registered.redirect_uris.len(), 4);
    assert_eq!(registered.issued_at, 5);
    let refused = |body: Value| register(&body, 0).expect_err("refused").code;
    assert_eq!(refused(json!({"client_name": "x"})), OAuthErrorCode::InvalidRedirectUri);
    assert_eq!(refused(json!({"redirect_uris": ["http://evil.example/cb"]})), OAuthErrorCode::InvalidRedirectUri);
    assert_eq!(refused(json!({"redirect_uris": ["https://a.example/cb#frag"]})), OAuthErrorCode::InvalidRedirectUri);
    assert_eq!(refused(json!({"redirect_uris": ["javascript:alert(1)"]})), OAuthErrorCode::InvalidRedirectUri);
    assert_eq!(refused(json!({"redirect_uris": ["cb"]})), OAuthErrorCode::InvalidRedirectUri);
    assert_eq!(
        refused(json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]})),
        OAuthErrorCode::InvalidClientMetadata
    );
    assert_eq!(
        refused(json!({"redirect_uris": ["https://a.example/cb"], "client_name": ""})),
        OAuthErrorCode::InvalidClientMetadata
    );
    assert_eq!(refused(json!([1])), OAuthErrorCode::InvalidClientMetadata);
}

#[test]
fn an_authorization_request_is_refused_to_the_person_until_its_redirect_is_known_good() {
    let checked = authorize(&request(), Some(client()), RESOURCE).expect("authorized");
    assert_eq!((checked.resource.as_str(), checked.state.as_deref()), (RESOURCE, Some("xyz")));
    let with_slash = AuthorizationRequest { resource: Some(format!("{RESOURCE}/")), ..request() };
    assert!(authorize(&with_slash, Some(client()), RESOURCE).is_ok(), "a trailing slash is the same resource");
    let omitted = AuthorizationRequest { redirect_uri: None, resource: None, scope: None, ..request() };
    assert_eq!(
        authorize(&omitted, Some(client()), RESOURCE).expect("one URI registered").redirect_uri,
        client().redirect_uris[0]
    );

    let to_person = |r: Result<Authorization, Refusal>| match r {
        Err(Refusal::ToPerson(e)) => e.code,
        other => panic!("expected a refusal shown to the person: {other:?}"),
    };
    assert_eq!(to_person(authorize(&request(), None, RESOURCE)), OAuthErrorCode::InvalidClient);
    let elsewhere = AuthorizationRequest { redirect_uri: Some("https://evil.example/cb".into()), ..request() };
    assert_eq!(to_person(authorize(&elsewhere, Some(client()), RESOURCE)), OAuthErrorCode::InvalidRequest);

    let to_client = |r: AuthorizationRequest| match authorize(&r, Some(client()), RESOURCE) {
        Err(Refusal::ToClient { redirect_uri, state, error }) => {
            assert_eq!((redirect_uri.as_str(), state.as_deref()), ("http://127.0.0.1:33418/callback", Some("xyz")));
            error.code
        }
        other => panic!("expected a refusal sent to the client: {other:?}"),
    };
    assert_eq!(to_client(AuthorizationRequest { code_challenge: None, ..request() }), OAuthErrorCode::InvalidRequest);
    assert_eq!(
        to_client(AuthorizationRequest { code_challenge_method: Some("plain".into()), ..request() }),
        OAuthErrorCode::InvalidRequest
    );
    assert_eq!(
        to_client(AuthorizationRequest { response_type: Some("token".into()), ..request() }),
        OAuthErrorCode::UnsupportedResponseType
    );
    assert_eq!(
        to_client(AuthorizationRequest { scope: Some("admin".into()), ..request() }),
        OAuthErrorCode::InvalidScope
    );
    assert_eq!(
        to_client(AuthorizationRequest { resource: Some("https://other.example/mcp".into()), ..request() }),
        OAuthErrorCode::InvalidTarget
    );
}

#[test]
fn a_code_is_exchanged_only_with_its_verifier_client_and_redirect_before_it_expires() {
    assert_eq!(exchange(&token_request(), Some(code()), 999).expect("exchanged").user, "ana");
    let refused =
        |request: TokenRequest, code: Option<Code>, now: i64| exchange(&request, code, now).expect_err("refused").code;
    assert_eq!(refused(token_request(), Some(code()), 1_000), OAuthErrorCode::InvalidGrant, "expired");
    assert_eq!(refused(token_request(), None, 0), OAuthErrorCode::InvalidGrant, "not sealed here");
    assert_eq!(
        refused(TokenRequest { code_verifier: Some("x".repeat(43)), ..token_request() }, Some(code()), 0),
        OAuthErrorCode::InvalidGrant
    );
    assert_eq!(
        refused(TokenRequest { code_verifier: None, ..token_request() }, Some(code()), 0),
        OAuthErrorCode::InvalidRequest
    );
    assert_eq!(
        refused(TokenRequest { client_id: Some("plc_other".into()), ..token_request() }, Some(code()), 0),
        OAuthErrorCode::InvalidClient
    );
    assert_eq!(
        refused(
            TokenRequest { redirect_uri: Some("http://127.0.0.1:1/cb".into()), ..token_request() },
            Some(code()),
            0
        ),
        OAuthErrorCode::InvalidGrant
    );
    assert_eq!(
        refused(
            TokenRequest { resource: Some("https://other.example/mcp".into()), ..token_request() },
            Some(code()),
            0
        ),
        OAuthErrorCode::InvalidTarget
    );
    assert_eq!(
        refused(TokenRequest { grant_type: Some("refresh_token".into()), ..token_request() }, Some(code()), 0),
        OAuthErrorCode::UnsupportedGrantType
    );
}
