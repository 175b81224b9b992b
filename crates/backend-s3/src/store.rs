//! The `type=s3` factory and store.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bkcache_core::annotated::{commit_configs, config_tag_entries, load_configs, ConfigObjects};
use bkcache_core::factory::{Applies, AttributeDoc};
use bkcache_core::store::{sizes_by_listing, BlobEntry, Committed};
use bkcache_core::{
    AbstractCache, BackendFactory, BlobStream, CacheSpec, CacheStore, Descriptor, Digest, Direction, Env, Error,
    ExportOptions, Family, GoTime, LoadedCache, Result, VerifiedStream,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AwsAuthorizer;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method};
use object_store::{
    Attribute, AttributeValue, Attributes, ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutPayload, RetryConfig,
};
use tokio::sync::{OnceCell, Semaphore};

use crate::config::{key_path, CredentialSource, ProcessProvider, S3Layout, Settings};
use crate::error::{error_text, scrub, S3Error};

mod attributes;
mod net;
mod upload;

pub use attributes::S3Factory;
use net::*;

/// Blobs of this size or more are uploaded in parts (the AWS SDK transfer manager's threshold).
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// Part size of multipart uploads (the transfer manager's default; S3 needs >= 5 MiB except
/// for the last part). Grown for blobs that would need more than [`MAX_PARTS`] parts.
pub const PART_SIZE: u64 = 8 << 20;
/// S3's limit on parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// Bytes of blob data held in memory at once by one store, over all its uploads (whole small
/// objects and multipart parts, filling or in flight). Keeps a copy's peak RSS under 64 MiB
/// whatever `upload_parallelism` is: measured 105 MiB for 1 GiB / 600 blobs without it, as four
/// uploads each buffered up to 16 MiB objects or three 8 MiB parts.
pub const BUFFER_BUDGET: usize = 24 << 20;

/// Permits of [`BUFFER_BUDGET`] for `bytes` of buffer (never more than the whole budget, so
/// one large part can always proceed alone).
fn budget_of(bytes: u64) -> u32 {
    bytes.clamp(1, BUFFER_BUDGET as u64) as u32
}
/// Parts of one blob being sent at once (memory per blob: this many parts plus one filling).
pub const PARTS_IN_FLIGHT: usize = 2;
/// Largest cache config read (BuildKit sets no limit for s3; real `mode=max` configs pass 1 MiB).
pub const MAX_CONFIG: u64 = 256 << 20;
/// Objects smaller than this are touched with one `CopyObject`; larger ones with a multipart
/// copy in parts of this size, as BuildKit does (S3 refuses `CopyObject` above 5 GiB).
pub const COPY_OBJECT_LIMIT: u64 = 5 << 30;

/// What `blob_size` learnt about a blob at an export target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Present and younger than `touch_refresh`.
    Fresh,
    /// Present and older than `touch_refresh`: touched at commit.
    Stale { size: u64 },
    /// Uploaded by this store.
    Uploaded,
}

/// A BuildKit cache in an S3 bucket: blobs at `<prefix><blobs_prefix><digest>`, the annotated
/// cache config at `<prefix><manifests_prefix><name>` for each name.
///
/// `Debug` shows the location only, never a credential.
pub struct S3Store {
    s3: Arc<AmazonS3>,
    settings: Arc<Settings>,
    http: reqwest::Client,
    export: bool,
    seen: Mutex<HashMap<Digest, Seen>>,
    uploads: Arc<Semaphore>,
    /// [`BUFFER_BUDGET`] bytes of upload buffers.
    buffers: Arc<Semaphore>,
    bucket_missing: OnceCell<bool>,
    /// `https://bucket.host` or `https://host/bucket`: object URLs are `<bucket_url>/<key>`.
    bucket_url: String,
    pub(crate) multipart_threshold: u64,
    pub(crate) copy_object_limit: u64,
    pub(crate) copy_part_size: u64,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location())
            .field("export", &self.export)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Open a store for a parsed `type=s3` spec (no network access happens here).
    pub fn open(spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Self> {
        let settings = Settings::from_spec(spec, direction, env)?;
        // object_store and reqwest need a process-wide rustls provider; installing it twice is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (endpoint, bucket_url) = endpoints(&settings);
        let s3 = build_s3(&settings, endpoint)?;
        let http = build_http(&settings)?;
        Ok(S3Store {
            s3: Arc::new(s3),
            uploads: Arc::new(Semaphore::new(settings.upload_parallelism)),
            buffers: Arc::new(Semaphore::new(BUFFER_BUDGET)),
            settings: Arc::new(settings),
            http,
            export: direction == Direction::Export,
            seen: Mutex::new(HashMap::new()),
            bucket_missing: OnceCell::new(),
            bucket_url,
            multipart_threshold: MULTIPART_THRESHOLD,
            copy_object_limit: COPY_OBJECT_LIMIT,
            copy_part_size: COPY_OBJECT_LIMIT,
        })
    }

    /// The key layout.
    pub fn layout(&self) -> &S3Layout {
        &self.settings.layout
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// The cache names (export writes each; import reads the first).
    pub fn names(&self) -> &[String] {
        &self.settings.names
    }

    /// The endpoint requests go to (no credentials).
    pub fn endpoint(&self) -> String {
        match &self.settings.endpoint {
            Some(e) => e.base.clone(),
            None => format!("https://s3.{}.amazonaws.com", self.settings.region),
        }
    }

    fn path(&self, key: &str) -> Result<Path> {
        key_path(key, "prefix", &self.settings.layout.prefix)
    }

    fn set_seen(&self, digest: &Digest, state: Seen) {
        if let Ok(mut m) = self.seen.lock() {
            m.insert(digest.clone(), state);
        }
    }

    fn forget(&self, digest: &Digest) {
        if let Ok(mut m) = self.seen.lock() {
            m.remove(digest);
        }
    }

    fn get_seen(&self, digest: &Digest) -> Option<Seen> {
        self.seen.lock().ok().and_then(|m| m.get(digest).copied())
    }

    /// An object_store failure with its operation and key; denied requests name where the
    /// credentials came from.
    fn fail(&self, operation: &'static str, key: &str, e: object_store::Error) -> Error {
        let (bucket, key) = (self.settings.bucket.clone(), key.to_owned());
        let reason = error_text(&e, &self.settings.credentials.secrets());
        match e {
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                let hint =
                    if operation == "HEAD" || (operation == "GET" && reason.contains("<Code>AccessDenied</Code>")) {
                        " (S3 also answers 403 for a missing key when the credentials lack s3:ListBucket on the bucket)"
                    } else {
                        ""
                    };
                S3Error::AccessDenied {
                    operation,
                    bucket,
                    key,
                    credentials: self.settings.credentials.describe(),
                    reason: format!("{reason}{hint}"),
                }
                .into()
            }
            _ => S3Error::Request {
                operation,
                bucket,
                key,
                reason,
            }
            .into(),
        }
    }

    fn no_such_bucket(&self) -> Error {
        S3Error::NoSuchBucket {
            bucket: self.settings.bucket.clone(),
            endpoint: self.endpoint(),
        }
        .into()
    }

    /// An object is absent: fine, unless the whole bucket is.
    async fn absent(&self) -> Result<()> {
        if self.is_bucket_missing().await {
            return Err(self.no_such_bucket());
        }
        Ok(())
    }

    /// A failed write or listing: a missing bucket says so.
    async fn write_error(&self, operation: &'static str, key: &str, e: object_store::Error) -> Error {
        if matches!(e, object_store::Error::NotFound { .. }) && self.is_bucket_missing().await {
            return self.no_such_bucket();
        }
        self.fail(operation, key, e)
    }

    /// `HeadBucket` (signed with object_store's SigV4 signer), once per store: 404 means
    /// missing; any other answer or failure does not claim so.
    async fn is_bucket_missing(&self) -> bool {
        *self
            .bucket_missing
            .get_or_init(|| async {
                let url = if self.settings.path_style {
                    self.bucket_url.clone()
                } else {
                    format!("{}/", self.bucket_url)
                };
                match self.send_signed(Method::HEAD, &url, Vec::new()).await {
                    Ok(resp) => resp.status() == reqwest::StatusCode::NOT_FOUND,
                    Err(_) => false,
                }
            })
            .await
    }

    /// Send a bodiless request signed (SigV4, `Authorization` header) with the store's
    /// credentials. The error text never holds a credential.
    async fn send_signed(
        &self,
        method: Method,
        url: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> std::result::Result<reqwest::Response, String> {
        let secrets = self.settings.credentials.secrets();
        let credential = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| error_text(&e, &secrets))?;
        let mut req = HttpRequest::new(HttpRequestBody::empty());
        *req.method_mut() = method.clone();
        *req.uri_mut() = url.parse().map_err(|e| format!("bad request URL: {e}"))?;
        for (k, v) in headers {
            req.headers_mut().insert(k, v);
        }
        AwsAuthorizer::new(&credential, "s3", &self.settings.region)
            .try_authorize(&mut req, None)
            .map_err(|e| error_text(&e, &secrets))?;
        self.http
            .request(method, url)
            .headers(req.headers().clone())
            .body(Vec::new())
            .send()
            .await
            .map_err(transport_text)
    }

    /// GET a cache config; `Ok(None)` when the object is absent.
    async fn get_document(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        let result = match self.s3.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                self.absent().await?;
                return Ok(None);
            }
            Err(e) => return Err(self.fail("GET", key, e)),
        };
        let what = format!("cache config s3://{}/{key}", self.settings.bucket);
        if result.meta.size > MAX_CONFIG {
            return Err(Error::TooLarge {
                what,
                size: result.meta.size,
                limit: MAX_CONFIG,
            });
        }
        let mut body = Vec::with_capacity(result.meta.size as usize);
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.map_err(|e| self.fail("GET", key, e))?);
            if body.len() as u64 > MAX_CONFIG {
                return Err(Error::TooLarge {
                    what,
                    size: body.len() as u64,
                    limit: MAX_CONFIG,
                });
            }
        }
        Ok(Some(body))
    }

    fn is_stale(&self, meta: &ObjectMeta) -> bool {
        let modified = Duration::new(
            u64::try_from(meta.last_modified.timestamp()).unwrap_or(0),
            meta.last_modified.timestamp_subsec_nanos(),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.checked_sub(modified)
            .is_some_and(|age| age > self.settings.touch_refresh)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path(key)?;
        match self.s3.head(&path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => {
                self.absent().await?;
                Ok(None)
            }
            Err(e) => Err(self.fail("HEAD", key, e)),
        }
    }

    /// Every object whose key starts with `key_prefix` (object_store lists whole path segments:
    /// list the parent "directory" and filter).
    async fn list_prefix(&self, key_prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self.list_prefix_bounded(key_prefix, usize::MAX).await?.0)
    }

    /// Like [`Self::list_prefix`], reading at most `limit` entries; `true` when the listing
    /// was read to its end.
    async fn list_prefix_bounded(&self, key_prefix: &str, limit: usize) -> Result<(Vec<ObjectMeta>, bool)> {
        let parent = match key_prefix.rfind('/') {
            Some(i) => Some(Path::parse(&key_prefix[..i]).map_err(|e| S3Error::Setup {
                reason: format!("cannot list under {key_prefix:?}: {e}"),
            })?),
            None => None,
        };
        let mut stream = self.s3.list(parent.as_ref());
        let mut out = Vec::new();
        let mut read = 0usize;
        while let Some(item) = stream.next().await {
            read += 1;
            if read > limit {
                return Ok((out, false));
            }
            match item {
                Ok(m) if m.location.as_ref().starts_with(key_prefix) => out.push(m),
                Ok(_) => {}
                Err(e) => {
                    if self.is_bucket_missing().await {
                        return Err(self.no_such_bucket());
                    }
                    return Err(self.fail("LIST", key_prefix, e));
                }
            }
        }
        Ok((out, true))
    }

    /// What a HEAD or a listing says of a blob: its size, and (on export) whether touch will
    /// refresh it at commit.
    fn note(&self, digest: &Digest, meta: &ObjectMeta) -> u64 {
        if self.export {
            let state = if self.is_stale(meta) {
                Seen::Stale { size: meta.size }
            } else {
                Seen::Fresh
            };
            self.set_seen(digest, state);
        }
        meta.size
    }

    /// At commit: every blob the config names must be present; stale ones are touched.
    async fn refresh(&self, desc: &Descriptor) -> Result<bool> {
        let key = self.settings.layout.blob_key(&desc.digest);
        let state = match self.get_seen(&desc.digest) {
            Some(s) => s,
            None => match self.head(&key).await? {
                None => {
                    return Err(Error::BlobNotFound {
                        digest: desc.digest.clone(),
                        location: self.location(),
                    })
                }
                Some(meta) if self.is_stale(&meta) => Seen::Stale { size: meta.size },
                Some(_) => Seen::Fresh,
            },
        };
        if let Seen::Stale { size } = state {
            let _permit = self.uploads.acquire().await.map_err(|e| S3Error::Setup {
                reason: format!("upload limiter: {e}"),
            })?;
            self.touch(&key, size).await?;
            self.set_seen(&desc.digest, Seen::Fresh);
            return Ok(true);
        }
        Ok(false)
    }
}

#[async_trait]
impl CacheStore for S3Store {
    fn location(&self) -> String {
        let s = &self.settings;
        let custom = match &s.endpoint {
            Some(e) => format!(" at {}", e.base),
            None => format!(" ({})", s.region),
        };
        format!(
            "s3://{}/{}{}{custom}",
            s.bucket,
            s.layout.manifest_key(&s.names[0]),
            s.names[1..].iter().map(|n| format!(";{n}")).collect::<String>()
        )
    }

    /// GET `<prefix><manifests_prefix><name>` for the first name (every name with
    /// `import_all_names=true`, merged); a missing object is no cache, a missing bucket an error.
    async fn load(&self) -> Result<Option<LoadedCache>> {
        let s = &self.settings;
        // BuildKit reads the first name; `import_all_names=true` merges every one.
        let names = if s.import_all_names {
            &s.names[..]
        } else {
            &s.names[..1]
        };
        load_configs(self, names, false).await
    }

    /// HEAD the blob. At an export target, also notes whether it is older than `touch_refresh`
    /// (it is then touched in [`CacheStore::commit`], once every blob is in place).
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = self.settings.layout.blob_key(digest);
        let Some(meta) = self.head(&key).await? else {
            self.forget(digest);
            return Ok(None);
        };
        Ok(Some(self.note(digest, &meta)))
    }

    /// One listing of the blobs prefix (1000 keys a page) instead of a HEAD per blob, as long
    /// as the prefix is not much larger than what is asked (the plan of
    /// [`bkcache_core::store::sizes_by_listing`]; credentials without s3:ListBucket, common in
    /// CI policies, fall back to a HEAD per blob). Listed blobs are noted for the touch at
    /// commit like HEADed ones.
    async fn blob_sizes(&self, digests: &[Digest], parallelism: usize) -> Result<Vec<Option<u64>>> {
        let list = |budget| async move {
            let prefix = self.settings.layout.blobs_key_prefix();
            let (listed, complete) = self.list_prefix_bounded(&prefix, budget).await?;
            let by_key: HashMap<&str, &ObjectMeta> = listed.iter().map(|m| (m.location.as_ref(), m)).collect();
            let sizes = digests
                .iter()
                .filter_map(|d| {
                    let meta = by_key.get(self.settings.layout.blob_key(d).as_str())?;
                    Some((d.clone(), self.note(d, meta)))
                })
                .collect();
            Ok((sizes, complete))
        };
        let sizes = sizes_by_listing(digests, parallelism, list, |d| self.blob_size(d)).await?;
        for (d, size) in digests.iter().zip(&sizes) {
            if size.is_none() {
                self.forget(d);
            }
        }
        Ok(sizes)
    }

    async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        let key = self.settings.layout.blob_key(&desc.digest);
        let path = self.path(&key)?;
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        match self.s3.get_opts(&path, options).await {
            Ok(r) => {
                let settings = Arc::clone(&self.settings);
                Ok(Box::pin(r.into_stream().map_err(move |e| {
                    Error::from(S3Error::Request {
                        operation: "GET",
                        bucket: settings.bucket.clone(),
                        key: key.clone(),
                        reason: error_text(&e, &settings.credentials.secrets()),
                    })
                })))
            }
            Err(object_store::Error::NotFound { .. }) => {
                self.absent().await?;
                Err(Error::BlobNotFound {
                    digest: desc.digest.clone(),
                    location: self.location(),
                })
            }
            Err(e) => Err(self.fail("GET", &key, e)),
        }
    }

    /// One `PutObject` below [`MULTIPART_THRESHOLD`] (sent after the whole verified stream was
    /// read), a multipart upload above (parts of [`PART_SIZE`], completed only after the stream
    /// ended verified, aborted otherwise). At most `upload_parallelism` uploads run at once.
    async fn put_blob(&self, desc: &Descriptor, data: VerifiedStream) -> Result<()> {
        let _permit = self.uploads.acquire().await.map_err(|e| S3Error::Setup {
            reason: format!("upload limiter: {e}"),
        })?;
        let key = self.settings.layout.blob_key(&desc.digest);
        let path = self.path(&key)?;
        if desc.size >= self.multipart_threshold {
            self.put_large(&key, &path, desc.size, data).await?;
        } else {
            self.put_small(&key, &path, desc.size, data).await?;
        }
        self.set_seen(&desc.digest, Seen::Uploaded);
        Ok(())
    }

    /// Check every blob is present (HEAD for any `blob_size` did not see), touch the ones older
    /// than `touch_refresh`, then write the annotated cache config under every name, last.
    async fn commit(&self, cache: &AbstractCache, _options: &ExportOptions) -> Result<Committed> {
        let touched: Vec<bool> = futures::stream::iter(cache.blobs.values().cloned())
            .map(|d| async move { self.refresh(&d).await })
            .buffer_unordered(self.settings.upload_parallelism)
            .try_collect()
            .await?;
        let touched = touched.into_iter().filter(|t| *t).count();
        if touched > 0 {
            tracing::info!(touched, "refreshed LastModified of blobs older than touch_refresh");
        }
        commit_configs(self, &self.settings.names, cache).await
    }

    /// The first name (the one import reads).
    fn tag(&self) -> Option<String> {
        self.settings.names.first().cloned()
    }

    fn tag_store(&self) -> Option<&dyn bkcache_core::TagStore> {
        Some(self)
    }

    fn blob_gc(&self) -> Option<&dyn bkcache_core::BlobGc> {
        Some(self)
    }
}

#[async_trait]
impl bkcache_core::TagStore for S3Store {
    /// Every name under `<prefix><manifests_prefix>`.
    async fn tags(&self) -> Result<Vec<String>> {
        Ok(self.list_configs().await?.into_iter().map(|(n, _)| n).collect())
    }

    /// Delete `<prefix><manifests_prefix><tag>` (its blobs are left to garbage collection).
    async fn remove_tag(&self, tag: &str) -> Result<()> {
        let key = self.settings.layout.manifest_key(tag);
        let path = self.path(&key)?;
        match self.s3.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => self.absent().await,
            Err(e) => Err(self.write_error("DELETE", &key, e).await),
        }
    }
}

#[async_trait]
impl bkcache_core::BlobGc for S3Store {
    /// Every cache config under `<prefix><manifests_prefix>` with the layer blobs it names and
    /// its `LastModified` (every export PUTs it). A config that cannot be read or parsed is an
    /// error (nothing is then collected).
    async fn tag_entries(&self) -> Result<Vec<bkcache_core::TagEntry>> {
        config_tag_entries(self).await
    }

    /// Every object under `<prefix><blobs_prefix>` whose key ends in a digest, with its
    /// `LastModified` (which a touch refreshes).
    async fn list_blobs(&self) -> Result<Vec<BlobEntry>> {
        let key_prefix = self.settings.layout.blobs_key_prefix();
        let mut out: Vec<BlobEntry> = self
            .list_prefix(&key_prefix)
            .await?
            .into_iter()
            .filter_map(|meta| {
                let digest = Digest::parse(meta.location.as_ref().strip_prefix(&key_prefix)?).ok()?;
                Some(BlobEntry {
                    digest,
                    size: meta.size,
                    modified: Some(GoTime::from_unix(
                        meta.last_modified.timestamp(),
                        meta.last_modified.timestamp_subsec_nanos(),
                    )),
                })
            })
            .collect();
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let key = self.settings.layout.blob_key(digest);
        let path = self.path(&key)?;
        self.forget(digest);
        match self.s3.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => self.absent().await,
            Err(e) => Err(self.write_error("DELETE", &key, e).await),
        }
    }
}

/// The cache configs under `<prefix><manifests_prefix>`: the object I/O of core's shared
/// annotated-config layer.
#[async_trait]
impl ConfigObjects for S3Store {
    fn config_location(&self, name: &str) -> String {
        format!(
            "s3://{}/{}",
            self.settings.bucket,
            self.settings.layout.manifest_key(name)
        )
    }

    async fn read_config(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.get_document(&self.settings.layout.manifest_key(name)).await
    }

    async fn write_config(&self, name: &str, bytes: Bytes) -> Result<()> {
        let key = self.settings.layout.manifest_key(name);
        let path = self.path(&key)?;
        match self.s3.put(&path, PutPayload::from(bytes)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.write_error("PUT", &key, e).await),
        }
    }

    /// Every name with its `LastModified` (every export PUTs it).
    async fn list_configs(&self) -> Result<Vec<(String, GoTime)>> {
        let key_prefix = self.settings.layout.manifest_key("");
        let mut names: Vec<(String, GoTime)> = self
            .list_prefix(&key_prefix)
            .await?
            .into_iter()
            .filter_map(|m| {
                let name = m
                    .location
                    .as_ref()
                    .strip_prefix(&key_prefix)
                    .filter(|n| !n.is_empty())?;
                let t = m.last_modified;
                Some((
                    name.to_owned(),
                    GoTime::from_unix(t.timestamp(), t.timestamp_subsec_nanos()),
                ))
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bkcache_core::BlobGc;

    #[test]
    fn helpers() {
        assert_eq!(encode_key("proj/blobs/sha256:ab c%"), "proj/blobs/sha256%3Aab%20c%25");
        assert_eq!(
            go_time_string(GoTime::from_unix(1_795_444_098, 981_966_683)),
            "2026-11-23 14:28:18.981966683 +0000 UTC"
        );
        assert_eq!(go_time_string(GoTime::from_unix(0, 0)), "1970-01-01 00:00:00 +0000 UTC");
        let body = "<CopyPartResult><LastModified>x</LastModified><ETag>&quot;abc&quot;</ETag></CopyPartResult>";
        assert_eq!(xml_value(body, "ETag").as_deref(), Some("\"abc\""));
        assert_eq!(xml_value(body, "Code"), None);
    }

    /// moto from `cargo xtask test` / `cargo xtask servers`; skipped loudly without it.
    fn moto() -> Option<String> {
        match std::env::var("BKCACHE_TEST_S3") {
            Ok(v) if !v.is_empty() => Some(v),
            _ if std::env::var_os("CI").is_some() || std::env::var_os("BKCACHE_REQUIRE_SERVERS").is_some() => {
                panic!("BKCACHE_TEST_S3 is not set: this test needs the servers `cargo xtask test` starts")
            }
            _ => {
                eprintln!("SKIPPED: BKCACHE_TEST_S3 is not set; run `cargo xtask test` (or `cargo xtask servers`)");
                None
            }
        }
    }

    const AUTH: &str =
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

    /// The objects larger than 5 GiB are touched by a multipart copy; exercised here with the
    /// limits lowered (moto enforces S3's 5 MiB minimum part size).
    #[tokio::test]
    async fn multipart_touch_keeps_bytes_and_refreshes_last_modified() {
        let Some(ep) = moto() else {
            return;
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let bucket = format!(
            "bk-unit-touch-{}-{}",
            std::process::id(),
            GoTime::now().unix_nanos() % 1_000_000_000
        );
        let r = http.put(format!("{ep}/{bucket}")).send().await.unwrap();
        assert!(r.status().is_success());
        let spec = &CacheSpec::parse(&format!(
            "type=s3,bucket={bucket},region=us-east-1,endpoint_url={ep},access_key_id=a,secret_access_key=b,touch_refresh=0s"
        ))
        .unwrap()[0];
        let mut store = S3Store::open(spec, Direction::Export, &Env::empty("/")).unwrap();
        store.copy_object_limit = 6 << 20;
        store.copy_part_size = 5 << 20;
        let bytes: Vec<u8> = (0..(12u32 << 20))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let desc = Descriptor::of_bytes(bkcache_core::MediaType::OciLayer, &bytes);
        store
            .put_blob(&desc, VerifiedStream::from_bytes(&desc, Bytes::from(bytes.clone())))
            .await
            .unwrap();
        let key = store.layout().blob_key(&desc.digest);
        let url = format!("{ep}/{bucket}/{}", encode_key(&key));
        let head = |url: String| {
            let http = http.clone();
            async move {
                let r = http.head(url).header("authorization", AUTH).send().await.unwrap();
                assert!(r.status().is_success());
                let h = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                (h("last-modified"), h("etag"), h("x-amz-meta-updated-at"))
            }
        };
        let (lm1, etag1, meta1) = head(url.clone()).await;
        assert!(meta1.is_none() && !etag1.clone().unwrap().contains('-'), "{etag1:?}");
        tokio::time::sleep(Duration::from_millis(1100)).await;

        // commit() sees the blob is older than touch_refresh=0s and touches it.
        store.set_seen(&desc.digest, Seen::Stale { size: desc.size });
        assert!(store.refresh(&desc).await.unwrap());
        let (lm2, etag2, meta2) = head(url.clone()).await;
        assert_ne!(lm1, lm2, "LastModified moved");
        assert!(etag2.unwrap().ends_with("-3\""), "12 MiB copied in 5 MiB parts");
        assert!(meta2.unwrap().ends_with("+0000 UTC"));
        let got = http
            .get(&url)
            .header("authorization", AUTH)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got[..] == bytes[..], "same bytes after the multipart copy");
        assert_eq!(
            store.blob_size(&desc.digest).await.unwrap(),
            Some(desc.size),
            "still listed"
        );
        let listed = store.list_blobs().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].digest.clone(), listed[0].size),
            (desc.digest.clone(), desc.size)
        );
        assert!(listed[0].modified.is_some());
        store.delete_blob(&desc.digest).await.unwrap();
        assert_eq!(store.blob_size(&desc.digest).await.unwrap(), None);
        // A blob the config names but the bucket lacks stops the commit.
        let e = store.refresh(&desc).await.unwrap_err();
        assert!(matches!(e, Error::BlobNotFound { .. }), "{e}");
    }
}
