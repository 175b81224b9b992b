//! Repository and tag names (the distribution grammar), and `--store` templates that map a
//! request's `{repo}` and `{tag}` to a store location.
//!
//! The grammar is what keeps a placeholder from traversing a path: a repository is
//! `/`-separated components of `[a-z0-9]` runs joined by `.`, `_`, `__` or `-`s (so never `..`,
//! never empty, never leading `/`); a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.

use bkcache_core::{Backends, CacheSpec, Direction, Family};

use crate::error::{OciError, ServeError};

/// The longest repository name accepted (as docker-registry).
pub const MAX_REPO_LEN: usize = 255;

/// Check a repository name against the distribution grammar.
pub fn check_repo(name: &str) -> Result<(), OciError> {
    let bad = |why: &str| {
        OciError::name_invalid(format!(
            "invalid repository name {:?}: {why}; allowed: lowercase letters and digits, components joined by '.', '_', '__' or '-' and separated by '/'",
            name.chars().take(100).collect::<String>()
        ))
    };
    if name.is_empty() || name.len() > MAX_REPO_LEN {
        return Err(bad("it must have 1 to 255 characters"));
    }
    for component in name.split('/') {
        if !component_ok(component) {
            return Err(bad(&format!("component {component:?} breaks the grammar")));
        }
    }
    Ok(())
}

fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or one or more '-', always between alnum runs.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Check a tag against the distribution grammar.
pub fn check_tag(tag: &str) -> Result<(), OciError> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let ok = !b.is_empty() && b.len() <= 128 && word(b[0]) && b.iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if ok {
        Ok(())
    } else {
        Err(OciError::new(
            hyper::StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!(
                "invalid tag {:?}: allowed: 1 to 128 of A-Z a-z 0-9 _ . -, not starting with . or -",
                tag.chars().take(100).collect::<String>()
            ),
        ))
    }
}

/// The attribute of each store type that names the cache within its location, the only one
/// that may hold `{tag}`: blob requests carry no tag, so everything that locates blobs must
/// be the same for every tag of a repository.
fn tag_attribute(kind: &str) -> Option<&'static str> {
    match kind {
        "local" => Some("tag"),
        "s3" | "azblob" => Some("name"),
        "gha" => Some("scope"),
        "registry" => Some("ref"),
        _ => None,
    }
}

/// A `--store` spec whose values may hold `{repo}` and `{tag}`.
#[derive(Debug, Clone)]
pub struct StoreTemplate {
    spec: CacheSpec,
    /// Whether one location serves every repository and tag (no placeholders, `--one-cache`).
    pub one_cache: bool,
}

impl StoreTemplate {
    /// Check a template: known type and attributes (for export), `{tag}` only where the type
    /// names its cache, and both placeholders present unless `one_cache`.
    pub fn new(spec: CacheSpec, backends: &Backends, one_cache: bool) -> Result<Self, ServeError> {
        let sample = fill(&spec, "sample/repo", "latest");
        backends.validate(&sample, Direction::Export)?;
        if backends.get(&spec.kind)?.family() == Family::Inline {
            return Err(ServeError::Config(
                "type=inline cannot be a --store: an inline cache lives inside an image serve does not build".into(),
            ));
        }
        let has = |p: &str| spec.attrs.values().any(|v| v.contains(p));
        let tag_attr = tag_attribute(&spec.kind);
        for (key, value) in &spec.attrs {
            let tag_ok = match (tag_attr, spec.kind.as_str()) {
                (Some("ref"), "registry") => {
                    key == "ref"
                        && value.rsplit_once(':').is_some_and(|(_, t)| t.contains("{tag}"))
                        && value.matches("{tag}").count() == 1
                }
                (Some(a), _) => key == a,
                (None, _) => false,
            };
            if value.contains("{tag}") && !tag_ok {
                return Err(ServeError::Config(format!(
                    "--store type={}: {{tag}} is allowed only in {} (blob requests carry no tag, so what locates blobs must not depend on it); found in {key}",
                    spec.kind,
                    tag_attr.map(|a| if a == "ref" { "ref's tag (after the last ':')".to_owned() } else { format!("{a}=") }).unwrap_or_else(|| "no attribute of this type".into())
                )));
            }
        }
        let placeholders = has("{repo}") && has("{tag}");
        if !one_cache && !placeholders {
            return Err(ServeError::Config(format!(
                "--store type={} has no {{repo}} and {{tag}} placeholders, so every repository and tag would share one cache; add them (e.g. {}) or pass --one-cache if one cache is meant",
                spec.kind,
                example_for(&spec.kind)
            )));
        }
        Ok(StoreTemplate { spec, one_cache })
    }

    /// The spec for one repository and tag.
    pub fn fill(&self, repo: &str, tag: &str) -> CacheSpec {
        fill(&self.spec, repo, tag)
    }

    /// The store's type.
    pub fn kind(&self) -> &str {
        &self.spec.kind
    }

    /// The text around `{tag}` in the attribute that names the cache, with `{repo}` filled:
    /// how a store's tag list maps back to request tags (`None`: the type has no such
    /// attribute or the template uses none).
    pub fn tag_pattern(&self, repo: &str) -> Option<(String, String)> {
        let attr = tag_attribute(&self.spec.kind)?;
        let value = self.spec.get(attr)?.replace("{repo}", repo);
        let value = if self.spec.kind == "registry" {
            value.rsplit_once(':').map(|(_, t)| t.to_owned())?
        } else {
            value
        };
        let (pre, post) = value.split_once("{tag}")?;
        Some((pre.to_owned(), post.to_owned()))
    }

    /// A printable description (secrets redacted by `CacheSpec`'s `Display`).
    pub fn describe(&self) -> String {
        self.spec.to_string()
    }
}

fn fill(spec: &CacheSpec, repo: &str, tag: &str) -> CacheSpec {
    let mut out = spec.clone();
    for v in out.attrs.values_mut() {
        *v = v.replace("{repo}", repo).replace("{tag}", tag);
    }
    out
}

fn example_for(kind: &str) -> &'static str {
    match kind {
        "local" => "type=local,dest=/var/cache/bk/{repo},tag={tag}",
        "s3" => "type=s3,bucket=b,region=r,prefix={repo}/,name={tag}",
        "azblob" => "type=azblob,account_url=…,prefix={repo}/,name={tag}",
        "gha" => "type=gha,scope={repo}-{tag}",
        "registry" => "type=registry,ref=ghcr.io/org/{repo}:{tag}",
        _ => "…{repo}…{tag}…",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_refuses_what_could_traverse_a_path() {
        for ok in ["a", "team/app", "a.b_c__d---e/f0", "x/y/z"] {
            assert!(check_repo(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "..", "a/../b", "A", "a..b", "a_-b", ".a", "a/.b", "a%2fb", "a b",
        ] {
            assert_eq!(check_repo(bad).map_err(|e| e.code), Err("NAME_INVALID"), "{bad}");
        }
        for ok in ["latest", "v1.2-rc_3", "_x", "A"] {
            assert!(check_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert_eq!(check_tag(bad).map_err(|e| e.code), Err("TAG_INVALID"), "{bad}");
        }
    }
}
