//! A small OCI distribution client: auth (anonymous, Basic, Bearer tokens with refresh on 401),
//! retries with backoff on 429/5xx and connection errors (honouring `Retry-After`).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use bkcache_core::Env;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::Mutex;

use crate::auth::{parse_challenge, Challenge, Credentials};
use crate::error::RegistryError;
use crate::reference::Reference;

/// Attempts for requests that can be replayed.
const MAX_ATTEMPTS: u32 = 5;

/// The manifest media types we accept, in BuildKit's order.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How to reach one repository.
pub struct RegistryClient {
    http: reqwest::Client,
    base: Mutex<Option<String>>,
    insecure: bool,
    reference: Reference,
    credentials: Option<Credentials>,
    scope: String,
    auth: Mutex<Option<String>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("reference", &self.reference.to_string())
            .field("insecure", &self.insecure)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    h == "localhost" || h.starts_with("127.") || h == "[::1]"
}

/// CA certificates to trust besides the system's: `$SSL_CERT_FILE` and Docker's
/// `/etc/docker/certs.d/<host>/*.crt` (directory overridable with `BKCACHE_CERTS_D`).
fn extra_roots(env: &Env, host: &str) -> Result<Vec<reqwest::Certificate>, RegistryError> {
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(f) = env.var("SSL_CERT_FILE") {
        files.push(f.into());
    }
    let certs_d = PathBuf::from(env.var("BKCACHE_CERTS_D").unwrap_or("/etc/docker/certs.d")).join(host);
    if let Ok(entries) = std::fs::read_dir(&certs_d) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "crt") {
                files.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    for f in files {
        let pem = std::fs::read(&f).map_err(|e| RegistryError::Tls {
            reason: format!("cannot read CA file {}: {e}", f.display()),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::Tls {
            reason: format!("{} is not a PEM certificate bundle: {e}", f.display()),
        })?;
        out.extend(certs);
    }
    Ok(out)
}

impl RegistryClient {
    /// A client for `reference`'s repository. `push` asks tokens for `pull,push`.
    pub fn new(
        reference: Reference,
        insecure: bool,
        credentials: Option<Credentials>,
        push: bool,
        env: &Env,
    ) -> Result<Self, RegistryError> {
        // object_store and reqwest need a process-wide rustls provider; installing it twice is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("bkcache/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300));
        if insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        for cert in extra_roots(env, &reference.registry)? {
            builder = builder.tls_certs_merge([cert]);
        }
        let http = builder.build().map_err(|e| RegistryError::Tls {
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        let scope = format!(
            "repository:{}:{}",
            reference.repository,
            if push { "pull,push" } else { "pull" }
        );
        Ok(RegistryClient {
            http,
            base: Mutex::new(None),
            insecure,
            reference,
            credentials,
            scope,
            auth: Mutex::new(None),
        })
    }

    /// The reference this client serves.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// `scheme://host`, found by pinging `/v2/` (HTTPS first; plain HTTP when
    /// `registry.insecure=true`, or as a fallback for loopback hosts like Docker does).
    pub async fn base(&self) -> Result<String, RegistryError> {
        let mut guard = self.base.lock().await;
        if let Some(b) = guard.as_ref() {
            return Ok(b.clone());
        }
        let host = self.reference.api_host();
        let candidates: Vec<String> = if self.insecure {
            vec![format!("http://{host}"), format!("https://{host}")]
        } else if is_loopback(host) {
            vec![format!("https://{host}"), format!("http://{host}")]
        } else {
            vec![format!("https://{host}")]
        };
        let mut last = None;
        for base in candidates {
            let url = format!("{base}/v2/");
            match self.http.get(&url).send().await {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    let challenge = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|h| h.to_str().ok())
                        .and_then(parse_challenge);
                    *guard = Some(base.clone());
                    drop(guard);
                    if let Some(c) = challenge {
                        self.authenticate(&c, &url).await?;
                    }
                    return Ok(base);
                }
                Ok(resp) if resp.status().is_success() => {
                    *guard = Some(base.clone());
                    return Ok(base);
                }
                // Not a registry answer on this scheme (e.g. 400 "HTTP request to an HTTPS
                // server"): try the next one.
                Ok(resp) => last = Some((url, format!("/v2/ answered HTTP {}", resp.status().as_u16()))),
                Err(e) => {
                    let text = error_text(&e);
                    // A certificate problem is an answer, not a reason to try plain HTTP.
                    if text.contains("certificate") {
                        return Err(RegistryError::Connect {
                            url,
                            reason: format!("{text} (trust its CA with SSL_CERT_FILE or /etc/docker/certs.d/<host>/ca.crt, or set registry.insecure=true)"),
                        });
                    }
                    last = Some((url, text));
                }
            }
        }
        let (url, reason) = last.unwrap_or_else(|| (host.to_owned(), "no address to try".into()));
        Err(RegistryError::Connect { url, reason })
    }

    /// Get credentials for a challenge and remember the `Authorization` value.
    async fn authenticate(&self, challenge: &Challenge, url: &str) -> Result<(), RegistryError> {
        let value = match challenge {
            Challenge::Basic => {
                let c = self.credentials.as_ref().ok_or_else(|| self.no_credentials(url, 401))?;
                let raw = format!("{}:{}", c.username, c.secret);
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
            }
            Challenge::Bearer { realm, service, scope } => {
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(s) = service {
                    query.push(("service", s));
                }
                query.push(("scope", &self.scope));
                if let Some(s) = scope.as_deref().filter(|s| *s != self.scope) {
                    query.push(("scope", s));
                }
                let mut token_url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Protocol {
                    url: url.into(),
                    reason: format!("bad token realm {realm:?}: {e}"),
                })?;
                for (k, v) in &query {
                    token_url.query_pairs_mut().append_pair(k, v);
                }
                let mut req = self.http.get(token_url.clone());
                if let Some(c) = &self.credentials {
                    req = req.basic_auth(&c.username, Some(&c.secret));
                }
                let resp = req.send().await.map_err(|e| RegistryError::Connect {
                    url: realm.clone(),
                    reason: error_text(&e),
                })?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(self.no_credentials(realm, status.as_u16()));
                }
                if !status.is_success() {
                    return Err(RegistryError::Status {
                        method: "GET".into(),
                        url: realm.clone(),
                        status: status.as_u16(),
                        body: body_start(resp).await,
                    });
                }
                let v: serde_json::Value = resp.json_value(realm).await?;
                let token = v["token"]
                    .as_str()
                    .or_else(|| v["access_token"].as_str())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| RegistryError::Protocol {
                        url: realm.clone(),
                        reason: "token response has no \"token\" or \"access_token\"".into(),
                    })?;
                format!("Bearer {token}")
            }
        };
        *self.auth.lock().await = Some(value);
        Ok(())
    }

    fn no_credentials(&self, url: &str, status: u16) -> RegistryError {
        RegistryError::Unauthorized {
            url: url.into(),
            status,
            hint: if self.credentials.is_some() {
                format!(
                    ": the credentials for {} were refused for {}",
                    self.reference.registry, self.scope
                )
            } else {
                format!(
                    ": no credentials for {}; run `docker login {}` or point DOCKER_CONFIG at a config.json with them",
                    self.reference.registry, self.reference.registry
                )
            },
        }
    }

    /// `base/v2/<repository>/<path>`.
    pub async fn url(&self, path: &str) -> Result<String, RegistryError> {
        Ok(format!(
            "{}/v2/{}/{path}",
            self.base().await?,
            self.reference.repository
        ))
    }

    /// Send a replayable request: auth, one re-authentication on 401, retries on 429/5xx and
    /// connection errors with backoff. The response status is returned as is (except 401/403).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response, RegistryError> {
        let mut reauthenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url).headers(headers.clone());
            if let Some(a) = self.auth.lock().await.as_ref() {
                if let Ok(v) = HeaderValue::from_str(a) {
                    req = req.header(AUTHORIZATION, v);
                }
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if attempt < MAX_ATTEMPTS && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tokio::time::sleep(backoff(attempt, None)).await;
                    continue;
                }
                Err(e) => {
                    return Err(RegistryError::Connect {
                        url: url.into(),
                        reason: error_text(&e),
                    })
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                reauthenticated = true;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .and_then(parse_challenge)
                    .ok_or_else(|| self.no_credentials(url, 401))?;
                self.authenticate(&challenge, url).await?;
                continue;
            }
            if status == StatusCode::FORBIDDEN {
                // A registry's policy refusal (`DENIED` with a message, e.g. bkcache serve's
                // --scan) says why; without one, the usual credentials hint.
                let said = denied_message(&body_start_long(resp).await);
                return Err(match said {
                    Some(message) => RegistryError::Unauthorized {
                        url: url.into(),
                        status: 403,
                        hint: format!(": the registry says: {message}"),
                    },
                    None => self.no_credentials(url, 403),
                });
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(self.no_credentials(url, status.as_u16()));
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) && attempt < MAX_ATTEMPTS {
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(bkcache_core::gojson::parse_retry_after)
                    .map(|d| d.as_secs());
                tracing::debug!(%url, %status, attempt, "retrying");
                tokio::time::sleep(backoff(attempt, retry_after)).await;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Send a request whose body is a one-shot stream (no retry; auth is set up beforehand).
    pub async fn send_stream(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<Response, RegistryError> {
        let mut req = self.http.request(method.clone(), url).headers(headers).body(body);
        if let Some(a) = self.auth.lock().await.as_ref() {
            if let Ok(v) = HeaderValue::from_str(a) {
                req = req.header(AUTHORIZATION, v);
            }
        }
        let resp = req.send().await.map_err(|e| RegistryError::Connect {
            url: url.into(),
            reason: error_text(&e),
        })?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(self.no_credentials(url, resp.status().as_u16()));
        }
        Ok(resp)
    }

    /// Resolve a possibly relative `Location` header against the registry base.
    pub async fn absolute(&self, location: &str) -> Result<String, RegistryError> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Ok(location.to_owned())
        } else {
            Ok(format!("{}{location}", self.base().await?))
        }
    }
}

/// Exponential backoff (200 ms doubling, capped at 10 s), or `Retry-After` seconds (capped at 60 s).
fn backoff(attempt: u32, retry_after: Option<u64>) -> Duration {
    match retry_after {
        Some(s) => Duration::from_secs(s.min(60)),
        None => Duration::from_millis((200u64 << attempt.min(6)).min(10_000)),
    }
}

/// A transport error's text with its causes (no URL query, no credentials: reqwest URLs here
/// carry none).
pub fn error_text(e: &reqwest::Error) -> String {
    bkcache_core::error::chain_text(e)
}

/// The first 2,000 characters of a body (an error's JSON).
async fn body_start_long(resp: Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    text.chars().take(2000).collect()
}

/// The `message` of an OCI error body's first `DENIED` error, if any (at most 1,000 characters).
fn denied_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let e = v["errors"].as_array()?.iter().find(|e| e["code"] == "DENIED")?;
    let m = e["message"].as_str().filter(|m| !m.is_empty())?;
    Some(m.chars().take(1000).collect())
}

/// The first 300 characters of a response body, for error messages.
pub async fn body_start(resp: Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    text.chars().take(300).collect::<String>().trim().to_owned()
}

/// JSON body helper.
pub trait JsonValue {
    /// Read the body as JSON.
    fn json_value(
        self,
        url: &str,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, RegistryError>> + Send;
}

impl JsonValue for Response {
    async fn json_value(self, url: &str) -> Result<serde_json::Value, RegistryError> {
        let bytes = self.bytes().await.map_err(|e| RegistryError::Connect {
            url: url.into(),
            reason: error_text(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
            url: url.into(),
            reason: format!("response is not JSON: {e}"),
        })
    }
}
