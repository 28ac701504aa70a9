//! One HTTPS serving loop for the node's and the gateway's HTTP APIs: TLS
//! with a handshake timeout, a cap on connections, HTTP/1.1 and HTTP/2.
//! What each connection may reach is decided from its TLS session (the
//! agency API reads the client certificate; the citizen API serves all).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

/// Serves `listener` until the task is dropped. `app_for` gives the routes
/// for a connection from its TLS session, or `None` to close it.
pub async fn serve_tls<F>(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    max_connections: usize,
    handshake_timeout: Duration,
    what: &'static str,
    app_for: F,
) where
    F: Fn(&rustls::ServerConnection) -> Option<axum::Router> + Clone + Send + Sync + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(api = what, "too many connections; closing one");
            continue;
        };
        let acceptor = acceptor.clone();
        let app_for = app_for.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(api = what, %peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let Some(app) = app_for(stream.get_ref().1) else {
                tracing::info!(api = what, %peer, "connection not allowed; closing");
                return;
            };
            let service = TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(api = what, %peer, error = %e, "connection ended");
            }
        });
    }
}
