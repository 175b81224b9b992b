//! `bkcache serve`: parse the flags into `bkcache_serve::ServeOptions`, bind, run until SIGTERM
//! or Ctrl-C. Everything else lives in the bkcache-serve crate.

use std::process::ExitCode;
use std::sync::Arc;

use bkcache_core::lifecycle;
use bkcache_core::{CacheSpec, Env};
use bkcache_serve::{Auth, Limits, ServeError, ServeOptions, Server};

use crate::args::ServeArgs;
use crate::EXIT_USAGE;

fn options(args: ServeArgs) -> Result<ServeOptions, ServeError> {
    let mut o = ServeOptions::new(args.listen);
    o.stores = CacheSpec::parse_all(&args.stores)?;
    o.one_cache = args.one_cache;
    o.scan = args.scan;
    o.max_uncompressed = args.max_uncompressed;
    if args.keep_storage.is_some() || args.keep_duration.is_some() {
        o.prune = Some(lifecycle::PrunePolicy {
            keep_storage: args.keep_storage.as_deref().map(lifecycle::parse_size).transpose()?,
            keep_duration: args
                .keep_duration
                .as_deref()
                .map(lifecycle::parse_duration)
                .transpose()?,
            ..Default::default()
        });
    }
    o.auth = match (&args.htpasswd, &args.token_file) {
        (Some(f), _) => Some(Auth::htpasswd(f)?),
        (None, Some(f)) => Some(Auth::tokens(f)?),
        (None, None) => None,
    };
    o.tls = args.tls_cert.zip(args.tls_key);
    o.json_log = args.json_log;
    if let Some(d) = args.scratch_dir {
        o.scratch_dir = d;
    }
    o.limits = Limits {
        max_blob: lifecycle::parse_size(&args.max_blob_size)?,
        max_uploads: args.max_uploads,
        upload_idle: lifecycle::parse_duration(&args.upload_idle)?,
        shutdown_grace: lifecycle::parse_duration(&args.shutdown_grace)?,
        max_scratch: lifecycle::parse_size(&args.scratch_limit)?,
        ..Limits::default()
    };
    Ok(o)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn exit_code(e: &ServeError) -> u8 {
    match e {
        ServeError::Config(_) | ServeError::Unauthenticated { .. } | ServeError::File { .. } => EXIT_USAGE,
        ServeError::Core(e) => crate::exit_code(e),
        _ => 1,
    }
}

/// Run the server; the exit code.
pub async fn run(args: ServeArgs, _quiet: bool) -> ExitCode {
    let result = async {
        let options = options(args)?;
        let server = Server::bind(options, Arc::new(crate::backends()), Env::from_process()).await?;
        server.announce();
        server.run(shutdown_signal()).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", bkcache_core::error::chain_text(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}
