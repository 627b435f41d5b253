//! Store failures in words for people: the one place where a client library's error
//! (object_store's text, with the server's XML inside) becomes a line that names the bucket,
//! endpoint or credential variable at fault and what to do about it, keeping the server's
//! error code so that it can be looked up.
//!
//! object_store does not export the HTTP status and body of a failed request, only its text,
//! so the text is what is read: the status after "status code: ", the S3 `<Code>` element,
//! and the messages of its HTTP client and credential providers.

/// Where a store lives, for naming it in messages.
#[derive(Clone, Debug, Default)]
pub struct Place {
    /// `s3`, `gs`, `az`: which family of variables and tools to point at; `file` for a
    /// local directory (whose path is then the bucket).
    pub scheme: &'static str,
    pub bucket: String,
    /// The endpoint requests go to, when it is not the provider's default.
    pub endpoint: Option<String>,
    /// The setting that names the endpoint (`AWS_ENDPOINT_URL`, `endpoint=` in the URL).
    pub endpoint_name: String,
}

impl Place {
    fn at(&self) -> String {
        match &self.endpoint {
            Some(e) => format!(" at {e}"),
            None => String::new(),
        }
    }
}

/// What a store refused, as one line, or `None` when the error is none of the kinds people
/// can fix from here (then it is reported as it is).
pub fn explain(place: &Place, error: &str) -> Option<String> {
    let code = xml_code(error);
    let with_code = |line: String| match &code {
        Some(c) => format!("{line} ({c})"),
        None => line,
    };
    let status = status(error);
    let s3 = place.scheme == "s3";
    if matches!(place.scheme, "" | "file") {
        return None;
    }
    if matches!(code.as_deref(), Some("NoSuchBucket" | "ContainerNotFound")) {
        return Some(with_code(missing_bucket(place)));
    }
    if code.as_deref() == Some("InvalidBucketName") {
        return Some(with_code(format!(
            "'{}' is not a valid bucket name (3 to 63 lowercase letters, digits, dots and \
             hyphens); fix the bucket in the store URL",
            place.bucket
        )));
    }
    if error.contains("URL scheme is not allowed") {
        let var = allow_http(place.scheme);
        let endpoint = place.endpoint.as_deref().unwrap_or("given");
        return Some(format!(
            "the endpoint {endpoint} is plain http, which is refused unless allowed: set \
             {var}, or use https"
        ));
    }
    if s3 && (error.contains("/latest/api/token") || error.contains("instance metadata")) {
        return Some(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or run where \
             an instance role or web identity provides them)"
                .to_string(),
        );
    }
    if let Some(line) = not_a_store(place, error, status) {
        return Some(line);
    }
    let denied = matches!(status, Some(401 | 403))
        || matches!(
            code.as_deref(),
            Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")
        );
    if denied {
        let fix = match (place.scheme, code.as_deref()) {
            ("s3", Some("InvalidAccessKeyId")) => {
                "check AWS_ACCESS_KEY_ID: the server does not know that key"
            }
            ("s3", Some("SignatureDoesNotMatch")) => {
                "check AWS_SECRET_ACCESS_KEY: it does not match AWS_ACCESS_KEY_ID"
            }
            ("s3", _) => {
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that they may read and \
                 write this bucket"
            }
            ("gs", _) => "check GOOGLE_APPLICATION_CREDENTIALS and the account's roles",
            _ => "check AZURE_STORAGE_ACCOUNT_NAME and its key or token",
        };
        return Some(with_code(format!(
            "access to bucket '{}'{} denied; {fix}",
            place.bucket,
            place.at()
        )));
    }
    None
}

/// The setting that lets `scheme`'s client speak plain http.
pub(super) fn allow_http(scheme: &str) -> &'static str {
    match scheme {
        "s3" => "AWS_ALLOW_HTTP=true",
        "gs" => "GOOGLE_ALLOW_HTTP=true",
        _ => "AZURE_ALLOW_HTTP=true",
    }
}

/// An endpoint where no object store answers: nothing listening, a plain-http server asked
/// for https, or a web server of another kind (whose page object_store would quote whole).
fn not_a_store(place: &Place, error: &str, status: Option<u16>) -> Option<String> {
    let endpoint = place.endpoint.as_deref().unwrap_or("the store's endpoint");
    let name = &place.endpoint_name;
    if error.contains("tcp connect error: Connection refused") {
        // The request may have gone elsewhere: to a credentials service.
        let asked = requested_origin(error);
        if let (Some(asked), Some(e)) = (&asked, &place.endpoint) {
            if !e.starts_with(asked.as_str()) {
                let family = match place.scheme {
                    "s3" => "AWS_*",
                    "gs" => "GOOGLE_* and GCE_METADATA_*",
                    _ => "AZURE_*",
                };
                return Some(format!(
                    "nothing is listening at {asked} (connection refused), where credentials \
                     were asked for; check the {family} variables that name it"
                ));
            }
        }
        return Some(format!(
            "nothing is listening at {endpoint} (connection refused); check {name}, and that \
             the server is running"
        ));
    }
    if error.contains("InvalidContentType") || error.contains("corrupt message") {
        let allow = allow_http(place.scheme);
        return Some(format!(
            "{endpoint} does not answer https (the TLS handshake failed): if the server is plain \
             http, write http:// in {name} and set {allow}"
        ));
    }
    let lower = error.to_ascii_lowercase();
    let page = lower.contains("<html") || lower.contains("<!doctype");
    let s3 = match place.scheme {
        "s3" => "an S3",
        "gs" => "a Cloud Storage",
        _ => "an Azure Blob Storage",
    };
    let tell = |what: String| {
        format!("{endpoint} answered {what}, not as {s3} server does; check that {name} is the address of its API")
    };
    if page {
        let status = status.map_or(String::new(), |s| format!("HTTP {s} with "));
        return Some(tell(format!("{status}a web page")));
    }
    if error.contains("ETag Header missing") {
        return Some(tell("without an ETag".into()));
    }
    None
}

/// The scheme, host and port a failed request went to, from object_store's "Error
/// performing GET http://host:port/… in 3ms".
fn requested_origin(error: &str) -> Option<String> {
    let rest = error.split("Error performing ").last()?;
    let url = rest.split_whitespace().nth(1)?;
    let parsed = url::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization())
}

/// The bucket (an Azure container) of the store URL is not there.
pub fn missing_bucket(place: &Place) -> String {
    let what = if place.scheme == "az" {
        "container"
    } else {
        "bucket"
    };
    format!(
        "{what} '{}' does not exist{}; create it (datastore never creates {what}s), or fix the \
         {what} in the store URL",
        place.bucket,
        place.at()
    )
}

/// What a local directory store refused (`op` is the request, GET, PUT…), from the system
/// error under object_store's: permissions, a full or read-only disk.
pub fn local(place: &Place, op: &str, error: &(dyn std::error::Error + 'static)) -> Option<String> {
    if place.scheme != "file" {
        return None;
    }
    let io = system_errors(error).next()?;
    let dir = &place.bucket;
    let access = match op {
        "GET" | "HEAD" | "LIST" => "read",
        _ => "write to",
    };
    Some(match io.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "no permission to {access} the store directory {dir}; check its owner and mode, \
             or run as a user who may"
        ),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            format!("the disk holding the store directory {dir} is full; free space there")
        }
        std::io::ErrorKind::ReadOnlyFilesystem => {
            format!("the store directory {dir} is on a read-only filesystem; it can only be read")
        }
        _ => return None,
    })
}

/// Whether a local store's error is a path through a file (`refs/NAME` a file where a
/// directory of refs belongs): for a read, the key is simply not there.
pub fn through_a_file(place: &Place, error: &(dyn std::error::Error + 'static)) -> bool {
    place.scheme == "file"
        && system_errors(error).any(|io| io.kind() == std::io::ErrorKind::NotADirectory)
}

/// The system errors in `error`'s chain of sources, outermost first (object_store wraps the
/// one that says what happened to the local file).
fn system_errors<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a std::io::Error> {
    let mut cause = Some(error);
    std::iter::from_fn(move || {
        let e = cause?;
        cause = e.source();
        Some(e)
    })
    .filter_map(|e| e.downcast_ref::<std::io::Error>())
}

/// What the server answered, without the client's text or the XML around it: `HTTP 500
/// (InternalError: We encountered an internal error)`. `None` when it sent no error code.
pub fn server_said(error: &str) -> Option<String> {
    let code = xml_code(error)?;
    let message = xml_element(error, "Message").filter(|m| !m.is_empty());
    let status = status(error).map_or(String::new(), |s| format!("HTTP {s} "));
    Some(match message {
        Some(m) => format!("the server answered {status}({code}: {m})"),
        None => format!("the server answered {status}({code})"),
    })
}

/// The HTTP status of a failed request, from object_store's "status code: 403 Forbidden".
fn status(error: &str) -> Option<u16> {
    let rest = error.split("status code: ").nth(1)?;
    rest.get(..3)?.parse().ok()
}

/// The `<Code>` of an S3-style XML error body.
fn xml_code(error: &str) -> Option<String> {
    xml_element(error, "Code")
        .filter(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The text of the first `<name>` element, on one line and at most 200 characters.
fn xml_element(error: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = error.find(&open)? + open.len();
    let len = error[start..].find(&format!("</{name}>"))?;
    let text: String = error[start..start + len]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Some(text.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3() -> Place {
        Place {
            scheme: "s3",
            bucket: "data".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            endpoint_name: "AWS_ENDPOINT_URL".into(),
        }
    }

    const XML: &str = "<?xml version=\"1.0\"?><Error><Code>CODE</Code><Message>m</Message>\
                       <RequestId>r</RequestId><HostId>h</HostId></Error>";

    fn failed(status: &str, code: &str) -> String {
        format!(
            "Generic S3 error: Error performing GET http://127.0.0.1:9000/data?list-type=2 in \
             2ms - Server returned non-2xx status code: {status}: {}",
            XML.replace("CODE", code)
        )
    }

    #[test]
    fn each_fault_names_what_to_fix_and_keeps_the_code() {
        let line = |e: &str| explain(&s3(), e).expect("explained");
        let l = line(&failed("404 Not Found", "NoSuchBucket"));
        assert!(
            l.starts_with("bucket 'data' does not exist at http://127.0.0.1:9000;"),
            "{l}"
        );
        assert!(l.ends_with("(NoSuchBucket)"), "{l}");
        let l = line(&failed("403 Forbidden", "InvalidAccessKeyId"));
        assert!(l.contains("denied; check AWS_ACCESS_KEY_ID"), "{l}");
        assert!(l.ends_with("(InvalidAccessKeyId)"), "{l}");
        let l = line(&failed("403 Forbidden", "SignatureDoesNotMatch"));
        assert!(l.contains("check AWS_SECRET_ACCESS_KEY"), "{l}");
        let l = line("Generic S3 error: HTTP error: builder error: URL scheme is not allowed");
        assert!(l.contains("set AWS_ALLOW_HTTP=true"), "{l}");
        let l = line(
            "Generic S3 error: Error performing PUT http://169.254.169.254/latest/api/token in \
             1s - HTTP error: error sending request",
        );
        assert!(
            l.starts_with("no AWS credentials: set AWS_ACCESS_KEY_ID"),
            "{l}"
        );
        let l = line(&failed("403 Forbidden", "AccessDenied"));
        assert!(!l.contains("<?xml") && !l.contains("RequestId"), "{l}");
    }

    #[test]
    fn other_server_errors_keep_only_what_the_server_said() {
        let e = failed("500 Internal Server Error", "InternalError").replace(
            "<Message>m</Message>",
            "<Message>We encountered an error</Message>",
        );
        assert_eq!(
            server_said(&e).unwrap(),
            "the server answered HTTP 500 (InternalError: We encountered an error)"
        );
        assert_eq!(server_said("connection refused"), None);
        let l = explain(&s3(), &failed("400 Bad Request", "InvalidBucketName")).unwrap();
        assert!(l.starts_with("'data' is not a valid bucket name"), "{l}");
    }

    #[test]
    fn other_errors_are_left_alone() {
        assert_eq!(explain(&s3(), &failed("404 Not Found", "NoSuchKey")), None);
        assert_eq!(
            explain(&s3(), &failed("500 Internal Server Error", "InternalError")),
            None
        );
        assert_eq!(explain(&s3(), "connection refused"), None);
    }

    #[test]
    fn endpoints_where_no_store_answers_are_named() {
        let line = |e: &str| explain(&s3(), e).expect("explained");
        let l = line("Generic S3 error: Error performing PUT http://127.0.0.1:9000/data/x/locks/push-1 in 1s, after 5 retries - HTTP error: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)");
        assert_eq!(l, "nothing is listening at http://127.0.0.1:9000 (connection refused); check AWS_ENDPOINT_URL, and that the server is running");
        let l = line("Generic S3 error: Error performing POST http://127.0.0.1:5098/creds in 1s - HTTP error: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)");
        assert!(l.starts_with("nothing is listening at http://127.0.0.1:5098 (connection refused), where credentials were asked for"), "{l}");
        let l = line("HTTP error: error sending request: client error (Connect): received corrupt message of type InvalidContentType");
        assert!(
            l.starts_with("http://127.0.0.1:9000 does not answer https"),
            "{l}"
        );
        assert!(l.ends_with("set AWS_ALLOW_HTTP=true"), "{l}");
        let l = line("Server returned non-2xx status code: 404 Not Found: <!DOCTYPE HTML> <html lang=\"en\"> <p>File not found.</p></html>");
        assert_eq!(l, "http://127.0.0.1:9000 answered HTTP 404 with a web page, not as an S3 server does; check that AWS_ENDPOINT_URL is the address of its API");
    }
}
