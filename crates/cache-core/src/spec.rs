//! The option language: buildx's `--cache-from` / `--cache-to` strings, and the typed common
//! export options every backend shares.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::cache::Mode;
use crate::error::{Error, Result};
use crate::manifest::Wrapper;

/// One parsed cache entry: `type=` plus attributes (keys lower-cased, values verbatim).
///
/// `Debug` and `Display` redact the values of secret attributes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheSpec {
    /// Backend type (`local`, `registry`, …).
    pub kind: String,
    /// Attributes other than `type`.
    pub attrs: BTreeMap<String, String>,
}

/// Attribute names whose values are never printed.
pub const SECRET_ATTRIBUTES: &[&str] = &[
    "token",
    "ghtoken",
    "secret_access_key",
    "session_token",
    "access_key_id",
    "password",
    "sas_token",
];

/// Whether an attribute's value must never be printed.
pub fn is_secret_attribute(name: &str) -> bool {
    SECRET_ATTRIBUTES.contains(&name)
}

/// Whether a bare (`type`-less) field is a file-system path: an image reference never starts
/// with `/`, `.` or `~` (buildx would send it to a registry and fail on DNS).
pub fn looks_like_path(field: &str) -> bool {
    let f = field.trim();
    f.starts_with('/') || f.starts_with('.') || f.starts_with('~')
}

impl CacheSpec {
    /// A spec with no attributes.
    pub fn new(kind: impl Into<String>) -> Self {
        CacheSpec {
            kind: kind.into(),
            attrs: BTreeMap::new(),
        }
    }

    /// Builder-style attribute.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attrs.insert(key.to_ascii_lowercase(), value.into());
        self
    }

    /// An attribute value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }

    /// Parse one flag value (a CSV record, or the ref-only form, or bake's JSON form).
    ///
    /// ```
    /// use bkcache_core::CacheSpec;
    /// let specs = CacheSpec::parse("Type=local,SRC=/tmp/cache").unwrap();
    /// assert_eq!(specs[0].kind, "local");
    /// assert_eq!(specs[0].get("src"), Some("/tmp/cache"));
    /// let refs = CacheSpec::parse("user/app:cache").unwrap();
    /// assert_eq!(refs[0].to_string(), "type=registry,ref=user/app:cache");
    /// ```
    pub fn parse(input: &str) -> Result<Vec<CacheSpec>> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(Vec::new());
        }
        if trimmed.starts_with('[') || trimmed.starts_with('{') {
            return parse_json(trimmed);
        }
        let fields = split_csv(input).map_err(|reason| Error::Spec {
            input: redact_input(input),
            reason,
        })?;
        if !input.contains('=') {
            if let Some(path) = fields.iter().find(|f| looks_like_path(f)) {
                return Err(Error::Spec {
                    input: redact_input(input),
                    reason: format!(
                        "{path:?} is a directory path, not an image reference; did you mean type=local,src={path} (to read) or type=local,dest={path} (to write)?"
                    ),
                });
            }
            return Ok(fields
                .into_iter()
                .filter(|f| !f.is_empty())
                .map(|f| CacheSpec::new("registry").with("ref", f))
                .collect());
        }
        let mut kind = None;
        let mut attrs = BTreeMap::new();
        for field in fields {
            let Some((k, v)) = field.split_once('=') else {
                return Err(Error::Spec {
                    input: redact_input(input),
                    reason: format!("invalid value {field:?}: every field must be key=value"),
                });
            };
            let k = k.trim().to_ascii_lowercase();
            if k == "type" {
                kind = Some(v.to_owned());
            } else {
                attrs.insert(k, v.to_owned());
            }
        }
        match kind {
            Some(kind) if !kind.is_empty() => Ok(vec![CacheSpec { kind, attrs }]),
            _ => Err(Error::Spec {
                input: redact_input(input),
                reason: "type required: add type=<local|registry|inline|gha|s3|azblob>".into(),
            }),
        }
    }

    /// Parse many flag values, dropping duplicates (as buildx's `removeDupes`).
    pub fn parse_all<S: AsRef<str>>(inputs: &[S]) -> Result<Vec<CacheSpec>> {
        let mut out: Vec<CacheSpec> = Vec::new();
        for i in inputs {
            for s in CacheSpec::parse(i.as_ref())? {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }
}

/// A value safe to print: secret attributes are replaced, and a URL query that carries a
/// signature (an Azure SAS pasted into `account_url`, a presigned URL) is cut.
pub fn printable(key: &str, value: &str) -> String {
    if is_secret_attribute(key) {
        return "<redacted>".into();
    }
    match value.split_once('?') {
        Some((base, query)) if query.contains("sig=") || query.contains("Signature=") || query.contains("token") => {
            format!("{base}?<redacted>")
        }
        _ => value.to_owned(),
    }
}

impl fmt::Display for CacheSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type={}", self.kind)?;
        for (k, v) in &self.attrs {
            let v = printable(k, v);
            let v = v.as_str();
            if v.contains(',') || v.contains('"') {
                write!(f, ",\"{k}={}\"", v.replace('"', "\"\""))?;
            } else {
                write!(f, ",{k}={v}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CacheSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheSpec({self})")
    }
}

fn redact_input(input: &str) -> String {
    // Redact `secret=value` fields without trusting the (possibly malformed) CSV.
    input
        .split(',')
        .map(|field| match field.split_once('=') {
            Some((k, v)) => format!(
                "{k}={}",
                printable(k.trim().trim_matches('"').to_ascii_lowercase().as_str(), v)
            ),
            _ => field.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Split one CSV record with Go `encoding/csv` rules (the rules buildx applies).
fn split_csv(input: &str) -> std::result::Result<Vec<String>, String> {
    let s = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(input);
    let chars: Vec<char> = s.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
            match chars.get(i) {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {
                    fields.push(field);
                    i += 1;
                }
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            while let Some(&c) = chars.get(i) {
                match c {
                    ',' => break,
                    '"' => return Err(format!("bare \" in non-quoted field {:?}", field + "\"")),
                    '\n' | '\r' => return Err("unexpected line break: one flag value is one CSV record".into()),
                    _ => field.push(c),
                }
                i += 1;
            }
            fields.push(field);
            if i >= chars.len() {
                return Ok(fields);
            }
            i += 1; // the comma
        }
    }
}

fn parse_json(input: &str) -> Result<Vec<CacheSpec>> {
    let value: serde_json::Value = serde_json::from_str(input).map_err(|e| Error::Spec {
        input: "<json>".into(),
        reason: format!("invalid JSON cache option: {e}"),
    })?;
    let items = match value {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        let serde_json::Value::Object(map) = item else {
            return Err(Error::Spec {
                input: "<json>".into(),
                reason: "each JSON cache option must be an object like {\"type\":\"local\",\"src\":\"dir\"}".into(),
            });
        };
        let mut kind = None;
        let mut attrs = BTreeMap::new();
        for (k, v) in map {
            // buildx decodes each entry into a Go `map[string]string`: strings only, and a
            // `null` stands for the empty string.
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => {
                    let (kind, hint) = match &other {
                        serde_json::Value::Bool(_) => ("a boolean", format!("\"{other}\"")),
                        serde_json::Value::Number(_) => ("a number", format!("\"{other}\"")),
                        serde_json::Value::Array(_) => ("an array", "one string".into()),
                        _ => ("an object", "one string".into()),
                    };
                    return Err(Error::Spec {
                        input: "<json>".into(),
                        reason: format!(
                            "JSON cache option {k:?} is {kind}; every value must be a string (write {hint})"
                        ),
                    });
                }
            };
            if k.eq_ignore_ascii_case("type") {
                kind = Some(v);
            } else {
                attrs.insert(k.to_ascii_lowercase(), v);
            }
        }
        let kind = kind.filter(|k| !k.is_empty()).ok_or_else(|| Error::Spec {
            input: "<json>".into(),
            reason: "type required for every JSON cache option".into(),
        })?;
        out.push(CacheSpec { kind, attrs });
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(attribute: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(Error::InvalidValue {
            attribute: attribute.into(),
            value: value.into(),
            allowed: "expected a boolean: true, false, 1, 0, t, f".into(),
        }),
    }
}

/// Layer compression requested on export (`compression=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerCompression {
    /// Plain tar.
    Uncompressed,
    /// gzip (the default).
    Gzip,
    /// estargz (seekable gzip).
    Estargz,
    /// zstd.
    Zstd,
}

impl LayerCompression {
    /// BuildKit's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerCompression::Uncompressed => "uncompressed",
            LayerCompression::Gzip => "gzip",
            LayerCompression::Estargz => "estargz",
            LayerCompression::Zstd => "zstd",
        }
    }
}

/// The typed common export options (`mode`, `oci-mediatypes`, `image-manifest`,
/// `compression`, `compression-level`, `force-compression`, `ignore-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// `mode=`; `None` (unset) keeps every result the sources have. BuildKit's own default is
    /// `min`, but a copy that silently dropped results would lose cache: set `mode=min` to
    /// filter.
    pub mode: Option<Mode>,
    /// `oci-mediatypes=` (default true).
    pub oci_mediatypes: bool,
    /// `image-manifest=` (default true; false when `oci-mediatypes=false` and unset).
    pub image_manifest: bool,
    /// `compression=` (default gzip for new blobs).
    pub compression: LayerCompression,
    /// Whether `compression=` was given (BuildKit's default, gzip, is otherwise implied).
    pub compression_explicit: bool,
    /// `compression-level=`.
    pub compression_level: Option<i32>,
    /// `force-compression=`.
    pub force_compression: bool,
    /// `ignore-error=`: an export failure becomes a warning.
    pub ignore_error: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            mode: None,
            oci_mediatypes: true,
            image_manifest: true,
            compression: LayerCompression::Gzip,
            compression_explicit: false,
            compression_level: None,
            force_compression: false,
            ignore_error: false,
        }
    }
}

impl ExportOptions {
    /// Read the common options from a spec's attributes (other attributes are ignored here;
    /// the factory checks them). Bad values are errors naming the attribute and what is allowed.
    pub fn from_attrs(attrs: &BTreeMap<String, String>) -> Result<Self> {
        let mut o = ExportOptions::default();
        if let Some(v) = attrs.get("mode") {
            o.mode = Some(match v.as_str() {
                "min" => Mode::Min,
                "max" => Mode::Max,
                _ => {
                    return Err(Error::InvalidValue {
                        attribute: "mode".into(),
                        value: v.clone(),
                        allowed: "expected min or max".into(),
                    })
                }
            });
        }
        if let Some(v) = attrs.get("oci-mediatypes") {
            o.oci_mediatypes = parse_go_bool("oci-mediatypes", v)?;
        }
        match attrs.get("image-manifest") {
            Some(v) => {
                o.image_manifest = parse_go_bool("image-manifest", v)?;
                if o.image_manifest && !o.oci_mediatypes {
                    return Err(Error::InvalidCombination {
                        reason: "invalid configuration for remote cache, OCI mediatypes are required for image-manifest cache format: drop image-manifest=true or set oci-mediatypes=true".into(),
                    });
                }
            }
            None => o.image_manifest = o.oci_mediatypes,
        }
        if let Some(v) = attrs.get("compression") {
            o.compression_explicit = true;
            o.compression = match v.as_str() {
                "uncompressed" => LayerCompression::Uncompressed,
                "gzip" => LayerCompression::Gzip,
                "estargz" => LayerCompression::Estargz,
                "zstd" => LayerCompression::Zstd,
                _ => {
                    return Err(Error::InvalidValue {
                        attribute: "compression".into(),
                        value: v.clone(),
                        allowed: "unsupported compression type; expected uncompressed, gzip, estargz or zstd".into(),
                    })
                }
            };
        }
        if let Some(v) = attrs.get("compression-level") {
            let range = match o.compression {
                LayerCompression::Zstd => 0..=22,
                _ => -2..=9,
            };
            let level = v
                .parse::<i32>()
                .ok()
                .filter(|l| range.contains(l))
                .ok_or_else(|| Error::InvalidValue {
                    attribute: "compression-level".into(),
                    value: v.clone(),
                    allowed: format!(
                        "expected an integer from {} to {} for compression={}",
                        range.start(),
                        range.end(),
                        o.compression.as_str()
                    ),
                })?;
            o.compression_level = Some(level);
        }
        if let Some(v) = attrs.get("force-compression") {
            o.force_compression = v.is_empty() || parse_go_bool("force-compression", v)?;
        }
        if let Some(v) = attrs.get("ignore-error") {
            o.ignore_error = parse_go_bool("ignore-error", v)?;
        }
        Ok(o)
    }

    /// The manifest-family wrapper these options select.
    pub fn wrapper(&self) -> Wrapper {
        Wrapper::for_options(self.oci_mediatypes, self.image_manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Malformed options, each refused with a message naming what is wrong (the CLI maps these
    /// to exit 2; `crates/cli/tests/bad_input.rs` checks that end to end).
    #[test]
    fn malformed_options_say_what_is_wrong() {
        for (input, says) in [
            ("type=local,src=\"unterminated", "bare \""),
            ("type=local,src=a\"b", "bare \""),
            ("type=local,src", "every field must be key=value"),
            ("=x", "type required"),
            ("type=", "type required"),
            ("[{\"type\":\"local\"", "invalid JSON cache option"),
            ("[1,2]", "must be an object"),
            ("{}", "type required"),
            (
                "{\"type\":[\"local\"]}",
                "JSON cache option \"type\" is an array; every value must be a string",
            ),
            (
                "{\"type\":\"local\",\"src\":\"/x\",\"tag\":7}",
                "\"tag\" is a number; every value must be a string (write \"7\")",
            ),
        ] {
            let e = CacheSpec::parse(input).unwrap_err();
            assert!(matches!(e, Error::Spec { .. }), "{input}: {e:?}");
            assert!(e.to_string().contains(says), "{input}: {e}");
        }
        // Nothing, or only separators, is no cache at all (the caller decides whether that is
        // an error).
        for input in ["", ",,,", "[]"] {
            assert!(CacheSpec::parse(input).unwrap().is_empty(), "{input}");
        }
    }

    fn check(input: &str, expected: &[&str]) {
        let got: Vec<String> = CacheSpec::parse(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, expected, "{input}");
    }

    fn check_err(input: &str, expected: &str) {
        let e = CacheSpec::parse(input).unwrap_err().to_string();
        assert!(e.contains(expected), "{input}: {e}");
    }

    /// Fixture F8 of the spec (buildx's `cache_test.go`).
    #[test]
    fn buildx_vectors() {
        check("user/app:cache", &["type=registry,ref=user/app:cache"]);
        check("a,b", &["type=registry,ref=a", "type=registry,ref=b"]);
        for path in ["./cache", "/var/cache/bk", "../up", "~/bk", "."] {
            let e = CacheSpec::parse(path).unwrap_err().to_string();
            assert!(e.contains(&format!("did you mean type=local,src={path}")), "{e}");
        }
        check("type=local,src=path/to/cache", &["type=local,src=path/to/cache"]);
        check("Type=gha,Scope=X", &["type=gha,scope=X"]);
        check("type=registry,\"ref=a,b\"", &["type=registry,\"ref=a,b\""]);
        check("type=local,\"src=a,b\",tag=t", &["type=local,\"src=a,b\",tag=t"]);
        check("type=local,src=x\n", &["type=local,src=x"]);
        check("type=local,type=registry,ref=r", &["type=registry,ref=r"]);
        check("", &[]);
        check(
            r#"[{"type":"registry","ref":"user/app:cache"},{"type":"local","src":"path/to/cache"}]"#,
            &["type=registry,ref=user/app:cache", "type=local,src=path/to/cache"],
        );
        check_err("test=test", "type required");
        check_err("type=local,src", "invalid value \"src\"");
        check_err("type=local,src=a\"b", "bare \"");
        check_err("type=local,\"src=a", "missing \"");
        check_err(r#"[{"ref":"x"}]"#, "type required");
        // Values are strings (buildx: Go map[string]string); null is the empty string.
        check(r#"{"type":"local","src":"d","tag":null}"#, &["type=local,src=d,tag="]);
        check_err(r#"{"type":"local","src":"d","tag":1}"#, "\"tag\" is a number");
        check_err(r#"{"type":"s3","use_path_style":true}"#, "write \"true\"");
        check_err(r#"{"type":["local"]}"#, "\"type\" is an array");
        check_err(r#"{"type":"local","src":{"a":"b"}}"#, "\"src\" is an object");
    }

    #[test]
    fn secrets_are_redacted() {
        let s = &CacheSpec::parse("type=s3,bucket=b,secret_access_key=hunter2,token=abc").unwrap()[0];
        assert_eq!(s.get("secret_access_key"), Some("hunter2"));
        for text in [s.to_string(), format!("{s:?}")] {
            assert!(!text.contains("hunter2") && !text.contains("abc"), "{text}");
        }
        let sas = &CacheSpec::parse("type=azblob,account_url=https://a.blob.core.windows.net/?sv=2022&sig=SECRETSIG")
            .unwrap()[0];
        assert!(
            !sas.to_string().contains("SECRETSIG") && sas.to_string().contains("?<redacted>"),
            "{sas}"
        );
        let e = CacheSpec::parse("secret_access_key=hunter2").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    fn opts(attrs: &[(&str, &str)]) -> Result<ExportOptions> {
        ExportOptions::from_attrs(&attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn export_option_defaults_and_errors() {
        let d = opts(&[]).unwrap();
        assert_eq!((d.oci_mediatypes, d.image_manifest, d.mode), (true, true, None));
        assert_eq!(d.wrapper(), Wrapper::ImageManifest);
        assert_eq!(
            opts(&[("oci-mediatypes", "false")]).unwrap().wrapper(),
            Wrapper::DockerManifestList
        );
        assert_eq!(
            opts(&[("image-manifest", "false")]).unwrap().wrapper(),
            Wrapper::OciIndex
        );
        assert_eq!(opts(&[("mode", "max")]).unwrap().mode, Some(Mode::Max));
        assert!(opts(&[("force-compression", "")]).unwrap().force_compression);
        let e = opts(&[("oci-mediatypes", "false"), ("image-manifest", "true")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("OCI mediatypes are required"), "{e}");
        for (k, v, want) in [
            ("mode", "maximum", "expected min or max"),
            ("compression", "lz4", "unsupported compression type"),
            ("compression-level", "x", "expected an integer from -2 to 9"),
            ("oci-mediatypes", "yes", "expected a boolean"),
            ("ignore-error", "maybe", "expected a boolean"),
        ] {
            let e = opts(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(k) && e.contains(v), "{e}");
        }
        let e = opts(&[("compression", "zstd"), ("compression-level", "23")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("0 to 22"), "{e}");
    }
}
