//! What a CI engineer meets without reading the docs: exit codes of a first run, the GitHub
//! Actions job summary, `inspect --format markdown`, help that teaches, and a directory path
//! given where a cache spec was expected.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Run bkcache with `GITHUB_STEP_SUMMARY` pointing at `summary`.
fn with_summary(summary: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .args(args)
        .env_remove("BKCACHE_LOG")
        .env("GITHUB_STEP_SUMMARY", summary)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_first_run_restore_has_its_own_exit_code_and_allow_empty_makes_it_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let absent = tmp.path().join("never-written");
    let target = tmp.path().join("restored");
    let args = ["copy", "--from", &src(&absent), "--to", &dest(&target, "")];
    let r = bkcache(&args);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("no cache to copy"), "{}", r.stderr);
    let mut allow = args.to_vec();
    allow.push("--allow-empty");
    let r = bkcache(&allow).ok();
    assert!(r.stderr.contains("warning: no cache to copy yet"), "{}", r.stderr);
    assert!(!target.exists(), "nothing written");
    // A source that exists but is broken is not a first run: still exit 1, --allow-empty or not.
    let broken = tmp.path().join("broken");
    copy_tree(&fixture_cache("local-max"), &broken);
    std::fs::write(broken.join("index.json"), b"{not json").unwrap();
    let r = bkcache(&[
        "copy",
        "--from",
        &src(&broken),
        "--to",
        &dest(&target, ""),
        "--allow-empty",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    // inspect / verify of an absent cache: 4 too; a bad option: 2.
    assert_eq!(bkcache(&["inspect", &src(&absent)]).code, 4);
    assert_eq!(bkcache(&["verify", &src(&absent)]).code, 4);
    assert_eq!(bkcache(&["inspect", "type=local,src=x,colour=red"]).code, 2);
}

#[test]
fn copy_verify_and_prune_append_a_job_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = tmp.path().join("step-summary.md");
    let target = tmp.path().join("cache");
    let to = dest(&target, "mode=max");
    let r = with_summary(
        &summary,
        &[
            "copy",
            "--from",
            &src(&fixture_cache("local-max")),
            "--to",
            &to,
            "--json",
        ],
    )
    .ok();
    let copy: Value = serde_json::from_str(&r.stdout).unwrap();
    let t = &copy["targets"][0];
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("### bkcache copy"), "{text}");
    let row = format!(
        "| `{to}` | committed | {} | {} | {} blobs, ",
        t["records"], t["layers"], t["blobs_copied"]
    );
    assert!(text.contains(&row), "{row} in\n{text}");

    with_summary(&summary, &["verify", &src(&target)]).ok();
    let dry_prune = [
        "prune",
        &src(&target),
        "--keep-storage",
        "5kB",
        "--min-age",
        "0s",
        "--dry-run",
    ];
    with_summary(&summary, &dry_prune).ok();
    let prune = bkcache(&[&dry_prune[..], &["--json"]].concat()).ok().json();
    let text = std::fs::read_to_string(&summary).unwrap();
    let verify_at = text.find("### bkcache verify").unwrap();
    assert!(
        text[verify_at..].contains("| 7 |") && text[verify_at..].contains("| ok |"),
        "{text}"
    );
    let prune_at = text.find("### bkcache prune (dry run)").unwrap();
    let row = format!(
        "| {} of {} |",
        prune["selection"]["results_dropped"],
        prune["selection"]["results_dropped"].as_u64().unwrap() + prune["selection"]["results_kept"].as_u64().unwrap()
    );
    assert!(text[prune_at..].contains(&row), "{row} in\n{text}");
    assert!(text[prune_at..].contains("| `latest` |"), "{text}");
    // Without the variable nothing is written anywhere.
    let before = std::fs::read_to_string(&summary).unwrap();
    bkcache(&["verify", &src(&target)]).ok();
    assert_eq!(before, std::fs::read_to_string(&summary).unwrap());
}

#[test]
fn inspect_prints_the_same_summary_as_markdown() {
    let cache = src(&fixture_cache("local-max"));
    let json = bkcache(&["inspect", &cache, "--json"]).ok().json();
    let md = bkcache(&["inspect", &cache, "--format", "markdown"]).ok().stdout;
    let row = format!(
        "| `{}` | {} | {} | {} | {} |",
        json["location"].as_str().unwrap(),
        json["format"].as_str().unwrap(),
        json["records"],
        json["results"],
        json["layers"].as_array().unwrap().len()
    );
    assert!(md.contains(&row), "{row} in\n{md}");
    assert!(md.contains("| layer age | results | layer bytes |"), "{md}");
    assert_eq!(bkcache(&["inspect", &cache, "--format", "json"]).ok().json(), json);
}

#[test]
fn a_directory_path_is_not_sent_to_a_registry() {
    let tmp = tempfile::tempdir().unwrap();
    for path in ["./cache", "/var/cache/bk", "../cache"] {
        let r = bkcache(&["inspect", path]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("did you mean type=local,src={path}")),
            "{}",
            r.stderr
        );
    }
    // A bare word that is a directory here, in `copy` as well.
    let r = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .current_dir(tmp.path())
        .args(["copy", "--from", ".", "--to", "type=local,dest=out"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    std::fs::create_dir(tmp.path().join("cache")).unwrap();
    let r = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .current_dir(tmp.path())
        .args(["inspect", "cache"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("did you mean type=local,src=cache"), "{stderr}");
}

#[test]
fn help_teaches_and_backends_align_and_mark_what_is_ignored() {
    let top = bkcache(&["--help"]).ok().stdout;
    let about = top.lines().next().unwrap();
    for cmd in [
        "copy",
        "inspect",
        "verify",
        "scan",
        "prune",
        "diff",
        "backends",
        "completions",
        "man",
    ] {
        assert!(about.contains(cmd), "the about line names {cmd}: {about}");
    }
    assert!(top.contains("Exit codes:"), "{top}");
    let copy = bkcache(&["copy", "--help"]).ok().stdout;
    assert!(copy.contains("--from type=s3,"), "a restore from s3: {copy}");
    assert!(copy.contains("--to type=gha,"), "an export to gha: {copy}");
    assert!(copy.contains("bkcache backends"), "{copy}");
    let from_at = copy.find("--from <SPEC>").unwrap();
    assert!(
        from_at < copy.find("--parallelism").unwrap()
            && copy.find("--parallelism").unwrap() < copy.find("--json").unwrap()
    );
    let prune = bkcache(&["prune", "--help"]).ok().stdout;
    for clock in ["local ", "s3 ", "azblob ", "gha ", "registry "] {
        assert!(prune.contains(clock), "prune --help names the {clock}clock: {prune}");
    }

    let text = bkcache(&["backends"]).ok().stdout;
    let mut section = "";
    let mut meaning_col = None;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("type=") {
            section = t.split_whitespace().next().unwrap();
            continue;
        }
        if line.trim_start().starts_with("compression ") {
            assert_eq!(
                line.contains("IGNORED"),
                ["s3", "azblob", "gha"].contains(&section),
                "type={section}: {line}"
            );
        }
        if line.starts_with("  ATTRIBUTE") {
            let col = line.find("MEANING").unwrap();
            assert!(meaning_col.is_none_or(|c| c == col), "columns align across types");
            meaning_col = Some(col);
        }
    }
    let json = bkcache(&["backends", "--json"]).ok().json();
    let s3 = json.as_array().unwrap().iter().find(|b| b["type"] == "s3").unwrap();
    let compression = s3["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "compression")
        .unwrap();
    assert_eq!(compression["ignored"], true);
}
