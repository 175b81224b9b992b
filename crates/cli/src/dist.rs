//! Distribution helpers generated from the clap definition: shell completions, man pages and the
//! long `--version` listing every library crate's version.

use std::io::Write;
use std::path::Path;

use clap::Command;

/// The crates this binary is built from, with their versions (each library exports `VERSION`).
pub fn crate_versions() -> [(&'static str, &'static str); 8] {
    [
        ("bkcache-core", bkcache_core::VERSION),
        ("bkcache-local", bkcache_local::VERSION),
        ("bkcache-registry", bkcache_registry::VERSION),
        ("bkcache-s3", bkcache_s3::VERSION),
        ("bkcache-azblob", bkcache_azblob::VERSION),
        ("bkcache-gha", bkcache_gha::VERSION),
        ("bkcache-serve", bkcache_serve::VERSION),
        ("bkcache-report", bkcache_report::VERSION),
    ]
}

/// What `bkcache --version` prints after `bkcache `: this version, then one line per crate.
/// (Leaked: clap wants a `'static` string, and this runs once per process.)
pub fn long_version() -> &'static str {
    let mut s = env!("CARGO_PKG_VERSION").to_owned();
    for (name, version) in crate_versions() {
        s.push_str(&format!("\n{name} {version}"));
    }
    Box::leak(s.into_boxed_str())
}

/// Print the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell, cmd: &mut Command) {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, cmd, name, &mut std::io::stdout());
}

/// Print `bkcache.1` on stdout, or with `out_dir` write it and one `bkcache-COMMAND.1` per
/// visible subcommand there.
pub fn man(mut cmd: Command, out_dir: Option<&Path>) -> std::io::Result<()> {
    cmd.build();
    let Some(dir) = out_dir else {
        let mut out = std::io::stdout().lock();
        let written = clap_mangen::Man::new(cmd).render(&mut out).and_then(|()| out.flush());
        // `bkcache man | head` is fine.
        return written.or_else(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        });
    };
    std::fs::create_dir_all(dir)?;
    // After build(), a subcommand's display name (the page title) is `bkcache-COMMAND`.
    let name = cmd.get_name().to_owned();
    let mut pages = vec![(name.clone(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((format!("{name}-{}", sub.get_name()), sub.clone()));
    }
    for (page, cmd) in pages {
        let mut bytes = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut bytes)?;
        let path = dir.join(format!("{page}.1"));
        std::fs::write(&path, bytes)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
