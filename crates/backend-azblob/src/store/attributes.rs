//! `type=azblob`'s attributes (BuildKit's, with bkcache's extensions) and its factory.

use super::*;

const ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "account_url",
        applies: Applies::Both,
        default: "$BUILDKIT_AZURE_STORAGE_ACCOUNT_URL, else from $AZURE_STORAGE_CONNECTION_STRING or $AZURE_STORAGE_ACCOUNT",
        meaning: "https://ACCOUNT.blob.core.windows.net (Azurite: http://127.0.0.1:10000/devstoreaccount1); a ?SAS query is used as sas_token",
        secret: false,
    },
    AttributeDoc {
        name: "account_name",
        applies: Applies::Both,
        default: "$BUILDKIT_AZURE_STORAGE_ACCOUNT_NAME, else the URL's first DNS label (path-style URLs: first path segment)",
        meaning: "storage account name (signs shared-key requests)",
        secret: false,
    },
    AttributeDoc {
        name: "container",
        applies: Applies::Both,
        default: "$BUILDKIT_AZURE_STORAGE_CONTAINER, else buildkit-cache",
        meaning: "blob container (created on export when missing)",
        secret: false,
    },
    AttributeDoc {
        name: "prefix",
        applies: Applies::Both,
        default: "$BUILDKIT_AZURE_STORAGE_PREFIX, else empty",
        meaning: "folder for the cache; names are path.Join(prefix, blobs_prefix|manifests_prefix, …)",
        secret: false,
    },
    AttributeDoc {
        name: "blobs_prefix",
        applies: Applies::Both,
        default: "blobs",
        meaning: "folder of the layer blobs under prefix (blob names end in sha256:<hex>)",
        secret: false,
    },
    AttributeDoc {
        name: "manifests_prefix",
        applies: Applies::Both,
        default: "manifests",
        meaning: "folder of the cache configs under prefix",
        secret: false,
    },
    AttributeDoc {
        name: "name",
        applies: Applies::Both,
        default: "buildkit",
        meaning: "manifest names separated by ';': export writes each, import reads and merges all",
        secret: false,
    },
    AttributeDoc {
        name: "secret_access_key",
        applies: Applies::Both,
        default: "$AZURE_STORAGE_KEY or the connection string's AccountKey",
        meaning: "storage account key (shared-key auth)",
        secret: true,
    },
    AttributeDoc {
        name: "sas_token",
        applies: Applies::Both,
        default: "$AZURE_STORAGE_SAS_TOKEN or the connection string's SharedAccessSignature",
        meaning: "shared access signature (sv=…&sig=…); without key or SAS: Entra ID (workload identity, service principal, managed identity)",
        secret: true,
    },
    AttributeDoc {
        name: "upload_parallelism",
        applies: Applies::Export,
        default: "4",
        meaning: "blobs uploaded at once (BuildKit: 1); each large blob also stages 4 blocks of 8 MiB at once",
        secret: false,
    },
];

/// Factory for `type=azblob`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AzblobFactory;

impl BackendFactory for AzblobFactory {
    fn type_name(&self) -> &'static str {
        crate::TYPE_NAME
    }

    fn summary(&self) -> &'static str {
        "Azure Blob Storage container (BuildKit's azblob cache: annotated config under prefix/manifests/NAME)"
    }

    fn family(&self) -> Family {
        Family::AnnotatedConfig
    }

    fn attributes(&self) -> &'static [AttributeDoc] {
        ATTRIBUTES
    }

    fn open(&self, spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Box<dyn CacheStore>> {
        let config = AzblobConfig::from_spec(spec, direction, env)?;
        Ok(Box::new(AzblobStore::open(config)?))
    }
}
