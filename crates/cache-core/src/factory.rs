//! Backend factories and the registry of them (`Backends`), keyed by `type=`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::spec::{CacheSpec, ExportOptions};
use crate::store::CacheStore;

/// Import (`--from`, `--cache-from`) or export (`--to`, `--cache-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Reading a cache.
    Import,
    /// Writing a cache.
    Export,
}

impl Direction {
    /// `import (--from)` / `export (--to)`, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Direction::Import => "import (--from)",
            Direction::Export => "export (--to)",
        }
    }
}

/// Which directions an attribute applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applies {
    /// `--from` only.
    Import,
    /// `--to` only.
    Export,
    /// Both.
    Both,
}

impl Applies {
    /// Whether it applies in `d`.
    pub fn includes(self, d: Direction) -> bool {
        matches!(
            (self, d),
            (Applies::Both, _) | (Applies::Import, Direction::Import) | (Applies::Export, Direction::Export)
        )
    }
}

/// Documentation of one attribute; the CLI prints these in `bkcache backends` and in errors.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AttributeDoc {
    /// Attribute name (lower case).
    pub name: &'static str,
    /// Directions.
    pub applies: Applies,
    /// Default, or `required`, or `-`.
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
    /// Whether its value is a secret (never printed).
    pub secret: bool,
}

/// Which encoding family a backend speaks; decides the common options it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Manifest family (local, registry): reads `oci-mediatypes`, `image-manifest`, `compression*`.
    Manifest,
    /// Annotated-config family (gha, s3, azblob): BuildKit ignores the compression options.
    AnnotatedConfig,
    /// Inline cache in an image config.
    Inline,
}

/// Common export attributes every backend accepts.
pub const COMMON_EXPORT_ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "mode",
        applies: Applies::Export,
        default: "unset = keep every result",
        meaning: "min: keep only the final layers' results (plus every cache key); max: keep all results",
        secret: false,
    },
    AttributeDoc {
        name: "ignore-error",
        applies: Applies::Export,
        default: "false",
        meaning: "turn an export failure into a warning (exit 0)",
        secret: false,
    },
];

/// Export attributes that the manifest family reads (and BuildKit ignores elsewhere).
pub const MANIFEST_EXPORT_ATTRIBUTES: &[AttributeDoc] = &[
    AttributeDoc {
        name: "oci-mediatypes",
        applies: Applies::Export,
        default: "true",
        meaning: "OCI media types; false writes a Docker manifest list with Docker layer types",
        secret: false,
    },
    AttributeDoc {
        name: "image-manifest",
        applies: Applies::Export,
        default: "true (false when oci-mediatypes=false)",
        meaning: "wrap the cache in an OCI image manifest instead of an index",
        secret: false,
    },
    AttributeDoc {
        name: "compression",
        applies: Applies::Export,
        default: "gzip",
        meaning: "uncompressed|gzip|estargz|zstd for new blobs (copied blobs keep theirs unless force-compression)",
        secret: false,
    },
    AttributeDoc {
        name: "compression-level",
        applies: Applies::Export,
        default: "-",
        meaning: "-2..9 (gzip, estargz) or 0..22 (zstd, mapped to 4 speeds as BuildKit does)",
        secret: false,
    },
    AttributeDoc {
        name: "force-compression",
        applies: Applies::Export,
        default: "false",
        meaning: "recompress every layer to `compression`",
        secret: false,
    },
];

/// The environment a store is opened in: variables and working directory. Tests inject it.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    cwd: PathBuf,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_default(),
        }
    }

    /// An empty environment rooted at `cwd`.
    pub fn empty(cwd: impl Into<PathBuf>) -> Self {
        Env {
            vars: BTreeMap::new(),
            cwd: cwd.into(),
        }
    }

    /// Builder: set a variable.
    pub fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// A variable (empty values count as unset).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The working directory.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// Resolve a path attribute against the working directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        }
    }
}

impl fmt::Debug for Env {
    /// Lists variable names only: values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// Makes stores of one `type=`.
pub trait BackendFactory: Send + Sync {
    /// The `type=` value.
    fn type_name(&self) -> &'static str;
    /// One line for `bkcache backends`.
    fn summary(&self) -> &'static str;
    /// The encoding family.
    fn family(&self) -> Family;
    /// The backend's own attributes (common export options are added by [`Backends`]).
    fn attributes(&self) -> &'static [AttributeDoc];
    /// Open a store. Attributes were already checked against [`BackendFactory::attributes`].
    fn open(&self, spec: &CacheSpec, direction: Direction, env: &Env) -> Result<Box<dyn CacheStore>>;
}

/// A store opened for export, with its typed options.
#[derive(Debug)]
pub struct OpenedTarget {
    /// The store.
    pub store: Box<dyn CacheStore>,
    /// The common export options.
    pub options: ExportOptions,
    /// Notes about options that have no effect on this backend.
    pub warnings: Vec<String>,
}

/// The registry of backend factories, keyed by `type=`.
#[derive(Default)]
pub struct Backends {
    factories: Vec<Box<dyn BackendFactory>>,
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.factories.iter().map(|b| b.type_name()))
            .finish()
    }
}

impl Backends {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder: register a factory (a later one with the same type replaces the earlier).
    pub fn with(mut self, factory: impl BackendFactory + 'static) -> Self {
        self.register(Box::new(factory));
        self
    }

    /// Register a factory.
    pub fn register(&mut self, factory: Box<dyn BackendFactory>) {
        self.factories.retain(|f| f.type_name() != factory.type_name());
        self.factories.push(factory);
    }

    /// Every factory, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn BackendFactory> {
        self.factories.iter().map(|f| f.as_ref())
    }

    /// The factory for a type.
    pub fn get(&self, kind: &str) -> Result<&dyn BackendFactory> {
        self.iter()
            .find(|f| f.type_name() == kind)
            .ok_or_else(|| Error::UnknownType {
                kind: kind.to_owned(),
                known: self.iter().map(|f| f.type_name()).collect::<Vec<_>>().join(", "),
            })
    }

    /// Every attribute a type accepts: its own plus the common export options of its family.
    pub fn attributes(&self, kind: &str) -> Result<Vec<AttributeDoc>> {
        let f = self.get(kind)?;
        let mut all: Vec<AttributeDoc> = f.attributes().to_vec();
        if f.family() != Family::Inline {
            all.extend_from_slice(COMMON_EXPORT_ATTRIBUTES);
            all.extend_from_slice(MANIFEST_EXPORT_ATTRIBUTES);
        }
        Ok(all)
    }

    /// Whether `kind` accepts attribute `name` but ignores it, as BuildKit does (the compression
    /// and media-type options on the annotated-config family: gha, s3, azblob).
    pub fn ignores(&self, kind: &str, name: &str) -> bool {
        self.get(kind).is_ok_and(|f| f.family() == Family::AnnotatedConfig)
            && MANIFEST_EXPORT_ATTRIBUTES.iter().any(|a| a.name == name)
    }

    /// Check a spec's attributes for this direction: unknown ones are errors listing what is
    /// allowed.
    pub fn validate(&self, spec: &CacheSpec, direction: Direction) -> Result<()> {
        let all = self.attributes(&spec.kind)?;
        for key in spec.attrs.keys() {
            let known = all.iter().any(|a| a.name == key && a.applies.includes(direction));
            if !known {
                let allowed: Vec<&str> = all
                    .iter()
                    .filter(|a| a.applies.includes(direction))
                    .map(|a| a.name)
                    .collect();
                let other = if all.iter().any(|a| a.name == key) {
                    format!(" ({key} is only for the other direction)")
                } else {
                    String::new()
                };
                return Err(Error::UnknownAttribute {
                    kind: spec.kind.clone(),
                    attribute: key.clone(),
                    direction: direction.describe().to_owned(),
                    allowed: format!("{}{other}", allowed.join(", ")),
                });
            }
        }
        Ok(())
    }

    /// Open a store to import from.
    pub fn open_source(&self, spec: &CacheSpec, env: &Env) -> Result<Box<dyn CacheStore>> {
        self.validate(spec, Direction::Import)?;
        self.get(&spec.kind)?.open(spec, Direction::Import, env)
    }

    /// Open a store to export to, with its typed common options.
    pub fn open_target(&self, spec: &CacheSpec, env: &Env) -> Result<OpenedTarget> {
        self.validate(spec, Direction::Export)?;
        let factory = self.get(&spec.kind)?;
        let mut options = ExportOptions::from_attrs(&spec.attrs)?;
        let mut warnings = Vec::new();
        if factory.family() == Family::AnnotatedConfig {
            for a in MANIFEST_EXPORT_ATTRIBUTES {
                if spec.attrs.contains_key(a.name) {
                    warnings.push(format!(
                        "{} has no effect on type={} (BuildKit ignores it there too)",
                        a.name, spec.kind
                    ));
                }
            }
            // As in BuildKit: gha, s3 and azblob always use the defaults (no recompression).
            let defaults = ExportOptions::default();
            options = ExportOptions {
                mode: options.mode,
                ignore_error: options.ignore_error,
                ..defaults
            };
        }
        let store = factory.open(spec, Direction::Export, env)?;
        Ok(OpenedTarget {
            store,
            options,
            warnings,
        })
    }
}

/// Read a required attribute or fail with the backend's documented message.
pub fn required_attr<'a>(spec: &'a CacheSpec, name: &str, direction: Direction, hint: &str) -> Result<&'a str> {
    spec.get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::MissingAttribute {
            kind: spec.kind.clone(),
            attribute: name.to_owned(),
            direction: direction.describe().to_owned(),
            hint: hint.to_owned(),
        })
}

/// An attribute value for messages: `<redacted>` when secret, signed URL queries cut.
pub fn printable_value(name: &str, value: &str) -> String {
    crate::spec::printable(name, value)
}
