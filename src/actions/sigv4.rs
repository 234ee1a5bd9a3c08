//! AWS Signature Version 4 for header-signed requests, written out with
//! `hmac` + `sha2` (see docs/decisions.md: the AWS SDK crates are far too
//! heavy for one `Publish` call). Pure: the time is a parameter.
//!
//! Canonical request = method, URI path (each segment URI-encoded once),
//! sorted canonical query, lowercase sorted headers with trimmed values,
//! the signed header list, hex SHA-256 of the payload. The signing key is
//! `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The algorithm name in the string to sign and the header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// AWS credentials. The secret and the token never appear in `Debug`.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The access key id (not secret: it appears in the signed header).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// A session token for temporary credentials (`X-Amz-Security-Token`).
    pub session_token: Option<SecretString>,
}

/// What is signed: region and service make the credential scope.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `us-east-1`.
    pub region: &'a str,
    /// `sns`, `iam`...
    pub service: &'a str,
}

/// A request to sign. `headers` must include `host`; `x-amz-date` (and the
/// session token) are added by [`sign`].
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `GET`, `POST`.
    pub method: &'a str,
    /// The URI path (`/`), not yet encoded.
    pub path: &'a str,
    /// The raw query string (`a=1&b=2`), already URI-encoded; may be empty.
    pub query: &'a str,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: &'a [u8],
}

/// The result of signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Headers to send in addition to the request's: `x-amz-date`,
    /// `authorization`, and `x-amz-security-token` when there is a token.
    pub headers: Vec<(String, String)>,
    /// The hex signature.
    pub signature: String,
    /// `content-type;host;x-amz-date`.
    pub signed_headers: String,
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let mut out = [0u8; 32];
    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) {
        mac.update(data);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// URI-encodes everything but the unreserved characters `A-Za-z0-9-_.~`
/// (and `/` when `keep_slash`), with uppercase hex as AWS requires.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An `application/x-www-form-urlencoded` body as the AWS SDKs write it for
/// Query APIs (Python's `urlencode`): unreserved characters kept, a space as
/// `+`, everything else `%XX`. Servers that re-encode the parsed form to check
/// a signature (moto) then hash the very same bytes.
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| uri_encode(s, false).replace("%20", "+");
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// Decodes `%XX` (and `+` as a space) so a query can be re-encoded canonically.
fn uri_decode(s: &str) -> String {
    fn hex_digit(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped = match (b, bytes.get(i + 1).copied().and_then(hex_digit), bytes.get(i + 2).copied().and_then(hex_digit)) {
            (b'%', Some(hi), Some(lo)) => Some(hi * 16 + lo),
            _ => None,
        };
        match (escaped, b) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical query: parameters decoded, re-encoded, sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&uri_decode(k), false), uri_encode(&uri_decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Lowercase names, sorted; values trimmed with inner runs of spaces collapsed;
/// repeated names joined with commas. Returns (canonical headers, signed list).
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut map: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for (k, v) in headers {
        let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
        map.entry(k.trim().to_ascii_lowercase()).or_default().push(value);
    }
    let canonical = map.iter().map(|(k, v)| format!("{k}:{}\n", v.join(","))).collect::<String>();
    let signed = map.keys().cloned().collect::<Vec<_>>().join(";");
    (canonical, signed)
}

/// The canonical request text (AWS task 1).
pub fn canonical_request(req: &Request<'_>) -> String {
    let path = if req.path.is_empty() { "/".to_string() } else { uri_encode(req.path, true) };
    let (headers, signed) = canonical_headers(&req.headers);
    format!(
        "{}\n{path}\n{}\n{headers}\n{signed}\n{}",
        req.method,
        canonical_query(req.query),
        sha256_hex(req.payload)
    )
}

/// `date/region/service/aws4_request`.
pub fn credential_scope(date: &str, scope: Scope<'_>) -> String {
    format!("{date}/{}/{}/aws4_request", scope.region, scope.service)
}

/// The string to sign (AWS task 2).
pub fn string_to_sign(amz_date: &str, scope: Scope<'_>, canonical_request: &str) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        credential_scope(date, scope),
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The signing key for a day (`YYYYMMDD`), region and service (AWS task 3).
pub fn signing_key(secret: &str, date: &str, scope: Scope<'_>) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Signs `req` at time `now`.
pub fn sign(creds: &Credentials, scope: Scope<'_>, now: DateTime<Utc>, req: &Request<'_>) -> Signed {
    let date_time = amz_date(now);
    let date = &date_time[..8];
    let mut req = req.clone();
    let mut extra = vec![("x-amz-date".to_string(), date_time.clone())];
    if let Some(t) = &creds.session_token {
        extra.push(("x-amz-security-token".to_string(), t.expose_secret().to_string()));
    }
    req.headers.extend(extra.iter().cloned());
    let canonical = canonical_request(&req);
    let (_, signed_headers) = canonical_headers(&req.headers);
    let to_sign = string_to_sign(&date_time, scope, &canonical);
    let key = signing_key(creds.secret_access_key.expose_secret(), date, scope);
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id,
        credential_scope(date, scope)
    );
    extra.push(("authorization".to_string(), authorization));
    Signed { headers: extra, signature, signed_headers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    // The example credentials and instant of AWS's SigV4 documentation and
    // test suite (aws-sig-v4-test-suite).
    const ACCESS: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn creds() -> Credentials {
        Credentials { access_key_id: ACCESS.into(), secret_access_key: SECRET.to_string().into(), session_token: None }
    }

    fn when() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 8, 30, 12, 36, 0).unwrap()
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn header<'a>(s: &'a Signed, name: &str) -> &'a str {
        s.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap()
    }

    /// The IAM `ListUsers` example of the SigV4 documentation, step by step.
    #[test]
    fn iam_list_users_example() {
        let scope = Scope { region: "us-east-1", service: "iam" };
        let req = Request {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: h(&[
                ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
                ("Host", "iam.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ]),
            payload: b"",
        };
        let canonical = canonical_request(&req);
        assert_eq!(
            canonical,
            "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
             content-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_hex(canonical.as_bytes()), "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
        let to_sign = string_to_sign("20150830T123600Z", scope, &canonical);
        assert_eq!(
            to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n\
             f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let key = signing_key(SECRET, "20150830", scope);
        assert_eq!(hex::encode(key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
        assert_eq!(hex::encode(hmac(&key, to_sign.as_bytes())), "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");

        // The same through `sign`, which adds x-amz-date itself.
        let mut req = req;
        req.headers.retain(|(k, _)| k != "X-Amz-Date");
        let s = sign(&creds(), scope, when(), &req);
        assert_eq!(s.signature, "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
        assert_eq!(
            header(&s, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        assert_eq!(header(&s, "x-amz-date"), "20150830T123600Z");
    }

    /// `get-vanilla` and `get-vanilla-query-order-key-case` of the test suite.
    #[test]
    fn test_suite_get_vanilla() {
        let scope = Scope { region: "us-east-1", service: "service" };
        let base = h(&[("Host", "example.amazonaws.com")]);
        let vanilla = Request { method: "GET", path: "/", query: "", headers: base.clone(), payload: b"" };
        let s = sign(&creds(), scope, when(), &vanilla);
        assert_eq!(s.signed_headers, "host;x-amz-date");
        assert_eq!(s.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
        let mut with_date = vanilla.clone();
        with_date.headers.push(("X-Amz-Date".into(), "20150830T123600Z".into()));
        assert_eq!(
            sha256_hex(canonical_request(&with_date).as_bytes()),
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        let query = Request { query: "Param2=value2&Param1=value1", ..vanilla };
        let s = sign(&creds(), scope, when(), &query);
        assert_eq!(s.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let scope = Scope { region: "us-east-1", service: "sns" };
        let mut c = creds();
        c.session_token = Some("TOKEN".to_string().into());
        let req = Request { method: "POST", path: "/", query: "", headers: h(&[("host", "sns.us-east-1.amazonaws.com")]), payload: b"x" };
        let s = sign(&c, scope, when(), &req);
        assert_eq!(s.signed_headers, "host;x-amz-date;x-amz-security-token");
        assert_eq!(header(&s, "x-amz-security-token"), "TOKEN");
        assert_ne!(s.signature, sign(&creds(), scope, when(), &req).signature);
        assert!(!format!("{c:?}").contains(SECRET), "the secret must not show in Debug");
    }

    #[test]
    fn encoding_and_canonical_query() {
        assert_eq!(uri_encode("a b+c/d~e", false), "a%20b%2Bc%2Fd~e");
        assert_eq!(uri_encode("/a b/c", true), "/a%20b/c");
        assert_eq!(uri_encode("é", false), "%C3%A9");
        assert_eq!(canonical_query("b=2&a=%7e1&a=0"), "a=0&a=~1&b=2");
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("flag"), "flag=");
        assert_eq!(form_body(&[("A", "x y+z"), ("B", "~ok&")]), "A=x+y%2Bz&B=~ok%26");
    }
}
