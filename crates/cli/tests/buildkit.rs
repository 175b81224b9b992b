//! Interop with real BuildKit v0.32.2 (`buildkitd` + `buildctl` from `BKCACHE_BUILDKITD` /
//! `BKCACHE_BUILDCTL`, which `.ci/run` points at `../shared/tools/buildkit-v0.32.2`): a cache
//! BuildKit exports survives bkcache's lifecycle rules and imports back with every step CACHED.
//!
//! - BuildKit exports `mode=max` to a local directory; bkcache copies it, prunes the copy with
//!   `--keep-duration 7d` (a fresh export: nothing goes, whatever its layers' age) and verifies it.
//! - After `buildctl prune --all`, BuildKit builds again importing bkcache's copy: every COPY step
//!   is CACHED.

#![allow(clippy::unwrap_used)]

mod common;

use common::buildkit::{binaries, copy_steps, Buildkitd};
use common::*;

#[test]
fn buildkit_exports_survive_prune_and_import_back_fully_cached() {
    let Some((buildkitd, buildctl)) = binaries() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bk = Buildkitd::start(&buildkitd, &buildctl, tmp.path(), "");
    let ctx = tmp.path().join("ctx");
    copy_tree(&fixtures().join("contexts/ctx1"), &ctx);
    let exported = tmp.path().join("exported");
    bk.build(
        &ctx,
        &[
            "--export-cache",
            &format!("type=local,dest={},mode=max", exported.display()),
        ],
    );

    // bkcache: copy, then the lifecycle rules on the copy of a fresh BuildKit export.
    let copy = tmp.path().join("copy");
    bkcache(&["copy", "--from", &src(&exported), "--to", &dest(&copy, "mode=max")]).ok();
    let before = bkcache(&["inspect", &src(&copy), "--json"]).ok().json();
    assert!(before["records"].as_u64().unwrap() > 0, "{before}");
    let pruned = bkcache(&[
        "prune",
        &src(&copy),
        "--keep-duration",
        "7d",
        "--min-age",
        "0s",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(
        (
            pruned["selection"]["results_dropped"].as_u64(),
            pruned["tags_removed"].clone()
        ),
        (Some(0), serde_json::json!([])),
        "{pruned}"
    );
    assert_eq!(before, bkcache(&["inspect", &src(&copy), "--json"]).ok().json());
    bkcache(&["verify", &src(&copy)]).ok();

    // BuildKit again, from nothing but bkcache's copy: all three COPY steps hit.
    bk.buildctl(&["prune", "--all"]);
    let out = bk.build(&ctx, &["--import-cache", &format!("type=local,src={}", copy.display())]);
    let (copies, cached) = copy_steps(&out);
    assert_eq!(copies, 3, "{out}");
    assert_eq!(cached, 3, "every COPY step comes from bkcache's copy:\n{out}");
}
