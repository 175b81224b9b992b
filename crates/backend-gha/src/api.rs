//! The cache service protocols: v2 (Twirp JSON, uploads to the signed Azure blob URL with
//! Put Blob / Put Block / Put Block List) and v1 (REST: query, reserve, chunked `PATCH` with
//! `Content-Range`, commit), plus ranged downloads from the signed URLs.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::client::{error_text, redact_url, Http};
use crate::config::{ApiVersion, GhaConfig, VERSION_HASH};
use crate::error::GhaError;

mod download;

/// v2 uploads go in Azure blocks of this size (blobs up to it are one Put Blob).
pub const BLOCK_SIZE: usize = 4 << 20;
/// v1 uploads go in `PATCH` chunks of this size.
pub const CHUNK_SIZE: usize = 4 << 20;
/// Blocks or chunks of one blob in flight at once.
pub const PARALLEL_PARTS: usize = 4;
/// Downloads are split into ranged GETs of this size…
pub const RANGE_SIZE: u64 = 4 << 20;
/// …of which this many run at once (one stream per blob is the official clients' bottleneck).
pub const PARALLEL_RANGES: usize = 4;
/// The `x-ms-version` sent to the blob store.
const AZURE_VERSION: &str = "2021-08-06";
const TWIRP_PREFIX: &str = "twirp/github.actions.results.api.v1.CacheService/";
const V1_ACCEPT: &str = "application/json;api-version=6.0-preview.1";

/// A cache hit: the full key that matched and where to download it.
#[derive(Clone)]
pub(crate) struct Found {
    pub(crate) key: String,
    pub(crate) url: String,
}

/// A reserved entry, ready for upload.
pub(crate) enum Reservation {
    V1 { id: u64 },
    V2 { upload_url: String },
}

/// What a ranged GET gave.
pub(crate) enum Ranged {
    Data(Bytes),
    /// 401/403 from the signed URL: expired or refused; ask for a fresh URL.
    Refused(u16),
    NotFound,
}

pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = bkcache_core::Result<Bytes>> + Send>>;

/// One cache service, as configured.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) config: GhaConfig,
    pub(crate) http: Http,
}

fn json_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A JSON field by name, case-insensitively (Go's decoder matches `cacheID` and `cacheId`).
fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .unwrap_or(&Value::Null)
}

impl Service {
    fn bearer(&self) -> String {
        format!("Bearer {}", self.config.token.expose())
    }

    fn twirp_url(&self, method: &str) -> String {
        format!("{}{TWIRP_PREFIX}{method}", self.config.url)
    }

    /// A v1 request with the runtime token and the API version's `accept`.
    fn v1_request(&self, method: reqwest::Method, url: &str, auth: &str) -> reqwest::RequestBuilder {
        self.http
            .client
            .request(method, url)
            .header(AUTHORIZATION, auth)
            .header("accept", V1_ACCEPT)
    }

    /// A v1 JSON POST (reserve, commit) with the runtime token, retried by the client.
    async fn v1_post_json(&self, operation: &str, url: &str, payload: String) -> Result<reqwest::Response, GhaError> {
        let auth = self.bearer();
        self.http
            .send(operation, url, || {
                self.v1_request(reqwest::Method::POST, url, &auth)
                    .header(CONTENT_TYPE, "application/json")
                    .body(payload.clone())
            })
            .await
    }

    fn v1_url(&self, path: &str) -> String {
        format!("{}_apis/artifactcache/{path}", self.config.url)
    }

    /// A Twirp JSON call: status and parsed body.
    async fn twirp(&self, method: &str, operation: &str, body: &Value) -> Result<(StatusCode, Value), GhaError> {
        let url = self.twirp_url(method);
        let payload = body.to_string();
        let auth = self.bearer();
        let resp = self
            .http
            .send(operation, &url, || {
                self.http
                    .client
                    .post(&url)
                    .header(AUTHORIZATION, &auth)
                    .header(CONTENT_TYPE, "application/json")
                    .body(payload.clone())
            })
            .await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| GhaError::Connect {
            operation: operation.into(),
            url: redact_url(&url),
            reason: self.http.scrub(&error_text(e)),
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Ok((status, v)),
            Err(_) if !status.is_success() => Err(GhaError::Status {
                operation: operation.into(),
                url: redact_url(&url),
                status: status.as_u16(),
                body: format!(": {}", self.http.scrub(&String::from_utf8_lossy(&bytes))),
            }),
            Err(e) => Err(GhaError::Protocol {
                operation: operation.into(),
                reason: format!("{} answered something that is not JSON: {e}", redact_url(&url)),
            }),
        }
    }

    fn twirp_error(&self, operation: &str, method: &str, status: StatusCode, v: &Value) -> GhaError {
        let msg = v["msg"].as_str().or_else(|| v["message"].as_str()).unwrap_or("");
        GhaError::Status {
            operation: operation.into(),
            url: redact_url(&self.twirp_url(method)),
            status: status.as_u16(),
            body: format!(
                ": {} {}",
                v["code"].as_str().unwrap_or("(no twirp code)"),
                self.http.scrub(msg)
            ),
        }
    }

    /// Look keys up: the first is matched exactly, then every key as a prefix, newest first
    /// (the service's rule). `None` on a miss.
    pub(crate) async fn lookup(&self, keys: &[String]) -> Result<Option<Found>, GhaError> {
        let Some(first) = keys.first() else {
            return Ok(None);
        };
        let operation = format!("looking up {first}");
        match self.config.api {
            ApiVersion::V2 => {
                let method = "GetCacheEntryDownloadURL";
                let body = json!({"key": first, "restore_keys": keys, "version": VERSION_HASH});
                let (status, v) = self.twirp(method, &operation, &body).await?;
                if !status.is_success() {
                    return Err(self.twirp_error(&operation, method, status, &v));
                }
                if v["ok"] != Value::Bool(true) {
                    return Ok(None);
                }
                let (Some(key), Some(url)) = (v["matched_key"].as_str(), v["signed_download_url"].as_str()) else {
                    return Err(GhaError::Protocol {
                        operation,
                        reason: "a hit without matched_key or signed_download_url".into(),
                    });
                };
                Ok(Some(Found {
                    key: key.to_owned(),
                    url: url.to_owned(),
                }))
            }
            ApiVersion::V1 => {
                let mut url = reqwest::Url::parse(&self.v1_url("cache")).map_err(|e| GhaError::Protocol {
                    operation: operation.clone(),
                    reason: format!("bad cache URL: {e}"),
                })?;
                // Go's url.Values.Encode: keys sorted, `#` as %23, `:` as %3A, `,` as %2C.
                url.query_pairs_mut()
                    .append_pair("keys", &keys.join(","))
                    .append_pair("version", VERSION_HASH);
                let url = url.to_string();
                let auth = self.bearer();
                let resp = self
                    .http
                    .send(&operation, &url, || self.v1_request(reqwest::Method::GET, &url, &auth))
                    .await?;
                let status = resp.status();
                if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !status.is_success() {
                    return Err(GhaError::Status {
                        operation,
                        url: redact_url(&url),
                        status: status.as_u16(),
                        body: self.http.body_text(resp).await,
                    });
                }
                let bytes = resp.bytes().await.map_err(|e| GhaError::Connect {
                    operation: operation.clone(),
                    url: redact_url(&url),
                    reason: self.http.scrub(&error_text(e)),
                })?;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                let v: Value = serde_json::from_slice(&bytes).map_err(|e| GhaError::Protocol {
                    operation: operation.clone(),
                    reason: format!("the query answer is not JSON: {e}"),
                })?;
                let key = field(&v, "cacheKey").as_str().unwrap_or("");
                if key.is_empty() {
                    return Ok(None);
                }
                let location = field(&v, "archiveLocation")
                    .as_str()
                    .ok_or_else(|| GhaError::Protocol {
                        operation: operation.clone(),
                        reason: "a hit without archiveLocation".into(),
                    })?;
                Ok(Some(Found {
                    key: key.to_owned(),
                    url: location.to_owned(),
                }))
            }
        }
    }

    /// Reserve a key. `None` when it already exists (a finished or an in-progress entry).
    pub(crate) async fn reserve(&self, key: &str) -> Result<Option<Reservation>, GhaError> {
        let operation = format!("reserving {key}");
        match self.config.api {
            ApiVersion::V2 => {
                let method = "CreateCacheEntry";
                let (status, v) = self
                    .twirp(method, &operation, &json!({"key": key, "version": VERSION_HASH}))
                    .await?;
                if status == StatusCode::CONFLICT || v["code"] == "already_exists" {
                    return Ok(None);
                }
                if !status.is_success() {
                    return Err(self.twirp_error(&operation, method, status, &v));
                }
                if v["ok"] != Value::Bool(true) {
                    let message = v["message"].as_str().unwrap_or("");
                    if message.to_ascii_lowercase().contains("already exists") {
                        return Ok(None);
                    }
                    return Err(GhaError::Refused {
                        operation,
                        reason: if message.is_empty() {
                            "failed to reserve cache (ok: false)".into()
                        } else {
                            self.http.scrub(message)
                        },
                    });
                }
                let url = v["signed_upload_url"]
                    .as_str()
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| GhaError::Protocol {
                        operation,
                        reason: "CreateCacheEntry answered ok without signed_upload_url".into(),
                    })?;
                Ok(Some(Reservation::V2 {
                    upload_url: url.to_owned(),
                }))
            }
            ApiVersion::V1 => {
                let url = self.v1_url("caches");
                let payload = json!({"key": key, "version": VERSION_HASH}).to_string();
                let resp = self.v1_post_json(&operation, &url, payload).await?;
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if !status.is_success() {
                    let type_key = field(&v, "typeKey").as_str().unwrap_or("");
                    let message = field(&v, "message").as_str().unwrap_or("");
                    if status == StatusCode::CONFLICT
                        || type_key.contains("AlreadyExists")
                        || message.to_ascii_lowercase().contains("already exists")
                    {
                        return Ok(None);
                    }
                    return Err(GhaError::Status {
                        operation,
                        url: redact_url(&url),
                        status: status.as_u16(),
                        body: format!(
                            ": {}",
                            self.http.scrub(if message.is_empty() { &text } else { message })
                        ),
                    });
                }
                match json_u64(field(&v, "cacheId")) {
                    Some(id) if id != 0 => Ok(Some(Reservation::V1 { id })),
                    _ => Err(GhaError::Protocol {
                        operation,
                        reason: format!("invalid reserve answer {}", self.http.scrub(&text)),
                    }),
                }
            }
        }
    }

    /// Upload a reserved entry from a stream of `size` bytes and commit it. Parts go up as they
    /// fill, [`PARALLEL_PARTS`] at a time; nothing is committed unless the stream ends cleanly
    /// (a verifying stream ends with an error on a digest mismatch), so a failed upload leaves
    /// at most staged blocks that no entry names.
    pub(crate) async fn upload(
        &self,
        key: &str,
        reservation: Reservation,
        mut data: ByteStream,
        size: u64,
    ) -> bkcache_core::Result<()> {
        let single = matches!(reservation, Reservation::V2 { .. }) && size <= BLOCK_SIZE as u64;
        let part_size = match reservation {
            Reservation::V2 { .. } => BLOCK_SIZE,
            Reservation::V1 { .. } => CHUNK_SIZE,
        };
        let mut inflight = FuturesUnordered::new();
        let mut buf = BytesMut::new();
        let mut offset = 0u64;
        let mut parts = 0u32;
        let mut whole: Option<Bytes> = None;
        loop {
            let next = data.next().await;
            let done = match next {
                Some(Ok(chunk)) => {
                    buf.extend_from_slice(&chunk);
                    false
                }
                Some(Err(e)) => return Err(e),
                None => true,
            };
            while buf.len() >= part_size || (done && !buf.is_empty()) {
                let take = part_size.min(buf.len());
                let part = buf.split_to(take).freeze();
                if single {
                    whole = Some(match whole.take() {
                        None => part,
                        Some(prev) => {
                            let mut b = BytesMut::from(&prev[..]);
                            b.extend_from_slice(&part);
                            b.freeze()
                        }
                    });
                    continue;
                }
                while inflight.len() >= PARALLEL_PARTS {
                    if let Some(r) = inflight.next().await {
                        r?;
                    }
                }
                inflight.push(self.put_part(key, &reservation, parts, offset, part));
                parts += 1;
                offset += take as u64;
            }
            if done {
                break;
            }
        }
        while let Some(r) = inflight.next().await {
            r?;
        }
        match &reservation {
            Reservation::V2 { upload_url } => {
                if single {
                    let body = whole.unwrap_or_default();
                    self.azure_put(key, "uploading", upload_url.clone(), body, true).await?;
                } else {
                    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
                    for i in 0..parts {
                        xml.push_str(&format!("<Latest>{}</Latest>", block_id(i)));
                    }
                    xml.push_str("</BlockList>");
                    let url = format!("{upload_url}&comp=blocklist");
                    self.azure_put(key, "committing the block list of", url, Bytes::from(xml), false)
                        .await?;
                }
                self.finalize(key, size).await?;
            }
            Reservation::V1 { id } => self.v1_commit(key, *id, size).await?,
        }
        Ok(())
    }

    async fn put_part(
        &self,
        key: &str,
        reservation: &Reservation,
        index: u32,
        offset: u64,
        part: Bytes,
    ) -> bkcache_core::Result<()> {
        match reservation {
            Reservation::V2 { upload_url } => {
                let url = format!("{upload_url}&comp=block&blockid={}", url_encode(&block_id(index)));
                self.azure_put(key, "uploading a block of", url, part, false).await
            }
            Reservation::V1 { id } => self.v1_patch(key, *id, offset, part).await,
        }
    }

    /// PUT to the signed upload URL (Put Blob, Put Block, Put Block List); no auth header, the
    /// URL's signature is the authorisation.
    async fn azure_put(&self, key: &str, what: &str, url: String, body: Bytes, blob: bool) -> bkcache_core::Result<()> {
        let operation = format!("{what} {key}");
        let resp = self
            .http
            .send(&operation, &url, || {
                let mut r = self
                    .http
                    .client
                    .put(&url)
                    .header("x-ms-version", AZURE_VERSION)
                    // Said even for an empty blob, which Azure refuses without it.
                    .header(reqwest::header::CONTENT_LENGTH, body.len())
                    .body(body.clone());
                if blob {
                    r = r.header("x-ms-blob-type", "BlockBlob");
                }
                r
            })
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let hint = if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
            " (the signed upload URL was refused: expired, or not signed for writing)"
        } else {
            ""
        };
        Err(GhaError::Status {
            operation: format!("{operation}{hint}"),
            url: redact_url(&url),
            status: status.as_u16(),
            body: self.http.body_text(resp).await,
        }
        .into())
    }

    async fn finalize(&self, key: &str, size: u64) -> Result<(), GhaError> {
        let operation = format!("finalizing {key}");
        let method = "FinalizeCacheEntryUpload";
        let (status, v) = self
            .twirp(
                method,
                &operation,
                &json!({"key": key, "size_bytes": size, "version": VERSION_HASH}),
            )
            .await?;
        if !status.is_success() {
            return Err(self.twirp_error(&operation, method, status, &v));
        }
        if v["ok"] != Value::Bool(true) {
            return Err(GhaError::Refused {
                operation,
                reason: v["message"]
                    .as_str()
                    .map(|m| self.http.scrub(m))
                    .unwrap_or_else(|| "failed to commit cache (ok: false)".into()),
            });
        }
        tracing::debug!(key, entry_id = %v["entry_id"], "finalized");
        Ok(())
    }

    async fn v1_patch(&self, key: &str, id: u64, offset: u64, part: Bytes) -> bkcache_core::Result<()> {
        let operation = format!("uploading a chunk of {key}");
        let url = self.v1_url(&format!("caches/{id}"));
        let range = format!("bytes {}-{}/*", offset, offset + part.len() as u64 - 1);
        let auth = self.bearer();
        let resp = self
            .http
            .send(&operation, &url, || {
                self.v1_request(reqwest::Method::PATCH, &url, &auth)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header("content-range", &range)
                    .body(part.clone())
            })
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(GhaError::Status {
            operation,
            url: redact_url(&url),
            status: resp.status().as_u16(),
            body: self.http.body_text(resp).await,
        }
        .into())
    }

    async fn v1_commit(&self, key: &str, id: u64, size: u64) -> Result<(), GhaError> {
        let operation = format!("committing {key}");
        let url = self.v1_url(&format!("caches/{id}"));
        let payload = json!({ "size": size }).to_string();
        let resp = self.v1_post_json(&operation, &url, payload).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(GhaError::Status {
            operation,
            url: redact_url(&url),
            status: resp.status().as_u16(),
            body: self.http.body_text(resp).await,
        })
    }
}

/// Block IDs: one length for every block of a blob (Azure's rule), base64.
pub(crate) fn block_id(index: u32) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("bkcache-block-{index:010}"))
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_one_length() {
        assert_eq!(block_id(0).len(), block_id(4_000_000).len());
        assert_eq!(url_encode("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
