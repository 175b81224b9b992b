//! `compression`, `compression-level`, `force-compression` on copy, checked against BuildKit's
//! own caches of one build in several compressions (local-zstd, local-uncompressed, local-max).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

fn layers(dir: &std::path::Path) -> Vec<serde_json::Value> {
    bkcache(&["inspect", &src(dir), "--json"]).ok().json()["layers"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn zstd_to_uncompressed_gives_buildkits_own_uncompressed_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("u");
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-zstd")),
        "--to",
        &dest(&out, "compression=uncompressed,force-compression=true"),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(r["targets"][0]["blobs_converted"], 3);
    assert_eq!(
        r["targets"][0]["manifest"]["digest"],
        facts_for("local-uncompressed", "latest")["manifest_digest"],
        "byte-identical to BuildKit's compression=uncompressed export of the same build"
    );
    bkcache(&["verify", &src(&out)]).ok();
}

#[test]
fn recompression_keeps_diff_ids_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let original = layers(&fixture_cache("local-uncompressed"));
    let z = tmp.path().join("z");
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-uncompressed")),
        "--to",
        &dest(&z, "compression=zstd,compression-level=19,force-compression=true"),
    ])
    .ok();
    let zl = layers(&z);
    assert!(zl
        .iter()
        .all(|l| l["media_type"] == "application/vnd.oci.image.layer.v1.tar+zstd" && l["compression"] == "zstd"));
    for l in &zl {
        let bytes = std::fs::read(blob_path(&z, l["digest"].as_str().unwrap())).unwrap();
        assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    }
    let diffs = |ls: &[serde_json::Value]| {
        let mut d: Vec<String> = ls.iter().map(|l| l["diff_id"].as_str().unwrap().to_owned()).collect();
        d.sort();
        d
    };
    assert_eq!(diffs(&zl), diffs(&original), "diffIDs preserved");
    bkcache(&["verify", &src(&z)]).ok();

    // zstd -> gzip with Docker media types -> uncompressed: back to BuildKit's bytes.
    let g = tmp.path().join("g");
    bkcache(&[
        "copy",
        "--from",
        &src(&z),
        "--to",
        &dest(&g, "compression=gzip,force-compression=true,oci-mediatypes=false"),
    ])
    .ok();
    let gl = layers(&g);
    assert!(
        gl.iter()
            .all(|l| l["media_type"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{gl:?}"
    );
    assert_eq!(diffs(&gl), diffs(&original));
    let u = tmp.path().join("u");
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&g),
        "--to",
        &dest(&u, "compression=uncompressed,force-compression=true"),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(
        r["targets"][0]["manifest"]["digest"],
        facts_for("local-uncompressed", "latest")["manifest_digest"]
    );
}

#[test]
fn without_force_nothing_is_recompressed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &dest(&out, "mode=max,compression=zstd"),
        "--json",
    ])
    .ok();
    assert!(
        r.stderr.contains("compression=zstd applies to new blobs only"),
        "{}",
        r.stderr
    );
    let j = r.json();
    assert_eq!(j["targets"][0]["blobs_converted"], 0);
    assert_eq!(
        j["targets"][0]["manifest"]["digest"],
        facts_for("local-max", "latest")["manifest_digest"]
    );
}

#[test]
fn bombs_bad_levels_and_unknown_types_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bomb");
    let r = bkcache(&[
        "copy",
        "--max-uncompressed",
        "1000",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &dest(&out, "mode=max,compression=zstd,force-compression=true"),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("too large") && r.stderr.contains("limit 1000"),
        "{}",
        r.stderr
    );
    assert!(!out.join("index.json").exists(), "nothing committed");
    assert_blobs_intact(&out);

    for (opts, want) in [
        ("compression=gzip,compression-level=10", "-2 to 9"),
        ("compression=zstd,compression-level=23", "0 to 22"),
        ("compression=lz4", "unsupported compression type"),
    ] {
        let r = bkcache(&[
            "copy",
            "--from",
            &src(&fixture_cache("local-max")),
            "--to",
            &dest(&out, opts),
        ]);
        assert_eq!(r.code, 2, "{opts}");
        assert!(r.stderr.contains(want), "{opts}: {}", r.stderr);
    }
}

#[test]
fn conversion_into_a_registry() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let to = format!("type=registry,ref={host}/conv/u:c,compression=uncompressed,force-compression=true");
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-zstd")),
        "--to",
        &to,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(
        r["targets"][0]["manifest"]["digest"],
        facts_for("local-uncompressed", "latest")["manifest_digest"]
    );
    bkcache(&["verify", &format!("type=registry,ref={host}/conv/u:c")]).ok();
}

#[test]
fn estargz_output_carries_toc_annotations_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let e = tmp.path().join("e");
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-uncompressed")),
        "--to",
        &dest(&e, "compression=estargz,force-compression=true"),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(r["targets"][0]["blobs_converted"], 3);
    bkcache(&["verify", &src(&e)]).ok();
    let ours = layers(&e);
    let theirs = layers(&fixture_cache("local-estargz"));
    assert!(ours
        .iter()
        .all(|l| l["compression"] == "estargz" && l["media_type"] == "application/vnd.oci.image.layer.v1.tar+gzip"));
    // Same files as BuildKit's estargz of this build (sizes of the decompressed streams), though
    // our deflate bytes, and so TOC offsets and digests, differ from Go's.
    let manifest = |dir: &std::path::Path| -> serde_json::Value {
        let s = bkcache(&["inspect", &src(dir), "--json"]).ok().json();
        serde_json::from_slice(&std::fs::read(blob_path(dir, s["manifest"]["digest"].as_str().unwrap())).unwrap())
            .unwrap()
    };
    let sizes = |m: &serde_json::Value| -> Vec<String> {
        let mut v: Vec<String> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                l["annotations"]["io.containers.estargz.uncompressed-size"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(sizes(&manifest(&e)), sizes(&manifest(&fixture_cache("local-estargz"))));
    assert_eq!(ours.len(), theirs.len());
    // And back: BuildKit's estargz layers and ours both decompress to valid tars.
    for (name, from) in [("ours", e.clone()), ("buildkit", fixture_cache("local-estargz"))] {
        let out = tmp.path().join(format!("back-{name}"));
        bkcache(&[
            "copy",
            "--from",
            &src(&from),
            "--to",
            &dest(&out, "compression=gzip,force-compression=true"),
        ])
        .ok();
        bkcache(&["verify", &src(&out)]).ok();
        let s = bkcache(&["scan", &src(&out), "--json"]).ok().json();
        assert_eq!(s["files_scanned"], 4, "{name}: the 4 files of ctx1");
    }
}
