//! The command line (clap derive). Options are listed in the order a user reaches for them: what
//! to act on, the policy, safety switches, tuning, then output.

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "BuildKit build caches on every backend (local, registry, inline, s3, azblob, gha): \
copy, inspect, verify, scan, prune and diff them; backends lists the types and attributes; \
completions and man print shell completions and man pages";

const AFTER_HELP: &str = "\
A SPEC is a buildx --cache-from / --cache-to string, e.g. type=local,src=DIR or type=s3,bucket=B,region=R,name=main.
Every type and its attributes: bkcache backends

Exit codes: 0 done; 1 failed; 2 bad command line or cache option; 3 verify/scan found problems;
4 no cache at the location (a first run; copy --allow-empty makes it 0); 5 prune refused to empty a cache;
6 credentials refused or without the permission asked for.";

const COPY_HELP: &str = "\
Examples:
  # Before the build: restore main's cache from S3 into a local directory (a first run, with no
  # cache yet, exits 0 with a warning because of --allow-empty)
  bkcache copy --from type=s3,bucket=ci-cache,region=eu-west-1,name=main \\
               --to type=local,dest=/tmp/bk-cache --allow-empty

  # After the build, inside a GitHub Actions job: export it to the Actions cache
  bkcache copy --from type=local,src=/tmp/bk-cache --to type=gha,scope=main,mode=max

  # Merge two branches' registry caches into one
  bkcache copy --from ghcr.io/org/app:cache-main --from ghcr.io/org/app:cache-pr-7 \\
               --to type=registry,ref=ghcr.io/org/app:cache-merged,mode=max

Every type and its attributes: bkcache backends";

const PRUNE_HELP: &str = "\
--keep-duration ages each tag by when it was last written, by the backend's clock:
  local   the tag's manifest blob mtime (or index.json's when it holds one tag)
  s3      the cache config object's LastModified (under manifests_prefix)
  azblob  the cache config blob's Last-Modified
  gha     the creation time of the scope's newest index entry (needs ghtoken=)
  registry cannot tell: use --age-by layer-created there
A tag not written for that long is removed whole; beside --keep-duration, --keep-tags names
the tags kept however old (alone, it keeps only those tags).
--age-by layer-created instead drops each result whose layers BuildKit created longer ago;
BuildKit keeps a reused layer's creation time, so that empties caches that are in daily use.

A prune that would leave a tag, or the whole location, with no cache is refused (exit 5,
nothing changed) unless --allow-empty. --dry-run prints exactly what the real run does.

Examples:
  bkcache prune type=local,src=/tmp/bk-cache --keep-storage 2GB --min-age 0s --dry-run
  bkcache prune type=s3,bucket=ci-cache,region=eu-west-1,name=main --keep-duration 14d --keep-tags main";

const SERVE_HELP: &str = "\
Each --store is a --cache-to spec whose values may hold {repo} and {tag}, filled from the
request /v2/<repo>/manifests/<tag>. {tag} may stand only where the type names its cache
(local tag=, s3/azblob name=, gha scope=, registry ref's tag): blob requests carry no tag.
Names outside the distribution grammar are refused (NAME_INVALID, TAG_INVALID), so a
placeholder can never climb out of a path. Several --store: a push commits to every one;
a pull reads the first that has the cache. What serve writes is the store's native layout:
BuildKit's own type=local/s3/azblob/gha importer reads it.

A manifest read leaves out results whose blobs are gone (an evicted blob is a cache miss,
not a failed build). Listening anywhere but loopback needs --htpasswd or --token-file.

Example (a CI job, in front of S3, with a credential scan and a size cap):
  bkcache serve --listen 127.0.0.1:5000 \\
      --store 'type=s3,bucket=ci-cache,region=eu-west-1,prefix={repo}/,name={tag}' \\
      --scan --keep-storage 10GB &
  docker buildx build \\
      --cache-from type=registry,ref=localhost:5000/app:main \\
      --cache-to type=registry,ref=localhost:5000/app:main,mode=max .
  (buildx's docker-container driver needs the endpoint declared as http in its buildkitd.toml,
   or TLS: --tls-cert/--tls-key.)";

#[derive(Parser, Debug)]
#[command(name = "bkcache", version, about = ABOUT, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// Print only errors (no progress, no warnings).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More logging on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy the merged cache of every --from to every --to (only missing blobs move).
    Copy(CopyArgs),
    /// Show a cache: format, manifest, config, layers, records, sizes, signatures.
    Inspect(InspectArgs),
    /// Check that every blob of a cache is present with the right digest and size.
    Verify(VerifyArgs),
    /// Read every layer (streamed, never unpacked) and report files that look like credentials.
    Scan(ScanArgs),
    /// Remove stale tags, fit a size, keep only some tags; then delete blobs no manifest references.
    #[command(after_help = PRUNE_HELP)]
    Prune(PruneArgs),
    /// Compare two caches: shared and unique layers, bytes and records.
    Diff(DiffArgs),
    /// Be a registry endpoint in front of stores: BuildKit's type=registry reads and writes them live.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
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
#[command(after_help = COPY_HELP)]
pub struct CopyArgs {
    /// Source cache, as buildx --cache-from (e.g. type=local,src=DIR). Repeatable.
    #[arg(long = "from", value_name = "SPEC", required = true)]
    pub from: Vec<String>,
    /// Target cache, as buildx --cache-to (e.g. type=local,dest=DIR,mode=max). Repeatable.
    #[arg(long = "to", value_name = "SPEC", required = true)]
    pub to: Vec<String>,
    /// When no --from has a cache yet (a first run), warn and exit 0 instead of exit 4.
    #[arg(long)]
    pub allow_empty: bool,
    /// Check every blob at each --to even when its manifest is already byte-identical to this
    /// cache's (a registry keeps the blobs its tags reference: by default that re-export is one
    /// manifest HEAD).
    #[arg(long)]
    pub recheck_target: bool,
    /// Scan every source's layers for credentials first, and refuse to copy if any is found.
    #[arg(long)]
    pub scan: bool,
    /// Blobs transferred at once per target (existence checks run 4x as wide).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// Directory for layers being recompressed (force-compression); default: the temp dir.
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<std::path::PathBuf>,
    /// Refuse to recompress (or, with --scan, to scan) a layer whose uncompressed size exceeds
    /// this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = bkcache_core::compression::DEFAULT_MAX_UNCOMPRESSED)]
    pub max_uncompressed: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How `inspect` prints.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned text for a terminal.
    Text,
    /// The stable JSON (same as --json).
    Json,
    /// A Markdown summary (as written to a GitHub Actions job summary).
    Markdown,
    /// Graphviz DOT of the record graph (`| dot -Tsvg > cache.svg`).
    Dot,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The cache, as buildx --cache-from.
    pub spec: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print JSON on stdout (same as --format json).
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML report (record graph, layer sizes and ages) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The cache, as buildx --cache-from.
    pub spec: String,
    /// Blobs read at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// The cache, as buildx --cache-from.
    pub spec: String,
    /// Stop with an error at a layer whose uncompressed tar exceeds this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = bkcache_core::compression::DEFAULT_MAX_UNCOMPRESSED)]
    pub max_uncompressed: u64,
    /// Layers read at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The clock `prune --keep-duration` reads.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgeBy {
    /// When each tag/name/scope was last written (the backend's clock): stale tags go whole.
    LastWrite,
    /// Each result's layer creation time (BuildKit's createdAt): old results go.
    LayerCreated,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The cache, as buildx --cache-from (its tag/name is rewritten when results are dropped).
    pub spec: String,
    /// Remove tags (names, scopes) not written for this long (e.g. 7d, 36h); see --age-by.
    #[arg(long, value_name = "DURATION")]
    pub keep_duration: Option<String>,
    /// What --keep-duration ages.
    #[arg(long, value_enum, default_value_t = AgeBy::LastWrite)]
    pub age_by: AgeBy,
    /// Drop the oldest results of this tag until its layers fit (e.g. 5GB, 500MiB).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Keep only these tags (comma separated) at the location; remove the others. With
    /// --keep-duration: keep these however old.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub keep_tags: Option<Vec<String>>,
    /// Allow a prune that leaves a tag, or the whole location, with no cache (refused otherwise).
    #[arg(long)]
    pub allow_empty: bool,
    /// Keep unreferenced blobs younger than this: a concurrent export may be about to use them.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub min_age: String,
    /// The time taken as now (RFC 3339), for tests of stale tags on servers whose clock
    /// cannot be moved.
    #[arg(long, value_name = "TIME", hide = true)]
    pub now: Option<String>,
    /// Report exactly what the real run would do (same report, dry_run: true), change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Cache A, as buildx --cache-from.
    pub a: String,
    /// Cache B, as buildx --cache-from.
    pub b: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page of both caches (shared, only-A, only-B) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct JsonArg {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
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

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (loopback unless --htpasswd or --token-file).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    pub listen: std::net::SocketAddr,
    /// A store, as buildx --cache-to with {repo} and {tag} placeholders. Repeatable (fan-out).
    #[arg(long = "store", value_name = "SPEC", required = true)]
    pub stores: Vec<String>,
    /// Allow a --store without {repo}/{tag}: every repository and tag is then one cache.
    #[arg(long)]
    pub one_cache: bool,
    /// Scan the new layers of each pushed cache for credentials; refuse the push on a finding.
    #[arg(long)]
    pub scan: bool,
    /// After each commit, drop the oldest results of that tag until its layers fit (e.g. 10GB).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// After each commit, remove the location's tags not written for this long (e.g. 14d).
    #[arg(long, value_name = "DURATION")]
    pub keep_duration: Option<String>,
    /// Require Basic authentication against this htpasswd file (bcrypt: htpasswd -B).
    #[arg(long, value_name = "FILE", conflicts_with = "token_file")]
    pub htpasswd: Option<String>,
    /// Require one of these tokens (one a line), as a Bearer token or as the Basic password.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<String>,
    /// Serve TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<String>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<String>,
    /// Log one JSON object a line on stderr instead of words.
    #[arg(long)]
    pub json_log: bool,
    /// Where chunked uploads and fan-out uploads spool; default: the temp dir.
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<std::path::PathBuf>,
    /// What all spooled uploads (chunked, fan-out) may hold on disk at once.
    #[arg(long, value_name = "SIZE", default_value = "16GiB")]
    pub scratch_limit: String,
    /// Refuse blobs larger than this (e.g. 64GiB).
    #[arg(long, value_name = "SIZE", default_value = "64GiB")]
    pub max_blob_size: String,
    /// Uploads streaming at once; more get 429 and retry.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_uploads: usize,
    /// An upload session idle this long expires.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub upload_idle: String,
    /// After SIGTERM, how long open requests may run on before they are aborted.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub shutdown_grace: String,
    /// Refuse to scan a layer whose uncompressed size exceeds this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = bkcache_core::compression::DEFAULT_MAX_UNCOMPRESSED)]
    pub max_uncompressed: u64,
}
