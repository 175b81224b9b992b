//! Human and JSON output. The JSON shapes are documented in the README ("JSON output") and are
//! stable: fields may be added, never renamed or removed.

use std::io::Write;

use bkcache_core::inspect::{Summary, VerifyReport};
use bkcache_core::transfer::{CopyReport, Outcome};
use bkcache_core::{Backends, Error, LoadedCache};
use serde::Serialize;

fn print_json<T: Serialize>(value: &T) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    let result = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out));
    match result {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Error::io("stdout", "write", e)),
    }
}

/// stdout could not be written: a closed pipe is the reader's choice (exit 0, quietly); any
/// other failure is an error (exit 1).
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// A warning on stderr (unless quiet).
pub fn warn(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("warning: {msg}");
    }
}

/// Bytes for people: `1.5 MiB`.
pub(crate) use bkcache_core::inspect::human_bytes as human;

pub fn copy_report(report: &CopyReport, json: bool, quiet: bool) -> Result<(), Error> {
    if json {
        return print_json(report);
    }
    for t in &report.targets {
        match &t.outcome {
            Outcome::Committed => {
                if !quiet {
                    let retried = match t.blob_retries {
                        0 => String::new(),
                        n => format!(" ({n} sent again after a transient failure)"),
                    };
                    say!(
                        "{}: {} records, {} layers; copied {} blobs ({}){retried}, {} already there; manifest {}",
                        t.target,
                        t.records,
                        t.layers,
                        t.blobs_copied,
                        human(t.bytes_copied),
                        t.blobs_present,
                        t.manifest.as_ref().map(|m| m.digest.to_string()).unwrap_or_default()
                    );
                }
            }
            Outcome::Skipped(why) => warn(quiet, &format!("{}: skipped: {why}", t.target)),
            Outcome::IgnoredError(_) => {}
            Outcome::Failed(why) => eprintln!("error: {}: export failed: {why}", t.target),
        }
    }
    Ok(())
}

pub fn summary(s: &Summary, json: bool) -> Result<(), Error> {
    if json {
        return print_json(s);
    }
    say!("cache      {}", s.location);
    say!("format     {} ({})", s.format, s.manifest.media_type);
    say!("manifest   {} ({} bytes)", s.manifest.digest, s.manifest.size);
    if let Some(c) = &s.config {
        say!("config     {} ({} bytes)", c.digest, c.size);
    }
    say!("records    {} ({} with results)", s.records, s.results);
    say!("layers     {} ({})", s.layers.len(), human(s.layer_bytes));
    say!("total      {} ({} bytes)", human(s.total_bytes), s.total_bytes);
    let ages: Vec<String> = s
        .age
        .iter()
        .filter(|a| a.results > 0 || a.layer_bytes > 0)
        .map(|a| format!("{} {} results / {}", a.bucket, a.results, human(a.layer_bytes)))
        .collect();
    if !ages.is_empty() {
        say!("age        {}", ages.join(", "));
    }
    for p in &s.parts {
        say!(
            "part       {} ({}): {} records, {} layers, {}{}",
            p.name,
            p.scope,
            p.records,
            p.layers,
            human(p.layer_bytes),
            if p.signed { ", signed" } else { "" }
        );
    }
    say!();
    say!(
        "{:<71}  {:>10}  {:<12}  {:<31}  MEDIA TYPE",
        "LAYER",
        "SIZE",
        "COMPRESSION",
        "CREATED"
    );
    for l in &s.layers {
        say!(
            "{:<71}  {:>10}  {:<12}  {:<31}  {}",
            l.digest,
            l.size,
            l.compression,
            l.created_at.as_deref().unwrap_or("-"),
            l.media_type
        );
    }
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}

#[derive(Serialize)]
struct VerifyJson<'a> {
    location: &'a str,
    manifest: &'a bkcache_core::Digest,
    ok: bool,
    #[serde(flatten)]
    report: &'a VerifyReport,
    warnings: &'a [String],
}

pub fn verify_report(
    location: &str,
    loaded: &LoadedCache,
    r: &VerifyReport,
    json: bool,
    quiet: bool,
) -> Result<(), Error> {
    if json {
        return print_json(&VerifyJson {
            location,
            manifest: &loaded.manifest.digest,
            ok: r.problems.is_empty(),
            report: r,
            warnings: &loaded.warnings,
        });
    }
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    for p in &r.problems {
        eprintln!("problem: {}: {}", p.digest, p.problem);
    }
    if r.problems.is_empty() {
        if quiet {
            return Ok(());
        }
        say!(
            "{location}: ok: manifest {}, {} blobs ({}) verified",
            loaded.manifest.digest,
            r.blobs_checked,
            human(r.bytes_read)
        );
    } else {
        say!(
            "{location}: {} problem(s) in {} blobs",
            r.problems.len(),
            r.blobs_checked
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct BackendJson {
    #[serde(rename = "type")]
    kind: &'static str,
    summary: &'static str,
    family: bkcache_core::Family,
    attributes: Vec<AttributeJson>,
}

#[derive(Serialize)]
struct AttributeJson {
    #[serde(flatten)]
    doc: bkcache_core::AttributeDoc,
    /// Accepted but without effect on this backend (as in BuildKit).
    ignored: bool,
}

/// Widest default shown in line with the meaning; longer ones get a line of their own.
const DEFAULT_COLUMN: usize = 36;

pub fn backends(backends: &Backends, json: bool) -> Result<(), Error> {
    let list: Vec<BackendJson> = backends
        .iter()
        .map(|b| {
            let attributes = backends
                .attributes(b.type_name())?
                .into_iter()
                .map(|doc| AttributeJson {
                    ignored: backends.ignores(b.type_name(), doc.name),
                    doc,
                })
                .collect();
            Ok(BackendJson {
                kind: b.type_name(),
                summary: b.summary(),
                family: b.family(),
                attributes,
            })
        })
        .collect::<Result<_, Error>>()?;
    if json {
        return print_json(&list);
    }
    let name_w = list
        .iter()
        .flat_map(|b| b.attributes.iter().map(|a| a.doc.name.len()))
        .max()
        .unwrap_or(0);
    let indent = 2 + name_w + 2 + 7 + 2 + DEFAULT_COLUMN + 2;
    for b in &list {
        say!("type={}  {}", b.kind, b.summary);
        say!(
            "  {:<name_w$}  {:<7}  {:<DEFAULT_COLUMN$}  MEANING",
            "ATTRIBUTE",
            "FOR",
            "DEFAULT"
        );
        for a in &b.attributes {
            let dir = match a.doc.applies {
                bkcache_core::factory::Applies::Import => "from",
                bkcache_core::factory::Applies::Export => "to",
                bkcache_core::factory::Applies::Both => "from,to",
            };
            let meaning = if a.ignored {
                format!(
                    "IGNORED on type={} (as by BuildKit); elsewhere: {}",
                    b.kind, a.doc.meaning
                )
            } else {
                a.doc.meaning.to_owned()
            };
            if a.doc.default.len() > DEFAULT_COLUMN {
                say!("  {:<name_w$}  {dir:<7}  {}", a.doc.name, a.doc.default);
                say!("{:indent$}{meaning}", "");
            } else {
                say!(
                    "  {:<name_w$}  {dir:<7}  {:<DEFAULT_COLUMN$}  {meaning}",
                    a.doc.name,
                    a.doc.default
                );
            }
        }
        say!();
    }
    Ok(())
}

pub fn prune_report(r: &bkcache_core::lifecycle::PruneReport, json: bool, quiet: bool) -> Result<(), Error> {
    use bkcache_core::lifecycle::TagAction;
    if json {
        return print_json(r);
    }
    for n in &r.notes {
        warn(quiet, n);
    }
    if quiet {
        return Ok(());
    }
    let (would, drop, remove, delete) = if r.dry_run {
        ("would ", "would drop", "would remove", "would delete")
    } else {
        ("", "dropped", "removed", "deleted")
    };
    let s = &r.selection;
    say!(
        "{}: {drop} {} of {} results ({} -> {} of layers){}",
        r.location,
        s.results_dropped,
        s.results_dropped + s.results_kept,
        human(s.layer_bytes_before),
        human(s.layer_bytes_after),
        r.manifest
            .as_ref()
            .map(|m| format!("; {would}write manifest {m}"))
            .unwrap_or_default()
    );
    for t in &r.tags {
        let action = match t.action {
            TagAction::Kept => "keep".to_owned(),
            TagAction::Rewritten => format!("{would}rewrite ({})", t.reason),
            TagAction::Removed => format!("{remove} ({})", t.reason),
        };
        say!(
            "  tag {:<24} last written {:<32} {action}{}",
            t.tag,
            t.written.as_deref().unwrap_or("unknown"),
            if t.signed {
                " [signed: its signature goes with it]"
            } else {
                ""
            }
        );
    }
    say!(
        "{}: {delete} {} unreferenced blobs ({}) of {} listed; {} younger than --min-age kept",
        r.location,
        r.blobs_deleted,
        human(r.bytes_freed),
        r.blobs_listed,
        r.blobs_too_young
    );
    if r.dry_run {
        for d in &r.deleted {
            say!("  would delete blob {d}");
        }
    }
    Ok(())
}

pub fn diff_report(d: &bkcache_core::lifecycle::DiffReport, json: bool) -> Result<(), Error> {
    if json {
        return print_json(d);
    }
    say!(
        "layers   shared {} ({}), only A {} ({}), only B {} ({})",
        d.shared_layers,
        human(d.shared_bytes),
        d.only_a_layers,
        human(d.only_a_bytes),
        d.only_b_layers,
        human(d.only_b_bytes)
    );
    say!(
        "records  shared {}, only A {}, only B {}; results for the same key in both: {}",
        d.shared_records,
        d.only_a_records,
        d.only_b_records,
        d.shared_results
    );
    Ok(())
}

pub fn scan_report(location: &str, r: &bkcache_core::scan::ScanReport, json: bool) -> Result<(), Error> {
    if json {
        return print_json(r);
    }
    for f in &r.findings {
        say!(
            "{location}: {} in layer {}: {} ({})",
            f.path,
            f.layer.short(),
            f.rule,
            f.detail
        );
    }
    say!(
        "{location}: {} layers, {} files scanned, {} finding(s)",
        r.layers_scanned,
        r.files_scanned,
        r.findings.len()
    );
    Ok(())
}

/// Write a report page whole or not at all (a temporary file in the same directory, renamed),
/// then say where it is on stderr.
pub fn write_report(path: &std::path::Path, page: &str, quiet: bool) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let fail = |operation: &str, e: std::io::Error| Error::io(path.display().to_string(), operation, e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail("creating the report next to it", e))?;
    tmp.write_all(page.as_bytes())
        .map_err(|e| fail("writing the report", e))?;
    // A temporary file is private (0600); a report is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o644);
        tmp.as_file()
            .set_permissions(mode)
            .map_err(|e| fail("making the report readable", e))?;
    }
    tmp.persist(path)
        .map_err(|e| fail("renaming the report into place", e.error))?;
    if !quiet {
        eprintln!("wrote {} ({})", path.display(), human(page.len() as u64));
    }
    Ok(())
}
