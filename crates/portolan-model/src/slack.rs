//! Slack: what proves a request came from Slack, what the slash command asks for, and how text
//! is written in Slack's markup. No IO.

use crate::integration::security::{constant_time_eq, hmac_digest};

/// How far a request's timestamp may be from now, either way (Slack's own advice: five minutes).
pub const MAX_SKEW_SECONDS: i64 = 300;

/// Why a request is not taken as Slack's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("the request has no X-Slack-Request-Timestamp or X-Slack-Signature")]
    Missing,
    #[error("the request's timestamp is more than five minutes from now (replayed, or a clock is wrong)")]
    Stale,
    #[error("the request's signature does not match its body")]
    Mismatch,
}

/// The signature Slack sends: `v0=` and the hex HMAC-SHA256 of `v0:{timestamp}:{body}`, keyed by
/// the app's signing secret.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let signed = format!("v0:{timestamp}:");
    let digest = hmac_digest::<sha2::Sha256>(secret.as_bytes(), &[signed.as_bytes(), body]);
    format!("v0={}", crate::hex(&digest))
}

/// Checks that a request is Slack's and fresh: its timestamp within [`MAX_SKEW_SECONDS`] of
/// `now` (seconds), and its signature that of this body with this secret.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature_given: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), Unverified> {
    let (Some(timestamp), Some(given)) = (timestamp, signature_given) else { return Err(Unverified::Missing) };
    let sent: i64 = timestamp.trim().parse().map_err(|_| Unverified::Stale)?;
    if now.abs_diff(sent) > MAX_SKEW_SECONDS.unsigned_abs() {
        return Err(Unverified::Stale);
    }
    let expected = signature(secret, timestamp.trim(), body);
    if constant_time_eq(expected.as_bytes(), given.trim().as_bytes()) { Ok(()) } else { Err(Unverified::Mismatch) }
}

/// What the slash command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    /// Entities whose title or identifier contains the text.
    Search(String),
    /// Open an action's form; a day-2 action may name its entity.
    Run {
        action: String,
        entity: Option<String>,
    },
    /// A one-time link to tie this Slack user to a Portolan user.
    Link,
    Unlink,
}

impl Command {
    /// Reads the command's text (`search cart`, `run deploy cart-service`, `link`); anything
    /// else is a search, as the most common thing to ask.
    pub fn parse(text: &str) -> Command {
        let text = text.trim();
        let (verb, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let rest = rest.trim();
        match verb.to_ascii_lowercase().as_str() {
            "" | "help" => Command::Help,
            "search" | "find" => Command::Search(rest.to_string()),
            "run" => {
                let mut words = rest.split_whitespace();
                match words.next() {
                    Some(action) => {
                        Command::Run { action: action.to_string(), entity: words.next().map(str::to_string) }
                    }
                    None => Command::Help,
                }
            }
            "link" => Command::Link,
            "unlink" => Command::Unlink,
            _ => Command::Search(text.to_string()),
        }
    }
}

/// Text as Slack's markup shows it literally: `&`, `<` and `>` are its markup.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A link in Slack's markup (the label escaped, `|` in it replaced: it ends the URL part).
pub fn link(url: &str, label: &str) -> String {
    format!("<{}|{}>", url.replace(['<', '>', '|'], ""), escape(label).replace('|', "¦"))
}

/// Cuts text to at most `max` characters (Slack refuses longer fields), with an ellipsis.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    #[test]
    fn a_signed_fresh_request_is_slacks_and_a_changed_or_stale_one_is_not() {
        // Slack's documented example: this secret, timestamp and body give this signature.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signed = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(signature(SECRET, "1531420618", body), signed);
        let now = 1_531_420_618 + 60;
        assert_eq!(verify(SECRET, Some("1531420618"), Some(signed), body, now), Ok(()));

        let mut changed = body.to_vec();
        changed[6] = b'X';
        assert_eq!(verify(SECRET, Some("1531420618"), Some(signed), &changed, now), Err(Unverified::Mismatch));
        assert_eq!(verify("another", Some("1531420618"), Some(signed), body, now), Err(Unverified::Mismatch));
        assert_eq!(verify(SECRET, Some("1531420618"), Some(signed), body, now + 301), Err(Unverified::Stale));
        assert_eq!(verify(SECRET, Some("1531420618"), Some(signed), body, 1_531_420_618 - 301), Err(Unverified::Stale));
        assert_eq!(verify(SECRET, Some("soon"), Some(signed), body, now), Err(Unverified::Stale));
        // Found by fuzzing: the farthest timestamps from the clock are stale, not an overflow.
        assert_eq!(verify(SECRET, Some("-9223372036854775808"), Some(signed), body, i64::MAX), Err(Unverified::Stale));
        assert_eq!(verify(SECRET, None, Some(signed), body, now), Err(Unverified::Missing));
        assert_eq!(verify(SECRET, Some("1531420618"), None, body, now), Err(Unverified::Missing));
    }

    #[test]
    fn the_command_text_says_what_is_asked() {
        assert_eq!(Command::parse(""), Command::Help);
        assert_eq!(Command::parse(" help "), Command::Help);
        assert_eq!(Command::parse("search cart svc"), Command::Search("cart svc".into()));
        assert_eq!(Command::parse("cart"), Command::Search("cart".into()));
        assert_eq!(
            Command::parse("run update_pod_count  cart-service"),
            Command::Run { action: "update_pod_count".into(), entity: Some("cart-service".into()) }
        );
        assert_eq!(Command::parse("RUN scaffold"), Command::Run { action: "scaffold".into(), entity: None });
        assert_eq!(Command::parse("run"), Command::Help);
        assert_eq!(Command::parse("link"), Command::Link);
        assert_eq!(Command::parse("unlink"), Command::Unlink);
    }

    #[test]
    fn text_is_escaped_links_are_whole_and_long_text_is_clipped() {
        assert_eq!(escape("a <b> & c"), "a &lt;b&gt; &amp; c");
        assert_eq!(link("https://p.example/x", "Cart | <1>"), "<https://p.example/x|Cart ¦ &lt;1&gt;>");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
