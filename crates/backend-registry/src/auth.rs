//! Registry credentials (Docker config `auths`, `credHelpers`, `credsStore`) and
//! `WWW-Authenticate` challenges.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use bkcache_core::Env;

use crate::error::RegistryError;

/// A username and secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (`<token>` for identity tokens).
    pub username: String,
    /// Password or token.
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The keys a Docker config may use for a registry.
fn config_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == "docker.io" {
        keys.splice(
            0..0,
            ["https://index.docker.io/v1/".to_owned(), "index.docker.io".to_owned()],
        );
    }
    keys
}

fn config_path(env: &Env) -> Option<PathBuf> {
    if let Some(dir) = env.var("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    env.var("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Credentials for `registry` from `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`):
/// `credHelpers[registry]`, then `auths[registry].auth` (base64 `user:pass`, or
/// `username`/`password`, or `identitytoken`), then `credsStore`. `Ok(None)` when none apply.
pub fn docker_credentials(env: &Env, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let Some(path) = config_path(env) else { return Ok(None) };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RegistryError::Credentials {
                registry: registry.into(),
                reason: format!("cannot read {}: {e}", path.display()),
            })
        }
    };
    let cfg: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Credentials {
        registry: registry.into(),
        reason: format!("{} is not valid JSON: {e}", path.display()),
    })?;
    let keys = config_keys(registry);
    for key in &keys {
        if let Some(helper) = cfg["credHelpers"][key.as_str()].as_str() {
            return run_helper(env, helper, registry);
        }
    }
    for key in &keys {
        let entry = &cfg["auths"][key.as_str()];
        if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| RegistryError::Credentials {
                    registry: registry.into(),
                    reason: format!(
                        "auths[{key:?}].auth in {} is not base64 of user:password",
                        path.display()
                    ),
                })?;
            let (user, pass) = decoded.split_once(':').ok_or_else(|| RegistryError::Credentials {
                registry: registry.into(),
                reason: format!("auths[{key:?}].auth in {} has no ':'", path.display()),
            })?;
            return Ok(Some(Credentials {
                username: user.into(),
                secret: pass.into(),
            }));
        }
        if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Ok(Some(Credentials {
                username: u.into(),
                secret: p.into(),
            }));
        }
        if let Some(t) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials {
                username: "<token>".into(),
                secret: t.into(),
            }));
        }
    }
    if let Some(store) = cfg["credsStore"].as_str().filter(|s| !s.is_empty()) {
        return run_helper(env, store, registry);
    }
    Ok(None)
}

/// The docker-credential-helpers protocol: `docker-credential-<name> get`, server URL on stdin,
/// `{"ServerURL","Username","Secret"}` on stdout; "credentials not found" means none.
fn run_helper(env: &Env, name: &str, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    };
    let err = |reason: String| RegistryError::Credentials {
        registry: registry.into(),
        reason,
    };
    let mut cmd = Command::new(&program);
    cmd.arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = env.var("PATH") {
        cmd.env("PATH", path);
    }
    let mut child = cmd.spawn().map_err(|e| err(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| err(format!("{program}: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| err(format!("{program}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found")
            || String::from_utf8_lossy(&out.stderr).contains("credentials not found")
        {
            return Ok(None);
        }
        // The helper's output may echo secrets on some implementations: report the status only.
        return Err(err(format!("{program} get failed ({})", out.status)));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|_| err(format!("{program} get did not print JSON")))?;
    match (v["Username"].as_str(), v["Secret"].as_str()) {
        (Some(u), Some(s)) if !s.is_empty() => Ok(Some(Credentials {
            username: u.into(),
            secret: s.into(),
        })),
        _ => Ok(None),
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic.
    Basic,
    /// Bearer token from `realm`, for `service` and `scope`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// Service name.
        service: Option<String>,
        /// Scope asked for, if any.
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header (`Bearer realm="…",service="…",scope="…"` or `Basic …`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            Some(Challenge::Bearer {
                realm: get("realm")?,
                service: get("service"),
                scope: get("scope"),
            })
        }
        _ => None,
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i] == ',' || chars[i].is_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect::<String>().trim().to_owned();
        i += 1;
        let mut value = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && chars[i] != ',' {
                value.push(chars[i]);
                i += 1;
            }
        }
        if !key.is_empty() {
            out.push((key, value.trim().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/a:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/a:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate x"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "realm required");
    }

    #[test]
    fn docker_config_auths_and_redaction() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"reg.example:5000":{{"auth":"{auth}"}},"https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}}}}"#),
        )
        .unwrap();
        let env = Env::empty("/").with_var("DOCKER_CONFIG", dir.path().to_str().unwrap());
        let c = docker_credentials(&env, "reg.example:5000").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.secret.as_str()), ("alice", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(docker_credentials(&env, "docker.io").unwrap().unwrap().username, "bob");
        assert_eq!(docker_credentials(&env, "other.example").unwrap(), None);
    }

    #[test]
    fn credential_helper_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\nif [ \"$server\" = reg.example ]; then echo '{\"ServerURL\":\"reg.example\",\"Username\":\"u\",\"Secret\":\"hidden\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(dir.path().join("config.json"), r#"{"credsStore":"fake"}"#).unwrap();
        let path = format!("{}:/usr/bin:/bin", dir.path().display());
        let env = Env::empty("/")
            .with_var("DOCKER_CONFIG", dir.path().to_str().unwrap())
            .with_var("PATH", &path);
        let c = docker_credentials(&env, "reg.example").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.secret.as_str()), ("u", "hidden"));
        assert_eq!(docker_credentials(&env, "nope.example").unwrap(), None);
    }
}
