//! `/metrics` for Prometheus (`metrics.listen`, off by default): made per
//! scrape from the status the agent publishes, so a scrape never waits on an
//! owner and says what `homewarden status` says.

mod families;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use families::{registry, resident_bytes};

use crate::daemon::agent::Status;
use crate::daemon::shutdown::Stop;
use crate::daemon::signatures::SignaturesStatus;

/// Scrapes served at once; more are refused (closed) until one ends.
const MAX_CONNECTIONS: usize = 8;
/// Connections one peer may hold at once (Prometheus holds one): a client
/// that opens many is refused past these instead of taking every slot.
const PER_PEER: usize = 2;
/// Longest wait for a request's headers: a scraper sends them at once, a
/// connection left idle gives its slot back this soon.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a connection may take, headers to last byte (a scrape takes milliseconds).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` (a clear error if it is taken or not ours).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics.listen {addr}: {e}")))
}

/// Serves `/metrics` on `listener` until `stop` is asked; a scrape must
/// send `Authorization: Bearer <token>` when there is a token.
pub fn serve(
    listener: TcpListener,
    token: Option<String>,
    status: watch::Receiver<Status>,
    signatures: Option<watch::Receiver<SignaturesStatus>>,
    mut stop: Stop,
) -> tokio::task::JoinHandle<()> {
    let token = Arc::new(token);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = Peers::default();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.wait() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
            };
            let Some(seat) = peers.enter(peer.ip()) else {
                continue; // dropped: that peer holds its share
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue; // dropped: busy
            };
            let (status, token) = (status.clone(), token.clone());
            let signatures = signatures.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let sigs = signatures.as_ref().map(|s| s.borrow().clone());
                        let reply = answer(
                            &req,
                            token.as_deref(),
                            &status.borrow(),
                            sigs.as_ref(),
                            resident_bytes(),
                        );
                        async move { Ok::<_, Infallible>(reply) }
                    });
                // One scrape per connection: nothing lingers past a stop.
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                drop((slot, seat));
            });
        }
    })
}

/// Connections open per peer.
#[derive(Clone, Default)]
struct Peers(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl Peers {
    /// A seat for one more connection from `ip`, unless it holds [`PER_PEER`].
    fn enter(&self, ip: IpAddr) -> Option<Seat> {
        let key = peer_key(ip);
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= PER_PEER {
            return None;
        }
        *n += 1;
        Some(Seat {
            peers: self.clone(),
            key,
        })
    }
}

/// One connection's place in [`Peers`], given back when dropped.
struct Seat {
    peers: Peers,
    key: IpAddr,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut open = self.peers.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Who a peer is: its IPv4 address, or its IPv6 /64 (one host can take
/// any address in its /64, so counting addresses would count nothing).
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

fn plain(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Compares without stopping at the first difference: how long a wrong
/// token takes says nothing of the right one.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The answer to one request.
fn answer<B>(
    req: &Request<B>,
    token: Option<&str>,
    status: &Status,
    signatures: Option<&SignaturesStatus>,
    resident: Option<u64>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "homewarden serves /metrics\n");
    }
    if let Some(token) = token {
        let sent = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !sent.is_some_and(|s| same(s, token.as_bytes())) {
            let mut r = plain(StatusCode::UNAUTHORIZED, "a bearer token is needed\n");
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"homewarden\""),
            );
            return r;
        }
    }
    let now = i64::try_from(crate::intel::unix_now()).unwrap_or(i64::MAX);
    let mut registry = registry(status, now, resident);
    if let Some(s) = signatures {
        families::signatures::add(&mut registry, s);
    }
    let open_metrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, kind) = if open_metrics {
        (
            prometheus_client::encoding::text::encode(&mut body, &registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut body, &registry),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    if encoded.is_err() {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded\n",
        );
    }
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

#[cfg(test)]
mod tests;
