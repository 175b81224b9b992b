//! `bkcache`: copy, inspect and verify BuildKit build caches on every backend BuildKit knows.
//!
//! This binary only parses, composes and prints: formats and backends live in the library
//! crates (`bkcache-core`, `bkcache-local`, …), composed here through a registry of factories
//! keyed by `type=`.
//!
//! Exit codes: 0 done; 1 failed (I/O, server, corrupt data, a target failed); 2 bad command
//! line or cache option; 3 `verify` found problems.
//!
//! ```text
//! bkcache copy --from type=local,src=ci-cache --to type=local,dest=/tmp/copy,mode=max
//! bkcache inspect type=local,src=/tmp/copy --json
//! ```

/// `println!` that ends the process quietly when the reader closed the pipe
/// (`bkcache inspect … | head`) instead of panicking, as the JSON output does.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::output::stdout_failed(e);
        }
    }};
}

mod dist;
mod output;
mod progress;
mod scratch;

use std::process::ExitCode;
use std::sync::Arc;

use bkcache_core::synthetic::{generate, SyntheticSpec};
use bkcache_core::transfer::{self, CopyOptions, Source, Target};
use bkcache_core::{inspect, lifecycle, scan, Backends, CacheSpec, CacheStore, Env, Error, LoadedCache};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Exit code: the command line or a cache option is wrong.
const EXIT_USAGE: u8 = 2;
/// Exit code: verify or scan found problems.
const EXIT_PROBLEMS: u8 = 3;

#[derive(Parser, Debug)]
#[command(name = "bkcache", version, about = "Copy, inspect and verify BuildKit build caches", long_about = None)]
struct Cli {
    /// Print only errors (no progress, no warnings).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More logging on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Copy the merged cache of every --from to every --to (only missing blobs move).
    Copy(CopyArgs),
    /// Show a cache: format, manifest, config, layers, records, sizes.
    Inspect(InspectArgs),
    /// Check that every blob of a cache is present with the right digest and size.
    Verify(VerifyArgs),
    /// Read every layer (streamed, never unpacked) and report files that look like credentials.
    Scan(ScanArgs),
    /// Drop old results, fit a size, remove other tags; then delete blobs no manifest references.
    Prune(PruneArgs),
    /// Compare two caches: shared and unique layers, bytes and records.
    Diff(DiffArgs),
    /// List the cache types and their attributes.
    Backends(JsonArg),
    /// Print a shell completion script (e.g. `bkcache completions bash > /etc/bash_completion.d/bkcache`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from this command line.
    Man {
        /// Write bkcache.1 and one bkcache-COMMAND.1 per command into DIR instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Developer tools (benchmarks, tests).
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Args, Debug)]
struct CopyArgs {
    /// Source cache, as buildx --cache-from (e.g. type=local,src=DIR). Repeatable.
    #[arg(long = "from", value_name = "SPEC", required = true)]
    from: Vec<String>,
    /// Target cache, as buildx --cache-to (e.g. type=local,dest=DIR,mode=max). Repeatable.
    #[arg(long = "to", value_name = "SPEC", required = true)]
    to: Vec<String>,
    /// Blobs transferred at once per target (existence checks run 4x as wide).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
    /// Directory for layers being recompressed (force-compression); default: the temp dir.
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<std::path::PathBuf>,
    /// Scan every source's layers for credentials first, and refuse to copy if any is found.
    #[arg(long)]
    scan: bool,
    /// Refuse to recompress (or, with --scan, to scan) a layer whose uncompressed size exceeds
    /// this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = bkcache_core::compression::DEFAULT_MAX_UNCOMPRESSED)]
    max_uncompressed: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// The cache, as buildx --cache-from.
    spec: String,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The cache, as buildx --cache-from.
    spec: String,
    /// Blobs read at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ScanArgs {
    /// The cache, as buildx --cache-from.
    spec: String,
    /// Layers read at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
    /// Stop with an error at a layer whose uncompressed tar exceeds this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = bkcache_core::compression::DEFAULT_MAX_UNCOMPRESSED)]
    max_uncompressed: u64,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PruneArgs {
    /// The cache, as buildx --cache-from (its tag/name is rewritten when results are dropped).
    spec: String,
    /// Drop results created longer ago than this (e.g. 7d, 36h).
    #[arg(long, value_name = "DURATION")]
    keep_duration: Option<String>,
    /// Then drop the oldest results until the layers fit (e.g. 5GB, 500MiB).
    #[arg(long, value_name = "SIZE")]
    keep_storage: Option<String>,
    /// Keep only these tags (comma separated) at the location; remove the others.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    keep_tags: Option<Vec<String>>,
    /// Keep unreferenced blobs younger than this: a concurrent export may be about to use them.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    min_age: String,
    /// Report what would be dropped and deleted, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct DiffArgs {
    /// Cache A, as buildx --cache-from.
    a: String,
    /// Cache B, as buildx --cache-from.
    b: String,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct JsonArg {
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum DebugCommand {
    /// Write a synthetic cache (incompressible layers in one chain) to a target.
    Generate {
        /// Target, as buildx --cache-to.
        #[arg(long = "to", value_name = "SPEC")]
        to: String,
        /// Number of layer blobs.
        #[arg(long, default_value_t = 200)]
        blobs: usize,
        /// Total layer bytes.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        /// Content seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Text-like, compressible content (for compression benchmarks).
        #[arg(long)]
        compressible: bool,
        /// A real build's shape: log-uniform blob sizes, chains of at most 16 layers.
        #[arg(long)]
        realistic: bool,
    },
}

/// Every backend this binary knows, keyed by `type=`.
fn backends() -> Backends {
    Backends::new()
        .with(bkcache_local::LocalFactory)
        .with(bkcache_registry::RegistryFactory)
        .with(bkcache_registry::InlineFactory)
        .with(bkcache_s3::S3Factory)
        .with(bkcache_azblob::AzblobFactory)
        .with(bkcache_gha::GhaFactory)
}

/// The command line, with `--version` listing every crate's version.
fn cli_command() -> clap::Command {
    Cli::command().long_version(dist::long_version())
}

/// glibc gives each thread that allocates an arena of its own (up to 8 per core); blob chunks
/// allocated on the reader threads and freed on the runtime's workers then leave every arena
/// holding freed memory. One arena keeps the peak RSS within budget at the same speed: s3 export
/// of 1 GiB / 600 blobs to moto, 3 runs each: 83-86 MiB with the default, 58-59 MiB with 2
/// arenas, 44.7 MiB with 1, 7.0-7.4 s in every case. (Set before any thread starts;
/// `MALLOC_ARENA_MAX` in the environment still wins, as glibc reads it first.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread
        // exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::from_arg_matches(&cli_command().get_matches()).unwrap_or_else(|e| e.exit());
    init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BKCACHE_LOG")
        // rustls-platform-verifier logs certificate failures at ERROR; the error we return says it.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},rustls_platform_verifier=off")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

fn error_chain(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Spec { .. }
        | Error::UnknownType { .. }
        | Error::UnknownAttribute { .. }
        | Error::InvalidValue { .. }
        | Error::MissingAttribute { .. }
        | Error::InvalidCombination { .. } => EXIT_USAGE,
        _ => 1,
    }
}

fn parse_one(input: &str) -> Result<CacheSpec, Error> {
    let mut specs = CacheSpec::parse(input)?;
    match specs.len() {
        1 => Ok(specs.remove(0)),
        n => Err(Error::Spec {
            input: input.into(),
            reason: format!("expected exactly one cache, got {n}"),
        }),
    }
}

/// Open a `--from`-style spec and load its cache; no cache there is an error.
async fn open_loaded(backends: &Backends, env: &Env, input: &str) -> Result<(Box<dyn CacheStore>, LoadedCache), Error> {
    let spec = parse_one(input)?;
    let store = backends.open_source(&spec, env)?;
    let loaded = store.load().await?.ok_or_else(|| Error::CacheNotFound {
        location: store.location(),
        hint: String::new(),
    })?;
    Ok((store, loaded))
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let backends = backends();
    let env = Env::from_process();
    let quiet = cli.quiet;
    match cli.command {
        Command::Copy(args) => {
            let mut sources = Vec::new();
            for spec in CacheSpec::parse_all(&args.from)? {
                let store = backends.open_source(&spec, &env)?;
                sources.push(Source {
                    label: spec.to_string(),
                    store,
                });
            }
            if args.scan {
                let mut found = 0;
                for src in &sources {
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
                    return Ok(ExitCode::from(EXIT_PROBLEMS));
                }
            }
            let mut targets = Vec::new();
            for spec in CacheSpec::parse_all(&args.to)? {
                let t = backends.open_target(&spec, &env)?;
                for w in &t.warnings {
                    output::warn(quiet, &format!("{spec}: {w}"));
                }
                targets.push(Target {
                    label: spec.to_string(),
                    store: t.store,
                    options: t.options,
                });
            }
            let progress = Arc::new(progress::Bars::new(quiet));
            let options = CopyOptions {
                parallelism: args.parallelism as usize,
                scratch: Some(Arc::new(scratch::TempScratch {
                    dir: args.scratch_dir.unwrap_or_else(std::env::temp_dir),
                })),
                max_uncompressed: args.max_uncompressed,
            };
            let report = transfer::copy(&sources, &targets, &options, progress.clone()).await?;
            progress.finish();
            output::copy_report(&report, args.json, quiet)?;
            Ok(if report.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Inspect(args) => {
            let (store, loaded) = open_loaded(&backends, &env, &args.spec).await?;
            let summary = inspect::summarize(&store.location(), &loaded);
            output::summary(&summary, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => {
            let (store, loaded) = open_loaded(&backends, &env, &args.spec).await?;
            let report = inspect::verify(store.as_ref(), &loaded, args.parallelism as usize).await;
            output::verify_report(&store.location(), &loaded, &report, args.json, quiet)?;
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_PROBLEMS)
            })
        }
        Command::Scan(args) => {
            let (store, loaded) = open_loaded(&backends, &env, &args.spec).await?;
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
        Command::Prune(args) => {
            let spec = parse_one(&args.spec)?;
            let store = backends.open_source(&spec, &env)?;
            let policy = lifecycle::PrunePolicy {
                keep_duration: args
                    .keep_duration
                    .as_deref()
                    .map(lifecycle::parse_duration)
                    .transpose()?,
                keep_storage: args.keep_storage.as_deref().map(lifecycle::parse_size).transpose()?,
                now: None,
                keep_tags: args.keep_tags,
            };
            let min_age = lifecycle::parse_duration(&args.min_age)?;
            let report = lifecycle::prune(store.as_ref(), &policy, min_age, args.dry_run).await?;
            output::prune_report(&report, args.json, quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff(args) => {
            let mut caches = Vec::new();
            for s in [&args.a, &args.b] {
                caches.push(open_loaded(&backends, &env, s).await?.1.cache);
            }
            let report = lifecycle::diff(&caches[0], &caches[1]);
            output::diff_report(&report, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backends(args) => {
            output::backends(&backends, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            dist::completions(shell, &mut cli_command());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir } => {
            dist::man(cli_command(), out_dir.as_deref()).map_err(|source| Error::Io {
                location: out_dir.map_or("stdout".into(), |d| d.display().to_string()),
                operation: "writing the man page".into(),
                source,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Debug {
            command:
                DebugCommand::Generate {
                    to,
                    blobs,
                    bytes,
                    seed,
                    compressible,
                    realistic,
                },
        } => {
            let spec = parse_one(&to)?;
            let t = backends.open_target(&spec, &env)?;
            let committed = generate(
                t.store.as_ref(),
                &SyntheticSpec {
                    blobs,
                    total_bytes: bytes,
                    seed,
                    compressible,
                    realistic,
                },
                &t.options,
            )
            .await?;
            if let Some(m) = committed.manifest {
                say!("{}", m.digest);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
