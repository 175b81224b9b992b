//! The `type=gha` factory and store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bkcache_core::annotated::{decode_annotated, encode_annotated};
use bkcache_core::factory::AttributeDoc;
use bkcache_core::store::{BlobEntry, CachePart, Committed};
use bkcache_core::{
    AbstractCache, BackendFactory, BlobStream, CacheSpec, CacheStore, Descriptor, Digest, Direction, Env, Error,
    ExportOptions, Family, GoTime, LoadedCache, MediaType, Result, VerifiedStream,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::api::{Found, Ranged, Service, PARALLEL_RANGES, RANGE_SIZE};
use crate::client::{Http, StatsSnapshot};
use crate::config::{scope_hash, GhaConfig, ATTRIBUTES, BLOB_KEY_PREFIX, KEY_FORMAT, VERSION_HASH};
use crate::error::GhaError;
use crate::rest::{Rest, RestEntry};

/// Blobs uploaded at once per store, whatever the copy's `--parallelism` (the service limits
/// how many entries a repository creates per minute).
pub const MAX_PARALLEL_UPLOADS: usize = 4;
/// Largest index entry read (BuildKit sets no limit; real `mode=max` configs pass 1 MiB).
pub const MAX_INDEX: u64 = 256 << 20;
/// How long an export waits for a numbered index key another writer reserved (BuildKit's
/// `SaveMutable(key, 15s, …)`), polling every 2 s, before it skips to the next number.
const MUTABLE_WAIT: Duration = Duration::from_secs(15);
const MUTABLE_POLL: Duration = Duration::from_secs(2);
/// Fresh signed URLs asked for per download before giving up.
const MAX_REFRESHES: u32 = 3;

/// Factory for `type=gha`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GhaFactory;

impl BackendFactory for GhaFactory {
    fn type_name(&self) -> &'static str {
        crate::TYPE_NAME
    }

    fn summary(&self) -> &'static str {
        "GitHub Actions cache service: v2 (github.com, Twirp + Azure blob) and v1 (GHES, Gitea/Forgejo runners)"
    }

    fn family(&self) -> Family {
        Family::AnnotatedConfig
    }

    fn attributes(&self) -> &'static [AttributeDoc] {
        ATTRIBUTES
    }

    fn open(&self, spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Box<dyn CacheStore>> {
        Ok(Box::new(GhaStore::open(GhaConfig::from_spec(spec, direction, env)?)?))
    }
}

struct Inner {
    svc: Service,
    /// Signed download URLs from lookups, by blob.
    urls: Mutex<HashMap<Digest, String>>,
    uploads: Semaphore,
    /// Entries this store created (blobs and index entries).
    created: AtomicUsize,
}

/// A cache in the GitHub Actions cache service: blobs under `buildkit-blob-1-<digest>`, the
/// annotated cache config under numbered index keys `index-<scope>-1-<hash8>#N`.
pub struct GhaStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GhaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GhaStore")
            .field("config", &self.inner.svc.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether an index key (`…-sig` or `…-sig#N`) is a signed one.
fn is_signed_index(key: &str) -> bool {
    key.split('#').next().is_some_and(|base| base.ends_with("-sig"))
}

/// The key of the Sigstore bundle BuildKit stores for a signed index's config bytes.
fn signature_key(config: &[u8]) -> String {
    format!("{BLOB_KEY_PREFIX}{}-sig", Digest::of_bytes(config))
}

/// `index-<scope>-1-<hash8>` (with an optional `-sig` and `#N`) → `<scope>`.
fn index_scope_of(key: &str) -> Option<&str> {
    let base = key.split('#').next()?;
    let base = base.strip_suffix("-sig").unwrap_or(base);
    let rest = base.strip_prefix("index-")?;
    let (scope, hash) = rest.rsplit_once(&format!("-{KEY_FORMAT}-"))?;
    (hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !scope.is_empty()).then_some(scope)
}

impl GhaStore {
    /// A store for a resolved configuration (no request is made yet).
    pub fn open(config: GhaConfig) -> Result<Self> {
        let mut secrets = vec![config.token.expose().to_owned()];
        if let Some(g) = &config.ghtoken {
            secrets.push(g.expose().to_owned());
        }
        let http = Http::new(config.timeout, &config.timeout_text, secrets)?;
        Ok(GhaStore {
            inner: Arc::new(Inner {
                svc: Service { config, http },
                urls: Mutex::new(HashMap::new()),
                uploads: Semaphore::new(MAX_PARALLEL_UPLOADS),
                created: AtomicUsize::new(0),
            }),
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &GhaConfig {
        &self.inner.svc.config
    }

    /// Cache entries this store has created so far (blobs and index entries).
    pub fn entries_created(&self) -> usize {
        self.inner.created.load(Ordering::Relaxed)
    }

    /// Requests sent, 429s received and retries so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.svc.http.snapshot()
    }

    fn rest(&self) -> Option<Rest<'_>> {
        let c = &self.inner.svc.config;
        Some(Rest {
            http: &self.inner.svc.http,
            api_url: &c.api_url,
            repository: c.repository.as_deref()?,
            token: c.ghtoken.as_ref()?,
        })
    }

    fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported {
            location: self.location(),
            operation: format!(
                "{what} (the cache service cannot list or delete entries; set ghtoken=<token with actions:write> and repository=<owner/name> to use the GitHub REST API)"
            ),
        }
    }

    /// The REST API and the ref whose entries prune works on (the token's write scope).
    fn rest_and_ref(&self, what: &str) -> Result<(Rest<'_>, String)> {
        let rest = self.rest().ok_or_else(|| self.unsupported(what))?;
        let scope = self.inner.svc.config.require_write_scope()?.scope.clone();
        Ok((rest, scope))
    }

    /// Look a blob up by its exact key (a prefix hit on another key, e.g. a `-sig` entry, is
    /// a miss) and remember its signed URL.
    async fn find_blob(&self, digest: &Digest) -> Result<Option<Found>> {
        let key = self.inner.svc.config.blob_key(digest);
        let found = self.inner.svc.lookup(std::slice::from_ref(&key)).await?;
        let found = found.filter(|f| f.key == key);
        if let Some(f) = &found {
            lock(&self.inner.urls).insert(digest.clone(), f.url.clone());
        }
        Ok(found)
    }

    /// The bytes of the index entry with exactly this key.
    async fn read_exact(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read_index(key).await?.filter(|(k, _)| k == key).map(|(_, b)| b))
    }

    /// The newest index entry for `key` (a prefix match: `key#N`): its key and bytes.
    async fn read_index(&self, key: &str) -> Result<Option<(String, Vec<u8>)>> {
        let svc = &self.inner.svc;
        let mut refreshes = 0;
        loop {
            let Some(found) = svc.lookup(&[key.to_owned()]).await? else {
                return Ok(None);
            };
            match svc.fetch_all(&found.key, &found.url, MAX_INDEX).await? {
                Ok(bytes) => return Ok(Some((found.key, bytes))),
                Err(Ranged::Refused(status)) if refreshes < MAX_REFRESHES => {
                    tracing::info!(key = %found.key, status, "signed URL refused; asking for a fresh one");
                    refreshes += 1;
                }
                Err(Ranged::NotFound) => return Ok(None),
                Err(_) => {
                    return Err(GhaError::Protocol {
                        operation: format!("downloading {}", found.key),
                        reason: "the signed download URL was refused again after asking for a fresh one".into(),
                    }
                    .into())
                }
            }
        }
    }

    /// When the entry before the newest one (`#N-1`) holds a different build (no final cache key
    /// in common), several images share this scope and each export replaces the other's cache.
    async fn shared_scope_warning(&self, key: &str, matched: &str, newest: &AbstractCache) -> Option<String> {
        let n: u64 = matched.rsplit_once('#')?.1.parse().ok()?;
        if n < 2 {
            return None;
        }
        let prev_key = format!("{key}#{}", n - 1);
        let (found, bytes) = self.read_index(&prev_key).await.ok()??;
        if found != prev_key {
            return None;
        }
        let (prev, _) = decode_annotated(&bytes, &prev_key).ok()?;
        let finals = |c: &AbstractCache| -> std::collections::HashSet<Digest> {
            let linked: std::collections::HashSet<usize> = c
                .records
                .iter()
                .flat_map(|r| r.inputs.iter().flatten().map(|i| i.link))
                .collect();
            c.records
                .iter()
                .enumerate()
                .filter(|(i, r)| !linked.contains(i) && !r.results.is_empty())
                .map(|(_, r)| r.digest.clone())
                .collect()
        };
        let (a, b) = (finals(&prev), finals(newest));
        if a.is_empty() || b.is_empty() || !a.is_disjoint(&b) {
            return None;
        }
        Some(format!(
            "{matched} and {prev_key} hold different builds (no final cache key in common): several images share this scope, \
             so each export replaces the other's cache; give each image its own scope="
        ))
    }

    /// Upload bytes under a freshly reserved key (the index).
    async fn save_bytes(&self, key: &str, reservation: crate::api::Reservation, bytes: Vec<u8>) -> Result<()> {
        let size = bytes.len() as u64;
        let stream = Box::pin(futures::stream::iter([Ok(Bytes::from(bytes))]));
        self.inner.svc.upload(key, reservation, stream, size).await
    }

    /// BuildKit's `SaveMutable`: find the newest `key#N`, reserve `key#N+1` (waiting up to 15 s
    /// for a number another writer holds, then skipping it), upload, commit. Returns the key.
    async fn save_numbered(&self, key: &str, bytes: Vec<u8>) -> Result<String> {
        let svc = &self.inner.svc;
        let prefix = format!("{key}#");
        let mut blocked = Duration::ZERO;
        'fresh: loop {
            let current = svc.lookup(std::slice::from_ref(&prefix)).await?;
            let mut idx: u64 = match current.as_ref().map(|f| f.key.strip_prefix(&prefix)) {
                None => 0,
                Some(Some(n)) => n.parse().map_err(|_| GhaError::Protocol {
                    operation: format!("numbering {key}"),
                    reason: format!(
                        "failed to parse the index number of {:?}",
                        current.as_ref().map(|f| &f.key)
                    ),
                })?,
                Some(None) => {
                    return Err(GhaError::Protocol {
                        operation: format!("numbering {key}"),
                        reason: "the service answered a key without the asked prefix".into(),
                    }
                    .into())
                }
            };
            loop {
                idx += 1;
                let numbered = format!("{prefix}{idx}");
                match svc.reserve(&numbered).await? {
                    Some(r) => {
                        self.save_bytes(&numbered, r, bytes).await?;
                        return Ok(numbered);
                    }
                    None if blocked <= MUTABLE_WAIT => {
                        tracing::info!(key = %numbered, "index number taken by another writer; waiting");
                        blocked += MUTABLE_POLL;
                        tokio::time::sleep(MUTABLE_POLL).await;
                        continue 'fresh;
                    }
                    None => continue,
                }
            }
        }
    }
}

/// A download split into ranged GETs, sharing one signed URL that is refreshed on 401/403.
struct Download {
    store: Arc<Inner>,
    key: String,
    digest: Digest,
    /// Held while a fresh URL is fetched, so parallel ranges refused at once refresh once.
    url: tokio::sync::Mutex<String>,
    refreshes: AtomicU32,
}

impl Download {
    async fn range(self: Arc<Self>, start: u64, end: u64) -> Result<Bytes> {
        loop {
            let url = self.url.lock().await.clone();
            match self.store.svc.fetch_range(&self.key, &url, start, end).await? {
                Ranged::Data(b) => return Ok(b),
                Ranged::NotFound => {
                    return Err(Error::BlobNotFound {
                        digest: self.digest.clone(),
                        location: self.store.svc.config.location(),
                    })
                }
                Ranged::Refused(status) => {
                    let mut current = self.url.lock().await;
                    if *current != url {
                        continue; // another range refreshed it meanwhile
                    }
                    if self.refreshes.fetch_add(1, Ordering::Relaxed) >= MAX_REFRESHES {
                        return Err(GhaError::Status {
                            operation: format!("downloading {}", self.key),
                            url: crate::client::redact_url(&url),
                            status,
                            body: " (the signed URL was refused again after asking for fresh ones)".into(),
                        }
                        .into());
                    }
                    tracing::info!(key = %self.key, status, "signed URL refused; asking for a fresh one");
                    let found = self.store.svc.lookup(std::slice::from_ref(&self.key)).await?;
                    match found.filter(|f| f.key == self.key) {
                        Some(f) => {
                            lock(&self.store.urls).insert(self.digest.clone(), f.url.clone());
                            *current = f.url;
                        }
                        None => {
                            return Err(Error::BlobNotFound {
                                digest: self.digest.clone(),
                                location: self.store.svc.config.location(),
                            })
                        }
                    }
                }
            }
        }
    }
}

/// GitHub's cache quota per repository (10 GB).
const GHA_QUOTA: u64 = 10_000_000_000;

#[async_trait]
impl CacheStore for GhaStore {
    fn location(&self) -> String {
        self.inner.svc.config.location()
    }

    /// Every scope of the token is tried (as BuildKit's importer does, in parallel); each
    /// index key's newest numbered entry is read and the caches are merged.
    async fn load(&self) -> Result<Option<LoadedCache>> {
        let keys = self.inner.svc.config.import_keys();
        let reads = futures::future::join_all(keys.iter().map(|(k, _)| self.read_index(k))).await;
        let (mut caches, mut warnings, mut first, mut parts) = (Vec::new(), Vec::new(), None, Vec::new());
        for ((key, scope), read) in keys.iter().zip(reads) {
            let Some((matched, bytes)) = read? else {
                tracing::debug!(key, scope, "no index entry");
                continue;
            };
            let what = format!("cache config {matched} ({scope}) in {}", self.location());
            let (cache, w) = decode_annotated(&bytes, &what)?;
            tracing::info!(key = %matched, scope, bytes = bytes.len(), layers = cache.blobs.len(), layer_bytes = cache.layer_bytes(), "index entry");
            first.get_or_insert_with(|| Descriptor::of_bytes(MediaType::BuildkitCacheConfig, &bytes));
            let signed = is_signed_index(&matched);
            if signed {
                warnings.push(format!(
                    "{matched} is a signed index (BuildKit [cache.gha] sign); bkcache does not sign, so a copy of it is unsigned and a BuildKit with verify.required=true will not import it"
                ));
            }
            parts.push(CachePart {
                signed,
                ..CachePart::of(matched.clone(), scope.to_string(), &bytes, &cache)
            });
            if let Some(w) = self.shared_scope_warning(key, &matched, &cache).await {
                warnings.push(w);
            }
            caches.push(cache);
            warnings.extend(w);
        }
        let Some(manifest) = first else {
            return Ok(None);
        };
        let cache = AbstractCache::merge(caches);
        if cache.layer_bytes() > GHA_QUOTA {
            warnings.push(format!(
                "the cache's layers take {} bytes, over the {GHA_QUOTA}-byte GitHub Actions cache quota per repository: \
                 the service evicts the least recently used entries (prune with --keep-storage)",
                cache.layer_bytes()
            ));
        }
        Ok(Some(LoadedCache::annotated(cache, manifest, warnings, parts)))
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = self.inner.svc.config.blob_key(digest);
        let mut refreshes = 0;
        loop {
            let Some(found) = self.find_blob(digest).await? else {
                return Ok(None);
            };
            match self.inner.svc.probe_size(&key, &found.url).await? {
                Ok(n) => return Ok(Some(n)),
                Err(Ranged::NotFound) => return Ok(None),
                Err(Ranged::Refused(status)) if refreshes < MAX_REFRESHES => {
                    tracing::info!(key, status, "signed URL refused; asking for a fresh one");
                    refreshes += 1;
                }
                Err(_) => {
                    return Err(GhaError::Protocol {
                        operation: format!("checking the size of {key}"),
                        reason: "the signed download URL was refused again after asking for fresh ones".into(),
                    }
                    .into())
                }
            }
        }
    }

    async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        let cached = lock(&self.inner.urls).get(&desc.digest).cloned();
        let url = match cached {
            Some(u) => u,
            None => match self.find_blob(&desc.digest).await? {
                Some(f) => f.url,
                None => {
                    return Err(Error::BlobNotFound {
                        digest: desc.digest.clone(),
                        location: self.location(),
                    })
                }
            },
        };
        let dl = Arc::new(Download {
            store: self.inner.clone(),
            key: self.inner.svc.config.blob_key(&desc.digest),
            digest: desc.digest.clone(),
            url: tokio::sync::Mutex::new(url),
            refreshes: AtomicU32::new(0),
        });
        let ranges: Vec<(u64, u64)> = (offset..desc.size)
            .step_by(RANGE_SIZE as usize)
            .map(|a| (a, (a + RANGE_SIZE).min(desc.size) - 1))
            .collect();
        Ok(Box::pin(
            futures::stream::iter(ranges)
                .map(move |(a, b)| dl.clone().range(a, b))
                .buffered(PARALLEL_RANGES),
        ))
    }

    /// Reserve `buildkit-blob-1-<digest>` (an existing key is success: nothing to upload), then
    /// upload from the verifying stream and commit only when it ended cleanly.
    async fn put_blob(&self, desc: &Descriptor, data: VerifiedStream) -> Result<()> {
        let config = &self.inner.svc.config;
        config.require_write_scope()?;
        let _permit = self.inner.uploads.acquire().await.map_err(|e| GhaError::Protocol {
            operation: "uploading".into(),
            reason: e.to_string(),
        })?;
        let key = config.blob_key(&desc.digest);
        let Some(reservation) = self.inner.svc.reserve(&key).await? else {
            tracing::debug!(key, "already in the cache");
            return Ok(());
        };
        self.inner
            .svc
            .upload(&key, reservation, Box::pin(data), desc.size)
            .await?;
        self.inner.created.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Write the annotated config (BuildKit's gha index value) under the next index number,
    /// after every blob.
    async fn commit(&self, cache: &AbstractCache, _options: &ExportOptions) -> Result<Committed> {
        let config = &self.inner.svc.config;
        config.require_write_scope()?;
        let bytes = encode_annotated(cache)?;
        let desc = Descriptor::of_bytes(MediaType::BuildkitCacheConfig, &bytes);
        let key = self.save_numbered(&config.index_key(), bytes).await?;
        let created = self.inner.created.fetch_add(1, Ordering::Relaxed) + 1;
        let stats = self.stats();
        tracing::info!(
            location = %self.location(),
            index = %key,
            entries_created = created,
            requests = stats.requests,
            rate_limited = stats.rate_limited,
            "export committed"
        );
        Ok(Committed {
            manifest: Some(desc),
            skipped: false,
            warnings: Vec::new(),
        })
    }

    fn tag(&self) -> Option<String> {
        Some(self.inner.svc.config.scope.clone())
    }

    fn tag_store(&self) -> Option<&dyn bkcache_core::TagStore> {
        self.rest().is_some().then_some(self as &dyn bkcache_core::TagStore)
    }

    fn blob_gc(&self) -> Option<&dyn bkcache_core::BlobGc> {
        self.rest().is_some().then_some(self as &dyn bkcache_core::BlobGc)
    }
}

#[async_trait]
impl bkcache_core::TagStore for GhaStore {
    /// The `scope=` names with an index in the token's write ref (needs the REST API).
    async fn tags(&self) -> Result<Vec<String>> {
        let (rest, git_ref) = self.rest_and_ref("listing index entries")?;
        let entries = rest.list("index-", Some(&git_ref)).await?;
        let names: BTreeSet<String> = entries
            .iter()
            .filter(|e| e.version == VERSION_HASH)
            .filter_map(|e| index_scope_of(&e.key).map(str::to_owned))
            .collect();
        Ok(names.into_iter().collect())
    }

    /// Delete every index entry of a `scope=` name in the write ref (all numbers), and after
    /// each signed one the signature bundle of its config.
    async fn remove_tag(&self, tag: &str) -> Result<()> {
        let (rest, git_ref) = self.rest_and_ref("deleting index entries")?;
        let prefix = format!("index-{tag}-{KEY_FORMAT}-");
        for e in rest.list(&prefix, Some(&git_ref)).await? {
            if index_scope_of(&e.key) != Some(tag) || e.version != VERSION_HASH {
                continue;
            }
            let bundle = match is_signed_index(&e.key) {
                true => self.read_exact(&e.key).await?.map(|bytes| signature_key(&bytes)),
                false => None,
            };
            rest.delete_id(e.id, &e.key).await?;
            if let Some(bundle) = bundle {
                for b in rest.list(&bundle, Some(&git_ref)).await? {
                    if b.key == bundle {
                        rest.delete_id(b.id, &b.key).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl bkcache_core::BlobGc for GhaStore {
    /// The newest entry of every index key in the write ref (a signed `-sig` key is one of its
    /// own), with the blobs it references and its creation time.
    async fn tag_entries(&self) -> Result<Vec<bkcache_core::TagEntry>> {
        let (rest, git_ref) = self.rest_and_ref("listing index entries")?;
        let mut newest: BTreeMap<String, (u64, RestEntry)> = BTreeMap::new();
        for e in rest.list("index-", Some(&git_ref)).await? {
            if e.version != VERSION_HASH || index_scope_of(&e.key).is_none() {
                continue;
            }
            let (base, n) = match e.key.split_once('#') {
                Some((b, n)) => (b.to_owned(), n.parse().unwrap_or(0)),
                None => (e.key.clone(), 0),
            };
            if newest.get(&base).is_none_or(|(m, _)| n >= *m) {
                newest.insert(base, (n, e));
            }
        }
        let mut out = Vec::new();
        for (_, e) in newest.into_values() {
            let Some(bytes) = self.read_exact(&e.key).await? else {
                return Err(GhaError::Protocol {
                    operation: format!("reading {}", e.key),
                    reason: "listed by the REST API but not found by the cache service (not readable with this token?); refusing to collect garbage without it".into(),
                }
                .into());
            };
            let (cache, _) = decode_annotated(&bytes, &format!("cache config {}", e.key))?;
            out.push(bkcache_core::TagEntry {
                tag: index_scope_of(&e.key).map(str::to_owned),
                blobs: cache.blobs.into_keys().collect(),
                written: e.created_at.as_deref().and_then(|t| t.parse::<GoTime>().ok()),
                signed: is_signed_index(&e.key),
            });
        }
        Ok(out)
    }

    /// Blob entries in the token's write ref (needs the REST API).
    async fn list_blobs(&self) -> Result<Vec<BlobEntry>> {
        let (rest, git_ref) = self.rest_and_ref("listing blobs")?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for e in rest.list(BLOB_KEY_PREFIX, Some(&git_ref)).await? {
            let Some(digest) = blob_digest(&e) else { continue };
            if seen.insert(digest.clone()) {
                let modified = e
                    .last_accessed_at
                    .as_deref()
                    .or(e.created_at.as_deref())
                    .and_then(|t| t.parse::<GoTime>().ok());
                out.push(BlobEntry {
                    digest,
                    size: e.size_in_bytes,
                    modified,
                });
            }
        }
        Ok(out)
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let (rest, git_ref) = self.rest_and_ref("deleting blobs")?;
        let key = self.inner.svc.config.blob_key(digest);
        for e in rest.list(&key, Some(&git_ref)).await? {
            if e.key == key {
                rest.delete_id(e.id, &e.key).await?;
            }
        }
        lock(&self.inner.urls).remove(digest);
        Ok(())
    }
}

fn blob_digest(e: &RestEntry) -> Option<Digest> {
    if e.version != VERSION_HASH {
        return None;
    }
    Digest::parse(e.key.strip_prefix(BLOB_KEY_PREFIX)?).ok()
}

/// The index key prefix hash of a token scope (exposed for tests and tools).
pub fn index_key(scope_name: &str, token_scope: &str) -> String {
    format!("index-{scope_name}-{KEY_FORMAT}-{}", scope_hash(token_scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_scopes_parse() {
        assert_eq!(index_scope_of("index-main-1-f921bd05#1"), Some("main"));
        assert_eq!(index_scope_of("index-a-1-b-1-f921bd05"), Some("a-1-b"));
        assert_eq!(index_scope_of("index-main-1-f921bd05-sig#3"), Some("main"));
        assert_eq!(index_scope_of("index-main-1-xyz"), None);
        assert_eq!(index_scope_of("buildkit-blob-1-sha256:00"), None);
        assert_eq!(index_key("main", "refs/heads/main"), "index-main-1-f921bd05");
    }
}
