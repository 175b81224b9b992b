//! Uploads: PutObject below the multipart threshold, streamed multipart uploads above it within
//! the store's buffer budget, completed only after the verified stream ends; signed requests
//! (conditional PUT, copy-onto-self touch) that object_store does not make.

use super::*;

impl S3Store {
    pub(super) async fn put_small(&self, key: &str, path: &Path, size: u64, mut data: VerifiedStream) -> Result<()> {
        let _buffer = self.buffer(size).await?;
        let mut chunks: Vec<Bytes> = Vec::new();
        while let Some(chunk) = data.next().await {
            chunks.push(chunk?);
        }
        // The stream ended without error: digest and size are verified.
        match self.s3.put(path, PutPayload::from_iter(chunks)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.write_error("PUT", key, e).await),
        }
    }

    /// Room for `bytes` of upload buffer within [`BUFFER_BUDGET`], held until dropped.
    pub(super) async fn buffer(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.buffers)
            .acquire_many_owned(budget_of(bytes))
            .await
            .map_err(|e| {
                S3Error::Setup {
                    reason: format!("buffer limiter: {e}"),
                }
                .into()
            })
    }

    /// Stream a large blob as a multipart upload; the upload is completed only after the
    /// verifying stream ended cleanly, and aborted on any error. Each part holds its share of
    /// [`BUFFER_BUDGET`] from the moment it starts filling until it is uploaded.
    pub(super) async fn put_large(&self, key: &str, path: &Path, size: u64, data: VerifiedStream) -> Result<()> {
        let part_size = PART_SIZE.max(size.div_ceil(MAX_PARTS).next_multiple_of(1 << 20));
        let mut upload = match self.s3.put_multipart(path).await {
            Ok(u) => u,
            Err(e) => return Err(self.write_error("CreateMultipartUpload", key, e).await),
        };
        let mut in_flight: std::collections::VecDeque<tokio::task::JoinHandle<object_store::Result<()>>> =
            std::collections::VecDeque::new();
        let result: Result<()> = async {
            let mut data = data;
            let mut part: Vec<Bytes> = Vec::new();
            let mut filled = 0u64;
            let mut parts = 0usize;
            let mut room: Option<tokio::sync::OwnedSemaphorePermit> = None;
            loop {
                let next = data.next().await.transpose()?;
                let last = next.is_none();
                let mut chunk = next.unwrap_or_default();
                while !chunk.is_empty() || (last && filled > 0) {
                    let take = (part_size - filled).min(chunk.len() as u64) as usize;
                    if take > 0 && room.is_none() {
                        room = Some(self.buffer(part_size).await?);
                    }
                    if take > 0 {
                        part.push(chunk.split_to(take));
                        filled += take as u64;
                    }
                    if filled == part_size || (last && chunk.is_empty() && filled > 0) {
                        while in_flight.len() >= PARTS_IN_FLIGHT {
                            if let Some(h) = in_flight.pop_front() {
                                self.join_part(h, key).await?;
                            }
                        }
                        let payload = PutPayload::from_iter(std::mem::take(&mut part));
                        let sending = upload.put_part(payload);
                        let held = room.take();
                        in_flight.push_back(tokio::spawn(async move {
                            let r = sending.await;
                            drop(held);
                            r
                        }));
                        parts += 1;
                        filled = 0;
                    }
                }
                if last {
                    break;
                }
            }
            while let Some(h) = in_flight.pop_front() {
                self.join_part(h, key).await?;
            }
            tracing::debug!(key, parts, part_size, "multipart upload complete");
            upload
                .complete()
                .await
                .map_err(|e| self.fail("CompleteMultipartUpload", key, e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            for h in in_flight {
                h.abort();
            }
            if let Err(e) = upload.abort().await {
                tracing::warn!(key, "could not abort the multipart upload (the bucket's AbortIncompleteMultipartUpload lifecycle rule removes it): {e}");
            }
        }
        result
    }

    pub(super) async fn join_part(
        &self,
        h: tokio::task::JoinHandle<object_store::Result<()>>,
        key: &str,
    ) -> Result<()> {
        match h.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.fail("UploadPart", key, e)),
            Err(e) => Err(S3Error::Signed {
                operation: "UploadPart",
                bucket: self.settings.bucket.clone(),
                key: key.to_owned(),
                reason: format!("upload task failed: {e}"),
            }
            .into()),
        }
    }

    /// Send a request signed with object_store's signer (for what object_store does not offer:
    /// copy-onto-self with new metadata, `UploadPartCopy`). Returns the body of a 2xx answer.
    pub(super) async fn signed_put(
        &self,
        operation: &'static str,
        key: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        query: Vec<(String, String)>,
    ) -> Result<String> {
        let mut url = format!("{}/{}", self.bucket_url, encode_key(key));
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!(
                "{}={}",
                encode_key(k).replace('/', "%2F"),
                encode_key(v).replace('/', "%2F")
            ));
        }
        let failed = |reason: String| -> Error {
            S3Error::Signed {
                operation,
                bucket: self.settings.bucket.clone(),
                key: key.to_owned(),
                reason,
            }
            .into()
        };
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            match self.send_signed(Method::PUT, &url, headers.clone()).await {
                Ok(r) if r.status().is_server_error() && attempt < self.settings.retry_max_attempts => {}
                Ok(r) => break r,
                Err(e) if attempt < self.settings.retry_max_attempts => {
                    tracing::debug!(operation, key, "retrying: {e}");
                }
                Err(e) => return Err(failed(e)),
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
        };
        let status = resp.status();
        let body = resp.text().await.map_err(|e| failed(transport_text(e)))?;
        let body = scrub(&body, &self.settings.credentials.secrets());
        // CopyObject may answer 200 with an <Error> body.
        if !status.is_success() || body.contains("<Error>") {
            let code = xml_value(&body, "Code").unwrap_or_default();
            let message = xml_value(&body, "Message").unwrap_or_default();
            if status == reqwest::StatusCode::NOT_FOUND && code == "NoSuchBucket" {
                return Err(self.no_such_bucket());
            }
            let status = if status.is_success() {
                String::new()
            } else {
                format!("HTTP {status} ")
            };
            return Err(failed(format!("{status}{code}: {message}").trim().to_owned()));
        }
        Ok(body)
    }

    /// Refresh a blob's `LastModified` as BuildKit's `touch` does: copy it onto itself with
    /// `x-amz-metadata-directive: REPLACE` and `x-amz-meta-updated-at: <now>`; a multipart
    /// copy for objects of 5 GiB or more.
    pub(crate) async fn touch(&self, key: &str, size: u64) -> Result<()> {
        let source = format!("/{}/{}", encode_key(&self.settings.bucket), encode_key(key));
        let now = go_time_string(GoTime::now());
        if size < self.copy_object_limit {
            self.signed_put(
                "CopyObject (touch)",
                key,
                vec![
                    header("x-amz-copy-source", &source)?,
                    header("x-amz-metadata-directive", "REPLACE")?,
                    header("x-amz-meta-updated-at", &now)?,
                ],
                Vec::new(),
            )
            .await?;
            return Ok(());
        }
        let path = self.path(key)?;
        let attributes: Attributes = [(Attribute::Metadata("updated-at".into()), AttributeValue::from(now))]
            .into_iter()
            .collect();
        let opts = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let id = self
            .s3
            .create_multipart_opts(&path, opts)
            .await
            .map_err(|e| self.fail("CreateMultipartUpload (touch)", key, e))?;
        let result: Result<()> = async {
            let mut parts = Vec::new();
            let mut start = 0u64;
            while start < size {
                let end = (start + self.copy_part_size).min(size) - 1;
                let body = self
                    .signed_put(
                        "UploadPartCopy (touch)",
                        key,
                        vec![
                            header("x-amz-copy-source", &source)?,
                            header("x-amz-copy-source-range", &format!("bytes={start}-{end}"))?,
                        ],
                        vec![
                            ("partNumber".into(), (parts.len() + 1).to_string()),
                            ("uploadId".into(), id.clone()),
                        ],
                    )
                    .await?;
                let etag = xml_value(&body, "ETag").ok_or_else(|| S3Error::Signed {
                    operation: "UploadPartCopy (touch)",
                    bucket: self.settings.bucket.clone(),
                    key: key.to_owned(),
                    reason: "answer without an ETag".into(),
                })?;
                parts.push(PartId { content_id: etag });
                start = end + 1;
            }
            self.s3
                .complete_multipart(&path, &id, parts)
                .await
                .map_err(|e| self.fail("CompleteMultipartUpload (touch)", key, e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            if let Err(e) = self.s3.abort_multipart(&path, &id).await {
                tracing::warn!(key, "could not abort the multipart copy: {e}");
            }
        }
        result
    }
}
