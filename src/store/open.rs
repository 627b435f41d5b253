//! Opening a store from its URL: the backend it names, its settings from the environment and
//! from the URL, and the one-line refusal a mistyped or incomplete URL gets.

use super::{explain, one_line, settings, Store, StoreError, StoreOptions};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// The longest store URL taken.
const MAX_URL: usize = 4096;

impl Store {
    /// Opens `s3://bucket/prefix`, `gs://…`, `az://…`, `file:///dir`, a plain directory path, or
    /// `memory://` (a store that lives as long as the process, for tests).
    pub fn open(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        // Settings after '?' stay out of messages: they may be what is wrong. A URL too long
        // to be one is shown by its start.
        let shown: String = url
            .split('?')
            .next()
            .unwrap_or(url)
            .chars()
            .take(80)
            .collect();
        let shown = shown.escape_debug().to_string();
        let bad = |why: &str| StoreError::BadUrl(shown.clone(), why.to_string());
        if url.len() > MAX_URL {
            return Err(bad(&format!(
                "{} bytes is longer than a store URL can be ({MAX_URL} at most)",
                url.len()
            )));
        }
        if url.chars().any(char::is_control) {
            return Err(bad("it holds a control character (a newline?); remove it"));
        }
        let mut place = explain::Place::default();
        let mut signer: Option<Arc<dyn object_store::signer::Signer>> = None;
        let (inner, root): (Arc<dyn ObjectStore>, String) = if url == "memory://" {
            (Arc::new(InMemory::new()), String::new())
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (rest, settings) = url_settings(rest).map_err(|why| bad(&why))?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket; use s3://BUCKET/PREFIX"));
            }
            let named = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
            if !bucket.chars().all(named) {
                return Err(bad(&format!("'{bucket}' is not a bucket name (letters, digits, dots, hyphens and underscores)")));
            }
            settings::check("s3", bucket, &settings).map_err(StoreError::Setting)?;
            let mut client = client_options(opts, "AWS_", ClientOptions::new());
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config(opts));
            for &(k, v) in &settings {
                if let Ok(key) = k.parse::<ClientConfigKey>() {
                    client = client.with_config(key, v);
                } else {
                    let key = k.parse::<AmazonS3ConfigKey>().map_err(|_| {
                        bad(&format!("unknown setting '{k}'; S3 URLs take endpoint, region, allow_http and the other settings of AWS_* variables, in lower case without AWS_"))
                    })?;
                    builder = builder.with_config(key, v);
                }
            }
            let builder = builder.with_client_options(client);
            place = explain::Place {
                scheme: "s3",
                bucket: bucket.to_string(),
                endpoint: builder.get_config_value(&AmazonS3ConfigKey::Endpoint),
                endpoint_name: settings::endpoint_name("s3", &settings),
            };
            let s3 = Arc::new(builder.build().map_err(|e| {
                let text = one_line(&e);
                match settings::unparsed("s3", &settings, &text) {
                    Some(line) => StoreError::Setting(line),
                    None => bad(&text),
                }
            })?);
            signer = Some(s3.clone());
            (s3, prefix.trim_matches('/').to_string())
        } else if url.starts_with("gs://") || url.starts_with("az://") || url.starts_with("abfs") {
            let scheme = if url.starts_with("gs://") { "gs" } else { "az" };
            let (bare, settings) = url_settings(url).map_err(|why| bad(&why))?;
            let parsed = url::Url::parse(bare).map_err(|e| bad(&e.to_string()))?;
            let bucket = parsed.host_str().unwrap_or_default().to_string();
            if bucket.is_empty() {
                return Err(bad(match scheme {
                    "gs" => "no bucket; use gs://BUCKET/PREFIX",
                    _ => "no container; use az://CONTAINER/PREFIX (the account comes from AZURE_STORAGE_ACCOUNT_NAME)",
                }));
            }
            for (k, _) in &settings {
                let known = match scheme {
                    "gs" => k.parse::<object_store::gcp::GoogleConfigKey>().is_ok(),
                    _ => k.parse::<object_store::azure::AzureConfigKey>().is_ok(),
                };
                if !known {
                    let vars = if scheme == "gs" { "GOOGLE" } else { "AZURE" };
                    return Err(bad(&format!("unknown setting '{k}'; {scheme}:// URLs take the settings of {vars}_* variables, in lower case without {vars}_")));
                }
            }
            settings::check(scheme, &bucket, &settings).map_err(StoreError::Setting)?;
            place = explain::Place {
                scheme,
                bucket,
                endpoint: emulator_endpoint(scheme),
                endpoint_name: settings::endpoint_name(scheme, &settings),
            };
            let prefix = Path::from_url_path(parsed.path())
                .map_err(|e| bad(&one_line(&e)))?
                .to_string();
            let store = match scheme {
                "gs" => gcs(bare, &settings, opts),
                _ => azure(bare, &settings, opts),
            }
            .map_err(|e| {
                let text = one_line(&e);
                if let Some(line) = settings::unparsed(scheme, &settings, &text) {
                    return StoreError::Setting(line);
                }
                match text.contains("Account must be specified") {
                    true => bad("no Azure storage account: set AZURE_STORAGE_ACCOUNT_NAME (and AZURE_STORAGE_ACCOUNT_KEY, or a token)"),
                    false => bad(&text),
                }
            })?;
            (store, prefix)
        } else {
            let dir = match url.strip_prefix("file://") {
                // file://HOST/DIR names a directory on HOST: only this one can be opened.
                Some(p) if p.starts_with('/') => std::path::PathBuf::from(p),
                Some(p) if p.starts_with("localhost/") => std::path::PathBuf::from(&p[9..]),
                Some(_) => {
                    return Err(bad(
                        "a file:// URL takes an absolute path, file:///DIR (three slashes)",
                    ))
                }
                None if url.contains("://") => {
                    return Err(bad(
                        "unknown scheme; use s3://, gs://, az://, file:// or a directory path",
                    ))
                }
                None => {
                    if let Some(fixed) = missing_slashes(url) {
                        return Err(bad(&format!("did you mean {fixed}?")));
                    }
                    std::path::PathBuf::from(url)
                }
            };
            if dir.as_os_str().is_empty() {
                return Err(bad("empty path"));
            }
            let dir = std::path::absolute(&dir).map_err(|e| bad(&e.to_string()))?;
            let shown = dir.display().to_string();
            match std::fs::metadata(&dir) {
                Ok(m) if !m.is_dir() => {
                    return Err(StoreError::Unusable(
                        shown,
                        "it is a file, not a directory; fix the store URL".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !opts.create {
                        return Err(StoreError::Absent(shown));
                    }
                }
                Err(e) => {
                    return Err(StoreError::Unusable(
                        shown,
                        crate::io_cause::Cause(&e).to_string(),
                    ))
                }
            }
            std::fs::create_dir_all(&dir).map_err(|e| {
                StoreError::Unusable(
                    shown.clone(),
                    format!("cannot create it: {}", crate::io_cause::Cause(&e)),
                )
            })?;
            place = explain::Place {
                scheme: "file",
                bucket: shown,
                ..Default::default()
            };
            let local = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(&one_line(&e)))?;
            (Arc::new(local), String::new())
        };
        Ok(Store {
            inner,
            signer,
            root,
            url: redact(url),
            place: Arc::new(place),
            timeout: opts.timeout,
        })
    }
}

/// Google Cloud Storage at `url` (`gs://BUCKET/…`): the `GOOGLE_*` variables object_store
/// reads, then the URL's settings, with our retries and timeouts.
fn gcs(
    url: &str,
    settings: &Settings<'_>,
    opts: &StoreOptions,
) -> object_store::Result<Arc<dyn ObjectStore>> {
    use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder, GoogleConfigKey};
    let mut builder = GoogleCloudStorageBuilder::from_env()
        // object_store's default for GCS, which is often reached through a local endpoint.
        .with_client_options(client_options(
            opts,
            "GOOGLE_",
            ClientOptions::new().with_allow_http(true),
        ))
        .with_retry(retry_config(opts))
        .with_url(url);
    for (k, v) in settings {
        builder = builder.with_config(k.parse::<GoogleConfigKey>()?, *v);
    }
    // Unsigned requests (an emulator, a public bucket): object_store leaves reads unsigned but
    // still asks the metadata server for a token before every write, which off Google Cloud
    // fails after a long wait; an empty token is what it sends for reads.
    let skip = builder
        .get_config_value(&GoogleConfigKey::SkipSignature)
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    if skip {
        let none = GcpCredential {
            bearer: String::new(),
        };
        let none = object_store::StaticCredentialProvider::new(none);
        builder = builder.with_credentials(Arc::new(none));
    }
    Ok(Arc::new(builder.build()?))
}

/// Azure Blob Storage at `url` (`az://CONTAINER/…`, `abfs[s]://…`): the `AZURE_*` variables
/// object_store reads (Azurite with `AZURE_STORAGE_USE_EMULATOR=true`), then the URL's
/// settings, with our retries and timeouts.
fn azure(
    url: &str,
    settings: &Settings<'_>,
    opts: &StoreOptions,
) -> object_store::Result<Arc<dyn ObjectStore>> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_client_options(client_options(opts, "AZURE_", ClientOptions::new()))
        .with_retry(retry_config(opts))
        .with_url(url);
    for (k, v) in settings {
        builder = builder.with_config(k.parse::<AzureConfigKey>()?, *v);
    }
    Ok(Arc::new(builder.build()?))
}

/// Where a gs:// or az:// store is served when it is not the cloud's own endpoint (an
/// emulator), for messages.
fn emulator_endpoint(scheme: &str) -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match scheme {
        "gs" => var("GOOGLE_BASE_URL"),
        _ => var("AZURE_STORAGE_USE_EMULATOR")
            .filter(|v| v.eq_ignore_ascii_case("true") || v == "1")
            .map(|_| {
                var("AZURITE_BLOB_STORAGE_URL").unwrap_or_else(|| "http://127.0.0.1:10000".into())
            }),
    }
}

/// The HTTP client's settings from the backend's variables (`AWS_ALLOW_HTTP`,
/// `GOOGLE_PROXY_URL`…), with our timeouts.
fn client_options(opts: &StoreOptions, prefix: &str, base: ClientOptions) -> ClientOptions {
    let mut options = base;
    // (Variables that are not UTF-8 are refused by `settings::check` before this.)
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.into_string().ok()) else {
            continue;
        };
        let Some(name) = k.strip_prefix(prefix) else {
            continue;
        };
        if let Ok(key) = name.to_ascii_lowercase().parse::<ClientConfigKey>() {
            options = options.with_config(key, v);
        }
    }
    options
        .with_timeout(opts.timeout)
        .with_connect_timeout(opts.timeout.min(Duration::from_secs(5)))
}

fn retry_config(opts: &StoreOptions) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: opts.timeout,
    }
}

/// `key=value` settings of a URL.
type Settings<'a> = Vec<(&'a str, &'a str)>;

/// Splits `?key=value&…` settings off a URL (`s3://b/p?endpoint=http://…&region=eu-1`).
/// Credentials are refused: store and source URLs are written in messages, and a source URL
/// in every version imported from it.
fn url_settings(url: &str) -> Result<(&str, Settings<'_>), String> {
    let Some((bare, query)) = url.split_once('?') else {
        return Ok((url, Vec::new()));
    };
    let mut settings = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("setting '{pair}' has no value; write it as {pair}=VALUE"))?;
        let secret = ["key", "secret", "token", "password", "sas"];
        if secret.iter().any(|s| k.contains(s)) {
            return Err(format!(
                "'{k}' is a credential: set it in the environment (AWS_*, GOOGLE_*, AZURE_*), not in the URL, which is shown in messages and kept in imported versions"
            ));
        }
        settings.push((k, v));
    }
    Ok((bare, settings))
}

/// `s3:/bucket` or `s3:bucket` for `s3://bucket`: a URL of a known scheme with its slashes
/// mistyped, which would otherwise be taken for a directory named `s3:`.
fn missing_slashes(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once(':')?;
    let known = ["s3", "gs", "az", "abfs", "abfss", "file"];
    // A file URL's path is absolute: file:/data is file:///data.
    let root = if scheme == "file" { "/" } else { "" };
    known
        .contains(&scheme)
        .then(|| format!("{scheme}://{root}{}", rest.trim_start_matches('/')))
}

/// Drops any user:password part so credentials never reach messages.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}
