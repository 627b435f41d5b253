//! The settings a store takes from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`) and from
//! the settings of its URL, checked before the client library sees them. object_store panics
//! on some endpoints (one without a scheme), and when a value does not parse it says which
//! value but not which variable; here every such mistake names its variable and the fix.

use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;
use object_store::ClientConfigKey;

/// A setting of a store: its name as the user wrote it (`AWS_ENDPOINT_URL`, or `endpoint` in
/// the store URL), how object_store knows it (lower case, without the family's prefix for
/// URL settings) and its value.
struct Setting {
    shown: String,
    key: String,
    value: String,
    utf8: bool,
}

/// The prefixes of the variables of `scheme`'s family (Google's metadata server's are read
/// by the GCS client too).
fn prefixes(scheme: &str) -> &'static [&'static str] {
    match scheme {
        "s3" => &["AWS_"],
        "gs" => &["GOOGLE_", "GCE_METADATA_"],
        _ => &["AZURE_", "AZURITE_"],
    }
}

/// Every setting of `scheme`'s family: its variables, then the URL's settings (which win).
/// A value that is not UTF-8 is kept as its lossy text; [`check`] refuses it.
fn settings(scheme: &str, url_settings: &[(&str, &str)]) -> Vec<Setting> {
    let mut all: Vec<Setting> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            prefixes(scheme)
                .iter()
                .any(|p| k.starts_with(p))
                .then(|| Setting {
                    key: k.to_ascii_lowercase(),
                    value: v.to_string_lossy().into_owned(),
                    utf8: v.to_str().is_some(),
                    shown: k,
                })
        })
        .collect();
    all.extend(url_settings.iter().map(|(k, v)| Setting {
        shown: format!("{k}= in the store URL"),
        key: k.to_string(),
        value: v.to_string(),
        utf8: true,
    }));
    all
}

/// Whether object_store reads `key` (of `scheme`'s family) as a URL, and whether it is the
/// endpoint the bucket is reached at.
fn url_kind(scheme: &str, key: &str) -> Option<bool> {
    let proxy = |c: &ClientConfigKey| matches!(c, ClientConfigKey::ProxyUrl);
    match scheme {
        "s3" => match key.parse::<AmazonS3ConfigKey>().ok()? {
            AmazonS3ConfigKey::Endpoint => Some(true),
            AmazonS3ConfigKey::S3Endpoint
            | AmazonS3ConfigKey::MetadataEndpoint
            | AmazonS3ConfigKey::StsEndpoint
            | AmazonS3ConfigKey::ContainerCredentialsFullUri => Some(false),
            AmazonS3ConfigKey::Client(c) if proxy(&c) => Some(false),
            _ => None,
        },
        "gs" => match key.parse::<GoogleConfigKey>().ok()? {
            GoogleConfigKey::BaseUrl => Some(true),
            GoogleConfigKey::Client(c) if proxy(&c) => Some(false),
            _ => None,
        },
        _ if key == "azurite_blob_storage_url" => Some(true),
        _ => match key.parse::<AzureConfigKey>().ok()? {
            AzureConfigKey::Endpoint => Some(true),
            AzureConfigKey::MsiEndpoint
            | AzureConfigKey::AuthorityHost
            | AzureConfigKey::FabricTokenServiceUrl => Some(false),
            AzureConfigKey::Client(c) if proxy(&c) => Some(false),
            _ => None,
        },
    }
}

/// The name of the setting that says where `scheme`'s bucket is reached (the URL's
/// `endpoint=`, or the variable), or the family's usual variable when none is set.
pub(super) fn endpoint_name(scheme: &str, url_settings: &[(&str, &str)]) -> String {
    let set = settings(scheme, url_settings)
        .into_iter()
        .rev()
        .find(|s| url_kind(scheme, &s.key) == Some(true));
    match (set, scheme) {
        (Some(s), _) => s.shown,
        (None, "s3") => "AWS_ENDPOINT_URL".into(),
        (None, "gs") => "GOOGLE_BASE_URL".into(),
        (None, _) => "AZURE_STORAGE_ENDPOINT".into(),
    }
}

/// Checks every setting of `scheme`'s family before the client library sees it: text
/// without control characters (they end up in request headers, where the library panics),
/// and, for those it reads as URLs, an http:// or https:// URL with a host and nothing a URL
/// cannot hold, and an endpoint that does not end in the bucket (`bucket` goes in the store
/// URL).
pub(super) fn check(
    scheme: &str,
    bucket: &str,
    url_settings: &[(&str, &str)],
) -> Result<(), String> {
    let allow = super::explain::allow_http(scheme);
    for s in settings(scheme, url_settings) {
        let (name, v) = (&s.shown, s.value.as_str());
        if !s.utf8 {
            return Err(format!("{name} is not UTF-8 text; fix or unset it"));
        }
        // (The value is not shown: it may be a secret.)
        if v.chars().any(char::is_control) {
            return Err(format!(
                "{name} holds a control character (a newline?); remove it"
            ));
        }
        match s.key.as_str() {
            // A path on the container credentials server, and a host:port: no URLs.
            "aws_container_credentials_relative_uri" | "container_credentials_relative_uri" => {
                if !v.starts_with('/') || v.contains(char::is_whitespace) {
                    return Err(format!(
                        "{name} '{v}' is not a path (/...); fix or unset it"
                    ));
                }
                continue;
            }
            "gce_metadata_host" | "gce_metadata_ip" => {
                let ok = !v.is_empty()
                    && !v.contains(['/', '%', '@'])
                    && url::Url::parse(&format!("http://{v}")).is_ok_and(|u| u.host().is_some());
                if !ok {
                    return Err(format!(
                        "{name} '{v}' is not a HOST or HOST:PORT; fix or unset it"
                    ));
                }
                continue;
            }
            _ => {}
        }
        let Some(endpoint) = url_kind(scheme, &s.key) else {
            continue;
        };
        if !v.contains("://") {
            return Err(format!(
                "{name} '{v}' has no scheme: write https://{v}, or http://{v} (which also needs {allow})"
            ));
        }
        if v.contains(char::is_whitespace) {
            return Err(format!("{name} '{v}' holds a space; remove it"));
        }
        let url = url::Url::parse(v)
            .map_err(|e| format!("{name} '{v}' is not a URL ({e}); fix or unset it"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{name} '{v}' is not an http:// or https:// URL; fix or unset it"
            ));
        }
        // A host written with %-escapes is decoded here but not by the HTTP client.
        let authority = v.split("://").nth(1).and_then(|r| r.split('/').next());
        let escaped = authority.is_some_and(|a| a.contains('%'));
        let Some(host) = url.host_str().filter(|h| !h.is_empty() && !escaped) else {
            return Err(format!("{name} '{v}' names no host; fix or unset it"));
        };
        let first = url.path_segments().and_then(|mut p| p.next());
        if endpoint && scheme == "s3" && first == Some(bucket) {
            let port = url.port().map_or(String::new(), |p| format!(":{p}"));
            return Err(format!(
                "{name} '{v}' ends in the bucket '{bucket}': give the server alone ({}://{host}{port}), and the bucket in the store URL, s3://{bucket}/PREFIX",
                url.scheme()
            ));
        }
    }
    Ok(())
}

/// The variable behind a value object_store refused (`failed to parse "" as boolean`,
/// `"md5" is not a valid checksum algorithm`), as one line; `None` when the error quotes no
/// value of a setting.
pub(super) fn unparsed(scheme: &str, url_settings: &[(&str, &str)], error: &str) -> Option<String> {
    let known = |k: &str| match scheme {
        _ if k.parse::<ClientConfigKey>().is_ok() => true,
        "s3" => k.parse::<AmazonS3ConfigKey>().is_ok(),
        "gs" => k.parse::<GoogleConfigKey>().is_ok(),
        _ => k.parse::<AzureConfigKey>().is_ok(),
    };
    // The last match wins: URL settings come after variables, and override them.
    let (s, after) = settings(scheme, url_settings)
        .into_iter()
        .rev()
        .find_map(|s| {
            let quoted = format!("\"{}\"", s.value);
            let after = error.split_once(&quoted)?.1.trim().to_string();
            known(&s.key).then_some((s, after))
        })?;
    let value = &s.value;
    let expect = match after
        .strip_prefix("as ")
        .map(|t| t.split_whitespace().next().unwrap_or(""))
    {
        Some("boolean") => "is not true or false".to_string(),
        Some("Duration") => "is not a duration such as 30s".to_string(),
        Some("usize" | "u32") => "is not a whole number".to_string(),
        Some(other) => format!("is not a {other}"),
        None if after.is_empty() => "is not taken".to_string(),
        None => after,
    };
    Some(format!("{} '{value}' {expect}; fix or unset it", s.shown))
}

/// Whether a panic was raised inside the object-store client, where [`super::Store`] catches
/// it and says what is wrong instead ([`client_panic`]): the process's panic hook stays quiet
/// about it.
pub fn is_client_panic(info: &std::panic::PanicHookInfo<'_>) -> bool {
    info.location()
        .is_some_and(|l| l.file().contains("object_store"))
}

/// The client library refused to make a request to the store at `url` (it panicked): the
/// settings are at fault.
pub(super) fn client_panic(
    url: &str,
    scheme: &str,
    panic: Box<dyn std::any::Any + Send>,
) -> super::StoreError {
    let why = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no reason given");
    let family = match scheme {
        "s3" => "AWS_*",
        "gs" => "GOOGLE_*",
        _ => "AZURE_*",
    };
    super::StoreError::Setting(format!(
        "{url}: no request can be made to the store with these settings ({why}); check the {family} variables and the store URL for characters a URL or an HTTP header cannot hold"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_urls_of_the_server_alone() {
        let check = |v: &str| check("s3", "data", &[("endpoint", v)]);
        assert!(check("http://127.0.0.1:9000").is_ok());
        assert!(check("https://s3.example.com/gateway/").is_ok());
        let e = check("127.0.0.1:5099").unwrap_err();
        assert!(e.starts_with("endpoint= in the store URL '127.0.0.1:5099' has no scheme: write https://127.0.0.1:5099"), "{e}");
        assert!(e.contains("AWS_ALLOW_HTTP=true"), "{e}");
        let e = check("ftp://host").unwrap_err();
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
        let e = check("http://[::1").unwrap_err();
        assert!(e.contains("is not a URL"), "{e}");
        for bad in [" http://127.0.0.1:9000", "http://%41:80"] {
            assert!(check(bad).is_err(), "{bad}");
        }
        let e = super::check("s3", "data", &[("region", "eu-west-1\n")]).unwrap_err();
        assert!(e.contains("holds a control character"), "{e}");
        let e = check("http://127.0.0.1:9000/data").unwrap_err();
        assert!(
            e.contains("ends in the bucket 'data': give the server alone (http://127.0.0.1:9000)"),
            "{e}"
        );
        // Settings that are not URLs are not looked at.
        assert!(super::check("s3", "data", &[("region", "127.0.0.1:5099")]).is_ok());
        let e = super::check("az", "c", &[("endpoint", "localhost")]).unwrap_err();
        assert!(e.contains("AZURE_ALLOW_HTTP=true"), "{e}");
    }

    #[test]
    fn a_value_that_does_not_parse_is_named() {
        let e = "Generic Config error: failed to parse \"yes please\" as boolean";
        let said = unparsed("s3", &[("allow_http", "yes please")], e).unwrap();
        assert_eq!(
            said,
            "allow_http= in the store URL 'yes please' is not true or false; fix or unset it"
        );
        assert_eq!(unparsed("s3", &[], "connection refused"), None);
        let e = "Generic Config error: \"md5\" is not a valid checksum algorithm";
        let said = unparsed("s3", &[("checksum_algorithm", "md5")], e).unwrap();
        assert_eq!(
            said,
            "checksum_algorithm= in the store URL 'md5' is not a valid checksum algorithm; fix or unset it"
        );
    }
}
