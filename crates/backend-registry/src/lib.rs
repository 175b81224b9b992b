//! # bkcache-registry
//!
//! BuildKit's `type=registry` cache store (an OCI distribution registry) and `type=inline`
//! (cache records in an existing image's config), for bkcache.
//!
//! | attribute | direction | default | meaning |
//! |---|---|---|---|
//! | `ref` | both | required | image reference; `user/app` means `docker.io/user/app:latest` |
//! | `registry.insecure` | both | `false` | plain HTTP and no TLS verification for this host |
//!
//! plus the common export options (`mode`, `oci-mediatypes`, `image-manifest`, `compression*`,
//! `ignore-error`). A bare SPEC such as `user/app:cache` means `type=registry,ref=user/app:cache`.
//!
//! Credentials come from `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`): `auths`
//! (base64 `auth`, `username`/`password`, `identitytoken`), `credHelpers` and `credsStore`
//! through the `docker-credential-*` helper protocol. Auth is anonymous, HTTP Basic, or Bearer
//! tokens fetched from the challenge's realm and refreshed on a 401. Extra CA certificates:
//! `$SSL_CERT_FILE` and `/etc/docker/certs.d/<host>/*.crt`. Loopback registries fall back to
//! plain HTTP like Docker's. Requests are retried with backoff on 429/5xx and connection errors,
//! honouring `Retry-After`.
//!
//! Push: blobs the registry lacks are uploaded (one `PUT` up to 32 MiB, `PATCH` chunks above),
//! mounted across repositories of the same registry when the source is there, then the config,
//! then the manifest under the tag, last. A stream that fails verification is never committed:
//! the upload is cancelled.
//!
//! This crate uses rustls with the ring provider and installs it as the process default when a
//! client is built.
//!
//! ## Example
//!
//! ```
//! use bkcache_core::{Backends, CacheSpec, Direction, Env};
//! let backends = Backends::new()
//!     .with(bkcache_registry::RegistryFactory)
//!     .with(bkcache_registry::InlineFactory);
//! // A bare ref is a registry cache, normalised as BuildKit does.
//! let spec = &CacheSpec::parse("user/app:buildcache").unwrap()[0];
//! let store = backends.open_source(spec, &Env::empty("/")).unwrap();
//! assert_eq!(store.location(), "registry:docker.io/user/app:buildcache");
//! ```
//!
//! ## Example: copy a cache with this crate alone
//!
//! A project that depends on `bkcache-registry` only (its [`core`] re-export is `bkcache-core`)
//! copies a cache between two tags; blobs already in the target repository are skipped, blobs
//! in another repository of the same registry are mounted. `no_run`: it needs a registry.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bkcache_registry::core::transfer::{self, CopyOptions, NoProgress, Source, Target};
//! use bkcache_registry::core::{Backends, CacheSpec, Env, Error};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     let backends = Backends::new().with(bkcache_registry::RegistryFactory);
//!     let env = Env::from_process(); // ~/.docker/config.json credentials, $SSL_CERT_FILE
//!     let from = &CacheSpec::parse("type=registry,ref=ghcr.io/acme/app:buildcache")?[0];
//!     let to = &CacheSpec::parse("type=registry,ref=ghcr.io/acme/app:buildcache-release,mode=max")?[0];
//!     let sources = vec![Source { label: from.to_string(), store: backends.open_source(from, &env)? }];
//!     let t = backends.open_target(to, &env)?;
//!     let targets = vec![Target { label: to.to_string(), store: t.store, options: t.options }];
//!     let report = transfer::copy(&sources, &targets, &CopyOptions::default(), Arc::new(NoProgress)).await?;
//!     assert!(!report.failed());
//!     println!("{}", report.targets[0].manifest.as_ref().map_or("-".into(), |m| m.digest.to_string()));
//!     Ok(())
//! }
//! ```
//!
//! ## Not done here
//! No listing or deletion of blobs (the distribution API has no blob listing); no HTTP/2.

mod auth;
mod client;
mod error;
mod inline;
mod reference;
mod store;

pub use auth::{docker_credentials, parse_challenge, Challenge, Credentials};
pub use client::RegistryClient;
pub use error::RegistryError;
pub use inline::{InlineFactory, InlineStore};
pub use reference::Reference;
pub use store::{RegistryFactory, RegistryStore, CHUNK_SIZE, MAX_CONFIG, MAX_MANIFEST};

/// The `type=` value of the registry store.
pub const TYPE_NAME: &str = "registry";

/// The core crate this backend builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;

/// This crate's version (`bkcache --version` lists every crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

// The README's examples compile too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
