//! What an installed `bkcache` offers besides its commands: shell completions and man pages
//! generated from the command-line definition, and `--version` naming every crate's version.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn bkcache(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_bkcache")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "bkcache {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(bkcache(args).stdout).unwrap()
}

/// The visible subcommands, from `bkcache --help`.
fn subcommands() -> Vec<String> {
    let help = stdout(&["--help"]);
    let commands = help.split("Commands:").nth(1).unwrap().split("\n\n").next().unwrap();
    let names: Vec<String> = commands
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect();
    for want in ["copy", "inspect", "verify", "prune", "completions", "man"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    names
}

#[test]
fn version_lists_every_crate() {
    let long = stdout(&["--version"]);
    let mut lines = long.lines();
    assert_eq!(lines.next().unwrap(), format!("bkcache {}", env!("CARGO_PKG_VERSION")));
    let rest: Vec<&str> = lines.collect();
    for krate in [
        "bkcache-core",
        "bkcache-local",
        "bkcache-registry",
        "bkcache-s3",
        "bkcache-azblob",
        "bkcache-gha",
        "bkcache-serve",
    ] {
        let line = rest.iter().find(|l| l.starts_with(&format!("{krate} "))).unwrap();
        let version = line.split(' ').nth(1).unwrap();
        assert_eq!(version.split('.').count(), 3, "{line}");
    }
    // -V stays one line for scripts.
    assert_eq!(stdout(&["-V"]).trim(), format!("bkcache {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completions_cover_every_command() {
    let commands = subcommands();
    let bash = stdout(&["completions", "bash"]);
    let zsh = stdout(&["completions", "zsh"]);
    let fish = stdout(&["completions", "fish"]);
    assert!(zsh.starts_with("#compdef bkcache"), "{}", &zsh[..40]);
    assert!(fish.contains("complete -c bkcache"));
    for c in &commands {
        assert!(
            bash.contains(c.as_str()) && zsh.contains(c.as_str()) && fish.contains(c.as_str()),
            "{c}"
        );
    }
    for flag in ["--keep-storage", "--from", "--json"] {
        assert!(
            bash.contains(flag) && zsh.contains(flag) && fish.contains(&flag[2..]),
            "{flag}"
        );
    }
    // The bash script is valid bash and defines its completion function.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bkcache.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && complete -p bkcache", script.display()))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("bkcache"));
    // Unknown shells are a usage error.
    let bad = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_pages_are_generated_from_the_command_line() {
    let page = stdout(&["man"]);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{}", &page[..60]);
    assert!(page.contains(".TH bkcache 1"), "title");
    for c in subcommands() {
        assert!(page.contains(&c), "{c} in bkcache.1");
    }
    let dir = tempfile::tempdir().unwrap();
    bkcache(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(files.contains(&"bkcache.1".to_owned()));
    let prune = std::fs::read_to_string(dir.path().join("bkcache-prune.1")).unwrap();
    assert!(prune.contains(".TH bkcache-prune 1"), "{}", &prune[..80]);
    assert!(prune.contains("keep\\-storage"), "flags are in the page");
    assert!(!files.iter().any(|f| f.contains("debug")), "{files:?}");
    // If man(1) is installed, the page renders.
    if Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("man")
            .args(["-l", dir.path().join("bkcache-copy.1").to_str().unwrap()])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
