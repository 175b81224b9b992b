//! The crate's error type.

/// Failures specific to the S3 store; they reach callers wrapped in
/// [`bkcache_core::Error::Backend`]. No variant carries a credential: keys, secrets, session
/// tokens and signature details echoed by S3 are never put into one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The bucket does not exist at the endpoint.
    #[error("bucket {bucket:?} does not exist at {endpoint} (NoSuchBucket): create it first, or fix bucket= / $AWS_BUCKET (bkcache does not create buckets, BuildKit neither)")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
        /// Where it was looked for (no credentials).
        endpoint: String,
    },
    /// The server refused the credentials or the operation.
    #[error("{operation} s3://{bucket}/{key}: access denied with credentials from {credentials}: {reason}")]
    AccessDenied {
        /// What was being done (`GET`, `PUT`, `HEAD`, …).
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// Where the credentials came from (never the credentials themselves).
        credentials: String,
        /// object_store's error text, scrubbed of credentials and of the signature details S3
        /// error bodies echo (see [`scrub`]).
        reason: String,
    },
    /// Any other failed request (network, server error, retries exhausted).
    #[error("{operation} s3://{bucket}/{key} failed: {reason}")]
    Request {
        /// What was being done.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// object_store's error text, scrubbed (see [`scrub`]).
        reason: String,
    },
    /// A request bkcache signs itself with object_store's SigV4 signer (the touch `CopyObject`
    /// and `UploadPartCopy`, `HeadBucket`) failed.
    #[error("{operation} s3://{bucket}/{key} failed: {reason}")]
    Signed {
        /// What was being done.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// HTTP status with the S3 error code and message, or the transport error.
        reason: String,
    },
    /// No credentials could be found, or a credential source is broken.
    #[error("credentials: {reason}")]
    Credentials {
        /// What is wrong and what to set (never a secret).
        reason: String,
    },
    /// The client could not be set up (TLS roots, endpoint).
    #[error("S3 client setup: {reason}")]
    Setup {
        /// What failed.
        reason: String,
    },
}

impl From<S3Error> for bkcache_core::Error {
    fn from(e: S3Error) -> Self {
        // Credentials refused or lacking a permission: fix the credential, do not retry.
        let denied = matches!(e, S3Error::AccessDenied { .. });
        bkcache_core::Error::from_backend("s3", e, denied)
    }
}

/// S3 error bodies that object_store puts into its messages may echo what was signed
/// (`SignatureDoesNotMatch` carries `<AWSAccessKeyId>`, `<StringToSign>` and a
/// `<CanonicalRequest>` holding the `x-amz-security-token` header): drop those elements and
/// replace any known secret with `<redacted>`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for tag in [
        "AWSAccessKeyId",
        "StringToSign",
        "StringToSignBytes",
        "CanonicalRequest",
        "CanonicalRequestBytes",
        "SignatureProvided",
        "HostId",
    ] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        while let Some(i) = out.find(&open) {
            let end = match out[i..].find(&close) {
                Some(j) => i + j + close.len(),
                None => out.len(),
            };
            out.replace_range(i..end, "");
        }
    }
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, "<redacted>");
    }
    out
}

/// An error's text with its sources (those not already included), scrubbed.
pub(crate) fn error_text(e: &(dyn std::error::Error + 'static), secrets: &[&str]) -> String {
    scrub(&bkcache_core::error::chain_text(e), secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_signature_echoes_and_secrets() {
        let body = "Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message><AWSAccessKeyId>AKIDSECRET1</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n…</StringToSign><CanonicalRequest>PUT\n/b/k\nx-amz-security-token:TOKENSECRET2\n</CanonicalRequest><RequestId>1</RequestId></Error> and sEcReT3";
        let out = scrub(body, &["sEcReT3", ""]);
        for s in ["AKIDSECRET1", "TOKENSECRET2", "sEcReT3", "StringToSign"] {
            assert!(!out.contains(s), "{out}");
        }
        assert!(
            out.contains("SignatureDoesNotMatch") && out.contains("<RequestId>1</RequestId>"),
            "{out}"
        );
        assert_eq!(scrub("<CanonicalRequest>unterminated x-amz-security-token:T", &[]), "");
    }
}
