//! The GitHub REST API for cache entries (`ghtoken` + `repository`): listing by key prefix and
//! ref, deletion by id or key. The cache service itself can neither list nor delete.

use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::client::{error_text, redact_url, Http};
use crate::config::Secret;
use crate::error::GhaError;

/// One entry as `GET /repos/{owner}/{repo}/actions/caches` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct RestEntry {
    /// The entry id (for deletion).
    pub id: u64,
    /// The ref (scope) it belongs to, e.g. `refs/heads/main`.
    #[serde(rename = "ref", default)]
    pub git_ref: String,
    /// The full key.
    #[serde(default)]
    pub key: String,
    /// The version hash.
    #[serde(default)]
    pub version: String,
    /// RFC 3339.
    #[serde(default)]
    pub last_accessed_at: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Size.
    #[serde(default)]
    pub size_in_bytes: u64,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    total_count: u64,
    #[serde(default)]
    actions_caches: Vec<RestEntry>,
}

pub(crate) struct Rest<'a> {
    pub(crate) http: &'a Http,
    pub(crate) api_url: &'a str,
    pub(crate) repository: &'a str,
    pub(crate) token: &'a Secret,
}

impl Rest<'_> {
    fn caches_url(&self) -> String {
        format!("{}/repos/{}/actions/caches", self.api_url, self.repository)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .client
            .request(method, url)
            .header(ACCEPT, "application/vnd.github+json")
            .header(AUTHORIZATION, format!("Bearer {}", self.token.expose()))
            .header("X-GitHub-Api-Version", "2022-11-28")
    }

    async fn failure(&self, operation: String, url: &str, resp: reqwest::Response) -> GhaError {
        let status = resp.status().as_u16();
        let mut body = self.http.body_text(resp).await;
        if status == 401 || status == 403 {
            body.push_str(" (ghtoken needs the actions:write permission on the repository)");
        }
        GhaError::Status {
            operation,
            url: redact_url(url),
            status,
            body,
        }
    }

    /// Every entry whose key starts with `prefix`, in `git_ref` when given (all pages).
    pub(crate) async fn list(&self, prefix: &str, git_ref: Option<&str>) -> Result<Vec<RestEntry>, GhaError> {
        let operation = format!("listing cache entries {prefix}* of {}", self.repository);
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let mut url = reqwest::Url::parse(&self.caches_url()).map_err(|e| GhaError::Protocol {
                operation: operation.clone(),
                reason: format!("bad GITHUB_API_URL: {e}"),
            })?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("key", prefix);
                q.append_pair("page", &page.to_string());
                q.append_pair("per_page", "100");
                if let Some(r) = git_ref {
                    q.append_pair("ref", r);
                }
            }
            let url = url.to_string();
            let resp = self
                .http
                .send(&operation, &url, || self.request(reqwest::Method::GET, &url))
                .await?;
            if !resp.status().is_success() {
                return Err(self.failure(operation, &url, resp).await);
            }
            let bytes = resp.bytes().await.map_err(|e| GhaError::Connect {
                operation: operation.clone(),
                url: redact_url(&url),
                reason: self.http.scrub(&error_text(e)),
            })?;
            let p: Page = serde_json::from_slice(&bytes).map_err(|e| GhaError::Protocol {
                operation: operation.clone(),
                reason: format!("unexpected listing: {e}"),
            })?;
            let n = p.actions_caches.len();
            out.extend(p.actions_caches);
            if n == 0 || p.total_count <= page * 100 {
                break;
            }
            page += 1;
        }
        Ok(out)
    }

    /// Delete one entry by id (`Ok` when it is already gone).
    pub(crate) async fn delete_id(&self, id: u64, what: &str) -> Result<(), GhaError> {
        let operation = format!("deleting cache entry {what} (id {id})");
        let url = format!("{}/{id}", self.caches_url());
        let resp = self
            .http
            .send(&operation, &url, || self.request(reqwest::Method::DELETE, &url))
            .await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.failure(operation, &url, resp).await)
    }
}
