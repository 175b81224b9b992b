//! The `type=azblob` factory and store, on `object_store`'s Azure client, plus two requests it
//! cannot make (container creation and a conditional block-list commit), signed with its
//! `AzureAuthorizer`.

use std::fmt;
use std::sync::Arc;
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
use object_store::azure::{AzureAuthorizer, AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use reqwest::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, IF_NONE_MATCH};
use reqwest::{Method, Url};
use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinSet;

use crate::config::{go_path_join, Auth, AzblobConfig};
use crate::error::AzblobError;

mod attributes;
mod signed;
mod upload;

pub use attributes::AzblobFactory;

/// Blobs up to this size go in one `Put Blob`; larger ones in staged blocks of this size.
/// (BuildKit uses 32 MiB blocks; 8 MiB keeps memory at most `(BLOCK_CONCURRENCY + 1) × 8 MiB`
/// per blob being uploaded while staying above Azure's high-throughput threshold of 4 MiB.)
pub const BLOCK_SIZE: usize = 8 << 20;
/// Blocks of one blob staged at once (BuildKit's `IOConcurrency`).
pub const BLOCK_CONCURRENCY: usize = 4;
/// Bytes of blob data held in memory at once by one store, over all its uploads (whole small
/// blobs and blocks, filling or in flight). Keeps a copy's peak RSS under 64 MiB whatever
/// `upload_parallelism` is: measured 109 MiB for 1 GiB / 600 blobs without it.
pub const BUFFER_BUDGET: usize = 24 << 20;

/// Permits of [`BUFFER_BUDGET`] for `bytes` of buffer.
fn budget_of(bytes: u64) -> u32 {
    bytes.clamp(1, BUFFER_BUDGET as u64) as u32
}
/// Largest cache config read into memory (BuildKit's azblob importer has no limit).
pub const MAX_CONFIG: u64 = 256 << 20;

/// A BuildKit azblob cache: one container, a prefix, one or more manifest names.
///
/// `Debug` shows the location only: the client inside holds the credentials.
pub struct AzblobStore {
    config: AzblobConfig,
    store: Arc<MicrosoftAzure>,
    http: HttpClient,
    container_ready: OnceCell<()>,
    uploads: Arc<Semaphore>,
    /// [`BUFFER_BUDGET`] bytes of upload buffers.
    buffers: Arc<Semaphore>,
}

impl fmt::Debug for AzblobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzblobStore")
            .field("location", &self.config.location())
            .finish_non_exhaustive()
    }
}

/// Strip the query of every URL in a message (a SAS travels in the query).
fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '\'' || c == '>')
            .unwrap_or(tail.len());
        let url = &tail[..end];
        match url.find('?') {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str("?<query redacted>");
            }
            None => out.push_str(url),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// An error and its sources, one message (scrubbed): object_store's top-level text leaves
/// out causes such as "Connection refused".
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    scrub(&bkcache_core::error::chain_text(e))
}

/// Azure's error code in a message (`<Code>…</Code>` of the response body), if any.
fn azure_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].to_owned())
}

fn key_path(key: &str) -> Result<ObjectPath> {
    ObjectPath::parse(key).map_err(|e| Error::InvalidValue {
        attribute: "prefix".into(),
        value: key.into(),
        allowed: format!("not a usable blob name: {e}"),
    })
}

impl AzblobStore {
    /// Build the client for `config` (no request is made). Installs rustls' ring provider as
    /// the process default if none is installed yet.
    pub fn open(config: AzblobConfig) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let location = config.location();
        let client_err = |reason: String| AzblobError::Client {
            location: location.clone(),
            reason: scrub(&reason),
        };
        // No overall timeout (a large blob may take long); a stalled read or connect fails.
        let options = ClientOptions::new()
            .with_allow_http(config.account_url.scheme() == "http")
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(10))
            .with_read_timeout(Duration::from_secs(120));
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&config.account_name)
            .with_container_name(&config.container)
            .with_endpoint(config.account_url.as_str().trim_end_matches('/').to_owned())
            .with_client_options(options.clone());
        builder = match &config.auth {
            Auth::SharedKey(k) => builder.with_access_key(k.expose()),
            Auth::Sas(pairs) => builder.with_sas_authorization(pairs.clone()),
            Auth::Token(t) => {
                let mut b = builder;
                for (key, value) in [
                    (AzureConfigKey::ClientId, t.client_id.as_deref()),
                    (AzureConfigKey::AuthorityId, t.tenant_id.as_deref()),
                    (
                        AzureConfigKey::ClientSecret,
                        t.client_secret.as_ref().map(|s| s.expose()),
                    ),
                    (AzureConfigKey::FederatedTokenFile, t.federated_token_file.as_deref()),
                    (AzureConfigKey::AuthorityHost, t.authority_host.as_deref()),
                ] {
                    if let Some(v) = value {
                        b = b.with_config(key, v);
                    }
                }
                b
            }
        };
        let store = builder.build().map_err(|e| client_err(e.to_string()))?;
        let http = ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| client_err(e.to_string()))?;
        let uploads = Arc::new(Semaphore::new(config.upload_parallelism));
        Ok(AzblobStore {
            config,
            store: Arc::new(store),
            http,
            container_ready: OnceCell::new(),
            uploads,
            buffers: Arc::new(Semaphore::new(BUFFER_BUDGET)),
        })
    }

    /// The resolved settings.
    pub fn config(&self) -> &AzblobConfig {
        &self.config
    }

    /// An object_store error as ours: refused credentials become [`AzblobError::Auth`].
    fn store_err(&self, operation: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => {
                let text = source.to_string();
                self.auth_err(operation, azure_code(&text).unwrap_or_else(|| "HTTP 403".into()))
            }
            other => AzblobError::Request {
                location: self.config.location(),
                operation: operation.to_owned(),
                reason: chain_text(&other),
                transient: bkcache_core::error::chain_is_transient(&other),
            }
            .into(),
        }
    }

    fn auth_err(&self, operation: &str, detail: String) -> Error {
        let hint = if matches!(self.config.auth, Auth::SharedKey(_)) {
            format!(
                "; shared-key requests are signed for account {:?} at {}",
                self.config.account_name, self.config.account_url
            )
        } else {
            String::new()
        };
        AzblobError::Auth {
            location: self.config.location(),
            operation: operation.to_owned(),
            detail,
            source_name: self.config.credential_source().to_owned(),
            hint,
        }
        .into()
    }

    fn request_err(&self, operation: &str, reason: String) -> Error {
        AzblobError::Request {
            location: self.config.location(),
            operation: operation.to_owned(),
            reason: scrub(&reason),
            transient: false,
        }
        .into()
    }

    fn container_url(&self) -> Result<Url> {
        let mut url = self.config.account_url.clone();
        url.path_segments_mut()
            .map_err(|()| self.request_err("build URL", "account_url cannot hold a path".into()))?
            .pop_if_empty()
            .push(&self.config.container);
        Ok(url)
    }

    fn blob_url(&self, key: &str) -> Result<Url> {
        let mut url = self.container_url()?;
        url.path_segments_mut()
            .map_err(|()| self.request_err("build URL", "account_url cannot hold a path".into()))?
            .extend(key.split('/'));
        Ok(url)
    }

    /// Read one manifest name; `None` when absent.
    /// Every manifest name under `prefix/manifests_prefix`, sorted, with its `Last-Modified`.
    async fn list_names(&self) -> Result<Vec<(String, GoTime)>> {
        let dir = go_path_join(&[&self.config.prefix, &self.config.manifests_prefix]);
        let prefix = if dir.is_empty() { None } else { Some(key_path(&dir)?) };
        let mut listing = self.store.list(prefix.as_ref());
        let mut names = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = match item {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(self.store_err(&format!("list {dir}"), e)),
            };
            let name = meta.location.as_ref();
            let rest = if dir.is_empty() {
                Some(name)
            } else {
                name.strip_prefix(dir.as_str()).and_then(|r| r.strip_prefix('/'))
            };
            if let Some(r) = rest.filter(|r| !r.is_empty()) {
                let t = meta.last_modified;
                names.push((
                    r.to_owned(),
                    GoTime::from_unix(t.timestamp(), t.timestamp_subsec_nanos()),
                ));
            }
        }
        names.sort();
        Ok(names)
    }

    async fn read_named_config(&self, name: &str) -> Result<Option<(String, Vec<u8>)>> {
        let key = self.config.manifest_key(name);
        let path = key_path(&key)?;
        let op = format!("read cache config {key}");
        let result = match self.store.get_opts(&path, GetOptions::default()).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_err(&op, e)),
        };
        if result.meta.size > MAX_CONFIG {
            return Err(Error::TooLarge {
                what: format!("cache config {key} in {}", self.config.location()),
                size: result.meta.size,
                limit: MAX_CONFIG,
            });
        }
        let bytes = result.bytes().await.map_err(|e| self.store_err(&op, e))?;
        Ok(Some((key, bytes.to_vec())))
    }
}

impl AzblobStore {
    /// The blobs under the blobs directory, reading at most `limit` listing entries; `true`
    /// when the listing was read to its end.
    async fn list_blobs_bounded(&self, limit: usize) -> Result<(Vec<BlobEntry>, bool)> {
        let dir = self.config.blob_dir();
        let prefix = if dir.is_empty() { None } else { Some(key_path(&dir)?) };
        let mut listing = self.store.list(prefix.as_ref());
        let mut out = Vec::new();
        let mut read = 0usize;
        // A listing answered (even an empty one) proves the container exists: the commit then
        // skips its container check (a no-change re-export is one listing and one config PUT).
        let mut container = true;
        while let Some(item) = listing.next().await {
            read += 1;
            if read > limit {
                if item.is_ok() {
                    let _ = self.container_ready.set(());
                }
                return Ok((out, false));
            }
            let meta = match item {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => {
                    container = false; // no container: no blobs
                    break;
                }
                Err(e) => return Err(self.store_err(&format!("list {dir}"), e)),
            };
            let name = meta.location.as_ref();
            let rest = if dir.is_empty() {
                name
            } else {
                match name.strip_prefix(dir.as_str()).and_then(|r| r.strip_prefix('/')) {
                    Some(r) => r,
                    None => continue,
                }
            };
            let Ok(digest) = Digest::parse(rest) else {
                continue;
            };
            let t = meta.last_modified;
            out.push(BlobEntry {
                digest,
                size: meta.size,
                modified: Some(GoTime::from_unix(t.timestamp(), t.timestamp_subsec_nanos())),
            });
        }
        if container {
            let _ = self.container_ready.set(());
        }
        Ok((out, true))
    }
}

#[async_trait]
impl CacheStore for AzblobStore {
    fn location(&self) -> String {
        self.config.location()
    }

    fn is_transient(&self, error: &Error) -> bool {
        error.is_transient_by(AzblobError::is_transient)
    }

    /// Every name, read in parallel and merged, as BuildKit's azblob importer does.
    async fn load(&self) -> Result<Option<LoadedCache>> {
        load_configs(self, &self.config.names, true).await
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = self.config.blob_key(digest);
        match self.store.head(&key_path(&key)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_err(&format!("check blob {key}"), e)),
        }
    }

    async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        let key = self.config.blob_key(&desc.digest);
        let op = format!("read blob {key}");
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&key_path(&key)?, options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::BlobNotFound {
                    digest: desc.digest.clone(),
                    location: self.location(),
                })
            }
            Err(e) => return Err(self.store_err(&op, e)),
        };
        let location = self.location();
        Ok(Box::pin(result.into_stream().map_err(move |e| {
            Error::from(AzblobError::Request {
                location: location.clone(),
                operation: op.clone(),
                reason: chain_text(&e),
                // object_store already resumed the download up to its retry limit.
                transient: false,
            })
        })))
    }

    async fn put_blob(&self, desc: &Descriptor, mut data: VerifiedStream) -> Result<()> {
        let _permit = self
            .uploads
            .acquire()
            .await
            .map_err(|e| self.request_err("upload", e.to_string()))?;
        self.ensure_container().await?;
        let key = self.config.blob_key(&desc.digest);
        let path = key_path(&key)?;
        if desc.size > BLOCK_SIZE as u64 {
            return self.put_blocks(&key, &path, desc, data).await;
        }
        // Small: read it all (verified: the stream ends with an error instead of None on a
        // mismatch), then one Put Blob.
        let _buffer = self.buffer(desc.size).await?;
        let mut chunks = Vec::new();
        while let Some(chunk) = data.next().await {
            chunks.push(chunk?);
        }
        self.put_small(&key, &path, desc, chunks.into_iter().collect()).await
    }

    async fn commit(&self, cache: &AbstractCache, _options: &ExportOptions) -> Result<Committed> {
        self.ensure_container().await?;
        // Every name, after every blob; last writer wins, as BuildKit's Upload.
        commit_configs(self, &self.config.names, cache).await
    }

    /// One listing of the blobs directory (5000 names a page) instead of a HEAD per blob, as
    /// long as it is not much larger than what is asked (the plan of
    /// [`bkcache_core::store::sizes_by_listing`]). A container not created yet answers 404 to
    /// List Blobs: then each blob is asked.
    async fn blob_sizes(&self, digests: &[Digest], parallelism: usize) -> Result<Vec<Option<u64>>> {
        let list = |budget| async move {
            let (listed, complete) = self.list_blobs_bounded(budget).await?;
            Ok((listed.into_iter().map(|e| (e.digest, e.size)).collect(), complete))
        };
        sizes_by_listing(digests, parallelism, list, |d| self.blob_size(d)).await
    }

    fn tag(&self) -> Option<String> {
        self.config.names.first().cloned()
    }

    fn tag_store(&self) -> Option<&dyn bkcache_core::TagStore> {
        Some(self)
    }

    fn blob_gc(&self) -> Option<&dyn bkcache_core::BlobGc> {
        Some(self)
    }
}

#[async_trait]
impl bkcache_core::TagStore for AzblobStore {
    /// Every manifest name under `prefix/manifests_prefix`.
    async fn tags(&self) -> Result<Vec<String>> {
        Ok(self.list_names().await?.into_iter().map(|(n, _)| n).collect())
    }

    /// Delete `prefix/manifests_prefix/<tag>` (its blobs are left to garbage collection).
    async fn remove_tag(&self, tag: &str) -> Result<()> {
        let key = self.config.manifest_key(tag);
        match self.store.delete(&key_path(&key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_err(&format!("delete cache config {key}"), e)),
        }
    }
}

#[async_trait]
impl bkcache_core::BlobGc for AzblobStore {
    /// Every name's config with the layer blobs it names and its `Last-Modified` (every
    /// export writes it).
    async fn tag_entries(&self) -> Result<Vec<bkcache_core::TagEntry>> {
        config_tag_entries(self).await
    }

    async fn list_blobs(&self) -> Result<Vec<BlobEntry>> {
        let mut out = self.list_blobs_bounded(usize::MAX).await?.0;
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let key = self.config.blob_key(digest);
        match self.store.delete(&key_path(&key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_err(&format!("delete blob {key}"), e)),
        }
    }
}

/// The cache configs under `prefix/manifests_prefix`: the object I/O of core's shared
/// annotated-config layer.
#[async_trait]
impl ConfigObjects for AzblobStore {
    fn config_location(&self, name: &str) -> String {
        format!("{} in {}", self.config.manifest_key(name), self.config.location())
    }

    fn part_name(&self, name: &str) -> String {
        self.config.manifest_key(name)
    }

    async fn read_config(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read_named_config(name).await?.map(|(_, bytes)| bytes))
    }

    async fn write_config(&self, name: &str, bytes: Bytes) -> Result<()> {
        let key = self.config.manifest_key(name);
        self.store
            .put_opts(
                &key_path(&key)?,
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Overwrite),
            )
            .await
            .map_err(|e| self.store_err(&format!("write cache config {key}"), e))?;
        Ok(())
    }

    async fn list_configs(&self) -> Result<Vec<(String, GoTime)>> {
        self.list_names().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scrub_removes_queries() {
        assert_eq!(
            scrub("error sending request for url (http://h/c/b?sv=1&sig=SECRET): refused"),
            "error sending request for url (http://h/c/b?<query redacted>): refused"
        );
        assert_eq!(scrub("no url here"), "no url here");
        assert_eq!(
            azure_code("x <Code>AuthenticationFailed</Code> y").as_deref(),
            Some("AuthenticationFailed")
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let key = "c2VjcmV0LWtleS1mb3ItdGhlLWRlYnVnLXRlc3Q=";
        let spec = &CacheSpec::parse(&format!(
            "type=azblob,account_url=http://127.0.0.1:9/devstoreaccount1,secret_access_key={key}"
        ))
        .unwrap()[0];
        let store = AzblobFactory.open(spec, Direction::Export, &Env::empty("/")).unwrap();
        let text = format!("{store:?} {}", store.location());
        assert!(!text.contains(key) && text.contains("127.0.0.1:9"), "{text}");
    }
}
