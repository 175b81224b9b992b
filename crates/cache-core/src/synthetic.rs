//! Synthetic caches for benchmarks and tests: a linear chain of `n` layers with
//! deterministic pseudo-random (incompressible) content, written to any store by streaming.
//!
//! Each blob is generated twice (once to learn its digest, once to write it), so no blob is
//! ever held in memory.

use bytes::Bytes;
use futures::StreamExt;

use crate::cache::{AbstractCache, Input, LayerChain, Record};
use crate::descriptor::{Descriptor, ANNOTATION_CREATED_AT, ANNOTATION_UNCOMPRESSED};
use crate::digest::{Digest, Hasher};
use crate::error::Result;
use crate::gojson::GoTime;
use crate::media_type::MediaType;
use crate::spec::ExportOptions;
use crate::store::{BlobStream, CacheStore, Committed, VerifiedStream};

const CHUNK: usize = 256 * 1024;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticSpec {
    /// Number of layer blobs (and records with results).
    pub blobs: usize,
    /// Total bytes over all blobs (spread evenly, the remainder on the last).
    pub total_bytes: u64,
    /// Seed for the content.
    pub seed: u64,
    /// Text-like content (compresses about 3x) instead of incompressible bytes, for
    /// compression benchmarks.
    pub compressible: bool,
    /// The shape of a real multi-stage build cache instead of one even chain: blob sizes
    /// spread log-uniformly over a factor of 2^18 (many small layers, a few large ones), and
    /// layers in chains of at most [`STAGE_DEPTH`] (one chain per build stage).
    pub realistic: bool,
}

/// The longest layer chain of a [`SyntheticSpec::realistic`] cache.
pub const STAGE_DEPTH: usize = 16;

const WORDS: [&str; 32] = [
    "layer",
    "cache",
    "build",
    "record",
    "blob",
    "digest",
    "manifest",
    "index",
    "config",
    "result",
    "chain",
    "export",
    "import",
    "registry",
    "bucket",
    "container",
    "scope",
    "tag",
    "gzip",
    "zstd",
    "tar",
    "file",
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "on",
    "with",
    "as",
];

/// splitmix64: a well-mixed 64-bit value for `(seed, i)`.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The size of every blob: even, or (realistic) log-uniform weights scaled to the total, each
/// at least one byte, the rounding remainder on the largest.
pub fn blob_sizes(spec: &SyntheticSpec) -> Vec<u64> {
    let n = spec.blobs;
    if !spec.realistic || n == 0 {
        return (0..n).map(|i| blob_size(spec, i)).collect();
    }
    let weights: Vec<f64> = (0..n as u64)
        .map(|i| (mix(spec.seed, i) >> 11) as f64 / (1u64 << 53) as f64)
        .map(|u| (u * 18.0).exp2())
        .collect();
    let sum: f64 = weights.iter().sum();
    let spare = spec.total_bytes.saturating_sub(n as u64) as f64;
    let mut sizes: Vec<u64> = weights.iter().map(|w| 1 + (spare * w / sum) as u64).collect();
    let total: u64 = sizes.iter().sum();
    if let Some((largest, _)) = sizes.iter().enumerate().max_by_key(|(_, s)| **s) {
        sizes[largest] += spec.total_bytes.saturating_sub(total);
    }
    sizes
}

fn blob_size(spec: &SyntheticSpec, i: usize) -> u64 {
    if spec.realistic {
        return blob_sizes(spec).get(i).copied().unwrap_or(0);
    }
    let n = spec.blobs.max(1) as u64;
    let base = spec.total_bytes / n;
    if i as u64 == n - 1 {
        spec.total_bytes - base * (n - 1)
    } else {
        base
    }
}

/// The content of blob `i`, as a stream of chunks.
pub fn blob_stream(spec: &SyntheticSpec, i: usize) -> BlobStream {
    stream_of(spec, i, blob_size(spec, i))
}

fn stream_of(spec: &SyntheticSpec, i: usize, size: u64) -> BlobStream {
    let mut state = spec.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let chunks = (size as usize).div_ceil(CHUNK);
    let text = spec.compressible;
    Box::pin(futures::stream::iter(0..chunks).map(move |c| {
        let len = (size as usize - c * CHUNK).min(CHUNK);
        let mut buf = Vec::with_capacity(len + 16);
        while buf.len() < len {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            if text {
                buf.extend_from_slice(WORDS[(r & 31) as usize].as_bytes());
                buf.push(if r >> 60 == 0 { b'\n' } else { b' ' });
            } else {
                buf.extend_from_slice(&r.to_le_bytes());
            }
        }
        buf.truncate(len);
        Ok(Bytes::from(buf))
    }))
}

/// Generate the cache into `store` and commit it with `options`.
pub async fn generate(store: &dyn CacheStore, spec: &SyntheticSpec, options: &ExportOptions) -> Result<Committed> {
    let created: GoTime = GoTime::from_unix(1_767_225_600, 0); // 2026-01-01T00:00:00Z
    let mut cache = AbstractCache::default();
    let mut chain: Vec<Digest> = Vec::new();
    let sizes = blob_sizes(spec);
    for (i, &size) in sizes.iter().enumerate() {
        let stage_start = spec.realistic && i % STAGE_DEPTH == 0;
        if stage_start {
            chain.clear();
        }
        let mut hasher = Hasher::new();
        let mut s = stream_of(spec, i, size);
        while let Some(chunk) = s.next().await {
            hasher.update(&chunk?);
        }
        let (digest, size) = hasher.finish();
        let mut desc = Descriptor::new(MediaType::OciLayer, digest.clone(), size);
        desc.annotations
            .insert(ANNOTATION_UNCOMPRESSED.into(), digest.to_string());
        desc.annotations
            .insert(ANNOTATION_CREATED_AT.into(), created.to_string());
        if store.blob_size(&digest).await? != Some(size) {
            store
                .put_blob(&desc, VerifiedStream::new(&desc, stream_of(spec, i, size)))
                .await?;
        }
        chain.push(digest.clone());
        cache.blobs.insert(digest, desc);
        cache.records.push(Record {
            digest: Digest::of_bytes(format!("synthetic-{}-{i}", spec.seed).as_bytes()),
            inputs: if i == 0 || stage_start {
                Vec::new()
            } else {
                vec![vec![Input {
                    selector: String::new(),
                    link: i - 1,
                }]]
            },
            results: vec![LayerChain {
                blobs: chain.clone(),
                created_at: created,
            }],
        });
    }
    store.commit(&cache, options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_sizes_add_up_and_spread() {
        for (blobs, total) in [(200usize, 64u64 << 20), (600, 1 << 30), (2000, 4 << 30), (3, 3)] {
            let spec = SyntheticSpec {
                blobs,
                total_bytes: total,
                seed: 7,
                compressible: false,
                realistic: true,
            };
            let mut sizes = blob_sizes(&spec);
            assert_eq!(sizes.len(), blobs);
            assert_eq!(sizes.iter().sum::<u64>(), total, "{blobs} blobs");
            assert!(sizes.iter().all(|&s| s >= 1));
            sizes.sort_unstable();
            if blobs >= 200 {
                // Many small layers, a few large ones: the largest is over 1000x the smallest
                // and the top tenth of the blobs hold most of the bytes.
                assert!(sizes[blobs - 1] > 1000 * sizes[0], "{sizes:?}");
                let top: u64 = sizes[blobs - blobs / 10..].iter().sum();
                assert!(top > total / 2, "top tenth holds {top} of {total}");
            }
        }
    }

    #[test]
    fn even_sizes_are_unchanged() {
        let spec = SyntheticSpec {
            blobs: 3,
            total_bytes: 10,
            seed: 1,
            compressible: false,
            realistic: false,
        };
        assert_eq!(blob_sizes(&spec), vec![3, 3, 4]);
    }
}
