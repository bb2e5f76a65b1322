//! Sign-in, sessions, CSRF, tokens and accounts over real HTTP.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{ManualClock, Reply, TestApp, read, spawn_app};

const PASSWORD: &str = "correct horse battery";

/// A browser without a cookie jar: the test carries the cookie and CSRF token itself.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn create_person(app: &TestApp, identifier: &str, teams: &[&str]) {
    for team in teams {
        let made = app.post("/api/v1/blueprints/_team/entities?upsert=true", json!({"identifier": team})).await;
        assert!(made.status.is_success(), "{}", made.body);
    }
    let made = app
        .post(
            "/api/v1/users",
            json!({"identifier": identifier, "teams": teams, "password": PASSWORD, "email": identifier}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
}

async fn login(app: &TestApp, username: &str, password: &str) -> Reply {
    app.call_anonymously(Method::POST, "/api/v1/auth/login", Some(json!({"username": username, "password": password})))
        .await
}

async fn sign_in(app: &TestApp, username: &str) -> Browser {
    sign_in_with(app, username, PASSWORD).await
}

async fn sign_in_with(app: &TestApp, username: &str, password: &str) -> Browser {
    let reply = login(app, username, password).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let set_cookie = reply.headers["set-cookie"].to_str().expect("ascii").to_string();
    let cookie = set_cookie.split(';').next().expect("name=value").to_string();
    Browser { cookie, csrf: reply.body["user"]["csrfToken"].as_str().expect("csrf token").to_string() }
}

async fn send(app: &TestApp, browser: &Browser, method: Method, path: &str, body: Option<Value>, csrf: bool) -> Reply {
    let mut request =
        reqwest::Client::new().request(method, format!("{}{path}", app.base)).header("cookie", &browser.cookie);
    if csrf {
        request = request.header("x-csrf-token", &browser.csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("sent")).await
}

#[tokio::test]
async fn a_password_sign_in_sets_a_host_only_secure_cookie_that_sign_out_ends() {
    let app = spawn_app().await;
    create_person(&app, "ana@example.com", &["team-cart"]).await;

    for (username, password) in [("ana@example.com", "wrong password!"), ("nobody@example.com", PASSWORD)] {
        let refused = login(&app, username, password).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.error_code(), "unauthorized");
        assert_eq!(refused.body["message"], "wrong username or password", "the same for both");
        assert!(refused.headers.get("set-cookie").is_none());
    }

    let reply = login(&app, "ana@example.com", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let set_cookie = reply.headers["set-cookie"].to_str().expect("ascii");
    assert!(set_cookie.starts_with("__Host-portolan_session="), "{set_cookie}");
    for flag in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set_cookie.split("; ").any(|part| part == flag), "{flag} missing: {set_cookie}");
    }
    assert!(!set_cookie.contains("Domain"), "host-only: {set_cookie}");
    assert_eq!(reply.body["user"]["identifier"], "ana@example.com");
    assert_eq!(reply.body["user"]["teams"], json!(["team-cart"]));
    let browser = sign_in(&app, "ana@example.com").await;

    let me = send(&app, &browser, Method::GET, "/api/v1/auth/me", None, false).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"]["identifier"], "ana@example.com");
    assert_eq!(me.body["user"]["role"], "member");

    // A change made with the cookie needs the session's CSRF token, and must not come cross-site.
    let token = json!({"name": "laptop"});
    let no_csrf = send(&app, &browser, Method::POST, "/api/v1/tokens", Some(token.clone()), false).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(no_csrf.error_code(), "csrf_failed");
    let wrong = Browser { cookie: browser.cookie.clone(), csrf: "forged".into() };
    assert_eq!(
        send(&app, &wrong, Method::POST, "/api/v1/tokens", Some(token.clone()), true).await.status,
        StatusCode::FORBIDDEN
    );
    let cross_site = reqwest::Client::new()
        .post(format!("{}/api/v1/tokens", app.base))
        .header("cookie", &browser.cookie)
        .header("x-csrf-token", &browser.csrf)
        .header("sec-fetch-site", "cross-site")
        .json(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(read(cross_site).await.error_code(), "csrf_failed");
    let made = send(&app, &browser, Method::POST, "/api/v1/tokens", Some(token), true).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert!(made.body["token"].as_str().is_some_and(|t| t.starts_with("plt_")));

    let forged = Browser { cookie: "__Host-portolan_session=made-up".into(), csrf: String::new() };
    assert_eq!(send(&app, &forged, Method::GET, "/api/v1/auth/me", None, false).await.status, StatusCode::UNAUTHORIZED);

    let out = send(&app, &browser, Method::POST, "/api/v1/auth/logout", None, true).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out.headers["set-cookie"].to_str().expect("ascii").contains("Max-Age=0"));
    let replayed = send(&app, &browser, Method::GET, "/api/v1/auth/me", None, false).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED, "the old cookie is dead");

    let anonymous = app.call_anonymously(Method::GET, "/api/v1/blueprints", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.error_code(), "unauthorized");
}

#[tokio::test]
async fn sessions_end_after_idling_and_after_their_absolute_lifetime() {
    const HOUR: i64 = 3_600_000;
    let clock = ManualClock::at(1_800_000_000_000);
    let app = TestApp::builder().clock(clock.clone()).private_addresses_refused().start().await;
    create_person(&app, "ana@example.com", &[]).await;
    let browser = sign_in(&app, "ana@example.com").await;
    clock.advance(7 * HOUR);
    assert_eq!(send(&app, &browser, Method::GET, "/api/v1/auth/me", None, false).await.status, StatusCode::OK);
    clock.advance(8 * HOUR + 1);
    let idle = send(&app, &browser, Method::GET, "/api/v1/auth/me", None, false).await;
    assert_eq!(idle.status, StatusCode::UNAUTHORIZED);
    assert_eq!(idle.error_code(), "token_expired");

    // Active every 7 hours, a session still ends 7 days after sign-in.
    let browser = sign_in(&app, "ana@example.com").await;
    for _ in 0..23 {
        clock.advance(7 * HOUR);
        assert_eq!(send(&app, &browser, Method::GET, "/api/v1/auth/me", None, false).await.status, StatusCode::OK);
    }
    clock.advance(7 * HOUR);
    let old = send(&app, &browser, Method::GET, "/api/v1/auth/me", None, false).await;
    assert_eq!(old.error_code(), "token_expired");
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_with_retry_after_without_locking_out_others() {
    let app = spawn_app().await;
    create_person(&app, "ana@example.com", &[]).await;
    create_person(&app, "ben@example.com", &[]).await;
    for _ in 0..5 {
        assert_eq!(login(&app, "ana@example.com", "not the password").await.status, StatusCode::UNAUTHORIZED);
    }
    let throttled = login(&app, "ana@example.com", PASSWORD).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits: {}", throttled.body);
    assert_eq!(throttled.error_code(), "too_many_requests");
    let retry: u64 = throttled.headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=900).contains(&retry), "{retry}");
    assert_eq!(login(&app, "ben@example.com", PASSWORD).await.status, StatusCode::OK, "another account is unaffected");
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    assert_eq!(login(&app, "ana@example.com", PASSWORD).await.status, StatusCode::OK, "after the wait");
}

/// A new token of the service account `ci-bot`, and its id.
async fn issue(app: &TestApp, days: Option<u32>) -> (String, String) {
    let reply = app.post("/api/v1/tokens", json!({"name": "pipeline", "user": "ci-bot", "expiresInDays": days})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let text = |v: &Value| v.as_str().expect("text").to_string();
    (text(&reply.body["token"]), text(&reply.body["apiToken"]["id"]))
}

#[tokio::test]
async fn tokens_expire_are_revoked_and_die_with_their_disabled_owner() {
    const DAY: i64 = 86_400_000;
    let clock = ManualClock::at(1_800_000_000_000);
    let app = TestApp::builder().clock(clock.clone()).private_addresses_refused().start().await;
    let made = app.post("/api/v1/users", json!({"identifier": "ci-bot", "service": true})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["user"]["kind"], "service");
    let service_password =
        app.post("/api/v1/users", json!({"identifier": "ci-2", "service": true, "password": PASSWORD})).await;
    assert_eq!(service_password.status, StatusCode::UNPROCESSABLE_ENTITY);

    let (short, _) = issue(&app, Some(1)).await;
    assert_eq!(app.call_as(Method::GET, "/api/v1/blueprints", &short, None).await.status, StatusCode::OK);
    let listed = app.get("/api/v1/tokens").await;
    let entry = listed.body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["user"] == "ci-bot")
        .cloned()
        .expect("listed");
    assert!(entry["lastUsedAt"].is_string(), "last use recorded: {entry}");
    assert!(entry.get("token").is_none() && !listed.body.to_string().contains(&short), "never shown again");
    clock.advance(DAY + 1);
    let expired = app.call_as(Method::GET, "/api/v1/blueprints", &short, None).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.error_code(), "token_expired");

    let (revoked, id) = issue(&app, None).await;
    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}")).await.status, StatusCode::OK);
    assert_eq!(app.call_as(Method::GET, "/api/v1/blueprints", &revoked, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.call_as(Method::GET, "/api/v1/blueprints", "plt_not-a-token", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let (live, _) = issue(&app, None).await;
    assert_eq!(app.call_as(Method::GET, "/api/v1/blueprints", &live, None).await.status, StatusCode::OK);
    let disabled = app.patch("/api/v1/users/ci-bot", json!({"status": "disabled"})).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert_eq!(
        app.call_as(Method::GET, "/api/v1/blueprints", &live, None).await.status,
        StatusCode::UNAUTHORIZED,
        "at once"
    );
    // Re-enabled, the token works again: disabling suspends, revoking ends.
    app.patch("/api/v1/users/ci-bot", json!({"status": "active"})).await;
    assert_eq!(app.call_as(Method::GET, "/api/v1/blueprints", &live, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_person_is_signed_out_and_members_cannot_manage_accounts() {
    let app = spawn_app().await;
    create_person(&app, "ana@example.com", &[]).await;
    let browser = sign_in(&app, "ana@example.com").await;
    let member = app.member("max@example.com", &[]).await;
    let as_member = |method: Method, path: &'static str, body: Option<Value>| {
        let member = member.clone();
        let app = &app;
        async move { app.call_as(method, path, &member, body).await }
    };
    assert_eq!(as_member(Method::GET, "/api/v1/users", None).await.status, StatusCode::FORBIDDEN);
    let promote = as_member(Method::PATCH, "/api/v1/users/max@example.com", Some(json!({"role": "admin"}))).await;
    assert_eq!(promote.status, StatusCode::FORBIDDEN, "nobody grants themselves a role");
    let other = as_member(Method::POST, "/api/v1/tokens", Some(json!({"name": "x", "user": "ana@example.com"}))).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "a token only for oneself");
    assert_eq!(as_member(Method::GET, "/api/v1/secrets", None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(as_member(Method::GET, "/api/v1/runners/tokens", None).await.status, StatusCode::FORBIDDEN);
    let own =
        as_member(Method::PATCH, "/api/v1/users/max@example.com", Some(json!({"password": "a new long password"})))
            .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "not without the current one: {}", own.body);

    // Ana changes her own password with the current one; every session she had ends.
    let change = json!({"password": "a brand new password", "currentPassword": PASSWORD});
    let changed = send(&app, &browser, Method::PATCH, "/api/v1/users/ana@example.com", Some(change), true).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(
        send(&app, &browser, Method::GET, "/api/v1/auth/me", None, false).await.status,
        StatusCode::UNAUTHORIZED
    );
    let browser = sign_in_with(&app, "ana@example.com", "a brand new password").await;

    assert_eq!(app.patch("/api/v1/users/ana@example.com", json!({"status": "disabled"})).await.status, StatusCode::OK);
    assert_eq!(
        send(&app, &browser, Method::GET, "/api/v1/auth/me", None, false).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(login(&app, "ana@example.com", "a brand new password").await.status, StatusCode::UNAUTHORIZED);
    let self_demote = app.patch("/api/v1/users/admin@test", json!({"role": "member"})).await;
    assert_eq!(self_demote.status, StatusCode::FORBIDDEN, "an admin cannot lock the portal out of admins by accident");
}

#[tokio::test]
async fn look_alike_identifiers_are_refused_for_users_teams_blueprints_and_new_entities() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    // A fullwidth 'ａ' and a Cyrillic 'а' in front of "dmin".
    for lookalike in ["\u{FF41}dmin", "\u{0430}dmin"] {
        let attempts = [
            ("/api/v1/users", json!({"identifier": lookalike, "service": true})),
            ("/api/v1/blueprints/_user/entities", json!({"identifier": lookalike})),
            ("/api/v1/blueprints/_team/entities", json!({"identifier": lookalike})),
            ("/api/v1/blueprints", json!({"identifier": lookalike, "schema": {"properties": {}}})),
            ("/api/v1/blueprints/service/entities", crate::service(lookalike)),
        ];
        for (path, body) in attempts {
            let refused = app.post(path, body).await;
            assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{path} {lookalike}: {}", refused.body);
            assert_eq!(refused.error_code(), "validation_failed");
            assert_eq!(refused.detail_paths(), ["/identifier"], "{path}: {}", refused.body);
        }
    }
    let users = app.get("/api/v1/users").await;
    let listed = users.body.to_string();
    assert!(!listed.contains('\u{FF41}') && !listed.contains('\u{0430}'), "no look-alike account: {listed}");
    let email = app.post("/api/v1/users", json!({"identifier": "alice@portolan.dev", "service": true})).await;
    assert_eq!(email.status, StatusCode::CREATED, "{}", email.body);
    // Entities other than users and teams keep every language, one look-alike alphabet at a time.
    for fine in ["заказы", "café-ßervice", "订单服务"] {
        let made = app.post("/api/v1/blueprints/service/entities", crate::service(fine)).await;
        assert_eq!(made.status, StatusCode::CREATED, "{fine}: {}", made.body);
    }
    let team = app.post("/api/v1/blueprints/_team/entities", json!({"identifier": "café"})).await;
    assert_eq!(team.status, StatusCode::UNPROCESSABLE_ENTITY, "teams are ASCII: {}", team.body);
    let message = team.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("ASCII") && message.contains("U+00E9"), "{message}");
}
