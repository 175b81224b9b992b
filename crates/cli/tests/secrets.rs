//! No secret is ever printed (architecture invariant 5), across backends and commands: copy
//! (both directions), inspect, verify, prune, scan and diff, with `--json`, `-vv` and
//! `BKCACHE_LOG=trace`, succeeding and failing, against the TLS + Basic-auth registry, moto
//! (S3) and Azurite (Azure Blob). Distinctive fake secrets go in as attributes, environment
//! variables, a Docker config and a credential helper; every line of stdout and stderr is
//! searched for them, for their base64 forms, and for what signed requests carry
//! (`Authorization`, `Signature=`, `sig=`, `SharedKey`).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use base64::Engine as _;
use common::proxy;
use common::*;

/// Everything the commands printed, with what was run.
#[derive(Default)]
struct Outputs(Vec<(String, i32, String)>);

impl Outputs {
    fn run(&mut self, args: &[&str], env: &[(&str, &str)]) -> i32 {
        let r = bkcache_env(args, env);
        let shown = format!(
            "{} {}",
            env.iter().map(|(k, _)| format!("{k}=…")).collect::<Vec<_>>().join(" "),
            args.join(" ")
        );
        self.0.push((
            shown,
            r.code,
            format!("--- stdout\n{}\n--- stderr\n{}", r.stdout, r.stderr),
        ));
        r.code
    }

    fn codes(&self) -> Vec<i32> {
        self.0.iter().map(|o| o.1).collect()
    }

    /// No output contains any of `secrets`, nor a signed request's credentials.
    fn assert_clean(&self, backend: &str, secrets: &[&str]) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut needles: Vec<String> = Vec::new();
        for s in secrets {
            needles.push((*s).to_owned());
            needles.push(b64.encode(s));
        }
        for (what, code, text) in &self.0 {
            for n in &needles {
                assert!(
                    !text.contains(n.as_str()),
                    "{backend}: `{what}` (exit {code}) printed a secret ({n}):\n{text}"
                );
            }
            for marker in ["Signature=", "sig=", "SharedKey ", "authorization: ", "Authorization: "] {
                assert!(
                    !text.contains(marker),
                    "{backend}: `{what}` (exit {code}) printed request credentials ({marker}):\n{text}"
                );
            }
        }
        let bytes: usize = self.0.iter().map(|o| o.2.len()).sum();
        eprintln!(
            "{backend}: {} commands, {bytes} bytes of output, no secret",
            self.0.len()
        );
    }
}

/// The commands every backend runs, in both outcomes: a good spec `good` (holding local-max
/// after the first copy), a spare location `spare` to prune, and `bad` that fails (run with
/// `bad_env`).
fn representative(
    out: &mut Outputs,
    (good, spare, env): (&str, &str, &[(&str, &str)]),
    (bad, bad_env): (&str, &[(&str, &str)]),
) -> Vec<i32> {
    let from = src(&fixture_cache("local-max"));
    let min = src(&fixture_cache("local-min"));
    let trace: Vec<(&str, &str)> = env.iter().copied().chain([("BKCACHE_LOG", "trace")]).collect();
    let bad_trace: Vec<(&str, &str)> = bad_env.iter().copied().chain([("BKCACHE_LOG", "trace")]).collect();
    let tmp = tempfile::tempdir().unwrap();
    let back = dest(&tmp.path().join("back"), "");
    let start = out.0.len();
    // Success.
    out.run(&["copy", "--from", &from, "--to", good, "--json"], env);
    out.run(&["-vv", "copy", "--from", &min, "--to", spare, "--json"], env);
    out.run(&["copy", "--from", good, "--to", &back, "--json"], &trace);
    out.run(&["-vv", "inspect", good, "--json"], env);
    out.run(&["inspect", good], &trace);
    out.run(&["-vv", "verify", good, "--json"], env);
    out.run(&["-vv", "scan", good, "--json"], env);
    out.run(&["-vv", "diff", good, spare, "--json"], env);
    out.run(
        &[
            "-vv",
            "prune",
            spare,
            "--keep-storage",
            "1B",
            "--allow-empty",
            "--min-age",
            "0s",
            "--json",
        ],
        env,
    );
    out.run(&["prune", good, "--dry-run", "--json"], &trace);
    // Failure.
    out.run(&["-vv", "copy", "--from", &from, "--to", bad, "--json"], bad_env);
    out.run(&["copy", "--from", bad, "--to", &back], &bad_trace);
    out.run(&["-vv", "inspect", bad, "--json"], bad_env);
    out.run(&["-vv", "verify", bad], bad_env);
    out.run(&["-vv", "scan", bad, "--json"], bad_env);
    out.run(&["-vv", "prune", bad, "--dry-run"], bad_env);
    // An unknown attribute next to the secrets: a usage error that shows the spec.
    out.run(&["inspect", &format!("{good},bogus=1")], env);
    out.codes()[start..].to_vec()
}

#[test]
fn registry_tls_basic_auth_never_prints_credentials() {
    let Some(host) = server("BKCACHE_TEST_REGISTRY_TLS") else {
        return;
    };
    let ca = server("BKCACHE_TEST_REGISTRY_TLS_CA").unwrap();
    let user = server("BKCACHE_TEST_REGISTRY_TLS_USER").unwrap();
    let pass = server("BKCACHE_TEST_REGISTRY_TLS_PASS").unwrap();
    let wrong = "wrong-Zq9-registry-password-distinct";
    let tmp = tempfile::tempdir().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let config = |dir: &Path, json: String| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), json).unwrap();
        dir.to_str().unwrap().to_owned()
    };
    let auths = |p: &str| {
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            b64.encode(format!("{user}:{p}"))
        )
    };
    let good_cfg = config(&tmp.path().join("good"), auths(&pass));
    let bad_cfg = config(&tmp.path().join("bad"), auths(wrong));
    // A credential helper (on PATH) that answers with the password, and one that answers
    // with broken JSON holding a secret.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper_secret = "helper-Zq9-broken-json-secret";
    for (name, body) in [
        (
            "bkgood",
            format!(r#"{{"ServerURL":"{host}","Username":"{user}","Secret":"{pass}"}}"#),
        ),
        (
            "bkbroken",
            format!(r#"{{"Username":"{user}","Secret":"{helper_secret}""#),
        ),
    ] {
        let p = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\ncat >/dev/null\necho '{body}'\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let helper_cfg = config(
        &tmp.path().join("helper"),
        format!(r#"{{"credHelpers":{{"{host}":"bkgood"}}}}"#),
    );
    let broken_cfg = config(
        &tmp.path().join("broken"),
        format!(r#"{{"credHelpers":{{"{host}":"bkbroken"}}}}"#),
    );

    let run = proxy::unique("secrets");
    let good = format!("type=registry,ref={host}/secrets/{run}:good");
    let spare = format!("type=registry,ref={host}/secrets/{run}:spare");
    let mut out = Outputs::default();
    let env = [("SSL_CERT_FILE", ca.as_str()), ("DOCKER_CONFIG", good_cfg.as_str())];
    // The failing half: the same cache, with the wrong password in DOCKER_CONFIG.
    let bad_env = [("SSL_CERT_FILE", ca.as_str()), ("DOCKER_CONFIG", bad_cfg.as_str())];
    let codes = representative(&mut out, (&good, &spare, &env), (&good, &bad_env));
    assert_eq!(&codes[..10], &[0; 10], "the successful half succeeded");
    assert_eq!(
        &codes[10..],
        &[1, 6, 6, 6, 6, 6, 2],
        "a failed target is 1, a refused credential 6"
    );
    for args in [
        vec!["-vv", "inspect", good.as_str(), "--json"],
        vec!["-vv", "verify", good.as_str()],
        vec![
            "-vv",
            "copy",
            "--from",
            &good,
            "--to",
            "type=local,dest=/nonexistent-dir-bk/x",
            "--json",
        ],
    ] {
        assert_eq!(out.run(&args, &bad_env), 6, "wrong password refused");
    }
    let trace_bad = [
        ("SSL_CERT_FILE", ca.as_str()),
        ("DOCKER_CONFIG", bad_cfg.as_str()),
        ("BKCACHE_LOG", "trace"),
    ];
    assert_eq!(out.run(&["inspect", &good], &trace_bad), 6);
    // Credential helpers.
    let helper_env = [
        ("SSL_CERT_FILE", ca.as_str()),
        ("DOCKER_CONFIG", helper_cfg.as_str()),
        ("PATH", path.as_str()),
    ];
    assert_eq!(out.run(&["-vv", "verify", &good, "--json"], &helper_env), 0);
    let broken_env = [
        ("SSL_CERT_FILE", ca.as_str()),
        ("DOCKER_CONFIG", broken_cfg.as_str()),
        ("PATH", path.as_str()),
    ];
    assert_eq!(out.run(&["-vv", "inspect", &good], &broken_env), 1);
    // No credentials at all: the error says what to do, and shows nothing of the others.
    let empty = config(&tmp.path().join("empty"), "{}".into());
    let none_env = [("SSL_CERT_FILE", ca.as_str()), ("DOCKER_CONFIG", empty.as_str())];
    assert_eq!(out.run(&["inspect", &good], &none_env), 6);

    out.assert_clean(
        "registry",
        &[
            &pass,
            wrong,
            helper_secret,
            &format!("{user}:{pass}"),
            &format!("{user}:{wrong}"),
        ],
    );
}

#[test]
fn s3_never_prints_credentials() {
    let Some(ep) = server("BKCACHE_TEST_S3") else {
        return;
    };
    let (key_id, secret, token) = (
        "AKIDSECRETSQ9ZXDISTINCT",
        "SeCrEt-S3-q9Zx-attribute-distinctive",
        "ToKeN-S3-q9Zx-attribute-distinctive",
    );
    let (env_id, env_secret, env_token) = (
        "AKIDENVQ9ZXDISTINCTIVE",
        "SeCrEt-S3-q9Zx-environment-distinctive",
        "ToKeN-S3-q9Zx-environment-distinctive",
    );
    let bucket = proxy::s3_new_bucket(&ep, "secrets");
    let creds = format!("access_key_id={key_id},secret_access_key={secret},session_token={token}");
    let spec = |b: &str, prefix: &str| {
        format!("type=s3,bucket={b},region=us-east-1,endpoint_url={ep},prefix={prefix}/,{creds}")
    };
    let run = proxy::unique("s");
    let (good, spare) = (
        spec(&bucket, &format!("{run}-good")),
        spec(&bucket, &format!("{run}-spare")),
    );
    // moto accepts any signature: the failing spec names a bucket that does not exist.
    let bad = spec("no-such-bucket-q9zx", "x");
    let mut out = Outputs::default();
    let codes = representative(&mut out, (&good, &spare, &[]), (&bad, &[]));
    assert_eq!(&codes[..10], &[0; 10], "the successful half succeeded");
    assert_eq!(&codes[10..], &[1, 1, 1, 1, 1, 1, 2]);
    // Credentials from the environment, touch (self-signed CopyObject), an unreachable endpoint.
    let env = [
        ("AWS_ACCESS_KEY_ID", env_id),
        ("AWS_SECRET_ACCESS_KEY", env_secret),
        ("AWS_SESSION_TOKEN", env_token),
    ];
    let env_spec = format!("type=s3,bucket={bucket},region=us-east-1,endpoint_url={ep},prefix={run}-env/");
    assert_eq!(
        out.run(
            &[
                "-vv",
                "copy",
                "--from",
                &src(&fixture_cache("local-max")),
                "--to",
                &format!("{env_spec},touch_refresh=0s"),
                "--json"
            ],
            &env
        ),
        0
    );
    assert_eq!(
        out.run(
            &[
                "-vv",
                "copy",
                "--from",
                &src(&fixture_cache("local-max")),
                "--to",
                &format!("{env_spec},touch_refresh=0s"),
                "--json"
            ],
            &[env.as_slice(), &[("BKCACHE_LOG", "trace")]].concat()
        ),
        0
    );
    assert_eq!(out.run(&["-vv", "verify", &env_spec, "--json"], &env), 0);
    assert_eq!(
        out.run(
            &[
                "-vv",
                "inspect",
                "type=s3,bucket=b,region=us-east-1,endpoint_url=http://127.0.0.1:1,retry_max_attempts=1"
            ],
            &env
        ),
        1
    );
    out.assert_clean("s3", &[key_id, secret, token, env_id, env_secret, env_token]);
}

#[test]
fn azblob_never_prints_keys_or_signatures() {
    let Some(url) = server("BKCACHE_TEST_AZURITE") else {
        return;
    };
    let account = std::env::var("BKCACHE_TEST_AZURITE_ACCOUNT").unwrap();
    let key = std::env::var("BKCACHE_TEST_AZURITE_KEY").unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let wrong = b64.encode("bkcache-azblob-wrong-key-Q9ZX-distinctive-0042");
    let container = proxy::unique("secrets");
    let spec = |prefix: &str, k: &str| {
        format!(
            "type=azblob,account_url={url},account_name={account},container={container},prefix={prefix},secret_access_key={k}"
        )
    };
    let (good, spare, bad) = (spec("good", &key), spec("spare", &key), spec("good", &wrong));
    let mut out = Outputs::default();
    let codes = representative(&mut out, (&good, &spare, &[]), (&bad, &[]));
    assert_eq!(&codes[..10], &[0; 10], "the successful half succeeded");
    assert_eq!(
        &codes[10..],
        &[1, 6, 6, 6, 6, 6, 2],
        "a failed target is 1, a refused credential 6"
    );
    // The key from the environment and in a connection string; a SAS in the environment.
    let env_spec = format!("type=azblob,account_url={url},account_name={account},container={container},prefix=good");
    assert_eq!(
        out.run(&["-vv", "verify", &env_spec, "--json"], &[("AZURE_STORAGE_KEY", &key)]),
        0
    );
    assert_eq!(
        out.run(
            &["-vv", "inspect", &env_spec],
            &[("AZURE_STORAGE_KEY", &wrong), ("BKCACHE_LOG", "trace")]
        ),
        6
    );
    let conn = format!("DefaultEndpointsProtocol=http;AccountName={account};AccountKey={wrong};BlobEndpoint={url};");
    assert_eq!(
        out.run(
            &[
                "-vv",
                "inspect",
                &format!("type=azblob,container={container},prefix=good")
            ],
            &[("AZURE_STORAGE_CONNECTION_STRING", &conn)]
        ),
        6
    );
    let forged_sas =
        "sv=2021-08-06&ss=b&srt=sco&sp=rl&se=2099-01-01T00:00:00Z&spr=https,http&sig=Rm9yZ2VkUTlaWGRpc3RpbmN0aXZl";
    assert_eq!(
        out.run(
            &[
                "-vv",
                "inspect",
                &format!("type=azblob,account_url={url},account_name={account},container={container},prefix=good")
            ],
            &[("AZURE_STORAGE_SAS_TOKEN", forged_sas)]
        ),
        6
    );
    assert_eq!(
        out.run(
            &[
                "-vv",
                "inspect",
                &format!(
                    "type=azblob,account_url={url},account_name={account},container={container},prefix=good,\"sas_token={forged_sas}\""
                ),
                "--json"
            ],
            &[]
        ),
        6
    );
    out.assert_clean("azblob", &[&key, &wrong, "Rm9yZ2VkUTlaWGRpc3RpbmN0aXZl"]);
}
