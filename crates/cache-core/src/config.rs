//! The BuildKit cache config (`application/vnd.buildkit.cacheconfig.v0`) as it is on the wire.
//!
//! Field order and omission rules copy BuildKit's Go structs (`cache/remotecache/v1/types`), so
//! [`CacheConfig::to_bytes`] gives back the exact bytes BuildKit wrote for any config it wrote.
//! Semantics (graph, validation, sorting) live in [`crate::cache`].

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gojson::{to_go_json, GoTime};

/// The cache config document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// Blobs with parent links. Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<CacheLayer>,
    /// Cache keys. Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<CacheRecord>,
}

/// One `layers[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLayer {
    /// The blob.
    pub blob: Digest,
    /// Index of the parent layer; -1 = none. **Omitted when 0**, and missing means 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parent: i64,
    /// Only in the annotated-config form (gha, s3, azblob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<LayerAnnotations>,
}

/// Layer facts embedded in the annotated-config form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerAnnotations {
    /// Layer media type (always the OCI type).
    #[serde(rename = "mediaType", default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// The diffID.
    #[serde(rename = "diffID", default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
    /// Blob size.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: i64,
    /// Creation time in UTC; always written (zero time when unknown).
    #[serde(rename = "createdAt", alias = "createdat", default)]
    pub created_at: GoTime,
}

/// One `records[]` entry: a cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// Results: a top layer index, loaded with its parents. JSON key `layers`.
    #[serde(rename = "layers", default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<CacheResult>,
    /// Chained results: explicit layer index lists (inline cache only). JSON key `chains`.
    #[serde(rename = "chains", default, skip_serializing_if = "Vec::is_empty")]
    pub chained_results: Vec<ChainedResult>,
    /// The cache key.
    pub digest: Digest,
    /// One slot per vertex input; each slot lists alternative records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Vec<CacheInput>>,
}

/// A record result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheResult {
    /// Index of the top layer (always written, even 0).
    pub layer: i64,
    /// When the result was created.
    #[serde(rename = "createdAt", alias = "createdat", default)]
    pub created_at: GoTime,
}

/// A chained result (inline cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedResult {
    /// Layer indexes, bottom first, loaded without parent walking.
    #[serde(default)]
    pub layers: Vec<i64>,
    /// When the result was created.
    #[serde(rename = "createdAt", alias = "createdat", default)]
    pub created_at: GoTime,
}

/// One alternative in an input slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInput {
    /// Selector (omitted when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Index of the linked record (always written, even 0).
    pub link: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl CacheConfig {
    /// Decode from bytes; `what` names the blob in errors.
    pub fn from_slice(bytes: &[u8], what: &str) -> Result<Self> {
        // Go's decoder only fills a struct from a JSON object; serde would also take an array.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::Json {
                what: what.to_owned(),
                source: serde::de::Error::custom("expected a JSON object {\"layers\":…,\"records\":…}"),
            });
        }
        serde_json::from_slice(bytes).map_err(|source| Error::Json {
            what: what.to_owned(),
            source,
        })
    }

    /// Encode exactly as BuildKit's `json.Marshal` does.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        to_go_json(self)
    }
}

/// Decode the `records` array that inline cache stores in an image config.
pub fn records_from_slice(bytes: &[u8], what: &str) -> Result<Vec<CacheRecord>> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: what.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixture F6 of the spec: BuildKit's `TestSimpleMarshal`, byte-exact.
    const F6: &str = r#"{"layers":[{"blob":"sha256:0ad52e338662c923b15fd45a73c6e97336efccf28a7aef9449443cc6dd7415fb","parent":-1},{"blob":"sha256:8b53639f152c8fc6ef30802fde462ba0be9cf085f7580dc69efd72e002abbb35"}],"records":[{"layers":[{"layer":1,"createdAt":"2024-01-02T03:04:05.5Z"}],"digest":"sha256:29e8a56dfde089212df9eeebaf90d4bebe58a2f5e192cc7f6adb9bbe15dd5ac7","inputs":[[{"link":1}],[{"selector":"sel0","link":2}]]},{"digest":"sha256:9b33d7158456f4029a31acce539a475537fd97242e02e3f98add3d26322e2686"},{"digest":"sha256:f1087d322fe2d1ff8c2ac93def4631af1ff21a0e5d9ebe7005c9d31b4c489795"}]}"#;

    #[test]
    fn f6_round_trips_byte_exact() {
        let c = CacheConfig::from_slice(F6.as_bytes(), "F6").unwrap();
        assert_eq!(c.layers[1].parent, 0, "missing parent means 0");
        let out = c.to_bytes().unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), F6);
        assert_eq!(
            Digest::of_bytes(&out).as_str(),
            "sha256:eac4c73e7c744d4469b3720e9e38d49dfa0a715a7a6f28c91e2ccf4a8968041a"
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let c = CacheConfig::from_slice(br#"{"records":[{"digest":"sha256:9b33d7158456f4029a31acce539a475537fd97242e02e3f98add3d26322e2686","output":1}],"extra":true}"#, "x").unwrap();
        assert_eq!(c.records.len(), 1);
    }

    #[test]
    fn bad_digest_in_config_is_an_error() {
        let e = CacheConfig::from_slice(br#"{"layers":[{"blob":"sha256:../../x"}]}"#, "cfg").unwrap_err();
        assert!(e.to_string().contains("invalid digest"), "{e}");
    }
}
