//! `bkcache serve`: a small OCI distribution endpoint in front of any bkcache store, so that
//! BuildKit's `type=registry` cache (and buildx, docker, skopeo) reads and writes a local
//! directory, S3, Azure Blob, the GitHub Actions cache or another registry **live**, during the
//! build, in that store's native layout.
//!
//! - Stateless over the stores: each `--store` is a `--cache-to` spec whose values may hold
//!   `{repo}` and `{tag}`, filled from `/v2/<repo>/manifests/<tag>` (see [`names`]). Several
//!   stores: a manifest PUT commits to every one (fan-out), reads come from the first that has
//!   the cache.
//! - Uploads stream into the store, verified before the blob is visible ([`uploads`]); a
//!   manifest PUT decodes the cache, checks every blob, applies `--scan`, commits natively and
//!   prunes ([`manifests`], [`policy`]).
//! - A manifest GET leaves out results whose blobs are gone: an evicted blob is a cache miss,
//!   not a failed build. Imports stay lazy: only the blobs a client GETs are read.
//! - Loopback unless authenticated ([`auth`]); TLS by rustls; Go's answer to a TLS hello on a
//!   plain port ([`listener`]).
//!
//! The HTTP server is hyper 1 (already in the tree under reqwest), not axum: a repository name
//! holds `/`, so routes are matched from the end of the path the way docker-registry does
//! ([`http::route`]), which axum's router cannot express; hyper parses HTTP.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bkcache_core::{Backends, CacheSpec, Env};
//! use bkcache_serve::{Server, ServeOptions};
//!
//! # async fn run(backends: Backends) -> Result<(), bkcache_serve::ServeError> {
//! let mut options = ServeOptions::new("127.0.0.1:5000".parse().expect("address"));
//! options.stores = CacheSpec::parse_all(&["type=local,dest=/var/cache/bk/{repo},tag={tag}"])?;
//! let server = Server::bind(options, Arc::new(backends), Env::from_process()).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod auth;
pub mod blobs;
pub mod error;
pub mod http;
pub mod listener;
pub mod log;
pub mod manifests;
pub mod names;
pub mod policy;
pub mod state;
pub mod uploads;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bkcache_core::lifecycle::PrunePolicy;
use bkcache_core::{Backends, CacheSpec, Env};

pub use auth::Auth;
pub use error::{OciError, Result, ServeError};
use names::StoreTemplate;
use state::State;

/// Bounds on what clients may send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest body (4 MiB, as registries).
    pub max_manifest: u64,
    /// Largest blob upload.
    pub max_blob: u64,
    /// Uploads streaming at once (more get 429 `TOOMANYREQUESTS`); sessions are bounded at 8x.
    pub max_uploads: usize,
    /// An upload session idle this long expires (with its scratch file).
    pub upload_idle: Duration,
    /// After SIGTERM, how long open requests may run on.
    pub shutdown_grace: Duration,
    /// Bytes all scratch files (chunked and fan-out uploads) may hold at once.
    pub max_scratch: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest: 4 << 20,
            max_blob: 64 << 30,
            max_uploads: 64,
            upload_idle: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            max_scratch: 16 << 30,
        }
    }
}

/// How serve runs.
#[derive(Debug)]
pub struct ServeOptions {
    /// Where to listen (`127.0.0.1:5000` by default in the CLI).
    pub listen: SocketAddr,
    /// The `--store` templates, in order.
    pub stores: Vec<CacheSpec>,
    /// Allow templates without `{repo}`/`{tag}`: every repository and tag is one cache.
    pub one_cache: bool,
    /// Refuse manifests whose new layers hold credentials.
    pub scan: bool,
    /// Largest uncompressed layer `--scan` reads.
    pub max_uncompressed: u64,
    /// Prune each location after a commit.
    pub prune: Option<PrunePolicy>,
    /// Client authentication (required for a non-loopback address).
    pub auth: Option<Auth>,
    /// PEM certificate chain and key.
    pub tls: Option<(String, String)>,
    /// JSON lines on stderr instead of words.
    pub json_log: bool,
    /// Where chunked uploads and fan-out spool.
    pub scratch_dir: PathBuf,
    /// Bounds.
    pub limits: Limits,
}

impl ServeOptions {
    /// Defaults: no stores yet, no policy, no auth, plain HTTP, scratch in the temp dir.
    pub fn new(listen: SocketAddr) -> Self {
        ServeOptions {
            listen,
            stores: Vec::new(),
            one_cache: false,
            scan: false,
            max_uncompressed: bkcache_core::compression::DEFAULT_MAX_UNCOMPRESSED,
            prune: None,
            auth: None,
            tls: None,
            json_log: false,
            scratch_dir: std::env::temp_dir(),
            limits: Limits::default(),
        }
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish()
    }
}

impl Server {
    /// Check the options (every template opens; a non-loopback address needs auth), then bind.
    pub async fn bind(options: ServeOptions, backends: Arc<Backends>, env: Env) -> Result<Server> {
        if options.stores.is_empty() {
            return Err(ServeError::Config(
                "at least one --store is needed, e.g. --store type=local,dest=/var/cache/bk/{repo},tag={tag}".into(),
            ));
        }
        if !options.listen.ip().is_loopback() && options.auth.is_none() {
            return Err(ServeError::Unauthenticated { addr: options.listen });
        }
        let mut templates = Vec::new();
        for spec in &options.stores {
            let t = StoreTemplate::new(spec.clone(), &backends, options.one_cache)?;
            // Open once with sample values: a bad attribute fails now, not at the first build.
            backends.open_target(&t.fill("sample/repo", "latest"), &env)?;
            templates.push(t);
        }
        let tls = match &options.tls {
            Some((cert, key)) => Some(listener::tls_acceptor(cert, key)?),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: options.listen.to_string(),
                source,
            })?;
        let state = Arc::new(State::new(templates, options, backends, env));
        Ok(Server { listener, state, tls })
    }

    /// The address bound (the real port when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.state.options.listen)
    }

    /// Say where it listens and what it serves.
    pub fn announce(&self) {
        let stores: Vec<String> = self.state.templates.iter().map(StoreTemplate::describe).collect();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.state.log.event(
            "listening",
            serde_json::json!({"address": self.local_addr().to_string(), "tls": self.tls.is_some(), "stores": stores, "auth": self.state.options.auth.is_some(), "scan": self.state.options.scan}),
            &format!("listening on {scheme}://{} -> {}", self.local_addr(), stores.join(" + ")),
        );
    }

    /// Serve until `shutdown` resolves, then finish open requests within the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let grace = self.state.options.limits.shutdown_grace;
        listener::run(self.listener, self.state, self.tls, shutdown, grace).await
    }
}

/// The core crate serve builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;

/// This crate's version (`bkcache --version` lists every crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

// The README's examples compile too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
