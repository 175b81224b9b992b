//! The AWS credential chain: BuildKit's attributes, then as the AWS SDK for Go v2 (environment,
//! shared config and credentials files with profiles, `credential_process`, web identity,
//! container credentials, instance metadata).

use super::*;

/// One profile's keys, merged from the credentials file (first) and the config file.
type Profile = BTreeMap<String, String>;

/// Read the `[name]` / `[profile name]` sections of an AWS shared config or credentials file.
fn read_ini(path: &std::path::Path, config_file: bool) -> Result<BTreeMap<String, Profile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io(path.display().to_string(), "read AWS shared config", e)),
    };
    let mut out: BTreeMap<String, Profile> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue; // sub-section values (e.g. `s3 =` blocks)
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            current = if !config_file {
                Some(section.to_owned())
            } else if section == "default" {
                Some("default".to_owned())
            } else {
                section
                    .strip_prefix("profile")
                    .filter(|r| r.starts_with([' ', '\t']))
                    .map(|r| r.trim().to_owned())
            };
            continue;
        }
        if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    Ok(out)
}

fn home_file(env: &Env, var: &str, default: &str) -> Option<PathBuf> {
    if let Some(p) = env.var(var) {
        return Some(env.resolve(p));
    }
    env.var("HOME").map(|h| PathBuf::from(h).join(default))
}

/// The named profile from the shared credentials and config files, with its origin.
fn load_profile(env: &Env, name: &str) -> Result<Option<(Profile, String)>> {
    let mut profile = Profile::new();
    let mut found = Vec::new();
    if let Some(path) = home_file(env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials") {
        if let Some(p) = read_ini(&path, false)?.remove(name) {
            profile.extend(p);
            found.push(path.display().to_string());
        }
    }
    if let Some(path) = home_file(env, "AWS_CONFIG_FILE", ".aws/config") {
        if let Some(p) = read_ini(&path, true)?.remove(name) {
            for (k, v) in p {
                profile.entry(k).or_insert(v);
            }
            found.push(path.display().to_string());
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    Ok(Some((profile, format!("profile {name:?} in {}", found.join(" and ")))))
}

/// Credentials from a profile, `None` when it holds none.
fn profile_credentials(profile: &Profile, origin: &str) -> Result<Option<CredentialSource>> {
    let get = |k: &str| profile.get(k).filter(|v| !v.is_empty()).cloned();
    if let (Some(key_id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
        return Ok(Some(CredentialSource::Static {
            key_id,
            secret,
            token: get("aws_session_token"),
            origin: origin.to_owned(),
        }));
    }
    if let (Some(token_file), Some(role_arn)) = (get("web_identity_token_file"), get("role_arn")) {
        return Ok(Some(CredentialSource::WebIdentity {
            token_file,
            role_arn,
            session_name: get("role_session_name"),
            sts_endpoint: None,
            origin: origin.to_owned(),
        }));
    }
    if let Some(command) = get("credential_process") {
        return Ok(Some(CredentialSource::Process {
            command,
            origin: origin.to_owned(),
        }));
    }
    let unsupported: Vec<&str> = [
        "role_arn",
        "source_profile",
        "credential_source",
        "sso_session",
        "sso_start_url",
    ]
    .into_iter()
    .filter(|k| profile.contains_key(*k))
    .collect();
    if !unsupported.is_empty() {
        return Err(S3Error::Credentials {
            reason: format!(
                "{origin} uses {} which bkcache does not resolve; give it credential_process = aws configure export-credentials --profile <name> --format process, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN",
                unsupported.join(", ")
            ),
        }
        .into());
    }
    Ok(None)
}

/// The AWS credential chain, with BuildKit's attributes first: `access_key_id` +
/// `secret_access_key` (+ `session_token`); then as the AWS SDK for Go v2: an explicit
/// `$AWS_PROFILE`; `$AWS_ACCESS_KEY_ID` + `$AWS_SECRET_ACCESS_KEY` (+ `$AWS_SESSION_TOKEN`);
/// `$AWS_WEB_IDENTITY_TOKEN_FILE` + `$AWS_ROLE_ARN`; the `default` profile; container
/// credentials; EC2 instance metadata.
pub(super) fn resolve_credentials(spec: &CacheSpec, env: &Env) -> Result<CredentialSource> {
    let attr = |k: &str| spec.get(k).filter(|v| !v.is_empty());
    match (attr("access_key_id"), attr("secret_access_key")) {
        (Some(key_id), Some(secret)) => {
            return Ok(CredentialSource::Static {
                key_id: key_id.to_owned(),
                secret: secret.to_owned(),
                token: attr("session_token").map(str::to_owned),
                origin: "the access_key_id/secret_access_key attributes".into(),
            })
        }
        (Some(_), None) | (None, Some(_)) => {
            let (set, unset) = if attr("access_key_id").is_some() {
                ("access_key_id", "secret_access_key")
            } else {
                ("secret_access_key", "access_key_id")
            };
            return Err(Error::InvalidCombination {
                reason: format!(
                    "type=s3: {set}={} is set but {unset} is not: set both, or neither to use the AWS credential chain",
                    printable_value(set, "")
                ),
            });
        }
        (None, None) => {}
    }
    if let Some(name) = env.var("AWS_PROFILE").or_else(|| env.var("AWS_DEFAULT_PROFILE")) {
        let (profile, origin) = load_profile(env, name)?.ok_or_else(|| S3Error::Credentials {
            reason: format!(
                "$AWS_PROFILE is {name:?} but no such profile is in {} or {}",
                home_file(env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.aws/credentials".into()),
                home_file(env, "AWS_CONFIG_FILE", ".aws/config")
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.aws/config".into())
            ),
        })?;
        return profile_credentials(&profile, &origin)?.ok_or_else(|| {
            S3Error::Credentials {
                reason: format!("{origin} has no aws_access_key_id/aws_secret_access_key, web_identity_token_file or credential_process"),
            }
            .into()
        });
    }
    if let (Some(key_id), Some(secret)) = (env.var("AWS_ACCESS_KEY_ID"), env.var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(CredentialSource::Static {
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
            token: env.var("AWS_SESSION_TOKEN").map(str::to_owned),
            origin: "$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY".into(),
        });
    }
    if let (Some(token_file), Some(role_arn)) = (env.var("AWS_WEB_IDENTITY_TOKEN_FILE"), env.var("AWS_ROLE_ARN")) {
        return Ok(CredentialSource::WebIdentity {
            token_file: token_file.to_owned(),
            role_arn: role_arn.to_owned(),
            session_name: env.var("AWS_ROLE_SESSION_NAME").map(str::to_owned),
            sts_endpoint: env.var("AWS_ENDPOINT_URL_STS").map(str::to_owned),
            origin: "$AWS_WEB_IDENTITY_TOKEN_FILE/$AWS_ROLE_ARN".into(),
        });
    }
    if let Some((profile, origin)) = load_profile(env, "default")? {
        if let Some(c) = profile_credentials(&profile, &origin)? {
            return Ok(c);
        }
    }
    let relative_uri = env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(str::to_owned);
    let full_uri = env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI").map(str::to_owned);
    if relative_uri.is_some() || full_uri.is_some() {
        let token_file = env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(str::to_owned);
        if relative_uri.is_none() && token_file.is_none() {
            return Err(S3Error::Credentials {
                reason: "$AWS_CONTAINER_CREDENTIALS_FULL_URI needs $AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
            }
            .into());
        }
        return Ok(CredentialSource::Container {
            relative_uri,
            full_uri,
            token_file,
        });
    }
    if env
        .var("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err(S3Error::Credentials {
            reason: "no credentials: set access_key_id and secret_access_key, or $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY, or $AWS_PROFILE (instance metadata is disabled by $AWS_EC2_METADATA_DISABLED)".into(),
        }
        .into());
    }
    Ok(CredentialSource::Instance {
        endpoint: env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT").map(str::to_owned),
    })
}

/// A profile's `credential_process`: run through `sh -c`, JSON on stdout
/// (`{"Version":1,"AccessKeyId","SecretAccessKey","SessionToken"?,"Expiration"?}`), cached until
/// five minutes before it expires.
pub(crate) struct ProcessProvider {
    command: String,
    origin: String,
    cache: Mutex<Option<(Arc<AwsCredential>, Option<i64>)>>,
}

impl ProcessProvider {
    pub fn new(command: String, origin: String) -> Self {
        ProcessProvider {
            command,
            origin,
            cache: Mutex::new(None),
        }
    }

    fn run(command: &str, origin: &str) -> std::result::Result<(AwsCredential, Option<i64>), String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run the credential_process of {origin}: {e}"))?;
        if !out.status.success() {
            return Err(format!("the credential_process of {origin} failed ({})", out.status));
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            version: i64,
            access_key_id: String,
            secret_access_key: String,
            session_token: Option<String>,
            expiration: Option<String>,
        }
        // Never echo the output: it holds the secret.
        let a: Answer = serde_json::from_slice(&out.stdout).map_err(|_| {
            format!("the credential_process of {origin} did not print the expected JSON (Version, AccessKeyId, SecretAccessKey)")
        })?;
        if a.version != 1 {
            return Err(format!(
                "the credential_process of {origin} printed Version {}, expected 1",
                a.version
            ));
        }
        let expires = match a.expiration {
            Some(t) => Some(
                t.parse::<GoTime>()
                    .map_err(|_| format!("the credential_process of {origin} printed a bad Expiration"))?
                    .unix_secs(),
            ),
            None => None,
        };
        Ok((
            AwsCredential {
                key_id: a.access_key_id,
                secret_key: a.secret_access_key,
                token: a.session_token,
            },
            expires,
        ))
    }
}

impl fmt::Debug for ProcessProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcessProvider({})", self.origin)
    }
}

#[async_trait]
impl CredentialProvider for ProcessProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let now = GoTime::now().unix_secs();
        if let Ok(guard) = self.cache.lock() {
            if let Some((c, exp)) = guard.as_ref() {
                if exp.is_none_or(|e| e - 300 > now) {
                    return Ok(c.clone());
                }
            }
        }
        let (command, origin) = (self.command.clone(), self.origin.clone());
        let result = tokio::task::spawn_blocking(move || Self::run(&command, &origin))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        let (cred, exp) = result.map_err(|reason| object_store::Error::Generic {
            store: "S3",
            source: reason.into(),
        })?;
        let cred = Arc::new(cred);
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some((cred.clone(), exp));
        }
        Ok(cred)
    }
}
