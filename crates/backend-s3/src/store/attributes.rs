//! `type=s3`'s attributes (BuildKit's, with bkcache's extensions) and its factory.

use super::*;

pub(crate) const ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "bucket",
        applies: Applies::Both,
        default: "$AWS_BUCKET, else required",
        meaning: "S3 bucket (must exist; bkcache does not create it)",
        secret: false,
    },
    AttributeDoc {
        name: "region",
        applies: Applies::Both,
        default: "$AWS_REGION, else required",
        meaning: "AWS region, e.g. us-east-1 (any value for most S3-compatible servers)",
        secret: false,
    },
    AttributeDoc {
        name: "prefix",
        applies: Applies::Both,
        default: "\"\"",
        meaning: "key prefix, concatenated as-is (proj/ gives proj/blobs/…, proj gives projblobs/…)",
        secret: false,
    },
    AttributeDoc {
        name: "blobs_prefix",
        applies: Applies::Both,
        default: "blobs/",
        meaning: "blob keys are <prefix><blobs_prefix><digest>",
        secret: false,
    },
    AttributeDoc {
        name: "manifests_prefix",
        applies: Applies::Both,
        default: "manifests/",
        meaning: "cache config keys are <prefix><manifests_prefix><name>",
        secret: false,
    },
    AttributeDoc {
        name: "name",
        applies: Applies::Both,
        default: "buildkit",
        meaning: "cache names separated by ';': export writes every one, import reads the first (see import_all_names)",
        secret: false,
    },
    AttributeDoc {
        name: "endpoint_url",
        applies: Applies::Both,
        default: "$AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS",
        meaning: "S3-compatible endpoint, e.g. http://127.0.0.1:9000 (MinIO, Ceph, R2, moto)",
        secret: false,
    },
    AttributeDoc {
        name: "use_path_style",
        applies: Applies::Both,
        default: "false",
        meaning: "address the bucket in the path (ENDPOINT/BUCKET/KEY) instead of BUCKET.HOST; always on for IP endpoints",
        secret: false,
    },
    AttributeDoc {
        name: "access_key_id",
        applies: Applies::Both,
        default: "AWS credential chain",
        meaning: "static access key ID (used with secret_access_key; otherwise env, ~/.aws profile, web identity, container, instance metadata)",
        secret: true,
    },
    AttributeDoc {
        name: "secret_access_key",
        applies: Applies::Both,
        default: "AWS credential chain",
        meaning: "static secret access key (never printed)",
        secret: true,
    },
    AttributeDoc {
        name: "session_token",
        applies: Applies::Both,
        default: "-",
        meaning: "session token for temporary static credentials (never printed)",
        secret: true,
    },
    AttributeDoc {
        name: "touch_refresh",
        applies: Applies::Both,
        default: "24h",
        meaning: "on export, refresh LastModified of present blobs older than this (Go duration), so lifecycle rules expire only unused blobs",
        secret: false,
    },
    AttributeDoc {
        name: "upload_parallelism",
        applies: Applies::Both,
        default: "4",
        meaning: "blobs uploaded or touched at once (also bounded by --parallelism)",
        secret: false,
    },
    AttributeDoc {
        name: "retry_max_attempts",
        applies: Applies::Both,
        default: "3",
        meaning: "attempts per request, including the first (retries back off exponentially)",
        secret: false,
    },
    AttributeDoc {
        name: "retry_mode",
        applies: Applies::Both,
        default: "standard",
        meaning: "standard or adaptive (accepted for BuildKit compatibility; both retry with backoff)",
        secret: false,
    },
    AttributeDoc {
        name: "disable_accept_encoding",
        applies: Applies::Both,
        default: "false",
        meaning: "accepted for BuildKit compatibility (bkcache never asks for gzip transfer encoding)",
        secret: false,
    },
    AttributeDoc {
        name: "import_all_names",
        applies: Applies::Import,
        default: "false",
        meaning: "bkcache extension: import every name and merge them (BuildKit reads only the first)",
        secret: false,
    },
];

/// Factory for `type=s3`.
#[derive(Debug, Clone, Copy, Default)]
pub struct S3Factory;

impl BackendFactory for S3Factory {
    fn type_name(&self) -> &'static str {
        crate::TYPE_NAME
    }

    fn summary(&self) -> &'static str {
        "Amazon S3 or an S3-compatible server (BuildKit's s3 cache exporter/importer)"
    }

    fn family(&self) -> Family {
        Family::AnnotatedConfig
    }

    fn attributes(&self) -> &'static [AttributeDoc] {
        ATTRIBUTES
    }

    fn open(&self, spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Box<dyn CacheStore>> {
        Ok(Box::new(S3Store::open(spec, direction, env)?))
    }
}
