//! `kill -9` in the middle of a copy to a local directory leaves the destination either as it
//! was (same `index.json`, every blob it names intact) or complete (verifies, expected digest).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn generate(dir: &Path) -> String {
    let r = bkcache(&[
        "debug",
        "generate",
        "--to",
        &dest(dir, ""),
        "--blobs",
        "48",
        "--bytes",
        &(96u64 << 20).to_string(),
    ])
    .ok();
    r.stdout.trim().to_owned()
}

fn index_bytes(dir: &Path) -> Option<Vec<u8>> {
    std::fs::read(dir.join("index.json")).ok()
}

fn copy_cmd(from: &Path, to: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bkcache"));
    c.args([
        "copy",
        "-q",
        "--parallelism",
        "2",
        "--from",
        &src(from),
        "--to",
        &dest(to, ""),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

#[test]
fn kill_9_leaves_destination_as_it_was_or_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let expected = generate(&source);
    assert!(expected.starts_with("sha256:"), "{expected}");

    // Time one full copy to spread the kill points over it.
    let probe = tmp.path().join("probe");
    let start = Instant::now();
    assert!(copy_cmd(&source, &probe).status().unwrap().success());
    let full = start.elapsed();
    bkcache(&["verify", &src(&probe)]).ok();

    let mut outcomes = (0, 0);
    for (round, existing) in [(0, false), (1, true)] {
        for k in 1..=8u32 {
            let out = tmp.path().join(format!("out-{round}-{k}"));
            if existing {
                // An older cache under the same tag must survive a killed export intact.
                bkcache(&[
                    "copy",
                    "--from",
                    &src(&fixture_cache("local-max")),
                    "--to",
                    &dest(&out, ""),
                ])
                .ok();
            }
            let before = index_bytes(&out);
            let mut child = copy_cmd(&source, &out).spawn().unwrap();
            std::thread::sleep(full.mul_f64(k as f64 / 7.0));
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();

            assert_blobs_intact(&out);
            let after = index_bytes(&out);
            if after == before {
                outcomes.0 += 1;
                if existing {
                    bkcache(&["verify", &src(&out)]).ok();
                }
            } else {
                outcomes.1 += 1;
                let v = bkcache(&["verify", &src(&out), "--json"]).ok().json();
                assert_eq!(
                    v["manifest"].as_str(),
                    Some(expected.as_str()),
                    "complete cache after kill at {k}/7"
                );
            }
            // A later copy finishes the job from whatever state was left.
            let r = bkcache(&["copy", "--from", &src(&source), "--to", &dest(&out, ""), "--json"])
                .ok()
                .json();
            assert_eq!(r["targets"][0]["manifest"]["digest"].as_str(), Some(expected.as_str()));
            bkcache(&["verify", &src(&out)]).ok();
        }
    }
    eprintln!(
        "kill -9 outcomes: {} left as they were, {} complete",
        outcomes.0, outcomes.1
    );
    assert!(
        outcomes.0 > 0,
        "at least one kill landed mid-copy (timing: full copy took {full:?})"
    );
}

#[test]
fn killed_copy_leaves_no_visible_partial_blob() {
    // Kill very early and often: whatever is in blobs/sha256 must hash to its name.
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    generate(&source);
    let out = tmp.path().join("out");
    for ms in [5u64, 20, 40, 80] {
        let mut child = copy_cmd(&source, &out).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        assert_blobs_intact(&out);
    }
}
