//! The CI examples in `docs/` (GitHub Actions and GitLab CI) are valid YAML of the right shape,
//! and every `bkcache` command in their scripts is one the real binary accepts: flags and values
//! parse (`bkcache ARGS --help` exits 0 only when clap accepted every argument before it), each
//! cache option is a known `type=` with attributes that exist for its direction (checked against
//! `bkcache backends --json`), and sizes and durations parse. Each example must restore into a
//! local directory, prune it with `--keep-storage`, and export it back.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use bkcache_core::{lifecycle, CacheSpec};
use yaml_rust2::{Yaml, YamlLoader};

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn load(name: &str) -> Yaml {
    let text = std::fs::read_to_string(docs().join(name)).unwrap();
    let mut parsed = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
    assert_eq!(parsed.len(), 1, "{name}: one YAML document");
    parsed.remove(0)
}

fn hash_entries(y: &Yaml) -> Vec<(String, &Yaml)> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.as_str().unwrap_or("").to_owned(), v))
                .collect()
        })
        .unwrap_or_default()
}

/// Scalar variables of an `env:` / `variables:` mapping.
fn vars_of(y: &Yaml) -> HashMap<String, String> {
    hash_entries(y)
        .into_iter()
        .filter_map(|(k, v)| match v {
            Yaml::String(s) => Some((k, s.clone())),
            Yaml::Integer(i) => Some((k, i.to_string())),
            _ => None,
        })
        .collect()
}

/// Replace GitHub's `${{ expr }}`: `env.NAME` from the variables, anything else a sample word.
fn github_expressions(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${{") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("}}").map(|e| i + e + 2).unwrap();
        let expr = rest[i + 3..end - 2].trim();
        match expr.strip_prefix("env.") {
            Some(name) => out.push_str(vars.get(name).map(String::as_str).unwrap_or("main")),
            None => out.push_str("main"),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// One shell variable: from the YAML (expanded in turn), else a sample value.
fn var(name: &str, vars: &HashMap<String, String>, depth: usize) -> String {
    match vars.get(name) {
        Some(v) if depth < 8 => expand(&github_expressions(v, vars), vars, depth + 1),
        _ => "main".into(),
    }
}

/// Expand `$NAME` and `${NAME}` in unquoted-or-double-quoted text (used for YAML values).
fn expand(text: &str, vars: &HashMap<String, String>, depth: usize) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced {
            assert_eq!(chars.next(), Some('}'), "unsupported ${{…}} form in {text:?}");
        }
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(&var(&name, vars, depth));
        }
    }
    out
}

/// Split a script into commands of words, as a POSIX shell would for the simple forms these
/// examples use: quotes, backslash escapes and line continuations, `$VAR`, `;`, `&&`, `||`,
/// `|`, newlines, comments and `{ …; }` groups.
fn commands(script: &str, vars: &HashMap<String, String>) -> Vec<Vec<String>> {
    let script = github_expressions(&script.replace("\\\n", " "), vars);
    let mut all = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = script.chars().peekable();
    let end_command = |words: &mut Vec<String>, word: &mut Option<String>, all: &mut Vec<Vec<String>>| {
        words.extend(word.take());
        words.retain(|w| w != "{" && w != "}");
        if !words.is_empty() {
            all.push(std::mem::take(words));
        }
    };
    let take_var = |chars: &mut std::iter::Peekable<std::str::Chars>| -> Option<String> {
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek().filter(|n| n.is_ascii_alphanumeric() || **n == '_') {
            name.push(n);
            chars.next();
        }
        if braced {
            assert_eq!(chars.next(), Some('}'));
        }
        (!name.is_empty()).then_some(name)
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => words.extend(word.take()),
            '\n' | ';' => end_command(&mut words, &mut word, &mut all),
            '&' | '|' => {
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                end_command(&mut words, &mut word, &mut all);
            }
            '#' if word.is_none() => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                end_command(&mut words, &mut word, &mut all);
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for n in chars.by_ref() {
                    if n == '\'' {
                        break;
                    }
                    w.push(n);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(n) = chars.next() {
                    match n {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        '$' => match take_var(&mut chars) {
                            Some(name) => w.push_str(&var(&name, vars, 0)),
                            None => w.push('$'),
                        },
                        _ => w.push(n),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '$' => {
                let value = take_var(&mut chars).map(|n| var(&n, vars, 0)).unwrap_or("$".into());
                word.get_or_insert_with(String::new).push_str(&value);
            }
            _ => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_command(&mut words, &mut word, &mut all);
    all
}

/// A `bkcache` command found in an example: where, and its arguments.
#[derive(Debug)]
struct Invocation {
    place: String,
    args: Vec<String>,
}

fn invocations(place: &str, script: &str, vars: &HashMap<String, String>) -> Vec<Invocation> {
    commands(script, vars)
        .into_iter()
        .filter(|words| words[0] == "bkcache" || words[0].ends_with("/bkcache"))
        .map(|words| Invocation {
            place: place.to_owned(),
            args: without_redirections(&words[1..]),
        })
        .collect()
}

/// The words of a command without its redirections (`2> FILE`, `>> FILE`, `<FILE`, …): the
/// shell takes those, not bkcache.
fn without_redirections(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for w in words {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        let op = w.trim_start_matches(|c: char| c.is_ascii_digit());
        if let Some(target) = op
            .strip_prefix(">>")
            .or_else(|| op.strip_prefix('>'))
            .or_else(|| op.strip_prefix('<'))
        {
            skip_next = target.is_empty();
            continue;
        }
        out.push(w.clone());
    }
    out
}

/// GitHub Actions: shape, and every `run:` script's bkcache commands.
fn github_invocations(doc: &Yaml) -> Vec<Invocation> {
    for key in ["name", "on", "jobs"] {
        assert!(!doc[key].is_badvalue(), "github-actions.yml: no `{key}`");
    }
    let global = vars_of(&doc["env"]);
    let jobs = hash_entries(&doc["jobs"]);
    assert!(!jobs.is_empty());
    let mut out = Vec::new();
    for (job, body) in jobs {
        assert!(body["runs-on"].as_str().is_some(), "job {job}: runs-on");
        let steps = body["steps"].as_vec().unwrap_or_else(|| panic!("job {job}: steps"));
        assert!(!steps.is_empty(), "job {job}: steps");
        for (i, step) in steps.iter().enumerate() {
            let (uses, run) = (step["uses"].as_str(), step["run"].as_str());
            assert!(
                uses.is_some() != run.is_some(),
                "job {job} step {i}: exactly one of uses/run"
            );
            if let Some(action) = uses {
                assert!(action.contains('@'), "job {job} step {i}: pin {action} to a version");
            }
            let mut vars = global.clone();
            vars.extend(vars_of(&body["env"]));
            vars.extend(vars_of(&step["env"]));
            if let Some(script) = run {
                out.extend(invocations(
                    &format!("github-actions.yml job {job} step {i}"),
                    script,
                    &vars,
                ));
            }
        }
    }
    out
}

/// GitLab CI: shape (stages, scripts, needs), and every script line's bkcache commands.
fn gitlab_invocations(doc: &Yaml) -> Vec<Invocation> {
    const GLOBAL_KEYS: &[&str] = &[
        "stages",
        "variables",
        "default",
        "workflow",
        "include",
        "image",
        "services",
        "cache",
        "before_script",
        "after_script",
    ];
    let stages: Vec<&str> = doc["stages"]
        .as_vec()
        .expect("gitlab-ci.yml: stages")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let global = vars_of(&doc["variables"]);
    let entries = hash_entries(doc);
    let jobs: Vec<(String, &Yaml)> = entries
        .into_iter()
        .filter(|(k, _)| !GLOBAL_KEYS.contains(&k.as_str()) && !k.starts_with('.'))
        .collect();
    assert!(!jobs.is_empty());
    let mut out = Vec::new();
    for (job, body) in &jobs {
        let stage = body["stage"].as_str().unwrap_or("test");
        assert!(
            stages.contains(&stage) || stage == ".pre" || stage == ".post",
            "job {job}: stage {stage} not in {stages:?}"
        );
        for need in body["needs"].as_vec().into_iter().flatten() {
            let need = need.as_str().unwrap();
            assert!(
                jobs.iter().any(|(j, _)| j == need),
                "job {job} needs unknown job {need}"
            );
        }
        let mut vars = global.clone();
        vars.extend(vars_of(&body["variables"]));
        let script = body["script"].as_vec().unwrap_or_else(|| panic!("job {job}: script"));
        assert!(!script.is_empty(), "job {job}: script");
        for part in ["before_script", "script", "after_script"] {
            for (i, line) in body[part].as_vec().into_iter().flatten().enumerate() {
                let line = line
                    .as_str()
                    .unwrap_or_else(|| panic!("job {job} {part}[{i}]: a string"));
                out.extend(invocations(
                    &format!("gitlab-ci.yml job {job} {part}[{i}]"),
                    line,
                    &vars,
                ));
            }
        }
    }
    out
}

/// Flags that take a value (so the word after them is not a positional SPEC).
const VALUE_FLAGS: &[&str] = &[
    "--from",
    "--to",
    "--parallelism",
    "--scratch-dir",
    "--max-uncompressed",
    "--keep-duration",
    "--age-by",
    "--keep-storage",
    "--keep-tags",
    "--min-age",
    "--out-dir",
    "--format",
    "--store",
    "--listen",
    "--htpasswd",
    "--token-file",
    "--tls-cert",
    "--tls-key",
    "--max-blob-size",
    "--scratch-limit",
    "--max-uploads",
    "--upload-idle",
    "--shutdown-grace",
];

/// The flag values and positionals of an argument list (`--flag=value` too).
fn split_args(args: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let (mut flags, mut positionals) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some((f, v)) = a.split_once('=').filter(|(f, _)| f.starts_with("--")) {
            flags.push((f.to_owned(), v.to_owned()));
        } else if VALUE_FLAGS.contains(&a.as_str()) {
            flags.push((a.clone(), it.next().cloned().unwrap_or_default()));
        } else if !a.starts_with('-') {
            positionals.push(a.clone());
        }
    }
    (flags, positionals)
}

struct Checked {
    /// (subcommand, import specs, export specs)
    commands: Vec<(String, Vec<CacheSpec>, Vec<CacheSpec>)>,
}

fn check(file: &str, found: Vec<Invocation>, backends: &serde_json::Value) -> Checked {
    assert!(!found.is_empty(), "{file}: no bkcache command found");
    let mut checked = Checked { commands: Vec::new() };
    for inv in found {
        let place = &inv.place;
        // clap accepts every flag and value before --help, or exits 2 naming the bad one.
        let mut with_help = inv.args.clone();
        if inv.args != ["--version"] {
            with_help.push("--help".into());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_bkcache"))
            .args(&with_help)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{place}: `bkcache {}` is not a valid command line: {}",
            inv.args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        let Some(sub) = inv.args.first().filter(|a| !a.starts_with('-')).cloned() else {
            continue;
        };
        let (flags, positionals) = split_args(&inv.args[1..]);
        let (mut import, mut export) = (Vec::new(), Vec::new());
        match sub.as_str() {
            "copy" => {
                for (f, v) in &flags {
                    match f.as_str() {
                        "--from" => import.push(v.clone()),
                        "--to" => export.push(v.clone()),
                        _ => {}
                    }
                }
                assert!(
                    !import.is_empty() && !export.is_empty(),
                    "{place}: copy needs --from and --to"
                );
            }
            "serve" => {
                export = flags
                    .iter()
                    .filter(|(f, _)| f == "--store")
                    .map(|(_, v)| v.clone())
                    .collect();
                assert!(!export.is_empty(), "{place}: serve needs --store");
            }
            "inspect" | "verify" | "scan" | "prune" => {
                assert_eq!(positionals.len(), 1, "{place}: {sub} takes one SPEC: {positionals:?}");
                import = positionals.clone();
            }
            "diff" => {
                assert_eq!(positionals.len(), 2, "{place}: diff takes two SPECs");
                import = positionals.clone();
            }
            _ => {}
        }
        for (f, v) in &flags {
            match f.as_str() {
                "--keep-storage" => {
                    lifecycle::parse_size(v).unwrap_or_else(|e| panic!("{place}: {f} {v}: {e}"));
                }
                "--keep-duration" | "--min-age" => {
                    lifecycle::parse_duration(v).unwrap_or_else(|e| panic!("{place}: {f} {v}: {e}"));
                }
                _ => {}
            }
        }
        let parse = |s: &String, direction: &str| -> CacheSpec {
            let mut specs = CacheSpec::parse(s).unwrap_or_else(|e| panic!("{place}: {s}: {e}"));
            assert_eq!(specs.len(), 1, "{place}: {s}: one cache per argument");
            let spec = specs.remove(0);
            check_attributes(place, &spec, direction, backends);
            spec
        };
        let import = import.iter().map(|s| parse(s, "import")).collect();
        let export = export.iter().map(|s| parse(s, "export")).collect();
        checked.commands.push((sub, import, export));
    }
    checked
}

/// Every attribute of `spec` exists for its type in this direction (`backends --json`).
fn check_attributes(place: &str, spec: &CacheSpec, direction: &str, backends: &serde_json::Value) {
    let Some(backend) = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == spec.kind.as_str())
    else {
        // The gha backend may not be in this build yet; every other type must be.
        assert_eq!(spec.kind, "gha", "{place}: unknown cache type {}", spec.kind);
        eprintln!("{place}: type=gha not in this build: its attributes were not checked");
        return;
    };
    for key in spec.attrs.keys() {
        let ok = backend["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == key.as_str() && (a["applies"] == "both" || a["applies"] == direction));
        assert!(ok, "{place}: type={} has no {direction} attribute {key:?}", spec.kind);
    }
}

fn backends_json() -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_bkcache"))
        .args(["backends", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The job the issue asks for: restore remote -> local dir, prune the local dir to a size,
/// export local dir -> remote.
fn assert_restore_prune_export(file: &str, checked: &Checked, remote_kinds: &[&str]) {
    let is_local = |s: &CacheSpec| s.kind == "local";
    for kind in remote_kinds {
        let restore = checked
            .commands
            .iter()
            .any(|(sub, from, to)| sub == "copy" && from.iter().all(|s| s.kind == *kind) && to.iter().all(is_local));
        let export = checked
            .commands
            .iter()
            .any(|(sub, from, to)| sub == "copy" && from.iter().all(is_local) && to.iter().all(|s| s.kind == *kind));
        assert!(restore, "{file}: no restore from type={kind} into type=local");
        assert!(export, "{file}: no export from type=local to type={kind}");
    }
    assert!(
        checked
            .commands
            .iter()
            .any(|(sub, from, _)| sub == "prune" && from.iter().all(is_local)),
        "{file}: no prune of the local directory"
    );
}

#[test]
fn the_github_actions_example_is_valid_and_uses_real_commands() {
    let doc = load("github-actions.yml");
    let found = github_invocations(&doc);
    let text = std::fs::read_to_string(docs().join("github-actions.yml")).unwrap();
    assert!(text.contains("--keep-storage"));
    let checked = check("github-actions.yml", found, &backends_json());
    assert_restore_prune_export("github-actions.yml", &checked, &["gha", "s3"]);
    assert_serve_in_front_of("github-actions.yml", &checked, "gha");
}

/// The live recipe: `bkcache serve` in front of the remote, with `{repo}` and `{tag}`.
fn assert_serve_in_front_of(file: &str, checked: &Checked, kind: &str) {
    let serve = checked.commands.iter().find(|(sub, _, to)| {
        sub == "serve"
            && to.iter().any(|s| {
                s.kind == kind
                    && s.attrs.values().any(|v| v.contains("{repo}"))
                    && s.attrs.values().any(|v| v.contains("{tag}"))
            })
    });
    assert!(
        serve.is_some(),
        "{file}: no `bkcache serve --store type={kind},…{{repo}}…{{tag}}…`"
    );
}

#[test]
fn the_gitlab_ci_example_is_valid_and_uses_real_commands() {
    let doc = load("gitlab-ci.yml");
    let found = gitlab_invocations(&doc);
    let text = std::fs::read_to_string(docs().join("gitlab-ci.yml")).unwrap();
    assert!(text.contains("--keep-storage"));
    let checked = check("gitlab-ci.yml", found, &backends_json());
    assert_restore_prune_export("gitlab-ci.yml", &checked, &["s3"]);
    assert_serve_in_front_of("gitlab-ci.yml", &checked, "s3");
}

#[test]
fn the_docs_readme_explains_both_examples() {
    let readme = std::fs::read_to_string(docs().join("README.md")).unwrap();
    for f in ["github-actions.yml", "gitlab-ci.yml"] {
        assert!(readme.contains(f), "docs/README.md does not mention {f}");
    }
}

#[test]
fn the_checker_catches_bad_commands() {
    let vars: HashMap<String, String> = [("SPEC".to_owned(), "type=local,dest=/x".to_owned())].into();
    let words = commands(
        "a && bkcache copy \\\n  --from \"$SPEC\" --to 'type=local,dest=/y' # note\n{ b; bkcache verify x; }",
        &vars,
    );
    assert_eq!(
        words,
        vec![
            vec!["a".to_owned()],
            vec![
                "bkcache",
                "copy",
                "--from",
                "type=local,dest=/x",
                "--to",
                "type=local,dest=/y"
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            vec!["b".to_owned()],
            vec!["bkcache".to_owned(), "verify".to_owned(), "x".to_owned()],
        ]
    );
    assert_eq!(
        github_expressions(
            "s-${{ github.ref_name }}-${{ env.X }}",
            &[("X".into(), "y".into())].into()
        ),
        "s-main-y"
    );
    let backends = backends_json();
    let bad = |args: &[&str]| {
        let inv = Invocation {
            place: "test".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check("test", vec![inv], &backends))).is_err()
    };
    assert!(bad(&[
        "copy",
        "--from",
        "type=local,src=/a",
        "--to",
        "type=local,dest=/b",
        "--bogus"
    ]));
    assert!(bad(&[
        "copy",
        "--from",
        "type=local,src=/a",
        "--to",
        "type=local,src=/b"
    ]));
    assert!(bad(&["prune", "type=local,src=/a", "--keep-storage", "lots"]));
    assert!(bad(&[
        "copy",
        "--from",
        "type=nope,src=/a",
        "--to",
        "type=local,dest=/b"
    ]));
    assert!(bad(&["prune", "type=local,src=/a", "--parallelism", "x"]));
    assert!(!bad(&[
        "prune",
        "type=local,src=/a",
        "--keep-storage",
        "2GB",
        "--min-age",
        "0s"
    ]));
}
