//! `inspect` and `verify`: what a cache holds, and whether every blob is intact.

use futures::StreamExt;
use serde::Serialize;

use crate::digest::Digest;
use crate::store::{CacheStore, LoadedCache, VerifiedStream};

/// Bytes for people: `1.5 MiB` (exact below 1 KiB: `731 B`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

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
    /// Results and layer bytes by age (a layer counts in the bucket of the newest result using it).
    pub age: Vec<AgeBucket>,
    /// The pieces the cache was merged from (gha scopes, azblob names), with their sizes.
    pub parts: Vec<crate::store::CachePart>,
    /// Import warnings.
    pub warnings: Vec<String>,
}

/// One age bucket of `inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct AgeBucket {
    /// `<1h`, `<1d`, `<7d`, `<30d` or `>=30d`.
    pub bucket: &'static str,
    /// Results created in this age range.
    pub results: usize,
    /// Bytes of layers whose newest result is in this range.
    pub layer_bytes: u64,
}

const BUCKETS: [(&str, i128); 5] = [
    ("<1h", 3600),
    ("<1d", 86400),
    ("<7d", 7 * 86400),
    ("<30d", 30 * 86400),
    (">=30d", i128::MAX),
];

fn bucket_of(now: i128, t: crate::GoTime) -> usize {
    let age = (now - t.unix_nanos()) / 1_000_000_000;
    BUCKETS
        .iter()
        .position(|(_, max)| age < *max)
        .unwrap_or(BUCKETS.len() - 1)
}

/// Results and layer bytes by age, relative to `now`.
pub fn age_histogram(cache: &crate::AbstractCache, now: crate::GoTime) -> Vec<AgeBucket> {
    let now = now.unix_nanos();
    let mut out: Vec<AgeBucket> = BUCKETS
        .iter()
        .map(|(b, _)| AgeBucket {
            bucket: b,
            results: 0,
            layer_bytes: 0,
        })
        .collect();
    let mut newest: std::collections::HashMap<&Digest, crate::GoTime> = std::collections::HashMap::new();
    for res in cache.records.iter().flat_map(|r| &r.results) {
        out[bucket_of(now, res.created_at)].results += 1;
        for b in &res.blobs {
            let e = newest.entry(b).or_insert(res.created_at);
            if *e < res.created_at {
                *e = res.created_at;
            }
        }
    }
    for (d, t) in newest {
        if let Some(desc) = cache.blobs.get(d) {
            out[bucket_of(now, t)].layer_bytes += desc.size;
        }
    }
    out
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
        age: age_histogram(cache, crate::GoTime::now()),
        parts: loaded.parts.clone(),
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
                // A read that broke off (a reset, a body cut short) is read again, as a copy
                // would: verify reports what is stored, not a network blip.
                crate::store::retry_transient(
                    |e| store.is_transient(e),
                    |e, _| tracing::warn!("blob {} could not be read ({e}); reading it again", desc.digest),
                    || async {
                        let stream = store.open_blob(desc, 0).await?;
                        VerifiedStream::new(desc, stream).drain().await
                    },
                )
                .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{LayerChain, Record};
    use crate::{AbstractCache, Descriptor, GoTime, MediaType};

    #[test]
    fn age_buckets_count_results_and_newest_layer_use() {
        let now: GoTime = "2026-11-23T12:00:00Z".parse().unwrap();
        let (a, b) = (Digest::of_bytes(b"a"), Digest::of_bytes(b"b"));
        let mut cache = AbstractCache::default();
        for d in [&a, &b] {
            cache
                .blobs
                .insert(d.clone(), Descriptor::new(MediaType::OciLayerGzip, d.clone(), 100));
        }
        let result = |blobs: Vec<Digest>, t: &str| LayerChain {
            blobs,
            created_at: t.parse().unwrap(),
        };
        cache.records.push(Record {
            digest: Digest::of_bytes(b"r1"),
            inputs: Vec::new(),
            results: vec![result(vec![a.clone()], "2026-10-01T00:00:00Z")],
        });
        cache.records.push(Record {
            digest: Digest::of_bytes(b"r2"),
            inputs: Vec::new(),
            results: vec![result(vec![a.clone(), b.clone()], "2026-11-23T11:30:00Z")],
        });
        let h = age_histogram(&cache, now);
        let got: Vec<(&str, usize, u64)> = h.iter().map(|x| (x.bucket, x.results, x.layer_bytes)).collect();
        assert_eq!(
            got,
            [
                ("<1h", 1, 200),
                ("<1d", 0, 0),
                ("<7d", 0, 0),
                ("<30d", 0, 0),
                (">=30d", 1, 0)
            ]
        );
    }
}
