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
