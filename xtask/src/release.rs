//! Releases: `cargo xtask release-check` (run by `cargo xtask ci`) and
//! `cargo xtask release CRATE VERSION [--dry-run]`.
//!
//! Every crate under `crates/` without `publish = false` is published on its own, with its own
//! version and CHANGELOG.md. Workspace dependencies carry a `version` next to their `path`, so a
//! packaged crate depends on the published version of the other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::{cargo, dependency_names_in, package_name, root, run, Result};

/// A publishable crate of the workspace.
#[derive(Debug, Clone)]
struct Krate {
    /// `crates/<dir>`.
    dir: PathBuf,
    name: String,
    version: String,
    toml: String,
    /// Workspace crates it depends on (normal and build dependencies).
    deps: BTreeSet<String>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The `[package]` value of `key`: `Some("workspace")` for `key.workspace = true`, the string
/// value without quotes, or the raw text (arrays, booleans).
fn package_field(toml: &str, key: &str) -> Option<String> {
    let mut in_package = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k == format!("{key}.workspace") {
            return Some("workspace".into());
        }
        if k == key {
            return Some(v.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// Every publishable crate under `crates/`, sorted by directory.
fn crates() -> Result<Vec<Krate>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let toml = read(&dir.join("Cargo.toml"))?;
        if package_field(&toml, "publish").as_deref() == Some("false") {
            continue;
        }
        let name = package_name(&toml).ok_or_else(|| format!("{}: no package name", dir.display()))?;
        let version = package_field(&toml, "version").unwrap_or_default();
        out.push(Krate {
            dir,
            name,
            version,
            toml,
            deps: BTreeSet::new(),
        });
    }
    let names: BTreeSet<String> = out.iter().map(|k| k.name.clone()).collect();
    for k in &mut out {
        k.deps = dependency_names_in(&k.toml, &["dependencies", "build-dependencies"])
            .into_iter()
            .filter(|d| names.contains(d) && *d != k.name)
            .collect();
    }
    Ok(out)
}

/// Dependencies before dependants (ties by name): the order `cargo publish` needs.
fn publish_order(crates: &[Krate]) -> Result<Vec<String>> {
    let mut left: BTreeMap<&str, &BTreeSet<String>> = crates.iter().map(|k| (k.name.as_str(), &k.deps)).collect();
    let mut done: Vec<String> = Vec::new();
    while !left.is_empty() {
        let ready: Vec<&str> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| done.contains(d)))
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            return Err(format!(
                "dependency cycle among {}",
                left.keys().copied().collect::<Vec<_>>().join(", ")
            ));
        }
        for n in ready {
            left.remove(n);
            done.push(n.to_owned());
        }
    }
    Ok(done)
}

/// A semantic version (build metadata ignored).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    /// `None` sorts after any pre-release, as in SemVer.
    release: Option<()>,
    pre: String,
}

impl Version {
    fn parse(s: &str) -> Option<Version> {
        let s = s.split('+').next()?;
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, p.to_owned()),
            Some(_) => return None,
            None => (s, String::new()),
        };
        let mut parts = core.split('.');
        let mut num = || -> Option<u64> {
            let p = parts.next()?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
                return None;
            }
            p.parse().ok()
        };
        let v = Version {
            major: num()?,
            minor: num()?,
            patch: num()?,
            release: pre.is_empty().then_some(()),
            pre,
        };
        parts.next().is_none().then_some(v)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        Ok(())
    }
}

/// Whether a cargo requirement written as a bare version (`"0.1.0"`, `"0.1"`, `"1"`: a caret
/// requirement) accepts `v`.
fn caret_matches(req: &str, v: &Version) -> bool {
    let req = req.trim().trim_start_matches('^');
    let mut fields = req.split('.').map(|p| p.parse::<u64>().ok());
    let (Some(Some(major)), minor, patch) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    let (minor, patch) = (minor.flatten(), patch.flatten());
    if !v.pre.is_empty() {
        // Cargo matches a pre-release only by a requirement naming that exact version.
        return req == v.to_string();
    }
    let floor = (major, minor.unwrap_or(0), patch.unwrap_or(0));
    if (v.major, v.minor, v.patch) < floor {
        return false;
    }
    match (major, minor, patch) {
        (0, Some(0), Some(p)) => v.major == 0 && v.minor == 0 && v.patch == p,
        (0, Some(m), _) => v.major == 0 && v.minor == m,
        (0, None, _) => v.major == 0,
        (m, _, _) => v.major == m,
    }
}

/// Whether a table header (without brackets) is one of `sections`, or its `target.'…'.` form.
fn in_sections(header: &str, sections: &[&str]) -> bool {
    sections
        .iter()
        .any(|s| header == *s || (header.starts_with("target.") && header.ends_with(&format!(".{s}"))))
}

/// Replace the `version = "…"` of `[package]`.
fn set_package_version(toml: &str, new: &str) -> Option<String> {
    let mut in_package = false;
    let mut done = false;
    let mut out = String::with_capacity(toml.len() + 8);
    for line in toml.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') {
            in_package = t == "[package]";
        } else if in_package && !done && t.split_once('=').is_some_and(|(k, _)| k.trim() == "version") {
            let indent = &line[..line.len() - line.trim_start().len()];
            let nl = if line.ends_with('\n') { "\n" } else { "" };
            out.push_str(&format!("{indent}version = \"{new}\"{nl}"));
            done = true;
            continue;
        }
        out.push_str(line);
    }
    done.then_some(out)
}

/// For the inline-table dependency lines on `dep` (`dep = { path = "…", version = "REQ" }`) in
/// `sections`: set REQ to `new` where it does not accept `new`. Returns the new text and the
/// changes made (old requirement, new requirement).
fn update_requirements(toml: &str, sections: &[&str], dep: &str, new: &Version) -> (String, Vec<(String, String)>) {
    let mut active = false;
    let mut changes = Vec::new();
    let mut out = String::with_capacity(toml.len() + 8);
    for line in toml.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') {
            let header = t.trim_matches(|c| c == '[' || c == ']');
            active = in_sections(header, sections);
            out.push_str(line);
            continue;
        }
        let is_dep = active
            && t.split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == dep);
        if let (true, Some(start)) = (is_dep, line.find("version")) {
            let rest = &line[start..];
            let quoted = rest.split('"').nth(1);
            if let Some(req) = quoted.filter(|_| rest["version".len()..].trim_start().starts_with('=')) {
                if !caret_matches(req, new) {
                    let old = format!("\"{req}\"");
                    let replaced = format!("{}{}", &line[..start], rest.replacen(&old, &format!("\"{new}\""), 1));
                    changes.push((req.to_owned(), new.to_string()));
                    out.push_str(&replaced);
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    (out, changes)
}

/// The requirement on `dep` written in `sections` of `toml` (inline table or plain string).
fn requirement(toml: &str, sections: &[&str], dep: &str) -> Option<String> {
    let mut active = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            active = in_sections(header, sections);
            continue;
        }
        let Some((k, v)) = line.split_once('=').filter(|_| active) else {
            continue;
        };
        if k.trim().trim_matches('"') != dep {
            continue;
        }
        let v = v.trim();
        if v.starts_with('"') {
            return v.split('"').nth(1).map(str::to_owned);
        }
        let i = v.find("version")?;
        let rest = &v[i + "version".len()..];
        return rest
            .trim_start()
            .strip_prefix('=')?
            .split('"')
            .nth(1)
            .map(str::to_owned);
    }
    None
}

/// Today's date (UTC) as YYYY-MM-DD, or `$SOURCE_DATE_EPOCH`'s.
fn today() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    date_of(secs)
}

/// The UTC date of a Unix time, as YYYY-MM-DD (Howard Hinnant's `civil_from_days`).
fn date_of(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

const UNRELEASED: &str = "## [Unreleased]";

/// Whether a changelog already has a released version.
fn has_release(changelog: &str) -> bool {
    changelog
        .lines()
        .any(|l| l.starts_with("## [") && !l.starts_with(UNRELEASED))
}

/// Turn the Unreleased section into `## [version] - date`, leaving an empty Unreleased above.
fn release_changelog(changelog: &str, version: &str, date: &str) -> Result<String> {
    let start = changelog
        .find(&format!("{UNRELEASED}\n"))
        .ok_or_else(|| format!("no \"{UNRELEASED}\" heading"))?;
    let body_start = start + UNRELEASED.len() + 1;
    let body_end = changelog[body_start..]
        .find("\n## ")
        .map(|i| body_start + i + 1)
        .unwrap_or(changelog.len());
    let body = &changelog[body_start..body_end];
    if body.trim().is_empty() {
        return Err(format!(
            "the {UNRELEASED} section is empty: list what this release changes first"
        ));
    }
    Ok(format!(
        "{}{UNRELEASED}\n\n## [{version}] - {date}\n{body}{}",
        &changelog[..start],
        &changelog[body_end..]
    ))
}

/// Cargo verifies a dependant against the just-packaged dependencies through a temporary local
/// registry (`target/release-check/package/tmp-registry`), and extracts them under
/// `$CARGO_HOME/registry/src/<that registry>/NAME-VERSION`, where an extraction from an earlier
/// run with the same version is reused as it is: the dependant would then be built against stale
/// sources. Remove our crates' extractions outside crates.io's directory first.
fn clear_unpacked_packages(crates: &[Krate]) -> Result {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.filter_map(|e| e.ok()) {
        if registry.file_name().to_string_lossy().starts_with("index.crates.io-") {
            continue;
        }
        for k in crates {
            let dir = registry.path().join(format!("{}-{}", k.name, k.version));
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// `cargo xtask release-check [--no-verify]`: the dependency rules, each crate's metadata and
/// package contents, then `cargo publish --dry-run` of every crate (each packaged and built on
/// its own against the packaged versions of the others, in a temporary local registry).
pub fn release_check(args: &[String]) -> Result {
    let no_verify = args.iter().any(|a| a == "--no-verify");
    crate::check_deps()?;
    let crates = crates()?;
    let root_toml = read(&root().join("Cargo.toml"))?;
    let mut problems = Vec::new();
    for k in &crates {
        let rel = k.dir.strip_prefix(root()).unwrap_or(&k.dir).display().to_string();
        let mut problem = |p: String| problems.push(format!("{rel} ({}): {p}", k.name));
        match package_field(&k.toml, "version").as_deref() {
            None => problem("no version".into()),
            Some("workspace") => problem("version.workspace: each crate keeps its own version".into()),
            Some(v) if Version::parse(v).is_none() => problem(format!("version {v:?} is not SemVer")),
            Some(_) => {}
        }
        for key in [
            "description",
            "license",
            "repository",
            "readme",
            "keywords",
            "categories",
        ] {
            if package_field(&k.toml, key).is_none_or(|v| v.is_empty() || v == "[]") {
                problem(format!("no `{key}` in [package]"));
            }
        }
        if let Some(readme) = package_field(&k.toml, "readme").filter(|r| r != "workspace") {
            if !k.dir.join(&readme).is_file() {
                problem(format!("readme {readme} does not exist"));
            }
        }
        match std::fs::read_to_string(k.dir.join("CHANGELOG.md")) {
            Ok(c) if c.contains(&format!("{UNRELEASED}\n")) => {}
            Ok(_) => problem(format!("CHANGELOG.md has no \"{UNRELEASED}\" section")),
            Err(_) => problem("no CHANGELOG.md".into()),
        }
        let lib = k.dir.join("src/lib.rs");
        if lib.is_file() && !read(&lib)?.contains("pub const VERSION: &str = env!(\"CARGO_PKG_VERSION\");") {
            problem("src/lib.rs lacks `pub const VERSION: &str = env!(\"CARGO_PKG_VERSION\");`".into());
        }
        for dep in &k.deps {
            // `dep.workspace = true` takes the root's requirement; inline tables carry their own.
            let local = requirement(&k.toml, &["dependencies", "build-dependencies"], dep);
            let from_root = requirement(&root_toml, &["workspace.dependencies"], dep);
            let Some(other) = crates.iter().find(|o| &o.name == dep) else {
                continue;
            };
            match local.or(from_root) {
                None => problem(format!(
                    "depends on {dep} by path only: add `version = \"{}\"` next to the path",
                    other.version
                )),
                Some(req) => {
                    if let Some(v) = Version::parse(&other.version).filter(|v| !caret_matches(&req, v)) {
                        problem(format!("requires {dep} {req:?}, which does not accept its version {v}"));
                    }
                }
            }
        }
        // A packaged test, example or bench must not read files outside its package.
        let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args(["package", "--list", "--allow-dirty", "-p", &k.name])
            .output()
            .map_err(|e| format!("cannot run cargo package --list: {e}"))?;
        if !out.status.success() {
            problem(format!(
                "cargo package --list failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        for file in String::from_utf8_lossy(&out.stdout).lines() {
            let is_target = ["tests/", "examples/", "benches/"].iter().any(|d| file.starts_with(d));
            if is_target && file.ends_with(".rs") && read(&k.dir.join(file))?.contains("../../") {
                problem(format!(
                    "{file} reads files outside the package (../../): add it to `exclude` in Cargo.toml"
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(format!("release-check:\n  {}", problems.join("\n  ")));
    }
    let order = publish_order(&crates)?;
    eprintln!(
        "release-check: metadata ok for {} crates; publish order: {}",
        crates.len(),
        order.join(", ")
    );
    // A target directory of its own, so the workspace's builds are not disturbed; our crates'
    // fingerprints there are dropped so each run builds them from this run's packages (cargo
    // takes a registry crate of the same version for unchanged), third-party builds are kept.
    let target = crate::target_dir().join("release-check");
    clear_unpacked_packages(&crates)?;
    let fingerprints = target.join("debug/.fingerprint");
    if let Ok(entries) = std::fs::read_dir(&fingerprints) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with("bkcache") {
                std::fs::remove_dir_all(e.path())
                    .map_err(|err| format!("cannot remove {}: {err}", e.path().display()))?;
            }
        }
    }
    let mut publish = cargo();
    publish.env("CARGO_TARGET_DIR", &target);
    publish.args(["publish", "--dry-run", "--allow-dirty"]);
    if no_verify {
        publish.arg("--no-verify");
    }
    for name in &order {
        publish.args(["-p", name]);
    }
    let start = Instant::now();
    run(&mut publish)?;
    eprintln!(
        "release-check: ok: cargo publish --dry-run of {} crates{} in {:.0?}",
        order.len(),
        if no_verify {
            " (not built)"
        } else {
            ", each built from its package"
        },
        start.elapsed()
    );
    Ok(())
}

/// `cargo xtask release CRATE VERSION [--dry-run]`.
pub fn release(args: &[String]) -> Result {
    let dry_run = args.iter().any(|a| a == "--dry-run");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [name, version] = positional[..] else {
        return Err("usage: cargo xtask release CRATE VERSION [--dry-run]".into());
    };
    let new = Version::parse(version).ok_or_else(|| format!("{version:?} is not a SemVer version (e.g. 0.2.0)"))?;
    let crates = crates()?;
    let krate = crates
        .iter()
        .find(|k| &k.name == name || k.dir.file_name().is_some_and(|d| d == name.as_str()))
        .ok_or_else(|| {
            format!(
                "no publishable crate {name:?}; crates: {}",
                crates.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
    let old =
        Version::parse(&krate.version).ok_or_else(|| format!("{}: bad version {:?}", krate.name, krate.version))?;
    let changelog_path = krate.dir.join("CHANGELOG.md");
    let changelog = read(&changelog_path)?;
    let first_release = !has_release(&changelog);
    if new < old || (new == old && !first_release) {
        return Err(format!("{} is at {old}: the new version must be greater", krate.name));
    }
    let rel = |p: &Path| p.strip_prefix(root()).unwrap_or(p).display().to_string();
    let mut writes: Vec<(PathBuf, String)> = Vec::new();
    let mut notes = vec![format!("release: {} {old} -> {new}", krate.name)];

    let manifest = krate.dir.join("Cargo.toml");
    let toml = set_package_version(&krate.toml, &new.to_string())
        .ok_or_else(|| format!("{}: no version in [package]", rel(&manifest)))?;
    if toml != krate.toml {
        notes.push(format!("  {}: version = \"{new}\"", rel(&manifest)));
        writes.push((manifest, toml));
    }
    let date = today();
    let released =
        release_changelog(&changelog, &new.to_string(), &date).map_err(|e| format!("{}: {e}", rel(&changelog_path)))?;
    notes.push(format!("  {}: [Unreleased] -> [{new}] - {date}", rel(&changelog_path)));
    writes.push((changelog_path, released));

    // Requirements on the crate: the workspace table, and inline tables in other crates.
    let root_path = root().join("Cargo.toml");
    let root_toml = read(&root_path)?;
    let (root_new, root_changes) = update_requirements(&root_toml, &["workspace.dependencies"], &krate.name, &new);
    let mut changed_dependants: BTreeSet<String> = BTreeSet::new();
    let dependants: Vec<&Krate> = crates.iter().filter(|k| k.deps.contains(&krate.name)).collect();
    for (from, to) in &root_changes {
        notes.push(format!(
            "  Cargo.toml [workspace.dependencies]: {} \"{from}\" -> \"{to}\" ({from:?} does not accept {new})",
            krate.name
        ));
        for d in &dependants {
            let inline = requirement(&d.toml, &["dependencies", "build-dependencies"], &krate.name);
            if inline.is_none() {
                changed_dependants.insert(d.name.clone());
            }
        }
    }
    if !root_changes.is_empty() {
        writes.push((root_path, root_new));
    }
    for d in &dependants {
        let path = d.dir.join("Cargo.toml");
        let (text, changes) = update_requirements(&d.toml, &["dependencies", "build-dependencies"], &krate.name, &new);
        for (from, to) in &changes {
            notes.push(format!("  {}: {} \"{from}\" -> \"{to}\"", rel(&path), krate.name));
            changed_dependants.insert(d.name.clone());
        }
        if !changes.is_empty() {
            writes.push((path, text));
        }
    }
    if root_changes.is_empty() && !dependants.is_empty() {
        if let Some(req) = requirement(&root_toml, &["workspace.dependencies"], &krate.name) {
            notes.push(format!("  dependants' requirement {req:?} accepts {new}: unchanged"));
        }
    }

    if dry_run {
        notes.push("(dry run: nothing written)".into());
    } else {
        for (path, text) in &writes {
            write(path, text)?;
        }
        // Record the new version in Cargo.lock (workspace members only; no registry access).
        let mut lock = cargo();
        lock.args(["update", "--workspace", "--offline"]);
        if run(&mut lock).is_err() {
            run(cargo().args(["update", "--workspace"]))?;
        }
    }

    let order = publish_order(&crates)?;
    notes.push("next:".into());
    let mut paths: Vec<String> = writes.iter().map(|(p, _)| rel(p)).collect();
    paths.push("Cargo.lock".into());
    notes.push(format!(
        "  git commit -m \"{0} {new}\" {1} && git tag {0}-v{new}",
        krate.name,
        paths.join(" ")
    ));
    notes.push("publish order:".into());
    notes.push(format!("  1. cargo publish -p {}", krate.name));
    for (i, n) in order.iter().filter(|n| changed_dependants.contains(*n)).enumerate() {
        notes.push(format!(
            "  {}. {n}: its requirement on {} changed, so it needs a release too: \
             cargo xtask release {n} VERSION, then cargo publish -p {n}",
            i + 2,
            krate.name
        ));
    }
    let others: Vec<&str> = dependants
        .iter()
        .filter(|d| !changed_dependants.contains(&d.name))
        .map(|d| d.name.as_str())
        .collect();
    if !others.is_empty() {
        notes.push(format!(
            "  (no release needed for {}: the requirement they publish accepts {new}; release them only to ship \
             something that needs it)",
            others.join(", ")
        ));
    }
    println!("{}", notes.join("\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn versions_parse_and_order() {
        assert!(v("0.1.0") < v("0.1.1"));
        assert!(v("0.2.0-rc.1") < v("0.2.0"));
        assert!(v("0.10.0") > v("0.9.9"));
        assert_eq!(v("1.2.3+build").to_string(), "1.2.3");
        for bad in ["1", "1.2", "01.2.3", "1.2.3.4", "a.b.c", "1.2.3-", ""] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn caret_requirements_follow_cargo() {
        assert!(caret_matches("0.1.0", &v("0.1.7")));
        assert!(!caret_matches("0.1.0", &v("0.2.0")));
        assert!(!caret_matches("0.1.2", &v("0.1.1")));
        assert!(caret_matches("1.0.0", &v("1.9.0")));
        assert!(!caret_matches("1.0.0", &v("2.0.0")));
        assert!(caret_matches("0.0.3", &v("0.0.3")));
        assert!(!caret_matches("0.0.3", &v("0.0.4")));
        assert!(caret_matches("0.1", &v("0.1.4")));
        assert!(caret_matches("^0.1.0", &v("0.1.4")));
        assert!(!caret_matches("0.1.0", &v("0.1.1-rc.1")));
        assert!(caret_matches("0.2.0-rc.1", &v("0.2.0-rc.1")));
    }

    const ROOT: &str = r#"[workspace]
members = ["crates/*"]

[workspace.dependencies]
bkcache-core = { path = "crates/cache-core", version = "0.1.0" }
bkcache-local = { path = "crates/backend-local", version = "0.1.0" }
serde = "1"
"#;

    #[test]
    fn requirements_change_only_where_needed() {
        let (same, changes) = update_requirements(ROOT, &["workspace.dependencies"], "bkcache-core", &v("0.1.5"));
        assert_eq!((same.as_str(), changes.len()), (ROOT, 0));
        let (text, changes) = update_requirements(ROOT, &["workspace.dependencies"], "bkcache-core", &v("0.2.0"));
        assert_eq!(changes, vec![("0.1.0".to_owned(), "0.2.0".to_owned())]);
        assert!(text.contains(r#"bkcache-core = { path = "crates/cache-core", version = "0.2.0" }"#));
        assert!(text.contains(r#"bkcache-local = { path = "crates/backend-local", version = "0.1.0" }"#));
        assert_eq!(text.len(), ROOT.len());
        assert_eq!(
            requirement(&text, &["workspace.dependencies"], "bkcache-core").as_deref(),
            Some("0.2.0")
        );
        assert_eq!(
            requirement(ROOT, &["workspace.dependencies"], "serde").as_deref(),
            Some("1")
        );
        assert_eq!(requirement(ROOT, &["dependencies"], "serde"), None);
        let krate = "[dependencies]\nbkcache-core.workspace = true\n[target.'cfg(unix)'.dependencies]\nbkcache-s3 = { path = \"../s3\", version = \"0.1.0\" }\n[dev-dependencies]\nbkcache-local = { path = \"../l\", version = \"0.1.0\" }\n";
        assert_eq!(requirement(krate, &["dependencies"], "bkcache-core"), None);
        assert_eq!(
            requirement(krate, &["dependencies"], "bkcache-s3").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(requirement(krate, &["dependencies"], "bkcache-local"), None);
        let (_, changes) = update_requirements(krate, &["dependencies"], "bkcache-s3", &v("0.2.0"));
        assert_eq!(changes.len(), 1);
    }

    #[test]
    fn package_version_is_replaced_in_package_only() {
        let toml = "[package]\nname = \"bkcache-s3\"\nversion = \"0.1.0\"\nedition.workspace = true\n\n[dependencies]\nfoo = { version = \"0.1.0\" }\n";
        let new = set_package_version(toml, "0.1.1").unwrap();
        assert_eq!(new, toml.replacen("version = \"0.1.0\"", "version = \"0.1.1\"", 1));
        assert_eq!(package_field(&new, "version").as_deref(), Some("0.1.1"));
        assert_eq!(package_field(&new, "edition").as_deref(), Some("workspace"));
        assert_eq!(package_field(&new, "license"), None);
    }

    #[test]
    fn changelog_release_moves_unreleased_under_the_version() {
        let log = "# Changelog\n\nintro\n\n## [Unreleased]\n\n### Added\n- s3\n\n## [0.1.0] - 2026-01-01\n\n- first\n";
        let out = release_changelog(log, "0.1.1", "2026-11-23").unwrap();
        assert_eq!(
            out,
            "# Changelog\n\nintro\n\n## [Unreleased]\n\n## [0.1.1] - 2026-11-23\n\n### Added\n- s3\n\n## [0.1.0] - 2026-01-01\n\n- first\n"
        );
        assert!(has_release(&out) && !has_release("## [Unreleased]\n- x\n"));
        let e = release_changelog(&out, "0.1.2", "2026-11-24").unwrap_err();
        assert!(e.contains("empty"), "{e}");
        assert!(release_changelog("# nothing\n", "0.1.2", "x").is_err());
    }

    #[test]
    fn the_workspace_crates_publish_core_first_and_the_cli_last() {
        let crates = crates().unwrap();
        let order = publish_order(&crates).unwrap();
        assert_eq!(order.first().map(String::as_str), Some("bkcache-core"));
        assert_eq!(order.last().map(String::as_str), Some("bkcache"));
        assert_eq!(order.len(), crates.len());
        assert!(!order.iter().any(|n| n == "xtask"));
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        assert_eq!(date_of(1_767_225_599), "2025-12-31");
        assert_eq!(date_of(1_767_225_600), "2026-01-01");
        assert_eq!(today().len(), 10);
    }
}
