//! API rate limits: so many requests per minute per credential (API token or session), or per
//! address for requests without one. Every API response says where the caller stands
//! (`x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset` in seconds); a request over
//! the limit gets 429 with `Retry-After`. Counted in this process, in fixed one-minute windows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::extract::SESSION_COOKIE;

const WINDOW: Duration = Duration::from_secs(60);
/// Past this many callers remembered, windows that have ended are forgotten.
const MAX_REMEMBERED: usize = 100_000;

/// Per caller (the SHA-256 of their credential or address): when their window began, and how
/// many requests it has counted.
type Windows = HashMap<[u8; 32], (Instant, u32)>;

#[derive(Clone)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Arc<Mutex<Windows>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, windows: Arc::default() }
    }

    /// Counts a request of `key`: how many remain in its window and when the window ends, or
    /// `Err` with the seconds to wait.
    fn count(&self, key: [u8; 32], now: Instant) -> Result<(u32, u64), u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > MAX_REMEMBERED {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, used) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *used = 0;
        }
        let reset = (WINDOW.saturating_sub(now.duration_since(*start))).as_secs().max(1);
        if *used >= self.per_minute {
            return Err(reset);
        }
        *used += 1;
        Ok((self.per_minute - *used, reset))
    }
}

/// Who a request counts against: its credential (hashed; never kept as is) or its address.
fn caller_key(headers: &HeaderMap, address: Option<SocketAddr>) -> [u8; 32] {
    let credential = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| crate::extract::cookie(headers, SESSION_COOKIE));
    let key = match (credential, address) {
        (Some(credential), _) => format!("c:{credential}"),
        (None, Some(address)) => format!("a:{}", address.ip()),
        (None, None) => "a:unknown".into(),
    };
    Sha256::digest(key.as_bytes()).into()
}

pub async fn limit(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let key = caller_key(request.headers(), address);
    let limit = HeaderValue::from(limiter.per_minute);
    match limiter.count(key, Instant::now()) {
        Ok((remaining, reset)) => {
            let mut response = next.run(request).await;
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", limit);
            headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
            headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
            response
        }
        Err(wait) => {
            let message = format!("more than {} requests in a minute; wait {wait} s", limiter.per_minute);
            let mut response = Error::too_many(message, wait).into_response();
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", limit);
            headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
            headers.insert("x-ratelimit-reset", HeaderValue::from(wait));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_limit_then_refuses_until_it_ends() {
        let limiter = RateLimiter::new(2);
        let start = Instant::now();
        assert_eq!(limiter.count([1; 32], start).map(|r| r.0), Ok(1));
        assert_eq!(limiter.count([1; 32], start).map(|r| r.0), Ok(0));
        assert_eq!(limiter.count([1; 32], start + Duration::from_secs(20)), Err(40));
        assert!(limiter.count([2; 32], start).is_ok(), "another caller has their own");
        assert!(limiter.count([1; 32], start + WINDOW).is_ok(), "a new window");
    }
}
