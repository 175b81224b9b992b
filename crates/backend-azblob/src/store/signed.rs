//! The raw requests object_store does not make, signed with its `AzureAuthorizer`: container
//! create, the conditional Put Block List, and the committed-block listing.

use super::*;

impl AzblobStore {
    /// One request signed like object_store's own (shared key, SAS or bearer token), retried
    /// on connection errors, 408, 429 and 5xx. Returns the status and `x-ms-error-code`.
    pub(super) async fn signed(
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
    pub(super) async fn put_block_list(&self, key: &str, parts: &[PartId], overwrite: bool) -> Result<bool> {
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
}
