//! Markdown summaries: appended to the GitHub Actions job summary (`$GITHUB_STEP_SUMMARY`) by
//! `copy`, `prune` and `verify`, and printed by `inspect --format markdown`. Short tables: what
//! moved, sizes, hits, warnings.

use std::io::Write;
use std::path::PathBuf;

use bkcache_core::inspect::{Summary, VerifyReport};
use bkcache_core::lifecycle::{PruneReport, TagAction};
use bkcache_core::transfer::{CopyReport, Outcome};
use bkcache_core::LoadedCache;

use crate::output::human;

/// Warnings listed in a summary before the rest are counted only.
const MAX_WARNINGS: usize = 10;

/// The job summary file GitHub Actions gives each step.
pub struct JobSummary {
    path: PathBuf,
}

impl JobSummary {
    /// `$GITHUB_STEP_SUMMARY`, when set and not empty.
    pub fn from_env() -> Option<Self> {
        std::env::var_os("GITHUB_STEP_SUMMARY")
            .filter(|p| !p.is_empty())
            .map(|p| JobSummary { path: p.into() })
    }

    /// Append one block (GitHub renders the file as Markdown after the step).
    pub fn append(&self, markdown: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        writeln!(f, "{markdown}")
    }
}

/// Text safe inside a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn warnings(out: &mut String, list: &[String]) {
    if list.is_empty() {
        return;
    }
    out.push_str(&format!("\n**{} warning(s)**\n\n", list.len()));
    for w in list.iter().take(MAX_WARNINGS) {
        out.push_str(&format!("- {}\n", cell(w)));
    }
    if list.len() > MAX_WARNINGS {
        out.push_str(&format!("- … and {} more\n", list.len() - MAX_WARNINGS));
    }
}

/// `copy`: one row per target.
pub fn copy(r: &CopyReport) -> String {
    let mut out = format!(
        "### bkcache copy\n\n{} source(s) loaded.\n\n| target | status | records | layers | copied | already there (hits) | retries |\n|---|---|---:|---:|---:|---:|---:|\n",
        r.sources_loaded
    );
    for t in &r.targets {
        let status = match &t.outcome {
            Outcome::Committed => "committed".to_owned(),
            Outcome::Skipped(why) => format!("skipped: {why}"),
            Outcome::Failed(why) => format!("**failed**: {why}"),
            Outcome::IgnoredError(why) => format!("failed (ignored): {why}"),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} blobs, {} | {} blobs | {} |\n",
            cell(&t.target),
            cell(&status),
            t.records,
            t.layers,
            t.blobs_copied,
            human(t.bytes_copied),
            t.blobs_present,
            t.blob_retries
        ));
    }
    warnings(&mut out, &r.warnings);
    out
}

/// `copy --allow-empty` when no source had a cache yet.
pub fn copy_empty(reason: &str) -> String {
    format!(
        "### bkcache copy\n\nNo cache to copy yet (a first run); nothing was written.\n\n- {}\n",
        cell(reason)
    )
}

/// `verify`.
pub fn verify(location: &str, loaded: &LoadedCache, r: &VerifyReport) -> String {
    let verdict = if r.problems.is_empty() {
        "ok".to_owned()
    } else {
        format!("**{} problem(s)**", r.problems.len())
    };
    let mut out = format!(
        "### bkcache verify\n\n| cache | manifest | blobs checked | bytes read | result |\n|---|---|---:|---:|---|\n| `{}` | `{}` | {} | {} | {} |\n",
        cell(location),
        loaded.manifest.digest.short(),
        r.blobs_checked,
        human(r.bytes_read),
        verdict
    );
    let problems: Vec<String> = r
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.digest, p.problem))
        .collect();
    warnings(&mut out, &problems);
    warnings(&mut out, &loaded.warnings);
    out
}

/// `prune`: the selection, the tags, the blobs.
pub fn prune(r: &PruneReport) -> String {
    let s = &r.selection;
    let mut out = format!(
        "### bkcache prune{}\n\n| cache | results dropped | layers | blobs deleted | freed | too young to delete |\n|---|---:|---|---:|---:|---:|\n| `{}` | {} of {} | {} → {} | {} of {} | {} | {} |\n",
        if r.dry_run { " (dry run)" } else { "" },
        cell(&r.location),
        s.results_dropped,
        s.results_dropped + s.results_kept,
        human(s.layer_bytes_before),
        human(s.layer_bytes_after),
        r.blobs_deleted,
        r.blobs_listed,
        human(r.bytes_freed),
        r.blobs_too_young
    );
    if !r.tags.is_empty() {
        out.push_str("\n| tag | last written | action |\n|---|---|---|\n");
        for t in &r.tags {
            let action = match t.action {
                TagAction::Kept => "kept".to_owned(),
                TagAction::Rewritten => format!("rewritten ({})", t.reason),
                TagAction::Removed => format!("removed ({})", t.reason),
            };
            out.push_str(&format!(
                "| `{}`{} | {} | {} |\n",
                cell(&t.tag),
                if t.signed { " (signed)" } else { "" },
                t.written.as_deref().unwrap_or("unknown"),
                cell(&action)
            ));
        }
    }
    warnings(&mut out, &r.notes);
    out
}

/// `inspect --format markdown`.
pub fn inspect(s: &Summary) -> String {
    let mut out = format!(
        "### bkcache inspect\n\n| cache | format | records | results | layers | layer bytes | total |\n|---|---|---:|---:|---:|---:|---:|\n| `{}` | {} | {} | {} | {} | {} | {} |\n",
        cell(&s.location),
        s.format,
        s.records,
        s.results,
        s.layers.len(),
        human(s.layer_bytes),
        human(s.total_bytes)
    );
    let ages: Vec<_> = s.age.iter().filter(|a| a.results > 0 || a.layer_bytes > 0).collect();
    if !ages.is_empty() {
        out.push_str("\n| layer age | results | layer bytes |\n|---|---:|---:|\n");
        for a in ages {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                a.bucket,
                a.results,
                human(a.layer_bytes)
            ));
        }
    }
    if !s.parts.is_empty() {
        out.push_str("\n| part | scope | signed | records | layers | layer bytes |\n|---|---|---|---:|---:|---:|\n");
        for p in &s.parts {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} | {} |\n",
                cell(&p.name),
                cell(&p.scope),
                if p.signed { "yes" } else { "no" },
                p.records,
                p.layers,
                human(p.layer_bytes)
            ));
        }
    }
    warnings(&mut out, &s.warnings);
    out
}
