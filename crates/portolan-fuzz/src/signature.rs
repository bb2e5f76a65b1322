//! Webhook and Slack signatures: no header, body, secret or clock makes verification panic; the
//! signature a sender computes (here with the HMAC crates directly) verifies; and another body,
//! or a timestamp more than five minutes off, fails.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use portolan_model::integration::security::{Security, SignatureAlgorithm};
use portolan_model::slack;

struct Input {
    algorithm: SignatureAlgorithm,
    secret: String,
    id: String,
    timestamp: String,
    signature: String,
    now: i64,
    body: Vec<u8>,
    other_body: Vec<u8>,
}

/// The input, one field a line: the algorithm (`sha256`, `sha1`, `plain` or `standard`), the
/// secret, the `webhook-id`, the timestamp header, the signature header, the receiver's clock
/// (seconds); then the body, and after a NUL byte another body.
fn read(data: &[u8]) -> Option<Input> {
    let mut fields = data.splitn(7, |&b| b == b'\n');
    let mut text = || fields.next().map(|field| String::from_utf8_lossy(field).into_owned());
    let algorithm = match text()?.as_str() {
        "sha1" => SignatureAlgorithm::Sha1,
        "plain" => SignatureAlgorithm::Plain,
        "standard" => SignatureAlgorithm::StandardWebhooks,
        _ => SignatureAlgorithm::Sha256,
    };
    let (secret, id, timestamp, signature) = (text()?, text()?, text()?, text()?);
    let now = text()?.trim().parse().unwrap_or(i64::MIN);
    let rest = fields.next().unwrap_or_default();
    let (body, other_body) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (rest[..at].to_vec(), rest[at + 1..].to_vec()),
        None => (rest.to_vec(), Vec::new()),
    };
    Some(Input { algorithm, secret, id, timestamp, signature, now, body, other_body })
}

const NOW: i64 = 1_800_000_000;

fn hmac<D: hmac::EagerHash>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<D> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn check(data: &[u8]) {
    let Some(input) = read(data) else { return };
    let algorithm = input.algorithm;
    let security = Security {
        secret: Some("webhook".into()),
        signature_algorithm: algorithm,
        signature_header_name: None,
        signature_prefix: None,
        request_identifier_path: None,
    };
    let id = &input.id;
    let headers = |timestamp: String, signature: String| {
        move |name: &str| match name {
            "webhook-id" => Some(id.clone()),
            "webhook-timestamp" => Some(timestamp.clone()),
            _ => Some(signature.clone()),
        }
    };

    // Whatever arrives, verification answers.
    let arrived = headers(input.timestamp.clone(), input.signature.clone());
    let _ = security.verify(&input.secret, &arrived, &input.body, input.now);
    let _ = slack::verify(&input.secret, Some(&input.timestamp), Some(&input.signature), &input.body, input.now);

    // What a sender computes verifies, and only for its own body and time.
    let sent = NOW.to_string();
    let (secret, signature) = match algorithm {
        SignatureAlgorithm::Sha256 => (
            input.secret.clone(),
            format!("sha256={}", hex(&hmac::<sha2::Sha256>(input.secret.as_bytes(), &input.body))),
        ),
        SignatureAlgorithm::Sha1 => {
            (input.secret.clone(), format!("sha1={}", hex(&hmac::<sha1::Sha1>(input.secret.as_bytes(), &input.body))))
        }
        SignatureAlgorithm::Plain => (input.secret.clone(), input.secret.clone()),
        SignatureAlgorithm::StandardWebhooks => {
            let key = input.secret.as_bytes();
            let message = [format!("{}.{sent}.", input.id).as_bytes(), &input.body].concat();
            (
                format!("whsec_{}", STANDARD.encode(key)),
                format!("v1,{}", STANDARD.encode(hmac::<sha2::Sha256>(key, &message))),
            )
        }
    };
    let correct = headers(sent.clone(), signature);
    let verified = security.verify(&secret, &correct, &input.body, NOW);
    assert!(verified.is_ok(), "a correct {algorithm:?} signature fails: {verified:?}");
    if input.other_body != input.body && algorithm != SignatureAlgorithm::Plain {
        assert!(security.verify(&secret, &correct, &input.other_body, NOW).is_err(), "another body verifies");
    }
    if algorithm == SignatureAlgorithm::StandardWebhooks {
        assert!(security.verify(&secret, &correct, &input.body, NOW + 301).is_err(), "a stale request verifies");
    }

    let signed = slack::signature(&input.secret, &sent, &input.body);
    assert_eq!(slack::verify(&input.secret, Some(&sent), Some(&signed), &input.body, NOW), Ok(()));
    if input.other_body != input.body {
        assert!(slack::verify(&input.secret, Some(&sent), Some(&signed), &input.other_body, NOW).is_err());
    }
    assert!(slack::verify(&input.secret, Some(&sent), Some(&signed), &input.body, NOW - 301).is_err());
}
