//! The server's key and what is derived from it: sealing secrets at rest, run-scoped tokens, and
//! random tokens. The key comes from configuration; without one, the server generates a key once
//! and keeps it in the database (so replicas agree), and says so at start.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use hmac::{Hmac, Mac};
use portolan_model::Millis;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorCode, Result};

/// The length of the key, in bytes.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
/// The prefix of run-scoped tokens.
pub const RUN_TOKEN_PREFIX: &str = "plr_";
/// The prefix of API tokens (runner tokens for now).
pub const TOKEN_PREFIX: &str = "plt_";

pub struct Keys {
    sealing: [u8; KEY_BYTES],
    run_tokens: [u8; KEY_BYTES],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// HMAC-SHA256 over length-prefixed parts (so no two part lists give the same input).
fn tagged(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    tagged(key, parts).finalize().into_bytes().into()
}

/// Why a run token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTokenError {
    Invalid,
    Expired,
    /// Valid, but for an earlier hand-over of the run to a backend.
    Superseded,
}

impl Keys {
    /// Derives the working keys from the master key.
    pub fn new(master: &[u8; KEY_BYTES]) -> Self {
        Self { sealing: mac(master, &[b"portolan/secrets/v1"]), run_tokens: mac(master, &[b"portolan/run-tokens/v1"]) }
    }

    /// Parses a configured key: 32 bytes, base64.
    pub fn parse_master(text: &str) -> Result<[u8; KEY_BYTES], String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| "the secrets key is not base64".to_string())?;
        bytes.try_into().map_err(|_| format!("the secrets key must be {KEY_BYTES} bytes (base64 of them)"))
    }

    pub fn generate_master() -> String {
        STANDARD.encode(random_bytes::<KEY_BYTES>())
    }

    /// The audit key derived from a master key (used when no audit key of its own is configured).
    pub fn derive_audit_key(master: &[u8; KEY_BYTES]) -> portolan_model::audit::AuditKey {
        portolan_model::audit::AuditKey::new(mac(master, &[b"portolan/audit/v1"]))
    }

    /// Encrypts a secret value, bound to its name (a sealed value moved to another name does not open).
    pub fn seal(&self, name: &str, value: &str) -> Result<Vec<u8>> {
        let cipher = XChaCha20Poly1305::new_from_slice(&self.sealing).map_err(|e| internal(e.to_string()))?;
        let nonce = chacha20poly1305::XNonce::generate();
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: value.as_bytes(), aad: name.as_bytes() })
            .map_err(|_| internal("cannot encrypt the secret"))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<String> {
        if sealed.len() < NONCE_BYTES {
            return Err(internal(format!("secret '{name}' is stored damaged")));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce = chacha20poly1305::XNonce::try_from(nonce).map_err(|_| internal("bad nonce"))?;
        let cipher = XChaCha20Poly1305::new_from_slice(&self.sealing).map_err(|e| internal(e.to_string()))?;
        let plain = cipher.decrypt(&nonce, Payload { msg: ciphertext, aad: name.as_bytes() }).map_err(|_| {
            internal(format!("secret '{name}' does not open with this server's key (was the key changed?)"))
        })?;
        String::from_utf8(plain).map_err(|_| internal(format!("secret '{name}' is not text")))
    }

    /// A document only this server can read or make (an OAuth client id, an authorization code):
    /// sealed as [`Keys::seal`] does, bound to its `purpose`, as URL-safe text.
    pub fn seal_document<T: serde::Serialize>(&self, purpose: &str, document: &T) -> Result<String> {
        let text = serde_json::to_string(document).map_err(|e| internal(e.to_string()))?;
        Ok(URL_SAFE_NO_PAD.encode(self.seal(purpose, &text)?))
    }

    /// The document [`Keys::seal_document`] made for `purpose`; `None` for anything else.
    pub fn open_document<T: serde::de::DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        serde_json::from_str(&self.open(purpose, &bytes).ok()?).ok()
    }

    /// A token that lets a backend report on one hand-over (`attempt`) of one run until `expires`.
    pub fn run_token(&self, run_id: &str, attempt: i64, expires: Millis) -> String {
        let tag = mac(&self.run_tokens, &[run_id.as_bytes(), &attempt.to_be_bytes(), &expires.to_be_bytes()]);
        format!("{RUN_TOKEN_PREFIX}{attempt}_{expires}_{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Checks a run token against the run's current hand-over.
    pub fn verify_run_token(
        &self,
        token: &str,
        run_id: &str,
        current_attempt: i64,
        now: Millis,
    ) -> Result<(), RunTokenError> {
        let body = token.strip_prefix(RUN_TOKEN_PREFIX).ok_or(RunTokenError::Invalid)?;
        let mut parts = body.splitn(3, '_');
        let attempt: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or(RunTokenError::Invalid)?;
        let expires: Millis = parts.next().and_then(|p| p.parse().ok()).ok_or(RunTokenError::Invalid)?;
        let tag = parts.next().and_then(|p| URL_SAFE_NO_PAD.decode(p).ok()).ok_or(RunTokenError::Invalid)?;
        let mut check =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.run_tokens).map_err(|_| RunTokenError::Invalid)?;
        for part in [run_id.as_bytes(), &attempt.to_be_bytes(), &expires.to_be_bytes()] {
            check.update(&(part.len() as u64).to_be_bytes());
            check.update(part);
        }
        check.verify_slice(&tag).map_err(|_| RunTokenError::Invalid)?;
        if expires < now {
            return Err(RunTokenError::Expired);
        }
        if attempt != current_attempt {
            return Err(RunTokenError::Superseded);
        }
        Ok(())
    }
}

fn internal(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Internal, message)
}

/// Encrypts an action input marked `encryption: aes256-gcm` the way Port does: AES-256-GCM with a
/// 16-byte IV under the first 32 bytes of `key` (Port: the organisation's client secret; here the
/// server's webhook signing key), as base64 of IV, ciphertext and tag.
pub fn encrypt_input(key: &str, plaintext: &str) -> Result<String> {
    use aes_gcm::aead::Aead;
    use aes_gcm::aead::consts::U16;
    use aes_gcm::{AesGcm, KeyInit, aes::Aes256};
    let key = key.as_bytes().get(..32).ok_or_else(|| internal("the signing key is shorter than 32 bytes"))?;
    let cipher = AesGcm::<Aes256, U16>::new_from_slice(key).map_err(|e| internal(e.to_string()))?;
    let iv = random_bytes::<16>();
    let sealed = cipher.encrypt(&iv.into(), plaintext.as_bytes()).map_err(|_| internal("cannot encrypt the input"))?;
    let mut out = iv.to_vec();
    out.extend(sealed);
    Ok(STANDARD.encode(out))
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not something the server can work around.
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    bytes
}

/// 32 random bytes as URL-safe base64: session cookies, CSRF tokens, generated passwords.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A new random API token (`plt_...`), and the SHA-256 (hex) that is stored instead of it.
pub fn new_token() -> (String, String) {
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let hash = token_sha256(&token);
    (token, hash)
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same(a: &str, b: &str) -> bool {
    portolan_model::integration::security::constant_time_eq(a.as_bytes(), b.as_bytes())
}

pub fn token_sha256(token: &str) -> String {
    portolan_model::hex(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&[7u8; KEY_BYTES])
    }

    #[test]
    fn sealed_secrets_open_only_under_their_name_and_key() {
        let sealed = keys().seal("db", "hunter2").expect("seals");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "the value is not stored in clear");
        assert_eq!(keys().open("db", &sealed).expect("opens"), "hunter2");
        assert!(keys().open("other", &sealed).is_err());
        assert!(Keys::new(&[8u8; KEY_BYTES]).open("db", &sealed).is_err());
    }

    #[test]
    fn run_tokens_bind_run_attempt_and_expiry() {
        let token = keys().run_token("r_1", 2, 1_000);
        assert_eq!(keys().verify_run_token(&token, "r_1", 2, 999), Ok(()));
        assert_eq!(keys().verify_run_token(&token, "r_2", 2, 999), Err(RunTokenError::Invalid));
        assert_eq!(keys().verify_run_token(&token, "r_1", 3, 999), Err(RunTokenError::Superseded));
        assert_eq!(keys().verify_run_token(&token, "r_1", 2, 1_001), Err(RunTokenError::Expired));
        let forged = token.replace("_1000_", "_9999_");
        assert_eq!(keys().verify_run_token(&forged, "r_1", 2, 999), Err(RunTokenError::Invalid));
        assert_eq!(keys().verify_run_token("plt_x", "r_1", 2, 999), Err(RunTokenError::Invalid));
    }
}
