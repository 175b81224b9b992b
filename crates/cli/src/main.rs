//! `bkcache`: copy, inspect and verify BuildKit build caches on every backend BuildKit knows.
//!
//! This binary only parses, composes and prints: formats and backends live in the library
//! crates (`bkcache-core`, `bkcache-local`, …), composed here through a registry of factories
//! keyed by `type=`.
//!
//! Exit codes: 0 done; 1 failed (I/O, server, corrupt data, a target failed); 2 bad command
//! line or cache option; 3 `verify` or `scan` found problems; 4 no cache at the location (a
//! first run; `copy --allow-empty` makes it 0); 5 `prune` refused to leave a tag or the
//! location with no cache; 6 credentials refused or without the permission asked for.
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

mod args;
mod commands;
mod dist;
mod output;
mod progress;
mod scratch;
mod serve;
mod summary;

use std::process::ExitCode;

use bkcache_core::synthetic::{generate, SyntheticSpec};
use bkcache_core::{Backends, Env, Error};
use clap::{CommandFactory, FromArgMatches};

use args::{Cli, Command, DebugCommand};

/// Exit code: the command line or a cache option is wrong.
const EXIT_USAGE: u8 = 2;
/// Exit code: verify or scan found problems.
const EXIT_PROBLEMS: u8 = 3;
/// Exit code: no cache at the location (every `--from` of a copy, or the one cache asked for).
const EXIT_NO_CACHE: u8 = 4;
/// Exit code: prune refused a plan that would leave a tag or the location with no cache.
const EXIT_REFUSED: u8 = 5;
/// Exit code: credentials refused, missing, or without the permission asked for.
const EXIT_DENIED: u8 = 6;

/// Every backend this binary knows, keyed by `type=`.
pub(crate) fn backends() -> Backends {
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
            eprintln!("error: {}", e.chain());
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

pub(crate) fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Spec { .. }
        | Error::UnknownType { .. }
        | Error::UnknownAttribute { .. }
        | Error::InvalidValue { .. }
        | Error::MissingAttribute { .. }
        | Error::InvalidCombination { .. } => EXIT_USAGE,
        Error::NoSourceCache { .. } | Error::CacheNotFound { .. } => EXIT_NO_CACHE,
        Error::WouldEmpty { .. } => EXIT_REFUSED,
        Error::Denied { .. } => EXIT_DENIED,
        _ => 1,
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let backends = backends();
    let env = Env::from_process();
    let ctx = commands::Ctx {
        backends: &backends,
        env: &env,
        quiet: cli.quiet,
        summary: summary::JobSummary::from_env(),
    };
    match cli.command {
        Command::Copy(args) => commands::copy(&ctx, args).await,
        Command::Inspect(args) => commands::inspect(&ctx, args).await,
        Command::Verify(args) => commands::verify(&ctx, args).await,
        Command::Scan(args) => commands::scan(&ctx, args).await,
        Command::Prune(args) => commands::prune(&ctx, args).await,
        Command::Diff(args) => commands::diff(&ctx, args).await,
        Command::Serve(args) => Ok(serve::run(args, cli.quiet).await),
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
            let spec = commands::parse_one(&to)?;
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
