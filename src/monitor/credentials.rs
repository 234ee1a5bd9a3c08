//! The secret settings a collection needs from its target: HTTP headers, the
//! SNMP community, the Redis password and the JMX password. [`resolve`]
//! reads them once, when the jobs are planned (never per request), with
//! [`crate::config::read_secret`], which registers every value with
//! [`crate::redact`] so that output, errors and logs that echo it show `***`.
//!
//! A secret that cannot be read (an unset environment variable, a missing
//! file) makes the job's every collection a failure that names the setting
//! and what is missing, never the value.
//!
//! Must not depend on: rules, the store, the CLI.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::CollectError;
use crate::model::{SecretRef, Source, Target, ValueOrSecret};

/// One request header of an `http` source.
#[derive(Debug)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// Its value.
    pub value: SecretString,
    /// Whether the value came from a secret (sent marked sensitive).
    pub secret: bool,
}

/// What a job's collector needs from its target's secret-capable settings,
/// read; only the fields of the job's source are filled.
#[derive(Debug, Default)]
pub struct Credentials {
    /// `http.headers`, inline and secret values alike, in name order.
    pub http_headers: Vec<Header>,
    /// `snmp.community`, inline or secret; `None`: the default (`public`).
    pub snmp_community: Option<SecretString>,
    /// `redis.password`.
    pub redis_password: Option<SecretString>,
    /// `jmx.password`.
    pub jmx_password: Option<SecretString>,
}

impl Credentials {
    /// The SNMP community to use.
    pub fn community(&self) -> &str {
        self.snmp_community.as_ref().map(|c| c.expose_secret()).unwrap_or("public")
    }
}

fn read(root: &Path, target: &Target, setting: &str, r: &SecretRef) -> Result<SecretString, CollectError> {
    crate::config::read_secret(root, r).map_err(|e| CollectError::Config(format!("target `{}` `{setting}`: {e}", target.name)))
}

fn value_or_secret(root: &Path, target: &Target, setting: &str, v: &ValueOrSecret) -> Result<(SecretString, bool), CollectError> {
    match v {
        ValueOrSecret::Value(v) => Ok((SecretString::from(v.clone()), false)),
        ValueOrSecret::Secret(r) => Ok((read(root, target, setting, r)?, true)),
    }
}

/// Reads the settings of `target` that a `source` counter uses (files
/// relative to the repo `root`). The first one that cannot be read is the
/// error.
pub fn resolve(root: &Path, target: &Target, source: &Source) -> Result<Credentials, CollectError> {
    let mut out = Credentials::default();
    match source {
        Source::Http(_) => {
            for (name, v) in target.http.iter().flat_map(|h| &h.headers) {
                let (value, secret) = value_or_secret(root, target, &format!("http.headers.{name}"), v)?;
                out.http_headers.push(Header { name: name.clone(), value, secret });
            }
        }
        Source::Snmp(_) => {
            if let Some(c) = target.snmp.as_ref().and_then(|s| s.community.as_ref()) {
                out.snmp_community = Some(value_or_secret(root, target, "snmp.community", c)?.0);
            }
        }
        Source::Redis(_) => {
            if let Some(p) = target.redis.as_ref().and_then(|r| r.password.as_ref()) {
                out.redis_password = Some(read(root, target, "redis.password", p)?);
            }
        }
        Source::Jmx(_) => {
            let jmx = target.jmx.as_ref();
            if let Some(p) = jmx.and_then(|j| j.password.as_ref()) {
                let password = read(root, target, "jmx.password", p)?;
                // The basic-auth header carries `user:password` in base64: mask that form too.
                let user = jmx.and_then(|j| j.user.as_deref()).unwrap_or_default();
                crate::redact::register(&format!("{user}:{}", password.expose_secret()));
                out.jmx_password = Some(password);
            }
        }
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(yaml: serde_json::Value) -> Target {
        serde_json::from_value(yaml).unwrap()
    }

    fn source(kind: &str) -> Source {
        let v = match kind {
            "http" => serde_json::json!({"http": {}}),
            "redis" => serde_json::json!({"redis": {"llen": "q"}}),
            "snmp" => serde_json::json!({"snmp": {"oid": "1.3"}}),
            _ => serde_json::json!({"jmx": {"mbean": "m:type=X", "attribute": "A"}}),
        };
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_the_settings_of_the_source_are_read_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("community"), "n0t-public\n").unwrap();
        let t = target(serde_json::json!({
            "name": "db", "hosts": ["h"],
            "http": {"headers": {"X-Plain": "yes", "X-Token": {"env": "SCALER_TEST_UNSET_HEADER_SECRET"}}},
            "snmp": {"community": {"file": "community"}},
            "redis": {"password": {"file": "absent"}},
        }));
        let snmp = resolve(dir.path(), &t, &source("snmp")).unwrap();
        assert_eq!(snmp.community(), "n0t-public");
        // the redis password is not read for an snmp counter, nor the headers
        assert!(snmp.redis_password.is_none() && snmp.http_headers.is_empty());
        let e = resolve(dir.path(), &t, &source("http")).unwrap_err();
        assert_eq!(e.to_string(), "target `db` `http.headers.X-Token`: secret environment variable `SCALER_TEST_UNSET_HEADER_SECRET` is not set");
        let e = resolve(dir.path(), &t, &source("redis")).unwrap_err();
        assert!(e.to_string().starts_with("target `db` `redis.password`: secret file `absent`: "), "{e}");
        let jmx = resolve(dir.path(), &t, &source("jmx")).unwrap();
        assert!(jmx.jmx_password.is_none());
        assert_eq!(Credentials::default().community(), "public");
    }
}
