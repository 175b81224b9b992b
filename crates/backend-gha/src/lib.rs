//! # bkcache-gha
//!
//! BuildKit's `type=gha` cache store for bkcache: the GitHub Actions cache service, **v2**
//! (github.com: Twirp JSON plus signed Azure blob URLs) and **v1** (the REST API of GHES and of
//! Gitea/Forgejo runners). Inside a job, `bkcache copy --to type=gha` writes what BuildKit's
//! `--cache-from type=gha` reads and the other way round: the same keys
//! (`buildkit-blob-1-<digest>`, `index-<scope>-1-<sha256(ref)[:8]>#N`), the same constant
//! version hash, the same scope rules, and the annotated cache config as the index value.
//!
//! | attribute | direction | default | meaning |
//! |---|---|---|---|
//! | `scope` | both | `buildkit` | the cache's name in its index key |
//! | `url_v2` | both | `$ACTIONS_RESULTS_URL` when `version=2` or `ACTIONS_CACHE_SERVICE_V2=true` | v2 results service |
//! | `url` | both | `$ACTIONS_CACHE_URL`, else `$ACTIONS_RESULTS_URL` | v1 cache service |
//! | `token` | both | `$ACTIONS_RUNTIME_TOKEN` | the runtime JWT (secret) |
//! | `version` | both | auto | `1` or `2`; unset: v2 with `url_v2` (or a `results-receiver` `url`), else v1 |
//! | `timeout` | both | `10m` | retry budget of one request (Go duration) |
//! | `ghtoken` | both | – | REST token for listing and deleting entries (prune; secret) |
//! | `repository` | both | `$GITHUB_REPOSITORY` | `owner/name` for `ghtoken` |
//!
//! plus `mode` and `ignore-error` on export. The REST API is at `$GITHUB_API_URL` (default
//! `https://api.github.com`).
//!
//! **Scopes.** The token's `ac` claim (read unverified, like BuildKit) lists refs with
//! permissions (1 read, 2 write). An export writes the index of the **last** writable ref; an
//! import reads the index of **every** ref the token lists and merges them (newest entry per
//! ref). A token without a writable ref cannot export: the error names its scopes.
//!
//! **Export.** The copy engine asks [`CacheStore::blob_size`] first (a lookup, then a one-byte
//! ranged GET for the size), so blobs already in the cache are skipped; a reservation that
//! answers "already exists" is success too. Missing blobs upload at most
//! [`MAX_PARALLEL_UPLOADS`] at a time, each in parts as the verified stream fills them (v2:
//! Put Block of [`BLOCK_SIZE`], [`PARALLEL_PARTS`] in flight, then Put Block List; blobs up to
//! one block are a single Put Blob; v1: `PATCH` chunks of [`CHUNK_SIZE`]). Nothing is committed
//! unless the stream ended cleanly, so a blob whose digest does not match is never finalized.
//! The index is written **last**, under the next free number (`#N+1`, BuildKit's
//! `SaveMutable`). Requests answered 429 wait for `Retry-After` (every request of the store
//! pauses with them) and retry within `timeout=`; 5xx and connection errors retry with backoff.
//!
//! **Import.** Blobs download as [`PARALLEL_RANGES`] ranged GETs of [`RANGE_SIZE`] at once (a
//! single stream per blob is the known bottleneck of the official clients); a signed URL that
//! answers 401/403 is replaced by a fresh one from the service.
//!
//! **Secrets.** The runtime token and `ghtoken` appear in no message, `Debug` or location;
//! signed URLs lose their query string in messages.
//!
//! ## Example
//!
//! ```
//! use base64::Engine as _;
//! use bkcache_core::{Backends, CacheSpec, Env};
//! let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
//! // A runtime token as a job gets it (signature not checked, as by BuildKit).
//! let claims = r#"{"ac":"[{\"Scope\":\"refs/heads/main\",\"Permission\":3}]","exp":4102444800,"nbf":0}"#;
//! let token = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(claims));
//! let env = Env::empty("/")
//!     .with_var("ACTIONS_RUNTIME_TOKEN", &token)
//!     .with_var("ACTIONS_RESULTS_URL", "https://results-receiver.actions.githubusercontent.com/")
//!     .with_var("ACTIONS_CACHE_SERVICE_V2", "true");
//! let backends = Backends::new().with(bkcache_gha::GhaFactory);
//! let spec = &CacheSpec::parse("type=gha,scope=main,mode=max").unwrap()[0];
//! let target = backends.open_target(spec, &env).unwrap();
//! assert_eq!(
//!     target.store.location(),
//!     "gha:main@results-receiver.actions.githubusercontent.com (v2)"
//! );
//! assert!(!format!("{:?}", target.store).contains(&token));
//! // The index key BuildKit uses for that scope and ref (spec vector F7).
//! assert_eq!(bkcache_gha::index_key("main", "refs/heads/main"), "index-main-1-f921bd05");
//! ```
//!
//! ## Example: copy a cache with this crate alone
//!
//! A project that depends on `bkcache-gha` only (its [`core`] re-export is `bkcache-core`)
//! copies one scope's cache to another inside a job step (only missing blobs move, each is
//! verified while streaming, the index is written last). `no_run`: it needs a job's runtime
//! token.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bkcache_gha::core::transfer::{self, CopyOptions, NoProgress, Source, Target};
//! use bkcache_gha::core::{Backends, CacheSpec, Env, Error};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     let backends = Backends::new().with(bkcache_gha::GhaFactory);
//!     let env = Env::from_process(); // ACTIONS_RUNTIME_TOKEN, ACTIONS_RESULTS_URL, …
//!     let from = &CacheSpec::parse("type=gha,scope=main")?[0];
//!     let to = &CacheSpec::parse("type=gha,scope=release,mode=max")?[0];
//!     let sources = vec![Source { label: from.to_string(), store: backends.open_source(from, &env)? }];
//!     let t = backends.open_target(to, &env)?;
//!     let targets = vec![Target { label: to.to_string(), store: t.store, options: t.options }];
//!     let report = transfer::copy(&sources, &targets, &CopyOptions::default(), Arc::new(NoProgress)).await?;
//!     assert!(!report.failed());
//!     Ok(())
//! }
//! ```
//!
//! ## Not done here
//! Entries cannot be listed or deleted through the cache service; `prune` needs `ghtoken` and
//! works on the entries of the token's write ref. Superseded index entries (`#1`…`#N-1`) are
//! left to the service's eviction (7 days without access), like BuildKit leaves them. BuildKit's
//! optional signatures (`-sig` index keys with a Sigstore bundle) are read and shown (a part's
//! `signed`), kept and removed with their index by prune, but never written or verified: a copy
//! of a signed scope is unsigned, and prune refuses to rewrite one. A reservation whose
//! upload failed stays reserved in the service (neither API can cancel one), so later exports
//! see that blob as "already exists".

mod api;
mod client;
mod config;
mod error;
mod rest;
mod store;

pub use api::{BLOCK_SIZE, CHUNK_SIZE, PARALLEL_PARTS, PARALLEL_RANGES, RANGE_SIZE};
pub use client::StatsSnapshot;
pub use config::{
    parse_go_duration, scope_hash, token_scopes, ApiVersion, GhaConfig, TokenScope, BLOB_KEY_PREFIX, DEFAULT_API_URL,
    DEFAULT_SCOPE, DEFAULT_TIMEOUT, KEY_FORMAT, VERSION_HASH,
};
pub use error::GhaError;
pub use rest::RestEntry;
pub use store::{index_key, GhaFactory, GhaStore, MAX_INDEX, MAX_PARALLEL_UPLOADS};

/// The `type=` value this crate serves.
pub const TYPE_NAME: &str = "gha";

/// The core crate this backend builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;

#[cfg(doc)]
use bkcache_core::CacheStore;

/// This crate's version (`bkcache --version` lists every crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
