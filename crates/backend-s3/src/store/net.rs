//! The clients a store talks through (object_store's S3 client, a reqwest client for the
//! signed requests object_store does not make) and small helpers for their requests.

use super::*;

/// A transport error's text with its sources (the callers name the operation and key).
pub(super) fn transport_text(e: reqwest::Error) -> String {
    bkcache_core::error::chain_text(&e.without_url())
}

/// Percent-encode an object key for `x-amz-copy-source` (everything but unreserved and `/`).
pub(super) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Go's `time.Now().String()` without the monotonic clock reading, as BuildKit's touch writes
/// it into `x-amz-meta-updated-at`: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub(super) fn go_time_string(t: GoTime) -> String {
    let s = t.to_utc().to_string();
    format!("{} +0000 UTC", s.trim_end_matches('Z').replacen('T', " ", 1))
}

pub(super) fn header(name: &'static str, value: &str) -> Result<(HeaderName, HeaderValue)> {
    let v = HeaderValue::from_str(value).map_err(|_| S3Error::Setup {
        reason: format!("value for header {name} is not a valid HTTP header value"),
    })?;
    Ok((HeaderName::from_static(name), v))
}

/// The text between `<tag>` and `</tag>`, XML entities for quotes undone.
pub(super) fn xml_value(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + body[start..].find(&format!("</{tag}>"))?;
    Some(body[start..end].replace("&quot;", "\"").replace("&#34;", "\""))
}

/// The endpoint to give object_store (if any) and the bucket's base URL, as object_store forms
/// it: path style `<endpoint>/<bucket>`, virtual-hosted `<scheme>://<bucket>.<host>`.
pub(super) fn endpoints(settings: &Settings) -> (Option<String>, String) {
    let bucket = &settings.bucket;
    match (&settings.endpoint, settings.path_style) {
        (Some(e), true) => (Some(e.base.clone()), format!("{}/{bucket}", e.base)),
        (Some(e), false) => {
            let port = e.port.map(|p| format!(":{p}")).unwrap_or_default();
            let url = format!("{}://{bucket}.{}{port}{}", e.scheme, e.host, e.path);
            (Some(url.clone()), url)
        }
        (None, true) => {
            let url = format!("https://s3.{}.amazonaws.com", settings.region);
            (Some(url.clone()), format!("{url}/{bucket}"))
        }
        (None, false) => (None, format!("https://{bucket}.s3.{}.amazonaws.com", settings.region)),
    }
}

pub(super) fn build_s3(settings: &Settings, endpoint: Option<String>) -> Result<AmazonS3> {
    let setup = |reason: String| -> Error { S3Error::Setup { reason }.into() };
    let allow_http = settings.endpoint.as_ref().is_some_and(|e| e.scheme == "http");
    // Per-request timeouts must not cut long blob streams: a read timeout instead.
    let mut client = ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(Duration::from_secs(30))
        .with_read_timeout(Duration::from_secs(300))
        .with_user_agent(HeaderValue::from_static(concat!("bkcache/", env!("CARGO_PKG_VERSION"))))
        .with_allow_http(allow_http);
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|e| setup(format!("cannot read CA file {}: {e}", path.display())))?;
        let certs = object_store::Certificate::from_pem_bundle(&pem)
            .map_err(|e| setup(format!("{} is not a PEM certificate bundle: {e}", path.display())))?;
        for c in certs {
            client = client.with_root_certificate(c);
        }
    }
    let retry = RetryConfig {
        max_retries: settings.retry_max_attempts - 1,
        ..RetryConfig::default()
    };
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        .with_client_options(client)
        .with_retry(retry)
        .with_virtual_hosted_style_request(!settings.path_style);
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    b = match &settings.credentials {
        CredentialSource::Static {
            key_id, secret, token, ..
        } => {
            let b = b.with_access_key_id(key_id).with_secret_access_key(secret);
            match token {
                Some(t) => b.with_token(t),
                None => b,
            }
        }
        CredentialSource::Process { command, origin } => {
            b.with_credentials(Arc::new(ProcessProvider::new(command.clone(), origin.clone())))
        }
        CredentialSource::WebIdentity {
            token_file,
            role_arn,
            session_name,
            sts_endpoint,
            ..
        } => {
            let mut b = b
                .with_config(AmazonS3ConfigKey::WebIdentityTokenFile, token_file)
                .with_config(AmazonS3ConfigKey::RoleArn, role_arn);
            if let Some(s) = session_name {
                b = b.with_config(AmazonS3ConfigKey::RoleSessionName, s);
            }
            if let Some(s) = sts_endpoint {
                b = b.with_config(AmazonS3ConfigKey::StsEndpoint, s);
            }
            b
        }
        CredentialSource::Container {
            relative_uri,
            full_uri,
            token_file,
        } => {
            let mut b = b;
            if let Some(v) = relative_uri {
                b = b.with_config(AmazonS3ConfigKey::ContainerCredentialsRelativeUri, v);
            }
            if let Some(v) = full_uri {
                b = b.with_config(AmazonS3ConfigKey::ContainerCredentialsFullUri, v);
            }
            if let Some(v) = token_file {
                b = b.with_config(AmazonS3ConfigKey::ContainerAuthorizationTokenFile, v);
            }
            b
        }
        CredentialSource::Instance { endpoint } => match endpoint {
            Some(e) => b.with_metadata_endpoint(e),
            None => b,
        },
    };
    // Never format the builder or its errors with `{:?}`: the builder's Debug prints the secret.
    b.build().map_err(|e| setup(e.to_string()))
}

pub(super) fn build_http(settings: &Settings) -> Result<reqwest::Client> {
    let setup = |reason: String| -> Error { S3Error::Setup { reason }.into() };
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("bkcache/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300));
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|e| setup(format!("cannot read CA file {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| setup(format!("{} is not a PEM certificate bundle: {e}", path.display())))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| setup(format!("cannot build the HTTP client: {}", transport_text(e))))
}
