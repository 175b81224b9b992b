//! A local -> local copy goes through the kernel (`copy_from`: a reflink or `copy_file_range`)
//! and still verifies every byte: a corrupt source fails the copy with the same error a
//! streamed copy gives and leaves nothing behind, and a pair of directories the kernel cannot
//! copy between (another file system) falls back to streaming.

use std::path::Path;
use std::sync::Arc;

use bkcache_core::transfer::{self, NoProgress, Source, Target};
use bkcache_core::{Backends, CacheSpec, Env};
use bkcache_local::LocalFactory;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/buildkit-v0.32.2/local-max/cache"
);

async fn copy(from: &Path, to: &Path) -> bkcache_core::Result<transfer::CopyReport> {
    let backends = Backends::new().with(LocalFactory);
    let env = Env::empty(to.parent().unwrap_or(to));
    let from = &CacheSpec::parse(&format!("type=local,src={}", from.display()))?[0];
    let to = &CacheSpec::parse(&format!("type=local,dest={},mode=max", to.display()))?[0];
    let sources = vec![Source {
        label: from.to_string(),
        store: backends.open_source(from, &env)?,
    }];
    let t = backends.open_target(to, &env)?;
    let targets = vec![Target {
        label: to.to_string(),
        store: t.store,
        options: t.options,
    }];
    transfer::copy(&sources, &targets, &Default::default(), Arc::new(NoProgress)).await
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).expect("under the root");
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(&entry, &dest).expect("copy fixture");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn layer_blobs(root: &Path) -> Vec<std::path::PathBuf> {
    // The biggest blobs are layers (the manifest and config are a few hundred bytes here).
    let mut blobs = walk(&root.join("blobs/sha256"));
    blobs.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    blobs
}

#[tokio::test]
async fn local_to_local_copies_in_the_kernel_and_verifies() {
    if !Path::new(FIXTURE).exists() {
        return; // the published crate has no testdata
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let report = copy(Path::new(FIXTURE), &out).await.expect("copy");
    let t = &report.targets[0];
    assert!(t.blobs_copied > 0, "{t:?}");
    assert_eq!(
        t.blobs_server_side, t.blobs_copied,
        "every layer went through the kernel: {t:?}"
    );
    for blob in walk(&out.join("blobs/sha256")) {
        let name = blob.file_name().and_then(|n| n.to_str()).expect("a name").to_owned();
        let bytes = std::fs::read(&blob).expect("read");
        assert_eq!(bkcache_core::Digest::of_bytes(&bytes).hex(), name, "{}", blob.display());
    }
    let left: Vec<_> = walk(&out.join("ingest"));
    assert!(left.is_empty(), "scratch files left: {left:?}");
}

#[test]
fn a_corrupt_source_fails_as_a_streamed_copy_does_and_leaves_nothing() {
    if !Path::new(FIXTURE).exists() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    copy_tree(Path::new(FIXTURE), &src);
    // Same size, one byte flipped: only the hash can tell.
    let victim = layer_blobs(&src).remove(0);
    let mut bytes = std::fs::read(&victim).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let mut perms = std::fs::metadata(&victim).expect("stat").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&victim, perms).expect("chmod");
    std::fs::write(&victim, &bytes).expect("corrupt");
    let out = dir.path().join("out");
    // Its own runtime: dropping it waits for the blob threads the failure cancelled (as the
    // CLI's exit does), so what is left behind is final.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let report = runtime.block_on(copy(&src, &out)).expect("copy runs");
    drop(runtime);
    let name = victim.file_name().and_then(|n| n.to_str()).expect("a name");
    // The message a streamed copy gives (`Error::DigestMismatch`), naming the blob.
    match &report.targets[0].outcome {
        transfer::Outcome::Failed(m) => assert!(m.contains(&format!("blob sha256:{name} is corrupt")), "{m}"),
        other => panic!("a corrupt blob must fail the copy: {other:?}"),
    }
    assert!(
        !out.join("blobs/sha256").join(name).exists(),
        "the corrupt blob is visible"
    );
    assert!(!out.join("index.json").exists(), "an index was written");
    assert!(walk(&out.join("ingest")).is_empty(), "scratch files left");
}

#[tokio::test]
async fn another_file_system_falls_back_to_streaming() {
    let shm = Path::new("/dev/shm");
    if !Path::new(FIXTURE).exists() || !shm.is_dir() {
        eprintln!("SKIPPED: no fixture or no /dev/shm (tmpfs) to copy from");
        return;
    }
    let from_tmpfs = tempfile::tempdir_in(shm).expect("tempdir in /dev/shm");
    let src = from_tmpfs.path().join("src");
    copy_tree(Path::new(FIXTURE), &src);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let report = copy(&src, &out).await.expect("copy from tmpfs");
    let t = &report.targets[0];
    assert!(t.blobs_copied > 0 && t.blobs_server_side <= t.blobs_copied, "{t:?}");
    for blob in walk(&out.join("blobs/sha256")) {
        let name = blob.file_name().and_then(|n| n.to_str()).expect("a name").to_owned();
        assert_eq!(
            bkcache_core::Digest::of_bytes(&std::fs::read(&blob).expect("read")).hex(),
            name
        );
    }
}
