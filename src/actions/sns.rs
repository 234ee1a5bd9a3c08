//! The `notify.sns` action: an AWS SNS `Publish` over the Query API (a
//! form-encoded POST), signed with [`super::sigv4`].
//!
//! Credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
//! `AWS_SESSION_TOKEN`. Region: the action's `region`, else `AWS_REGION`,
//! else `AWS_DEFAULT_REGION`, else the topic ARN's. Endpoint: the action's
//! `endpoint`, else `https://sns.<region>.amazonaws.com/`.
//! A 5xx, a throttling error code, a timeout or a connection failure is
//! retryable; any other error reply is not.

use chrono::Utc;
use secrecy::SecretString;
use serde_json::json;

use super::sigv4::{self, Credentials, Scope};
use super::{ActionContext, ActionError, ActionOutput, Executor};
use crate::model::Sns;

/// The SNS API version of the Query protocol.
pub const API_VERSION: &str = "2010-03-31";

/// Error codes that say "try again later".
const RETRYABLE_CODES: [&str; 7] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

fn credentials(ex: &Executor) -> Result<Credentials, ActionError> {
    let (Some(id), Some(secret)) = (ex.opts.var("AWS_ACCESS_KEY_ID"), ex.opts.var("AWS_SECRET_ACCESS_KEY")) else {
        return Err(ActionError::permanent(
            "sns: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials) in scaler's environment",
        ));
    };
    let token = ex.opts.var("AWS_SESSION_TOKEN");
    for value in [Some(&secret), token.as_ref()].into_iter().flatten() {
        crate::redact::register(value);
    }
    Ok(Credentials {
        access_key_id: id,
        secret_access_key: SecretString::from(secret),
        session_token: token.map(SecretString::from),
    })
}

/// The region field of `arn:aws:sns:REGION:ACCOUNT:NAME`.
fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

fn region(ex: &Executor, s: &Sns) -> Result<String, ActionError> {
    s.region
        .clone()
        .or_else(|| ex.opts.var("AWS_REGION"))
        .or_else(|| ex.opts.var("AWS_DEFAULT_REGION"))
        .or_else(|| arn_region(&s.topic_arn).map(str::to_string))
        .ok_or_else(|| {
            ActionError::permanent(format!(
                "sns: no region for topic `{}`: set `region`, or AWS_REGION in scaler's environment",
                s.topic_arn
            ))
        })
}

/// `Action=Publish&Message=...&TopicArn=...&Version=2010-03-31`.
fn form(topic_arn: &str, message: &str) -> String {
    sigv4::form_body(&[("Action", "Publish"), ("Message", message), ("TopicArn", topic_arn), ("Version", API_VERSION)])
}

/// The text of the first `<tag>...</tag>`, XML entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(
        xml[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// An error reply: its code and message, and whether to retry.
fn reply_error(topic: &str, status: u16, xml: &str) -> ActionError {
    let code = xml_text(xml, "Code");
    let message = xml_text(xml, "Message").unwrap_or_else(|| super::snippet(xml, 200));
    let retryable = status >= 500 || code.as_deref().is_some_and(|c| RETRYABLE_CODES.contains(&c));
    let text = match code {
        Some(c) => format!("sns: publish to `{topic}` failed ({status} {c}): {message}"),
        None => format!("sns: publish to `{topic}` failed ({status}): {message}"),
    };
    ActionError { message: text, retryable, result: None }
}

pub(super) async fn execute(ex: &Executor, ctx: &ActionContext, s: &Sns) -> Result<ActionOutput, ActionError> {
    let creds = credentials(ex)?;
    let region = region(ex, s)?;
    let endpoint = s.endpoint.clone().unwrap_or_else(|| format!("https://sns.{region}.amazonaws.com/"));
    let url = super::http_url("sns", &endpoint)?;
    let message = super::render("sns: message", &s.message, ctx)?;
    let body = form(&s.topic_arn, &message);
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(ActionError::permanent(format!("sns: endpoint `{endpoint}` has no host"))),
    };
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let req = sigv4::Request {
        method: "POST",
        path: url.path(),
        query: url.query().unwrap_or(""),
        headers: vec![("content-type".into(), content_type.into()), ("host".into(), host.clone())],
        payload: body.as_bytes(),
    };
    let signed = sigv4::sign(&creds, Scope { region: &region, service: "sns" }, Utc::now(), &req);
    let what = format!("sns: publish to `{}` via `{endpoint}`", s.topic_arn);
    let client = ex.client(&what, &url, s.ca_file.as_deref()).await?;
    let mut builder = client
        .post(url.clone())
        .timeout(ex.opts.http_timeout)
        .header("content-type", content_type)
        .header("host", host);
    for (k, v) in &signed.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let resp = builder.body(body).send().await.map_err(|e| ex.http_error(&what, &e))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| ex.http_error(&what, &e))?;
    if !status.is_success() {
        return Err(reply_error(&s.topic_arn, status.as_u16(), &text));
    }
    let message_id = xml_text(&text, "MessageId").ok_or_else(|| {
        ActionError::permanent(format!("{what}: the reply has no MessageId: {}", super::snippet(&text, 200)))
    })?;
    Ok(ActionOutput {
        result: json!({
            "topic_arn": s.topic_arn,
            "region": region,
            "endpoint": endpoint,
            "message_id": message_id,
        }),
        mutations: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form("arn:aws:sns:us-east-1:1:t", "web is hot & 90%"),
            "Action=Publish&Message=web+is+hot+%26+90%25&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At&Version=2010-03-31"
        );
    }

    #[test]
    fn message_id_and_errors_from_xml() {
        let ok = "<PublishResponse><PublishResult><MessageId>94f2-&amp;x</MessageId></PublishResult></PublishResponse>";
        assert_eq!(xml_text(ok, "MessageId").as_deref(), Some("94f2-&x"));
        let nf = "<ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code><Message>Topic does not exist</Message></Error></ErrorResponse>";
        let e = reply_error("arn:t", 404, nf);
        assert_eq!(e.message, "sns: publish to `arn:t` failed (404 NotFound): Topic does not exist");
        assert!(!e.retryable);
        let th = "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
        assert!(reply_error("arn:t", 400, th).retryable);
        assert!(reply_error("arn:t", 503, "busy").retryable);
        assert_eq!(reply_error("arn:t", 503, "busy").message, "sns: publish to `arn:t` failed (503): busy");
    }

    #[test]
    fn region_from_the_arn() {
        assert_eq!(arn_region("arn:aws:sns:eu-west-1:123:ops"), Some("eu-west-1"));
        assert_eq!(arn_region("nonsense"), None);
    }
}
