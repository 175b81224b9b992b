//! One function per command: open the stores, call the library, print, pick the exit code.

use std::process::ExitCode;
use std::sync::Arc;

use bkcache_core::transfer::{self, CopyOptions, Source, Target};
use bkcache_core::{inspect, lifecycle, scan, Backends, CacheSpec, CacheStore, Env, Error, LoadedCache};

use crate::args::{self, CopyArgs, DiffArgs, Format, InspectArgs, PruneArgs, ScanArgs, VerifyArgs};
use crate::summary::JobSummary;
use crate::{output, progress, scratch, summary, EXIT_PROBLEMS};

/// What every command gets.
pub struct Ctx<'a> {
    pub backends: &'a Backends,
    pub env: &'a Env,
    pub quiet: bool,
    /// `$GITHUB_STEP_SUMMARY`, when set: copy, prune and verify append a table to it.
    pub summary: Option<JobSummary>,
}

impl Ctx<'_> {
    fn append_summary(&self, markdown: &str) {
        if let Some(s) = &self.summary {
            if let Err(e) = s.append(markdown) {
                output::warn(self.quiet, &format!("cannot write the GitHub Actions job summary: {e}"));
            }
        }
    }
}

/// A bare word that names a directory here is a path the user meant as a local cache, not an
/// image reference (which would become a docker.io lookup).
fn refuse_bare_directory(input: &str) -> Result<(), Error> {
    let word = input.trim();
    if !word.contains('=') && !word.contains(',') && std::path::Path::new(word).is_dir() {
        return Err(Error::Spec {
            input: word.into(),
            reason: format!(
                "{word:?} is a directory here, not an image reference; did you mean type=local,src={word} (to read) or type=local,dest={word} (to write)?"
            ),
        });
    }
    Ok(())
}

/// Parse a spec that must name exactly one cache.
pub fn parse_one(input: &str) -> Result<CacheSpec, Error> {
    refuse_bare_directory(input)?;
    let mut specs = CacheSpec::parse(input)?;
    match specs.len() {
        1 => Ok(specs.remove(0)),
        n => Err(Error::Spec {
            input: input.into(),
            reason: format!("expected exactly one cache, got {n}"),
        }),
    }
}

fn parse_all(inputs: &[String]) -> Result<Vec<CacheSpec>, Error> {
    for i in inputs {
        refuse_bare_directory(i)?;
    }
    CacheSpec::parse_all(inputs)
}

/// Open a `--from`-style spec and load its cache; no cache there is [`Error::CacheNotFound`].
async fn open_loaded(ctx: &Ctx<'_>, input: &str) -> Result<(Box<dyn CacheStore>, LoadedCache), Error> {
    let spec = parse_one(input)?;
    let store = ctx.backends.open_source(&spec, ctx.env)?;
    let loaded = store.load().await?.ok_or_else(|| Error::CacheNotFound {
        location: store.location(),
        hint: String::new(),
    })?;
    Ok((store, loaded))
}

pub async fn copy(ctx: &Ctx<'_>, args: CopyArgs) -> Result<ExitCode, Error> {
    let mut sources = Vec::new();
    for spec in parse_all(&args.from)? {
        let store = ctx.backends.open_source(&spec, ctx.env)?;
        sources.push(Source {
            label: spec.to_string(),
            store,
        });
    }
    if args.scan && scan_sources(&sources, &args).await? > 0 {
        return Ok(ExitCode::from(EXIT_PROBLEMS));
    }
    let mut targets = Vec::new();
    for spec in parse_all(&args.to)? {
        let t = ctx.backends.open_target(&spec, ctx.env)?;
        for w in &t.warnings {
            output::warn(ctx.quiet, &format!("{spec}: {w}"));
        }
        targets.push(Target {
            label: spec.to_string(),
            store: t.store,
            options: t.options,
        });
    }
    let progress = Arc::new(progress::Bars::new(ctx.quiet));
    let options = CopyOptions {
        parallelism: args.parallelism as usize,
        scratch: Some(Arc::new(scratch::TempScratch {
            dir: args.scratch_dir.unwrap_or_else(std::env::temp_dir),
        })),
        max_uncompressed: args.max_uncompressed,
        recheck_target: args.recheck_target,
    };
    let report = match transfer::copy(&sources, &targets, &options, progress.clone()).await {
        Ok(r) => r,
        Err(Error::NoSourceCache { reason }) if args.allow_empty => {
            progress.finish();
            output::warn(
                ctx.quiet,
                &format!("no cache to copy yet ({reason}); nothing was written (--allow-empty)"),
            );
            ctx.append_summary(&summary::copy_empty(&reason));
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            progress.finish();
            return Err(e);
        }
    };
    progress.finish();
    output::copy_report(&report, args.json, ctx.quiet)?;
    ctx.append_summary(&summary::copy(&report));
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `copy --scan`: scan every source that has a cache; the number of findings.
async fn scan_sources(sources: &[Source], args: &CopyArgs) -> Result<usize, Error> {
    let mut found = 0;
    for src in sources {
        let Some(loaded) = src.store.load().await? else {
            continue;
        };
        let report = scan::scan(
            src.store.as_ref(),
            &loaded,
            args.parallelism as usize,
            args.max_uncompressed,
        )
        .await?;
        output::scan_report(&src.store.location(), &report, false)?;
        found += report.findings.len();
    }
    if found > 0 {
        eprintln!("error: --scan found {found} possible secret(s) in the sources; nothing was copied");
    }
    Ok(found)
}

pub async fn inspect(ctx: &Ctx<'_>, args: InspectArgs) -> Result<ExitCode, Error> {
    let (store, loaded) = open_loaded(ctx, &args.spec).await?;
    let summary = inspect::summarize(&store.location(), &loaded);
    if let Some(path) = &args.html {
        let page = bkcache_report::inspect_html(&summary, &loaded.cache, &Default::default());
        output::write_report(path, &page, ctx.quiet)?;
    }
    match (args.json, args.format) {
        (true, _) | (false, Format::Json) => output::summary(&summary, true)?,
        (false, Format::Text) => output::summary(&summary, false)?,
        (false, Format::Dot) => say!("{}", bkcache_report::dot(&loaded.cache)),
        (false, Format::Markdown) => {
            say!("{}", summary::inspect(&summary));
            for w in &summary.warnings {
                output::warn(ctx.quiet, w);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(ctx: &Ctx<'_>, args: VerifyArgs) -> Result<ExitCode, Error> {
    let (store, loaded) = open_loaded(ctx, &args.spec).await?;
    let report = inspect::verify(store.as_ref(), &loaded, args.parallelism as usize).await;
    output::verify_report(&store.location(), &loaded, &report, args.json, ctx.quiet)?;
    ctx.append_summary(&summary::verify(&store.location(), &loaded, &report));
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEMS)
    })
}

pub async fn scan(ctx: &Ctx<'_>, args: ScanArgs) -> Result<ExitCode, Error> {
    let (store, loaded) = open_loaded(ctx, &args.spec).await?;
    let report = scan::scan(
        store.as_ref(),
        &loaded,
        args.parallelism as usize,
        args.max_uncompressed,
    )
    .await?;
    output::scan_report(&store.location(), &report, args.json)?;
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEMS)
    })
}

pub async fn prune(ctx: &Ctx<'_>, args: PruneArgs) -> Result<ExitCode, Error> {
    let spec = parse_one(&args.spec)?;
    let store = ctx.backends.open_source(&spec, ctx.env)?;
    let policy = lifecycle::PrunePolicy {
        keep_duration: args
            .keep_duration
            .as_deref()
            .map(lifecycle::parse_duration)
            .transpose()?,
        age_by: match args.age_by {
            args::AgeBy::LastWrite => lifecycle::AgeBy::LastWrite,
            args::AgeBy::LayerCreated => lifecycle::AgeBy::LayerCreated,
        },
        allow_empty: args.allow_empty,
        keep_storage: args.keep_storage.as_deref().map(lifecycle::parse_size).transpose()?,
        now: args
            .now
            .as_deref()
            .map(str::parse::<bkcache_core::GoTime>)
            .transpose()?,
        keep_tags: args.keep_tags,
    };
    let min_age = lifecycle::parse_duration(&args.min_age)?;
    let report = lifecycle::prune(store.as_ref(), &policy, min_age, args.dry_run).await?;
    output::prune_report(&report, args.json, ctx.quiet)?;
    ctx.append_summary(&summary::prune(&report));
    Ok(ExitCode::SUCCESS)
}

pub async fn diff(ctx: &Ctx<'_>, args: DiffArgs) -> Result<ExitCode, Error> {
    let mut caches = Vec::new();
    for s in [&args.a, &args.b] {
        let (store, loaded) = open_loaded(ctx, s).await?;
        caches.push((store.location(), loaded.cache));
    }
    let report = lifecycle::diff(&caches[0].1, &caches[1].1);
    if let Some(path) = &args.html {
        let [(la, a), (lb, b)] = [&caches[0], &caches[1]];
        let page = bkcache_report::diff_html((la, a), (lb, b), &report, &Default::default());
        output::write_report(path, &page, ctx.quiet)?;
    }
    output::diff_report(&report, args.json)?;
    Ok(ExitCode::SUCCESS)
}
