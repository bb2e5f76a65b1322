//! E-mail through the operator's SMTP server: `smtps://` (TLS from the start), `smtp://…?tls=required`
//! (STARTTLS, refused without it) or plain `smtp://` on a trusted network, with the credentials in
//! the URL. Neither the URL nor its password is ever logged or put in an outcome.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one delivery may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The SMTP server and the sender.
#[derive(Clone)]
pub struct EmailSettings {
    /// `smtps://user:password@host:465`, `smtp://user:password@host:587?tls=required`, `smtp://host:25`.
    pub url: String,
    /// The `From` of every message (`Portolan <portolan@example.com>`).
    pub from: String,
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings").field("from", &self.from).finish_non_exhaustive()
    }
}

/// Sends e-mail, when the server is configured to.
#[derive(Clone, Default)]
pub struct Mailer {
    transport: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl Mailer {
    /// A mailer for these settings; a URL or sender that does not parse is refused at start.
    pub fn new(settings: Option<&EmailSettings>) -> Result<Self, String> {
        let Some(settings) = settings else { return Ok(Self::default()) };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.url)
            .map_err(|e| format!("smtp_url is not an SMTP server's URL: {}", without_url(&e.to_string())))?
            .timeout(Some(TIMEOUT))
            .build();
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("smtp_from is not an e-mail address ({}): {e}", settings.from))?;
        Ok(Self { transport: Some((transport, from)) })
    }

    pub fn sends(&self) -> bool {
        self.transport.is_some()
    }

    /// Sends a plain-text message; why not, in words without the server's URL.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let Some((transport, from)) = &self.transport else { return Err("this server sends no e-mail".into()) };
        let to: Mailbox = to.parse().map_err(|_| format!("'{to}' is not an e-mail address"))?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("cannot write the message: {e}"))?;
        transport.send(message).await.map(drop).map_err(|e| format!("the SMTP server: {}", without_url(&e.to_string())))
    }
}

/// An error's text with anything that looks like a URL left out (it may carry a password).
fn without_url(text: &str) -> String {
    text.split_whitespace().filter(|w| !w.contains("://")).collect::<Vec<_>>().join(" ")
}
