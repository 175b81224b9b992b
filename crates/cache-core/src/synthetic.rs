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
}

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

fn blob_size(spec: &SyntheticSpec, i: usize) -> u64 {
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
    let size = blob_size(spec, i);
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
    for i in 0..spec.blobs {
        let mut hasher = Hasher::new();
        let mut s = blob_stream(spec, i);
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
                .put_blob(&desc, VerifiedStream::new(&desc, blob_stream(spec, i)))
                .await?;
        }
        chain.push(digest.clone());
        cache.blobs.insert(digest, desc);
        cache.records.push(Record {
            digest: Digest::of_bytes(format!("synthetic-{}-{i}", spec.seed).as_bytes()),
            inputs: if i == 0 {
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
