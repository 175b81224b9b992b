//! Image references, normalised as BuildKit does (`reference.ParseNormalizedNamed` +
//! `TagNameOnly`): `user/app` is `docker.io/user/app:latest`, `app` is `docker.io/library/app:latest`.

use std::fmt;

use bkcache_core::Digest;

use crate::error::RegistryError;

/// A parsed, normalised reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (`docker.io`, `127.0.0.1:5000`, …).
    pub registry: String,
    /// Repository path (`library/app`).
    pub repository: String,
    /// Tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// Digest, when pinned.
    pub digest: Option<Digest>,
}

fn invalid(reference: &str, reason: &str) -> RegistryError {
    RegistryError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    }
}

impl Reference {
    /// Parse and normalise.
    ///
    /// ```
    /// use bkcache_registry::Reference;
    /// let r = Reference::parse("user/app").unwrap();
    /// assert_eq!(r.to_string(), "docker.io/user/app:latest");
    /// assert_eq!(r.api_host(), "registry-1.docker.io");
    /// let r = Reference::parse("127.0.0.1:5000/cache/app:buildcache").unwrap();
    /// assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()), ("127.0.0.1:5000", "cache/app", Some("buildcache")));
    /// ```
    pub fn parse(input: &str) -> Result<Self, RegistryError> {
        if input.is_empty() {
            return Err(invalid(input, "empty reference"));
        }
        let (name, digest) = match input.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| invalid(input, &e.to_string()))?)),
            None => (input, None),
        };
        let (name, tag) = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => (&name[..i], Some(name[i + 1..].to_owned())),
            _ => (name, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(invalid(
                    input,
                    "a tag is 1-128 characters of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            "docker.io".to_owned()
        } else {
            registry
        };
        let repository = if registry == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(invalid(
                input,
                "repository must be lowercase path components of [a-z0-9._-] separated by /",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".into())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host to talk to (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// What goes after `/manifests/`: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(Reference::parse(input).unwrap().to_string(), expected, "{input}");
    }

    #[test]
    fn normalisation() {
        check("app", "docker.io/library/app:latest");
        check("user/app:cache", "docker.io/user/app:cache");
        check("index.docker.io/user/app", "docker.io/user/app:latest");
        check("localhost/app", "localhost/app:latest");
        check("localhost:5000/a/b/c:t1", "localhost:5000/a/b/c:t1");
        check("ghcr.io/o/r:v1.2", "ghcr.io/o/r:v1.2");
        check(
            "r.example.com/a@sha256:0ad52e338662c923b15fd45a73c6e97336efccf28a7aef9449443cc6dd7415fb",
            "r.example.com/a@sha256:0ad52e338662c923b15fd45a73c6e97336efccf28a7aef9449443cc6dd7415fb",
        );
        for bad in ["", "User/App", "a:", "a:-x", "host:5000/a@sha256:bad", "a//b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
