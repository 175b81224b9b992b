//! Attribute and environment resolution for `type=azblob`: everything checked before any
//! request, so a typo is an error naming the attribute and what is allowed.

use std::fmt;

pub(crate) use bkcache_core::Secret;

use base64::Engine;
use bkcache_core::factory::printable_value;
use bkcache_core::{CacheSpec, Digest, Direction, Env, Error, Result};
use reqwest::Url;

mod resolve;

use resolve::{account_name, account_url, credentials, names, upload_parallelism};

/// The container BuildKit uses when none is given.
pub const DEFAULT_CONTAINER: &str = "buildkit-cache";
/// The manifest name BuildKit uses when none is given.
pub const DEFAULT_NAME: &str = "buildkit";
/// Blobs uploaded at once per store when `upload_parallelism` is not given.
pub const DEFAULT_UPLOAD_PARALLELISM: usize = 4;

/// Azurite's and the Azure storage emulator's well-known development account (public).
const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key, published in Azure's documentation (used only for
/// `UseDevelopmentStorage=true` connection strings).
const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How requests are authorised (the secret itself stays inside the store).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Shared key: account name plus base64 account key.
    SharedKey(Secret),
    /// A SAS token, as query pairs.
    Sas(Vec<(String, String)>),
    /// Microsoft Entra ID tokens: workload identity, service principal or managed identity,
    /// from `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`.
    Token(TokenSettings),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::SharedKey(_) => f.write_str("SharedKey(<redacted>)"),
            Auth::Sas(_) => f.write_str("Sas(<redacted>)"),
            Auth::Token(t) => write!(f, "Token({})", t.kind()),
        }
    }
}

/// Entra ID settings from the environment (the client secret is a [`Secret`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenSettings {
    pub(crate) client_id: Option<String>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) federated_token_file: Option<String>,
    pub(crate) authority_host: Option<String>,
}

impl TokenSettings {
    /// Which credential object_store will pick from these (its `auto` order).
    fn kind(&self) -> &'static str {
        if self.client_id.is_some() && self.tenant_id.is_some() && self.federated_token_file.is_some() {
            "workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE)"
        } else if self.client_id.is_some() && self.tenant_id.is_some() && self.client_secret.is_some() {
            "service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET)"
        } else {
            "managed identity (Azure instance metadata service)"
        }
    }
}

/// The resolved `type=azblob` settings.
///
/// `Debug` never shows the key or SAS token.
#[derive(Clone)]
pub struct AzblobConfig {
    /// The account URL, without any query (a SAS in it moved to the credentials).
    pub account_url: Url,
    /// The storage account name (signs shared-key requests).
    pub account_name: String,
    /// The container (created on export when missing).
    pub container: String,
    /// `prefix`.
    pub prefix: String,
    /// `blobs_prefix`.
    pub blobs_prefix: String,
    /// `manifests_prefix`.
    pub manifests_prefix: String,
    /// `name`, split on `;`.
    pub names: Vec<String>,
    /// Blobs uploaded at once (`upload_parallelism`).
    pub upload_parallelism: usize,
    pub(crate) auth: Auth,
    /// Where the credentials came from, for error hints (never the secret).
    pub(crate) credential_source: String,
}

impl fmt::Debug for AzblobConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzblobConfig")
            .field("account_url", &self.account_url.as_str())
            .field("account_name", &self.account_name)
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field("blobs_prefix", &self.blobs_prefix)
            .field("manifests_prefix", &self.manifests_prefix)
            .field("names", &self.names)
            .field("upload_parallelism", &self.upload_parallelism)
            .field("auth", &self.auth)
            .finish()
    }
}

/// The parts of an `AZURE_STORAGE_CONNECTION_STRING` this backend reads.
#[derive(Default)]
struct ConnectionString {
    endpoint: Option<String>,
    account_name: Option<String>,
    account_key: Option<Secret>,
    sas: Option<Secret>,
}

const CONNECTION_STRING: &str = "AZURE_STORAGE_CONNECTION_STRING";

impl ConnectionString {
    /// Parse `Key=Value;…` (keys case-insensitive; values may hold `=`). Errors never quote it:
    /// it holds secrets.
    fn parse(text: &str) -> Result<Self> {
        let mut cs = ConnectionString::default();
        let (mut protocol, mut suffix, mut dev) = (None, None, false);
        for field in text.split(';').map(str::trim).filter(|f| !f.is_empty()) {
            let Some((k, v)) = field.split_once('=') else {
                return Err(env_error(
                    CONNECTION_STRING,
                    "expected Key=Value pairs separated by ';' (e.g. DefaultEndpointsProtocol=https;AccountName=…;AccountKey=…)",
                ));
            };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "blobendpoint" => cs.endpoint = Some(v.to_owned()),
                "accountname" => cs.account_name = Some(v.to_owned()),
                "accountkey" => cs.account_key = Some(Secret::new(v.to_owned())),
                "sharedaccesssignature" => cs.sas = Some(Secret::new(v.to_owned())),
                "defaultendpointsprotocol" => protocol = Some(v.to_owned()),
                "endpointsuffix" => suffix = Some(v.to_owned()),
                "usedevelopmentstorage" => dev = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        if dev {
            cs.endpoint
                .get_or_insert_with(|| format!("http://127.0.0.1:10000/{DEV_ACCOUNT}"));
            cs.account_name.get_or_insert_with(|| DEV_ACCOUNT.to_owned());
            if cs.sas.is_none() {
                cs.account_key.get_or_insert_with(|| Secret::new(DEV_KEY.to_owned()));
            }
        }
        if cs.endpoint.is_none() {
            if let Some(account) = &cs.account_name {
                cs.endpoint = Some(format!(
                    "{}://{account}.blob.{}",
                    protocol.as_deref().unwrap_or("https"),
                    suffix.as_deref().unwrap_or("core.windows.net")
                ));
            }
        }
        Ok(cs)
    }
}

fn env_error(var: &str, allowed: &str) -> Error {
    Error::InvalidValue {
        attribute: format!("${var} (environment)"),
        value: "<redacted>".into(),
        allowed: allowed.into(),
    }
}

fn invalid(attribute: &str, value: &str, allowed: impl Into<String>) -> Error {
    Error::InvalidValue {
        attribute: attribute.into(),
        value: printable_value(attribute, value).to_owned(),
        allowed: allowed.into(),
    }
}

/// Go's `path.Clean` (BuildKit joins keys with `filepath.Join`, which is `path.Join` on Linux).
pub fn go_path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let body = out.join("/");
    if rooted {
        format!("/{body}")
    } else if body.is_empty() {
        ".".into()
    } else {
        body
    }
}

/// Go's `path.Join`: the non-empty elements joined with `/`, cleaned; `""` when all are empty.
///
/// ```
/// use bkcache_azblob::go_path_join;
/// assert_eq!(go_path_join(&["proj", "blobs", "sha256:ab"]), "proj/blobs/sha256:ab");
/// assert_eq!(go_path_join(&["proj/", "/manifests/", "main"]), "proj/manifests/main");
/// assert_eq!(go_path_join(&["", "blobs", "x"]), "blobs/x");
/// assert_eq!(go_path_join(&["a/../b", ".", "c"]), "b/c");
/// ```
pub fn go_path_join(parts: &[&str]) -> String {
    let joined = parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    if joined.is_empty() {
        joined
    } else {
        go_path_clean(&joined)
    }
}

/// Whether a cleaned key is a usable blob name (relative, no `..`, no control characters).
fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() || key == "." {
        Some("the blob name would be empty")
    } else if key.starts_with('/') {
        Some("blob names would start with '/': use a relative prefix such as proj")
    } else if key == ".." || key.starts_with("../") {
        Some("blob names would start with '..'")
    } else if key.chars().any(|c| c.is_control()) {
        Some("blob names cannot hold control characters")
    } else if key.len() > 1024 {
        Some("blob names are limited to 1024 characters")
    } else {
        None
    }
}

/// Check an account URL before any request: `http(s)://host[:port][/account]`, no typo'd
/// scheme, no fragment, no user info; returns the URL without query and the query (a SAS).
pub fn parse_account_url(text: &str) -> Result<(Url, Option<String>)> {
    const EXAMPLE: &str =
        "expected https://ACCOUNT.blob.core.windows.net (or http://127.0.0.1:10000/devstoreaccount1 for Azurite)";
    // A query may hold a SAS: never echo it.
    let shown = match text.split_once('?') {
        Some((base, _)) => format!("{base}?<redacted>"),
        None => text.to_owned(),
    };
    let err = |why: &str| invalid("account_url", &shown, format!("{why}; {EXAMPLE}"));
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        let why = if let Some((scheme, _)) = trimmed.split_once("://") {
            format!("scheme {scheme:?} is not http or https")
        } else if lower.starts_with("http:")
            || lower.starts_with("https:")
            || lower.starts_with("http/")
            || lower.starts_with("https/")
        {
            "the scheme must be followed by ://".to_owned()
        } else {
            match trimmed.split_once(':') {
                Some((scheme, rest))
                    if scheme.chars().all(|c| c.is_ascii_alphabetic())
                        && !rest.starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    format!("scheme {scheme:?} is not http or https")
                }
                _ => "it has no scheme".to_owned(),
            }
        };
        return Err(err(&why));
    }
    let mut url = Url::parse(trimmed).map_err(|e| err(&format!("it is not a valid URL ({e})")))?;
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(err("it has no host"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::InvalidValue {
            attribute: "account_url".into(),
            value: "<redacted: it holds user info>".into(),
            allowed: format!("credentials do not go in the URL: use secret_access_key or sas_token; {EXAMPLE}"),
        });
    }
    if url.fragment().is_some() {
        return Err(err("it has a #fragment"));
    }
    let host = host.to_ascii_lowercase();
    for cloud in ["core.windows.net", "core.chinacloudapi.cn", "core.usgovcloudapi.net"] {
        if host.ends_with(cloud) && !host.ends_with(&format!(".blob.{cloud}")) {
            return Err(err(&format!(
                "{host} is not a Blob Storage endpoint (those end in .blob.{cloud})"
            )));
        }
        if host.ends_with(&format!(".blob.{cloud}")) && url.path() != "/" && !url.path().is_empty() {
            return Err(err(
                "an Azure account URL has no path: give the container as container=, the folder as prefix=",
            ));
        }
    }
    let query = url.query().filter(|q| !q.is_empty()).map(str::to_owned);
    url.set_query(None);
    Ok((url, query))
}

/// The account name an account URL implies: the first path segment for path-style (IP,
/// `localhost` or dotless hosts, as Azurite), else the first DNS label (as BuildKit).
pub fn account_from_url(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let path_style = host.eq_ignore_ascii_case("localhost")
        || !host.contains('.')
        || host.starts_with('[')
        || host.parse::<std::net::Ipv4Addr>().is_ok();
    let name = if path_style {
        url.path_segments()?.next()?.to_owned()
    } else {
        host.split('.').next()?.to_owned()
    };
    (!name.is_empty()).then_some(name)
}

/// Azure's container-name rules (3-63 of `a-z0-9-`, starting with a letter or digit, no `--`,
/// no trailing `-`), plus `$root`.
fn check_container(name: &str) -> Result<()> {
    if name == "$root" {
        return Ok(());
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ok = (3..=63).contains(&name.len())
        && ok_chars
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "container",
            name,
            "a container name is 3-63 characters of lowercase letters, digits and single hyphens, starting and ending with a letter or digit",
        ))
    }
}

fn check_key(key: &str) -> Result<()> {
    match base64::engine::general_purpose::STANDARD.decode(key.trim()) {
        Ok(bytes) if !bytes.is_empty() => Ok(()),
        _ => Err(Error::InvalidValue {
            attribute: "secret_access_key".into(),
            value: "<redacted>".into(),
            allowed: "not valid base64: an Azure storage account key is base64, 88 characters".into(),
        }),
    }
}

fn parse_sas(attribute: &str, text: &str) -> Result<Vec<(String, String)>> {
    let pairs = object_store::azure::split_sas(text.trim()).map_err(|_| Error::InvalidValue {
        attribute: attribute.into(),
        value: "<redacted>".into(),
        allowed: "a SAS token is a query string such as sv=…&se=…&sp=…&sig=… (a leading ? is fine)".into(),
    })?;
    if !pairs.iter().any(|(k, _)| k == "sig") {
        return Err(Error::InvalidValue {
            attribute: attribute.into(),
            value: "<redacted>".into(),
            allowed: "a SAS token must carry a signature (sig=…)".into(),
        });
    }
    Ok(pairs)
}

impl AzblobConfig {
    /// Resolve a `type=azblob` spec against the environment, as BuildKit's `getConfig` does
    /// (attribute, then `BUILDKIT_AZURE_STORAGE_*`, then default), plus the Azure CLI's
    /// variables for what BuildKit leaves to its SDK. No request is made.
    pub fn from_spec(spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Self> {
        let cs = match env.var(CONNECTION_STRING) {
            Some(text) => Some(ConnectionString::parse(text)?),
            None => None,
        };
        let (account_url, url_sas, url_source) = account_url(spec, direction, env, cs.as_ref())?;
        let account_name = account_name(spec, env, cs.as_ref(), &account_url, url_source)?;
        let container = spec
            .get("container")
            .map(str::to_owned)
            .or_else(|| env.var("BUILDKIT_AZURE_STORAGE_CONTAINER").map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_CONTAINER.to_owned());
        check_container(&container)?;
        let prefix = spec
            .get("prefix")
            .map(str::to_owned)
            .or_else(|| env.var("BUILDKIT_AZURE_STORAGE_PREFIX").map(str::to_owned))
            .unwrap_or_default();
        let blobs_prefix = spec.get("blobs_prefix").unwrap_or("blobs").to_owned();
        let manifests_prefix = spec.get("manifests_prefix").unwrap_or("manifests").to_owned();
        let names = names(spec)?;
        let upload_parallelism = upload_parallelism(spec)?;
        let (auth, credential_source) = credentials(spec, env, cs.as_ref(), url_sas, &account_name)?;
        let config = AzblobConfig {
            account_url,
            account_name,
            container,
            prefix,
            blobs_prefix,
            manifests_prefix,
            names,
            upload_parallelism,
            auth,
            credential_source,
        };
        config.check_keys()?;
        Ok(config)
    }

    /// Every key this config produces must be a usable blob name.
    fn check_keys(&self) -> Result<()> {
        let blame = |parts: &[(&str, &str)], key: &str, why: &str| -> Error {
            let (attr, value) = parts
                .iter()
                .find(|(_, v)| !v.is_empty())
                .copied()
                .unwrap_or(("prefix", ""));
            invalid(attr, value, format!("{why} (key {key:?})"))
        };
        let sample = Digest::of_bytes(b"");
        let key = self.blob_key(&sample);
        let parts = [
            ("prefix", self.prefix.as_str()),
            ("blobs_prefix", self.blobs_prefix.as_str()),
        ];
        if let Some(why) = key_problem(&key) {
            return Err(blame(&parts, &key, why));
        }
        for name in &self.names {
            let key = self.manifest_key(name);
            let parts = [
                ("prefix", self.prefix.as_str()),
                ("manifests_prefix", self.manifests_prefix.as_str()),
                ("name", name.as_str()),
            ];
            if let Some(why) = key_problem(&key) {
                return Err(blame(&parts, &key, why));
            }
            if key == self.blob_dir() || key.starts_with(&format!("{}/sha256:", self.blob_dir())) {
                return Err(blame(
                    &parts,
                    &key,
                    "the manifest would sit among the blobs: use another name or manifests_prefix",
                ));
            }
        }
        Ok(())
    }

    /// The folder the blobs live in (`prefix/blobs_prefix`, cleaned; empty at the top).
    pub fn blob_dir(&self) -> String {
        let d = go_path_join(&[&self.prefix, &self.blobs_prefix]);
        if d == "." {
            String::new()
        } else {
            d
        }
    }

    /// A blob's name: `path.Join(prefix, blobs_prefix, digest)`, as BuildKit.
    pub fn blob_key(&self, digest: &Digest) -> String {
        go_path_join(&[&self.prefix, &self.blobs_prefix, digest.as_str()])
    }

    /// A manifest's name: `path.Join(prefix, manifests_prefix, name)`, as BuildKit.
    pub fn manifest_key(&self, name: &str) -> String {
        go_path_join(&[&self.prefix, &self.manifests_prefix, name])
    }

    /// Where the credentials came from (an attribute or variable name; never the secret).
    pub fn credential_source(&self) -> &str {
        &self.credential_source
    }

    /// A description free of secrets: `azblob:URL/CONTAINER/MANIFEST-KEY[;NAME…]`.
    pub fn location(&self) -> String {
        let mut s = format!(
            "azblob:{}/{}/",
            self.account_url.as_str().trim_end_matches('/'),
            self.container
        );
        if let Some(first) = self.names.first() {
            s.push_str(&self.manifest_key(first));
        }
        for n in self.names.iter().skip(1) {
            s.push(';');
            s.push_str(n);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(attrs: &str) -> CacheSpec {
        let text = if attrs.is_empty() {
            "type=azblob".to_owned()
        } else {
            format!("type=azblob,{attrs}")
        };
        CacheSpec::parse(&text).unwrap().remove(0)
    }

    fn cfg(attrs: &str) -> Result<AzblobConfig> {
        AzblobConfig::from_spec(&spec(attrs), Direction::Export, &Env::empty("/"))
    }

    fn err(attrs: &str) -> String {
        cfg(attrs).unwrap_err().to_string()
    }

    const KEY: &str = "a2V5LWZvci11bml0LXRlc3RzLW9ubHk=";

    #[test]
    fn go_path_semantics() {
        for (input, want) in [
            ("", "."),
            ("a//b", "a/b"),
            ("a/./b/", "a/b"),
            ("a/../../b", "../b"),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/..", "."),
        ] {
            assert_eq!(go_path_clean(input), want, "{input}");
        }
        assert_eq!(go_path_join(&["", ""]), "");
        assert_eq!(go_path_join(&["proj/", "blobs", "sha256:x"]), "proj/blobs/sha256:x");
    }

    #[test]
    fn keys_are_buildkits() {
        let d = Digest::parse("sha256:3f1abbd8088d17ca57cd0e5db0f34c323280424f021a578fe0036d3b5bb58898").unwrap();
        let c = cfg(&format!(
            "account_url=http://127.0.0.1:1/devstoreaccount1,prefix=proj,name=main,secret_access_key={KEY}"
        ))
        .unwrap();
        assert_eq!(c.blob_key(&d), format!("proj/blobs/{d}"));
        assert_eq!(c.manifest_key("main"), "proj/manifests/main");
        assert_eq!(c.account_name, "devstoreaccount1");
        assert_eq!(c.container, "buildkit-cache");
        let c = cfg(&format!("account_url=https://acct.blob.core.windows.net,prefix=a//b/,blobs_prefix=/x/,manifests_prefix=m/,secret_access_key={KEY}")).unwrap();
        assert_eq!(c.blob_key(&d), format!("a/b/x/{d}"));
        assert_eq!(c.manifest_key("buildkit"), "a/b/m/buildkit");
        assert_eq!(c.account_name, "acct");
        let c = cfg(&format!(
            "account_url=https://acct.blob.core.windows.net,blobs_prefix=,secret_access_key={KEY}"
        ))
        .unwrap();
        assert_eq!(c.blob_key(&d), d.as_str());
        assert_eq!(c.blob_dir(), "");
    }

    #[test]
    fn account_url_errors_name_the_problem() {
        for (url, want) in [
            ("acct.blob.core.windows.net", "has no scheme"),
            ("127.0.0.1:10000/devstoreaccount1", "has no scheme"),
            ("localhost:10000/devstoreaccount1", "has no scheme"),
            ("ftp:x", "scheme \"ftp\" is not http or https"),
            (
                "htps://acct.blob.core.windows.net",
                "scheme \"htps\" is not http or https",
            ),
            ("https//acct.blob.core.windows.net", "must be followed by ://"),
            ("https:acct.blob.core.windows.net", "must be followed by ://"),
            ("https://acct.file.core.windows.net", "not a Blob Storage endpoint"),
            ("https://acct.blob.core.windows.net/mycontainer", "has no path"),
            ("https://acct.blob.core.windows.net#x", "fragment"),
            ("https://", "not a valid URL"),
        ] {
            let e = err(&format!("account_url={url},secret_access_key={KEY}"));
            assert!(e.contains(want) && e.contains("account_url"), "{url}: {e}");
            assert!(
                e.contains("expected https://ACCOUNT.blob.core.windows.net"),
                "{url}: {e}"
            );
        }
        let e = err("\"account_url=https://acct.blob.core.windows.net/c?sv=1&sig=SECRETSIG\"");
        assert!(e.contains("has no path") && !e.contains("SECRETSIG"), "{e}");
        let e = err(&format!(
            "account_url=https://me:pw@acct.blob.core.windows.net,secret_access_key={KEY}"
        ));
        assert!(
            !e.contains("pw@") && e.contains("secret_access_key or sas_token"),
            "{e}"
        );
        let e = cfg("").unwrap_err();
        assert!(matches!(e, Error::MissingAttribute { .. }), "{e}");
        assert!(e.to_string().contains("BUILDKIT_AZURE_STORAGE_ACCOUNT_URL"), "{e}");
    }

    #[test]
    fn other_values_are_checked() {
        let base = format!("account_url=http://127.0.0.1:1/devstoreaccount1,secret_access_key={KEY}");
        for (extra, attr, want) in [
            ("upload_parallelism=0", "upload_parallelism", "positive integer"),
            ("upload_parallelism=many", "upload_parallelism", "positive integer"),
            ("container=Bad_Name", "container", "3-63 characters"),
            ("container=ab", "container", "3-63 characters"),
            ("name=main;", "name", "none of them empty"),
            ("prefix=/abs", "prefix", "start with '/'"),
            ("prefix=../up", "prefix", "'..'"),
            (
                "manifests_prefix=blobs,name=sha256:x",
                "manifests_prefix",
                "among the blobs",
            ),
        ] {
            let e = err(&format!("{base},{extra}"));
            assert!(e.contains(attr) && e.contains(want), "{extra}: {e}");
        }
        let e = err("account_url=http://127.0.0.1:1,secret_access_key=x");
        assert!(e.contains("account_name"), "{e}");
        let e = err("account_url=http://127.0.0.1:1/a,secret_access_key=not*base64!");
        assert!(e.contains("base64") && !e.contains("not*base64"), "{e}");
        let e = err(&format!(
            "account_url=http://127.0.0.1:1/a,secret_access_key={KEY},sas_token=sig=x"
        ));
        assert!(e.contains("not both"), "{e}");
        let e = err("account_url=http://127.0.0.1:1/a,sas_token=sv=2020&se=x");
        assert!(e.contains("sig=") && !e.contains("sv=2020"), "{e}");
        assert_eq!(
            cfg(&format!("{base},upload_parallelism=9")).unwrap().upload_parallelism,
            9
        );
        assert_eq!(
            cfg(&format!("{base},name=a;b/c")).unwrap().names,
            vec!["a".to_string(), "b/c".to_string()]
        );
    }

    #[test]
    fn environment_fills_in() {
        let env = Env::empty("/")
            .with_var(
                "BUILDKIT_AZURE_STORAGE_ACCOUNT_URL",
                "https://envacct.blob.core.windows.net",
            )
            .with_var("BUILDKIT_AZURE_STORAGE_CONTAINER", "envcont")
            .with_var("BUILDKIT_AZURE_STORAGE_PREFIX", "envpre")
            .with_var("AZURE_STORAGE_KEY", KEY);
        let c = AzblobConfig::from_spec(&spec("name=n"), Direction::Import, &env).unwrap();
        assert_eq!(
            (c.account_name.as_str(), c.container.as_str(), c.prefix.as_str()),
            ("envacct", "envcont", "envpre")
        );
        assert_eq!(c.credential_source(), "$AZURE_STORAGE_KEY");
        assert!(matches!(c.auth, Auth::SharedKey(_)));

        let env = Env::empty("/").with_var(
            "AZURE_STORAGE_CONNECTION_STRING",
            &format!("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"),
        );
        let c = AzblobConfig::from_spec(&spec("prefix=p"), Direction::Import, &env).unwrap();
        assert_eq!(c.account_url.as_str(), "http://127.0.0.1:9/devstoreaccount1");
        assert_eq!(c.account_name, "devstoreaccount1");
        assert!(c.credential_source().contains("CONNECTION_STRING"));

        let env = Env::empty("/").with_var("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true");
        let c = AzblobConfig::from_spec(&spec("prefix=p"), Direction::Import, &env).unwrap();
        assert_eq!(c.account_url.as_str(), "http://127.0.0.1:10000/devstoreaccount1");

        let env = Env::empty("/").with_var("AZURE_STORAGE_CONNECTION_STRING", "garbage-without-equals;x");
        let e = AzblobConfig::from_spec(&spec("prefix=p"), Direction::Import, &env).unwrap_err();
        assert!(
            e.to_string().contains("Key=Value") && !e.to_string().contains("garbage"),
            "{e}"
        );

        // A SAS in the account URL becomes the credential and leaves the URL.
        let c = cfg("account_url=https://acct.blob.core.windows.net/?sv=2022-11-02&sig=abc%2Bdef").unwrap();
        assert!(matches!(&c.auth, Auth::Sas(p) if p.iter().any(|(k, v)| k == "sig" && v == "abc+def")));
        assert_eq!(c.account_url.query(), None);
        assert!(!c.location().contains("sig"), "{}", c.location());
        assert!(!format!("{c:?}").contains("abc"), "{c:?}");

        // Without any secret: Entra ID tokens, never an error at open.
        let env = Env::empty("/")
            .with_var("AZURE_CLIENT_ID", "cid")
            .with_var("AZURE_TENANT_ID", "tid")
            .with_var("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token");
        let c = AzblobConfig::from_spec(
            &spec("account_url=https://a.blob.core.windows.net"),
            Direction::Import,
            &env,
        )
        .unwrap();
        assert!(
            c.credential_source().starts_with("workload identity"),
            "{}",
            c.credential_source()
        );

        // A key for another account is not used.
        let env = Env::empty("/")
            .with_var("AZURE_STORAGE_ACCOUNT", "other")
            .with_var("AZURE_STORAGE_KEY", KEY);
        let c = AzblobConfig::from_spec(
            &spec("account_url=https://a.blob.core.windows.net"),
            Direction::Import,
            &env,
        )
        .unwrap();
        assert!(matches!(c.auth, Auth::Token(_)));
    }

    #[test]
    fn debug_and_location_hold_no_secret() {
        let c = cfg(&format!(
            "account_url=http://127.0.0.1:1/devstoreaccount1,name=a;b,secret_access_key={KEY}"
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains(KEY));
        assert_eq!(
            c.location(),
            "azblob:http://127.0.0.1:1/devstoreaccount1/buildkit-cache/manifests/a;b"
        );
    }
}
