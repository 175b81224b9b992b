//! # bkcache-azblob
//!
//! BuildKit's `type=azblob` cache store (Azure Blob Storage) for bkcache, on `object_store`.
//! It reads and writes the layout BuildKit v0.32 writes: the cache config with per-layer
//! annotations (the "annotated config", see `bkcache_core::annotated`) under
//! `path.Join(prefix, manifests_prefix, name)` and each layer blob under
//! `path.Join(prefix, blobs_prefix, "sha256:<hex>")`, e.g. `proj/manifests/main` and
//! `proj/blobs/sha256:3f1a…`.
//!
//! | attribute | direction | default | meaning |
//! |---|---|---|---|
//! | `account_url` | both | `$BUILDKIT_AZURE_STORAGE_ACCOUNT_URL`, else from the connection string or `$AZURE_STORAGE_ACCOUNT` | `https://ACCOUNT.blob.core.windows.net`; Azurite: `http://127.0.0.1:10000/devstoreaccount1`. A `?SAS` query is used as the SAS token |
//! | `account_name` | both | `$BUILDKIT_AZURE_STORAGE_ACCOUNT_NAME`, else the URL's first DNS label (IP/`localhost` URLs: the first path segment) | signs shared-key requests |
//! | `container` | both | `$BUILDKIT_AZURE_STORAGE_CONTAINER`, else `buildkit-cache` | created on export when missing |
//! | `prefix` | both | `$BUILDKIT_AZURE_STORAGE_PREFIX`, else empty | joined with `/` and cleaned, as Go's `path.Join` |
//! | `blobs_prefix` | both | `blobs` | |
//! | `manifests_prefix` | both | `manifests` | |
//! | `name` | both | `buildkit` | `;`-separated: export writes the config under every name, import reads every name and merges (as BuildKit) |
//! | `secret_access_key` | both | `$AZURE_STORAGE_KEY` | account key (shared key) — secret |
//! | `sas_token` | both | `$AZURE_STORAGE_SAS_TOKEN` | SAS token (`sv=…&sig=…`) — secret |
//! | `upload_parallelism` | export | `4` | blobs uploaded at once (BuildKit has no such option and uploads one at a time) |
//!
//! plus `mode` and `ignore-error`. As in BuildKit, `oci-mediatypes`, `image-manifest` and
//! `compression*` have no effect here (the CLI warns).
//!
//! **Credentials**, first found wins: `secret_access_key`; `sas_token`; a SAS query in
//! `account_url`; `$AZURE_STORAGE_CONNECTION_STRING` (`AccountKey` or `SharedAccessSignature`;
//! its `BlobEndpoint`/`AccountName` also supply the URL, and `UseDevelopmentStorage=true` means
//! Azurite's default); `$AZURE_STORAGE_KEY`; `$AZURE_STORAGE_SAS_TOKEN` (the environment keys
//! only when their account matches); otherwise Microsoft Entra ID tokens as object_store
//! supports them: workload identity (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
//! `AZURE_FEDERATED_TOKEN_FILE`), a service principal (`AZURE_CLIENT_SECRET`), else managed
//! identity. Keys and tokens never appear in `Debug`, errors or locations; errors name where the
//! credentials came from.
//!
//! **Checks before any request**: `account_url` must be `http(s)://host…` (no missing or
//! misspelt scheme, no `file`/`queue` endpoint, no container in an Azure URL), the container
//! name must follow Azure's rules, the key must be base64, names non-empty, keys relative.
//!
//! **Export**: each missing blob is uploaded streaming from the verifying stream: up to
//! [`BLOCK_SIZE`] (8 MiB) as one `Put Blob`, larger as staged blocks of 8 MiB,
//! [`BLOCK_CONCURRENCY`] at once, committed by one `Put Block List` only after the stream ended
//! verified — so a corrupt source never becomes a visible blob. Both carry `If-None-Match: *`:
//! an existing blob of the right size is never rewritten (a damaged one is replaced). The
//! container is created first if missing; the config is written to every name last
//! (last writer wins, as BuildKit). Import reads every name in parallel; a missing name is a
//! warning, none present means no cache.
//!
//! This crate uses rustls with the ring provider and installs it as the process default when a
//! store is opened.
//!
//! ## Example
//!
//! ```
//! use bkcache_core::{Backends, CacheSpec, Direction, Env};
//! let backends = Backends::new().with(bkcache_azblob::AzblobFactory);
//! let spec = &CacheSpec::parse(
//!     "type=azblob,account_url=https://myaccount.blob.core.windows.net,prefix=proj,name=main;alt,secret_access_key=a2V5",
//! )
//! .unwrap()[0];
//! let store = backends.open_source(spec, &Env::empty("/")).unwrap(); // no request yet
//! assert_eq!(store.location(), "azblob:https://myaccount.blob.core.windows.net/buildkit-cache/proj/manifests/main;alt");
//! assert!(!format!("{store:?} {spec}").contains("a2V5"));
//!
//! // A URL without a scheme is refused before any request, naming the attribute.
//! let spec = &CacheSpec::parse("type=azblob,account_url=myaccount.blob.core.windows.net").unwrap()[0];
//! let e = backends.open_source(spec, &Env::empty("/")).unwrap_err().to_string();
//! assert!(e.contains("account_url") && e.contains("no scheme"), "{e}");
//! ```
//!
//! ## Example: copy a cache with this crate alone
//!
//! A project that depends on `bkcache-azblob` only (its [`core`] re-export is `bkcache-core`)
//! copies the cache under one name to another (only missing blobs move; each is verified while
//! streaming; the config is written last). `no_run`: it needs a storage account.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bkcache_azblob::core::transfer::{self, CopyOptions, NoProgress, Source, Target};
//! use bkcache_azblob::core::{Backends, CacheSpec, Env, Error};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     let backends = Backends::new().with(bkcache_azblob::AzblobFactory);
//!     let env = Env::from_process(); // $AZURE_STORAGE_KEY, a connection string, Entra ID, …
//!     let account = "account_url=https://myaccount.blob.core.windows.net,container=buildkit-cache";
//!     let from = &CacheSpec::parse(&format!("type=azblob,{account},name=main"))?[0];
//!     let to = &CacheSpec::parse(&format!("type=azblob,{account},name=release,mode=max"))?[0];
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
//! No `touch`/refresh of old blobs (BuildKit's azblob has none either), no customer-provided
//! encryption keys, no Azure CLI credential. Real Azure was not tried; the tests run against
//! Azurite 3.35.

mod config;
mod error;
mod store;

pub use config::{
    account_from_url, go_path_clean, go_path_join, parse_account_url, AzblobConfig, DEFAULT_CONTAINER, DEFAULT_NAME,
    DEFAULT_UPLOAD_PARALLELISM,
};
pub use error::AzblobError;
pub use store::{AzblobFactory, AzblobStore, BLOCK_CONCURRENCY, BLOCK_SIZE, MAX_CONFIG};

/// The `type=` value this crate serves.
pub const TYPE_NAME: &str = "azblob";

/// The core crate this backend builds on (re-exported for users who pick this crate alone).
pub use bkcache_core as core;

/// This crate's version (`bkcache --version` lists every crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

// The README's examples compile too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
