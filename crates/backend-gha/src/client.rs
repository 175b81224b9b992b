//! The HTTP layer: one reqwest client, retries (429 honouring `Retry-After` within the
//! `timeout=` budget, 5xx and connection errors a few times with backoff), a shared pause after
//! a 429 so parallel requests do not keep hammering a rate-limited service, request counters,
//! and scrubbing of secrets from everything that may reach a message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::error::GhaError;

/// Attempts for 5xx answers and connection errors (429 is bounded by the time budget instead).
const MAX_ATTEMPTS: u32 = 5;
/// The longest single wait (go-actions-cache's backoff caps at 90 s).
const MAX_WAIT: Duration = Duration::from_secs(90);

/// What went over the wire, for reports and tests.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// HTTP requests sent (every attempt).
    pub requests: AtomicU64,
    /// 429 answers received.
    pub rate_limited: AtomicU64,
    /// Retries of any kind.
    pub retries: AtomicU64,
}

/// A snapshot of a store's request counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// HTTP requests sent.
    pub requests: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Retries.
    pub retries: u64,
}

pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    budget: Duration,
    budget_text: String,
    /// No request leaves before this instant (set by a 429's `Retry-After`).
    pause_until: Mutex<Option<Instant>>,
    /// Strings never to show (the tokens).
    secrets: Vec<String>,
    pub(crate) stats: Stats,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("budget", &self.budget)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A URL without its query string (which may hold a SAS signature).
pub(crate) fn redact_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?<signed>"),
        None => url.to_owned(),
    }
}

/// A transport error's text with its causes, without the URL reqwest attaches.
pub(crate) fn error_text(e: reqwest::Error) -> String {
    bkcache_core::error::chain_text(&e.without_url())
}

pub(crate) use bkcache_core::gojson::parse_retry_after;

/// Exponential backoff from 1 s (doubling, capped at 90 s).
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(1000u64.saturating_mul(1 << attempt.min(7))).min(MAX_WAIT)
}

impl Http {
    pub(crate) fn new(budget: Duration, budget_text: &str, secrets: Vec<String>) -> Result<Self, GhaError> {
        // reqwest with rustls needs a process-wide provider; installing it twice is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("bkcache/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| GhaError::Protocol {
                operation: "setting up the HTTP client".into(),
                reason: error_text(e),
            })?;
        Ok(Http {
            client,
            budget,
            budget_text: budget_text.to_owned(),
            pause_until: Mutex::new(None),
            secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
            stats: Stats::default(),
        })
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.stats.requests.load(Ordering::Relaxed),
            rate_limited: self.stats.rate_limited.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
        }
    }

    /// Text from a server, safe to show: no token, no SAS signature, at most 300 characters.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut t: String = text.chars().take(300).collect();
        for s in &self.secrets {
            t = t.replace(s.as_str(), "<redacted>");
        }
        // Signed URLs a server may echo: drop their query strings.
        let mut out = String::with_capacity(t.len());
        let mut rest = t.as_str();
        while let Some(i) = rest.find("sig=") {
            out.push_str(&rest[..i]);
            out.push_str("sig=<redacted>");
            rest = &rest[i + 4..];
            let end = rest
                .find(|c: char| c == '&' || c == '"' || c.is_whitespace())
                .unwrap_or(rest.len());
            rest = &rest[end..];
        }
        out.push_str(rest);
        out.trim().to_owned()
    }

    /// The start of a response body, scrubbed, as `: <text>` (empty when there is none).
    pub(crate) async fn body_text(&self, resp: Response) -> String {
        let text = resp.text().await.unwrap_or_default();
        let t = self.scrub(&text);
        if t.is_empty() {
            String::new()
        } else {
            format!(": {t}")
        }
    }

    async fn wait_pause(&self) {
        let until = *self.pause_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = until {
            let now = Instant::now();
            if t > now {
                tokio::time::sleep(t - now).await;
            }
        }
    }

    fn pause(&self, d: Duration) {
        let mut g = self.pause_until.lock().unwrap_or_else(|p| p.into_inner());
        let t = Instant::now() + d;
        if g.is_none_or(|old| old < t) {
            *g = Some(t);
        }
    }

    /// Send a request built by `build` (called again for each attempt). Retries: 429 with
    /// `Retry-After` (else exponential backoff) until the `timeout=` budget is spent, 5xx and
    /// 408 and connection errors up to 5 attempts. Returns the final response whatever its
    /// status (except a 429 beyond the budget, which is [`GhaError::RateLimited`]).
    pub(crate) async fn send(
        &self,
        operation: &str,
        url: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, GhaError> {
        let start = Instant::now();
        let mut attempt = 0u32;
        let mut other_failures = 0u32;
        loop {
            attempt += 1;
            self.wait_pause().await;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let wait = match build().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        let wait = resp
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_retry_after)
                            .unwrap_or_else(|| backoff(attempt - 1))
                            .min(MAX_WAIT);
                        if start.elapsed() + wait > self.budget {
                            return Err(GhaError::RateLimited {
                                operation: operation.into(),
                                url: redact_url(url),
                                waited_secs: start.elapsed().as_secs(),
                                attempts: attempt,
                                timeout: self.budget_text.clone(),
                            });
                        }
                        tracing::info!(
                            operation,
                            status = 429,
                            wait_ms = wait.as_millis() as u64,
                            "rate limited; waiting"
                        );
                        self.pause(wait);
                        wait
                    } else if (status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT)
                        && other_failures + 1 < MAX_ATTEMPTS
                        && start.elapsed() < self.budget
                    {
                        other_failures += 1;
                        tracing::debug!(operation, status = status.as_u16(), "retrying");
                        backoff(other_failures - 1)
                    } else {
                        return Ok(resp);
                    }
                }
                Err(e) => {
                    other_failures += 1;
                    let transient = e.is_connect() || e.is_timeout() || e.is_request();
                    if !transient || other_failures >= MAX_ATTEMPTS || start.elapsed() >= self.budget {
                        return Err(GhaError::Connect {
                            operation: operation.into(),
                            url: redact_url(url),
                            reason: self.scrub(&error_text(e)),
                        });
                    }
                    tracing::debug!(operation, "connection error; retrying");
                    Duration::from_millis(200 << other_failures.min(4))
                }
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scrub_removes_tokens_and_signatures() {
        let h = Http::new(Duration::from_secs(1), "1s", vec!["eyJsecret.token.x".into()]).unwrap();
        let t = h.scrub("bad token eyJsecret.token.x at http://a/b?sv=1&sig=abc%2B%3D&se=2 \"x\"");
        assert_eq!(t, "bad token <redacted> at http://a/b?sv=1&sig=<redacted>&se=2 \"x\"");
        assert_eq!(redact_url("http://a/b?sig=x"), "http://a/b?<signed>");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(20), MAX_WAIT);
    }
}
