//! `scan`: read every layer's tar as a stream (never unpacked to disk) and report files that look
//! like credentials. A finding names the layer, the path and the rule, never the secret.

use std::io::Read;

use futures::StreamExt;
use serde::Serialize;

use crate::compression::{decompressor, limit_error, with_reader, BoundedReader};
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::Result;
use crate::media_type::Compression;
use crate::store::{CacheStore, LoadedCache};
use crate::tar;

/// Bytes of each file's start that content rules look at.
const CONTENT_WINDOW: u64 = 2 << 20;

/// One suspicious file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The layer holding it.
    pub layer: Digest,
    /// Path inside the layer.
    pub path: String,
    /// Which rule matched.
    pub rule: &'static str,
    /// A hint that shows no secret (e.g. the first characters of a token prefix).
    pub detail: String,
}

/// The result of a scan. Stable JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    /// Layers read.
    pub layers_scanned: usize,
    /// Regular files seen.
    pub files_scanned: u64,
    /// What looks like a credential.
    pub findings: Vec<Finding>,
}

fn name_rules(path: &str) -> Option<&'static str> {
    let base = path.rsplit('/').next().unwrap_or(path);
    match base {
        "id_rsa" | "id_dsa" | "id_ecdsa" | "id_ed25519" => Some("ssh private key file"),
        _ => None,
    }
}

/// Rules that need the content of a known credential file.
fn file_rules(path: &str, text: &str) -> Option<&'static str> {
    let p = path.trim_start_matches("./");
    let base = p.rsplit('/').next().unwrap_or(p);
    let has = |s: &str| text.contains(s);
    match base {
        ".npmrc" if has("_authToken") || has("_auth=") || has("_password") => Some("npm token in .npmrc"),
        ".pypirc" if has("password") => Some("password in .pypirc"),
        ".netrc" | "_netrc" if has("password") => Some("password in .netrc"),
        ".git-credentials" if has("://") && has("@") => Some("git credentials"),
        "credentials" if p.ends_with(".aws/credentials") && has("aws_secret_access_key") => {
            Some("AWS credentials file")
        }
        "config.json" if p.ends_with(".docker/config.json") && docker_auth(text) => {
            Some("registry auth in .docker/config.json")
        }
        _ => None,
    }
}

fn docker_auth(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    compact
        .match_indices("\"auth\":\"")
        .any(|(i, m)| compact[i + m.len()..].chars().next().is_some_and(|c| c != '"'))
}

/// Token patterns anywhere in a text file. Returns (rule, redacted hint).
fn token_rules(text: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(i) = text.find("-----BEGIN ") {
        let line = text[i..].lines().next().unwrap_or("");
        if line.contains("PRIVATE KEY-----") {
            out.push(("private key (PEM)", line.trim().to_owned()));
        }
    }
    let bytes = text.as_bytes();
    let run = |start: usize, ok: &dyn Fn(u8) -> bool| bytes[start..].iter().take_while(|b| ok(**b)).count();
    for (i, _) in text.match_indices("AKIA") {
        if run(i + 4, &|b| b.is_ascii_uppercase() || b.is_ascii_digit()) >= 16
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
        {
            out.push(("AWS access key id", "AKIA… (20 characters)".into()));
            break;
        }
    }
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        if text
            .match_indices(prefix)
            .any(|(i, _)| run(i + 4, &|b| b.is_ascii_alphanumeric()) >= 36)
        {
            out.push(("GitHub token", format!("{prefix}… (40 characters)")));
        }
    }
    if text
        .match_indices("github_pat_")
        .any(|(i, _)| run(i + 11, &|b| b.is_ascii_alphanumeric() || b == b'_') >= 22)
    {
        out.push(("GitHub fine-grained token", "github_pat_…".into()));
    }
    if text.contains("\"service_account\"") && text.contains("\"private_key\"") {
        out.push((
            "GCP service account key",
            "\"type\": \"service_account\" with \"private_key\"".into(),
        ));
    }
    if text.match_indices("AccountKey=").any(|(i, m)| {
        run(i + m.len(), &|b| {
            b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
        }) >= 40
    }) {
        out.push(("Azure storage account key", "AccountKey=… (connection string)".into()));
    }
    for prefix in ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"] {
        if text
            .match_indices(prefix)
            .any(|(i, _)| run(i + 5, &|b| b.is_ascii_alphanumeric() || b == b'-') >= 10)
        {
            out.push(("Slack token", format!("{prefix}…")));
        }
    }
    out
}

/// Scan one decompressed layer tar.
fn scan_tar(layer: &Digest, tar: &mut dyn Read, report: &mut ScanReport) -> std::io::Result<()> {
    let mut findings = Vec::new();
    let mut files = 0u64;
    tar::for_each_entry(tar, |entry, content| {
        if !entry.is_file() {
            return Ok(());
        }
        files += 1;
        let path = entry.path.trim_start_matches("./").to_owned();
        if let Some(rule) = name_rules(&path) {
            findings.push(Finding {
                layer: layer.clone(),
                path: path.clone(),
                rule,
                detail: format!("{} bytes", entry.size),
            });
            return Ok(());
        }
        let mut head = Vec::new();
        content.take(CONTENT_WINDOW).read_to_end(&mut head)?;
        if head.iter().take(8192).any(|b| *b == 0) {
            return Ok(()); // binary
        }
        let text = String::from_utf8_lossy(&head);
        if let Some(rule) = file_rules(&path, &text) {
            findings.push(Finding {
                layer: layer.clone(),
                path: path.clone(),
                rule,
                detail: format!("{} bytes", entry.size),
            });
        }
        for (rule, detail) in token_rules(&text) {
            findings.push(Finding {
                layer: layer.clone(),
                path: path.clone(),
                rule,
                detail,
            });
        }
        Ok(())
    })?;
    report.files_scanned += files;
    report.findings.extend(findings);
    Ok(())
}

/// Scan every layer of `loaded` from `store` (`parallelism` layers at once). A layer whose
/// uncompressed tar exceeds `max_uncompressed` bytes ends the scan with [`crate::Error::TooLarge`]
/// (see [`crate::compression::DEFAULT_MAX_UNCOMPRESSED`]).
pub async fn scan(
    store: &dyn CacheStore,
    loaded: &LoadedCache,
    parallelism: usize,
    max_uncompressed: u64,
) -> Result<ScanReport> {
    let layers: Vec<Descriptor> = loaded.cache.blobs.values().cloned().collect();
    scan_layers(store, layers, parallelism, max_uncompressed).await
}

/// Scan the given layers of `store` with the same rules as [`scan`] (`bkcache serve --scan`
/// scans only the layers a new manifest brings).
pub async fn scan_layers(
    store: &dyn CacheStore,
    layers: Vec<Descriptor>,
    parallelism: usize,
    max_uncompressed: u64,
) -> Result<ScanReport> {
    let results: Vec<Result<ScanReport>> = futures::stream::iter(layers)
        .map(|desc: Descriptor| async move { scan_layer(store, &desc, max_uncompressed).await })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut report = ScanReport::default();
    for r in results {
        let r = r?;
        report.layers_scanned += 1;
        report.files_scanned += r.files_scanned;
        report.findings.extend(r.findings);
    }
    report
        .findings
        .sort_by(|a, b| (&a.layer, &a.path, a.rule).cmp(&(&b.layer, &b.path, b.rule)));
    Ok(report)
}

/// Scan one layer; a read that broke off is scanned again from the start, as verify does.
async fn scan_layer(store: &dyn CacheStore, desc: &Descriptor, max_uncompressed: u64) -> Result<ScanReport> {
    let compression = desc.media_type.layer_compression().unwrap_or(Compression::Gzip);
    crate::store::retry_transient(
        |e| store.is_transient(e),
        |e, _| tracing::warn!("layer {} could not be read ({e}); reading it again", desc.digest),
        || async {
            let stream = store.open_blob(desc, 0).await?;
            let layer = desc.digest.clone();
            with_reader(desc, stream, move |reader| {
                let mut tar = BoundedReader::new(decompressor(compression, reader)?, max_uncompressed);
                let what = format!("layer {layer}");
                let mut r = ScanReport::default();
                scan_tar(&layer, &mut tar, &mut r).map_err(|e| limit_error(&what, "read tar", e))?;
                // Read to the end so the verified stream checks the whole blob's digest.
                std::io::copy(&mut tar, &mut std::io::sink()).map_err(|e| limit_error(&what, "read", e))?;
                Ok(r)
            })
            .await
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules_match_and_never_echo_secrets() {
        let secret = format!("key=AKIA{} and ghp_{}", "ABCDEFGHIJKLMNOP", "a".repeat(36));
        let hits = token_rules(&secret);
        assert_eq!(
            hits.iter().map(|h| h.0).collect::<Vec<_>>(),
            ["AWS access key id", "GitHub token"]
        );
        assert!(hits.iter().all(|h| !h.1.contains("ABCDEFGH") && !h.1.contains("aaaa")));
        assert!(token_rules("AKIA is a prefix; ghp_short").is_empty());
        assert!(docker_auth(r#"{"auths":{"r":{"auth":"dXNlcjpwYXNz"}}}"#));
        assert!(!docker_auth(r#"{"auths":{"r":{"auth":""}},"credsStore":"desktop"}"#));
        assert_eq!(
            file_rules(".npmrc", "//registry/:_authToken=abc"),
            Some("npm token in .npmrc")
        );
        assert_eq!(
            file_rules("root/.aws/credentials", "aws_secret_access_key = x"),
            Some("AWS credentials file")
        );
    }
}
