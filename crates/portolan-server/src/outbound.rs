//! Every HTTP request the server makes goes through [`Outbound`]: webhook deliveries, the notices
//! sent about runs, the single sign-on provider, and integrations' sources. It owns the
//! only HTTP clients, so a new caller cannot forget the address policy: http and https only, no
//! redirects followed, no proxy, and loopback, private, link-local and other internal addresses
//! refused unless `webhook_allow_private` is set. IP literals are checked in whatever notation the
//! URL wrote them (`url` normalises `2130706433`, `0x7f000001`, `127.1`, `[::ffff:127.0.0.1]`, ...)
//! before anything is sent; names are checked on the addresses they resolve to, as the connection
//! is made, so a name cannot be re-pointed between a check and the connection.
//!
//! The exceptions are by name and purpose: [`Purpose::SignOn`] requests to the origin of the
//! provider the operator configured, which may well live on a private network, and
//! [`Purpose::IntegrationSource`] requests to the demo's own local source.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What a request is for: it names the request in refusals, and picks the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An action's webhook backend.
    Webhook,
    /// An approval rule's `notify` URL, told of a run waiting for approval.
    ApprovalNotice,
    /// A webhook backend told that its run timed out.
    TimeoutNotice,
    /// The single sign-on provider: its configured issuer's origin is trusted (private addresses
    /// included); any other origin its discovery document names is checked like a webhook.
    SignOn,
    /// A REST integration's source.
    IntegrationSource,
    /// An initiative's reminder to the owners of what is not done.
    Reminder,
    /// A person's notification, to the webhook their preferences name.
    Notification,
    /// Slack's Web API: the operator's configured address is trusted (private addresses included).
    Slack,
}

impl Purpose {
    pub const ALL: [Purpose; 8] = [
        Purpose::Webhook,
        Purpose::ApprovalNotice,
        Purpose::TimeoutNotice,
        Purpose::SignOn,
        Purpose::IntegrationSource,
        Purpose::Reminder,
        Purpose::Notification,
        Purpose::Slack,
    ];

    fn noun(self) -> &'static str {
        match self {
            Purpose::Webhook => "webhooks",
            Purpose::ApprovalNotice => "approval notices",
            Purpose::TimeoutNotice => "timeout notices",
            Purpose::SignOn => "sign-on requests",
            Purpose::IntegrationSource => "integration sources",
            Purpose::Reminder => "reminders",
            Purpose::Notification => "notifications",
            Purpose::Slack => "Slack requests",
        }
    }
}

/// Why an outbound request got no answer. No message carries the URL, which may hold a templated
/// secret.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundError {
    /// The policy refused it: not an http(s) URL, or an internal address.
    Refused(String),
    /// The request could not be built (a header that is not one, say).
    Invalid(String),
    /// No answer within the request's timeout.
    TimedOut(Duration),
    /// The connection failed.
    Unreachable(String),
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboundError::Refused(why) => write!(f, "refused: {why}"),
            OutboundError::Invalid(why) => write!(f, "cannot build the request: {why}"),
            OutboundError::TimedOut(after) => write!(f, "no answer within {:.1} s", after.as_secs_f64()),
            OutboundError::Unreachable(why) => write!(f, "cannot reach it: {why}"),
        }
    }
}

/// How long a request waits for its whole answer unless its caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const USER_AGENT: &str = concat!("Portolan/", env!("CARGO_PKG_VERSION"));

/// The server's HTTP client (see the module's documentation).
pub struct Outbound {
    /// Resolves through [`GuardedResolver`], never through a proxy (which would hide the address).
    guarded: reqwest::Client,
    /// For origins the operator trusts for one purpose only (the sign-on provider, the demo's
    /// own source): private addresses allowed.
    trusted: reqwest::Client,
    allow_private: bool,
    trusted_origins: RwLock<Vec<(Purpose, url::Origin)>>,
}

impl Outbound {
    pub fn new(allow_private: bool) -> Result<Self, String> {
        install_crypto();
        let guarded = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(USER_AGENT)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let trusted = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { guarded, trusted, allow_private, trusted_origins: RwLock::default() })
    }

    /// Trusts the origin (scheme, host and port) of the operator's sign-on provider, for
    /// [`Purpose::SignOn`] requests only.
    pub fn trust_sign_on_provider(&self, issuer: &str) {
        self.trust(Purpose::SignOn, issuer);
    }

    /// Trusts the origin of `url` (private addresses included) for `purpose` only.
    pub fn trust(&self, purpose: Purpose, url: &str) {
        let Some(origin) = url::Url::parse(url).ok().map(|u| u.origin()).filter(url::Origin::is_tuple) else {
            return;
        };
        if let Ok(mut trusted) = self.trusted_origins.write() {
            trusted.push((purpose, origin));
        }
    }

    /// Checks a URL for `purpose` as far as can be done before sending: its scheme, and its host
    /// when that is an IP literal (names are checked as they resolve, when sent).
    pub fn check(&self, purpose: Purpose, url: &str) -> Result<url::Url, OutboundError> {
        self.route(purpose, url).map(|(url, _)| url)
    }

    /// [`Outbound::check`] for a URL a person saves: a refusal is a validation error at `path`.
    pub fn check_field(&self, purpose: Purpose, url: &str, path: &str) -> Result<(), crate::error::Error> {
        self.check(purpose, url).map(|_| ()).map_err(|refused| match refused {
            OutboundError::Refused(why) => {
                crate::error::Error::invalid_at(path, format!("{why} (the server setting webhook_allow_private)"))
            }
            other => crate::error::Error::invalid_at(path, other.to_string()),
        })
    }

    fn route(&self, purpose: Purpose, url: &str) -> Result<(url::Url, &reqwest::Client), OutboundError> {
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| OutboundError::Refused(format!("{} go to http or https URLs only", purpose.noun())))?;
        if self.is_trusted(purpose, &parsed) {
            return Ok((parsed, &self.trusted));
        }
        if !self.allow_private
            && let Some(ip) = literal_ip(&parsed)
            && is_internal(ip)
        {
            return Err(OutboundError::Refused(format!(
                "{ip} is a private or loopback address; {} may not reach it unless allowed",
                purpose.noun()
            )));
        }
        Ok((parsed, &self.guarded))
    }

    fn is_trusted(&self, purpose: Purpose, url: &url::Url) -> bool {
        let origin = url.origin();
        self.trusted_origins.read().is_ok_and(|trusted| trusted.iter().any(|(p, o)| *p == purpose && *o == origin))
    }

    /// A request to `url` for `purpose`, once the URL passed [`Outbound::check`].
    pub fn request(&self, purpose: Purpose, method: reqwest::Method, url: &str) -> Result<Request, OutboundError> {
        let (url, client) = self.route(purpose, url)?;
        Ok(Request { purpose, timeout: DEFAULT_TIMEOUT, builder: client.request(method, url) })
    }
}

/// A checked request being built; [`Request::send`] sends it.
pub struct Request {
    purpose: Purpose,
    timeout: Duration,
    builder: reqwest::RequestBuilder,
}

impl Request {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        self.builder = self.builder.basic_auth(user, Some(password));
        self
    }

    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.builder = self.builder.json(body);
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.builder = self.builder.body(body);
        self
    }

    /// How long to wait for the whole answer ([`DEFAULT_TIMEOUT`] unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub async fn send(self) -> Result<reqwest::Response, OutboundError> {
        let Request { purpose, timeout, builder } = self;
        builder.timeout(timeout).send().await.map_err(|err| failure(purpose, timeout, err))
    }
}

fn failure(purpose: Purpose, timeout: Duration, err: reqwest::Error) -> OutboundError {
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            return OutboundError::Refused(format!(
                "{}; {} may not reach it unless allowed",
                refusal.0,
                purpose.noun()
            ));
        }
        source = cause.source();
    }
    if err.is_timeout() {
        OutboundError::TimedOut(timeout)
    } else if err.is_builder() {
        OutboundError::Invalid(plain(err))
    } else {
        OutboundError::Unreachable(plain(err))
    }
}

/// An error's message with its causes, without the URL (which may hold a templated secret).
fn plain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Loopback, private, link-local, unique-local, site-local, unspecified, CGNAT, benchmarking,
/// reserved and multicast addresses, and IPv6 addresses that carry one of those IPv4 addresses
/// (mapped, compatible, translated, NAT64, 6to4) or are for local use (local NAT64, Teredo).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && c == 0)
                || a == 0
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| IpAddr::V4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
            if let Some(v4) = v6.to_ipv4() {
                // IPv4-mapped and IPv4-compatible (`::a.b.c.d`, which also covers `::1` and `::`).
                return v6.is_loopback() || v6.is_unspecified() || is_internal(IpAddr::V4(v4));
            }
            match s {
                // IPv4-translated (`::ffff:0:a.b.c.d`) and well-known NAT64 (`64:ff9b::a.b.c.d`).
                [0, 0, 0, 0, 0xffff, 0, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_internal(embedded(hi, lo)),
                // Local-use NAT64 (RFC 8215) and Teredo tunnels: local or not addressable here.
                [0x64, 0xff9b, 1, ..] | [0x2001, 0, ..] => true,
                [0x2002, hi, lo, ..] => is_internal(embedded(hi, lo)),
                _ => {
                    v6.is_multicast()
                        || (s[0] & 0xfe00) == 0xfc00
                        || (s[0] & 0xffc0) == 0xfe80
                        || (s[0] & 0xffc0) == 0xfec0
                }
            }
        }
    }
}

/// What the resolver says when a name resolves only to internal addresses; found again in the
/// error's chain so that the refusal is told apart from a connection failure.
#[derive(Debug)]
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Resolves names and drops internal addresses unless they are allowed: the check happens on the
/// addresses actually connected to.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> =
                found.iter().copied().filter(|a| allow_private || !is_internal(a.ip())).collect();
            if kept.is_empty() {
                if found.is_empty() {
                    return Err(format!("'{host}' does not resolve").into());
                }
                let reason = format!("'{host}' resolves only to private or loopback addresses");
                return Err(Box::new(Refusal(reason)) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The integration tests' corpus, shared with the unit tests below.
/// Installs the process's TLS crypto (ring); harmless when already installed.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
#[path = "../tests/api/ssrf_corpus.rs"]
mod ssrf_corpus;

#[cfg(test)]
mod tests {
    use super::*;

    use super::ssrf_corpus::{INTERNAL_HOSTS, PUBLIC_HOSTS};

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:0:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:101::1",
        ] {
            assert!(is_internal(internal.parse().expect("ip")), "{internal} is internal");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(!is_internal(public.parse().expect("ip")), "{public} is public");
        }
    }

    /// Every host of the corpus is refused for every purpose (IP literals before anything is
    /// sent, names as they resolve), whichever way the URL is written; public literals pass.
    #[tokio::test]
    async fn every_caller_refuses_the_whole_corpus() {
        let outbound = Outbound::new(false).expect("client");
        for purpose in Purpose::ALL {
            for host in INTERNAL_HOSTS {
                for url in [format!("http://{host}/"), format!("https://{host}:8443/x?y=1")] {
                    let sent = match outbound.request(purpose, reqwest::Method::POST, &url) {
                        Ok(request) => request.timeout(Duration::from_secs(5)).send().await.map(|_| ()),
                        Err(refused) => Err(refused),
                    };
                    let Err(OutboundError::Refused(why)) = sent else {
                        panic!("{purpose:?} to {url} was not refused: {sent:?}");
                    };
                    assert!(why.contains("private or loopback"), "{why}");
                    assert!(why.contains(purpose.noun()), "{why}");
                }
            }
            for host in PUBLIC_HOSTS {
                let url = format!("https://{host}/hook");
                assert!(outbound.check(purpose, &url).is_ok(), "{purpose:?} to {url} is allowed");
            }
            for url in ["ftp://8.8.8.8/", "file:///etc/passwd", "gopher://example.com/", "data:text/plain,x", "x"] {
                assert!(matches!(outbound.check(purpose, url), Err(OutboundError::Refused(_))), "{purpose:?} to {url}");
            }
        }
    }

    #[test]
    fn private_addresses_pass_when_allowed() {
        let outbound = Outbound::new(true).expect("client");
        for purpose in Purpose::ALL {
            for host in INTERNAL_HOSTS {
                assert!(outbound.check(purpose, &format!("http://{host}/")).is_ok(), "{purpose:?} {host}");
            }
        }
    }

    /// Only sign-on requests, and only to the configured issuer's origin, may reach a private
    /// provider.
    #[test]
    fn the_sign_on_provider_is_the_one_trusted_origin() {
        let outbound = Outbound::new(false).expect("client");
        outbound.trust_sign_on_provider("http://127.0.0.1:5556/realms/acme");
        assert!(outbound.check(Purpose::SignOn, "http://127.0.0.1:5556/token").is_ok());
        assert!(outbound.check(Purpose::SignOn, "http://127.0.0.1:5557/token").is_err(), "another port");
        assert!(outbound.check(Purpose::SignOn, "https://127.0.0.1:5556/token").is_err(), "another scheme");
        assert!(outbound.check(Purpose::SignOn, "http://169.254.169.254/latest").is_err());
        for purpose in [Purpose::Webhook, Purpose::ApprovalNotice, Purpose::TimeoutNotice] {
            assert!(outbound.check(purpose, "http://127.0.0.1:5556/token").is_err(), "{purpose:?}");
        }
    }
}
