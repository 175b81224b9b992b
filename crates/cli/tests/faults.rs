//! Fault injection between bkcache and each server (registry, moto S3, Azurite) with the proxy of
//! `common/proxy.rs`: connection resets, stalls, 429/5xx bursts, truncated and corrupted bodies.
//!
//! What is asserted, for every case:
//! - an export either completes (exit 0, the target names the expected manifest, `verify`
//!   passes) or fails (exit 1) with the target's previous manifest/config bytes untouched, read
//!   directly from the server around the proxy;
//! - an import never accepts a blob whose digest is wrong: a copy to a local directory fails
//!   and leaves no `index.json` and no blob file that does not hash to its name;
//! - the fault really fired (the proxy's log), and what each backend does with it is pinned
//!   (`Expect::Complete` / `Expect::Resent` (the engine sent a blob again) / `Expect::Fail`), so
//!   a change in retry behaviour shows up here.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::proxy::{self, Fault, Proxy, Rule};
use common::*;

/// A layer of local-max (hex only: object_store percent-encodes the `:` of S3/Azure keys).
const LAYER_HEX: &str = "9966d6e1aca4ce2d128bf11e0fc0a477eca0cfa97b5c3f6caf06fa1aec716cdd";
/// The config BuildKit writes to s3/azblob for ctx2 mode=max (what local-max becomes there).
const ANNOTATED_MAX: &str = "sha256:1a311571886e7fcbb53ab2dd438802acc7edbfc0adc54346899fa95a7672d1be";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Exit 0: retried through the fault.
    Complete,
    /// Exit 0, and the engine sent at least one blob again (`blob_retries` in `--json`).
    Resent,
    /// Exit 1, target untouched.
    Fail,
    /// The fault hits after the server acted: failing with the new, complete manifest in place
    /// is as correct as failing untouched (the client cannot know); completing is fine too.
    Either,
}

/// Reads what is stored at a location.
type StateFn = Box<dyn Fn(&str) -> Option<Vec<u8>>>;
/// The spec of a location, through the proxy (`true`) or directly.
type SpecFn = Box<dyn Fn(&str, bool) -> String>;

/// One backend location family, reachable directly and through a proxy.
struct Backend {
    name: &'static str,
    proxy: Proxy,
    /// Spec of location `loc`, through the proxy (`true`) or directly.
    spec: SpecFn,
    /// The manifest (registry) or config object (s3, azblob) bytes at `loc`, read directly.
    state: StateFn,
    /// The manifest digest local-max gets there.
    expected: String,
}

fn digest_of(bytes: &Option<Vec<u8>>) -> String {
    bytes
        .as_ref()
        .map_or("(none)".into(), |b| bkcache_core::Digest::of_bytes(b).to_string())
}

impl Backend {
    /// A fresh location holding local-min (written directly).
    fn fresh(&self, case: &str) -> String {
        let slug: String = case
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let loc = proxy::unique(&format!("faults/{slug}"));
        bkcache(&[
            "copy",
            "--from",
            &src(&fixture_cache("local-min")),
            "--to",
            &(self.spec)(&loc, false),
        ])
        .ok();
        loc
    }

    /// Copy local-max into a location holding local-min, through the faults.
    fn export_case(&self, case: &str, rules: Vec<Rule>, expect: Expect) -> String {
        let loc = self.fresh(case);
        let before = (self.state)(&loc);
        assert!(before.is_some(), "{}: {case}: setup wrote nothing", self.name);
        self.proxy.reset();
        for r in rules {
            self.proxy.add(r);
        }
        let start = Instant::now();
        let r = bkcache(&[
            "copy",
            "--json",
            "--from",
            &src(&fixture_cache("local-max")),
            "--to",
            &(self.spec)(&loc, true),
        ]);
        let took = start.elapsed();
        let after = (self.state)(&loc);
        let ctx = format!(
            "{}: export {case}: exit {}\nstderr: {}\nproxy log:\n{}",
            self.name,
            r.code,
            r.stderr,
            self.proxy.describe()
        );
        assert!(self.proxy.injected() > 0, "the fault never fired: {ctx}");
        let outcome = match r.code {
            0 => {
                assert_eq!(digest_of(&after), self.expected, "{ctx}");
                bkcache(&["verify", &(self.spec)(&loc, false)]).ok();
                "completed, verify ok"
            }
            1 if after == before => "failed, target untouched",
            1 => {
                assert_eq!(
                    expect,
                    Expect::Either,
                    "failed but the target changed ({} -> {}): {ctx}",
                    digest_of(&before),
                    digest_of(&after)
                );
                assert_eq!(digest_of(&after), self.expected, "{ctx}");
                bkcache(&["verify", &(self.spec)(&loc, false)]).ok();
                "failed after the server committed; target complete, verify ok"
            }
            _ => panic!("unexpected exit code: {ctx}"),
        };
        match expect {
            Expect::Complete => assert_eq!(r.code, 0, "{ctx}"),
            Expect::Resent => {
                assert_eq!(r.code, 0, "{ctx}");
                let resent = r.json()["targets"][0]["blob_retries"].as_u64().unwrap_or(0);
                assert!(resent >= 1, "no blob was sent again: {ctx}");
                assert!(r.stderr.contains("sending it again (attempt 2 of 3)"), "{ctx}");
            }
            Expect::Fail => assert_eq!(r.code, 1, "{ctx}"),
            Expect::Either => {}
        }
        let line = format!(
            "{:<8} export {case:<34} {outcome} ({} faults, {:.1}s)",
            self.name,
            self.proxy.injected(),
            took.as_secs_f64()
        );
        eprintln!("{line}");
        line
    }

    /// Copy `loc` (holding local-max) to a fresh local directory through the faults.
    fn import_case(&self, loc: &str, case: &str, rules: Vec<Rule>, expect: Expect) -> String {
        self.proxy.reset();
        for r in rules {
            self.proxy.add(r);
        }
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let start = Instant::now();
        let r = bkcache(&["copy", "--from", &(self.spec)(loc, true), "--to", &dest(&out, "")]);
        let took = start.elapsed();
        let ctx = format!(
            "{}: import {case}: exit {}\nstderr: {}\nproxy log:\n{}",
            self.name,
            r.code,
            r.stderr,
            self.proxy.describe()
        );
        assert!(self.proxy.injected() > 0, "the fault never fired: {ctx}");
        assert_blobs_intact(&out);
        let outcome = match r.code {
            0 => {
                let v = bkcache(&["verify", &src(&out), "--json"]).ok().json();
                assert_eq!(v["ok"], true, "{ctx}");
                "completed, verify ok"
            }
            1 => {
                assert!(!out.join("index.json").exists(), "{ctx}");
                "failed, nothing committed"
            }
            _ => panic!("unexpected exit code: {ctx}"),
        };
        match expect {
            Expect::Complete | Expect::Resent => assert_eq!(r.code, 0, "{ctx}"),
            Expect::Fail => assert_eq!(r.code, 1, "{ctx}"),
            Expect::Either => {}
        }
        let line = format!(
            "{:<8} import {case:<34} {outcome} ({} faults, {:.1}s)",
            self.name,
            self.proxy.injected(),
            took.as_secs_f64()
        );
        eprintln!("{line}");
        line
    }

    /// `verify` and `scan` through a proxy that cuts one layer's download short once: the layer
    /// is read again and the cache verifies (a network blip is not reported as a damaged blob).
    fn verify_reads_a_cut_download_again(&self, loc: &str) {
        self.proxy.reset();
        self.proxy.add(Rule::request("GET", LAYER_HEX, Fault::Truncate));
        let r = bkcache(&["verify", &(self.spec)(loc, true), "--json"]);
        let ctx = format!("{}: verify: {}\n{}", self.name, r.stderr, self.proxy.describe());
        assert_eq!(self.proxy.injected(), 1, "{ctx}");
        assert_eq!(r.code, 0, "{ctx}");
        assert_eq!(r.json()["ok"], true, "{ctx}");
        // scan too: the layer is scanned again from its start.
        self.proxy.reset();
        self.proxy.add(Rule::request("GET", LAYER_HEX, Fault::Truncate));
        let r = bkcache(&["scan", &(self.spec)(loc, true), "--json"]);
        let ctx = format!("{}: scan: {}\n{}", self.name, r.stderr, self.proxy.describe());
        assert_eq!(self.proxy.injected(), 1, "{ctx}");
        assert_eq!(r.code, 0, "{ctx}");
        assert_eq!(
            r.json()["layers_scanned"],
            facts_for("local-max", "latest")["config_layers"],
            "{ctx}"
        );
    }

    /// `verify` through a proxy that corrupts one layer: exit 3 naming it.
    fn verify_reports_corruption(&self, loc: &str) {
        self.proxy.reset();
        self.proxy.add(Rule::request("GET", LAYER_HEX, Fault::Corrupt).always());
        let r = bkcache(&["verify", &(self.spec)(loc, true), "--json"]);
        let ctx = format!("{}: verify: {}\n{}", self.name, r.stderr, self.proxy.describe());
        assert!(self.proxy.injected() > 0, "{ctx}");
        assert_eq!(r.code, 3, "{ctx}");
        let j = r.json();
        assert_eq!(j["ok"], false, "{ctx}");
        assert!(
            j["problems"][0]["digest"].as_str().unwrap().ends_with(LAYER_HEX),
            "{ctx}: {j}"
        );
    }
}

fn stall(ms: u64) -> Fault {
    Fault::Stall(Duration::from_millis(ms))
}

// ---------------------------------------------------------------------------------------------

fn registry_backend(host: &str) -> Backend {
    let proxy = Proxy::start(host);
    let via = proxy.addr();
    let (h1, h2) = (host.to_owned(), host.to_owned());
    Backend {
        name: "registry",
        proxy,
        spec: Box::new(move |loc, through| format!("type=registry,ref={}/{loc}:c", if through { &via } else { &h1 })),
        state: Box::new(move |loc| proxy::registry_manifest(&h2, loc, "c")),
        expected: facts_for("local-max", "latest")["manifest_digest"]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

#[test]
fn registry_exports_complete_or_leave_the_tag_untouched() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let b = registry_backend(&host);
    use Expect::*;
    let cases: Vec<(&str, Vec<Rule>, Expect)> = vec![
        // Replayable requests (HEAD, POST, manifest PUT) retry on 429/5xx and broken connections.
        (
            "503 burst on blob HEAD",
            vec![Rule::request("HEAD", "/blobs/", Fault::status(503)).times(3)],
            Complete,
        ),
        (
            "429 Retry-After on upload start",
            vec![Rule::request(
                "POST",
                "/blobs/uploads/",
                Fault::Status {
                    code: 429,
                    retry_after: Some(1),
                },
            )
            .times(2)],
            Complete,
        ),
        (
            "500 burst on manifest PUT",
            vec![Rule::request("PUT", "/manifests/", Fault::status(500)).times(2)],
            Complete,
        ),
        (
            "reset on blob HEAD",
            vec![Rule::request("HEAD", "/blobs/", Fault::Reset).times(2)],
            Complete,
        ),
        (
            "reset of a connection",
            vec![Rule::connection(Fault::Reset).skip(1).times(2)],
            Complete,
        ),
        (
            "truncated upload-start answer",
            vec![Rule::request("POST", "/blobs/uploads/", Fault::Truncate)],
            Complete,
        ),
        (
            "stall on blob upload",
            vec![Rule::request("PUT", "/blobs/uploads/", stall(1500)).times(2)],
            Complete,
        ),
        (
            "reset after manifest PUT reached registry",
            vec![Rule::request("PUT", "/manifests/", Fault::ResetAfterForward)],
            Either,
        ),
        // A blob upload streams its body once: the engine sends the blob again from the source
        // (BLOB_ATTEMPTS in all); when every attempt fails, the copy fails before the manifest.
        (
            "reset on blob upload",
            vec![Rule::request("PUT", "/blobs/uploads/", Fault::Reset)],
            Resent,
        ),
        (
            "503 on blob upload",
            vec![Rule::request("PUT", "/blobs/uploads/", Fault::status(503)).times(2)],
            Resent,
        ),
        (
            "reset on the config upload at commit",
            vec![Rule::request(
                "PUT",
                "69f9d08aca7363311b8dc19aa453e7962e95ef402280bf0f38960c7407ed5770",
                Fault::Reset,
            )],
            Complete,
        ),
        (
            "503 on every blob upload",
            vec![Rule::request("PUT", "/blobs/uploads/", Fault::status(503)).always()],
            Fail,
        ),
        (
            "500 on every manifest PUT",
            vec![Rule::request("PUT", "/manifests/", Fault::status(500)).always()],
            Fail,
        ),
        (
            "400 on manifest PUT",
            vec![Rule::request("PUT", "/manifests/", Fault::status(400))],
            Fail,
        ),
    ];
    for (name, rules, expect) in cases {
        b.export_case(name, rules, expect);
    }
}

/// A conversion (`force-compression`) whose upload is reset converts the layer again and
/// completes; the result is the same cache as a conversion with no fault.
#[test]
fn registry_conversion_is_redone_after_a_reset() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let b = registry_backend(&host);
    let convert = ",compression=zstd,force-compression=true";
    let copy = |loc: &str, through: bool| {
        bkcache(&[
            "copy",
            "--json",
            "--from",
            &src(&fixture_cache("local-max")),
            "--to",
            &format!("{}{convert}", (b.spec)(loc, through)),
        ])
    };
    let clean = proxy::unique("faults/convert-clean");
    let j = copy(&clean, false).ok().json();
    assert_eq!(j["targets"][0]["blob_retries"], 0);
    let converted = j["targets"][0]["blobs_converted"].as_u64().unwrap();
    assert!(converted >= 1, "{j}");

    let loc = proxy::unique("faults/convert-reset");
    b.proxy.reset();
    b.proxy.add(Rule::request("PUT", "/blobs/uploads/", Fault::Reset));
    let r = copy(&loc, true);
    let ctx = format!("{}\n{}", r.stderr, b.proxy.describe());
    assert_eq!(b.proxy.injected(), 1, "{ctx}");
    assert_eq!(r.code, 0, "{ctx}");
    let t = &r.json()["targets"][0];
    assert_eq!(t["blob_retries"], 1, "{ctx}");
    assert_eq!(t["blobs_converted"], converted, "{ctx}");
    assert!(r.stderr.contains("sending it again (attempt 2 of 3)"), "{ctx}");
    assert_eq!(
        (b.state)(&loc),
        (b.state)(&clean),
        "the same manifest as the conversion with no fault"
    );
    bkcache(&["verify", &(b.spec)(&loc, false)]).ok();
}

#[test]
fn registry_imports_never_accept_a_wrong_blob() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY") else {
        return;
    };
    let b = registry_backend(&host);
    let loc = proxy::unique("faults/import");
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &(b.spec)(&loc, false),
    ])
    .ok();
    use Expect::*;
    let cases: Vec<(&str, Vec<Rule>, Expect)> = vec![
        (
            "corrupt layer",
            vec![Rule::request("GET", LAYER_HEX, Fault::Corrupt).always()],
            Fail,
        ),
        (
            "truncated layer",
            vec![Rule::request("GET", LAYER_HEX, Fault::Truncate).always()],
            Fail,
        ),
        (
            "truncated layer, once: read again from the start",
            vec![Rule::request("GET", LAYER_HEX, Fault::Truncate)],
            Complete,
        ),
        (
            "corrupt manifest",
            vec![Rule::request("GET", "/manifests/", Fault::Corrupt).always()],
            Fail,
        ),
        (
            "corrupt config",
            vec![Rule::request("GET", "/blobs/", Fault::Corrupt)],
            Fail,
        ),
        (
            "503 burst on layer GET",
            vec![Rule::request("GET", LAYER_HEX, Fault::status(503)).times(2)],
            Complete,
        ),
        (
            "reset on layer GET",
            vec![Rule::request("GET", LAYER_HEX, Fault::Reset)],
            Complete,
        ),
        (
            "stall mid-layer",
            vec![Rule::request("GET", LAYER_HEX, stall(1500))],
            Complete,
        ),
    ];
    for (name, rules, expect) in cases {
        b.import_case(&loc, name, rules, expect);
    }
    b.verify_reports_corruption(&loc);
    b.verify_reads_a_cut_download_again(&loc);
}

// ---------------------------------------------------------------------------------------------

fn s3_backend(ep: &str) -> Backend {
    let proxy = Proxy::start(ep);
    let via = proxy.url();
    let bucket = proxy::s3_new_bucket(ep, "faults");
    let (e1, e2, b2) = (ep.to_owned(), ep.to_owned(), bucket.clone());
    Backend {
        name: "s3",
        proxy,
        spec: Box::new(move |loc, through| {
            format!(
                "type=s3,bucket={bucket},region=us-east-1,endpoint_url={},access_key_id=test,secret_access_key=test,prefix={loc}/",
                if through { &via } else { &e1 }
            )
        }),
        state: Box::new(move |loc| proxy::s3_object(&e2, &b2, &format!("{loc}/manifests/buildkit"))),
        expected: ANNOTATED_MAX.into(),
    }
}

#[test]
fn s3_exports_complete_or_leave_the_config_untouched() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let b = s3_backend(&ep);
    use Expect::*;
    let cases: Vec<(&str, Vec<Rule>, Expect)> = vec![
        (
            "503 burst on the blob listing",
            vec![Rule::request("GET", "list-type=2", Fault::status(503)).times(2)],
            Complete,
        ),
        (
            "listing refused: one HEAD per blob, with a 503 burst on HEAD",
            vec![
                Rule::request("GET", "list-type=2", Fault::status(403)).always(),
                Rule::request("HEAD", "/blobs/", Fault::status(503)).times(2),
            ],
            Complete,
        ),
        (
            "429 on blob PUT",
            vec![Rule::request("PUT", "/blobs/", Fault::status(429)).times(2)],
            Complete,
        ),
        (
            "500 burst on config PUT",
            vec![Rule::request("PUT", "/manifests/", Fault::status(500)).times(2)],
            Complete,
        ),
        (
            "reset on blob PUT",
            vec![Rule::request("PUT", "/blobs/", Fault::Reset)],
            Complete,
        ),
        (
            "reset of a connection",
            vec![Rule::connection(Fault::Reset).skip(1).times(2)],
            Complete,
        ),
        (
            "truncated listing answer",
            vec![Rule::request("GET", "list-type=2", Fault::Truncate)],
            Complete,
        ),
        (
            "stall on blob PUT",
            vec![Rule::request("PUT", "/blobs/", stall(1500)).times(2)],
            Complete,
        ),
        (
            "reset after config PUT reached moto",
            vec![Rule::request("PUT", "/manifests/", Fault::ResetAfterForward)],
            Either,
        ),
        (
            "503 on every config PUT",
            vec![Rule::request("PUT", "/manifests/", Fault::status(503)).always()],
            Fail,
        ),
        (
            "400 on blob PUT",
            vec![Rule::request("PUT", "/blobs/", Fault::status(400))],
            Fail,
        ),
        (
            "403 on config PUT",
            vec![Rule::request("PUT", "/manifests/", Fault::status(403))],
            Fail,
        ),
    ];
    for (name, rules, expect) in cases {
        b.export_case(name, rules, expect);
    }
}

#[test]
fn s3_imports_never_accept_a_wrong_blob() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let b = s3_backend(&ep);
    let loc = proxy::unique("import");
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &(b.spec)(&loc, false),
    ])
    .ok();
    use Expect::*;
    let cases: Vec<(&str, Vec<Rule>, Expect)> = vec![
        (
            "corrupt layer",
            vec![Rule::request("GET", LAYER_HEX, Fault::Corrupt).always()],
            Fail,
        ),
        (
            "truncated layer",
            vec![Rule::request("GET", LAYER_HEX, Fault::Truncate).always()],
            Fail,
        ),
        (
            "corrupt config",
            vec![Rule::request("GET", "/manifests/", Fault::Corrupt)],
            Either,
        ),
        (
            "503 burst on layer GET",
            vec![Rule::request("GET", LAYER_HEX, Fault::status(503)).times(2)],
            Complete,
        ),
        (
            "reset on layer GET",
            vec![Rule::request("GET", LAYER_HEX, Fault::Reset)],
            Complete,
        ),
        (
            "stall mid-layer",
            vec![Rule::request("GET", LAYER_HEX, stall(1500))],
            Complete,
        ),
    ];
    for (name, rules, expect) in cases {
        b.import_case(&loc, name, rules, expect);
    }
    b.verify_reports_corruption(&loc);
    b.verify_reads_a_cut_download_again(&loc);
}

// ---------------------------------------------------------------------------------------------

fn azblob_backend(url: &str, account: &str, key: &str) -> Backend {
    let proxy = Proxy::start(url);
    let via = proxy.rewrite(url);
    let container = proxy::unique("faults");
    let (u1, u2, c2, a2, k2) = (
        url.to_owned(),
        url.to_owned(),
        container.clone(),
        account.to_owned(),
        key.to_owned(),
    );
    let (account, key) = (account.to_owned(), key.to_owned());
    Backend {
        name: "azblob",
        proxy,
        spec: Box::new(move |loc, through| {
            format!(
                "type=azblob,account_url={},account_name={account},secret_access_key={key},container={container},prefix={loc}",
                if through { &via } else { &u1 }
            )
        }),
        state: Box::new(move |loc| proxy::azblob_object(&u2, &a2, &k2, &c2, &format!("{loc}/manifests/buildkit"))),
        expected: ANNOTATED_MAX.into(),
    }
}

fn azurite() -> Option<(String, String, String)> {
    let url = server("BKCACHE_TEST_AZURITE")?;
    Some((
        url,
        std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap(),
        std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap(),
    ))
}

#[test]
fn azblob_exports_complete_or_leave_the_config_untouched() {
    let Some((url, account, key)) = azurite() else {
        return;
    };
    let b = azblob_backend(&url, &account, &key);
    use Expect::*;
    let cases: Vec<(&str, Vec<Rule>, Expect)> = vec![
        (
            "503 burst on the blob listing",
            vec![Rule::request("GET", "comp=list", Fault::status(503)).times(2)],
            Complete,
        ),
        (
            "listing refused: one HEAD per blob, with a 503 burst on HEAD",
            vec![
                Rule::request("GET", "comp=list", Fault::status(403)).always(),
                Rule::request("HEAD", "/blobs/", Fault::status(503)).times(2),
            ],
            Complete,
        ),
        (
            "429 on blob PUT",
            vec![Rule::request("PUT", "/blobs/", Fault::status(429)).times(2)],
            Complete,
        ),
        (
            "500 burst on config PUT",
            vec![Rule::request("PUT", "/manifests/", Fault::status(500)).times(2)],
            Complete,
        ),
        // Put Blob is conditional (If-None-Match: *), which object_store does not replay after a
        // transport error: the engine sends the blob again (a blob that did arrive is then
        // found in place); a reset on every attempt fails before the config.
        (
            "reset on blob PUT",
            vec![Rule::request("PUT", "/blobs/", Fault::Reset)],
            Resent,
        ),
        (
            "reset on every blob PUT",
            vec![Rule::request("PUT", "/blobs/", Fault::Reset).always()],
            Fail,
        ),
        (
            "reset of a connection",
            vec![Rule::connection(Fault::Reset).skip(1).times(2)],
            Complete,
        ),
        (
            "truncated listing answer",
            vec![Rule::request("GET", "comp=list", Fault::Truncate)],
            Complete,
        ),
        (
            "stall on blob PUT",
            vec![Rule::request("PUT", "/blobs/", stall(1500)).times(2)],
            Complete,
        ),
        (
            "reset after config PUT reached Azurite",
            vec![Rule::request("PUT", "/manifests/", Fault::ResetAfterForward)],
            Either,
        ),
        (
            "400 on blob PUT",
            vec![Rule::request("PUT", "/blobs/", Fault::status(400))],
            Fail,
        ),
        (
            "403 on config PUT",
            vec![Rule::request("PUT", "/manifests/", Fault::status(403))],
            Fail,
        ),
    ];
    for (name, rules, expect) in cases {
        b.export_case(name, rules, expect);
    }
}

#[test]
fn azblob_imports_never_accept_a_wrong_blob() {
    let Some((url, account, key)) = azurite() else {
        return;
    };
    let b = azblob_backend(&url, &account, &key);
    let loc = proxy::unique("import");
    bkcache(&[
        "copy",
        "--from",
        &src(&fixture_cache("local-max")),
        "--to",
        &(b.spec)(&loc, false),
    ])
    .ok();
    use Expect::*;
    let cases: Vec<(&str, Vec<Rule>, Expect)> = vec![
        (
            "corrupt layer",
            vec![Rule::request("GET", LAYER_HEX, Fault::Corrupt).always()],
            Fail,
        ),
        (
            "truncated layer",
            vec![Rule::request("GET", LAYER_HEX, Fault::Truncate).always()],
            Fail,
        ),
        (
            "corrupt config",
            vec![Rule::request("GET", "/manifests/", Fault::Corrupt)],
            Either,
        ),
        (
            "503 burst on layer GET",
            vec![Rule::request("GET", LAYER_HEX, Fault::status(503)).times(2)],
            Complete,
        ),
        (
            "reset on layer GET",
            vec![Rule::request("GET", LAYER_HEX, Fault::Reset)],
            Complete,
        ),
        (
            "stall mid-layer",
            vec![Rule::request("GET", LAYER_HEX, stall(1500))],
            Complete,
        ),
    ];
    for (name, rules, expect) in cases {
        b.import_case(&loc, name, rules, expect);
    }
    b.verify_reports_corruption(&loc);
    b.verify_reads_a_cut_download_again(&loc);
}
