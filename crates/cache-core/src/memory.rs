//! [`MemoryStore`]: a complete [`CacheStore`] held in memory, and the reference for third-party
//! backends: it keeps every promise of the trait (checked by `bkcache_core::conformance` when that
//! feature is on) in the fewest lines. Blobs are content-addressed; a tag points at an OCI image
//! manifest, written after its config and layers, as the local and registry backends do.
//!
//! ```
//! use bkcache_core::memory::{MemoryLocations, MemoryStore};
//! use bkcache_core::CacheStore;
//!
//! let locations = MemoryLocations::default();
//! let store = MemoryStore::new(&locations, "app", "main");
//! assert_eq!(store.location(), "memory:app:main");
//! // Nothing there yet: "no cache", not an error.
//! assert!(futures::executor::block_on(store.load()).unwrap().is_none());
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::cache::AbstractCache;
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gojson::GoTime;
use crate::manifest::TopLevel;
use crate::spec::ExportOptions;
use crate::store::{read_small_blob, write_manifest_blobs, BlobEntry, BlobStream, Committed, TagEntry};
use crate::{CacheStore, LoadedCache, VerifiedStream};

/// Largest manifest or config read into memory.
const MAX_DOCUMENT: u64 = 64 << 20;

/// One location: blobs by digest (with when each was written) and tags.
#[derive(Debug, Default)]
struct Location {
    blobs: HashMap<Digest, (Bytes, GoTime)>,
    tags: BTreeMap<String, (Descriptor, GoTime)>,
}

/// Every location, shared by the stores opened on it (clone it to share).
#[derive(Debug, Clone, Default)]
pub struct MemoryLocations(Arc<Mutex<HashMap<String, Location>>>);

/// A store over one tag of one in-memory location.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    locations: MemoryLocations,
    name: String,
    tag: String,
}

impl MemoryStore {
    /// The store for `tag` at location `name` (created on first write).
    pub fn new(locations: &MemoryLocations, name: &str, tag: &str) -> Self {
        MemoryStore {
            locations: locations.clone(),
            name: name.to_owned(),
            tag: tag.to_owned(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Location) -> T) -> T {
        let mut all = self.locations.0.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(self.name.clone()).or_default())
    }

    fn referenced_by(&self, manifest: &Descriptor) -> HashSet<Digest> {
        let mut out = HashSet::from([manifest.digest.clone()]);
        let bytes = self.with(|l| l.blobs.get(&manifest.digest).map(|b| b.0.clone()));
        if let Some(Ok(top)) = bytes.map(|b| TopLevel::detect(&b, "manifest")) {
            if let Some(cm) = top.cache_manifest() {
                out.insert(cm.config.digest.clone());
            }
            if let TopLevel::Manifest(m) = top {
                out.extend(m.layers.into_iter().map(|l| l.digest));
            }
        }
        out
    }
}

#[async_trait]
impl CacheStore for MemoryStore {
    fn location(&self) -> String {
        format!("memory:{}:{}", self.name, self.tag)
    }

    async fn load(&self) -> Result<Option<LoadedCache>> {
        let Some((entry, _)) = self.with(|l| l.tags.get(&self.tag).cloned()) else {
            return Ok(None);
        };
        let what = format!("manifest {}", entry.digest);
        let bytes = read_small_blob(self, &entry, MAX_DOCUMENT, &what).await?;
        let top = TopLevel::detect(&bytes, &what)?;
        let cm = top.into_cache_manifest().map_err(|_| Error::InvalidManifest {
            what,
            reason: "not a cache manifest".into(),
        })?;
        let config = read_small_blob(self, &cm.config, MAX_DOCUMENT, "cache config").await?;
        LoadedCache::from_manifest(cm, entry, config).map(Some)
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.with(|l| l.blobs.get(digest).map(|b| b.0.len() as u64)))
    }

    async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        let bytes = self
            .with(|l| l.blobs.get(&desc.digest).map(|b| b.0.clone()))
            .ok_or_else(|| Error::BlobNotFound {
                digest: desc.digest.clone(),
                location: self.location(),
            })?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        Ok(Box::pin(futures::stream::iter([Ok(bytes.slice(start..))])))
    }

    async fn put_blob(&self, desc: &Descriptor, mut data: VerifiedStream) -> Result<()> {
        let mut buf = Vec::with_capacity(usize::try_from(desc.size).unwrap_or(0).min(64 << 20));
        while let Some(chunk) = data.next().await {
            // An error (a digest or size mismatch ends the stream with one): nothing visible.
            buf.extend_from_slice(&chunk?);
        }
        self.with(|l| l.blobs.insert(desc.digest.clone(), (Bytes::from(buf), GoTime::now())));
        Ok(())
    }

    async fn commit(&self, cache: &AbstractCache, options: &ExportOptions) -> Result<Committed> {
        if cache.has_no_layers() {
            return Ok(Committed {
                manifest: None,
                skipped: true,
                warnings: vec!["skipping cache export for empty result (as BuildKit does)".into()],
            });
        }
        for d in cache.blobs.values() {
            if self.blob_size(&d.digest).await? != Some(d.size) {
                return Err(Error::BlobNotFound {
                    digest: d.digest.clone(),
                    location: self.location(),
                });
            }
        }
        let encoded = write_manifest_blobs(self, cache, options).await?;
        let manifest = encoded.manifest.clone();
        self.with(|l| l.tags.insert(self.tag.clone(), (manifest, GoTime::now())));
        Ok(Committed {
            manifest: Some(encoded.manifest),
            skipped: false,
            warnings: encoded.warnings,
        })
    }

    fn tag(&self) -> Option<String> {
        Some(self.tag.clone())
    }

    fn tag_store(&self) -> Option<&dyn crate::TagStore> {
        Some(self)
    }

    fn blob_gc(&self) -> Option<&dyn crate::BlobGc> {
        Some(self)
    }
}

#[async_trait]
impl crate::TagStore for MemoryStore {
    async fn tags(&self) -> Result<Vec<String>> {
        Ok(self.with(|l| l.tags.keys().cloned().collect()))
    }

    async fn remove_tag(&self, tag: &str) -> Result<()> {
        self.with(|l| l.tags.remove(tag));
        Ok(())
    }
}

#[async_trait]
impl crate::BlobGc for MemoryStore {
    async fn tag_entries(&self) -> Result<Vec<TagEntry>> {
        let tags = self.with(|l| l.tags.clone());
        Ok(tags
            .into_iter()
            .map(|(tag, (manifest, written))| TagEntry {
                blobs: self.referenced_by(&manifest),
                tag: Some(tag),
                written: Some(written),
                signed: false,
            })
            .collect())
    }

    async fn list_blobs(&self) -> Result<Vec<BlobEntry>> {
        let mut out: Vec<BlobEntry> = self.with(|l| {
            l.blobs
                .iter()
                .map(|(d, (b, t))| BlobEntry {
                    digest: d.clone(),
                    size: b.len() as u64,
                    modified: Some(*t),
                })
                .collect()
        });
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.with(|l| l.blobs.remove(digest));
        Ok(())
    }
}
