//! OCI content descriptors, with Go's key order and omission rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::gojson::GoTime;
use crate::media_type::MediaType;

/// Annotation: the layer's diffID (sha256 of the uncompressed tar).
pub const ANNOTATION_UNCOMPRESSED: &str = "containerd.io/uncompressed";
/// Annotation: when BuildKit created the layer (RFC 3339, any offset).
pub const ANNOTATION_CREATED_AT: &str = "buildkit/createdat";
/// Annotation: the estargz table-of-contents digest.
pub const ANNOTATION_STARGZ_TOC: &str = "containerd.io/snapshot/stargz/toc.digest";
/// Annotation: the tag of an `index.json` entry.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation: containerd's image name on an `index.json` entry.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// An OCI descriptor. Key order and omissions follow Go's `ocispec.Descriptor`:
/// `mediaType`, `digest`, `size` always; `urls`, `annotations`, `data`, `platform`,
/// `artifactType` only when set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type (may be empty in descriptors BuildKit sends without one).
    #[serde(rename = "mediaType", default)]
    pub media_type: MediaType,
    /// Content digest.
    pub digest: Digest,
    /// Content size in bytes.
    pub size: u64,
    /// Alternative URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations, sorted by key as Go writes maps.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Embedded content (base64), kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Platform of an image manifest in an index (boxed: rare, and a large cache holds a
    /// descriptor per layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Box<Platform>>,
    /// Artifact type.
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// A descriptor borrowed for writing, with the media type it is written with: serialises
/// exactly as the [`Descriptor`] it views (same keys, order and omissions).
#[derive(Debug, Serialize)]
pub(crate) struct DescriptorView<'a> {
    #[serde(rename = "mediaType")]
    media_type: MediaType,
    digest: &'a Digest,
    size: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    urls: &'a [String],
    #[serde(skip_serializing_if = "no_annotations")]
    annotations: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a Platform>,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'a String>,
}

fn no_annotations(a: &&BTreeMap<String, String>) -> bool {
    a.is_empty()
}

impl<'a> DescriptorView<'a> {
    /// View `desc`, written with `media_type`.
    pub(crate) fn new(desc: &'a Descriptor, media_type: MediaType) -> Self {
        DescriptorView {
            media_type,
            digest: &desc.digest,
            size: desc.size,
            urls: &desc.urls,
            annotations: &desc.annotations,
            data: desc.data.as_ref(),
            platform: desc.platform.as_deref(),
            artifact_type: desc.artifact_type.as_ref(),
        }
    }
}

/// An OCI platform, in Go's key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// OS version.
    #[serde(rename = "os.version", default, skip_serializing_if = "String::is_empty")]
    pub os_version: String,
    /// OS features.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Descriptor {
    /// A descriptor with just type, digest and size.
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type,
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            data: None,
            platform: None,
            artifact_type: None,
        }
    }

    /// The descriptor of in-memory bytes.
    pub fn of_bytes(media_type: MediaType, bytes: &[u8]) -> Self {
        Self::new(media_type, Digest::of_bytes(bytes), bytes.len() as u64)
    }

    /// The layer's diffID, when annotated and valid.
    pub fn diff_id(&self) -> Option<Digest> {
        self.annotations
            .get(ANNOTATION_UNCOMPRESSED)
            .and_then(|s| Digest::parse(s).ok())
    }

    /// The layer's creation time, when annotated and valid.
    pub fn created_at(&self) -> Option<GoTime> {
        self.annotations.get(ANNOTATION_CREATED_AT).and_then(|s| s.parse().ok())
    }

    /// Whether this layer is estargz (gzip with a stargz TOC).
    pub fn is_estargz(&self) -> bool {
        self.annotations.contains_key(ANNOTATION_STARGZ_TOC)
    }

    /// A human name for the layer's compression: `gzip`, `estargz`, `zstd`, `uncompressed`,
    /// or `unknown`.
    pub fn compression_name(&self) -> &'static str {
        if self.is_estargz() {
            return "estargz";
        }
        self.media_type
            .layer_compression()
            .map(|c| c.as_str())
            .unwrap_or("unknown")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_writes_the_bytes_of_its_descriptor() {
        let full = r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":3,"urls":["https://example.com/x"],"annotations":{"a":"1","b":"2"},"data":"eA==","platform":{"architecture":"amd64","os":"linux"},"artifactType":"x/y"}"#;
        let bare = r#"{"mediaType":"","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":0}"#;
        for text in [full, bare] {
            let desc: Descriptor = serde_json::from_str(text).unwrap();
            let own = crate::gojson::to_go_json(&desc).unwrap();
            let view = crate::gojson::to_go_json(&DescriptorView::new(&desc, desc.media_type.clone())).unwrap();
            assert_eq!(String::from_utf8(view).unwrap(), String::from_utf8(own).unwrap());
        }
    }
}
