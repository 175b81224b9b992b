//! `inspect --html`, `diff --html` and `inspect --format dot` on the shipped BuildKit caches,
//! the pages rendered by a real browser: headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`; `BKCACHE_CHROMIUM` names another). Chromium prints each console message on stderr
//! (`--enable-logging=stderr`): a page passes when there is none, its DOM after the scripts ran
//! holds one graph node per record and one table row per layer, and the table's script sorted
//! it biggest first. A screenshot of each page goes to `target/html-report/` for a person.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Chromium, or `None` (SKIPPED) outside CI; under CI a missing browser fails.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("BKCACHE_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("BKCACHE_REQUIRE_SERVERS").is_some() {
        panic!("{} is missing: `.ci/run` installs Debian's chromium", path.display());
    }
    eprintln!(
        "SKIPPED: {} is missing (apt-get install chromium, or set BKCACHE_CHROMIUM)",
        path.display()
    );
    None
}

/// Open `page` headless: its DOM after the scripts ran, and every console message.
fn render(browser: &Path, page: &Path, screenshot: Option<&Path>) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,2200",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(png) => cmd.arg(format!("--screenshot={}", png.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(format!("file://{}", page.display())).output().unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// Where screenshots go (kept after the test, for a person to look at).
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/html-report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Nothing in the page may point outside it.
fn assert_self_contained(html: &str, what: &str) {
    for needle in ["http://", "https://", " src=", "@import", "url("] {
        assert!(!html.contains(needle), "{what} refers outside itself ({needle})");
    }
}

/// The layer sizes of the table's rows, in DOM order.
fn row_sizes(dom: &str) -> Vec<u64> {
    dom.split("<tr class=\"layer\"")
        .skip(1)
        .map(|row| {
            let v = row.split("data-size=\"").nth(1).unwrap();
            v[..v.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

fn summary_of(spec: &str) -> serde_json::Value {
    serde_json::from_str(&bkcache(&["inspect", spec, "--json"]).ok().stdout).unwrap()
}

#[test]
fn the_console_check_sees_a_failing_script() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("bad.html");
    std::fs::write(&page, "<!doctype html><p>x</p><script>notAFunction();</script>").unwrap();
    let (_, console) = render(&browser, &page, None);
    assert!(
        console.iter().any(|l| l.contains("notAFunction is not defined")),
        "chromium's console log did not show the error: {console:?}"
    );
}

#[test]
fn inspect_pages_of_the_shipped_caches_render_in_chromium() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (name, tag) in [
        ("local-max", ""),
        ("local-min", ""),
        ("local-index", ""),
        ("local-two-tags", ",tag=feature"),
        ("local-zstd", ""),
        ("local-estargz", ""),
        ("local-docker", ""),
        ("local-uncompressed", ""),
    ] {
        let spec = format!("{}{tag}", src(&fixture_cache(name)));
        let page = tmp.path().join(format!("{name}.html"));
        let run = bkcache(&["inspect", &spec, "--html", page.to_str().unwrap()]).ok();
        assert!(run.stderr.contains("wrote "), "{}", run.stderr);
        let html = std::fs::read_to_string(&page).unwrap();
        assert_self_contained(&html, name);
        assert!(html.len() < 2 << 20, "{name}: {} bytes", html.len());

        let summary = summary_of(&spec);
        let (dom, console) = render(&browser, &page, None);
        assert!(console.is_empty(), "{name}: console messages: {console:?}");
        let records = summary["records"].as_u64().unwrap() as usize;
        let layers = summary["layers"].as_array().unwrap();
        assert_eq!(
            dom.matches("<g class=\"node ").count(),
            records,
            "{name}: one node per record"
        );
        assert_eq!(
            dom.matches("<rect class=\"cell").count(),
            layers.len(),
            "{name}: one treemap cell per layer"
        );
        let sizes = row_sizes(&dom);
        assert_eq!(sizes.len(), layers.len(), "{name}: one table row per layer");
        assert!(
            dom.contains("data-sorted=\"size\""),
            "{name}: the sorting script did not run"
        );
        assert!(
            sizes.windows(2).all(|w| w[0] >= w[1]),
            "{name}: not biggest first: {sizes:?}"
        );
        for l in layers {
            let d = l["digest"].as_str().unwrap();
            assert!(dom.contains(&format!("title=\"{d}\"")), "{name}: layer {d} not listed");
        }
        render(
            &browser,
            &page,
            Some(&screenshot_dir().join(format!("inspect-{name}.png"))),
        );
    }
}

#[test]
fn the_diff_page_colours_both_sides() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (src(&fixture_cache("local-max")), src(&fixture_cache("local-min")));
    let page = tmp.path().join("diff.html");
    let run = bkcache(&["diff", &a, &b, "--json", "--html", page.to_str().unwrap()]).ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html, "diff");
    let (dom, console) = render(&browser, &page, None);
    assert!(console.is_empty(), "console messages: {console:?}");
    let count = |class: &str| dom.matches(&format!("<g class=\"node {class}\"")).count() as u64;
    assert_eq!(count("shared"), report["shared_records"].as_u64().unwrap());
    assert_eq!(count("only-a"), report["only_a_records"].as_u64().unwrap());
    assert_eq!(count("only-b"), report["only_b_records"].as_u64().unwrap());
    let layers = ["shared_layers", "only_a_layers", "only_b_layers"].map(|k| report[k].as_u64().unwrap());
    assert_eq!(row_sizes(&dom).len() as u64, layers.iter().sum::<u64>());
    assert_eq!(dom.matches("<td class=\"k-only-a\"").count() as u64, layers[1]);
    render(
        &browser,
        &page,
        Some(&screenshot_dir().join("diff-local-max-vs-local-min.png")),
    );
}

#[test]
fn dot_has_a_node_per_record_and_an_edge_per_input() {
    let spec = src(&fixture_cache("local-max"));
    let dot = bkcache(&["inspect", &spec, "--format", "dot"]).ok().stdout;
    let summary = summary_of(&spec);
    assert!(dot.starts_with("digraph cache {") && dot.trim_end().ends_with('}'));
    let nodes = dot
        .lines()
        .filter(|l| l.trim_start().starts_with('r') && l.contains("[label=") && !l.contains("->"));
    assert_eq!(nodes.count() as u64, summary["records"].as_u64().unwrap());
    assert!(dot.contains(" -> "), "local-max has inputs");
}

/// A generated cache of `blobs` blobs (one record each), its `inspect --html` page.
fn generated_page(tmp: &Path, blobs: u32) -> String {
    let dir = generate_small(tmp, blobs);
    let page = tmp.join(format!("g{blobs}.html"));
    bkcache(&["inspect", &src(&dir), "--html", page.to_str().unwrap()]).ok();
    std::fs::read_to_string(&page).unwrap()
}

#[test]
fn a_1k_record_page_stays_under_2_mb_and_a_larger_one_degrades_to_the_biggest_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let html = generated_page(tmp.path(), 1000);
    assert_eq!(html.matches("<g class=\"node ").count(), 1000, "1k records are drawn");
    assert!(html.len() < 2 << 20, "1k records: {} bytes", html.len());
    let html = generated_page(tmp.path(), 3000);
    assert!(
        html.contains("The graph is left out: 3000 records"),
        "no summary instead of the graph"
    );
    assert_eq!(
        html.matches("<tr class=\"layer\"").count(),
        1000,
        "the biggest 1000 layers"
    );
    assert!(html.contains("The biggest 1000 of "));
    assert!(html.len() < 2 << 20, "3k records: {} bytes", html.len());
}

#[test]
fn a_report_path_that_cannot_be_written_is_an_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = src(&fixture_cache("local-max"));
    let page = tmp.path().join("no-such-dir").join("r.html");
    let run = bkcache(&["inspect", &spec, "--html", page.to_str().unwrap()]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("no-such-dir"), "{}", run.stderr);
    assert!(!page.exists());
}
