//! Content digests: `sha256:<64 lowercase hex>`, validated so a digest can never be a path.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A validated sha256 content digest.
///
/// The only accepted form is `sha256:` followed by exactly 64 lowercase hex characters, so the
/// hex part is always safe to use as a file or object name.
///
/// ```
/// use bkcache_core::Digest;
/// let d = Digest::of_bytes(b"hello");
/// assert_eq!(d.to_string(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
/// assert!(Digest::parse("sha256:../../x").is_err());
/// ```
///
/// Shared, not copied: a clone is a reference count. A cache names each blob in its manifest,
/// its config and every result chain (bottom layer first, so a deep stack repeats the same
/// digests in every result above it): a 64k-record cache holds millions of them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(Arc<str>);

impl Digest {
    /// Parse and validate.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = s.len() == 71
            && s.starts_with("sha256:")
            && s.as_bytes()[7..]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        if ok {
            Ok(Digest(Arc::from(s)))
        } else {
            Err(Error::InvalidDigest {
                value: s.chars().take(100).collect(),
            })
        }
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(bytes).into())
    }

    /// Build from a raw sha256 output.
    pub fn from_sha256(raw: [u8; 32]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in raw {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        Digest(Arc::from(s))
    }

    /// The full `sha256:<hex>` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex characters (safe as a file name).
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// The algorithm, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// A 12-character short form for progress lines.
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_str(DigestVisitor)
    }
}

/// Parses the borrowed text where the format allows it (no `String` per digest).
struct DigestVisitor;

impl serde::de::Visitor<'_> for DigestVisitor {
    type Value = Digest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sha256 digest string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Digest, E> {
        Digest::parse(s).map_err(E::custom)
    }
}

/// Incremental sha256 + byte count, for verifying streams.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest and length of everything fed.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_sha256(self.inner.finalize().into()), self.len)
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        assert_eq!(Digest::parse(input).is_ok(), ok, "{input}");
    }

    #[test]
    fn validation() {
        let hex = "a".repeat(64);
        check(&format!("sha256:{hex}"), true);
        check(&format!("sha256:{}", "A".repeat(64)), false);
        check(&format!("sha512:{hex}"), false);
        check(&format!("sha256:{}", "a".repeat(63)), false);
        check(&format!("sha256:{}/", "a".repeat(63)), false);
        check("sha256:../../x", false);
        check("", false);
        check(&format!(" sha256:{hex}"), false);
    }

    #[test]
    fn hashing_matches_known_vector() {
        let mut h = Hasher::new();
        h.update(b"hel");
        h.update(b"lo");
        let (d, n) = h.finish();
        assert_eq!(n, 5);
        assert_eq!(d, Digest::of_bytes(b"hello"));
        assert_eq!(d.short(), "2cf24dba5fb0");
    }

    #[test]
    fn serde_rejects_bad_digest() {
        let r: std::result::Result<Digest, _> = serde_json::from_str("\"sha256:../../x\"");
        assert!(r.unwrap_err().to_string().contains("invalid digest"));
    }
}
