//! The annotated-config family (gha, s3, azblob): the cache config itself is the manifest, and
//! each `layers[]` entry carries `annotations` {mediaType, diffID, size, createdAt}.

use std::collections::{BTreeMap, HashMap};

use crate::cache::{AbstractCache, Warnings};
use crate::config::{CacheConfig, LayerAnnotations};
use crate::descriptor::{Descriptor, ANNOTATION_CREATED_AT, ANNOTATION_UNCOMPRESSED};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gojson::GoTime;
use crate::media_type::MediaType;

/// Encode as BuildKit's gha/s3/azblob `Finalize` does: media type (OCI), diffID (required),
/// size, and `createdAt` converted to UTC (zero time when unknown).
pub fn encode_annotated(cache: &AbstractCache) -> Result<Vec<u8>> {
    let mut config = cache.to_config();
    for layer in &mut config.layers {
        let desc = cache
            .blobs
            .get(&layer.blob)
            .ok_or_else(|| Error::config(format!("layer {} has no descriptor", layer.blob)))?;
        let diff_id = desc.diff_id().ok_or_else(|| {
            Error::config(format!(
                "invalid descriptor without uncompressed annotation: layer {} has no valid containerd.io/uncompressed (diffID), which BuildKit's gha/s3/azblob importers require",
                layer.blob
            ))
        })?;
        layer.annotations = Some(LayerAnnotations {
            media_type: desc.media_type.to_oci().as_str().to_owned(),
            diff_id: Some(diff_id),
            size: desc.size as i64,
            created_at: desc.created_at().map(GoTime::to_utc).unwrap_or(GoTime::ZERO),
        });
    }
    config.to_bytes()
}

/// Decode an annotated config as BuildKit's gha/s3/azblob importers do. Every layer must carry
/// annotations with a diffID.
pub fn decode_annotated(bytes: &[u8], what: &str) -> Result<(AbstractCache, Warnings)> {
    let config = CacheConfig::from_slice(bytes, what)?;
    let mut descs: HashMap<Digest, Descriptor> = HashMap::new();
    for layer in &config.layers {
        let a = layer
            .annotations
            .as_ref()
            .ok_or_else(|| Error::config(format!("cache layer with missing annotations: {}", layer.blob)))?;
        let diff_id = a
            .diff_id
            .as_ref()
            .ok_or_else(|| Error::config(format!("cache layer with missing diffid: {}", layer.blob)))?;
        let size = u64::try_from(a.size)
            .map_err(|_| Error::config(format!("cache layer {} has negative size {}", layer.blob, a.size)))?;
        let mut annotations = BTreeMap::new();
        annotations.insert(ANNOTATION_UNCOMPRESSED.to_owned(), diff_id.to_string());
        if !a.created_at.is_zero() {
            annotations.insert(ANNOTATION_CREATED_AT.to_owned(), a.created_at.to_string());
        }
        let mut desc = Descriptor::new(MediaType::parse(&a.media_type), layer.blob.clone(), size);
        desc.annotations = annotations;
        descs.insert(layer.blob.clone(), desc);
    }
    AbstractCache::from_config(&config, |d| descs.get(d).cloned())
}

/// The cache configs of an annotated-config location (s3, azblob): one object per name under a
/// manifests prefix. A backend supplies this object I/O; loading, committing and the tag and
/// garbage-collection views are shared ([`load_configs`], [`commit_configs`],
/// [`config_tag_entries`]).
#[async_trait::async_trait]
pub trait ConfigObjects: Send + Sync {
    /// Where a name's config lives, for messages (no secrets), e.g. `s3://bucket/manifests/main`.
    fn config_location(&self, name: &str) -> String;
    /// What [`crate::store::CachePart::name`] says for a name's config. Default: its location.
    fn part_name(&self, name: &str) -> String {
        self.config_location(name)
    }
    /// A name's config bytes (bounded by the backend); `None` when absent.
    async fn read_config(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Write (replace) a name's config.
    async fn write_config(&self, name: &str, bytes: bytes::Bytes) -> Result<()>;
    /// Every name with a config, with when it was last written.
    async fn list_configs(&self) -> Result<Vec<(String, GoTime)>>;
}

/// Load and merge the configs of `names` (read in parallel). A missing name among several is a
/// warning; none found is `None`. With `parts`, each name read is described in
/// [`crate::LoadedCache::parts`].
pub async fn load_configs(
    objects: &dyn ConfigObjects,
    names: &[String],
    parts: bool,
) -> Result<Option<crate::LoadedCache>> {
    let read = futures::future::try_join_all(names.iter().map(|n| objects.read_config(n))).await?;
    let (mut caches, mut warnings, mut first, mut described) = (Vec::new(), Vec::new(), None, Vec::new());
    let mut missing = Vec::new();
    for (name, found) in names.iter().zip(read) {
        let Some(bytes) = found else {
            missing.push(name);
            continue;
        };
        let location = objects.config_location(name);
        let (cache, w) = decode_annotated(&bytes, &format!("cache config {location}"))?;
        first.get_or_insert_with(|| Descriptor::of_bytes(MediaType::BuildkitCacheConfig, &bytes));
        if parts {
            described.push(crate::store::CachePart::of(
                objects.part_name(name),
                name.clone(),
                &bytes,
                &cache,
            ));
        }
        caches.push(cache);
        warnings.extend(w);
    }
    let Some(manifest) = first else {
        return Ok(None);
    };
    for name in missing {
        warnings.push(format!(
            "name {name:?} has no cache config ({}); the other names were imported",
            objects.config_location(name)
        ));
    }
    let cache = if caches.len() == 1 {
        caches.remove(0)
    } else {
        AbstractCache::merge(caches)
    };
    Ok(Some(crate::LoadedCache::annotated(
        cache, manifest, warnings, described,
    )))
}

/// Write the cache's config under every name (after every blob is in place: the caller's
/// part) and describe what was written.
pub async fn commit_configs(
    objects: &dyn ConfigObjects,
    names: &[String],
    cache: &AbstractCache,
) -> Result<crate::store::Committed> {
    let bytes = bytes::Bytes::from(encode_annotated(cache)?);
    let desc = Descriptor::of_bytes(MediaType::BuildkitCacheConfig, &bytes);
    for name in names {
        objects.write_config(name, bytes.clone()).await?;
    }
    Ok(crate::store::Committed {
        manifest: Some(desc),
        skipped: false,
        warnings: Vec::new(),
    })
}

/// Every name's config with the layer blobs it names and its last write (prune's view). A
/// config that cannot be read or parsed is an error: nothing is then collected.
pub async fn config_tag_entries(objects: &dyn ConfigObjects) -> Result<Vec<crate::TagEntry>> {
    let mut out = Vec::new();
    for (name, written) in objects.list_configs().await? {
        let Some(bytes) = objects.read_config(&name).await? else {
            continue;
        };
        let what = format!("cache config {}", objects.config_location(&name));
        let config = CacheConfig::from_slice(&bytes, &what)?;
        out.push(crate::TagEntry {
            tag: Some(name),
            blobs: config.layers.into_iter().map(|l| l.blob).collect(),
            written: Some(written),
            signed: false,
        });
    }
    Ok(out)
}
