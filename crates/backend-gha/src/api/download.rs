//! Downloads from the signed URLs: ranged GETs (`x-ms-range` on v2, `Range` on v1), the size
//! probe, and whole small entries (index configs).

use super::*;

impl Service {
    /// An unexpected answer from a signed URL, with the start of its body.
    async fn status_error(&self, operation: String, url: &str, resp: reqwest::Response) -> GhaError {
        GhaError::Status {
            operation,
            url: redact_url(url),
            status: resp.status().as_u16(),
            body: self.http.body_text(resp).await,
        }
    }

    fn range_header(&self) -> &'static str {
        match self.config.api {
            ApiVersion::V2 => "x-ms-range",
            ApiVersion::V1 => "range",
        }
    }

    /// A ranged GET of a signed URL (no auth header: the URL's signature is the authorisation).
    async fn ranged_get(&self, operation: &str, url: &str, range: &str) -> Result<reqwest::Response, GhaError> {
        self.http
            .send(operation, url, || {
                self.http
                    .client
                    .get(url)
                    .header("x-ms-version", AZURE_VERSION)
                    .header(self.range_header(), range)
            })
            .await
    }

    /// GET bytes `start..=end` of a signed URL (`x-ms-range` for Azure on v2, `Range` on v1).
    pub(crate) async fn fetch_range(&self, key: &str, url: &str, start: u64, end: u64) -> Result<Ranged, GhaError> {
        let operation = format!("downloading {key} bytes {start}-{end}");
        let resp = self
            .ranged_get(&operation, url, &format!("bytes={start}-{end}"))
            .await?;
        let status = resp.status();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Ok(Ranged::Refused(status.as_u16())),
            StatusCode::NOT_FOUND => return Ok(Ranged::NotFound),
            StatusCode::PARTIAL_CONTENT => {
                let cr = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !cr.starts_with(&format!("bytes {start}-")) {
                    return Err(GhaError::Protocol {
                        operation,
                        reason: format!("unhandled content range in response: {cr:?}"),
                    });
                }
            }
            StatusCode::OK if start == 0 => {}
            _ => return Err(self.status_error(operation, url, resp).await),
        }
        let bytes = resp.bytes().await.map_err(|e| GhaError::Connect {
            operation: operation.clone(),
            url: redact_url(url),
            reason: self.http.scrub(&error_text(e)),
        })?;
        let want = end - start + 1;
        if bytes.len() as u64 != want {
            return Err(GhaError::Protocol {
                operation,
                reason: format!("got {} bytes for a {want}-byte range", bytes.len()),
            });
        }
        Ok(Ranged::Data(bytes))
    }

    /// The size of what a signed URL holds (a one-byte ranged GET: `Content-Range: …/size`).
    /// `Err(Ranged)` for 401/403/404.
    pub(crate) async fn probe_size(&self, key: &str, url: &str) -> Result<Result<u64, Ranged>, GhaError> {
        let operation = format!("checking the size of {key}");
        let resp = self.ranged_get(&operation, url, "bytes=0-0").await?;
        let status = resp.status();
        let total = |h: Option<&HeaderValue>| {
            h.and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit_once('/'))
                .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        };
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Err(Ranged::Refused(status.as_u16()))),
            StatusCode::NOT_FOUND => Ok(Err(Ranged::NotFound)),
            StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE => {
                total(resp.headers().get("content-range"))
                    .map(Ok)
                    .ok_or_else(|| GhaError::Protocol {
                        operation,
                        reason: "a ranged answer without a total size in Content-Range".into(),
                    })
            }
            StatusCode::OK => match resp.content_length() {
                Some(n) => Ok(Ok(n)),
                None => Ok(Ok(resp.bytes().await.map(|b| b.len() as u64).unwrap_or(0))),
            },
            _ => Err(GhaError::Status {
                operation,
                url: redact_url(url),
                status: status.as_u16(),
                body: self.http.body_text(resp).await,
            }),
        }
    }

    /// GET a whole (small) entry, at most `limit` bytes. `Err(Ranged)` for 401/403/404.
    pub(crate) async fn fetch_all(
        &self,
        key: &str,
        url: &str,
        limit: u64,
    ) -> Result<Result<Vec<u8>, Ranged>, GhaError> {
        let operation = format!("downloading {key}");
        let resp = self
            .http
            .send(&operation, url, || {
                self.http.client.get(url).header("x-ms-version", AZURE_VERSION)
            })
            .await?;
        let status = resp.status();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Ok(Err(Ranged::Refused(status.as_u16()))),
            StatusCode::NOT_FOUND => return Ok(Err(Ranged::NotFound)),
            s if s.is_success() => {}
            _ => return Err(self.status_error(operation, url, resp).await),
        }
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| GhaError::Connect {
                operation: operation.clone(),
                url: redact_url(url),
                reason: self.http.scrub(&error_text(e)),
            })?;
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                return Err(GhaError::Protocol {
                    operation,
                    reason: format!("larger than {limit} bytes"),
                });
            }
        }
        Ok(Ok(out))
    }
}
