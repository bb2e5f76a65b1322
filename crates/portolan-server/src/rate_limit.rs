//! API rate limits: so many requests per minute per credential (API token or session), and a
//! wider limit per address, which made-up credentials cannot get around. Every API response says
//! where the caller stands as Port's API does (`x-ratelimit-period`, `x-ratelimit-limit`,
//! `x-ratelimit-remaining`, `x-ratelimit-reset`, in seconds); a request over a limit gets 429 with `Retry-After`. Counted in this process, in fixed
//! one-minute windows.

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
/// Past this many callers remembered, windows that have ended are forgotten; if that is not
/// enough, new credentials are counted by their address alone.
const MAX_REMEMBERED: usize = 100_000;
/// An address may make this many times a credential's requests (people behind one proxy).
const ADDRESS_FACTOR: u32 = 4;

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

    /// Counts a request against its address and its credential (if any): how many remain and
    /// when the window ends, or `Err` with the seconds to wait.
    fn count(&self, address: [u8; 32], credential: Option<[u8; 32]>, now: Instant) -> Result<(u32, u64), u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > MAX_REMEMBERED {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let credential = credential.filter(|key| windows.len() < MAX_REMEMBERED || windows.contains_key(key));
        let by_address = Self::take(&mut windows, address, self.per_minute * ADDRESS_FACTOR, now)?;
        match credential {
            Some(key) => Self::take(&mut windows, key, self.per_minute, now),
            None => Ok((by_address.0.min(self.per_minute), by_address.1)),
        }
    }

    fn take(windows: &mut Windows, key: [u8; 32], limit: u32, now: Instant) -> Result<(u32, u64), u64> {
        let (start, used) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *used = 0;
        }
        let left = WINDOW.saturating_sub(now.duration_since(*start));
        let reset = (left.as_millis() as u64).div_ceil(1000).max(1);
        if *used >= limit {
            return Err(reset);
        }
        *used += 1;
        Ok((limit - *used, reset))
    }
}

/// Who a request counts against: its address, and its credential if it has one (hashed; never
/// kept as is).
fn caller_keys(headers: &HeaderMap, address: Option<SocketAddr>) -> ([u8; 32], Option<[u8; 32]>) {
    let credential = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| crate::extract::cookie(headers, SESSION_COOKIE));
    let address = address.map_or("unknown".to_string(), |a| a.ip().to_string());
    let hash = |text: String| -> [u8; 32] { Sha256::digest(text.as_bytes()).into() };
    (hash(format!("a:{address}")), credential.map(|c| hash(format!("c:{c}"))))
}

pub async fn limit(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let (by_address, by_credential) = caller_keys(request.headers(), address);
    let limit = HeaderValue::from(limiter.per_minute);
    match limiter.count(by_address, by_credential, Instant::now()) {
        Ok((remaining, reset)) => {
            let mut response = next.run(request).await;
            standing(response.headers_mut(), limit, remaining, reset);
            response
        }
        Err(wait) => {
            let message = format!("more than {} requests in a minute; wait {wait} s", limiter.per_minute);
            let mut response = Error::too_many(message, wait).into_response();
            standing(response.headers_mut(), limit, 0, wait);
            response
        }
    }
}

/// Where the caller stands, in the headers Port documents (the period in seconds).
fn standing(headers: &mut HeaderMap, limit: HeaderValue, remaining: u32, reset: u64) {
    headers.insert("x-ratelimit-period", HeaderValue::from(WINDOW.as_secs()));
    headers.insert("x-ratelimit-limit", limit);
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_limit_then_refuses_until_it_ends() {
        let limiter = RateLimiter::new(2);
        let start = Instant::now();
        let token = Some([1; 32]);
        assert_eq!(limiter.count([9; 32], token, start).map(|r| r.0), Ok(1));
        assert_eq!(limiter.count([9; 32], token, start).map(|r| r.0), Ok(0));
        assert_eq!(limiter.count([9; 32], token, start + Duration::from_millis(20_400)), Err(40), "rounded up");
        assert!(limiter.count([9; 32], Some([2; 32]), start).is_ok(), "another credential has its own");
        assert!(limiter.count([9; 32], token, start + WINDOW).is_ok(), "a new window");
    }

    #[test]
    fn made_up_credentials_do_not_escape_the_address_limit() {
        let limiter = RateLimiter::new(2);
        let start = Instant::now();
        let admitted = (0..20u8).filter(|i| limiter.count([200; 32], Some([*i; 32]), start).is_ok()).count();
        assert_eq!(admitted, 8, "an address gets four times a credential's share, however many it invents");
    }
}
