//! The backend store trait, blob streams and the verifying stream adapter.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::cache::{AbstractCache, Warnings};
use crate::descriptor::Descriptor;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::gojson::GoTime;
use crate::manifest::{encode_manifest, CacheManifest, EncodedManifest, Wrapper};
use crate::spec::ExportOptions;

/// A blob's bytes, as a stream of chunks.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// How a loaded cache was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheFormat {
    /// Manifest family with this wrapper (local, registry).
    Manifest(#[serde(skip)] Wrapper),
    /// Annotated cache config (gha, s3, azblob).
    AnnotatedConfig,
    /// Records inside an image config (inline).
    Inline,
}

impl CacheFormat {
    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            CacheFormat::Manifest(w) => w.name(),
            CacheFormat::AnnotatedConfig => "annotated-config",
            CacheFormat::Inline => "inline",
        }
    }
}

/// A cache as a store loaded it.
#[derive(Debug, Clone)]
pub struct LoadedCache {
    /// The cache.
    pub cache: AbstractCache,
    /// Its encoding.
    pub format: CacheFormat,
    /// The top-level document (manifest/index; for the annotated family, the config itself).
    pub manifest: Descriptor,
    /// The cache config blob (manifest family; for the annotated family, same as `manifest`).
    pub config: Option<Descriptor>,
    /// Import warnings (skipped results, compatibility notes).
    pub warnings: Warnings,
    /// The pieces the cache was merged from, when there are several kinds of them (gha scopes,
    /// azblob names); empty otherwise.
    pub parts: Vec<CachePart>,
}

impl LoadedCache {
    /// A cache read from an annotated config (gha, s3, azblob): the config is the top-level
    /// document.
    pub fn annotated(cache: AbstractCache, config: Descriptor, warnings: Warnings, parts: Vec<CachePart>) -> Self {
        LoadedCache {
            cache,
            format: CacheFormat::AnnotatedConfig,
            manifest: config.clone(),
            config: Some(config),
            warnings,
            parts,
        }
    }
}

impl LoadedCache {
    /// A cache read from a manifest-family document (local, registry): `manifest` is the
    /// top-level descriptor, `config_bytes` the cache config it names (decoded here).
    pub fn from_manifest(cm: CacheManifest, manifest: Descriptor, config_bytes: Vec<u8>) -> Result<Self> {
        let (cache, warnings, config, wrapper) = cm.into_decoded(config_bytes)?;
        Ok(LoadedCache {
            cache,
            format: CacheFormat::Manifest(wrapper),
            manifest,
            config: Some(config),
            warnings,
            parts: Vec::new(),
        })
    }
}

/// One piece a loaded cache was merged from (a gha scope's index entry, an azblob name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachePart {
    /// The key or name it was read from (e.g. `index-buildkit-1-f921bd05#3`).
    pub name: String,
    /// What it belongs to (e.g. the scope `refs/heads/main`).
    pub scope: String,
    /// Digest of its manifest or config document.
    pub manifest: Digest,
    /// Records in it.
    pub records: usize,
    /// Layer blobs in it.
    pub layers: usize,
    /// Bytes of those layers.
    pub layer_bytes: u64,
    /// Whether it is signed (a gha `-sig` index with a Sigstore bundle). bkcache does not sign:
    /// a copy of a signed part is unsigned.
    pub signed: bool,
}

impl CachePart {
    /// Describe a decoded piece.
    pub fn of(name: impl Into<String>, scope: impl Into<String>, document: &[u8], cache: &AbstractCache) -> Self {
        CachePart {
            name: name.into(),
            scope: scope.into(),
            manifest: Digest::of_bytes(document),
            records: cache.records.len(),
            layers: cache.blobs.len(),
            layer_bytes: cache.layer_bytes(),
            signed: false,
        }
    }
}

/// Identifies a store's service and namespace for server-side copies (see
/// [`CacheStore::copy_from`]): a registry's repositories (a cross-repository mount), or two
/// local directories (an in-kernel copy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerSide {
    /// The service, e.g. `registry:127.0.0.1:5000` or `local` (same string = same service).
    pub service: String,
    /// The namespace in that service, e.g. the repository.
    pub namespace: String,
}

/// One blob in a store's listing (for prune and scan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// When it was last written or touched, if the store knows.
    pub modified: Option<GoTime>,
}

/// One cache manifest at a store's location (a local tag, an object-store name, a gha scope),
/// for prune: what it references and when it was last written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagEntry {
    /// Its tag or name; `None` for an untagged entry (a local `index.json` entry without a
    /// `org.opencontainers.image.ref.name`), which prune always keeps.
    pub tag: Option<String>,
    /// Every blob it references that lives among the location's blobs (layers; in the manifest
    /// family also its manifest and config).
    pub blobs: std::collections::HashSet<Digest>,
    /// When this tag was last written, by the backend's own clock (local: the manifest blob's
    /// mtime; s3/azblob: the config object's `LastModified`; gha: the newest index entry's
    /// creation time); `None` when it cannot tell.
    pub written: Option<GoTime>,
    /// Whether it is signed (a gha `-sig` index with its Sigstore bundle, which prune keeps and
    /// removes together with the index).
    pub signed: bool,
}

/// What a commit wrote.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// The top-level descriptor written (manifest, index, or annotated config).
    pub manifest: Option<Descriptor>,
    /// Whether the export was skipped (e.g. BuildKit skips empty registry/local exports).
    pub skipped: bool,
    /// Warnings.
    pub warnings: Warnings,
}

/// A place a cache lives: a local directory, a registry ref, a bucket prefix, …
///
/// Implementations must not make a blob visible unless its digest and size matched (they get
/// a [`VerifiedStream`], which ends with an error instead of `None` on mismatch: abort then),
/// and must write the manifest only in [`CacheStore::commit`], after every blob.
#[async_trait]
pub trait CacheStore: Send + Sync + fmt::Debug {
    /// A human description of the location, free of secrets.
    fn location(&self) -> String;

    /// Load the cache here; `Ok(None)` when there is none.
    async fn load(&self) -> Result<Option<LoadedCache>>;

    /// The size of a blob, or `None` when it is absent.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>>;

    /// The sizes of many blobs (`None`: absent), in the order asked, for the export plan.
    /// Default: [`CacheStore::blob_size`] for each, `parallelism` at a time. Stores that can
    /// list (s3, azblob) answer with a bounded listing instead of one request per blob.
    async fn blob_sizes(&self, digests: &[Digest], parallelism: usize) -> Result<Vec<Option<u64>>> {
        let checks: Vec<_> = digests.iter().map(|d| self.blob_size(d)).collect();
        futures::stream::iter(checks)
            .buffered(parallelism.max(1))
            .try_collect()
            .await
    }

    /// Whether an error this store returned (or a blob stream it opened ended with) may go away
    /// if the operation is started again; the engine then transfers the blob again, from its
    /// start (at most [`BLOB_ATTEMPTS`] times). Default:
    /// [`Error::is_transient`]. Stores whose clients already retried a request need not
    /// say yes to its final failure.
    fn is_transient(&self, error: &Error) -> bool {
        error.is_transient()
    }

    /// Open a blob for reading from `offset`.
    async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream>;

    /// Write a blob. The store must not make it visible if the stream yields an error.
    async fn put_blob(&self, desc: &Descriptor, data: VerifiedStream) -> Result<()>;

    /// Write the cache's manifest (and config), after every layer blob is in place.
    async fn commit(&self, cache: &AbstractCache, options: &ExportOptions) -> Result<Committed>;

    /// The manifest this location already holds when it is exactly what [`CacheStore::commit`]
    /// would write for `cache` and `options` **and** the store itself guarantees every blob it
    /// names: then a copy skips the blob plan and the commit (a no-change re-export in one
    /// request). Default: `None` (the engine checks every blob). The registry answers with one
    /// manifest HEAD: a registry refuses a manifest whose blobs are absent, and its GC keeps what
    /// a tag references.
    async fn unchanged(&self, _cache: &AbstractCache, _options: &ExportOptions) -> Result<Option<Descriptor>> {
        Ok(None)
    }

    /// Narrow the cache to what this store will write, before the engine plans blob transfers.
    /// Default: everything. (The inline store keeps only results over the image's layers.)
    async fn select(&self, cache: AbstractCache) -> Result<AbstractCache> {
        Ok(cache)
    }

    /// Where this store lives, for server-side copies between two stores of one service
    /// (e.g. a registry's cross-repository mount). Default: none.
    fn server_side(&self) -> Option<ServerSide> {
        None
    }

    /// Copy a blob from `source` (another store of the same service) without streaming it
    /// through us. `Ok(false)` when not possible; the engine then streams the blob.
    async fn copy_from(&self, _desc: &Descriptor, _source: &ServerSide) -> Result<bool> {
        Ok(false)
    }

    /// This store's own tag or name (what it loads and commits), when it has one.
    fn tag(&self) -> Option<String> {
        None
    }

    /// The store's tag capability (listing and removing tags), when it has one: prune's
    /// `keep_tags` and last-write `keep_duration` need it. Default: none.
    fn tag_store(&self) -> Option<&dyn TagStore> {
        None
    }

    /// The store's garbage-collection capability (manifests with their references and write
    /// times, blob listing and deletion), when it has one: prune deletes unreferenced blobs
    /// only through it. Default: none (a registry leaves blobs to its own GC).
    fn blob_gc(&self) -> Option<&dyn BlobGc> {
        None
    }
}

/// Tags at a location (local `index.json` names, registry tags, object-store names, gha
/// scopes): an optional capability of a [`CacheStore`] ([`CacheStore::tag_store`]).
#[async_trait]
pub trait TagStore: Send + Sync {
    /// The tags at this location.
    async fn tags(&self) -> Result<Vec<String>>;

    /// Remove one tag's cache manifest (its blobs are left for garbage collection; a signature
    /// stored with it goes too).
    async fn remove_tag(&self, tag: &str) -> Result<()>;
}

/// Garbage collection at a location: an optional capability of a [`CacheStore`]
/// ([`CacheStore::blob_gc`]).
#[async_trait]
pub trait BlobGc: Send + Sync {
    /// Every cache manifest at this location (all tags of a local layout, all names under an
    /// object store's manifests prefix, every scope of a gha ref) with the blobs it references
    /// and when it was written.
    async fn tag_entries(&self) -> Result<Vec<TagEntry>>;

    /// Every blob some manifest at this location references. Default: the union of
    /// [`BlobGc::tag_entries`].
    async fn referenced_blobs(&self) -> Result<std::collections::HashSet<Digest>> {
        Ok(self.tag_entries().await?.into_iter().flat_map(|e| e.blobs).collect())
    }

    /// Every blob at this location, with its size and when it was written or touched.
    async fn list_blobs(&self) -> Result<Vec<BlobEntry>>;

    /// Delete a blob (absent: no error).
    async fn delete_blob(&self, digest: &Digest) -> Result<()>;
}

/// A callback told how many bytes just went through.
pub type ByteCounter = Arc<dyn Fn(u64) + Send + Sync>;

/// A stream that hashes what passes through and ends with [`Error::DigestMismatch`] instead of
/// `None` when the bytes do not match the expected digest and size. Too many bytes fail at once.
pub struct VerifiedStream {
    inner: BlobStream,
    digest: Digest,
    size: u64,
    hasher: Option<Hasher>,
    counter: Option<ByteCounter>,
    mismatch: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl VerifiedStream {
    /// Verify `inner` against `expected`.
    pub fn new(expected: &Descriptor, inner: BlobStream) -> Self {
        VerifiedStream {
            inner,
            digest: expected.digest.clone(),
            size: expected.size,
            hasher: Some(Hasher::new()),
            counter: None,
            mismatch: None,
        }
    }

    /// A flag set when the stream ends with [`Error::DigestMismatch`]: a store may wrap that
    /// error in its own, and a server must still answer the client `DIGEST_INVALID`.
    pub fn mismatch_flag(&mut self) -> Arc<std::sync::atomic::AtomicBool> {
        self.mismatch.get_or_insert_with(Default::default).clone()
    }

    fn mismatched(&self, e: Error) -> Poll<Option<Result<Bytes>>> {
        if let Some(flag) = &self.mismatch {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Poll::Ready(Some(Err(e)))
    }

    /// A stream over in-memory bytes (manifests, configs); its descriptor is computed here.
    pub fn from_bytes(desc: &Descriptor, bytes: Bytes) -> Self {
        Self::new(desc, Box::pin(futures::stream::iter([Ok(bytes)])))
    }

    /// Report bytes as they pass.
    pub fn with_counter(mut self, counter: ByteCounter) -> Self {
        self.counter = Some(counter);
        self
    }

    /// The expected digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The expected size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Read everything into memory, verified, refusing more than `limit` bytes. For small
    /// documents (manifests, configs) only.
    pub async fn read_to_vec(mut self, limit: u64, what: &str) -> Result<Vec<u8>> {
        if self.size > limit {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                size: self.size,
                limit,
            });
        }
        let mut out = Vec::with_capacity(self.size as usize);
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// Read and discard everything, verified; returns the byte count.
    pub async fn drain(mut self) -> Result<u64> {
        let mut n = 0;
        while let Some(chunk) = self.next().await {
            n += chunk?.len() as u64;
        }
        Ok(n)
    }
}

impl fmt::Debug for VerifiedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedStream")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Stream for VerifiedStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(hasher) = this.hasher.as_mut() else {
            return Poll::Ready(None);
        };
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                hasher.update(&chunk);
                if hasher.len() > this.size {
                    let actual_size = hasher.len();
                    this.hasher = None;
                    return this.mismatched(Error::DigestMismatch {
                        digest: this.digest.clone(),
                        expected_size: this.size,
                        actual: "(stopped early: longer than expected)".into(),
                        actual_size,
                    });
                }
                if let Some(c) = &this.counter {
                    c(chunk.len() as u64);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.hasher = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let (digest, len) = this
                    .hasher
                    .take()
                    .map(Hasher::finish)
                    .unwrap_or_else(|| Hasher::new().finish());
                if digest == this.digest && len == this.size {
                    Poll::Ready(None)
                } else {
                    this.mismatched(Error::DigestMismatch {
                        digest: this.digest.clone(),
                        expected_size: this.size,
                        actual: digest.to_string(),
                        actual_size: len,
                    })
                }
            }
        }
    }
}

/// Entries a store's blob listing may read per digest asked before [`sizes_by_listing`] gives up
/// on it: one listing page of 1000 entries then costs what 50 HEADs would.
pub const LISTING_ENTRIES_PER_DIGEST: usize = 20;

/// [`CacheStore::blob_sizes`] for stores that can list their blobs (s3, azblob): one bounded
/// listing instead of a request per blob.
///
/// `list(budget)` lists at most `budget` entries (`max(20 × digests, 1000)`) and returns the
/// sizes it found and whether it saw the whole blobs prefix. A digest the listing did not find
/// is absent when the listing was complete; otherwise (cut short, or the listing failed: some
/// CI credentials may read objects but not list them) `head` asks for it, `parallelism` at
/// once. One or no digest: `head` alone.
pub async fn sizes_by_listing<'a, L, LFut, H, HFut>(
    digests: &'a [Digest],
    parallelism: usize,
    list: L,
    head: H,
) -> Result<Vec<Option<u64>>>
where
    L: FnOnce(usize) -> LFut,
    LFut: std::future::Future<Output = Result<(std::collections::HashMap<Digest, u64>, bool)>>,
    H: Fn(&'a Digest) -> HFut,
    HFut: std::future::Future<Output = Result<Option<u64>>>,
{
    let (listed, complete) = if digests.len() < 2 {
        (Default::default(), false)
    } else {
        let budget = digests.len().saturating_mul(LISTING_ENTRIES_PER_DIGEST).max(1000);
        list(budget).await.unwrap_or_else(|e| {
            tracing::debug!("listing the blobs failed, asking each blob: {e}");
            (Default::default(), false)
        })
    };
    let checks: Vec<_> = digests
        .iter()
        .map(|d| {
            let found = listed.get(d).copied();
            let head = &head;
            async move {
                match found {
                    Some(size) => Ok(Some(size)),
                    None if complete => Ok(None),
                    None => head(d).await,
                }
            }
        })
        .collect();
    futures::stream::iter(checks)
        .buffered(parallelism.max(1))
        .try_collect()
        .await
}

/// Read a small blob (manifest, config) from a store, verified against `desc`.
pub async fn read_small_blob(store: &dyn CacheStore, desc: &Descriptor, limit: u64, what: &str) -> Result<Vec<u8>> {
    let stream = store.open_blob(desc, 0).await?;
    VerifiedStream::new(desc, stream).read_to_vec(limit, what).await
}

/// For manifest-family stores: encode the cache with the options' wrapper and write the config
/// blob, then the manifest blob (each only if absent). The store then points its tag at
/// [`EncodedManifest::manifest`].
pub async fn write_manifest_blobs(
    store: &dyn CacheStore,
    cache: &AbstractCache,
    options: &ExportOptions,
) -> Result<EncodedManifest> {
    let encoded = encode_manifest(cache, options.wrapper(), options.oci_mediatypes)?;
    for (desc, bytes) in [
        (&encoded.config, &encoded.config_bytes),
        (&encoded.manifest, &encoded.manifest_bytes),
    ] {
        if store.blob_size(&desc.digest).await? != Some(desc.size) {
            put_small_blob(store, desc, bytes).await?;
        }
    }
    Ok(encoded)
}

/// Write a small blob held in memory (a config, a manifest), sending it again (up to
/// [`BLOB_ATTEMPTS`] times) after an error the store calls transient.
pub async fn put_small_blob(store: &dyn CacheStore, desc: &Descriptor, bytes: &[u8]) -> Result<()> {
    retry_transient(
        |e| store.is_transient(e),
        |e, _| tracing::warn!("{}: blob {}: {e}; sending it again", store.location(), desc.digest),
        || store.put_blob(desc, VerifiedStream::from_bytes(desc, Bytes::copy_from_slice(bytes))),
    )
    .await
}

/// Attempts per blob transfer: a transfer that fails with an error the source or the target
/// calls transient ([`CacheStore::is_transient`]: a connection reset mid-upload, a download
/// cut short, an HTTP 5xx on a one-shot upload) is started again from the blob's first byte,
/// the new bytes verified again. Requests that can be replayed are retried inside the stores.
pub const BLOB_ATTEMPTS: usize = 3;

/// Run `attempt` up to [`BLOB_ATTEMPTS`] times while it fails with an error
/// `transient` says may go away; `again(error, next)` is told before attempt `next` starts.
/// The one retry loop of blob transfers, reads (verify, scan) and commits.
pub(crate) async fn retry_transient<T, F, Fut>(
    transient: impl Fn(&Error) -> bool,
    mut again: impl FnMut(&Error, usize),
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if n < BLOB_ATTEMPTS && transient(&e) => {
                n += 1;
                again(&e, n);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::MediaType;

    fn stream_of(parts: &[&'static [u8]]) -> BlobStream {
        Box::pin(futures::stream::iter(
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>(),
        ))
    }

    async fn run(desc: &Descriptor, parts: &[&'static [u8]]) -> Result<u64> {
        VerifiedStream::new(desc, stream_of(parts)).drain().await
    }

    #[tokio::test]
    async fn verified_stream_checks_digest_and_size() {
        let desc = Descriptor::of_bytes(MediaType::OciLayer, b"hello world");
        assert_eq!(run(&desc, &[b"hello ", b"world"]).await.unwrap(), 11);
        let e = run(&desc, &[b"hello", b"WORLD!"]).await.unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        let e = run(&desc, &[b"hello ", b"worlx"]).await.unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains(desc.digest.as_str()), "{e}");
        let e = run(&desc, &[b"hello"]).await.unwrap_err().to_string();
        assert!(e.contains("got 5 bytes"), "{e}");
    }

    /// The listing plan: what a listing settles is not asked again; what it could not settle
    /// is asked with HEAD; a failed listing falls back to HEADs; one digest is never listed.
    #[tokio::test]
    async fn sizes_by_listing_heads_only_what_the_listing_did_not_settle() {
        use std::collections::HashMap;
        use std::sync::Mutex;
        let digests: Vec<Digest> = (0..4u8).map(|i| Digest::of_bytes(&[i])).collect();
        // The store holds blobs 0, 1 and 2; the listing saw 0 and 1.
        let stored: HashMap<Digest, u64> = digests[..3].iter().map(|d| (d.clone(), 10)).collect();
        let seen: HashMap<Digest, u64> = digests[..2].iter().map(|d| (d.clone(), 10)).collect();
        let run = |listing: Option<bool>, asked: &'static [usize]| {
            let (digests, stored, seen) = (digests.clone(), stored.clone(), seen.clone());
            async move {
                let heads = Mutex::new(Vec::new());
                let budgets = Mutex::new(Vec::new());
                let asked: Vec<Digest> = asked.iter().map(|&i| digests[i].clone()).collect();
                let sizes = sizes_by_listing(
                    &asked,
                    2,
                    |budget| {
                        budgets.lock().unwrap().push(budget);
                        async move {
                            match listing {
                                Some(complete) => Ok((seen, complete)),
                                None => Err(Error::io("test", "list", std::io::Error::other("refused"))),
                            }
                        }
                    },
                    |d| {
                        heads.lock().unwrap().push(d.clone());
                        let size = stored.get(d).copied();
                        async move { Ok(size) }
                    },
                )
                .await
                .unwrap();
                let heads: Vec<usize> = heads
                    .into_inner()
                    .unwrap()
                    .iter()
                    .map(|h| digests.iter().position(|d| d == h).unwrap())
                    .collect();
                (sizes, heads, budgets.into_inner().unwrap())
            }
        };
        let all: &[usize] = &[0, 1, 2, 3];
        // Complete listing: blobs 2 and 3 are absent as far as it knows, nothing is HEADed.
        let (sizes, heads, budgets) = run(Some(true), all).await;
        assert_eq!(sizes, [Some(10), Some(10), None, None]);
        assert!(heads.is_empty());
        assert_eq!(budgets, [1000]);
        // Cut-short listing: 2 and 3 are asked; 2 is there.
        let (sizes, heads, _) = run(Some(false), all).await;
        assert_eq!(sizes, [Some(10), Some(10), Some(10), None]);
        assert_eq!(heads, [2, 3]);
        // Refused listing: every blob is asked.
        let (sizes, heads, _) = run(None, all).await;
        assert_eq!(sizes, [Some(10), Some(10), Some(10), None]);
        assert_eq!(heads, [0, 1, 2, 3]);
        // One digest: one HEAD, no listing.
        let (sizes, heads, budgets) = run(Some(true), &[3]).await;
        assert_eq!((sizes, heads, budgets), (vec![None], vec![3], vec![]));
    }
}
