//! The accept loop: TLS with tokio-rustls, then hyper (HTTP/1.1 or h2),
//! with the connection's client certificate attached to each request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service as _;

use crate::auth::PeerCertificates;

/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server accepting connections; dropping it stops accepting and closes
/// every open connection (requests in flight are cut off: a sender
/// retries). [`RunningServer::shutdown`] stops it gracefully.
pub struct RunningServer {
    local_addr: SocketAddr,
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
/// `TcpListener::bind(addr)`; port 0 picks a free port).
pub fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
) -> std::io::Result<RunningServer> {
    let local_addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    let (stop, stopping) = tokio::sync::watch::channel(false);
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
            // Answers are small and written in one go: without this, Nagle's
            // algorithm holds one back until the peer's delayed ACK (40 ms).
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
            }
            let acceptor = acceptor.clone();
            let router = router.clone();
            let stopping = stopping.clone();
            connections.spawn(async move {
                let handshake = tokio::select! {
                    handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => handshake,
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
                let certificates =
                    PeerCertificates(tls.get_ref().1.peer_certificates().map(|chain| {
                        Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect())
                    }));
                let service =
                    hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                        req.extensions_mut().insert(certificates.clone());
                        req.extensions_mut().insert(super::RemoteAddr(remote));
                        router.clone().call(req)
                    });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new());
                builder.http2().timer(TokioTimer::new());
                let connection = builder.serve_connection(TokioIo::new(tls), service);
                tokio::pin!(connection);
                let ended = tokio::select! {
                    ended = connection.as_mut() => ended,
                    () = stopped(stopping) => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    });
    Ok(RunningServer {
        local_addr,
        task,
        stop,
    })
}
