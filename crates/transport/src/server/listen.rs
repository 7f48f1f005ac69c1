//! The accept loop: TLS with tokio-rustls, then hyper (HTTP/1.1 or h2),
//! with the connection's client certificate attached to each request, and
//! the connection caps and timers of `docs/protocol.md` 3.5.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service as _;

use super::watch::{Expired, TimedBody, Watch, Watched};
use crate::auth::PeerCertificates;
use crate::connections::{Caps, ConnectionLimits};

/// How long an h2 connection closed for idleness (GOAWAY) may take to go.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// A server accepting connections; dropping it stops accepting and closes
/// every open connection (requests in flight are cut off: a sender
/// retries). [`RunningServer::shutdown`] stops it gracefully.
pub struct RunningServer {
    local_addr: SocketAddr,
    open: Arc<Caps<IpAddr>>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting (the listening socket is closed), lets every open
    /// connection finish the requests it has in flight and then closes it
    /// (HTTP/1.1 after the current answer, h2 with a GOAWAY), and waits
    /// for that up to `grace`; what is left then is cut off. Returns
    /// whether everything finished in time.
    pub async fn shutdown(&mut self, grace: Duration) -> bool {
        self.stop.send_replace(true);
        let finished = tokio::time::timeout(grace, &mut self.task).await.is_ok();
        if !finished {
            self.task.abort();
        }
        finished
    }

    /// Connections open now (accepted and not yet closed).
    pub fn open_connections(&self) -> usize {
        self.open.total()
    }

    /// Connections open now from `ip`.
    pub fn open_connections_from(&self, ip: IpAddr) -> usize {
        self.open.of(&ip)
    }
}

/// Resolves once the server is told to stop.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    // An error means the server is gone: stopped too.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` over TLS with `tls` on a bound listener (bind it with
/// `TcpListener::bind(addr)`; port 0 picks a free port), within `limits`.
pub fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ConnectionLimits,
) -> std::io::Result<RunningServer> {
    let local_addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let open = Caps::new(Some(limits.max_connections), limits.max_connections_per_ip);
    let gate = open.clone();
    let limits = Arc::new(limits);
    let task = tokio::spawn(async move {
        // Owned by this task: aborting it aborts every connection.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stopped(stopping.clone()) => break,
            };
            let (tcp, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over a cap: closed at once, before the handshake costs anything
            // (a peer sees the connection refused and tries again later).
            let held = match gate.take(&remote.ip()) {
                Ok(held) => held,
                Err(over) => {
                    tracing::debug!(%remote, ?over, "connection over the cap, closed");
                    continue;
                }
            };
            // Answers are small and written in one go: without this, Nagle's
            // algorithm holds one back until the peer's delayed ACK (40 ms).
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
            }
            let acceptor = acceptor.clone();
            let router = router.clone();
            let stopping = stopping.clone();
            let limits = limits.clone();
            connections.spawn(async move {
                let _held = held;
                let handshake = tokio::select! {
                    handshake = tokio::time::timeout(limits.handshake, acceptor.accept(tcp)) => handshake,
                    // No request yet: nothing to finish.
                    () = stopped(stopping.clone()) => return,
                };
                let tls = match handshake {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
                let connection = tls.get_ref().1;
                let h2 = connection.alpn_protocol() == Some(b"h2");
                let certificates = PeerCertificates::verified(
                    connection
                        .peer_certificates()
                        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect()),
                );
                let watch = Watch::new();
                let body_timeout = limits.body;
                let on_request = watch.clone();
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let busy = on_request.busy();
                    let mut req = req.map(|body| TimedBody::new(body, body_timeout));
                    req.extensions_mut().insert(certificates.clone());
                    req.extensions_mut().insert(super::RemoteAddr(remote));
                    let answer = router.clone().call(req);
                    async move {
                        let answer = answer.await;
                        drop(busy);
                        answer
                    }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // The watch times headers (hyper's timer would also close
                // idle connections at the header timeout).
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(None);
                builder.http2().timer(TokioTimer::new());
                let served = builder
                    .serve_connection(TokioIo::new(Watched::new(tls, watch.clone())), service);
                tokio::pin!(served);
                let expired = tokio::select! {
                    ended = served.as_mut() => {
                        if let Err(e) = ended {
                            tracing::debug!(%remote, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    expired = watch.expired(&limits, h2) => expired,
                    () = stopped(stopping) => {
                        // Requests in flight finish; then it closes
                        // (HTTP/1.1 after the answer, h2 with a GOAWAY).
                        served.as_mut().graceful_shutdown();
                        if let Err(e) = served.await {
                            tracing::debug!(%remote, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                };
                tracing::debug!(%remote, ?expired, "connection timed out, closed");
                if h2 && expired == Expired::Idle {
                    // GOAWAY: the peer learns no request of its was lost.
                    served.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(GOAWAY_GRACE, served).await;
                }
            });
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    });
    Ok(RunningServer {
        local_addr,
        open,
        task,
        stop,
    })
}
