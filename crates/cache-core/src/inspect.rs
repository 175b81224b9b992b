//! `inspect` and `verify`: what a cache holds, and whether every blob is intact.

use futures::StreamExt;
use serde::Serialize;

use crate::digest::Digest;
use crate::store::{CacheStore, LoadedCache, VerifiedStream};

/// The stable `bkcache inspect --json` object (documented in the CLI's README section).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Where the cache is (no secrets).
    pub location: String,
    /// `image-manifest`, `oci-index`, `docker-manifest-list`, `annotated-config` or `inline`.
    pub format: &'static str,
    /// The top-level document.
    pub manifest: ManifestSummary,
    /// The cache config blob.
    pub config: Option<ConfigSummary>,
    /// Layer blobs, in config order.
    pub layers: Vec<LayerSummary>,
    /// Number of records (cache keys) in the cache config.
    pub records: usize,
    /// Number of results over all records.
    pub results: usize,
    /// Bytes of the layer blobs.
    pub layer_bytes: u64,
    /// Bytes of every blob the cache names: layers, config and manifest.
    pub total_bytes: u64,
    /// Import warnings.
    pub warnings: Vec<String>,
}

/// The top-level document.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSummary {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
}

/// The cache config blob.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// One layer blob.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    /// Blob digest.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Media type as stored.
    pub media_type: String,
    /// `gzip`, `estargz`, `zstd`, `uncompressed` or `unknown`.
    pub compression: &'static str,
    /// `buildkit/createdat`, when present.
    pub created_at: Option<String>,
    /// The diffID, when present.
    pub diff_id: Option<Digest>,
}

/// Summarise a loaded cache.
pub fn summarize(location: &str, loaded: &LoadedCache) -> Summary {
    let cache = &loaded.cache;
    let layers: Vec<LayerSummary> = cache
        .layer_order()
        .iter()
        .filter_map(|d| cache.blobs.get(d))
        .map(|d| LayerSummary {
            digest: d.digest.clone(),
            size: d.size,
            media_type: d.media_type.to_string(),
            compression: d.compression_name(),
            created_at: d.created_at().map(|t| t.to_string()),
            diff_id: d.diff_id(),
        })
        .collect();
    let layer_bytes: u64 = layers.iter().map(|l| l.size).sum();
    let config = loaded.config.as_ref().map(|c| ConfigSummary {
        digest: c.digest.clone(),
        size: c.size,
    });
    let mut total_bytes = layer_bytes + loaded.manifest.size;
    if let Some(c) = &config {
        if c.digest != loaded.manifest.digest {
            total_bytes += c.size;
        }
    }
    Summary {
        location: location.to_owned(),
        format: loaded.format.name(),
        manifest: ManifestSummary {
            digest: loaded.manifest.digest.clone(),
            media_type: loaded.manifest.media_type.to_string(),
            size: loaded.manifest.size,
        },
        config,
        layers,
        records: cache.records.len(),
        results: cache.result_count(),
        layer_bytes,
        total_bytes,
        warnings: loaded.warnings.clone(),
    }
}

/// One problem `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The blob.
    pub digest: Digest,
    /// What is wrong.
    pub problem: String,
}

/// The result of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Blobs checked (layers; manifest and config are verified when the cache is loaded).
    pub blobs_checked: usize,
    /// Bytes read.
    pub bytes_read: u64,
    /// Problems found; empty = the cache is intact.
    pub problems: Vec<Problem>,
}

/// Read every layer blob of `loaded` from `store`, checking digest and size.
pub async fn verify(store: &dyn CacheStore, loaded: &LoadedCache, parallelism: usize) -> VerifyReport {
    let results: Vec<(Digest, Result<u64, String>)> = futures::stream::iter(loaded.cache.blobs.values())
        .map(|desc| async move {
            let r = async {
                match store.blob_size(&desc.digest).await? {
                    None => {
                        return Err(crate::Error::BlobNotFound {
                            digest: desc.digest.clone(),
                            location: store.location(),
                        })
                    }
                    Some(n) if n != desc.size => {
                        return Err(crate::Error::DigestMismatch {
                            digest: desc.digest.clone(),
                            expected_size: desc.size,
                            actual: "(not read: wrong size)".into(),
                            actual_size: n,
                        })
                    }
                    Some(_) => {}
                }
                let stream = store.open_blob(desc, 0).await?;
                VerifiedStream::new(desc, stream).drain().await
            }
            .await;
            (desc.digest.clone(), r.map_err(|e| e.to_string()))
        })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut report = VerifyReport {
        blobs_checked: results.len(),
        bytes_read: 0,
        problems: Vec::new(),
    };
    for (digest, r) in results {
        match r {
            Ok(n) => report.bytes_read += n,
            Err(problem) => report.problems.push(Problem { digest, problem }),
        }
    }
    report.problems.sort_by(|a, b| a.digest.cmp(&b.digest));
    report
}
