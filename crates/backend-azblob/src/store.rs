//! The `type=azblob` factory and store, on `object_store`'s Azure client, plus two requests it
//! cannot make (container creation and a conditional block-list commit), signed with its
//! `AzureAuthorizer`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bkcache_core::annotated::{decode_annotated, encode_annotated};
use bkcache_core::factory::{Applies, AttributeDoc};
use bkcache_core::store::{sizes_by_listing, BlobEntry, CachePart, Committed};
use bkcache_core::{
    AbstractCache, BackendFactory, BlobStream, CacheFormat, CacheSpec, CacheStore, Descriptor, Digest, Direction, Env,
    Error, ExportOptions, Family, GoTime, LoadedCache, MediaType, Result, VerifiedStream,
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

const ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "account_url",
        applies: Applies::Both,
        default: "$BUILDKIT_AZURE_STORAGE_ACCOUNT_URL, else from $AZURE_STORAGE_CONNECTION_STRING or $AZURE_STORAGE_ACCOUNT",
        meaning: "https://ACCOUNT.blob.core.windows.net (Azurite: http://127.0.0.1:10000/devstoreaccount1); a ?SAS query is used as sas_token",
        secret: false,
    },
    AttributeDoc {
        name: "account_name",
        applies: Applies::Both,
        default: "$BUILDKIT_AZURE_STORAGE_ACCOUNT_NAME, else the URL's first DNS label (path-style URLs: first path segment)",
        meaning: "storage account name (signs shared-key requests)",
        secret: false,
    },
    AttributeDoc {
        name: "container",
        applies: Applies::Both,
        default: "$BUILDKIT_AZURE_STORAGE_CONTAINER, else buildkit-cache",
        meaning: "blob container (created on export when missing)",
        secret: false,
    },
    AttributeDoc {
        name: "prefix",
        applies: Applies::Both,
        default: "$BUILDKIT_AZURE_STORAGE_PREFIX, else empty",
        meaning: "folder for the cache; names are path.Join(prefix, blobs_prefix|manifests_prefix, …)",
        secret: false,
    },
    AttributeDoc {
        name: "blobs_prefix",
        applies: Applies::Both,
        default: "blobs",
        meaning: "folder of the layer blobs under prefix (blob names end in sha256:<hex>)",
        secret: false,
    },
    AttributeDoc {
        name: "manifests_prefix",
        applies: Applies::Both,
        default: "manifests",
        meaning: "folder of the cache configs under prefix",
        secret: false,
    },
    AttributeDoc {
        name: "name",
        applies: Applies::Both,
        default: "buildkit",
        meaning: "manifest names separated by ';': export writes each, import reads and merges all",
        secret: false,
    },
    AttributeDoc {
        name: "secret_access_key",
        applies: Applies::Both,
        default: "$AZURE_STORAGE_KEY or the connection string's AccountKey",
        meaning: "storage account key (shared-key auth)",
        secret: true,
    },
    AttributeDoc {
        name: "sas_token",
        applies: Applies::Both,
        default: "$AZURE_STORAGE_SAS_TOKEN or the connection string's SharedAccessSignature",
        meaning: "shared access signature (sv=…&sig=…); without key or SAS: Entra ID (workload identity, service principal, managed identity)",
        secret: true,
    },
    AttributeDoc {
        name: "upload_parallelism",
        applies: Applies::Export,
        default: "4",
        meaning: "blobs uploaded at once (BuildKit: 1); each large blob also stages 4 blocks of 8 MiB at once",
        secret: false,
    },
];

/// Factory for `type=azblob`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AzblobFactory;

impl BackendFactory for AzblobFactory {
    fn type_name(&self) -> &'static str {
        crate::TYPE_NAME
    }

    fn summary(&self) -> &'static str {
        "Azure Blob Storage container (BuildKit's azblob cache: annotated config under prefix/manifests/NAME)"
    }

    fn family(&self) -> Family {
        Family::AnnotatedConfig
    }

    fn attributes(&self) -> &'static [AttributeDoc] {
        ATTRIBUTES
    }

    fn open(&self, spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Box<dyn CacheStore>> {
        let config = AzblobConfig::from_spec(spec, direction, env)?;
        Ok(Box::new(AzblobStore::open(config)?))
    }
}

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

    /// One request signed like object_store's own (shared key, SAS or bearer token), retried
    /// on connection errors, 408, 429 and 5xx. Returns the status and `x-ms-error-code`.
    async fn signed(
        &self,
        operation: &str,
        method: Method,
        url: Url,
        body: Bytes,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<(u16, String, Bytes)> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let credential = self
                .store
                .credentials()
                .get_credential()
                .await
                .map_err(|e| self.store_err(operation, e))?;
            let mut req = HttpRequest::new(HttpRequestBody::from(body.clone()));
            *req.method_mut() = method.clone();
            *req.uri_mut() = url
                .as_str()
                .parse()
                .map_err(|e| self.request_err(operation, format!("bad URL {url}: {e}")))?;
            req.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            for (k, v) in headers {
                req.headers_mut().insert(k.clone(), v.clone());
            }
            AzureAuthorizer::new(&credential, &self.config.account_name)
                .try_authorize(&mut req)
                .map_err(|e| self.request_err(operation, format!("cannot sign the request: {e}")))?;
            let retry_delay = Duration::from_millis(200 * 4u64.pow(attempt.min(4)));
            match self.http.execute(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let code = resp
                        .headers()
                        .get("x-ms-error-code")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let retryable = status == 408 || status == 429 || status >= 500;
                    if retryable && attempt < 4 {
                        tokio::time::sleep(retry_delay).await;
                        continue;
                    }
                    let body = resp.into_body().bytes().await.unwrap_or_default();
                    return Ok((status, code, body));
                }
                Err(e) if attempt < 4 => {
                    tracing::debug!(operation, attempt, "retrying after {:?}", e.kind());
                    tokio::time::sleep(retry_delay).await;
                }
                Err(e) => return Err(self.request_err(operation, chain_text(&e))),
            }
        }
    }

    /// Create the container if it is missing (as BuildKit: Get Container Properties, then
    /// Create Container on `ContainerNotFound`). Exports call it once per store before the
    /// first write; imports never create containers.
    pub async fn ensure_container(&self) -> Result<()> {
        self.container_ready
            .get_or_try_init(|| async {
                let op = format!("check container {}", self.config.container);
                let mut url = self.container_url()?;
                url.set_query(Some("restype=container"));
                let (status, code, _) = self.signed(&op, Method::GET, url.clone(), Bytes::new(), &[]).await?;
                match status {
                    200 => return Ok(()),
                    404 => {}
                    // A SAS scoped to the container may not read its properties: go on, the
                    // writes will tell.
                    403 if matches!(self.config.auth, Auth::Sas(_)) && code != "AuthenticationFailed" => return Ok(()),
                    401 | 403 => return Err(self.auth_err(&op, format!("{status} {code}"))),
                    _ => return Err(self.request_err(&op, format!("HTTP {status} {code}"))),
                }
                let op = format!("create container {}", self.config.container);
                let (status, code, _) = self.signed(&op, Method::PUT, url, Bytes::new(), &[]).await?;
                match status {
                    201 => {
                        tracing::info!(container = %self.config.container, "created the container");
                        Ok(())
                    }
                    409 => Ok(()), // created meanwhile by someone else
                    401 | 403 => Err(self.auth_err(&op, format!("{status} {code}"))),
                    _ => Err(self.request_err(&op, format!("HTTP {status} {code}"))),
                }
            })
            .await
            .map(|_| ())
    }

    /// Commit staged blocks as the blob, with `If-None-Match: *` unless `overwrite`.
    /// `Ok(false)` when the blob already existed (nothing was changed).
    async fn put_block_list(&self, key: &str, parts: &[PartId], overwrite: bool) -> Result<bool> {
        use base64::Engine;
        let op = format!("commit blocks of {key}");
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<BlockList>\n");
        for p in parts {
            // object_store sends base64(content_id) as the block id.
            let id = base64::engine::general_purpose::STANDARD.encode(&p.content_id);
            xml.push_str(&format!("\t<Uncommitted>{id}</Uncommitted>\n"));
        }
        xml.push_str("</BlockList>");
        let mut url = self.blob_url(key)?;
        url.set_query(Some("comp=blocklist"));
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/xml"))];
        if !overwrite {
            headers.push((IF_NONE_MATCH, HeaderValue::from_static("*")));
        }
        let (status, code, _) = self.signed(&op, Method::PUT, url, Bytes::from(xml), &headers).await?;
        match status {
            201 => Ok(true),
            409 | 412 if !overwrite => Ok(false),
            401 | 403 => Err(self.auth_err(&op, format!("{status} {code}"))),
            _ => Err(self.request_err(&op, format!("HTTP {status} {code}"))),
        }
    }

    /// The committed blocks of a blob, in order, as their sizes; `None` when the blob is
    /// absent. For diagnostics (and the tests): a blob larger than [`BLOCK_SIZE`] is committed
    /// as blocks of that size, a smaller one as a single `Put Blob` (no blocks).
    pub async fn committed_blocks(&self, digest: &Digest) -> Result<Option<Vec<u64>>> {
        // Staged but never committed blocks make a blob Get Block List answers for; it is not
        // visible (HEAD says 404), so it is absent here.
        if self.blob_size(digest).await?.is_none() {
            return Ok(None);
        }
        let key = self.config.blob_key(digest);
        let op = format!("get block list of {key}");
        let mut url = self.blob_url(&key)?;
        url.set_query(Some("comp=blocklist&blocklisttype=committed"));
        let (status, code, body) = self.signed(&op, Method::GET, url, Bytes::new(), &[]).await?;
        match status {
            200 => {}
            404 => return Ok(None),
            401 | 403 => return Err(self.auth_err(&op, format!("{status} {code}"))),
            _ => return Err(self.request_err(&op, format!("HTTP {status} {code}"))),
        }
        let text = String::from_utf8_lossy(&body);
        let mut sizes = Vec::new();
        for part in text.split("<Size>").skip(1) {
            let n = part
                .split("</Size>")
                .next()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| self.request_err(&op, "unreadable block list".into()))?;
            sizes.push(n);
        }
        Ok(Some(sizes))
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

    async fn read_config(&self, name: &str) -> Result<Option<(String, Vec<u8>)>> {
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

    /// `Put Blob` with `If-None-Match: *`; an existing blob of the right size is left alone,
    /// one of the wrong size (damaged) is replaced.
    async fn put_small(&self, key: &str, path: &ObjectPath, desc: &Descriptor, payload: PutPayload) -> Result<()> {
        let op = format!("upload blob {key}");
        match self
            .store
            .put_opts(path, payload.clone(), PutOptions::from(PutMode::Create))
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                if self.blob_size(&desc.digest).await? == Some(desc.size) {
                    return Ok(());
                }
                tracing::warn!(%key, "replacing a blob of the wrong size");
                self.store
                    .put_opts(path, payload, PutOptions::from(PutMode::Overwrite))
                    .await
                    .map(|_| ())
                    .map_err(|e| self.store_err(&op, e))
            }
            Err(e) => Err(self.store_err(&op, e)),
        }
    }

    /// Room for `bytes` of upload buffer within [`BUFFER_BUDGET`], held until dropped.
    async fn buffer(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.buffers)
            .acquire_many_owned(budget_of(bytes))
            .await
            .map_err(|e| self.request_err("upload", format!("buffer limiter: {e}")))
    }

    /// Stage the blob in blocks ([`BLOCK_CONCURRENCY`] at once), reading the verified stream
    /// as the blocks go; commit the block list only after the stream ended verified. On any
    /// error the staged blocks are left uncommitted (Azure drops them after a week) and the
    /// blob never appears.
    async fn put_blocks(
        &self,
        key: &str,
        path: &ObjectPath,
        desc: &Descriptor,
        mut data: VerifiedStream,
    ) -> Result<()> {
        let op = format!("upload blob {key}");
        let mut tasks: JoinSet<std::result::Result<(usize, PartId), object_store::Error>> = JoinSet::new();
        let mut parts: Vec<Option<PartId>> = Vec::new();
        let mut block: Vec<Bytes> = Vec::new();
        let mut block_len = 0usize;
        let mut finished = false;
        let mut room: Option<tokio::sync::OwnedSemaphorePermit> = None;
        while !finished {
            match data.next().await {
                Some(chunk) => {
                    let mut chunk = chunk?;
                    while !chunk.is_empty() {
                        let take = (BLOCK_SIZE - block_len).min(chunk.len());
                        if room.is_none() {
                            room = Some(self.buffer(BLOCK_SIZE as u64).await?);
                        }
                        block.push(chunk.split_to(take));
                        block_len += take;
                        if block_len == BLOCK_SIZE {
                            let block = std::mem::take(&mut block);
                            self.stage(&op, &mut tasks, &mut parts, path, block, room.take())
                                .await?;
                            block_len = 0;
                        }
                    }
                }
                None => finished = true,
            }
        }
        if block_len > 0 {
            self.stage(&op, &mut tasks, &mut parts, path, block, room.take())
                .await?;
        }
        while let Some(done) = tasks.join_next().await {
            self.record(&op, done, &mut parts)?;
        }
        let parts: Vec<PartId> = parts
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.request_err(&op, "a staged block went missing".into()))?;
        if self.put_block_list(key, &parts, false).await? {
            return Ok(());
        }
        // It existed already: keep it if it is whole, replace it if damaged.
        if self.blob_size(&desc.digest).await? == Some(desc.size) {
            return Ok(());
        }
        tracing::warn!(%key, "replacing a blob of the wrong size");
        self.put_block_list(key, &parts, true).await.map(|_| ())
    }

    async fn stage(
        &self,
        op: &str,
        tasks: &mut JoinSet<std::result::Result<(usize, PartId), object_store::Error>>,
        parts: &mut Vec<Option<PartId>>,
        path: &ObjectPath,
        block: Vec<Bytes>,
        room: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<()> {
        while tasks.len() >= BLOCK_CONCURRENCY {
            if let Some(done) = tasks.join_next().await {
                self.record(op, done, parts)?;
            }
        }
        let idx = parts.len();
        parts.push(None);
        let store = Arc::clone(&self.store);
        let path = path.clone();
        let payload: PutPayload = block.into_iter().collect();
        tasks.spawn(async move {
            let id = String::new();
            let r = store.put_part(&path, &id, idx, payload).await.map(|p| (idx, p));
            drop(room);
            r
        });
        Ok(())
    }

    fn record(
        &self,
        op: &str,
        done: std::result::Result<std::result::Result<(usize, PartId), object_store::Error>, tokio::task::JoinError>,
        parts: &mut [Option<PartId>],
    ) -> Result<()> {
        let (idx, part) = done
            .map_err(|e| self.request_err(op, format!("block upload task: {e}")))?
            .map_err(|e| self.store_err(op, e))?;
        if let Some(slot) = parts.get_mut(idx) {
            *slot = Some(part);
        }
        Ok(())
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
        while let Some(item) = listing.next().await {
            read += 1;
            if read > limit {
                return Ok((out, false));
            }
            let meta = match item {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => break, // no container: no blobs
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

    async fn load(&self) -> Result<Option<LoadedCache>> {
        let read = futures::future::try_join_all(self.config.names.iter().map(|n| self.read_config(n))).await?;
        let (mut caches, mut warnings, mut first, mut parts) = (Vec::new(), Vec::new(), None, Vec::new());
        let mut missing = Vec::new();
        for (name, found) in self.config.names.iter().zip(read) {
            let Some((key, bytes)) = found else {
                missing.push(name);
                continue;
            };
            let what = format!("cache config {key} in {}", self.config.location());
            let (cache, w) = decode_annotated(&bytes, &what)?;
            first.get_or_insert_with(|| Descriptor::of_bytes(MediaType::BuildkitCacheConfig, &bytes));
            parts.push(CachePart::of(key.clone(), name.clone(), &bytes, &cache));
            caches.push(cache);
            warnings.extend(w);
        }
        let Some(manifest) = first else {
            return Ok(None);
        };
        for name in missing {
            warnings.push(format!(
                "name {name:?} has no cache config ({}); the other names were imported",
                self.config.manifest_key(name)
            ));
        }
        Ok(Some(LoadedCache {
            cache: AbstractCache::merge(caches),
            format: CacheFormat::AnnotatedConfig,
            config: Some(manifest.clone()),
            manifest,
            warnings,
            parts,
        }))
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
        let bytes = encode_annotated(cache)?;
        let desc = Descriptor::of_bytes(MediaType::BuildkitCacheConfig, &bytes);
        self.ensure_container().await?;
        let payload = PutPayload::from(Bytes::from(bytes));
        // Every name, after every blob; last writer wins, as BuildKit's Upload.
        for name in &self.config.names {
            let key = self.config.manifest_key(name);
            self.store
                .put_opts(&key_path(&key)?, payload.clone(), PutOptions::from(PutMode::Overwrite))
                .await
                .map_err(|e| self.store_err(&format!("write cache config {key}"), e))?;
        }
        Ok(Committed {
            manifest: Some(desc),
            skipped: false,
            warnings: Vec::new(),
        })
    }

    async fn list_blobs(&self) -> Result<Vec<BlobEntry>> {
        let mut out = self.list_blobs_bounded(usize::MAX).await?.0;
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
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

    /// Every cache config under `prefix/manifests_prefix` with the layer blobs it names and
    /// its `Last-Modified` (every export writes it).
    async fn tag_entries(&self) -> Result<Vec<bkcache_core::TagEntry>> {
        let mut out = Vec::new();
        for (name, written) in self.list_names().await? {
            let Some((key, bytes)) = self.read_config(&name).await? else {
                continue;
            };
            let what = format!("cache config {key} in {}", self.config.location());
            let config = bkcache_core::CacheConfig::from_slice(&bytes, &what)?;
            out.push(bkcache_core::TagEntry {
                tag: Some(name),
                blobs: config.layers.into_iter().map(|l| l.blob).collect(),
                written: Some(written),
                signed: false,
            });
        }
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
