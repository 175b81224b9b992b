//! The bench's peers, installed when the machine lacks them, so `cargo xtask bench` runs on a
//! fresh machine: skopeo and rclone from Debian's packages (`apt-get`, as root, the same way
//! `.ci/run` installs the test servers), awscli from PyPI into a venv of its own
//! (`~/.cache/bkcache/awscli-venv`, put first on the bench's `PATH`). Quick when all are there.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{run, Result};

/// The awscli release the bench installs (v1: the line PyPI has).
const AWSCLI: &str = "1.45.11";
/// Where the awscli venv goes, relative to `$HOME`.
const AWSCLI_VENV: &str = ".cache/bkcache/awscli-venv";

fn works(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn apt_install(packages: &[&str]) -> Result {
    if !is_root() || !works("apt-get", "--version") {
        return Err(format!(
            "the benchmark's peers are missing and this is not root with apt-get: install {} (e.g. `sudo apt-get install {}`)",
            packages.join(", "),
            packages.join(" ")
        ));
    }
    eprintln!("bench: installing {} (apt-get)", packages.join(" "));
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    run(install.args(packages))
}

fn awscli_venv() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set: cannot place the awscli venv")?;
    let venv = PathBuf::from(home).join(AWSCLI_VENV);
    let aws = venv.join("bin/aws");
    if aws.is_file() && works(&aws.to_string_lossy(), "--version") {
        return Ok(venv.join("bin"));
    }
    eprintln!("bench: installing awscli=={AWSCLI} into {}", venv.display());
    let _ = std::fs::remove_dir_all(&venv);
    let make = |v: &PathBuf| {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(v)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !make(&venv) {
        // Debian's python3 needs python3-venv (ensurepip) to make a venv.
        let _ = std::fs::remove_dir_all(&venv);
        apt_install(&["python3-venv"])?;
        if !make(&venv) {
            return Err(format!("python3 -m venv {} failed", venv.display()));
        }
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        &format!("awscli=={AWSCLI}"),
    ]))?;
    Ok(venv.join("bin"))
}

/// Where a peer comes from.
enum Source {
    Apt(&'static str),
    AwscliVenv,
}

/// Each peer: the backends that need it, the program and the argument that proves it runs.
const PEERS: [(&[&str], &str, &str, Source); 3] = [
    (&["registry"], "skopeo", "--version", Source::Apt("skopeo")),
    (&["s3", "azblob"], "rclone", "version", Source::Apt("rclone")),
    (&["s3"], "aws", "--version", Source::AwscliVenv),
];

/// Install the peers the chosen backends need and the machine lacks; fail naming any that
/// still does not run.
pub fn ensure(only: &[String]) -> Result {
    let needed = PEERS
        .iter()
        .filter(|(backends, ..)| backends.iter().any(|b| only.iter().any(|o| o == b)));
    let missing: Vec<_> = needed.filter(|(_, program, arg, _)| !works(program, arg)).collect();
    let apt: Vec<&str> = missing
        .iter()
        .filter_map(|(.., source)| match source {
            Source::Apt(package) => Some(*package),
            Source::AwscliVenv => None,
        })
        .collect();
    if !apt.is_empty() {
        apt_install(&apt)?;
    }
    if missing.iter().any(|(.., source)| matches!(source, Source::AwscliVenv)) {
        let bin = awscli_venv()?;
        let path = std::env::var_os("PATH").unwrap_or_default();
        let joined = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)))
            .map_err(|e| format!("PATH: {e}"))?;
        // Before any thread starts: every peer command the bench runs inherits it.
        std::env::set_var("PATH", joined);
    }
    let still: Vec<&str> = missing
        .iter()
        .filter(|(_, program, arg, _)| !works(program, arg))
        .map(|(_, program, ..)| *program)
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the benchmark's peers do not run after installing them: {}",
            still.join(", ")
        ))
    }
}
