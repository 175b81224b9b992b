//! The `type=registry` factory and store.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bkcache_core::factory::{required_attr, Applies, AttributeDoc};
use bkcache_core::inline::load_image_caches;
use bkcache_core::manifest::{encode_manifest, ImageManifest, TopLevel};
use bkcache_core::spec::parse_go_bool;
use bkcache_core::store::{put_small_blob, read_small_blob, Committed, ServerSide};
use bkcache_core::{
    AbstractCache, BackendFactory, BlobStream, CacheFormat, CacheSpec, CacheStore, Descriptor, Digest, Direction, Env,
    Error, ExportOptions, Family, LoadedCache, MediaType, Result, VerifiedStream,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use crate::auth::docker_credentials;
use crate::client::{body_start, error_text, RegistryClient, MANIFEST_ACCEPT};
use crate::error::RegistryError;
use crate::reference::Reference;

/// Largest manifest we read (BuildKit reads 1 MiB; moby/buildkit#7126 proposes 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Largest cache or image config we read (real `mode=max` configs pass 1 MiB).
pub const MAX_CONFIG: u64 = 64 << 20;
/// Blobs larger than this are uploaded in chunks (PATCH) of this size; smaller ones in one PUT.
pub const CHUNK_SIZE: u64 = 32 << 20;

pub(crate) const ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "ref",
        applies: Applies::Both,
        default: "required",
        meaning:
            "image reference of the cache, e.g. registry.example.com/team/app:buildcache (docker.io normalisation)",
        secret: false,
    },
    AttributeDoc {
        name: "registry.insecure",
        applies: Applies::Both,
        default: "false",
        meaning: "use plain HTTP and skip TLS verification for this registry",
        secret: false,
    },
];

/// Factory for `type=registry` (also the meaning of a bare `user/app:cache` SPEC).
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryFactory;

/// Open a client for `spec` (shared by the registry and inline factories).
pub(crate) fn open_client(spec: &CacheSpec, direction: Direction, env: &Env, hint: &str) -> Result<RegistryClient> {
    let raw = required_attr(spec, "ref", direction, hint)?;
    let reference = Reference::parse(raw).map_err(|e| match e {
        RegistryError::InvalidReference { reason, .. } => Error::InvalidValue {
            attribute: "ref".into(),
            value: raw.chars().take(200).collect(),
            allowed: format!("{reason}; expected an image reference like registry.example.com/team/app:tag"),
        },
        other => other.into(),
    })?;
    let insecure = match spec.get("registry.insecure") {
        Some(v) => parse_go_bool("registry.insecure", v)?,
        None => false,
    };
    let credentials = docker_credentials(env, &reference.registry)?;
    Ok(RegistryClient::new(
        reference,
        insecure,
        credentials,
        direction == Direction::Export,
        env,
    )?)
}

impl BackendFactory for RegistryFactory {
    fn type_name(&self) -> &'static str {
        "registry"
    }

    fn summary(&self) -> &'static str {
        "OCI distribution registry (BuildKit's registry cache exporter/importer)"
    }

    fn family(&self) -> Family {
        Family::Manifest
    }

    fn attributes(&self) -> &'static [AttributeDoc] {
        ATTRIBUTES
    }

    fn open(&self, spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Box<dyn CacheStore>> {
        let hint = match direction {
            Direction::Import => "registry cache importer requires ref=<image reference>",
            Direction::Export => "registry cache exporter requires ref=<image reference>",
        };
        Ok(Box::new(RegistryStore {
            client: open_client(spec, direction, env, hint)?,
        }))
    }
}

/// A cache stored in a registry repository under a tag.
#[derive(Debug)]
pub struct RegistryStore {
    pub(crate) client: RegistryClient,
}

fn header(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
    h
}

fn with_query(url: &str, pair: &str) -> String {
    if url.contains('?') {
        format!("{url}&{pair}")
    } else {
        format!("{url}?{pair}")
    }
}

impl RegistryStore {
    /// A store for an already-configured client.
    pub fn new(client: RegistryClient) -> Self {
        RegistryStore { client }
    }

    fn status_error(method: &str, url: &str, status: StatusCode, body: String) -> Error {
        RegistryError::Status {
            method: method.into(),
            url: url.into(),
            status: status.as_u16(),
            body,
        }
        .into()
    }

    /// GET a manifest by tag or digest, bounded by [`MAX_MANIFEST`] and verified against its
    /// digest. `Ok(None)` on 404.
    pub(crate) async fn get_manifest(&self, reference: &str) -> Result<Option<(Descriptor, Vec<u8>)>> {
        let url = self.client.url(&format!("manifests/{reference}")).await?;
        let resp = self
            .client
            .send(Method::GET, &url, header("accept", MANIFEST_ACCEPT), None)
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Self::status_error("GET", &url, status, body_start(resp).await));
        }
        if let Some(len) = resp.content_length().filter(|l| *l > MAX_MANIFEST) {
            return Err(Error::TooLarge {
                what: format!("manifest {url}"),
                size: len,
                limit: MAX_MANIFEST,
            });
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Connect {
                url: url.clone(),
                reason: error_text(&e),
            })?;
            body.extend_from_slice(&chunk);
            if body.len() as u64 > MAX_MANIFEST {
                return Err(Error::TooLarge {
                    what: format!("manifest {url}"),
                    size: body.len() as u64,
                    limit: MAX_MANIFEST,
                });
            }
        }
        let digest = Digest::of_bytes(&body);
        let expected = Digest::parse(reference).ok().or(header_digest);
        if let Some(want) = expected.filter(|w| *w != digest) {
            return Err(Error::DigestMismatch {
                digest: want,
                expected_size: body.len() as u64,
                actual: digest.to_string(),
                actual_size: body.len() as u64,
            });
        }
        let media_type = content_type.map(|c| MediaType::parse(&c)).unwrap_or_default();
        Ok(Some((Descriptor::new(media_type, digest, body.len() as u64), body)))
    }

    /// The digest `reference` points at now (one manifest HEAD), or `None` when it is absent.
    async fn current_digest(&self, reference: &str) -> Result<Option<String>> {
        let url = self.client.url(&format!("manifests/{reference}")).await?;
        let head = self
            .client
            .send(Method::HEAD, &url, header("accept", MANIFEST_ACCEPT), None)
            .await?;
        let digest = head
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(digest.filter(|_| head.status().is_success()))
    }

    /// PUT a manifest under `reference` (skipped when the tag already points at it).
    pub(crate) async fn put_manifest(&self, reference: &str, desc: &Descriptor, bytes: Vec<u8>) -> Result<()> {
        if self.current_digest(reference).await?.as_deref() == Some(desc.digest.as_str()) {
            return Ok(());
        }
        let url = self.client.url(&format!("manifests/{reference}")).await?;
        let resp = self
            .client
            .send(
                Method::PUT,
                &url,
                header("content-type", desc.media_type.as_str()),
                Some(Bytes::from(bytes)),
            )
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(Self::status_error("PUT", &url, status, body_start(resp).await));
        }
        Ok(())
    }

    async fn start_upload(&self, query: Option<String>) -> Result<(StatusCode, String)> {
        let mut url = self.client.url("blobs/uploads/").await?;
        if let Some(q) = query {
            url = with_query(&url, &q);
        }
        let resp = self.client.send(Method::POST, &url, HeaderMap::new(), None).await?;
        let status = resp.status();
        if status != StatusCode::ACCEPTED && status != StatusCode::CREATED {
            return Err(Self::status_error("POST", &url, status, body_start(resp).await));
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                url: url.clone(),
                reason: "upload response without Location".into(),
            })?
            .to_owned();
        Ok((status, self.client.absolute(&location).await?))
    }

    async fn cancel_upload(&self, location: &str) {
        let _ = self.client.send(Method::DELETE, location, HeaderMap::new(), None).await;
    }

    async fn upload(&self, desc: &Descriptor, data: VerifiedStream) -> Result<()> {
        let (_, location) = self.start_upload(None).await?;
        let result = if desc.size > CHUNK_SIZE {
            self.upload_chunked(desc, data, location.clone()).await
        } else {
            self.upload_monolithic(desc, data, &location).await
        };
        if result.is_err() {
            self.cancel_upload(&location).await;
        }
        result
    }

    async fn upload_monolithic(&self, desc: &Descriptor, data: VerifiedStream, location: &str) -> Result<()> {
        let url = with_query(location, &format!("digest={}", desc.digest));
        let failure = Arc::new(Mutex::new(None));
        let body = reqwest::Body::wrap_stream(capture_errors(data, failure.clone()));
        let mut headers = header("content-type", "application/octet-stream");
        headers.insert(CONTENT_LENGTH, HeaderValue::from(desc.size));
        let sent = self.client.send_stream(Method::PUT, &url, headers, body).await;
        if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        let resp = sent?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            let status = resp.status();
            return Err(Self::status_error("PUT", &url, status, body_start(resp).await));
        }
        Ok(())
    }

    async fn upload_chunked(&self, desc: &Descriptor, data: VerifiedStream, mut location: String) -> Result<()> {
        let source = Arc::new(tokio::sync::Mutex::new(Chunker {
            stream: data,
            pending: None,
        }));
        let mut start = 0u64;
        while start < desc.size {
            let len = CHUNK_SIZE.min(desc.size - start);
            let failure = Arc::new(Mutex::new(None));
            let body = reqwest::Body::wrap_stream(capture_errors(take(source.clone(), len), failure.clone()));
            let mut headers = header("content-type", "application/octet-stream");
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            if let Ok(v) = HeaderValue::from_str(&format!("{}-{}", start, start + len - 1)) {
                headers.insert("content-range", v);
            }
            let sent = self.client.send_stream(Method::PATCH, &location, headers, body).await;
            if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
                return Err(e);
            }
            let resp = sent?;
            if resp.status() != StatusCode::ACCEPTED {
                let status = resp.status();
                return Err(Self::status_error("PATCH", &location, status, body_start(resp).await));
            }
            if let Some(l) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                location = self.client.absolute(l).await?;
            }
            start += len;
        }
        // The verifying stream reports a digest mismatch after its last byte: drain it first.
        {
            let mut chunker = source.lock().await;
            if let Some(item) = chunker.stream.next().await {
                item?;
                return Err(Error::DigestMismatch {
                    digest: desc.digest.clone(),
                    expected_size: desc.size,
                    actual: "(stopped early: longer than expected)".into(),
                    actual_size: desc.size + 1,
                });
            }
        }
        let url = with_query(&location, &format!("digest={}", desc.digest));
        let resp = self.client.send(Method::PUT, &url, HeaderMap::new(), None).await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(Self::status_error("PUT", &url, status, body_start(resp).await));
        }
        Ok(())
    }

    /// Import the inline cache of a plain image (or of every image in an index), as BuildKit's
    /// registry importer does when the ref holds no cache manifest.
    async fn load_inline(&self, top: TopLevel, desc: Descriptor) -> Result<Option<LoadedCache>> {
        let mut manifests: Vec<ImageManifest> = Vec::new();
        match top {
            TopLevel::Manifest(m) => manifests.push(*m),
            TopLevel::Index(index) => {
                for child in index.manifests.iter().filter(|d| d.media_type.is_manifest()) {
                    let Some((_, bytes)) = self.get_manifest(child.digest.as_str()).await? else {
                        continue;
                    };
                    if let TopLevel::Manifest(m) = TopLevel::detect(&bytes, &format!("manifest {}", child.digest))? {
                        manifests.push(*m);
                    }
                }
            }
        }
        let Some((cache, warnings, config)) = load_image_caches(self, &manifests, MAX_CONFIG).await? else {
            return Err(Error::InvalidManifest {
                what: self.location(),
                reason:
                    "is an image without a BuildKit cache (no cache config, no moby.buildkit.cache.v0 in its config)"
                        .into(),
            });
        };
        Ok(Some(LoadedCache {
            cache,
            format: CacheFormat::Inline,
            manifest: desc,
            config: Some(config),
            warnings,
            parts: Vec::new(),
        }))
    }

    pub(crate) async fn read_config(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let what = format!("config {} in {}", desc.digest, self.location());
        read_small_blob(self, desc, MAX_CONFIG, &what).await
    }
}

struct Chunker {
    stream: VerifiedStream,
    pending: Option<Bytes>,
}

/// A stream of the next `len` bytes of a shared chunker.
fn take(source: Arc<tokio::sync::Mutex<Chunker>>, len: u64) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    futures::stream::unfold((source, len), |(source, left)| async move {
        if left == 0 {
            return None;
        }
        let mut c = source.lock().await;
        let chunk = match c.pending.take() {
            Some(p) => p,
            None => match c.stream.next().await {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Some((Err(e), (source.clone(), 0))),
                None => {
                    return Some((
                        Err(Error::io(
                            "upload",
                            "read blob",
                            std::io::ErrorKind::UnexpectedEof.into(),
                        )),
                        (source.clone(), 0),
                    ))
                }
            },
        };
        let out = if chunk.len() as u64 > left {
            let mut chunk = chunk;
            let rest = chunk.split_off(left as usize);
            c.pending = Some(rest);
            chunk
        } else {
            chunk
        };
        let n = out.len() as u64;
        drop(c);
        Some((Ok(out), (source, left - n)))
    })
}

/// Pass chunks to reqwest; keep our own error (e.g. a digest mismatch) for the caller, since
/// reqwest only reports that the body failed.
fn capture_errors(
    stream: impl Stream<Item = Result<Bytes>> + Send + 'static,
    slot: Arc<Mutex<Option<Error>>>,
) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static {
    stream.map(move |item| {
        item.map_err(|e| {
            let msg = e.to_string();
            if let Ok(mut s) = slot.lock() {
                *s = Some(e);
            }
            std::io::Error::other(msg)
        })
    })
}

#[async_trait]
impl CacheStore for RegistryStore {
    fn location(&self) -> String {
        format!("registry:{}", self.client.reference())
    }

    fn is_transient(&self, error: &Error) -> bool {
        error.is_transient_by(RegistryError::is_transient)
    }

    async fn load(&self) -> Result<Option<LoadedCache>> {
        let reference = self.client.reference().manifest_reference();
        let Some((mut desc, bytes)) = self.get_manifest(&reference).await? else {
            return Ok(None);
        };
        let what = format!("manifest {}", self.location());
        let top = TopLevel::detect(&bytes, &what)?;
        drop(bytes);
        let cm = match top.into_cache_manifest() {
            Ok(cm) => cm,
            Err(top) => return self.load_inline(top, desc).await,
        };
        if desc.media_type.as_str().is_empty() || !(desc.media_type.is_manifest() || desc.media_type.is_index()) {
            desc.media_type = cm.wrapper.media_type();
        }
        let config = self.read_config(&cm.config).await?;
        LoadedCache::from_manifest(cm, desc, config).map(Some)
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let url = self.client.url(&format!("blobs/{digest}")).await?;
        let resp = self.client.send(Method::HEAD, &url, HeaderMap::new(), None).await?;
        match resp.status() {
            s if s.is_success() => Ok(resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(Self::status_error("HEAD", &url, s, String::new())),
        }
    }

    async fn open_blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobStream> {
        let url = self.client.url(&format!("blobs/{}", desc.digest)).await?;
        let headers = if offset > 0 {
            header("range", &format!("bytes={offset}-"))
        } else {
            HeaderMap::new()
        };
        let resp = self.client.send(Method::GET, &url, headers, None).await?;
        match resp.status() {
            StatusCode::OK if offset == 0 => {}
            StatusCode::PARTIAL_CONTENT if offset > 0 => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::BlobNotFound {
                    digest: desc.digest.clone(),
                    location: self.location(),
                })
            }
            s => return Err(Self::status_error("GET", &url, s, body_start(resp).await)),
        }
        let u = url.clone();
        Ok(Box::pin(resp.bytes_stream().map_err(move |e| {
            Error::from(RegistryError::Connect {
                url: u.clone(),
                reason: error_text(&e),
            })
        })))
    }

    async fn put_blob(&self, desc: &Descriptor, data: VerifiedStream) -> Result<()> {
        self.upload(desc, data).await
    }

    async fn commit(&self, cache: &AbstractCache, options: &ExportOptions) -> Result<Committed> {
        if cache.has_no_layers() {
            return Ok(Committed {
                manifest: None,
                skipped: true,
                warnings: vec![
                    "skipping cache export for empty result (as BuildKit does: the tag is not created)".into(),
                ],
            });
        }
        let encoded = encode_manifest(cache, options.wrapper(), options.oci_mediatypes)?;
        if self.blob_size(&encoded.config.digest).await? != Some(encoded.config.size) {
            put_small_blob(self, &encoded.config, &encoded.config_bytes).await?;
        }
        let reference = self.client.reference().manifest_reference();
        self.put_manifest(&reference, &encoded.manifest, encoded.manifest_bytes.clone())
            .await?;
        Ok(Committed {
            manifest: Some(encoded.manifest),
            skipped: false,
            warnings: encoded.warnings,
        })
    }

    async fn unchanged(&self, cache: &AbstractCache, options: &ExportOptions) -> Result<Option<Descriptor>> {
        let encoded = encode_manifest(cache, options.wrapper(), options.oci_mediatypes)?;
        let reference = self.client.reference().manifest_reference();
        let same = self.current_digest(&reference).await?.as_deref() == Some(encoded.manifest.digest.as_str());
        Ok(same.then_some(encoded.manifest))
    }

    fn tag(&self) -> Option<String> {
        let r = self.client.reference();
        r.digest.is_none().then(|| r.tag.clone()).flatten()
    }

    fn server_side(&self) -> Option<ServerSide> {
        let r = self.client.reference();
        Some(ServerSide {
            service: format!("registry:{}", r.api_host()),
            namespace: r.repository.clone(),
        })
    }

    async fn copy_from(&self, desc: &Descriptor, source: &ServerSide) -> Result<bool> {
        let same_service = self
            .server_side()
            .is_some_and(|m| m.service == source.service && m.namespace != source.namespace);
        if !same_service {
            return Ok(false);
        }
        let (status, location) = self
            .start_upload(Some(format!("mount={}&from={}", desc.digest, source.namespace)))
            .await?;
        if status == StatusCode::CREATED {
            return Ok(true);
        }
        // 202: the registry could not mount and opened a normal upload; cancel it.
        self.cancel_upload(&location).await;
        Ok(false)
    }

    fn tag_store(&self) -> Option<&dyn bkcache_core::TagStore> {
        Some(self)
    }
}

#[async_trait]
impl bkcache_core::TagStore for RegistryStore {
    async fn tags(&self) -> Result<Vec<String>> {
        let url = self.client.url("tags/list?n=10000").await?;
        let resp = self.client.send(Method::GET, &url, HeaderMap::new(), None).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(Self::status_error("GET", &url, status, body_start(resp).await));
        }
        let v: serde_json::Value = crate::client::JsonValue::json_value(resp, &url).await?;
        Ok(v["tags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    /// Untag a cache: delete its manifest by digest. Refuses plain images, and manifests another
    /// tag also points at (deleting by digest would remove that tag too).
    async fn remove_tag(&self, tag: &str) -> Result<()> {
        let Some((desc, bytes)) = self.get_manifest(tag).await? else {
            return Ok(());
        };
        let top = TopLevel::detect(&bytes, &format!("manifest {tag}"))?;
        if top.cache_manifest().is_none() {
            return Err(RegistryError::Protocol {
                url: self.location(),
                reason: format!("tag {tag:?} is an image, not a cache; not removed"),
            }
            .into());
        }
        for other in self.tags().await? {
            if other == tag {
                continue;
            }
            let url = self.client.url(&format!("manifests/{other}")).await?;
            let head = self
                .client
                .send(Method::HEAD, &url, header("accept", MANIFEST_ACCEPT), None)
                .await?;
            if head
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                == Some(desc.digest.as_str())
            {
                return Err(RegistryError::Protocol {
                    url: self.location(),
                    reason: format!(
                        "tag {tag:?} shares manifest {} with tag {other:?}; not removed",
                        desc.digest
                    ),
                }
                .into());
            }
        }
        let url = self.client.url(&format!("manifests/{}", desc.digest)).await?;
        let resp = self.client.send(Method::DELETE, &url, HeaderMap::new(), None).await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(Self::status_error("DELETE", &url, s, body_start(resp).await)),
        }
    }
}
