//! Real BuildKit v0.32.2 for the interop tests: buildkitd on a unix socket under a temp dir,
//! from `BKCACHE_BUILDKITD` / `BKCACHE_BUILDCTL` (set by `.ci/run` from `../shared/tools`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A buildkitd on a unix socket under `dir`, stopped by PID (then its mounts undone) on drop.
pub struct Buildkitd {
    child: Child,
    pub dir: PathBuf,
    buildctl: String,
}

impl Buildkitd {
    pub fn start(buildkitd: &str, buildctl: &str, dir: &Path, extra_config: &str) -> Self {
        Self::start_with_hosts(buildkitd, buildctl, dir, extra_config, &[])
    }

    /// The same, resolving `hosts` (name, IP) for buildkitd alone.
    pub fn start_with_hosts(
        buildkitd: &str,
        buildctl: &str,
        dir: &Path,
        extra_config: &str,
        hosts: &[(&str, &str)],
    ) -> Self {
        let config = dir.join("buildkitd.toml");
        std::fs::write(
            &config,
            format!(
                "root = \"{0}/bkroot\"\n[grpc]\n  address = [\"unix://{0}/bk.sock\"]\n[worker.oci]\n  enabled = true\n[worker.containerd]\n  enabled = false\n{extra_config}",
                dir.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("buildkitd.log")).unwrap();
        let mut command = if hosts.is_empty() {
            Command::new(buildkitd)
        } else {
            // Names only this buildkitd resolves: its own mount namespace with an /etc/hosts of
            // its own bound over the machine's (which is never edited). unshare and sh exec, so
            // the child's PID is buildkitd's.
            let file = dir.join("hosts");
            let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            for (name, ip) in hosts {
                text.push_str(&format!("\n{ip} {name}\n"));
            }
            std::fs::write(&file, text).unwrap();
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(format!(
                    "mount --bind '{}' /etc/hosts && exec \"$0\" \"$@\"",
                    file.display()
                ))
                .arg(buildkitd);
            c
        };
        let child = command
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start buildkitd");
        let bk = Buildkitd {
            child,
            dir: dir.to_path_buf(),
            buildctl: buildctl.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !bk.buildctl_ok(&["debug", "workers"]) {
            let log = std::fs::read_to_string(dir.join("buildkitd.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "buildkitd did not answer within 60 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        bk
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.buildctl);
        c.args(args)
            .env("BUILDKIT_HOST", format!("unix://{}/bk.sock", self.dir.display()));
        c
    }

    pub fn buildctl_ok(&self, args: &[&str]) -> bool {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Run buildctl; its combined output (build progress goes to stderr).
    pub fn buildctl(&self, args: &[&str]) -> String {
        let (ok, text) = self.try_buildctl(args);
        assert!(ok, "buildctl {args:?} failed:\n{text}");
        text
    }

    /// Run buildctl; (success, combined output).
    pub fn try_buildctl(&self, args: &[&str]) -> (bool, String) {
        let out = self.command(args).output().expect("run buildctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `buildctl build` arguments for a Dockerfile context, plus `cache`.
    pub fn build_args(ctx: &Path, cache: &[&str]) -> Vec<String> {
        let ctx = ctx.to_str().unwrap();
        let mut args: Vec<String> = [
            "build",
            "--frontend",
            "dockerfile.v0",
            "--local",
            &format!("context={ctx}"),
            "--local",
            &format!("dockerfile={ctx}"),
            "--progress=plain",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        args.extend(cache.iter().map(|s| (*s).to_owned()));
        args
    }

    pub fn build(&self, ctx: &Path, cache: &[&str]) -> String {
        let args = Self::build_args(ctx, cache);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.buildctl(&args)
    }
}

impl Drop for Buildkitd {
    fn drop(&mut self) {
        // Our own child, by its PID (never by name).
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let root = self.dir.display().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

/// The binaries, or `None`: a user's clone has no `../shared`, so outside CI a missing binary
/// is SKIPPED with the reason; under CI (`CI` set, as `.ci/run` runs) it fails.
pub fn binaries() -> Option<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("BKCACHE_BUILDKITD"), var("BKCACHE_BUILDCTL")) {
        (Some(d), Some(c)) => Some((d, c)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("BKCACHE_BUILDKITD / BKCACHE_BUILDCTL are not set: .ci/run points them at ../shared/tools/buildkit-v0.32.2")
        }
        _ => {
            eprintln!("SKIPPED: BKCACHE_BUILDKITD / BKCACHE_BUILDCTL are not set (real BuildKit v0.32.2 binaries; `cargo xtask test` sets them from ../shared/tools when it exists)");
            None
        }
    }
}

/// In `--progress=plain` output: (COPY steps, COPY steps CACHED). `#7 [3/3] COPY dir/ /dir/`
/// opens step #7, `#7 CACHED` says it hit.
pub fn copy_steps(out: &str) -> (usize, usize) {
    let step = |l: &str| l.split_whitespace().next().map(str::to_owned);
    let copies: Vec<String> = out.lines().filter(|l| l.contains("] COPY ")).filter_map(step).collect();
    let cached = copies
        .iter()
        .filter(|id| out.lines().any(|l| l == format!("{id} CACHED")))
        .count();
    (copies.len(), cached)
}
