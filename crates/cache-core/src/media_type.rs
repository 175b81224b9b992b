//! Typed media types, with an escape hatch so unknown ones round-trip unchanged.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A layer's compression, as its media type (and magic bytes) say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compression {
    /// Plain tar.
    Uncompressed,
    /// gzip (estargz layers are gzip too; they are told apart by annotations).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// BuildKit's name for it (`compression=` values).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// Detect from the first bytes of a blob.
    pub fn from_magic(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if head.len() >= 262 && &head[257..262] == b"ustar" {
            Some(Compression::Uncompressed)
        } else {
            None
        }
    }
}

macro_rules! media_types {
    ($($variant:ident => $text:literal, $doc:literal;)*) => {
        /// A media type. Known ones are variants; anything else is kept in [`MediaType::Other`].
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum MediaType {
            $(#[doc = $doc] $variant,)*
            /// Any other media type, kept verbatim (may be empty: BuildKit sends descriptors
            /// without a media type in a few places).
            Other(String),
        }

        impl MediaType {
            /// The media type string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(MediaType::$variant => $text,)*
                    MediaType::Other(s) => s,
                }
            }

            /// Parse; never fails.
            pub fn parse(s: &str) -> MediaType {
                match s {
                    $($text => MediaType::$variant,)*
                    other => MediaType::Other(other.to_owned()),
                }
            }
        }
    };
}

media_types! {
    OciImageManifest => "application/vnd.oci.image.manifest.v1+json", "OCI image manifest.";
    OciImageIndex => "application/vnd.oci.image.index.v1+json", "OCI image index.";
    DockerManifest => "application/vnd.docker.distribution.manifest.v2+json", "Docker image manifest (schema 2).";
    DockerManifestList => "application/vnd.docker.distribution.manifest.list.v2+json", "Docker manifest list.";
    BuildkitCacheConfig => "application/vnd.buildkit.cacheconfig.v0", "BuildKit cache config blob.";
    OciImageConfig => "application/vnd.oci.image.config.v1+json", "OCI image config.";
    DockerImageConfig => "application/vnd.docker.container.image.v1+json", "Docker image config.";
    OciLayer => "application/vnd.oci.image.layer.v1.tar", "OCI layer, uncompressed.";
    OciLayerGzip => "application/vnd.oci.image.layer.v1.tar+gzip", "OCI layer, gzip (also estargz).";
    OciLayerZstd => "application/vnd.oci.image.layer.v1.tar+zstd", "OCI layer, zstd.";
    OciNondistributableLayer => "application/vnd.oci.image.layer.nondistributable.v1.tar", "OCI non-distributable layer.";
    OciNondistributableLayerGzip => "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "OCI non-distributable layer, gzip.";
    DockerLayer => "application/vnd.docker.image.rootfs.diff.tar", "Docker layer, uncompressed.";
    DockerLayerGzip => "application/vnd.docker.image.rootfs.diff.tar.gzip", "Docker layer, gzip.";
    DockerLayerZstd => "application/vnd.docker.image.rootfs.diff.tar.zstd", "Docker layer, zstd.";
    DockerForeignLayer => "application/vnd.docker.image.rootfs.foreign.diff.tar", "Docker foreign layer.";
    DockerForeignLayerGzip => "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "Docker foreign layer, gzip.";
}

impl MediaType {
    /// The OCI form of a layer type (BuildKit's `marshalRemote` normalisation); other types
    /// are returned unchanged.
    pub fn to_oci(&self) -> MediaType {
        use MediaType::*;
        match self {
            DockerLayer => OciLayer,
            DockerLayerGzip => OciLayerGzip,
            DockerLayerZstd => OciLayerZstd,
            DockerForeignLayer => OciNondistributableLayer,
            DockerForeignLayerGzip => OciNondistributableLayerGzip,
            other => other.clone(),
        }
    }

    /// The Docker form of a layer type (`oci-mediatypes=false`); other types unchanged.
    pub fn to_docker(&self) -> MediaType {
        use MediaType::*;
        match self {
            OciLayer => DockerLayer,
            OciLayerGzip => DockerLayerGzip,
            OciLayerZstd => DockerLayerZstd,
            OciNondistributableLayer => DockerForeignLayer,
            OciNondistributableLayerGzip => DockerForeignLayerGzip,
            other => other.clone(),
        }
    }

    /// The layer type for `oci` (true) or Docker (false) media types.
    pub fn for_family(&self, oci: bool) -> MediaType {
        if oci {
            self.to_oci()
        } else {
            self.to_docker()
        }
    }

    /// Whether this is a known layer type.
    pub fn is_layer(&self) -> bool {
        self.layer_compression().is_some()
    }

    /// The compression a known layer type implies.
    pub fn layer_compression(&self) -> Option<Compression> {
        use MediaType::*;
        match self {
            OciLayer | OciNondistributableLayer | DockerLayer | DockerForeignLayer => Some(Compression::Uncompressed),
            OciLayerGzip | OciNondistributableLayerGzip | DockerLayerGzip | DockerForeignLayerGzip => {
                Some(Compression::Gzip)
            }
            OciLayerZstd | DockerLayerZstd => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Whether this is an image manifest (OCI or Docker).
    pub fn is_manifest(&self) -> bool {
        matches!(self, MediaType::OciImageManifest | MediaType::DockerManifest)
    }

    /// Whether this is an index or manifest list.
    pub fn is_index(&self) -> bool {
        matches!(self, MediaType::OciImageIndex | MediaType::DockerManifestList)
    }
}

impl Default for MediaType {
    fn default() -> Self {
        MediaType::Other(String::new())
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MediaType::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_docker_mapping_round_trips() {
        for t in [
            MediaType::OciLayer,
            MediaType::OciLayerGzip,
            MediaType::OciLayerZstd,
            MediaType::OciNondistributableLayer,
            MediaType::OciNondistributableLayerGzip,
        ] {
            assert_eq!(t.to_docker().to_oci(), t);
            assert_ne!(t.to_docker(), t);
            assert_eq!(MediaType::parse(t.as_str()), t);
        }
        let other = MediaType::parse("application/x-custom");
        assert_eq!(other.to_oci(), other);
        assert_eq!(other.as_str(), "application/x-custom");
    }

    #[test]
    fn magic() {
        assert_eq!(Compression::from_magic(&[0x1f, 0x8b, 8]), Some(Compression::Gzip));
        assert_eq!(
            Compression::from_magic(&[0x28, 0xb5, 0x2f, 0xfd]),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::from_magic(b"xx"), None);
    }
}
