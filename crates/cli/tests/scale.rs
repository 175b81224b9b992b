//! Complexity, not speed: the lifecycle commands on a generated cache 8x larger take about 8x
//! longer (n log n allows ~10x), never the 64x of a quadratic step. The ratio of two sizes in
//! one run is what is asserted (bound 40x), so a slow or busy machine does not fail it and a
//! complexity regression does. Absolute figures are `cargo xtask bench`'s. Memory is held to
//! the size of the cache's own documents (manifest + config): peak RSS grows by at most a few
//! times the bytes it reads, never by a copy per layer.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The fastest of three runs (the others carry the machine's noise).
fn best_of_three(args: &[&str]) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            bkcache(args).ok();
            started.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn prune_inspect_and_diff_grow_no_faster_than_n_log_n() {
    let tmp = tempfile::tempdir().unwrap();
    let sizes = [2_000u32, 16_000];
    let specs: Vec<String> = sizes.iter().map(|&n| src(&generate_small(tmp.path(), n))).collect();
    let mut table = Vec::new();
    for (what, args) in [
        (
            "prune --dry-run --keep-storage 1MB",
            vec![
                "prune",
                "{}",
                "--dry-run",
                "--keep-storage",
                "1MB",
                "--min-age",
                "0s",
                "--json",
            ],
        ),
        ("inspect --json", vec!["inspect", "{}", "--json"]),
        ("diff", vec!["diff", "{}", "{}", "--json"]),
    ] {
        let times: Vec<Duration> = specs
            .iter()
            .map(|spec| {
                let args: Vec<&str> = args
                    .iter()
                    .map(|a| if *a == "{}" { spec.as_str() } else { a })
                    .collect();
                best_of_three(&args)
            })
            .collect();
        let ratio = times[1].as_secs_f64() / times[0].as_secs_f64().max(1e-3);
        table.push(format!(
            "{what}: {:.3} s at {} blobs, {:.3} s at {} ({ratio:.1}x for 8x)",
            times[0].as_secs_f64(),
            sizes[0],
            times[1].as_secs_f64(),
            sizes[1]
        ));
        assert!(ratio < 40.0, "{what} grows faster than n log n:\n{}", table.join("\n"));
    }
    eprintln!("{}", table.join("\n"));
}

/// Peak RSS (KiB) of one `bkcache` run, from `wait4` (std's `wait` does not return usage).
#[allow(unsafe_code, clippy::zombie_processes)] // reaped by wait4, which clippy does not see
fn peak_rss_kib(args: &[&str]) -> u64 {
    let child = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .args(args)
        .env_remove("BKCACHE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: a plain C struct that wait4 fills in; all-zero is a valid value of it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; the pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    assert_eq!(status, 0, "bkcache {args:?} failed");
    u64::try_from(usage.ru_maxrss).unwrap()
}

/// Bytes of the cache's manifest and config (the documents every command reads whole).
fn document_bytes(dir: &Path) -> u64 {
    let out = bkcache(&["inspect", &src(dir), "--json"]).ok().stdout;
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    summary["manifest"]["size"].as_u64().unwrap() + summary["config"]["size"].as_u64().unwrap()
}

#[test]
fn memory_grows_with_the_documents_not_with_a_copy_per_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let sizes = [2_000u32, 16_000];
    let dirs: Vec<PathBuf> = sizes.iter().map(|&n| generate_small(tmp.path(), n)).collect();
    let grown_docs = (document_bytes(&dirs[1]) - document_bytes(&dirs[0])) as f64;
    let mut table = Vec::new();
    // Before the compact load, inspect held 10x its documents and a copy 10.5x.
    for (what, bound) in [("inspect --json", 6.0), ("copy (nothing to do)", 8.0)] {
        let rss: Vec<u64> = dirs
            .iter()
            .map(|dir| {
                let source = src(dir);
                if what == "inspect --json" {
                    return peak_rss_kib(&["inspect", &source, "--json"]);
                }
                let name = dir.file_name().unwrap().to_string_lossy();
                let target = dest(&tmp.path().join(format!("copy-of-{name}")), "");
                bkcache(&["copy", "-q", "--from", &source, "--to", &target]).ok();
                peak_rss_kib(&["copy", "-q", "--from", &source, "--to", &target])
            })
            .collect();
        let ratio = (rss[1].saturating_sub(rss[0]) * 1024) as f64 / grown_docs;
        table.push(format!(
            "{what}: peak RSS {} KiB at {} blobs, {} KiB at {}: {ratio:.1}x the {:.1} MB of documents added",
            rss[0],
            sizes[0],
            rss[1],
            sizes[1],
            grown_docs / 1e6
        ));
        assert!(
            ratio < bound,
            "{what} holds more than {bound}x its documents:\n{}",
            table.join("\n")
        );
    }
    eprintln!("{}", table.join("\n"));
}
