//! Each setting resolved from the attributes, then BuildKit's and Azure's environment variables.

use super::*;

/// `account_url`: the attribute, `$BUILDKIT_AZURE_STORAGE_ACCOUNT_URL`, the connection
/// string's endpoint, or `$AZURE_STORAGE_ACCOUNT`'s default URL; with its `?SAS` query and where
/// it came from.
pub(super) fn account_url(
    spec: &CacheSpec,
    direction: Direction,
    env: &Env,
    cs: Option<&ConnectionString>,
) -> Result<(Url, Option<String>, &'static str)> {
    let (url_text, url_source) = if let Some(v) = spec.get("account_url") {
        (v.to_owned(), "account_url")
    } else if let Some(v) = env.var("BUILDKIT_AZURE_STORAGE_ACCOUNT_URL") {
        (v.to_owned(), "$BUILDKIT_AZURE_STORAGE_ACCOUNT_URL")
    } else if let Some(v) = cs.and_then(|c| c.endpoint.clone()) {
        (v, "$AZURE_STORAGE_CONNECTION_STRING")
    } else if let Some(a) = env.var("AZURE_STORAGE_ACCOUNT") {
        (format!("https://{a}.blob.core.windows.net"), "$AZURE_STORAGE_ACCOUNT")
    } else {
        return Err(Error::MissingAttribute {
            kind: spec.kind.clone(),
            attribute: "account_url".into(),
            direction: direction.describe().into(),
            hint: "set account_url=https://ACCOUNT.blob.core.windows.net (or $BUILDKIT_AZURE_STORAGE_ACCOUNT_URL, $AZURE_STORAGE_ACCOUNT, $AZURE_STORAGE_CONNECTION_STRING)".into(),
        });
    };
    let (account_url, url_sas) = parse_account_url(&url_text).map_err(|e| match e {
        Error::InvalidValue { value, allowed, .. } if url_source != "account_url" => Error::InvalidValue {
            attribute: format!("account_url (from {url_source})"),
            value,
            allowed,
        },
        other => other,
    })?;
    Ok((account_url, url_sas, url_source))
}

/// `account_name`: the attribute, `$BUILDKIT_AZURE_STORAGE_ACCOUNT_NAME`, the connection
/// string's (when the URL came from it), or the URL's first label.
pub(super) fn account_name(
    spec: &CacheSpec,
    env: &Env,
    cs: Option<&ConnectionString>,
    account_url: &Url,
    url_source: &str,
) -> Result<String> {
    let account_name = if let Some(v) = spec.get("account_name") {
        v.to_owned()
    } else if let Some(v) = env.var("BUILDKIT_AZURE_STORAGE_ACCOUNT_NAME") {
        v.to_owned()
    } else if let (Some(a), "$AZURE_STORAGE_CONNECTION_STRING") = (cs.and_then(|c| c.account_name.clone()), url_source)
    {
        a
    } else {
        account_from_url(account_url).unwrap_or_default()
    };
    if account_name.is_empty() {
        return Err(invalid(
            "account_name",
            "",
            format!(
                "cannot derive the account name from account_url {}: set account_name= (Azurite: devstoreaccount1)",
                account_url
            ),
        ));
    }
    if !account_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            "account_name",
            &account_name,
            "a storage account name is letters and digits (3-24 lowercase on Azure)",
        ));
    }
    Ok(account_name)
}

/// `name`: `;`-separated manifest names, none empty.
pub(super) fn names(spec: &CacheSpec) -> Result<Vec<String>> {
    let names: Vec<String> = match spec.get("name") {
        Some(v) => {
            let names: Vec<String> = v.split(';').map(str::to_owned).collect();
            if names.iter().any(|n| n.trim().is_empty()) {
                return Err(invalid(
                    "name",
                    v,
                    "one or more manifest names separated by ';', none of them empty",
                ));
            }
            names
        }
        None => vec![DEFAULT_NAME.to_owned()],
    };
    Ok(names)
}

/// `upload_parallelism`: a positive integer.
pub(super) fn upload_parallelism(spec: &CacheSpec) -> Result<usize> {
    let upload_parallelism = match spec.get("upload_parallelism") {
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(invalid(
                    "upload_parallelism",
                    v,
                    "upload_parallelism must be a positive integer (blobs uploaded at once)",
                ))
            }
        },
        None => DEFAULT_UPLOAD_PARALLELISM,
    };
    Ok(upload_parallelism)
}

/// Credentials: attributes, then the account URL's SAS, then the environment (a connection
/// string or `$AZURE_STORAGE_*` only when it names this account), else Entra ID.
pub(super) fn credentials(
    spec: &CacheSpec,
    env: &Env,
    cs: Option<&ConnectionString>,
    url_sas: Option<String>,
    account_name: &str,
) -> Result<(Auth, String)> {
    // Credentials: attributes, then the account URL's SAS, then the environment.
    let cs_applies = cs.is_some_and(|c| {
        c.account_name
            .as_deref()
            .is_none_or(|a| a.eq_ignore_ascii_case(account_name))
    });
    let env_applies = env
        .var("AZURE_STORAGE_ACCOUNT")
        .is_none_or(|a| a.eq_ignore_ascii_case(account_name));
    let (auth, credential_source) = match (spec.get("secret_access_key"), spec.get("sas_token")) {
        (Some(k), Some(_)) if !k.is_empty() => {
            return Err(Error::InvalidCombination {
                reason: "give secret_access_key or sas_token, not both".into(),
            })
        }
        (Some(k), _) if !k.is_empty() => {
            check_key(k)?;
            (Auth::SharedKey(Secret::new(k.trim())), "secret_access_key".to_owned())
        }
        (_, Some(s)) if !s.is_empty() => (Auth::Sas(parse_sas("sas_token", s)?), "sas_token".to_owned()),
        _ => {
            if let Some(q) = url_sas {
                (
                    Auth::Sas(parse_sas("account_url", &q)?),
                    "the SAS in account_url".to_owned(),
                )
            } else if let Some(k) = cs.and_then(|c| c.account_key.clone()).filter(|_| cs_applies) {
                check_key(k.expose())
                    .map_err(|_| env_error(CONNECTION_STRING, "its AccountKey is not valid base64"))?;
                (Auth::SharedKey(k), format!("${CONNECTION_STRING} (AccountKey)"))
            } else if let Some(s) = cs.and_then(|c| c.sas.clone()).filter(|_| cs_applies) {
                let pairs = parse_sas(CONNECTION_STRING, s.expose())?;
                (
                    Auth::Sas(pairs),
                    format!("${CONNECTION_STRING} (SharedAccessSignature)"),
                )
            } else if let Some(k) = env.var("AZURE_STORAGE_KEY").filter(|_| env_applies) {
                check_key(k).map_err(|_| {
                    env_error(
                        "AZURE_STORAGE_KEY",
                        "not valid base64: an Azure storage account key is base64, 88 characters",
                    )
                })?;
                (Auth::SharedKey(Secret::new(k.trim())), "$AZURE_STORAGE_KEY".to_owned())
            } else if let Some(s) = env.var("AZURE_STORAGE_SAS_TOKEN").filter(|_| env_applies) {
                let pairs = parse_sas("$AZURE_STORAGE_SAS_TOKEN (environment)", s)?;
                (Auth::Sas(pairs), "$AZURE_STORAGE_SAS_TOKEN".to_owned())
            } else {
                let t = TokenSettings {
                    client_id: env.var("AZURE_CLIENT_ID").map(str::to_owned),
                    tenant_id: env.var("AZURE_TENANT_ID").map(str::to_owned),
                    client_secret: env.var("AZURE_CLIENT_SECRET").map(|s| Secret::new(s.to_owned())),
                    federated_token_file: env.var("AZURE_FEDERATED_TOKEN_FILE").map(str::to_owned),
                    authority_host: env.var("AZURE_AUTHORITY_HOST").map(str::to_owned),
                };
                let source = format!(
                    "{} (no secret_access_key, sas_token, $AZURE_STORAGE_KEY or $AZURE_STORAGE_CONNECTION_STRING was given)",
                    t.kind()
                );
                (Auth::Token(t), source)
            }
        }
    };
    Ok((auth, credential_source))
}
