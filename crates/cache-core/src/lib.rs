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
//! | [`store`], [`factory`] | the backend traits, [`VerifiedStream`] |
//! | [`transfer`] | [`transfer::copy`]: the copy engine |
//! | [`inspect`] | summaries and verification |
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
//! ## What it deliberately does not do
//! No network or file I/O (stores do that), no async runtime (futures only), no cloud SDK.
//! Recompression (`force-compression`) needs scratch space from the caller ([`compression::Scratch`]).

pub mod annotated;
pub mod cache;
pub mod compression;
pub mod config;
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
pub mod scan;
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
pub use spec::{CacheSpec, ExportOptions};
pub use store::{BlobStream, CacheFormat, CacheStore, LoadedCache, VerifiedStream};
