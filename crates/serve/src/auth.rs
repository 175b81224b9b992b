//! Client authentication: an htpasswd file (bcrypt, `htpasswd -B`, as docker-registry reads
//! it) or a token file (one token a line, sent as `Authorization: Bearer <token>` or as the
//! password of Basic authentication, the way `docker login` sends a registry token).
//!
//! Nothing here is ever formatted: `Debug` shows counts only.

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

use base64::Engine;
use sha2::{Digest as _, Sha256};

use crate::error::ServeError;

/// How clients prove who they are.
pub enum Auth {
    /// `user:bcrypt-hash` lines.
    Htpasswd {
        /// Users and their hashes.
        users: Vec<(String, String)>,
        /// SHA-256 of `user:password` pairs already checked (bcrypt costs ~50 ms a check, and
        /// clients send credentials on every request).
        verified: Mutex<HashSet<[u8; 32]>>,
    },
    /// SHA-256 of each accepted token.
    Tokens(Vec<[u8; 32]>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Htpasswd { users, .. } => write!(f, "Htpasswd({} users)", users.len()),
            Auth::Tokens(t) => write!(f, "Tokens({})", t.len()),
        }
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The meaningful lines of a credentials file (not blank, not `#`), numbered from 1.
fn lines(what: &'static str, path: &str) -> Result<Vec<(usize, String)>, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServeError::File {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let out: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim().to_owned()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if out.is_empty() {
        return Err(ServeError::File {
            what,
            path: path.to_owned(),
            reason: "nothing in it".into(),
        });
    }
    Ok(out)
}

impl Auth {
    /// Read an htpasswd file; only bcrypt hashes are accepted (as docker-registry).
    pub fn htpasswd(path: &str) -> Result<Auth, ServeError> {
        let bad = |reason: String| ServeError::File {
            what: "htpasswd file",
            path: path.to_owned(),
            reason,
        };
        let mut users = Vec::new();
        for (n, line) in lines("htpasswd file", path)? {
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("line {n} is not user:hash")))?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")) {
                return Err(bad(format!(
                    "line {n}: only bcrypt hashes are supported (create them with `htpasswd -B`)"
                )));
            }
            users.push((user.to_owned(), hash.to_owned()));
        }
        Ok(Auth::Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Read a token file: one token a line, at least 16 characters each.
    pub fn tokens(path: &str) -> Result<Auth, ServeError> {
        let mut tokens = Vec::new();
        for (n, line) in lines("token file", path)? {
            if line.len() < 16 {
                return Err(ServeError::File {
                    what: "token file",
                    path: path.to_owned(),
                    reason: format!("line {n}: a token must have at least 16 characters"),
                });
            }
            tokens.push(sha(line.as_bytes()));
        }
        Ok(Auth::Tokens(tokens))
    }

    /// Whether an `Authorization` header value is accepted.
    pub fn allows(&self, header: Option<&str>) -> bool {
        let Some(header) = header else { return false };
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        let value = value.trim();
        let basic = || -> Option<(String, String)> {
            let raw = base64::engine::general_purpose::STANDARD.decode(value).ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (u, p) = text.split_once(':')?;
            Some((u.to_owned(), p.to_owned()))
        };
        match self {
            Auth::Tokens(tokens) => {
                let presented = if scheme.eq_ignore_ascii_case("bearer") {
                    Some(value.to_owned())
                } else if scheme.eq_ignore_ascii_case("basic") {
                    basic().map(|(_, p)| p)
                } else {
                    None
                };
                // Compared as SHA-256 digests: no early exit on the token's own bytes.
                presented.is_some_and(|p| tokens.contains(&sha(p.as_bytes())))
            }
            Auth::Htpasswd { users, verified } => {
                if !scheme.eq_ignore_ascii_case("basic") {
                    return false;
                }
                let Some((user, password)) = basic() else { return false };
                let key = sha(format!("{user}:{password}").as_bytes());
                if verified.lock().is_ok_and(|v| v.contains(&key)) {
                    return true;
                }
                let ok = users
                    .iter()
                    .any(|(u, hash)| *u == user && bcrypt::verify(&password, hash).unwrap_or(false));
                if ok {
                    if let Ok(mut v) = verified.lock() {
                        if v.len() > 1024 {
                            v.clear();
                        }
                        v.insert(key);
                    }
                }
                ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn tokens_and_htpasswd_accept_only_their_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "# ci\nabcdefghijklmnopqrstuvwx\n").expect("write");
        let auth = Auth::tokens(tokens.to_str().expect("utf-8")).expect("tokens");
        assert!(auth.allows(Some("Bearer abcdefghijklmnopqrstuvwx")));
        assert!(auth.allows(Some(&basic("any", "abcdefghijklmnopqrstuvwx"))));
        assert!(!auth.allows(Some("Bearer abcdefghijklmnopqrstuvwy")));
        assert!(!auth.allows(None));
        assert_eq!(format!("{auth:?}"), "Tokens(1)");

        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, format!("ci:{hash}\n")).expect("write");
        let auth = Auth::htpasswd(file.to_str().expect("utf-8")).expect("htpasswd");
        assert!(auth.allows(Some(&basic("ci", "s3cret"))));
        assert!(auth.allows(Some(&basic("ci", "s3cret"))), "cached");
        assert!(!auth.allows(Some(&basic("ci", "wrong"))));
        assert!(!auth.allows(Some(&basic("other", "s3cret"))));
        assert!(!format!("{auth:?}").contains(&hash));

        std::fs::write(&file, "ci:{SHA}abc\n").expect("write");
        let e = Auth::htpasswd(file.to_str().expect("utf-8")).expect_err("sha1 refused");
        assert!(e.to_string().contains("only bcrypt"), "{e}");
    }
}
