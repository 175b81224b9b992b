//! # bkcache-local
//!
//! The BuildKit `type=local` cache store: an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/sha256/`) exactly as BuildKit's local exporter writes it, so a cache
//! written here imports in BuildKit with full hits and the other way round.
//!
//! | attribute | direction | default | meaning |
//! |---|---|---|---|
//! | `src` | import | required | directory to read |
//! | `dest` | export | required | directory to write (created) |
//! | `tag` | both | `latest` | `org.opencontainers.image.ref.name` in `index.json` |
//! | `digest` | import | - | import this manifest digest; `tag` is ignored |
//! | `reset` | export | `false` | after export, delete every blob no tag reaches |
//!
//! plus the common export options of [`bkcache_core::factory`] (`mode`, `oci-mediatypes`,
//! `image-manifest`, `compression*`, `ignore-error`).
//!
//! Writes are crash-safe: a blob is written to `ingest/`, fsynced, verified (digest and size)
//! and only then renamed into `blobs/sha256/` (the fsync and rename finish in the background,
//! up to 16 writers at once, while the next blobs stream). From another local directory the
//! kernel copies the bytes (a reflink where the file system has them, else `copy_file_range`)
//! and the store hashes the scratch file it wrote, so a copy still verifies every byte; at commit the store waits for them,
//! fsyncs the blob directories once, then `index.json` is replaced by rename under an exclusive `flock` on
//! `index.json.lock` (the lock BuildKit takes), after every blob it names.
//! A `kill -9` at any point leaves `index.json` either as it was or complete.
//!
//! ## Example: copy a cache with this crate alone
//!
//! A project that depends on `bkcache-local` only (its [`core`] re-export is `bkcache-core`)
//! builds a store from the same attributes as `--cache-from`/`--cache-to` and copies with the
//! core engine. Here: BuildKit's own `mode=max` cache, re-exported byte for byte.
//!
//! ```
//! use bkcache_local::core::{transfer, Backends, CacheSpec, Env};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/buildkit-v0.32.2/local-max/cache");
//! # if !std::path::Path::new(fixture).exists() { return; } // the published crate has no testdata
//! let dest = tempfile::tempdir().unwrap();
//! let backends = Backends::new().with(bkcache_local::LocalFactory);
//! let env = Env::empty(dest.path());
//! let from = &CacheSpec::parse(&format!("type=local,src={fixture}")).unwrap()[0];
//! let to = &CacheSpec::parse("type=local,dest=copy,mode=max").unwrap()[0];
//! let sources = vec![transfer::Source { label: from.to_string(), store: backends.open_source(from, &env).unwrap() }];
//! let t = backends.open_target(to, &env).unwrap();
//! let targets = vec![transfer::Target { label: to.to_string(), store: t.store, options: t.options }];
//! let report = transfer::copy(&sources, &targets, &Default::default(), std::sync::Arc::new(transfer::NoProgress)).await.unwrap();
//! // Byte-identical re-export: the same manifest digest BuildKit wrote.
//! assert_eq!(
//!     report.targets[0].manifest.as_ref().unwrap().digest.as_str(),
//!     "sha256:83b2b9fb42354a1f2928260f80624dd4bf1dd4dd5598626425eb0eba1a2abf6a"
//! );
//! # });
//! ```
//!
//! ## Not done here
//! No garbage collection beyond `reset=true` (BuildKit's own fix for the growing directory);
//! the `ingest/` scratch files of a killed run are removed by the next `reset=true`.

mod error;
mod file_io;
mod layout;
mod store;
mod writer;

pub use error::LocalError;
pub use store::{LocalFactory, LocalStore};

/// The core crate this backend builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;

/// This crate's version (`bkcache --version` lists every crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

// The README's examples compile too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
