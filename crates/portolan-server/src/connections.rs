//! The HTTP/1 accept loop, with the limits a server on the open network needs: a client must send
//! a request's head within `header_read_timeout` of connecting (or of starting it), a kept-alive
//! connection with no request is closed after `idle_timeout`, and an address (an IPv6 /64) may hold
//! only so many connections at once, as may everyone together. A connection over a bound is
//! answered at once with a short error and closed, before anything it sends is read. A request
//! being answered is never cut by these timeouts: event streams live as long as they need.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::error::{Error, ErrorCode};

/// Bounds on the connections a server holds; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's head (line and headers).
    pub header_read_timeout: Duration,
    /// Longest a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections one address (an IPv6 /64) may hold open at once.
    pub max_per_address: usize,
    /// Connections everyone together may hold open at once.
    pub max_total: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_per_address: 256,
            max_total: 10_000,
        }
    }
}

/// How long, once the server is stopping, a connection may go on waiting for a request's head.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets requests in
/// flight finish, and returns when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admission = Arc::new(Admission::new(limits));
    let (stopping, stop) = watch::channel(false);
    // Every connection task holds a sender; when all are gone, every connection has closed.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<Infallible>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::error!(%err, "cannot accept connections");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let guard = match admission.admit(remote.ip()) {
            Ok(guard) => guard,
            Err(refusal) => {
                refuse(&stream, refusal);
                continue;
            }
        };
        let connection =
            serve_connection(stream, remote, router.clone(), limits.clone(), stop.clone(), guard, open.clone());
        tokio::spawn(connection);
    }
    drop(listener);
    stopping.send_replace(true);
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// Errors of one connection that was being accepted, not of the listener.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(err.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refusal {
    Address,
    Everyone,
}

/// Writes a short error answer (without waiting: it fits a fresh socket's buffer) and closes.
fn refuse(stream: &TcpStream, refusal: Refusal) {
    let (error, reason) = match refusal {
        Refusal::Address => {
            (Error::too_many("too many connections from your address; close some and retry", 1), "address")
        }
        Refusal::Everyone => {
            (Error::new(ErrorCode::Unavailable, "the server holds too many connections; retry shortly"), "total")
        }
    };
    metrics::counter!("portolan_http_connections_refused_total", "limit" => reason).increment(1);
    let body = error.body().to_string();
    let status = error.code.status();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\n\
         connection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len()
    );
    let _ = stream.try_write(format!("{head}{body}").as_bytes());
}

/// Counts open connections per address and in all.
struct Admission {
    max_per_address: usize,
    max_total: usize,
    open: Mutex<(HashMap<IpAddr, usize>, usize)>,
}

impl Admission {
    fn new(limits: &ConnectionLimits) -> Self {
        Self {
            max_per_address: limits.max_per_address,
            max_total: limits.max_total,
            open: Mutex::new((HashMap::new(), 0)),
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<AdmissionGuard, Refusal> {
        let key = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (by_address, total) = &mut *open;
        if *total >= self.max_total {
            return Err(Refusal::Everyone);
        }
        let count = by_address.entry(key).or_insert(0);
        if *count >= self.max_per_address {
            return Err(Refusal::Address);
        }
        *count += 1;
        *total += 1;
        metrics::gauge!("portolan_http_connections").set(*total as f64);
        Ok(AdmissionGuard { admission: Arc::clone(self), key })
    }
}

/// The address a connection counts against: an IPv4 address (also when mapped into IPv6), or the
/// /64 of an IPv6 one, since one host commonly has a whole /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// One admitted connection; frees its place when dropped.
struct AdmissionGuard {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for AdmissionGuard {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().unwrap_or_else(|p| p.into_inner());
        let (by_address, total) = &mut *open;
        if let Some(count) = by_address.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                by_address.remove(&self.key);
            }
        }
        *total -= 1;
        metrics::gauge!("portolan_http_connections").set(*total as f64);
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    _admitted: AdmissionGuard,
    _open: tokio::sync::mpsc::Sender<Infallible>,
) {
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Watched { stream, activity: Arc::clone(&activity) });
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let busy = requests.begin_request();
        request.extensions_mut().insert(ConnectInfo(remote));
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await?;
            Ok::<_, Infallible>(response.map(|body| Body::new(Answering { body, _busy: busy })))
        }
    });
    // The timeouts are `expired`'s below, not hyper's (whose head timeout would also end an idle
    // connection as soon as the head's).
    let connection = hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut expired = std::pin::pin!(activity.expired(limits.header_read_timeout, limits.idle_timeout));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%err, %remote, "connection ended with an error");
                }
                break;
            }
            () = &mut expired => {
                tracing::debug!(%remote, "closing a connection that sent no request in time");
                break;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
                // Idle connections close now; one with half a request must not hold the
                // shutdown for the whole head timeout.
                let grace = SHUTDOWN_GRACE.min(limits.header_read_timeout);
                expired.set(activity.expired(grace, grace));
            }
        }
    }
}

/// What a connection is doing, as far as its timeouts care.
struct Activity {
    /// Requests being answered (until their response body has been sent or dropped).
    busy: AtomicUsize,
    /// Whether a request head is due: the connection is new, or bytes came while it was idle.
    head_due: AtomicBool,
    changed: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Self { busy: AtomicUsize::new(0), head_due: AtomicBool::new(true), changed: Notify::new() }
    }
}

impl Activity {
    fn begin_request(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.head_due.store(false, Ordering::SeqCst);
        self.changed.notify_one();
        Busy(Arc::clone(self))
    }

    fn read_bytes(&self) {
        if self.busy.load(Ordering::SeqCst) == 0 && !self.head_due.swap(true, Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    /// Resolves when the connection has waited too long: for a request head, or idle between
    /// requests. Each change of state starts the wait afresh.
    async fn expired(&self, header_read_timeout: Duration, idle_timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            let limit = if self.busy.load(Ordering::SeqCst) > 0 {
                None
            } else if self.head_due.load(Ordering::SeqCst) {
                Some(header_read_timeout)
            } else {
                Some(idle_timeout)
            };
            match limit {
                None => changed.await,
                Some(limit) => {
                    if tokio::time::timeout(limit, changed).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A request being answered; the connection counts as busy while one exists.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request counted as busy until it is sent or dropped.
struct Answering {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Answering {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket that tells its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read_bytes();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_by_ipv4_or_ipv6_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(address_key(ip("2001:db8:1:2:ffff::9")), address_key(ip("2001:db8:1:2::5")));
    }

    #[test]
    fn places_free_when_connections_close() {
        let limits = ConnectionLimits { max_per_address: 2, max_total: 3, ..ConnectionLimits::default() };
        let admission = Arc::new(Admission::new(&limits));
        let a = "192.0.2.1".parse().expect("address");
        let b = "192.0.2.2".parse().expect("address");
        let first = admission.admit(a).expect("first");
        let _second = admission.admit(a).expect("second");
        assert_eq!(admission.admit(a).err(), Some(Refusal::Address));
        let _third = admission.admit(b).expect("another address");
        assert_eq!(admission.admit(b).err(), Some(Refusal::Everyone));
        drop(first);
        assert!(admission.admit(a).is_ok(), "a closed connection frees its place");
    }
}
