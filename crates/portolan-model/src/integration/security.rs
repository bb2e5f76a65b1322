//! How a webhook integration checks who sent a request, in the shape of Port's webhook
//! `security` block: an HMAC of the body (GitHub's `X-Hub-Signature-256`), a shared token sent
//! as is (GitLab's `X-Gitlab-Token`), or the Standard Webhooks scheme; and where a request's
//! identifier is, for deduplication.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::definition::is_header_name;
use crate::error::FieldErrors;

/// How far a Standard Webhooks timestamp may be from now.
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Security {
    /// The stored secret requests are checked against (by name; its value never leaves the
    /// server). Without one, only the request identifier is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default)]
    pub signature_algorithm: SignatureAlgorithm,
    /// Default: `X-Hub-Signature-256` (sha256), `X-Hub-Signature` (sha1), `X-Gitlab-Token`
    /// (plain), `webhook-signature` (standardWebhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_header_name: Option<String>,
    /// Text before the digest: default `sha256=` / `sha1=` with GitHub's default headers, else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_prefix: Option<String>,
    /// Where the request's identifier is, as a path into `{body, headers, queryParams}` (header
    /// names in lower case): `.headers."x-github-delivery"`, `.body.event.id`. A request whose
    /// identifier was seen before is a replay: acknowledged, not processed again. Standard
    /// Webhooks requests use `webhook-id` when no path is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_identifier_path: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum SignatureAlgorithm {
    /// HMAC-SHA256 of the body, hex (or base64) after the prefix.
    #[default]
    Sha256,
    /// HMAC-SHA1 of the body.
    Sha1,
    /// The header holds the secret itself.
    Plain,
    /// `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` HMAC-SHA256 of
    /// `id.timestamp.body` keyed by the `whsec_` secret), timestamps within five minutes.
    StandardWebhooks,
}

impl Security {
    pub(crate) fn check(&self, errors: &mut FieldErrors) {
        if let Some(header) = &self.signature_header_name
            && !is_header_name(header)
        {
            errors.push("/security/signatureHeaderName", "an HTTP header name");
        }
        if let Some(path) = &self.request_identifier_path
            && let Err(message) = RequestPath::parse(path)
        {
            errors.push("/security/requestIdentifierPath", message);
        }
    }

    /// The header the signature or token is in, lower case.
    pub fn header(&self) -> String {
        let default = match self.signature_algorithm {
            SignatureAlgorithm::Sha256 => "x-hub-signature-256",
            SignatureAlgorithm::Sha1 => "x-hub-signature",
            SignatureAlgorithm::Plain => "x-gitlab-token",
            SignatureAlgorithm::StandardWebhooks => "webhook-signature",
        };
        self.signature_header_name.as_deref().unwrap_or(default).to_ascii_lowercase()
    }

    fn prefix(&self) -> &str {
        match (&self.signature_prefix, &self.signature_header_name, self.signature_algorithm) {
            (Some(prefix), _, _) => prefix,
            (None, None, SignatureAlgorithm::Sha256) => "sha256=",
            (None, None, SignatureAlgorithm::Sha1) => "sha1=",
            _ => "",
        }
    }

    /// Checks a request against the secret's value; `header` looks a header up by its lower-case
    /// name. The error says what did not match, never what was expected.
    pub fn verify(
        &self,
        secret: &str,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        now_seconds: i64,
    ) -> Result<(), String> {
        let name = self.header();
        let Some(given) = header(&name) else {
            return Err(format!("the request has no {name} header"));
        };
        let matches = match self.signature_algorithm {
            SignatureAlgorithm::Plain => constant_time_eq(given.as_bytes(), secret.as_bytes()),
            SignatureAlgorithm::Sha256 => {
                let mac = hmac_digest::<sha2::Sha256>(secret.as_bytes(), &[body]);
                digest_matches(&mac, given.strip_prefix(self.prefix()))
            }
            SignatureAlgorithm::Sha1 => {
                let mac = hmac_digest::<sha1::Sha1>(secret.as_bytes(), &[body]);
                digest_matches(&mac, given.strip_prefix(self.prefix()))
            }
            SignatureAlgorithm::StandardWebhooks => {
                let (Some(id), Some(timestamp)) = (header("webhook-id"), header("webhook-timestamp")) else {
                    return Err("the request has no webhook-id or webhook-timestamp header".into());
                };
                let Ok(seconds) = timestamp.trim().parse::<i64>() else {
                    return Err("webhook-timestamp is not a number of seconds".into());
                };
                if now_seconds.abs_diff(seconds) > TIMESTAMP_TOLERANCE_SECONDS.unsigned_abs() {
                    return Err("webhook-timestamp is more than five minutes from now".into());
                }
                let expected = standard_webhooks_signature(secret, &id, &timestamp, body)?;
                given.split_whitespace().any(|signature| constant_time_eq(signature.as_bytes(), expected.as_bytes()))
            }
        };
        match matches {
            true => Ok(()),
            false => Err(format!("the {name} header does not match the integration's secret")),
        }
    }

    /// The request's identifier, when the integration says where it is.
    pub fn request_id(&self, request: &Value) -> Option<String> {
        let path = match (&self.request_identifier_path, self.signature_algorithm) {
            (Some(path), _) => RequestPath::parse(path).ok()?,
            (None, SignatureAlgorithm::StandardWebhooks) => {
                RequestPath(vec![Step::Key("headers".into()), Step::Key("webhook-id".into())])
            }
            (None, _) => return None,
        };
        match path.find(request)? {
            Value::String(s) if !s.is_empty() => Some(s.chars().take(200).collect()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// The Standard Webhooks signature of a message (`v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}`, keyed by the base64 after `whsec_`): what a sender puts in
/// `webhook-signature`, and what a receiver expects there.
pub fn standard_webhooks_signature(
    secret: &str,
    id: &str,
    timestamp: impl std::fmt::Display,
    body: &[u8],
) -> Result<String, String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "the signing secret is not 'whsec_' followed by base64".to_string())?;
    let signed = format!("{id}.{timestamp}.");
    Ok(format!("v1,{}", STANDARD.encode(hmac_digest::<sha2::Sha256>(&key, &[signed.as_bytes(), body]))))
}

/// Port's webhook signature (`x-port-signature`): `v1,` and the base64 HMAC-SHA256 of
/// `timestamp.body`, keyed by the secret's text as it is (Port's receivers use their client secret).
pub fn port_signature(secret: &str, timestamp: impl std::fmt::Display, body: &[u8]) -> String {
    let signed = format!("{timestamp}.");
    format!("v1,{}", STANDARD.encode(hmac_digest::<sha2::Sha256>(secret.as_bytes(), &[signed.as_bytes(), body])))
}

pub(crate) fn hmac_digest<D: hmac::EagerHash>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<D> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// A digest given in hex (any case) or base64.
fn digest_matches(expected: &[u8], given: Option<&str>) -> bool {
    let Some(given) = given.map(str::trim) else { return false };
    constant_time_eq(crate::hex(expected).as_bytes(), given.to_ascii_lowercase().as_bytes())
        || constant_time_eq(STANDARD.encode(expected).as_bytes(), given.as_bytes())
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A jq path of keys and indexes (`.body.id`, `.headers."x-request-id"`, `.body.items[0]`),
/// read without running jq: it is looked up while the sender waits.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

impl RequestPath {
    pub fn parse(text: &str) -> Result<RequestPath, String> {
        let bad = || format!("'{text}' is not a path such as .body.id or .headers.\"x-request-id\"");
        let mut steps = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix(".\"") {
                let end = after.find('"').ok_or_else(bad)?;
                steps.push(Step::Key(after[..end].to_string()));
                rest = &after[end + 1..];
            } else if let Some(after) = rest.strip_prefix("[\"") {
                let end = after.find("\"]").ok_or_else(bad)?;
                steps.push(Step::Key(after[..end].to_string()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(bad)?;
                steps.push(Step::Index(after[..end].parse().map_err(|_| bad())?));
                rest = &after[end + 1..];
            } else if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                if end == 0 {
                    return Err(bad());
                }
                steps.push(Step::Key(after[..end].to_string()));
                rest = &after[end..];
            } else {
                return Err(bad());
            }
        }
        if steps.is_empty() {
            return Err(bad());
        }
        Ok(RequestPath(steps))
    }

    fn find<'a>(&self, mut value: &'a Value) -> Option<&'a Value> {
        for step in &self.0 {
            value = match step {
                Step::Key(key) => value.get(key)?,
                Step::Index(index) => value.get(index)?,
            };
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn security(document: Value) -> Security {
        serde_json::from_value(document).expect("security")
    }

    fn headers(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        move |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn github_signatures_in_sha256_and_sha1() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let sha256 = crate::hex(&hmac_digest::<sha2::Sha256>(b"It's a Secret to Everybody", &[body]));
        let github = security(json!({"secret": "gh"}));
        let signed = headers(&[("x-hub-signature-256", format!("sha256={sha256}"))]);
        assert_eq!(github.verify("It's a Secret to Everybody", &signed, body, 0), Ok(()));
        assert!(github.verify("another secret", &signed, body, 0).is_err());
        assert!(github.verify("It's a Secret to Everybody", &signed, b"{}", 0).is_err());
        let unsigned = headers(&[]);
        assert_eq!(github.verify("x", &unsigned, body, 0), Err("the request has no x-hub-signature-256 header".into()));

        let sha1 = crate::hex(&hmac_digest::<sha1::Sha1>(b"k", &[body]));
        let legacy = security(json!({"secret": "gh", "signatureAlgorithm": "sha1"}));
        assert_eq!(legacy.verify("k", &headers(&[("x-hub-signature", format!("sha1={sha1}"))]), body, 0), Ok(()));
    }

    #[test]
    fn a_custom_header_and_prefix_and_a_plain_token() {
        let body = b"payload";
        let digest = STANDARD.encode(hmac_digest::<sha2::Sha256>(b"k", &[body]));
        let custom = security(json!({"secret": "s", "signatureHeaderName": "X-Signature", "signaturePrefix": "v0="}));
        assert_eq!(custom.verify("k", &headers(&[("x-signature", format!("v0={digest}"))]), body, 0), Ok(()));
        assert!(custom.verify("k", &headers(&[("x-signature", digest.clone())]), body, 0).is_err());

        let gitlab = security(json!({"secret": "s", "signatureAlgorithm": "plain"}));
        assert_eq!(gitlab.verify("tok", &headers(&[("x-gitlab-token", "tok".into())]), body, 0), Ok(()));
        assert!(gitlab.verify("tok", &headers(&[("x-gitlab-token", "toe".into())]), body, 0).is_err());
    }

    #[test]
    fn standard_webhooks_with_the_timestamp_window() {
        let body = br#"{"type":"deploy"}"#;
        let secret = format!("whsec_{}", STANDARD.encode(b"a key of some length"));
        let mac = hmac_digest::<sha2::Sha256>(b"a key of some length", &[b"msg_1.1000.", body]);
        let request = headers(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", "1000".into()),
            ("webhook-signature", format!("v1,bm90IGl0 v1,{}", STANDARD.encode(mac))),
        ]);
        let scheme = security(json!({"secret": "s", "signatureAlgorithm": "standardWebhooks"}));
        assert_eq!(scheme.verify(&secret, &request, body, 1_100), Ok(()));
        assert!(scheme.verify(&secret, &request, body, 1_000 + 301).is_err(), "too old");
        assert!(scheme.verify(&secret, &request, b"{}", 1_000).is_err(), "another body");
        // Found by fuzzing: a timestamp as far from the clock as can be is refused, not an overflow.
        let extreme = headers(&[
            ("webhook-id", "m".into()),
            ("webhook-timestamp", i64::MIN.to_string()),
            ("webhook-signature", "v1,x".into()),
        ]);
        let refused = scheme.verify(&secret, &extreme, body, i64::MAX);
        assert_eq!(refused, Err("webhook-timestamp is more than five minutes from now".into()));
        let id = scheme.request_id(&json!({"headers": {"webhook-id": "msg_1"}}));
        assert_eq!(id.as_deref(), Some("msg_1"));
    }

    #[test]
    fn the_standard_webhooks_signature_matches_the_specification_s_example() {
        let signature = standard_webhooks_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature.as_deref(), Ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    }

    #[test]
    fn request_identifiers_are_read_by_path() {
        let request = json!({"body": {"id": 42, "items": [{"key": "a"}]}, "headers": {"x-github-delivery": "d-1"}});
        for (path, expected) in [
            (".headers.\"x-github-delivery\"", Some("d-1")),
            (".headers[\"x-github-delivery\"]", Some("d-1")),
            (".body.id", Some("42")),
            (".body.items[0].key", Some("a")),
            (".body.missing", None),
        ] {
            let found = security(json!({"requestIdentifierPath": path})).request_id(&request);
            assert_eq!(found.as_deref(), expected, "{path}");
        }
        for bad in ["body.id", ".", ".body[x]", ".headers.\"open", "| .body"] {
            assert!(RequestPath::parse(bad).is_err(), "{bad}");
        }
    }
}
