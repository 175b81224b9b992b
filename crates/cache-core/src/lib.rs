//! # bkcache-core
//!
//! The heart of [bkcache](https://github.com/bkcache/bkcache): models, codecs and the transfer
//! engine for BuildKit-compatible external build caches, with no knowledge of HTTP, any cloud or
//! any async runtime. Backends (`bkcache-local`, `bkcache-registry`, `bkcache-s3`, …) implement
//! [`CacheStore`] and [`BackendFactory`]; the `bkcache` CLI composes them through [`Backends`].
//!
//! | module | owns |
//! |---|---|
//! | [`digest`] | [`Digest`] (sha256 only, validated: can never be a path), hashing |
//! | [`media_type`] | [`MediaType`] with `Other(String)`; OCI ⇄ Docker layer types |
//! | [`descriptor`] | [`Descriptor`] with Go's key order |
//! | [`config`] | the cache config wire format, byte-exact with BuildKit |
//! | [`cache`] | [`AbstractCache`]: validation, merge, `mode=min/max` |
//! | [`manifest`] | image manifest / OCI index / Docker list: detect, encode, decode |
//! | [`annotated`] | the gha/s3/azblob annotated-config form |
//! | [`spec`] | buildx `--cache-from`/`--cache-to` parsing, [`ExportOptions`] |
//! | [`attrs`] | [`attrs::Attrs`]: a backend's attributes, typed, with env fallback |
//! | [`store`], [`factory`] | the backend traits, [`VerifiedStream`] |
//! | [`transfer`] | [`transfer::copy`]: the copy engine |
//! | [`inspect`] | summaries and verification |
//! | [`lifecycle`] | prune (plan, dry run, refusal to empty) and diff |
//! | [`memory`] | [`memory::MemoryStore`]: the reference store, complete and in memory |
//! | `conformance` | (feature `conformance`) the suite every backend runs against its real component |
//!
//! ## Example: parse a cache option and round-trip a BuildKit cache config byte-exactly
//!
//! ```
//! use bkcache_core::{AbstractCache, CacheConfig, CacheSpec, Descriptor, Digest, MediaType};
//!
//! let spec = &CacheSpec::parse("type=local,dest=/tmp/cache,mode=max").unwrap()[0];
//! assert_eq!((spec.kind.as_str(), spec.get("mode")), ("local", Some("max")));
//!
//! // The config of BuildKit's TestSimpleMarshal (spec fixture F6).
//! let bytes = br#"{"layers":[{"blob":"sha256:0ad52e338662c923b15fd45a73c6e97336efccf28a7aef9449443cc6dd7415fb","parent":-1},{"blob":"sha256:8b53639f152c8fc6ef30802fde462ba0be9cf085f7580dc69efd72e002abbb35"}],"records":[{"layers":[{"layer":1,"createdAt":"2024-01-02T03:04:05.5Z"}],"digest":"sha256:29e8a56dfde089212df9eeebaf90d4bebe58a2f5e192cc7f6adb9bbe15dd5ac7","inputs":[[{"link":1}],[{"selector":"sel0","link":2}]]},{"digest":"sha256:9b33d7158456f4029a31acce539a475537fd97242e02e3f98add3d26322e2686"},{"digest":"sha256:f1087d322fe2d1ff8c2ac93def4631af1ff21a0e5d9ebe7005c9d31b4c489795"}]}"#;
//! let config = CacheConfig::from_slice(bytes, "example").unwrap();
//! let (cache, warnings) = AbstractCache::from_config(&config, |d: &Digest| {
//!     Some(Descriptor::new(MediaType::OciLayerGzip, d.clone(), 1))
//! })
//! .unwrap();
//! assert!(warnings.is_empty());
//! assert_eq!(cache.to_config().to_bytes().unwrap(), bytes.to_vec());
//! ```
//!
//! ## Example: a new backend, outside bkcache
//!
//! A backend is a [`BackendFactory`] (its `type=`, attributes and encoding [`Family`]) that
//! opens [`CacheStore`]s. Registered in [`Backends`], it gets attribute checking, the common
//! export options and the copy engine ([`transfer::copy`]) for free. A complete in-memory
//! backend, through the public API only (`tests/custom_backend.rs` has the longer version that
//! re-exports BuildKit's own cache byte for byte):
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use bkcache_core::factory::Applies;
//! use bkcache_core::store::{read_small_blob, write_manifest_blobs, BlobStream, Committed};
//! use bkcache_core::*;
//! use futures::StreamExt;
//!
//! #[derive(Debug, Default)]
//! struct Mem { blobs: HashMap<Digest, bytes::Bytes>, manifest: Option<Descriptor> }
//!
//! #[derive(Debug)]
//! struct MemStore(Arc<Mutex<Mem>>);
//!
//! #[async_trait::async_trait]
//! impl CacheStore for MemStore {
//!     fn location(&self) -> String { "mem".into() }
//!
//!     async fn load(&self) -> Result<Option<LoadedCache>> {
//!         let Some(entry) = self.0.lock().unwrap().manifest.clone() else { return Ok(None) };
//!         let bytes = read_small_blob(self, &entry, 4 << 20, "manifest").await?; // verified
//!         let top = manifest::TopLevel::detect(&bytes, "manifest")?;
//!         let cm = top.cache_manifest().ok_or_else(|| Error::InvalidManifest {
//!             what: "manifest".into(), reason: "not a cache".into() })?;
//!         let config = read_small_blob(self, &cm.config, 4 << 20, "cache config").await?;
//!         let (cache, warnings) = cm.decode(&config)?;
//!         let format = CacheFormat::Manifest(cm.wrapper);
//!         Ok(Some(LoadedCache { cache, format, manifest: entry, config: Some(cm.config), warnings, parts: Vec::new() }))
//!     }
//!
//!     async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
//!         Ok(self.0.lock().unwrap().blobs.get(digest).map(|b| b.len() as u64))
//!     }
//!
//!     async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
//!         let blob = self.0.lock().unwrap().blobs.get(&desc.digest).cloned();
//!         let blob = blob.ok_or_else(|| Error::BlobNotFound {
//!             digest: desc.digest.clone(), location: self.location() })?;
//!         Ok(Box::pin(futures::stream::iter([Ok(blob.slice(offset as usize..))])))
//!     }
//!
//!     async fn put_blob(&self, desc: &Descriptor, mut data: VerifiedStream) -> Result<()> {
//!         let mut buf = Vec::new();
//!         while let Some(chunk) = data.next().await {
//!             buf.extend_from_slice(&chunk?); // a digest or size mismatch ends here: keep nothing
//!         }
//!         self.0.lock().unwrap().blobs.insert(desc.digest.clone(), buf.into());
//!         Ok(())
//!     }
//!
//!     async fn commit(&self, cache: &AbstractCache, options: &ExportOptions) -> Result<Committed> {
//!         let encoded = write_manifest_blobs(self, cache, options).await?; // config + manifest blobs
//!         self.0.lock().unwrap().manifest = Some(encoded.manifest.clone()); // the "tag", last
//!         Ok(Committed { manifest: Some(encoded.manifest), ..Default::default() })
//!     }
//! }
//!
//! /// `type=mem,name=NAME`: one location per name.
//! #[derive(Default)]
//! struct MemFactory(Mutex<HashMap<String, Arc<Mutex<Mem>>>>);
//!
//! impl BackendFactory for MemFactory {
//!     fn type_name(&self) -> &'static str { "mem" }
//!     fn summary(&self) -> &'static str { "in-memory cache" }
//!     fn family(&self) -> Family { Family::Manifest }
//!     fn attributes(&self) -> &'static [AttributeDoc] {
//!         &[AttributeDoc { name: "name", applies: Applies::Both, default: "required",
//!                          meaning: "the location", secret: false }]
//!     }
//!     fn open(&self, spec: &CacheSpec, dir: Direction, _env: &Env) -> Result<Box<dyn CacheStore>> {
//!         let name = factory::required_attr(spec, "name", dir, "e.g. name=main")?;
//!         let location = self.0.lock().unwrap().entry(name.to_owned()).or_default().clone();
//!         Ok(Box::new(MemStore(location)))
//!     }
//! }
//!
//! # futures::executor::block_on(async {
//! let backends = Backends::new().with(MemFactory::default());
//! let env = Env::empty("/");
//! // Fill name=a with a generated 3-layer cache, then copy it to name=b with the engine.
//! let a = backends.open_target(&CacheSpec::parse("type=mem,name=a")?[0], &env)?;
//! let three = synthetic::SyntheticSpec { blobs: 3, total_bytes: 3000, seed: 1, compressible: false, realistic: false };
//! synthetic::generate(a.store.as_ref(), &three, &a.options).await?;
//!
//! let (from, to) = (&CacheSpec::parse("type=mem,name=a")?[0], &CacheSpec::parse("type=mem,name=b,mode=max")?[0]);
//! let sources = vec![transfer::Source { label: from.to_string(), store: backends.open_source(from, &env)? }];
//! let b = backends.open_target(to, &env)?;
//! let targets = vec![transfer::Target { label: to.to_string(), store: b.store, options: b.options }];
//! let report = transfer::copy(&sources, &targets, &Default::default(), Arc::new(transfer::NoProgress)).await?;
//! assert_eq!(report.targets[0].blobs_copied, 3);
//!
//! // Attributes are checked against the factory's list before `open` is called.
//! let e = backends.open_source(&CacheSpec::parse("type=mem,name=a,bogus=1")?[0], &env).unwrap_err();
//! assert!(e.to_string().contains("unknown attribute \"bogus\""));
//! # Ok::<(), Error>(()) }).unwrap();
//! ```
//!
//! An annotated-config store (as s3, azblob, gha) chooses [`Family::AnnotatedConfig`] and
//! writes [`annotated::encode_annotated`] in `commit` instead. `prune` needs the optional
//! capabilities, visible in the types: [`TagStore`] (listing and removing tags) returned by
//! [`CacheStore::tag_store`], and [`BlobGc`] (manifests, blob listing and deletion) returned by
//! [`CacheStore::blob_gc`]; a store without them prunes what it can and says so.
//!
//! ## The contract, checked: the conformance suite
//! [`memory::MemoryStore`] implements every method in the fewest lines: read it as the
//! reference. With the feature `conformance`, `bkcache_core::conformance` holds the promises
//! every store keeps (blobs verified and invisible until they are, commit writes the manifest
//! last and replaces the previous one, concurrent commits never mix, tags and garbage collection,
//! the tag's write time, transient errors, no secret in `Debug` or errors); a backend runs it
//! from its own `tests/` with one line per fixture:
//!
//! ```toml
//! [dev-dependencies]
//! bkcache-core = { version = "0.1", features = ["conformance"] }
//! async-trait = "0.1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! ```ignore
//! // tests/conformance.rs: a `Fixture` makes fresh locations and opens stores on them.
//! bkcache_core::conformance_tests!(MyFixture::from_env());
//! ```
//!
//! ## What it deliberately does not do
//! No network or file I/O (stores do that), no async runtime (futures only), no cloud SDK.
//! Recompression (`force-compression`) needs scratch space from the caller ([`compression::Scratch`]).

pub mod annotated;
pub mod attrs;
pub mod cache;
pub mod compression;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod descriptor;
pub mod digest;
pub mod error;
pub mod factory;
pub mod gojson;
pub mod inline;
pub mod inspect;
pub mod lifecycle;
pub mod manifest;
pub mod media_type;
pub mod memory;
pub mod scan;
pub mod secret;
pub mod spec;
pub mod store;
pub mod synthetic;
pub mod tar;
pub mod transfer;

pub use cache::{AbstractCache, Mode};
pub use config::CacheConfig;
pub use descriptor::Descriptor;
pub use digest::Digest;
pub use error::{Error, Result};
pub use factory::{AttributeDoc, BackendFactory, Backends, Direction, Env, Family};
pub use gojson::GoTime;
pub use manifest::Wrapper;
pub use media_type::MediaType;
pub use secret::Secret;
pub use spec::{CacheSpec, ExportOptions};
pub use store::{BlobGc, BlobStream, CacheFormat, CacheStore, LoadedCache, TagEntry, TagStore, VerifiedStream};

/// This crate's version (`bkcache --version` lists every crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
