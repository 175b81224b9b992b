//! Complexity, not speed: the lifecycle commands on a generated cache 8x larger take about 8x
//! longer (n log n allows ~10x), never the 64x of a quadratic step. The ratio of two sizes in
//! one run is what is asserted (bound 40x), so a slow or busy machine does not fail it and a
//! complexity regression does. Absolute figures are `cargo xtask bench`'s.

#![allow(clippy::unwrap_used)]

mod common;

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
    let specs: Vec<String> = sizes
        .iter()
        .map(|&n| {
            let dir = tmp.path().join(format!("c{n}"));
            bkcache(&[
                "debug",
                "generate",
                "-q",
                "--realistic",
                "--to",
                &dest(&dir, ""),
                "--blobs",
                &n.to_string(),
                "--bytes",
                &(u64::from(n) * 1024).to_string(),
            ])
            .ok();
            src(&dir)
        })
        .collect();
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
