//! Interop with a real BuildKit: dockerd 20.10's built-in BuildKit (Debian docker.io), started
//! by `cargo xtask test`. An image it builds with an inline cache imports in bkcache; the cache
//! bkcache pushes (OCI index layout, the one 20.10 reads) gives CACHED steps in its build, both
//! from a registry and through `bkcache serve` (which answers 20.10 with the index form).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

fn docker(host: &str, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .expect("docker client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "docker {args:?} failed:\n{text}");
    text
}

#[test]
fn dockerd_buildkit_reads_our_cache_and_we_read_its_inline_cache() {
    let Some(dockerd) = server("BKCACHE_TEST_DOCKER_HOST") else {
        return;
    };
    let registry = server("BKCACHE_TEST_REGISTRY").unwrap();
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let ctx = fixtures().join("contexts/ctx1");
    let ctx = ctx.to_str().unwrap();
    let image = format!("{registry}/dk{run}/img:latest");

    // 1. dockerd builds and pushes an image with an inline cache; bkcache imports it.
    docker(
        &dockerd,
        &[
            "build",
            "--progress=plain",
            "--build-arg",
            "BUILDKIT_INLINE_CACHE=1",
            "-t",
            &image,
            ctx,
        ],
    );
    docker(&dockerd, &["push", &image]);
    let s = bkcache(&["inspect", &format!("type=registry,ref={image}"), "--json"])
        .ok()
        .json();
    assert_eq!(s["format"], "inline");
    assert_eq!(
        (
            s["records"].as_u64(),
            s["results"].as_u64(),
            s["layers"].as_array().unwrap().len()
        ),
        (Some(6), Some(3), 3)
    );

    // 2. Through a local directory and back to the registry in the OCI-index layout.
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("cache");
    bkcache(&[
        "copy",
        "--from",
        &format!("type=registry,ref={image}"),
        "--to",
        &dest(&local, ""),
    ])
    .ok();
    bkcache(&["verify", &src(&local)]).ok();
    let cache = format!("{registry}/dk{run}/cache:buildcache");
    bkcache(&[
        "copy",
        "--from",
        &src(&local),
        "--to",
        &format!("type=registry,ref={cache},image-manifest=false"),
    ])
    .ok();

    // 3. A clean dockerd build with --cache-from our cache: every step is a cache hit.
    docker(&dockerd, &["builder", "prune", "-af"]);
    docker(&dockerd, &["rmi", &image]);
    let out = docker(
        &dockerd,
        &[
            "build",
            "--progress=plain",
            "--cache-from",
            &cache,
            "-t",
            &format!("dk{run}:check"),
            ctx,
        ],
    );
    let cached = out.lines().filter(|l| l.contains(" CACHED")).count();
    assert!(out.contains(&format!("importing cache manifest from {cache}")), "{out}");
    assert_eq!(cached, 3, "all 3 COPY steps CACHED:\n{out}");

    // 4. Through bkcache serve: the store holds the default image-manifest form, and serve
    //    answers dockerd 20.10 (which reads only the index form) with the index form.
    let store = tmp.path().join("store");
    let serve = common::serve::ServeProc::start(&[
        "--store",
        &format!("type=local,dest={}/{{repo}},tag={{tag}}", store.display()),
    ]);
    bkcache(&[
        "copy",
        "--from",
        &src(&local),
        "--to",
        &serve.reference(&format!("dk{run}/app:main")),
    ])
    .ok();
    docker(&dockerd, &["builder", "prune", "-af"]);
    docker(&dockerd, &["rmi", &format!("dk{run}:check")]);
    let via = format!("{}/dk{run}/app:main", serve.addr);
    let out = docker(
        &dockerd,
        &[
            "build",
            "--progress=plain",
            "--cache-from",
            &via,
            "-t",
            &format!("dk{run}:serve"),
            ctx,
        ],
    );
    let cached = out.lines().filter(|l| l.contains(" CACHED")).count();
    assert_eq!(
        cached,
        3,
        "all 3 COPY steps CACHED through serve:\n{out}\n{}",
        serve.log()
    );
}
