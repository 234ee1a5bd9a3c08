//! Push webhooks (`POST /hooks/git`), the pure part: is a delivery signed
//! with the secret, what branch does it name, was it seen before. The HTTP
//! handler (`api::hooks`) feeds it headers and the raw body and turns the
//! [`Verdict`] into an answer; a matching push only wakes the git source,
//! which fetches its configured remote and branch.
//!
//! ```text
//! X-Hub-Signature-256: sha256=<hex>   GitHub: HMAC-SHA256 of the raw body
//! X-Gitlab-Token: <secret>            GitLab: the secret itself
//! X-Signature: sha256=<hex>           generic: HMAC-SHA256 of the raw body
//! ```
//!
//! Every comparison is constant-time. The payload is a hint: only `ref`
//! (which branch moved) and `after` (to spot a commit already fetched) are
//! read; a URL or a revision named in it is never used.

use std::collections::{HashSet, VecDeque};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The largest body a delivery may have (GitHub caps payloads at 25 MB,
/// but a push payload is a few KiB; only `ref` and `after` are read).
pub const MAX_BODY: usize = 1024 * 1024;
/// How many delivery ids are remembered to spot redeliveries.
pub const REMEMBERED: usize = 1024;

/// Who signed a delivery, as its headers tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// `X-Hub-Signature-256`.
    GitHub,
    /// `X-Gitlab-Token`.
    GitLab,
    /// `X-Signature`.
    Generic,
}

impl Signer {
    /// The word for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Signer::GitHub => "github",
            Signer::GitLab => "gitlab",
            Signer::Generic => "generic",
        }
    }
}

/// Why a delivery is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No signature header at all (or only GitHub's SHA-1 one).
    #[error("{0}")]
    Unsigned(&'static str),
    /// A signature header that does not match the body and the secret.
    #[error("the `{0}` signature does not match (check `daemon.source.webhook_secret`)")]
    BadSignature(&'static str),
    /// Signed, but the body is not a JSON object.
    #[error("the payload is not JSON: {0}")]
    Malformed(String),
}

/// The only fields of a push payload that are read.
#[derive(Debug, Deserialize)]
struct Hint {
    #[serde(default, rename = "ref")]
    branch_ref: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// What a verified delivery says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Who signed it.
    pub signer: Signer,
    /// The pushed ref (`refs/heads/main`), when the payload has one.
    pub branch_ref: Option<String>,
    /// The commit the ref points to after the push, when given.
    pub after: Option<String>,
    /// The delivery id (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`, `X-Delivery-Id`).
    pub delivery: Option<String>,
}

/// Checks the signature of `body` with `secret`, then reads the hint.
/// `header` looks a header up by its lower-case name.
pub fn verify<'h>(secret: &[u8], header: impl Fn(&str) -> Option<&'h str>, body: &[u8]) -> Result<Push, Refusal> {
    let signer = if let Some(sig) = header("x-hub-signature-256") {
        check_hmac(secret, sig, body).then_some(Signer::GitHub).ok_or(Refusal::BadSignature("X-Hub-Signature-256"))?
    } else if let Some(token) = header("x-gitlab-token") {
        let same: bool = token.as_bytes().ct_eq(secret).into();
        same.then_some(Signer::GitLab).ok_or(Refusal::BadSignature("X-Gitlab-Token"))?
    } else if let Some(sig) = header("x-signature") {
        check_hmac(secret, sig, body).then_some(Signer::Generic).ok_or(Refusal::BadSignature("X-Signature"))?
    } else if header("x-hub-signature").is_some() {
        return Err(Refusal::Unsigned("only a SHA-1 signature (`X-Hub-Signature`) was sent: it is not accepted; GitHub also sends `X-Hub-Signature-256` when the hook has a secret"));
    } else {
        return Err(Refusal::Unsigned("no signature: send `X-Hub-Signature-256` (GitHub), `X-Gitlab-Token` (GitLab) or `X-Signature: sha256=<hex>`"));
    };
    let hint: Hint = serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let delivery = ["x-github-delivery", "x-gitlab-event-uuid", "x-delivery-id"].iter().find_map(|h| header(h)).map(str::to_string);
    Ok(Push { signer, branch_ref: hint.branch_ref, after: hint.after, delivery })
}

/// `sha256=<hex>` against the HMAC-SHA256 of `body` (constant-time).
fn check_hmac(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The signature a sender puts in `X-Hub-Signature-256` or `X-Signature`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The recent delivery ids, oldest first, at most [`REMEMBERED`].
#[derive(Debug, Default)]
pub struct Recent {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Recent {
    /// Remembers `id`; false when it was already remembered.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.set.insert(id.to_string());
        true
    }
}

/// What to do with a verified push, given the followed `branch` and the
/// last commit fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fetch the configured remote now.
    Fetch,
    /// Another branch (or no `ref`: a ping, a tag): nothing to do.
    Ignored(String),
    /// The same delivery again, or a commit already fetched.
    Duplicate(String),
}

/// Decides on `push`; remembers its delivery id.
pub fn decide(push: &Push, branch: &str, last_fetched: Option<&str>, recent: &mut Recent) -> Action {
    let wanted = format!("refs/heads/{branch}");
    match push.branch_ref.as_deref() {
        None => return Action::Ignored("the payload names no `ref` (not a push)".into()),
        Some(r) if r != wanted => return Action::Ignored(format!("`{r}` is not the followed branch `{wanted}`")),
        Some(_) => {}
    }
    if let Some(id) = &push.delivery {
        if !recent.first_time(id) {
            return Action::Duplicate(format!("delivery `{id}` was received before"));
        }
    }
    match (&push.after, last_fetched) {
        (Some(after), Some(last)) if after.eq_ignore_ascii_case(last) => Action::Duplicate(format!("commit {} is already fetched", super::short(after))),
        _ => Action::Fetch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"abc123","repository":{"clone_url":"file:///elsewhere"}}"#;

    #[test]
    fn a_github_signature_is_hmac_sha256_of_the_raw_body() {
        // The example of GitHub's documentation: secret "It's a Secret to Everybody", body "Hello, World!".
        assert_eq!(sign(b"It's a Secret to Everybody", b"Hello, World!"), "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
        let sig = sign(b"s3cret", BODY);
        let push = verify(b"s3cret", headers(&[("x-hub-signature-256", &sig), ("x-github-delivery", "d1")]), BODY).unwrap();
        assert_eq!(
            push,
            Push { signer: Signer::GitHub, branch_ref: Some("refs/heads/main".into()), after: Some("abc123".into()), delivery: Some("d1".into()) }
        );
        assert_eq!(verify(b"s3cret", headers(&[("x-signature", &sig)]), BODY).map(|p| p.signer), Ok(Signer::Generic));
        assert_eq!(verify(b"s3cret", headers(&[("x-gitlab-token", "s3cret")]), BODY).map(|p| p.signer), Ok(Signer::GitLab));
    }

    #[test]
    fn every_bad_signature_is_refused() {
        let good = sign(b"s3cret", BODY);
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        let other = sign(b"s3cret", b"{}");
        let wrong = sign(b"other", BODY);
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [u8]);
        let cases: Vec<Case> = vec![
            (vec![], BODY),
            (vec![("x-hub-signature-256", &wrong)], BODY),
            (vec![("x-hub-signature-256", &good)], &tampered),
            (vec![("x-hub-signature-256", &other)], BODY),
            (vec![("x-hub-signature", "sha1=0123")], BODY),
            (vec![("x-hub-signature-256", good.trim_start_matches("sha256="))], BODY),
            (vec![("x-hub-signature-256", "sha256=zz")], BODY),
            (vec![("x-gitlab-token", "s3cre")], BODY),
            (vec![("x-gitlab-token", "")], BODY),
            (vec![("x-signature", &wrong)], BODY),
        ];
        for (h, body) in &cases {
            let r = verify(b"s3cret", headers(h), body);
            assert!(matches!(r, Err(Refusal::Unsigned(_) | Refusal::BadSignature(_))), "{h:?}: {r:?}");
        }
        // A bad GitHub signature is not rescued by a good GitLab token.
        assert_eq!(
            verify(b"s3cret", headers(&[("x-hub-signature-256", &wrong), ("x-gitlab-token", "s3cret")]), BODY),
            Err(Refusal::BadSignature("X-Hub-Signature-256"))
        );
    }

    #[test]
    fn signed_garbage_is_malformed_not_a_crash() {
        for body in [&b"not json"[..], b"", b"[1,2]", b"{\"ref\": 5}", b"\xff\xfe"] {
            let sig = sign(b"k", body);
            assert!(matches!(verify(b"k", headers(&[("x-signature", &sig)]), body), Err(Refusal::Malformed(_))), "{body:?}");
        }
    }

    #[test]
    fn only_the_followed_branch_fetches_and_redeliveries_do_not() {
        let push = |r: Option<&str>, after: Option<&str>, delivery: Option<&str>| Push {
            signer: Signer::GitHub,
            branch_ref: r.map(str::to_string),
            after: after.map(str::to_string),
            delivery: delivery.map(str::to_string),
        };
        let mut recent = Recent::default();
        assert_eq!(decide(&push(Some("refs/heads/main"), Some("c1"), Some("d1")), "main", None, &mut recent), Action::Fetch);
        assert!(matches!(decide(&push(Some("refs/heads/main"), Some("c2"), Some("d1")), "main", None, &mut recent), Action::Duplicate(_)));
        assert!(matches!(decide(&push(Some("refs/heads/main"), Some("c1"), Some("d2")), "main", Some("c1"), &mut recent), Action::Duplicate(_)));
        assert_eq!(decide(&push(Some("refs/heads/main"), Some("c3"), None), "main", Some("c1"), &mut recent), Action::Fetch);
        assert!(matches!(decide(&push(Some("refs/heads/prod"), None, Some("d9")), "main", None, &mut recent), Action::Ignored(_)));
        assert!(matches!(decide(&push(Some("refs/tags/main"), None, None), "main", None, &mut recent), Action::Ignored(_)));
        assert!(matches!(decide(&push(None, None, None), "main", None, &mut recent), Action::Ignored(_)));
        // An ignored delivery's id is not remembered: the same id on the right branch fetches.
        assert_eq!(decide(&push(Some("refs/heads/main"), None, Some("d9")), "main", None, &mut recent), Action::Fetch);
    }

    #[test]
    fn the_memory_of_delivery_ids_is_bounded() {
        let mut recent = Recent::default();
        for i in 0..REMEMBERED + 10 {
            assert!(recent.first_time(&format!("d{i}")));
        }
        assert_eq!(recent.order.len(), REMEMBERED);
        assert!(recent.first_time("d0"), "the oldest ids are forgotten");
        assert!(!recent.first_time(&format!("d{}", REMEMBERED + 9)));
    }
}
