//! Attributes, the environment a GitHub Actions job provides, the runtime token's scopes, and
//! the key names BuildKit uses.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bkcache_core::attrs::Attrs;
use bkcache_core::factory::{Applies, AttributeDoc};
use bkcache_core::{CacheSpec, Digest, Direction, Env, Error, Result};

use crate::error::GhaError;

/// The `version` every BuildKit key is saved under: `hex(sha256("|go-actionscache-1.0"))`
/// (go-actions-cache leaves the key out of it, so it is one constant).
pub const VERSION_HASH: &str = "693bb7016429d80366022f036f84856888c9f13e00145f5f6f4dce303a38d6f2";
/// BuildKit's key format version (`version = "1"` in `cache/remotecache/gha`).
pub const KEY_FORMAT: &str = "1";
/// Blob keys start with this, then the digest: `buildkit-blob-1-sha256:…`.
pub const BLOB_KEY_PREFIX: &str = "buildkit-blob-1-";
/// The default `scope=`.
pub const DEFAULT_SCOPE: &str = "buildkit";
/// The default `timeout=` (go-actions-cache's retry budget per request).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Where the GitHub REST API is when `GITHUB_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The host whose `url` means the v2 API even without `url_v2` (BuildKit's rule).
const V2_HOST: &str = "results-receiver.actions.githubusercontent.com";

pub(crate) const ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "scope",
        applies: Applies::Both,
        default: "buildkit",
        meaning: "cache name, part of the index key index-<scope>-1-<sha256(ref)[:8]>",
        secret: false,
    },
    AttributeDoc {
        name: "url",
        applies: Applies::Both,
        default: "$ACTIONS_CACHE_URL, else $ACTIONS_RESULTS_URL",
        meaning: "cache service URL for the v1 API (GHES, Gitea/Forgejo runners)",
        secret: false,
    },
    AttributeDoc {
        name: "url_v2",
        applies: Applies::Both,
        default: "$ACTIONS_RESULTS_URL when version=2 or ACTIONS_CACHE_SERVICE_V2=true",
        meaning: "results service URL for the v2 API (github.com); used unless version=1",
        secret: false,
    },
    AttributeDoc {
        name: "token",
        applies: Applies::Both,
        default: "$ACTIONS_RUNTIME_TOKEN",
        meaning: "the job's runtime token (a JWT whose ac claim lists the readable and writable scopes)",
        secret: true,
    },
    AttributeDoc {
        name: "version",
        applies: Applies::Both,
        default: "auto (2 with url_v2, else 1)",
        meaning: "cache service API: 1 (REST) or 2 (Twirp + Azure blob)",
        secret: false,
    },
    AttributeDoc {
        name: "timeout",
        applies: Applies::Both,
        default: "10m",
        meaning: "how long one request may keep retrying (429 rate limits, 5xx), Go duration like 90s or 10m",
        secret: false,
    },
    AttributeDoc {
        name: "ghtoken",
        applies: Applies::Both,
        default: "-",
        meaning: "GitHub token with actions:write, for listing and deleting entries (prune) via the REST API at $GITHUB_API_URL",
        secret: true,
    },
    AttributeDoc {
        name: "repository",
        applies: Applies::Both,
        default: "$GITHUB_REPOSITORY",
        meaning: "owner/name of the repository whose caches ghtoken lists",
        secret: false,
    },
];

pub(crate) use bkcache_core::Secret;

/// Which cache service API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// The REST API under `_apis/artifactcache/` (GHES, Gitea/Forgejo runners).
    V1,
    /// The Twirp API of github.com's results service, with Azure blob signed URLs.
    V2,
}

impl ApiVersion {
    /// `1` or `2`.
    pub fn number(self) -> u8 {
        match self {
            ApiVersion::V1 => 1,
            ApiVersion::V2 => 2,
        }
    }
}

/// One entry of the runtime token's `ac` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope {
    /// The ref, e.g. `refs/heads/main`.
    pub scope: String,
    /// Permission bits: 1 = read, 2 = write.
    pub permission: u64,
}

impl TokenScope {
    /// Whether the write bit is set.
    pub fn can_write(&self) -> bool {
        self.permission & 2 != 0
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.permission {
            1 => "read".to_owned(),
            2 => "write".to_owned(),
            3 => "read+write".to_owned(),
            n => format!("permission {n}"),
        };
        write!(f, "{} ({p})", if self.scope.is_empty() { "\"\"" } else { &self.scope })
    }
}

/// Read the scopes of a runtime token, unverified, as go-actions-cache does: the JWT payload's
/// `ac` claim is a JSON *string* holding `[{"Scope":…,"Permission":…}]`; `exp` and `nbf` must
/// be numbers and the token valid now.
pub fn token_scopes(token: &str, origin: &str) -> std::result::Result<Vec<TokenScope>, GhaError> {
    let bad = |reason: String| GhaError::Token {
        origin: origin.to_owned(),
        reason,
    };
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(bad(format!(
            "expected a JWT (three base64url parts separated by dots), got {} part(s)",
            parts.len()
        )));
    }
    let decode = |p: &str, what: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|e| bad(format!("the JWT {what} is not base64url: {e}")))
    };
    let header = decode(parts[0], "header")?;
    serde_json::from_slice::<serde_json::Value>(&header)
        .map_err(|e| bad(format!("the JWT header is not JSON: {e}")))?;
    let payload = decode(parts[1], "payload")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| bad(format!("the JWT payload is not JSON: {e}")))?;
    let ac = match claims.get("ac") {
        None => return Err(bad("invalid token without access controls (no \"ac\" claim)".into())),
        Some(serde_json::Value::String(s)) => s,
        Some(other) => {
            return Err(bad(format!(
                "the \"ac\" claim must be a JSON string, got {}",
                json_type(other)
            )))
        }
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as f64;
    let time = |name: &str| -> std::result::Result<f64, GhaError> {
        match claims.get(name) {
            Some(serde_json::Value::Number(n)) => n.as_f64().ok_or_else(|| bad(format!("bad {name} claim"))),
            Some(other) => Err(bad(format!(
                "the {name} claim must be a number, got {}",
                json_type(other)
            ))),
            None => Err(bad(format!("invalid token without {name} claim"))),
        }
    };
    let exp = time("exp")?;
    if now > exp {
        return Err(bad(format!(
            "it expired at {} (runtime tokens live as long as their job)",
            bkcache_core::GoTime::from_unix(exp as i64, 0)
        )));
    }
    let nbf = time("nbf")?;
    if now < nbf {
        return Err(bad(format!(
            "it is not valid before {}",
            bkcache_core::GoTime::from_unix(nbf as i64, 0)
        )));
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_str(ac).map_err(|e| bad(format!("the \"ac\" claim is not a JSON list: {e}")))?;
    Ok(list
        .iter()
        .map(|s| TokenScope {
            scope: s["Scope"].as_str().unwrap_or_default().to_owned(),
            permission: s["Permission"].as_u64().unwrap_or(0),
        })
        .collect())
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

pub use bkcache_core::gojson::parse_go_duration;

/// First 8 hex digits of sha256 of a token scope: the last part of an index key.
pub fn scope_hash(scope: &str) -> String {
    Digest::of_bytes(scope.as_bytes()).hex()[..8].to_owned()
}

/// Everything a store needs, resolved from attributes and the environment as buildx and
/// BuildKit do.
#[derive(Debug, Clone)]
pub struct GhaConfig {
    /// `scope=`: the cache's name in its index key.
    pub scope: String,
    /// The API spoken.
    pub api: ApiVersion,
    /// The service base URL, ending in `/`.
    pub url: String,
    pub(crate) token: Secret,
    /// The runtime token's scopes, in its order.
    pub token_scopes: Vec<TokenScope>,
    /// Retry budget per request (`timeout=`).
    pub timeout: Duration,
    /// `timeout=` as given, for messages.
    pub timeout_text: String,
    pub(crate) ghtoken: Option<Secret>,
    /// `owner/name` for the REST API.
    pub repository: Option<String>,
    /// The REST API base (`$GITHUB_API_URL`, default `https://api.github.com`).
    pub api_url: String,
}

fn attr<'a>(spec: &'a CacheSpec, name: &str) -> Option<&'a str> {
    spec.get(name).filter(|v| !v.is_empty())
}

fn check_url(attribute: &str, value: &str) -> Result<String> {
    match reqwest::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(format!("{}/", value.trim_end_matches('/')))
        }
        _ => Err(Error::InvalidValue {
            attribute: attribute.into(),
            value: value.into(),
            allowed: "expected an http:// or https:// URL".into(),
        }),
    }
}

impl GhaConfig {
    /// Resolve a spec: attributes first, then the variables a GitHub Actions job sets
    /// (`ACTIONS_RUNTIME_TOKEN`, `ACTIONS_CACHE_URL`, `ACTIONS_RESULTS_URL`,
    /// `ACTIONS_CACHE_SERVICE_V2`), as buildx fills them; then BuildKit's choice of API.
    pub fn from_spec(spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Self> {
        let (api, base, token, origin) = service(spec, direction, env)?;
        let missing = |attribute: &str, hint: &str| Error::MissingAttribute {
            kind: "gha".into(),
            attribute: attribute.into(),
            direction: direction.describe().into(),
            hint: hint.into(),
        };
        let token_scopes = token_scopes(&token, origin)?;
        let a = Attrs::new(spec, direction, env);
        let timeout_text = a.text("timeout", "10m");
        let timeout = a.go_duration("timeout", DEFAULT_TIMEOUT)?;
        let ghtoken = a.secret("ghtoken");
        let repository = attr(spec, "repository")
            .map(str::to_owned)
            .or_else(|| ghtoken.as_ref().and(env.var("GITHUB_REPOSITORY")).map(str::to_owned));
        if let Some(r) = &repository {
            let ok = r.split('/').count() == 2 && r.split('/').all(|p| !p.is_empty());
            if !ok {
                return Err(Error::InvalidValue {
                    attribute: "repository".into(),
                    value: r.clone(),
                    allowed: "expected owner/name".into(),
                });
            }
        }
        if ghtoken.is_some() && repository.is_none() {
            return Err(missing(
                "repository",
                "ghtoken= lists the caches of one repository: set repository=<owner/name> (or GITHUB_REPOSITORY)",
            ));
        }
        let api_url = env
            .var("GITHUB_API_URL")
            .unwrap_or(DEFAULT_API_URL)
            .trim_end_matches('/')
            .to_owned();
        Ok(GhaConfig {
            scope: a.text("scope", DEFAULT_SCOPE),
            api,
            url: base,
            token: Secret::new(token),
            token_scopes,
            timeout,
            timeout_text,
            ghtoken,
            repository,
            api_url,
        })
    }

    /// `buildkit-blob-1-<digest>`.
    pub fn blob_key(&self, digest: &Digest) -> String {
        format!("{BLOB_KEY_PREFIX}{digest}")
    }

    /// `index-<scope>-1-<hash8 of a token scope>`.
    pub fn index_key_for(&self, token_scope: &str) -> String {
        format!("index-{}-{KEY_FORMAT}-{}", self.scope, scope_hash(token_scope))
    }

    /// The token scope exports go to: the **last** one with the write bit, as BuildKit picks.
    pub fn write_scope(&self) -> Option<&TokenScope> {
        self.token_scopes.iter().rev().find(|s| s.can_write())
    }

    /// The scope to write, or [`GhaError::NoWriteScope`].
    pub fn require_write_scope(&self) -> std::result::Result<&TokenScope, GhaError> {
        self.write_scope().ok_or_else(|| GhaError::NoWriteScope {
            scopes: if self.token_scopes.is_empty() {
                "no scopes".into()
            } else {
                self.token_scopes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }

    /// The index key an export writes (numbered `#N` on top): BuildKit's `indexKey()`, which
    /// hashes `""` when no scope is writable.
    pub fn index_key(&self) -> String {
        self.index_key_for(self.write_scope().map_or("", |s| s.scope.as_str()))
    }

    /// The index keys an import tries: one per token scope, in the token's order, without
    /// repeats.
    pub fn import_keys(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for s in &self.token_scopes {
            let key = self.index_key_for(&s.scope);
            if !out.iter().any(|(k, _)| *k == key) {
                out.push((key, s.scope.clone()));
            }
        }
        out
    }

    /// A description free of secrets: `gha:<scope>@<host/path> (v2)`.
    pub fn location(&self) -> String {
        let shown = match reqwest::Url::parse(&self.url) {
            Ok(u) => format!(
                "{}{}{}",
                u.host_str().unwrap_or_default(),
                u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                u.path().trim_end_matches('/')
            ),
            Err(_) => "?".into(),
        };
        format!("gha:{}@{shown} (v{})", self.scope, self.api.number())
    }
}

/// Which API, at which URL, with which runtime token (and where it came from): the attributes,
/// then the job environment, as buildx resolves them.
fn service(spec: &CacheSpec, direction: Direction, env: &Env) -> Result<(ApiVersion, String, String, &'static str)> {
    let version = attr(spec, "version");
    if let Some(v) = version.filter(|v| !matches!(*v, "1" | "2")) {
        return Err(Error::InvalidValue {
            attribute: "version".into(),
            value: v.into(),
            allowed:
                "expected 1 (the v1 REST cache API: GHES, Gitea/Forgejo runners) or 2 (the v2 Twirp API of github.com)"
                    .into(),
        });
    }
    let v2_env = env
        .var("ACTIONS_CACHE_SERVICE_V2")
        .is_some_and(|v| bkcache_core::spec::parse_go_bool("ACTIONS_CACHE_SERVICE_V2", v).unwrap_or(false));
    let want_v2 = version == Some("2") || (version.is_none() && v2_env);

    let (token, origin) = match attr(spec, "token") {
        Some(t) => (t.to_owned(), "attribute token"),
        None => match env.var("ACTIONS_RUNTIME_TOKEN") {
            Some(t) => (t.to_owned(), "ACTIONS_RUNTIME_TOKEN"),
            None => {
                return Err(Error::MissingAttribute {
                    kind: "gha".into(),
                    attribute: "token".into(),
                    direction: direction.describe().into(),
                    hint: "token not set for github actions cache: set token=<runtime token>, or run inside a GitHub Actions job step that sees ACTIONS_RUNTIME_TOKEN (for `run:` steps, expose it with e.g. crazy-max/ghaction-github-runtime)".into(),
                })
            }
        },
    };
    let url_v2 = match attr(spec, "url_v2") {
        Some(u) => Some(check_url("url_v2", u)?),
        None if want_v2 => env
            .var("ACTIONS_RESULTS_URL")
            .map(|u| check_url("ACTIONS_RESULTS_URL", u))
            .transpose()?,
        None => None,
    };
    let url = match attr(spec, "url") {
        Some(u) => Some(check_url("url", u)?),
        None => match env.var("ACTIONS_CACHE_URL") {
            Some(u) => Some(check_url("ACTIONS_CACHE_URL", u)?),
            None => env
                .var("ACTIONS_RESULTS_URL")
                .map(|u| check_url("ACTIONS_RESULTS_URL", u))
                .transpose()?,
        },
    };
    let missing = |attribute: &str, hint: &str| Error::MissingAttribute {
        kind: "gha".into(),
        attribute: attribute.into(),
        direction: direction.describe().into(),
        hint: hint.into(),
    };
    let (api, base) = if version == Some("1") {
        let url = url.ok_or_else(|| {
            missing(
                "url",
                "version=1 needs the v1 cache URL: set url=, or ACTIONS_CACHE_URL as GitHub Actions runners do",
            )
        })?;
        (ApiVersion::V1, url)
    } else if let Some(u) = url_v2 {
        (ApiVersion::V2, u)
    } else if version == Some("2") {
        return Err(missing(
            "url_v2",
            "version=2 needs the results service URL: set url_v2=, or ACTIONS_RESULTS_URL as GitHub Actions runners do",
        ));
    } else if let Some(u) = url {
        let api = if u.contains(V2_HOST) {
            ApiVersion::V2
        } else {
            ApiVersion::V1
        };
        (api, u)
    } else {
        return Err(missing(
            "url",
            "url not set for github actions cache: set url_v2= (v2, github.com) or url= (v1, GHES), or run inside a GitHub Actions job step that sees ACTIONS_RESULTS_URL and ACTIONS_CACHE_SERVICE_V2=true (or ACTIONS_CACHE_URL)",
        ));
    };
    Ok((api, base, token, origin))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn jwt(ac: &str, exp: i64, nbf: i64) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let claims = serde_json::json!({"ac": ac, "exp": exp, "nbf": nbf}).to_string();
        format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims))
    }

    const F7_AC: &str = r#"[{"Scope":"refs/heads/test","Permission":3},{"Scope":"refs/heads/master","Permission":1}]"#;

    fn spec(s: &str) -> CacheSpec {
        CacheSpec::parse(s).unwrap().remove(0)
    }

    #[test]
    fn version_hash_is_sha256_of_the_go_actions_cache_salt() {
        assert_eq!(Digest::of_bytes(b"|go-actionscache-1.0").hex(), VERSION_HASH);
    }

    #[test]
    fn f7_vectors() {
        assert_eq!(scope_hash("refs/heads/main"), "f921bd05");
        assert_eq!(scope_hash("refs/heads/master"), "49c8f7d5");
        assert_eq!(scope_hash("refs/heads/test"), "923c1d55");
        assert_eq!(scope_hash(""), "e3b0c442");
        let token = jwt(F7_AC, 4_102_444_800, 1_606_812_629);
        let env = Env::empty("/").with_var("ACTIONS_RUNTIME_TOKEN", &token);
        let c = GhaConfig::from_spec(&spec("type=gha,url=http://127.0.0.1:1/"), Direction::Export, &env).unwrap();
        assert_eq!(c.index_key(), "index-buildkit-1-923c1d55");
        let keys: Vec<String> = c.import_keys().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["index-buildkit-1-923c1d55", "index-buildkit-1-49c8f7d5"]);
        let d = Digest::parse("sha256:0ad52e338662c923b15fd45a73c6e97336efccf28a7aef9449443cc6dd7415fb").unwrap();
        assert_eq!(
            c.blob_key(&d),
            "buildkit-blob-1-sha256:0ad52e338662c923b15fd45a73c6e97336efccf28a7aef9449443cc6dd7415fb"
        );
        assert_eq!(c.api, ApiVersion::V1);
        // No writable scope: BuildKit hashes "".
        let ro = jwt(r#"[{"Scope":"refs/heads/main","Permission":1}]"#, 4_102_444_800, 0);
        let c = GhaConfig::from_spec(
            &spec(&format!("type=gha,url=http://h/,token={ro}")),
            Direction::Export,
            &Env::empty("/"),
        )
        .unwrap();
        assert_eq!(c.index_key(), "index-buildkit-1-e3b0c442");
        let e = c.require_write_scope().unwrap_err().to_string();
        assert!(
            e.contains("no write scope") && e.contains("refs/heads/main (read)"),
            "{e}"
        );
    }

    #[test]
    fn expired_and_malformed_tokens_are_refused_without_showing_them() {
        // The expired test token of go-actions-cache's TestTokenScopes (nbf/exp of 2020).
        let old = jwt(F7_AC, 1_606_835_429, 1_606_812_629);
        let e = token_scopes(&old, "ACTIONS_RUNTIME_TOKEN").unwrap_err().to_string();
        assert!(
            e.contains("expired at 2020-12-01T15:10:29Z") && !e.contains(&old),
            "{e}"
        );
        for bad in ["not-a-jwt", "a.b.c", &jwt("not json", 4_102_444_800, 0)] {
            let e = token_scopes(bad, "attribute token").unwrap_err().to_string();
            assert!(e.contains("attribute token"), "{e}");
        }
        let no_ac = {
            let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
            format!("{}.{}.", b64("{}"), b64(r#"{"exp":4102444800,"nbf":0}"#))
        };
        let e = token_scopes(&no_ac, "attribute token").unwrap_err().to_string();
        assert!(e.contains("access controls"), "{e}");
    }

    #[test]
    fn environment_and_version_rules() {
        let tok = jwt(F7_AC, 4_102_444_800, 0);
        let env = Env::empty("/")
            .with_var("ACTIONS_RUNTIME_TOKEN", &tok)
            .with_var("ACTIONS_CACHE_URL", "https://artifactcache.example/abc/")
            .with_var("ACTIONS_RESULTS_URL", "https://results.example/");
        let open = |s: &str, env: &Env| GhaConfig::from_spec(&spec(s), Direction::Import, env);
        // Without ACTIONS_CACHE_SERVICE_V2: v1 on ACTIONS_CACHE_URL.
        let c = open("type=gha", &env).unwrap();
        assert_eq!(
            (c.api, c.url.as_str()),
            (ApiVersion::V1, "https://artifactcache.example/abc/")
        );
        // With it: v2 on ACTIONS_RESULTS_URL.
        let env2 = env.clone().with_var("ACTIONS_CACHE_SERVICE_V2", "true");
        let c = open("type=gha", &env2).unwrap();
        assert_eq!((c.api, c.url.as_str()), (ApiVersion::V2, "https://results.example/"));
        // version=1 wins over url_v2.
        let c = open("type=gha,version=1", &env2).unwrap();
        assert_eq!(c.api, ApiVersion::V1);
        // The results-receiver host means v2.
        let c = open(
            "type=gha,url=https://results-receiver.actions.githubusercontent.com/",
            &Env::empty("/").with_var("ACTIONS_RUNTIME_TOKEN", &tok),
        )
        .unwrap();
        assert_eq!(c.api, ApiVersion::V2);
        let e = open("type=gha,version=3", &env).unwrap_err().to_string();
        assert!(
            e.contains("version") && e.contains("expected 1") && e.contains("or 2"),
            "{e}"
        );
        let e = open("type=gha", &Env::empty("/")).unwrap_err().to_string();
        assert!(e.contains("\"token\"") && e.contains("ACTIONS_RUNTIME_TOKEN"), "{e}");
        let e = open("type=gha", &Env::empty("/").with_var("ACTIONS_RUNTIME_TOKEN", &tok))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"url\"") && e.contains("ACTIONS_RESULTS_URL"), "{e}");
        let e = open(
            "type=gha,version=2,url=http://h/",
            &Env::empty("/").with_var("ACTIONS_RUNTIME_TOKEN", &tok),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("url_v2"), "{e}");
        let e = open("type=gha,timeout=ten", &env).unwrap_err().to_string();
        assert!(e.contains("timeout") && e.contains("Go duration"), "{e}");
        let e = open("type=gha,ghtoken=x", &env).unwrap_err().to_string();
        assert!(e.contains("repository") && !e.contains("=x"), "{e}");
        let c = open("type=gha,ghtoken=x", &env.clone().with_var("GITHUB_REPOSITORY", "o/r")).unwrap();
        assert_eq!(c.repository.as_deref(), Some("o/r"));
        assert!(!format!("{c:?}").contains(&tok), "Debug shows the token");
        assert_eq!(c.location(), "gha:buildkit@artifactcache.example/abc (v1)");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("5 min"), None);
    }
}
