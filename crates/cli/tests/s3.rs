//! `type=s3` against moto_server (PyPI `moto[server]`) started by `cargo xtask test`: round trips
//! of every fixture, BuildKit's own S3 cache, key layouts, touch, multipart, failures, secrets.
//! Tests read and write the bucket with raw HTTP (moto checks no signatures), so what they
//! assert is what is stored, not what bkcache says it stored.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::s3::*;
use common::*;

/// The config BuildKit v0.32.2 wrote to S3 for ctx2 mode=max (fixture s3-max).
const S3_MAX_CONFIG: &str = "sha256:1a311571886e7fcbb53ab2dd438802acc7edbfc0adc54346899fa95a7672d1be";

fn head(endpoint: &str, bucket: &str, key: &str) -> Answer {
    http(endpoint, "HEAD", &format!("/{bucket}/{}", enc(key)), b"")
}

fn put(endpoint: &str, bucket: &str, key: &str, body: &[u8]) {
    let a = http(endpoint, "PUT", &format!("/{bucket}/{}", enc(key)), body);
    assert_eq!(a.status, 200, "PUT {key}: {}", String::from_utf8_lossy(&a.body));
}

/// Multipart uploads in progress (not completed, not aborted).
fn open_uploads(endpoint: &str, bucket: &str) -> usize {
    let a = http(endpoint, "GET", &format!("/{bucket}?uploads"), b"");
    assert_eq!(a.status, 200);
    xml_all(&String::from_utf8(a.body).unwrap(), "Upload").len()
}

fn copy_json(from: &str, to: &str) -> serde_json::Value {
    bkcache(&["copy", "--from", from, "--to", to, "--json"]).ok().json()
}

fn blob_digests(config: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(config).unwrap();
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["blob"].as_str().unwrap().to_owned())
        .collect()
}

/// A one-blob synthetic cache of `bytes` bytes (incompressible) in `dir`.
fn synthetic(dir: &Path, bytes: u64) -> String {
    bkcache(&[
        "debug",
        "generate",
        "--to",
        &format!("type=local,dest={}", dir.display()),
        "--blobs",
        "1",
        "--bytes",
        &bytes.to_string(),
    ])
    .ok();
    let s = bkcache(&["inspect", &src(dir), "--json"]).ok().json();
    s["layers"][0]["digest"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// A logging HTTP proxy: sees every request bkcache sends (method, target, headers).

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Forward 127.0.0.1:<free> to `upstream`, logging request heads. Bodies are forwarded by
/// their Content-Length; a chunked body is logged and passed through raw.
fn proxy(upstream: &str) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let upstream = host_of(upstream).to_owned();
    let l2 = log.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let (log, upstream) = (l2.clone(), upstream.clone());
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let (mut s_read, mut c_write) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                });
                let mut reader = BufReader::new(client);
                let mut server = server;
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = Vec::new();
                        if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                            let _ = server.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        head.extend_from_slice(&line);
                        if line == b"\r\n" {
                            break;
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let mut lines = text.lines();
                    let mut first = lines.next().unwrap_or("").split_whitespace();
                    let (method, target) = (
                        first.next().unwrap_or("").to_owned(),
                        first.next().unwrap_or("").to_owned(),
                    );
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let len: u64 = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let chunked = headers
                        .iter()
                        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
                    log.lock().unwrap().push(Seen {
                        method,
                        target,
                        headers,
                    });
                    if server.write_all(&head).is_err() {
                        return;
                    }
                    if chunked {
                        let _ = std::io::copy(&mut reader, &mut server);
                        return;
                    }
                    if std::io::copy(&mut (&mut reader).take(len), &mut server).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, log)
}

/// A moto_server of the test's own (to kill), stopped by PID when dropped.
struct OwnMoto {
    child: Child,
    endpoint: String,
}

impl OwnMoto {
    fn start() -> OwnMoto {
        Self::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> OwnMoto {
        let program = server("BKCACHE_TEST_MOTO_SERVER").unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while TcpStream::connect(host_of(&endpoint)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnMoto { child, endpoint }
    }
}

impl Drop for OwnMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_local_fixture_round_trips_through_s3() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = new_bucket(&ep, "fixtures");
    let tmp = tempfile::tempdir().unwrap();
    for (i, (case, tag, opts)) in CASES.iter().enumerate() {
        let facts = facts_for(case, tag);
        let from = format!("{},tag={tag}", src(&fixture_cache(case)));
        let s3_opts = opts.replace(",tag=main", "").replace(",tag=feature", "");
        let target = s3(&ep, &bucket, &format!("prefix=cases/{i}/"));
        let r = copy_json(&from, &format!("{target},{s3_opts}"));
        assert_eq!(r["targets"][0]["outcome"]["status"], "committed", "{case}:{tag}: {r}");

        let s = bkcache(&["inspect", &target, "--json"]).ok().json();
        assert_eq!(s["format"], "annotated-config", "{case}");
        assert_eq!(s["records"], facts["config_records"], "{case}:{tag}");
        assert_eq!(
            s["layers"].as_array().unwrap().len() as u64,
            facts["config_layers"].as_u64().unwrap()
        );
        assert_eq!(s["manifest"]["digest"], r["targets"][0]["manifest"]["digest"]);
        assert_eq!(s["manifest"]["media_type"], "application/vnd.buildkit.cacheconfig.v0");
        bkcache(&["verify", &target]).ok();
        // Exactly the keys BuildKit would write.
        let stored: BTreeSet<String> = keys(&ep, &bucket)
            .into_iter()
            .filter(|k| k.starts_with(&format!("cases/{i}/")))
            .collect();
        let mut want: BTreeSet<String> = s["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| format!("cases/{i}/blobs/{}", l["digest"].as_str().unwrap()))
            .collect();
        want.insert(format!("cases/{i}/manifests/buildkit"));
        assert_eq!(stored, want, "{case}:{tag}");

        let out = tmp.path().join(format!("back-{i}"));
        // estargz layers come back without their TOC annotations (the s3 form has none, as in
        // BuildKit), so they look like plain gzip: forcing estargz would convert them.
        let back_opts = opts.replace(",force-compression=true", "");
        let back_opts = if *case == "local-estargz" { &back_opts } else { *opts };
        let r = copy_json(&target, &dest(&out, back_opts));
        let got = r["targets"][0]["manifest"]["digest"].clone();
        if *case == "local-estargz" {
            // The s3 form keeps mediaType/diffID/size/createdAt only, like BuildKit's: the
            // estargz TOC annotations do not survive, so the manifest differs; the config not.
            let back = bkcache(&["inspect", &format!("{},tag={tag}", src(&out)), "--json"])
                .ok()
                .json();
            assert_eq!(back["config"]["digest"], facts["config_digest"], "{case}");
            assert_ne!(got, facts["manifest_digest"]);
        } else {
            assert_eq!(
                got, facts["manifest_digest"],
                "{case}:{tag} local -> s3 -> local byte-identical"
            );
        }
        bkcache(&["verify", &format!("{},tag={tag}", src(&out))]).ok();
    }
}

/// The objects BuildKit v0.32.2 wrote for `prefix=proj/,name=main;alt` (fixture s3-max): the
/// config is in testdata, its layers are local-max's blobs. Checked against the full dump in
/// ../shared when it is there.
fn buildkit_s3_objects() -> BTreeMap<String, Vec<u8>> {
    let config = std::fs::read(fixtures().join("s3-max/manifest-main.json")).unwrap();
    assert_eq!(bkcache_core::Digest::of_bytes(&config).as_str(), S3_MAX_CONFIG);
    let mut objects = BTreeMap::new();
    for d in blob_digests(&config) {
        let bytes = std::fs::read(blob_path(&fixture_cache("local-max"), &d)).unwrap();
        objects.insert(format!("proj/blobs/{d}"), bytes);
    }
    objects.insert("proj/manifests/main".to_owned(), config.clone());
    objects.insert("proj/manifests/alt".to_owned(), config);
    let dump =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/buildkit-v0.32.2/s3-max/objects");
    if let Ok(entries) = std::fs::read_dir(&dump) {
        let mut from_dump = BTreeMap::new();
        for e in entries {
            let e = e.unwrap();
            let key = e.file_name().to_string_lossy().replace("%2F", "/").replace("%3A", ":");
            from_dump.insert(key, std::fs::read(e.path()).unwrap());
        }
        assert!(
            from_dump == objects,
            "testdata reconstruction differs from the s3-max dump"
        );
    }
    objects
}

#[test]
fn buildkit_s3_fixture_imports_and_reexports_byte_identically() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let objects = buildkit_s3_objects();
    let bucket = new_bucket(&ep, "bk-fixture");
    for (k, v) in &objects {
        put(&ep, &bucket, k, v);
    }
    for name in ["main", "alt"] {
        let spec = s3(&ep, &bucket, &format!("prefix=proj/,name={name}"));
        let s = bkcache(&["inspect", &spec, "--json"]).ok().json();
        assert_eq!(s["format"], "annotated-config");
        assert_eq!(s["manifest"]["digest"], S3_MAX_CONFIG);
        assert_eq!(s["records"], 13);
        assert_eq!(s["results"], 7);
        assert_eq!(s["layers"].as_array().unwrap().len(), 7);
        assert!(s["warnings"].as_array().unwrap().is_empty(), "{s}");
        bkcache(&["verify", &spec]).ok();
    }

    // Re-export with BuildKit's options: the same objects, byte for byte.
    let again = new_bucket(&ep, "bk-reexport");
    let r = copy_json(
        &s3(&ep, &bucket, "prefix=proj/,name=main"),
        &s3(&ep, &again, "prefix=proj/,name=main;alt,mode=max"),
    );
    assert_eq!(r["targets"][0]["manifest"]["digest"], S3_MAX_CONFIG);
    assert_eq!(r["targets"][0]["blobs_copied"], 7);
    let stored = list(&ep, &again);
    assert_eq!(
        stored
            .iter()
            .map(|o| (o.key.clone(), o.size))
            .collect::<BTreeMap<_, _>>(),
        objects
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect::<BTreeMap<_, _>>()
    );
    for (k, v) in &objects {
        assert!(get(&ep, &again, k) == *v, "{k} differs");
    }

    // And into a local layout: the manifest BuildKit's local exporter wrote for the same build.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("local");
    let r = copy_json(&s3(&ep, &bucket, "prefix=proj/,name=alt"), &dest(&out, "mode=max"));
    assert_eq!(
        r["targets"][0]["manifest"]["digest"],
        facts_for("local-max", "latest")["manifest_digest"]
    );
}

#[test]
fn prefix_and_multi_name_layouts() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = new_bucket(&ep, "layout");
    let layout = "prefix=a/b-,blobs_prefix=B/,manifests_prefix=M/";
    let r = copy_json(
        &src(&fixture_cache("local-max")),
        &s3(&ep, &bucket, &format!("{layout},name=one;two")),
    );
    assert_eq!(r["targets"][0]["manifest"]["digest"], S3_MAX_CONFIG);
    let config = std::fs::read(fixtures().join("s3-max/manifest-main.json")).unwrap();
    let mut want: BTreeSet<String> = blob_digests(&config).iter().map(|d| format!("a/b-B/{d}")).collect();
    want.extend(["a/b-M/one".to_owned(), "a/b-M/two".to_owned()]);
    assert_eq!(
        keys(&ep, &bucket),
        want,
        "prefix concatenated as-is, every name written"
    );
    assert!(get(&ep, &bucket, "a/b-M/one") == config && get(&ep, &bucket, "a/b-M/two") == config);

    // Two different caches under two names: import reads the first name only.
    copy_json(
        &src(&fixture_cache("local-min")),
        &s3(&ep, &bucket, &format!("{layout},name=min")),
    );
    let results = |names: &str, extra: &str| -> Run {
        bkcache(&[
            "inspect",
            &s3(&ep, &bucket, &format!("{layout},name={names}{extra}")),
            "--json",
        ])
    };
    assert_eq!(results("min;one", "").ok().json()["results"], 2);
    assert_eq!(results("one;min", "").ok().json()["results"], 7);
    let missing_first = results("absent;one", "");
    assert_eq!(missing_first.code, 4, "BuildKit reads only the first name");
    assert!(
        missing_first.stderr.contains("no cache found"),
        "{}",
        missing_first.stderr
    );
    // bkcache's extension: every name, merged (min + max gives max).
    let all = results("absent;min;one", ",import_all_names=true").ok().json();
    assert_eq!((all["records"].as_u64(), all["results"].as_u64()), (Some(13), Some(7)));
    assert!(all["warnings"].to_string().contains("a/b-M/absent"), "{all}");
    // Both names were written with the same layers, so the blobs are shared, not duplicated.
    assert_eq!(keys(&ep, &bucket).iter().filter(|k| k.starts_with("a/b-B/")).count(), 7);
}

#[test]
fn touch_refresh_moves_last_modified_only_when_stale() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = new_bucket(&ep, "touch");
    let from = src(&fixture_cache("local-max"));
    copy_json(&from, &s3(&ep, &bucket, ""));
    let blobs = |objs: &[Object]| -> BTreeMap<String, Object> {
        objs.iter()
            .filter(|o| o.key.starts_with("blobs/"))
            .map(|o| (o.key.clone(), o.clone()))
            .collect()
    };
    let before = blobs(&list(&ep, &bucket));
    assert_eq!(before.len(), 7);
    let some = before.keys().next().unwrap().clone();
    assert!(head(&ep, &bucket, &some).header("x-amz-meta-updated-at").is_none());

    std::thread::sleep(Duration::from_millis(2100));
    // Younger than 24h: left alone.
    let r = copy_json(&from, &s3(&ep, &bucket, "touch_refresh=24h"));
    assert_eq!(
        (
            r["targets"][0]["blobs_copied"].as_u64(),
            r["targets"][0]["blobs_present"].as_u64()
        ),
        (Some(0), Some(7))
    );
    let same = blobs(&list(&ep, &bucket));
    for (k, o) in &before {
        assert_eq!(same[k].last_modified, o.last_modified, "{k} untouched");
    }
    assert!(head(&ep, &bucket, &some).header("x-amz-meta-updated-at").is_none());

    // A failed export touches nothing: the touch happens at commit, after every upload.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken");
    copy_tree(&fixture_cache("local-two-tags"), &broken);
    let feature_layer = "sha256:9966d6e1aca4ce2d128bf11e0fc0a477eca0cfa97b5c3f6caf06fa1aec716cdd";
    let main_only = bkcache(&["inspect", &format!("{},tag=main", src(&broken)), "--json"])
        .ok()
        .json()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = blob_path(&broken, &main_only);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let r = bkcache(&[
        "copy",
        "--from",
        &format!("{},tag=feature", src(&broken)),
        "--from",
        &format!("{},tag=main", src(&broken)),
        "--to",
        &s3(&ep, &bucket, "touch_refresh=1s"),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    let after_failure = blobs(&list(&ep, &bucket));
    assert_eq!(
        after_failure[&format!("blobs/{feature_layer}")].last_modified,
        before[&format!("blobs/{feature_layer}")].last_modified
    );
    assert!(
        !after_failure.contains_key(&format!("blobs/{main_only}")),
        "the corrupt blob never became visible"
    );

    // Older than 1s: every present blob is copied onto itself, as BuildKit does.
    let r = copy_json(&from, &s3(&ep, &bucket, "touch_refresh=1s"));
    assert_eq!(r["targets"][0]["blobs_copied"], 0);
    let after = blobs(&list(&ep, &bucket));
    for (k, o) in &before {
        assert!(
            after[k].last_modified > o.last_modified,
            "{k}: {} -> {}",
            o.last_modified,
            after[k].last_modified
        );
        assert_eq!(after[k].etag, o.etag, "{k}: same bytes");
    }
    let h = head(&ep, &bucket, &some);
    let stamp = h.header("x-amz-meta-updated-at").unwrap();
    assert!(
        stamp.ends_with(" +0000 UTC") && stamp.starts_with("20"),
        "Go time.String() format: {stamp}"
    );
    bkcache(&["verify", &s3(&ep, &bucket, "")]).ok();
}

#[test]
fn large_blob_goes_multipart_without_checksum_trailers() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = new_bucket(&ep, "multipart");
    let tmp = tempfile::tempdir().unwrap();
    let size = 20u64 << 20;
    let digest = synthetic(&tmp.path().join("big"), size);
    let (via, log) = proxy(&ep);
    let target = s3(&via, &bucket, "");
    let r = copy_json(&src(&tmp.path().join("big")), &target);
    assert_eq!(r["targets"][0]["bytes_copied"], size);

    let key = format!("blobs/{digest}");
    let h = head(&ep, &bucket, &key);
    assert_eq!(h.header("content-length"), Some(size.to_string().as_str()));
    let etag = h.header("etag").unwrap().trim_matches('"').to_owned();
    assert!(etag.ends_with("-3"), "20 MiB in 8 MiB parts = 3 parts, ETag {etag}");

    let seen = log.lock().unwrap().clone();
    let blob_path = format!("/{bucket}/{}", enc(&key));
    let on_blob: Vec<&Seen> = seen.iter().filter(|s| s.target.starts_with(&blob_path)).collect();
    let parts = on_blob
        .iter()
        .filter(|s| s.method == "PUT" && s.target.contains("partNumber="))
        .count();
    assert_eq!(parts, 3, "{on_blob:#?}");
    assert_eq!(on_blob[0].method, "HEAD", "HEAD before upload");
    assert_eq!(
        on_blob
            .iter()
            .filter(|s| s.method == "POST" && (s.target.ends_with("?uploads") || s.target.ends_with("?uploads=")))
            .count(),
        1,
        "one CreateMultipartUpload: {on_blob:#?}"
    );
    assert_eq!(
        on_blob
            .iter()
            .filter(|s| s.method == "POST" && s.target.contains("uploadId="))
            .count(),
        1,
        "one CompleteMultipartUpload"
    );
    for s in &seen {
        for (k, v) in &s.headers {
            assert!(
                k != "x-amz-trailer" && !k.starts_with("x-amz-checksum") && !k.starts_with("x-amz-sdk-checksum"),
                "checksum header {k} on {} {}",
                s.method,
                s.target
            );
            assert!(
                !(k == "content-encoding" && v.contains("aws-chunked")),
                "aws-chunked on {}",
                s.target
            );
            assert!(k != "transfer-encoding", "streaming body on {} {}", s.method, s.target);
        }
    }
    // The manifest was the last write.
    let last_put = seen
        .iter()
        .rev()
        .find(|s| s.method == "PUT" || s.method == "POST")
        .unwrap();
    assert!(last_put.target.ends_with("/manifests/buildkit"), "{last_put:?}");
    bkcache(&["verify", &s3(&ep, &bucket, "")]).ok();

    // A second copy only HEADs.
    let before = log.lock().unwrap().len();
    let r = copy_json(&src(&tmp.path().join("big")), &target);
    assert_eq!(r["targets"][0]["blobs_present"], 1);
    let again: Vec<Seen> = log.lock().unwrap()[before..].to_vec();
    assert!(
        !again
            .iter()
            .any(|s| s.target.starts_with(&blob_path) && s.method != "HEAD"),
        "{again:#?}"
    );
}

#[test]
fn corrupt_large_blob_aborts_the_multipart_upload() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = new_bucket(&ep, "corrupt");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    let digest = synthetic(&dir, 18 << 20);
    let p = blob_path(&dir, &digest);
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&p, perm).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[17 << 20] ^= 1; // in the last part: found only after the first parts were sent
    std::fs::write(&p, bytes).unwrap();
    let r = bkcache(&["copy", "--from", &src(&dir), "--to", &s3(&ep, &bucket, "")]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("corrupt") && r.stderr.contains(&digest),
        "{}",
        r.stderr
    );
    assert!(keys(&ep, &bucket).is_empty(), "no blob, no manifest");
    assert_eq!(open_uploads(&ep, &bucket), 0, "the multipart upload was aborted");
}

#[test]
fn server_stopped_mid_upload_fails_without_writing_the_manifest() {
    let Some(_) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let moto = OwnMoto::start();
    let bucket = new_bucket(&moto.endpoint, "killed");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    synthetic(&dir, 96 << 20);
    let (via, log) = proxy(&moto.endpoint);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .args([
            "copy",
            "--from",
            &src(&dir),
            "--to",
            &s3(&via, &bucket, "retry_max_attempts=2"),
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let parts = log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target.contains("partNumber="))
            .count();
        if parts >= 1 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "bkcache finished before any part was seen"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "no part upload seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut moto = moto;
    moto.child.kill().unwrap();
    moto.child.wait().unwrap();
    let killed_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(killed_at.elapsed() < Duration::from_secs(60), "failed promptly");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &report["targets"][0];
    assert_eq!(t["outcome"]["status"], "failed", "{report}");
    assert!(t["manifest"].is_null());
    let message = t["outcome"]["message"].as_str().unwrap();
    eprintln!("failed after {:?}: {message}", killed_at.elapsed());
    assert!(message.contains(&bucket) && message.contains("failed"), "{message}");
    let seen = log.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|s| s.target.contains("/manifests/")),
        "the manifest was never written"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.method == "POST" && s.target.contains("uploadId=")),
        "the upload was never completed"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn wrong_bucket_and_bad_values_are_clear_errors() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let from = src(&fixture_cache("local-min"));
    let missing = s3(&ep, "no-such-bucket-bkcache", "");
    let r = bkcache(&["copy", "--from", &from, "--to", &missing]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("bucket \"no-such-bucket-bkcache\" does not exist")
            && r.stderr.contains("NoSuchBucket")
            && r.stderr.contains(&ep),
        "{}",
        r.stderr
    );
    let r = bkcache(&["inspect", &missing]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    let r = bkcache(&[
        "copy",
        "--from",
        &from,
        "--to",
        &format!("{missing},ignore-error=true"),
        "--json",
    ])
    .ok();
    assert_eq!(r.json()["targets"][0]["outcome"]["status"], "ignored-error");

    // An empty bucket is no cache, not an error of the bucket.
    let bucket = new_bucket(&ep, "empty");
    let r = bkcache(&["inspect", &s3(&ep, &bucket, "")]);
    assert_eq!(r.code, 4, "no cache there");
    assert!(r.stderr.contains("no cache found"), "{}", r.stderr);

    for (extra, want) in [
        (
            "touch_refresh=1d",
            "invalid value \"1d\" for attribute \"touch_refresh\"",
        ),
        ("upload_parallelism=0", "upload_parallelism must be a positive integer"),
        ("retry_mode=fast", "expected standard or adaptive"),
        ("retry_max_attempts=-1", "retry_max_attempts must be a positive integer"),
        ("use_path_style=maybe", "expected a boolean"),
        ("prefix=/abs/", "cannot address"),
        ("name=a;;b", "non-empty names"),
        ("bucket_name=x", "unknown attribute \"bucket_name\""),
    ] {
        let r = bkcache(&["copy", "--from", &from, "--to", &s3(&ep, &bucket, extra)]);
        assert_eq!(r.code, 2, "{extra}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{extra}: {}", r.stderr);
    }
    let r = bkcache_env(
        &["inspect", "type=s3,bucket=b,endpoint_url=http://127.0.0.1:1"],
        &[("AWS_REGION", "")],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("region ($AWS_REGION) not set for s3 cache"),
        "{}",
        r.stderr
    );
    // Bucket and region from the environment, as BuildKit.
    let r = bkcache_env(
        &[
            "inspect",
            &format!("type=s3,endpoint_url={ep},access_key_id=a,secret_access_key=b"),
        ],
        &[("AWS_BUCKET", &bucket), ("AWS_REGION", "us-east-1")],
    );
    assert!(
        r.stderr.contains("no cache found") && r.stderr.contains(&bucket),
        "{}",
        r.stderr
    );
}

#[test]
fn credentials_are_never_printed() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let (key_id, secret, token) = (
        "AKIDq7Zx9Distinct",
        "SeCrEt-q7Zx9-distinctive",
        "ToKeN-q7Zx9-distinctive",
    );
    let bucket = new_bucket(&ep, "secrets");
    let creds = format!("access_key_id={key_id},secret_access_key={secret},session_token={token}");
    let spec = |b: &str, extra: &str| format!("type=s3,bucket={b},region=us-east-1,endpoint_url={ep},{creds}{extra}");
    let from = src(&fixture_cache("local-max"));
    let mut outputs = Vec::new();
    let mut run = |args: &[&str], env: &[(&str, &str)]| {
        let r = bkcache_env(args, env);
        outputs.push((args.join(" "), r.code, format!("{}\n{}", r.stdout, r.stderr)));
    };
    let debug = [("BKCACHE_LOG", "debug")];
    run(&["copy", "--from", &from, "--to", &spec(&bucket, ""), "--json"], &[]);
    // Debug logging, touch (self-signed CopyObject URLs), import, verify.
    run(
        &[
            "-vv",
            "copy",
            "--from",
            &from,
            "--to",
            &spec(&bucket, ",touch_refresh=0s"),
            "--json",
        ],
        &debug,
    );
    run(&["-vv", "inspect", &spec(&bucket, ""), "--json"], &debug);
    run(&["verify", &spec(&bucket, "")], &[]);
    // Errors: a missing bucket, a bad value, a refused multipart with the server gone.
    run(
        &["-vv", "copy", "--from", &from, "--to", &spec("no-such-bucket-q7", "")],
        &debug,
    );
    run(
        &["copy", "--from", &from, "--to", &spec(&bucket, ",upload_parallelism=0")],
        &[],
    );
    run(
        &[
            "inspect",
            "type=s3,bucket=b,region=r,endpoint_url=http://127.0.0.1:1,retry_max_attempts=1",
            "--json",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", key_id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_SESSION_TOKEN", token),
        ],
    );
    run(&["backends", "--json"], &[]);
    let codes: Vec<i32> = outputs.iter().map(|o| o.1).collect();
    assert_eq!(codes, vec![0, 0, 0, 0, 1, 2, 1, 0], "{outputs:#?}");
    for (args, _, text) in &outputs {
        for s in [key_id, secret, token] {
            assert!(!text.contains(s), "{s} printed by `{args}`:\n{text}");
        }
    }
    assert!(
        outputs[1]
            .2
            .contains("refreshed LastModified of blobs older than touch_refresh"),
        "the touch (self-signed requests) ran: {}",
        outputs[1].2
    );
    // The redacted spec is what is shown.
    assert!(
        outputs[0].2.contains("secret_access_key=<redacted>"),
        "{}",
        outputs[0].2
    );
    assert!(
        outputs[6].2.contains("127.0.0.1:1"),
        "the connection error is reported: {}",
        outputs[6].2
    );
}

#[test]
fn layer_without_annotations_fails_like_buildkit() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = new_bucket(&ep, "noannot");
    // local-max's plain cache config (registry/local form: no per-layer annotations).
    let config_digest = facts_for("local-max", "latest")["config_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let plain = std::fs::read(blob_path(&fixture_cache("local-max"), &config_digest)).unwrap();
    for d in blob_digests(&plain) {
        put(
            &ep,
            &bucket,
            &format!("blobs/{d}"),
            &std::fs::read(blob_path(&fixture_cache("local-max"), &d)).unwrap(),
        );
    }
    put(&ep, &bucket, "manifests/buildkit", &plain);
    let r = bkcache(&["inspect", &s3(&ep, &bucket, "")]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cache layer with missing annotations"),
        "{}",
        r.stderr
    );
    let r = bkcache(&[
        "copy",
        "--from",
        &s3(&ep, &bucket, ""),
        "--to",
        &s3(&ep, &bucket, "name=other"),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("nothing to copy") && r.stderr.contains("missing annotations"),
        "{}",
        r.stderr
    );
}

#[test]
fn prune_deletes_only_unreferenced_blobs() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = new_bucket(&ep, "prune");
    copy_json(
        &format!("{},tag=main", src(&fixture_cache("local-two-tags"))),
        &s3(&ep, &bucket, "prefix=p/,name=main"),
    );
    copy_json(
        &src(&fixture_cache("local-max")),
        &s3(&ep, &bucket, "prefix=p/,name=feature"),
    );
    let main_blobs: BTreeSet<String> = keys(&ep, &bucket)
        .into_iter()
        .filter(|k| k.starts_with("p/blobs/"))
        .collect();
    assert_eq!(main_blobs.len(), 10);
    let spec = s3(&ep, &bucket, "prefix=p/,name=feature");
    let r = bkcache(&["prune", &spec, "--keep-tags", "feature", "--min-age", "0s", "--json"])
        .ok()
        .json();
    assert_eq!(r["tags_removed"], serde_json::json!(["main"]));
    assert_eq!(
        (r["blobs_listed"].as_u64(), r["blobs_deleted"].as_u64()),
        (Some(10), Some(3)),
        "{r}"
    );
    let left = keys(&ep, &bucket);
    assert!(!left.contains("p/manifests/main"));
    assert_eq!(left.iter().filter(|k| k.starts_with("p/blobs/")).count(), 7);
    bkcache(&["verify", &spec]).ok();
}

/// An IAM call to moto (form-encoded query API); returns the XML answer.
fn iam(endpoint: &str, params: &[(&str, &str)]) -> String {
    const IAM_AUTH: &str =
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00";
    let form: Vec<String> = params
        .iter()
        .chain([("Version", "2010-05-08")].iter())
        .map(|(k, v)| format!("{k}={}", enc(v).replace('/', "%2F")))
        .collect();
    let a = http_as(
        endpoint,
        "POST",
        "/",
        form.join("&").as_bytes(),
        IAM_AUTH,
        "application/x-www-form-urlencoded",
    );
    let body = String::from_utf8(a.body).unwrap();
    assert_eq!(a.status, 200, "{params:?}: {body}");
    body
}

/// A user with an access key (and, when `allow`, a policy allowing s3:*).
fn iam_user(endpoint: &str, name: &str, allow: bool) -> (String, String) {
    iam(endpoint, &[("Action", "CreateUser"), ("UserName", name)]);
    let key = iam(endpoint, &[("Action", "CreateAccessKey"), ("UserName", name)]);
    if allow {
        iam(
            endpoint,
            &[
                ("Action", "PutUserPolicy"),
                ("UserName", name),
                ("PolicyName", "s3"),
                (
                    "PolicyDocument",
                    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
                ),
            ],
        );
    }
    (
        xml_all(&key, "AccessKeyId")[0].clone(),
        xml_all(&key, "SecretAccessKey")[0].clone(),
    )
}

/// moto with IAM authentication on (after six setup calls): it checks every SigV4 signature,
/// including the requests bkcache signs itself (touch, HeadBucket).
#[test]
fn signatures_and_permissions_checked_by_moto_iam() {
    let Some(_) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let moto = OwnMoto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "6")]);
    let ep = moto.endpoint.clone();
    let bucket = new_bucket(&ep, "iam");
    let (id, secret) = iam_user(&ep, "writer", true);
    let (ro_id, ro_secret) = iam_user(&ep, "nobody", false);
    let spec = |id: &str, secret: &str, extra: &str| {
        format!("type=s3,bucket={bucket},region=us-east-1,endpoint_url={ep},access_key_id={id},secret_access_key={secret}{extra}")
    };
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    synthetic(&big, 17 << 20);
    let good = spec(&id, &secret, "");
    copy_json(&src(&fixture_cache("local-max")), &good);
    copy_json(&src(&big), &spec(&id, &secret, ",name=big"));
    std::thread::sleep(Duration::from_millis(1100));
    let r = bkcache_env(
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-max")),
            "--to",
            &spec(&id, &secret, ",touch_refresh=1s"),
        ],
        &[("BKCACHE_LOG", "info")],
    )
    .ok();
    assert!(
        r.stderr.contains("refreshed LastModified"),
        "signed CopyObject accepted: {}",
        r.stderr
    );
    bkcache(&["verify", &good]).ok();
    bkcache(&["verify", &spec(&id, &secret, ",name=big")]).ok();
    // HeadBucket, signed by bkcache, tells a missing bucket from a missing object.
    let r = bkcache(&[
        "inspect",
        &good.replace(&format!("bucket={bucket}"), "bucket=no-such-iam-bucket"),
    ]);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);

    let wrong = bkcache(&["inspect", &spec(&id, "wrong-secret-q7Zx9", "")]);
    assert_eq!(wrong.code, 6, "credentials refused");
    assert!(
        wrong.stderr.contains("access denied") && wrong.stderr.contains("SignatureDoesNotMatch"),
        "{}",
        wrong.stderr
    );
    let unknown = bkcache(&["inspect", &spec("AKIDUNKNOWNq7Zx9", "x-q7Zx9", "")]);
    assert!(unknown.stderr.contains("InvalidAccessKeyId"), "{}", unknown.stderr);
    assert_eq!(unknown.code, 6, "an unknown key is a refused credential");
    let denied = bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-min")),
        "--to",
        &spec(&ro_id, &ro_secret, ""),
    ]);
    assert_eq!(denied.code, 1);
    assert!(
        denied
            .stderr
            .contains("access denied with credentials from the access_key_id/secret_access_key attributes"),
        "{}",
        denied.stderr
    );
    for r in [&wrong, &unknown, &denied] {
        for s in [
            id.as_str(),
            secret.as_str(),
            ro_id.as_str(),
            ro_secret.as_str(),
            "wrong-secret-q7Zx9",
            "AKIDUNKNOWNq7Zx9",
            "x-q7Zx9",
        ] {
            assert!(
                !r.stderr.contains(s) && !r.stdout.contains(s),
                "{s} printed: {}",
                r.stderr
            );
        }
    }
}

/// A no-change re-export asks S3 with one listing of the blobs prefix, not a HEAD per blob,
/// uploads no blob, and rewrites only the config object (BuildKit's behaviour for the name).
#[test]
fn no_change_reexport_lists_once_and_uploads_no_blob() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let bucket = new_bucket(&ep, "reexport");
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("gen");
    bkcache(&[
        "debug",
        "generate",
        "--realistic",
        "--to",
        &dest(&local, ""),
        "--blobs",
        "40",
        "--bytes",
        "400000",
    ])
    .ok();
    let first = bkcache(&["copy", "--json", "--from", &src(&local), "--to", &s3(&ep, &bucket, "")])
        .ok()
        .json();
    assert_eq!(first["targets"][0]["blobs_copied"], 40, "{first}");

    let proxy = common::proxy::Proxy::start(&ep);
    let again = bkcache(&[
        "copy",
        "--json",
        "--from",
        &src(&local),
        "--to",
        &s3(&proxy.url(), &bucket, ""),
    ])
    .ok()
    .json();
    assert_eq!(again["targets"][0]["blobs_copied"], 0, "{again}");
    assert_eq!(again["targets"][0]["manifest"], first["targets"][0]["manifest"]);
    let log = proxy.log();
    let per_blob: Vec<_> = log.iter().filter(|e| e.path.contains("/blobs/sha256:")).collect();
    assert!(per_blob.is_empty(), "no request per blob: {per_blob:?}");
    let lists = log
        .iter()
        .filter(|e| e.method == "GET" && e.path.contains("list-type=2"))
        .count();
    assert_eq!(lists, 1, "{log:?}");
    let writes: Vec<_> = log
        .iter()
        .filter(|e| e.method == "PUT")
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(writes.len(), 1, "only the config under the name: {writes:?}");
    assert!(writes[0].contains("/manifests/"), "{writes:?}");
}
