//! The accept loop: HTTP/1.1 by hyper on each connection, TLS by tokio-rustls when a
//! certificate is given, and Go's answer to a TLS ClientHello on a plain port.
//!
//! BuildKit sends a ClientHello first even to an `http = true` registry and falls back to plain
//! HTTP only when it gets an HTTP response back, as Go's net/http gives one
//! (`../shared/guide/serve.md`). hyper would close the connection on those bytes, so the first
//! byte is peeked: `0x16` (a TLS handshake record) gets Go's `400 Bad Request` text.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::error::{Result, ServeError};
use crate::http;
use crate::state::State;

/// What Go's HTTP server answers to TLS bytes on a plain port.
pub const GO_TLS_ON_PLAIN: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// A rustls acceptor for a PEM certificate chain and key.
pub fn tls_acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor> {
    let file_err = |what: &'static str, path: &str, reason: String| ServeError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err("TLS certificate", cert, e.to_string()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| file_err("TLS certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("TLS certificate", cert, "no PEM certificate in it".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| file_err("TLS key", key, format!("no PEM private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| file_err("TLS key", key, e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accept connections until `shutdown` resolves, then let open requests finish for up to
/// `grace` (uploads still running after it are dropped: the stores never make them visible).
pub async fn run(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    let sweeper = tokio::spawn(sweep(state.clone()));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, state, tls, watcher).await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
    sweeper.abort();
    state.log.event(
        "shutdown",
        serde_json::json!({"grace_seconds": grace.as_secs()}),
        &format!("shutting down: open requests get {} s to finish", grace.as_secs()),
    );
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        state.log.event(
            "shutdown",
            serde_json::json!({"aborted": true}),
            "requests still open after the grace period were aborted (no partial blob or manifest becomes visible)",
        );
    }
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    watcher: hyper_util::server::graceful::Watcher,
) -> std::io::Result<()> {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(http::handle(state, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    match tls {
        Some(acceptor) => {
            let stream = tokio::time::timeout(Duration::from_secs(30), acceptor.accept(stream))
                .await
                .map_err(|_| std::io::Error::other(format!("TLS handshake from {peer} timed out")))??;
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(conn).await.map_err(std::io::Error::other)
        }
        None => {
            let mut first = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(30), stream.peek(&mut first))
                .await
                .map_err(|_| std::io::Error::other("no request within 30 s"))??;
            if n == 1 && first[0] == 0x16 {
                let mut stream = stream;
                stream.write_all(GO_TLS_ON_PLAIN).await?;
                return stream.shutdown().await;
            }
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(conn).await.map_err(std::io::Error::other)
        }
    }
}

/// Expire idle upload sessions every 30 s.
async fn sweep(state: Arc<State>) {
    let idle = state.options.limits.upload_idle;
    loop {
        tokio::time::sleep(Duration::from_secs(30).min(idle)).await;
        let n = state.uploads.expire(idle);
        if n > 0 {
            state.log.event(
                "expired",
                serde_json::json!({"upload_sessions": n}),
                &format!("{n} idle upload session(s) expired"),
            );
        }
    }
}
