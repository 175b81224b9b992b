//! Attribute parsing: BuildKit's `getConfig` for `type=s3`, the key layout, Go durations, and
//! the AWS credential chain (attributes, environment, shared config/credentials files,
//! web identity, container and instance metadata).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bkcache_core::attrs::Attrs;
use bkcache_core::factory::printable_value;
use bkcache_core::spec::parse_go_bool;
use bkcache_core::{CacheSpec, Digest, Direction, Env, Error, GoTime, Result};
use object_store::aws::AwsCredential;
use object_store::path::Path;
use object_store::CredentialProvider;

use crate::error::S3Error;

mod credentials;

use credentials::resolve_credentials;
pub(crate) use credentials::ProcessProvider;

/// BuildKit's default `name`.
pub const DEFAULT_NAME: &str = "buildkit";
/// BuildKit's default `touch_refresh` (24 hours).
pub const DEFAULT_TOUCH_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// BuildKit's default `upload_parallelism`.
pub const DEFAULT_UPLOAD_PARALLELISM: usize = 4;
/// The AWS SDK's default number of attempts per request (`retry_max_attempts`).
pub const DEFAULT_RETRY_MAX_ATTEMPTS: usize = 3;

/// Where a cache's objects live in the bucket: exactly BuildKit's `blobKey` and `manifestKey`
/// (plain concatenation, no separator added).
///
/// ```
/// use bkcache_s3::S3Layout;
/// let l = S3Layout::new("proj/", "blobs/", "manifests/");
/// let d = bkcache_core::Digest::of_bytes(b"x");
/// assert_eq!(l.blob_key(&d), format!("proj/blobs/{d}"));
/// assert_eq!(l.manifest_key("main"), "proj/manifests/main");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Layout {
    /// `prefix=`.
    pub prefix: String,
    /// `blobs_prefix=`.
    pub blobs_prefix: String,
    /// `manifests_prefix=`.
    pub manifests_prefix: String,
}

impl S3Layout {
    /// A layout from the three prefixes.
    pub fn new(prefix: &str, blobs_prefix: &str, manifests_prefix: &str) -> Self {
        S3Layout {
            prefix: prefix.to_owned(),
            blobs_prefix: blobs_prefix.to_owned(),
            manifests_prefix: manifests_prefix.to_owned(),
        }
    }

    /// `<prefix><blobs_prefix><digest>`, e.g. `proj/blobs/sha256:…`.
    pub fn blob_key(&self, digest: &Digest) -> String {
        format!("{}{}{}", self.prefix, self.blobs_prefix, digest)
    }

    /// `<prefix><blobs_prefix>`: what every blob key starts with.
    pub fn blobs_key_prefix(&self) -> String {
        format!("{}{}", self.prefix, self.blobs_prefix)
    }

    /// `<prefix><manifests_prefix><name>`, e.g. `proj/manifests/main`.
    pub fn manifest_key(&self, name: &str) -> String {
        format!("{}{}{}", self.prefix, self.manifests_prefix, name)
    }
}

/// An object_store path whose key is exactly `key`, or an error naming the attribute.
///
/// object_store cannot address keys with a leading `/`, an empty segment (`//`), a `.` or `..`
/// segment, a trailing `/` or control characters; `Path::parse` keeps every other character
/// (`:`, `%`, spaces) as it is, so the stored key is the string BuildKit uses.
pub(crate) fn key_path(key: &str, attribute: &str, value: &str) -> Result<Path> {
    let bad = || {
        Error::InvalidValue {
        attribute: attribute.to_owned(),
        value: value.to_owned(),
        allowed: format!(
            "it gives the object key {key:?}, which bkcache cannot address: keys must not start or end with '/', contain '//', a '.' or '..' segment, or control characters"
        ),
    }
    };
    match Path::parse(key) {
        Ok(p) if p.as_ref() == key => Ok(p),
        _ => Err(bad()),
    }
}

/// Parse a Go `time.ParseDuration` string (`24h`, `1h30m`, `1.5s`, `300ms`, `0`), refusing
/// negative durations.
pub fn parse_go_duration(attribute: &str, value: &str) -> Result<Duration> {
    bkcache_core::gojson::parse_go_duration(value).ok_or_else(|| Error::InvalidValue {
        attribute: attribute.to_owned(),
        value: value.to_owned(),
        allowed:
            "expected a non-negative Go duration such as 24h, 1h30m, 90s, 1.5h or 500ms (units ns, us, ms, s, m, h)"
                .into(),
    })
}

/// A parsed S3 endpoint (`endpoint_url=` or `$AWS_ENDPOINT_URL_S3` / `$AWS_ENDPOINT_URL`).
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port][/path]`, without user info or trailing `/`.
    pub base: String,
    /// The host, to insert the bucket for virtual-hosted style.
    pub host: String,
    pub scheme: String,
    pub port: Option<u16>,
    pub path: String,
    /// The host is an IP address (no `bucket.<ip>` name exists: path style).
    pub is_ip: bool,
}

fn parse_endpoint(attribute: &str, value: &str) -> Result<Endpoint> {
    let err = |why: &str| Error::InvalidValue {
        attribute: attribute.to_owned(),
        value: value.to_owned(),
        allowed: format!("expected an http:// or https:// URL such as https://minio.example.com:9000 ({why})"),
    };
    let url = reqwest::Url::parse(value).map_err(|e| err(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(err("unsupported scheme"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err(
            "credentials in the URL are not allowed: use access_key_id and secret_access_key",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err("no query or fragment allowed"));
    }
    let host = url.host_str().ok_or_else(|| err("no host"))?.to_owned();
    let is_ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok();
    let path = url.path().trim_end_matches('/').to_owned();
    let port = url.port();
    let base = match port {
        Some(p) => format!("{}://{host}:{p}{path}", url.scheme()),
        None => format!("{}://{host}{path}", url.scheme()),
    };
    Ok(Endpoint {
        base,
        host,
        scheme: url.scheme().to_owned(),
        port,
        path,
        is_ip,
    })
}

/// Where the store's credentials come from. `Debug` never shows a secret.
pub(crate) enum CredentialSource {
    /// Fixed keys (attributes, environment or a profile).
    Static {
        key_id: String,
        secret: String,
        token: Option<String>,
        origin: String,
    },
    /// A profile's `credential_process`.
    Process { command: String, origin: String },
    /// `AssumeRoleWithWebIdentity` (EKS IRSA and similar).
    WebIdentity {
        token_file: String,
        role_arn: String,
        session_name: Option<String>,
        sts_endpoint: Option<String>,
        origin: String,
    },
    /// ECS / EKS Pod Identity container credentials.
    Container {
        relative_uri: Option<String>,
        full_uri: Option<String>,
        token_file: Option<String>,
    },
    /// EC2 instance metadata (IMDSv2).
    Instance { endpoint: Option<String> },
}

impl CredentialSource {
    /// Where the credentials come from, for messages.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Static { origin, .. } => origin.clone(),
            CredentialSource::Process { origin, .. } => format!("credential_process of {origin}"),
            CredentialSource::WebIdentity { origin, .. } => format!("web identity ({origin})"),
            CredentialSource::Container { .. } => "container credentials ($AWS_CONTAINER_CREDENTIALS_*)".into(),
            CredentialSource::Instance { .. } => {
                "EC2 instance metadata (no access_key_id/secret_access_key attributes, no $AWS_ACCESS_KEY_ID, no profile with credentials were found)".into()
            }
        }
    }
}

impl CredentialSource {
    /// The static secrets (to scrub from server messages); empty for dynamic sources.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            CredentialSource::Static {
                key_id, secret, token, ..
            } => {
                let mut v = vec![key_id.as_str(), secret.as_str()];
                v.extend(token.as_deref());
                v
            }
            _ => Vec::new(),
        }
    }
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialSource({})", self.describe())
    }
}

/// Every attribute of one `type=s3` spec, parsed and checked.
#[derive(Debug)]
pub(crate) struct Settings {
    pub bucket: String,
    pub region: String,
    pub layout: S3Layout,
    pub names: Vec<String>,
    pub touch_refresh: Duration,
    pub endpoint: Option<Endpoint>,
    pub path_style: bool,
    pub upload_parallelism: usize,
    pub retry_max_attempts: usize,
    pub import_all_names: bool,
    pub credentials: CredentialSource,
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({})", self.base)
    }
}

impl Settings {
    /// Parse a spec, with BuildKit's defaults and `$AWS_*` fallbacks.
    pub fn from_spec(spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Settings> {
        let a = Attrs::new(spec, direction, env);
        let bucket = a.required(
            "bucket",
            &["AWS_BUCKET"],
            "bucket ($AWS_BUCKET) not set for s3 cache: add bucket=<name> or set AWS_BUCKET",
        )?;
        let region = a.required(
            "region",
            &["AWS_REGION"],
            "region ($AWS_REGION) not set for s3 cache: add region=<region> (e.g. us-east-1) or set AWS_REGION",
        )?;
        let (layout, names) = layout_and_names(spec, &a)?;
        let touch_refresh = a.go_duration("touch_refresh", DEFAULT_TOUCH_REFRESH)?;
        let endpoint = match a.get("endpoint_url") {
            Some(v) => Some(parse_endpoint("endpoint_url", v)?),
            None => match env.var("AWS_ENDPOINT_URL_S3").or_else(|| env.var("AWS_ENDPOINT_URL")) {
                Some(v) => Some(parse_endpoint("$AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL", v)?),
                None => None,
            },
        };
        let use_path_style = a.go_bool("use_path_style", false)?;
        // Virtual-hosted style needs `<bucket>.<host>` to resolve and to match the TLS
        // certificate: path style for IP endpoints and for dotted bucket names over HTTPS.
        let path_style = use_path_style
            || endpoint.as_ref().is_some_and(|e| e.is_ip)
            || (bucket.contains('.') && endpoint.as_ref().is_none_or(|e| e.scheme == "https"));
        let upload_parallelism = a.positive(
            "upload_parallelism",
            DEFAULT_UPLOAD_PARALLELISM,
            "blobs uploaded at once",
        )?;
        let retry_max_attempts = a.positive(
            "retry_max_attempts",
            DEFAULT_RETRY_MAX_ATTEMPTS,
            "attempts per request, including the first",
        )?;
        check_accepted_only(spec)?;
        let import_all_names = a.go_bool("import_all_names", false)?;
        let credentials = resolve_credentials(spec, env)?;
        Ok(Settings {
            bucket,
            region,
            layout,
            names,
            touch_refresh,
            endpoint,
            path_style,
            upload_parallelism,
            retry_max_attempts,
            import_all_names,
            credentials,
            ca_file: env.var("SSL_CERT_FILE").map(PathBuf::from),
        })
    }
}

/// The key layout and the names, every key they make checked to be addressable exactly.
fn layout_and_names(spec: &CacheSpec, attrs: &Attrs) -> Result<(S3Layout, Vec<String>)> {
    let layout = S3Layout::new(
        spec.get("prefix").unwrap_or(""),
        spec.get("blobs_prefix").unwrap_or("blobs/"),
        spec.get("manifests_prefix").unwrap_or("manifests/"),
    );
    let names = attrs.names("name", DEFAULT_NAME)?;
    // Every key this store will use must be addressable exactly.
    let sample = Digest::of_bytes(b"");
    key_path(
        &layout.blob_key(&sample),
        "prefix + blobs_prefix",
        &layout.blobs_key_prefix(),
    )?;
    for n in &names {
        key_path(
            &layout.manifest_key(n),
            "prefix/manifests_prefix/name",
            &layout.manifest_key(n),
        )?;
    }
    Ok((layout, names))
}

/// Attributes accepted for BuildKit compatibility only: their values are still checked.
fn check_accepted_only(spec: &CacheSpec) -> Result<()> {
    let attr = |k: &str| spec.get(k).filter(|v| !v.is_empty());
    if let Some(v) = attr("retry_mode") {
        if v != "standard" && v != "adaptive" {
            return Err(Error::InvalidValue {
                attribute: "retry_mode".into(),
                value: v.to_owned(),
                allowed: "expected standard or adaptive".into(),
            });
        }
    }
    if let Some(v) = attr("disable_accept_encoding") {
        parse_go_bool("disable_accept_encoding", v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s: &str| parse_go_duration("touch_refresh", s).unwrap();
        assert_eq!(d("24h"), Duration::from_secs(86400));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("300ms"), Duration::from_millis(300));
        assert_eq!(d("2h45m30.5s"), Duration::from_millis(9_930_500));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("-0"), Duration::ZERO);
        assert_eq!(d("+1s"), Duration::from_secs(1));
        assert_eq!(d("1µs"), Duration::from_micros(1));
        for bad in ["", "1", "1d", "h", "-1h", "1..5s", "abc", "1h-", ".s"] {
            let e = parse_go_duration("touch_refresh", bad).unwrap_err().to_string();
            assert!(e.contains("touch_refresh") && e.contains("Go duration"), "{bad}: {e}");
        }
    }

    fn settings(attrs: &str, env: &Env) -> Result<Settings> {
        let spec = &CacheSpec::parse(&format!("type=s3,{attrs}")).unwrap()[0];
        Settings::from_spec(spec, Direction::Export, env)
    }

    fn no_env() -> Env {
        Env::empty("/").with_var("AWS_EC2_METADATA_DISABLED", "true")
    }

    #[test]
    fn defaults_and_fallbacks() {
        let env = no_env()
            .with_var("AWS_BUCKET", "envb")
            .with_var("AWS_REGION", "eu-west-3")
            .with_var("AWS_ACCESS_KEY_ID", "AKIDENV")
            .with_var("AWS_SECRET_ACCESS_KEY", "env-secret-zzz");
        let s = settings("mode=max", &env).unwrap();
        assert_eq!((s.bucket.as_str(), s.region.as_str()), ("envb", "eu-west-3"));
        assert_eq!(s.names, vec!["buildkit"]);
        assert_eq!(s.layout, S3Layout::new("", "blobs/", "manifests/"));
        assert_eq!(s.touch_refresh, DEFAULT_TOUCH_REFRESH);
        assert_eq!((s.upload_parallelism, s.retry_max_attempts), (4, 3));
        assert!(!s.path_style && s.endpoint.is_none());
        assert_eq!(s.credentials.describe(), "$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY");
        assert!(!format!("{s:?}").contains("env-secret-zzz"));

        let s = settings(
            "bucket=b,region=r,name=main;alt,prefix=p/,endpoint_url=http://127.0.0.1:9000/,access_key_id=a,secret_access_key=attr-secret-zzz,session_token=tok-zzz",
            &env,
        )
        .unwrap();
        assert_eq!(s.names, vec!["main", "alt"]);
        assert!(s.path_style, "IP endpoints use path style");
        assert_eq!(s.endpoint.as_ref().unwrap().base, "http://127.0.0.1:9000");
        assert!(s.credentials.describe().contains("attributes"));
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("attr-secret-zzz") && !dbg.contains("tok-zzz"), "{dbg}");

        let s = settings("bucket=b,region=r,endpoint_url=https://minio.example:9000", &env).unwrap();
        assert!(!s.path_style);
        let s = settings(
            "bucket=b,region=r,endpoint_url=https://minio.example:9000,use_path_style=true",
            &env,
        )
        .unwrap();
        assert!(s.path_style);
    }

    #[test]
    fn clear_errors() {
        let env = no_env();
        for (attrs, want) in [
            ("region=r", "bucket ($AWS_BUCKET) not set"),
            ("bucket=b", "region ($AWS_REGION) not set"),
            (
                "bucket=b,region=r,touch_refresh=1d",
                "expected a non-negative Go duration",
            ),
            (
                "bucket=b,region=r,upload_parallelism=0",
                "upload_parallelism must be a positive integer",
            ),
            (
                "bucket=b,region=r,upload_parallelism=x",
                "upload_parallelism must be a positive integer",
            ),
            (
                "bucket=b,region=r,retry_max_attempts=0",
                "retry_max_attempts must be a positive integer",
            ),
            ("bucket=b,region=r,retry_mode=fast", "expected standard or adaptive"),
            ("bucket=b,region=r,use_path_style=yes", "expected a boolean"),
            (
                "bucket=b,region=r,endpoint_url=ftp://x",
                "expected an http:// or https:// URL",
            ),
            (
                "bucket=b,region=r,endpoint_url=http://u:pw@x",
                "credentials in the URL are not allowed",
            ),
            ("bucket=b,region=r,name=a;;b", "non-empty names"),
            ("bucket=b,region=r,prefix=/abs/", "cannot address"),
            ("bucket=b,region=r,blobs_prefix=b//", "cannot address"),
            ("bucket=b,region=r,access_key_id=AKID", "secret_access_key is not"),
            ("bucket=b,region=r", "no credentials"),
        ] {
            let e = settings(attrs, &env).unwrap_err().to_string();
            assert!(e.contains(want), "{attrs}: {e}");
        }
        let e = settings("bucket=b,region=r,secret_access_key=lonely-secret-zzz", &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("access_key_id is not") && !e.contains("lonely-secret-zzz"),
            "{e}"
        );
    }

    #[test]
    fn shared_profiles() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIDDEF\naws_secret_access_key = def-secret-zzz\n\n[ci]\naws_access_key_id=AKIDCI\naws_secret_access_key=ci-secret-zzz\naws_session_token=ci-token\n",
        )
        .unwrap();
        std::fs::write(
            home.path().join(".aws/config"),
            "[profile proc]\ncredential_process = echo hi\n[profile sso]\nsso_session = corp\n[profile web]\nrole_arn = arn:aws:iam::1:role/x\nweb_identity_token_file = /t\n",
        )
        .unwrap();
        let env = no_env().with_var("HOME", home.path().to_str().unwrap());
        let s = settings("bucket=b,region=r", &env).unwrap();
        assert!(
            s.credentials.describe().contains("profile \"default\""),
            "{:?}",
            s.credentials
        );
        let with = |p: &str| settings("bucket=b,region=r", &env.clone().with_var("AWS_PROFILE", p));
        match with("ci").unwrap().credentials {
            CredentialSource::Static { key_id, token, .. } => {
                assert_eq!((key_id.as_str(), token.as_deref()), ("AKIDCI", Some("ci-token")))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            with("proc").unwrap().credentials,
            CredentialSource::Process { .. }
        ));
        assert!(matches!(
            with("web").unwrap().credentials,
            CredentialSource::WebIdentity { .. }
        ));
        let e = with("sso").unwrap_err().to_string();
        assert!(e.contains("sso_session") && e.contains("credential_process"), "{e}");
        let e = with("nope").unwrap_err().to_string();
        assert!(e.contains("no such profile"), "{e}");
        // An explicit profile wins over environment keys, as in the AWS SDK.
        let env2 = env
            .clone()
            .with_var("AWS_PROFILE", "ci")
            .with_var("AWS_ACCESS_KEY_ID", "AKIDENV")
            .with_var("AWS_SECRET_ACCESS_KEY", "x");
        assert!(settings("bucket=b,region=r", &env2)
            .unwrap()
            .credentials
            .describe()
            .contains("\"ci\""));
    }

    #[tokio::test]
    async fn credential_process_is_run_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let cmd = format!(
            "echo x >> {}; echo '{{\"Version\":1,\"AccessKeyId\":\"AKIDP\",\"SecretAccessKey\":\"proc-secret\",\"Expiration\":\"2999-01-01T00:00:00Z\"}}'",
            count.display()
        );
        let p = ProcessProvider::new(cmd, "profile \"p\"".into());
        assert_eq!(p.get_credential().await.unwrap().key_id, "AKIDP");
        assert_eq!(p.get_credential().await.unwrap().secret_key, "proc-secret");
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1, "cached");
        let bad = ProcessProvider::new(
            "echo '{\"SecretAccessKey\":\"leak-me\"}'".into(),
            "profile \"p\"".into(),
        );
        let e = bad.get_credential().await.unwrap_err().to_string();
        assert!(e.contains("expected JSON") && !e.contains("leak-me"), "{e}");
        assert!(!format!("{p:?}").contains("AKIDP"));
    }
}
