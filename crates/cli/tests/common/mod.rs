//! Helpers shared by the CLI integration tests: run the real `bkcache` binary on real files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod buildkit;
pub mod fake;
pub mod proxy;
pub mod s3;
pub mod serve;
pub mod token;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/buildkit-v0.32.2")
}

pub fn fixture_cache(case: &str) -> PathBuf {
    fixtures().join(case).join("cache")
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

pub fn bkcache(args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .args(args)
        .env_remove("BKCACHE_LOG")
        .output()
        .expect("run bkcache");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "bkcache panicked: {}", run.stderr);
    run
}

pub fn src(dir: &Path) -> String {
    format!("type=local,src={}", dir.display())
}

pub fn dest(dir: &Path, opts: &str) -> String {
    if opts.is_empty() {
        format!("type=local,dest={}", dir.display())
    } else {
        format!("type=local,dest={},{opts}", dir.display())
    }
}

/// Copy a directory tree (fixtures are read-only; tests that damage a cache damage a copy).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut perm = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&target, perm).unwrap();
        }
    }
}

/// Every file in `blobs/sha256` hashes to its name (no half-written blob is visible).
pub fn assert_blobs_intact(root: &Path) {
    let dir = root.join("blobs/sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert_eq!(
            bkcache_core::Digest::of_bytes(&bytes).hex(),
            name,
            "blob file {} does not match its name",
            e.path().display()
        );
    }
}

pub fn blob_path(root: &Path, digest: &str) -> PathBuf {
    root.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// A test server's address from `cargo xtask test`. Missing: a failure under CI or
/// `BKCACHE_REQUIRE_SERVERS`, a loud skip otherwise.
pub fn server(var: &str) -> Option<String> {
    bkcache_core::conformance::server(var)
}

/// The BuildKit options each local fixture was exported with (minus `dest`).
pub const CASES: &[(&str, &str, &str)] = &[
    ("local-max", "latest", "mode=max"),
    ("local-min", "latest", "mode=min"),
    (
        "local-index",
        "latest",
        "mode=max,image-manifest=false,oci-mediatypes=true",
    ),
    ("local-docker", "latest", "mode=max,oci-mediatypes=false"),
    (
        "local-zstd",
        "latest",
        "mode=max,compression=zstd,force-compression=true",
    ),
    (
        "local-uncompressed",
        "latest",
        "compression=uncompressed,force-compression=true",
    ),
    (
        "local-estargz",
        "latest",
        "compression=estargz,force-compression=true,oci-mediatypes=true",
    ),
    ("local-two-tags", "main", "mode=max,tag=main"),
    ("local-two-tags", "feature", "mode=max,tag=feature"),
];

/// facts.json's entry for a fixture tag.
pub fn facts_for(case: &str, tag: &str) -> serde_json::Value {
    let facts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("facts.json")).unwrap()).unwrap();
    facts["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == case)
        .and_then(|c| c["tags"].as_array().unwrap().iter().find(|t| t["tag"] == tag))
        .cloned()
        .unwrap_or_else(|| panic!("no facts for {case}:{tag}"))
}

/// Run bkcache with extra environment variables.
pub fn bkcache_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bkcache"));
    cmd.args(args).env_remove("BKCACHE_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bkcache");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "bkcache panicked: {}", run.stderr);
    run
}

/// Write an OCI-layout cache at `dir` whose single result is the layer chain made of `tars`
/// (each gzip-compressed with the `gzip` CLI). Returns the layer digests.
pub fn write_cache_of_tars(dir: &Path, tars: &[Vec<u8>]) -> Vec<String> {
    use bkcache_core::cache::{LayerChain, Record};
    use bkcache_core::{AbstractCache, Descriptor, Digest, MediaType};
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let mut cache = AbstractCache::default();
    let mut chain = Vec::new();
    for tar in tars {
        let mut child = Command::new("gzip")
            .arg("-nc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Feed gzip from a thread while this one reads its output (a pipe holds only 64 KiB).
        let mut stdin = child.stdin.take().unwrap();
        let input = tar.clone();
        let feeder = std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(&input).unwrap();
        });
        let gz = child.wait_with_output().unwrap().stdout;
        feeder.join().unwrap();
        let mut desc = Descriptor::of_bytes(MediaType::OciLayerGzip, &gz);
        desc.annotations
            .insert("containerd.io/uncompressed".into(), Digest::of_bytes(tar).to_string());
        std::fs::write(dir.join("blobs/sha256").join(desc.digest.hex()), &gz).unwrap();
        chain.push(desc.digest.clone());
        cache.blobs.insert(desc.digest.clone(), desc);
    }
    cache.records.push(Record {
        digest: Digest::of_bytes(b"test-record"),
        inputs: Vec::new(),
        results: vec![LayerChain {
            blobs: chain.clone(),
            created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        }],
    });
    let enc = bkcache_core::manifest::encode_manifest(&cache, bkcache_core::Wrapper::ImageManifest, true).unwrap();
    for (d, b) in [(&enc.config, &enc.config_bytes), (&enc.manifest, &enc.manifest_bytes)] {
        std::fs::write(dir.join("blobs/sha256").join(d.digest.hex()), b).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
            enc.manifest.digest, enc.manifest.size
        ),
    )
    .unwrap();
    chain.iter().map(|d| d.to_string()).collect()
}

/// A tar of a directory tree, made with the `tar` CLI.
pub fn tar_dir(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(dir)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// `bkcache debug generate` a cache of `blobs` layers, `bytes` in all, into `dir`.
pub fn generate(dir: &Path, blobs: u32, bytes: u64) {
    bkcache(&[
        "debug",
        "generate",
        "--to",
        &dest(dir, ""),
        "--blobs",
        &blobs.to_string(),
        "--bytes",
        &bytes.to_string(),
    ])
    .ok();
}

/// `root/c<blobs>`: a generated realistic local cache of `blobs` blobs of 1 KiB on average (one
/// record each): the graph is big, the bytes small.
pub fn generate_small(root: &Path, blobs: u32) -> PathBuf {
    let dir = root.join(format!("c{blobs}"));
    let (n, bytes) = (blobs.to_string(), (u64::from(blobs) * 1024).to_string());
    bkcache(&[
        "debug",
        "generate",
        "-q",
        "--realistic",
        "--to",
        &dest(&dir, ""),
        "--blobs",
        &n,
        "--bytes",
        &bytes,
    ])
    .ok();
    dir
}
