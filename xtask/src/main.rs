//! Project automation, in Rust so it runs wherever cargo does. Kept light: libc, and for the GHA
//! test server base64, serde_json and sha2 (no async runtime, no HTTP framework).
//!
//! | command | does |
//! |---|---|
//! | `cargo xtask demo` | the README's main job: a real `bkcache copy` + `inspect` + `verify` on the sample cache |
//! | `cargo xtask test` | the README's test command: dependency rules, every workspace test, the demo |
//! | `cargo xtask ci` | what CI runs: `fmt --check`, `clippy -D warnings`, `release-check`, then `test` |
//! | `cargo xtask check-deps` | fail if a backend depends on another backend, or core on a network/runtime crate |
//! | `cargo xtask bench [--quick]` | bkcache next to cp, skopeo, aws-cli and rclone on fresh servers; writes `BENCHMARKS.md` |
//! | `cargo xtask release-check [--no-verify]` | metadata, package contents and `cargo publish --dry-run` of every crate (in `ci`) |
//! | `cargo xtask release CRATE VERSION [--dry-run]` | bump one crate, date its CHANGELOG, print the publish order |
//! | `cargo xtask servers` | start the test servers and print their variables (for single tests by hand) |
//! | `cargo xtask fuzz [SECONDS]` | run the cargo-fuzz targets in `fuzz/` (optional, not in CI) |

mod bench;
mod bench_proxy;
mod gha_server;
mod release;
mod servers;
mod servers_azurite;
mod servers_gha;
mod servers_s3;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("test") => test(),
        Some("ci") => ci(),
        Some("check-deps") => check_deps(),
        Some("bench") => bench::bench(&args[1..]),
        Some("servers") => serve(),
        Some("release-check") => release::release_check(&args[1..]),
        Some("release") => release::release(&args[1..]),
        Some("gha-server") => gha_server::main(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        _ => Err(
            "usage: cargo xtask <demo|test|ci|check-deps|bench [--quick] [--only BACKENDS] [--sizes LABELS]|servers|release-check|release CRATE VERSION|fuzz [SECONDS]>".into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result {
    eprintln!("$ {}", show(cmd));
    let status = cmd.status().map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", show(cmd)))
    }
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn ci() -> Result {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    release::release_check(&[])?;
    test()?;
    // The bench cannot rot: its quick run (64 MiB, each backend and peer once, the small scale
    // rows) runs here. CI checks that it runs (and the 64 MiB RSS budget), not its speed.
    bench::bench(&["--quick".to_owned()])
}

fn test() -> Result {
    check_deps()?;
    // Build first, so servers do not idle through a compile.
    run(cargo().args(["test", "--workspace", "--no-run"]))?;
    let servers = servers::Servers::start()?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    for (k, v) in &servers.vars {
        cmd.env(k, v);
    }
    // Tests that need a server fail (not skip) when its variable is missing.
    cmd.env("BKCACHE_REQUIRE_SERVERS", "1");
    // Real BuildKit for the interop tests, from ../shared when the checkout sits beside it
    // (CI, developers); the binaries are never copied into the repo.
    let buildkit = root().join("../shared/tools/buildkit-v0.32.2");
    for (var, bin) in [("BKCACHE_BUILDKITD", "buildkitd"), ("BKCACHE_BUILDCTL", "buildctl")] {
        if std::env::var_os(var).is_none() && buildkit.join(bin).is_file() {
            cmd.env(var, buildkit.join(bin));
        }
    }
    let result = run(&mut cmd);
    drop(servers);
    result?;
    demo()
}

/// Start the test servers, print their variables, and keep them until Enter or EOF (for
/// running single tests by hand: `eval "$(cargo xtask servers)"` in another shell).
fn serve() -> Result {
    let servers = servers::Servers::start()?;
    for (k, v) in &servers.vars {
        println!("export {k}={v}");
    }
    eprintln!("servers: running; press Enter to stop");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}

fn bkcache_bin(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "-q", "-p", "bkcache"]);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    Ok(target_dir()
        .join(if release { "release" } else { "debug" })
        .join("bkcache"))
}

fn demo() -> Result {
    let bin = bkcache_bin(false)?;
    let sample = root().join("testdata/buildkit-v0.32.2/local-max/cache");
    let out = target_dir().join("demo/cache");
    let _ = std::fs::remove_dir_all(&out);
    let from = format!("type=local,src={}", sample.display());
    let to = format!("type=local,dest={},mode=max", out.display());
    run(Command::new(&bin).args(["copy", "--from", &from, "--to", &to]))?;
    let src = format!("type=local,src={}", out.display());
    run(Command::new(&bin).args(["inspect", &src]))?;
    run(Command::new(&bin).args(["verify", &src]))?;
    eprintln!("demo: copied BuildKit's local-max sample cache to {}", out.display());
    eprintln!(
        "demo: the bkcache binary is {} (try `{} --help`; `cargo install --locked --path crates/cli` puts it on PATH)",
        bin.display(),
        bin.display()
    );
    Ok(())
}

/// Dependency rules: a backend never depends on another backend (invariant 2); cache-core
/// never on a network client, cloud SDK or async runtime (invariant 1).
fn check_deps() -> Result {
    let crates = root().join("crates");
    let mut backends = Vec::new();
    for entry in std::fs::read_dir(&crates).map_err(|e| e.to_string())? {
        let dir = entry.map_err(|e| e.to_string())?.path();
        if dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("backend-"))
        {
            let toml = std::fs::read_to_string(dir.join("Cargo.toml")).map_err(|e| e.to_string())?;
            let name = package_name(&toml).ok_or_else(|| format!("{}: no package name", dir.display()))?;
            backends.push((dir, name, toml));
        }
    }
    let mut problems = Vec::new();
    for (dir, me, toml) in &backends {
        for dep in dependency_names(toml) {
            if backends.iter().any(|(_, other, _)| other != me && *other == dep) {
                problems.push(format!(
                    "{} ({me}) depends on backend {dep}: a backend may depend only on bkcache-core",
                    dir.display()
                ));
            }
        }
    }
    let core = std::fs::read_to_string(crates.join("cache-core/Cargo.toml")).map_err(|e| e.to_string())?;
    const FORBIDDEN: &[&str] = &[
        "tokio",
        "reqwest",
        "hyper",
        "object_store",
        "async-std",
        "smol",
        "rustls",
        "openssl",
    ];
    for dep in dependency_names_in(&core, &["dependencies"]) {
        if FORBIDDEN.contains(&dep.as_str()) || dep.starts_with("aws-") || dep.starts_with("azure") {
            problems.push(format!(
                "bkcache-core depends on {dep}: core knows no network, cloud or async runtime"
            ));
        }
    }
    if problems.is_empty() {
        eprintln!(
            "check-deps: ok ({} backends, each depends on bkcache-core only)",
            backends.len()
        );
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn package_name(toml: &str) -> Option<String> {
    let mut in_package = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(v) = line
                .strip_prefix("name")
                .map(str::trim)
                .and_then(|r| r.strip_prefix('='))
            {
                return Some(v.trim().trim_matches('"').to_owned());
            }
        }
    }
    None
}

fn dependency_names(toml: &str) -> Vec<String> {
    dependency_names_in(toml, &["dependencies", "dev-dependencies", "build-dependencies"])
}

/// Dependency keys (and `package = "…"` renames) in the given sections, target-specific ones too.
fn dependency_names_in(toml: &str, sections: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut active = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            let last = header.rsplit('.').next().unwrap_or(header);
            active = sections.contains(&last) || sections.iter().any(|s| header.starts_with(&format!("{s}.")));
            if sections.iter().any(|s| header.starts_with(&format!("{s}."))) {
                // [dependencies.foo] form
                if let Some(name) = header.split('.').nth(1) {
                    out.push(name.trim_matches('"').to_owned());
                }
            }
            continue;
        }
        if !active || line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let key = key.trim().split('.').next().unwrap_or("").trim_matches('"').to_owned();
            if key == "package" {
                out.push(value.trim().trim_matches('"').to_owned());
                continue;
            }
            out.push(key);
            if let Some(i) = value.find("package") {
                if let Some(v) = value[i..].split('"').nth(1) {
                    out.push(v.to_owned());
                }
            }
        }
    }
    out
}

/// The cargo-fuzz targets in `fuzz/` (a separate project, outside the workspace), each run for
/// SECONDS (default 60) after one build, seeded from BuildKit's caches in `testdata/`. Manual
/// and optional (not in `ci`): libFuzzer needs a nightly compiler, so the build runs with
/// `RUSTC_BOOTSTRAP=1`, which lets the stable toolchain do it. Needs `cargo install cargo-fuzz`.
/// Crash reproducers land in `fuzz/artifacts/<target>/`.
fn fuzz(args: &[String]) -> Result {
    const TARGETS: [&str; 3] = ["spec", "cache_config", "manifest"];
    let seconds: u64 = match args.first() {
        Some(s) => s
            .parse()
            .map_err(|_| format!("usage: cargo xtask fuzz [SECONDS]; got {s:?}"))?,
        None => 60,
    };
    let has_cargo_fuzz = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        return Err("cargo-fuzz is not installed: run `cargo install cargo-fuzz`".into());
    }
    // Seed corpora: real configs, manifests and cache options.
    let data = root().join("testdata/buildkit-v0.32.2");
    let fuzz_dir = root().join("fuzz");
    let blob = |case: &str, digest: &str| data.join(case).join("cache/blobs/sha256").join(digest);
    let seeds: [(&str, Vec<PathBuf>); 2] = [
        (
            "cache_config",
            vec![
                blob(
                    "local-max",
                    "69f9d08aca7363311b8dc19aa453e7962e95ef402280bf0f38960c7407ed5770",
                ),
                data.join("s3-max/manifest-main.json"),
            ],
        ),
        (
            "manifest",
            vec![
                blob(
                    "local-max",
                    "83b2b9fb42354a1f2928260f80624dd4bf1dd4dd5598626425eb0eba1a2abf6a",
                ),
                blob(
                    "local-index",
                    "8276a40048cde0effb589f62d0052e3dfff41070180667c4d0d052a1c40973a5",
                ),
                blob(
                    "local-docker",
                    "24b5f79eb5d2361f1d6538b6e1e64db3d92c5f40ea520a0e367de80146f7855b",
                ),
            ],
        ),
    ];
    for (target, files) in &seeds {
        let dir = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (i, f) in files.iter().enumerate() {
            std::fs::copy(f, dir.join(format!("seed-{i}"))).map_err(|e| format!("{}: {e}", f.display()))?;
        }
    }
    let spec_dir = fuzz_dir.join("corpus/spec");
    std::fs::create_dir_all(&spec_dir).map_err(|e| format!("{}: {e}", spec_dir.display()))?;
    for (i, s) in [
        "type=local,src=/tmp/cache,tag=main",
        "type=registry,ref=user/app:cache,mode=max,compression=zstd,compression-level=3,force-compression=true",
        "[{\"type\":\"s3\",\"bucket\":\"b\",\"region\":\"r\",\"ignore-error\":true}]",
        "type=azblob,\"account_url=https://a.blob.core.windows.net/?sv=1&sig=x,y\",secret_access_key=k",
        "user/app:cache",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(spec_dir.join(format!("seed-{i}")), s).map_err(|e| e.to_string())?;
    }

    let build = Instant::now();
    run(cargo()
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "build", "--fuzz-dir", "fuzz"]))?;
    eprintln!("fuzz: built in {:.0}s", build.elapsed().as_secs_f64());
    let mut failed = Vec::new();
    for target in TARGETS {
        let start = Instant::now();
        let status = cargo()
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target, "--fuzz-dir", "fuzz", "--"])
            .arg(format!("-max_total_time={seconds}"))
            .args([
                "-timeout=10",
                "-rss_limit_mb=2048",
                "-max_len=65536",
                "-print_final_stats=1",
            ])
            .status()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        eprintln!(
            "fuzz: {target}: {} after {:.0}s",
            if status.success() { "no crash" } else { "FAILED" },
            start.elapsed().as_secs_f64()
        );
        if !status.success() {
            failed.push(target);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz: {} found a crash, a timeout or an out-of-memory input; reproducers in fuzz/artifacts/<target>/ \
             (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> --fuzz-dir fuzz fuzz/artifacts/<target>/<file>)",
            failed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_dependency_form() {
        let toml = r#"
[package]
name = "bkcache-s3"
[dependencies]
bkcache-core.workspace = true
bkcache-local = { path = "../backend-local" }
renamed = { package = "bkcache-gha", version = "1" }
[target.'cfg(unix)'.dependencies]
bkcache-azblob = "0.1"
[dev-dependencies.bkcache-registry]
path = "../backend-registry"
[features]
x = []
"#;
        let deps = dependency_names(toml);
        for want in [
            "bkcache-core",
            "bkcache-local",
            "bkcache-gha",
            "bkcache-azblob",
            "bkcache-registry",
        ] {
            assert!(deps.iter().any(|d| d == want), "{want} in {deps:?}");
        }
        assert!(!deps.iter().any(|d| d == "x"));
        assert_eq!(package_name(toml).as_deref(), Some("bkcache-s3"));
    }
}
