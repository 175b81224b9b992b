//! [`Attrs`]: one typed reader for a backend's attributes, so a `from_spec` is a list of
//! declarations. Each getter reads the attribute (an empty value counts as unset, as in
//! BuildKit), then the environment variables given, then the default, and names the attribute
//! and what is allowed when a value is wrong.
//!
//! ```
//! use std::time::Duration;
//! use bkcache_core::attrs::Attrs;
//! use bkcache_core::{CacheSpec, Direction, Env};
//!
//! let spec = &CacheSpec::parse("type=s3,region=eu-west-1,touch_refresh=1h30m,name=a;b").unwrap()[0];
//! let env = Env::empty("/").with_var("AWS_BUCKET", "ci-cache");
//! let a = Attrs::new(spec, Direction::Export, &env);
//! assert_eq!(a.required("bucket", &["AWS_BUCKET"], "add bucket=<name>").unwrap(), "ci-cache");
//! assert_eq!(a.go_duration("touch_refresh", Duration::ZERO).unwrap(), Duration::from_secs(5400));
//! assert_eq!(a.names("name", "buildkit").unwrap(), ["a", "b"]);
//! assert!(!a.go_bool("use_path_style", false).unwrap());
//! ```

use std::time::Duration;

use crate::error::{Error, Result};
use crate::factory::{Direction, Env};
use crate::secret::Secret;
use crate::spec::{parse_go_bool, CacheSpec};

/// A spec's attributes with the environment they fall back to.
#[derive(Clone, Copy)]
pub struct Attrs<'a> {
    spec: &'a CacheSpec,
    direction: Direction,
    env: &'a Env,
}

impl<'a> Attrs<'a> {
    /// A reader over `spec` opened for `direction`.
    pub fn new(spec: &'a CacheSpec, direction: Direction, env: &'a Env) -> Self {
        Attrs { spec, direction, env }
    }

    /// The attribute, unless unset or empty.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.spec.get(name).filter(|v| !v.is_empty())
    }

    /// The attribute, else the first of `vars` that is set.
    pub fn get_or_env(&self, name: &str, vars: &[&str]) -> Option<&'a str> {
        self.get(name).or_else(|| vars.iter().find_map(|v| self.env.var(v)))
    }

    /// The attribute or one of `vars`; missing is [`Error::MissingAttribute`] with `hint`.
    pub fn required(&self, name: &str, vars: &[&str], hint: &str) -> Result<String> {
        self.get_or_env(name, vars)
            .map(str::to_owned)
            .ok_or_else(|| self.missing(name, hint))
    }

    /// The attribute, else `default`.
    pub fn text(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// A secret attribute (never formatted).
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    /// A Go duration (`24h`, `1h30m`, `500ms`), else `default`.
    pub fn go_duration(&self, name: &str, default: Duration) -> Result<Duration> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => crate::gojson::parse_go_duration(v).ok_or_else(|| {
                self.invalid(
                    name,
                    v,
                    "expected a non-negative Go duration such as 24h, 1h30m, 90s, 1.5h or 500ms (units ns, us, ms, s, m, h)",
                )
            }),
        }
    }

    /// A Go boolean (`true`, `false`, `1`, `0`, `t`, `f`), else `default`.
    pub fn go_bool(&self, name: &str, default: bool) -> Result<bool> {
        self.get(name).map_or(Ok(default), |v| parse_go_bool(name, v))
    }

    /// A whole number of at least 1 (`what` says what it counts), else `default`.
    pub fn positive(&self, name: &str, default: usize, what: &str) -> Result<usize> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| self.invalid(name, v, &format!("{name} must be a positive integer ({what})"))),
        }
    }

    /// `;`-separated names, none empty, else `[default]` (a given empty value is an error).
    pub fn names(&self, name: &str, default: &str) -> Result<Vec<String>> {
        let Some(v) = self.spec.get(name) else {
            return Ok(vec![default.to_owned()]);
        };
        let names: Vec<String> = v.split(';').map(str::to_owned).collect();
        if names.iter().any(|n| n.trim().is_empty()) {
            return Err(self.invalid(
                name,
                v,
                "one or more non-empty names separated by ';', e.g. main or main;alt",
            ));
        }
        Ok(names)
    }

    /// [`Error::MissingAttribute`] for this spec and direction.
    pub fn missing(&self, name: &str, hint: &str) -> Error {
        Error::MissingAttribute {
            kind: self.spec.kind.clone(),
            attribute: name.to_owned(),
            direction: self.direction.describe().to_owned(),
            hint: hint.to_owned(),
        }
    }

    /// [`Error::InvalidValue`], the value made printable (secrets redacted).
    pub fn invalid(&self, name: &str, value: &str, allowed: &str) -> Error {
        Error::InvalidValue {
            attribute: name.to_owned(),
            value: crate::factory::printable_value(name, value),
            allowed: allowed.to_owned(),
        }
    }
}
