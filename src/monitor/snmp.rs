//! The `snmp` source: v1 and v2c GET, and WALK (one series per index,
//! labelled `index` with the OID suffix below the walked one).
//!
//! Values are typed: INTEGER, Counter32/64, Gauge32, Unsigned32 and
//! TimeTicks are numbers; an OCTET STRING (even `"42"`), an OID, an address
//! or `noSuchObject`/`noSuchInstance` is a failure, so a string is never
//! compared as a number. One UDP client per host, version and community is
//! kept and reused. The community is `snmp.community`, inline or a secret
//! (read when the job was planned), default `public`.

use std::collections::HashMap;
use std::time::Duration;

use async_snmp::{Auth, Client, Oid, Retry, Value};
use async_trait::async_trait;
use tokio::sync::Mutex;

use super::parse::Reading;
use super::{CollectError, Collector, Job, Outcome};
use crate::model::{SnmpVersion, Source};

type SnmpClient = Client<async_snmp::transport::UdpHandle>;

/// Reads SNMP agents.
#[derive(Default)]
pub struct SnmpCollector {
    clients: Mutex<HashMap<String, SnmpClient>>,
}

/// A typed value as a number, or why it is not one.
pub fn value_number(oid: &str, value: &Value) -> Result<f64, CollectError> {
    let not = |what: &str| Err(CollectError::Protocol(format!("`{oid}` is {what}, not a number")));
    match value {
        Value::Integer(i) => Ok(f64::from(*i)),
        Value::Counter32(v) | Value::Gauge32(v) | Value::UInteger32(v) | Value::TimeTicks(v) => Ok(f64::from(*v)),
        Value::Counter64(v) => Ok(*v as f64),
        Value::OctetString(s) => not(&format!("a string ({:?})", String::from_utf8_lossy(s))),
        Value::NoSuchObject => not("noSuchObject"),
        Value::NoSuchInstance => not("noSuchInstance"),
        Value::EndOfMibView => not("endOfMibView"),
        other => not(&format!("{other}")),
    }
}

impl SnmpCollector {
    async fn client(&self, job: &Job) -> Result<SnmpClient, CollectError> {
        let settings = job.target.as_ref().and_then(|t| t.snmp.as_ref());
        let (address, own_port) = (&job.address.host, job.address.port);
        let port = own_port.or(settings.and_then(|s| s.port)).unwrap_or(161);
        let community = job.credentials()?.community();
        let version = settings.and_then(|s| s.version).unwrap_or(SnmpVersion::V2c);
        let key = format!("{address}:{port}/{version:?}/{community}");
        if let Some(c) = self.clients.lock().await.get(&key) {
            return Ok(c.clone());
        }
        let auth = match version {
            SnmpVersion::V1 => Auth::v1(community),
            SnmpVersion::V2c => Auth::v2c(community),
        };
        let retry = Retry::fixed(1, Duration::ZERO).map_err(|e| CollectError::Config(format!("snmp retry: {e}")))?;
        let client = Client::builder((address.to_string(), port), auth)
            .request_timeout(job.timeout.min(Duration::from_secs(5)).max(Duration::from_millis(100)) / 2)
            .retry(retry)
            .connect()
            .await
            .map_err(|e| CollectError::Connect { addr: format!("{address}:{port}"), detail: e.to_string() })?;
        self.clients.lock().await.insert(key, client.clone());
        Ok(client)
    }

    async fn read(&self, job: &Job, oid_text: &str, walk: bool) -> Outcome {
        let oid = Oid::parse(oid_text.trim_start_matches('.')).map_err(|e| CollectError::Config(format!("OID `{oid_text}`: {e}")))?;
        let client = self.client(job).await?;
        if !walk {
            let resp = client.get(&oid).await.map_err(|e| CollectError::Protocol(format!("snmp GET `{oid_text}`: {e}")))?;
            let vb = resp.varbinds.first().ok_or_else(|| CollectError::Protocol(format!("snmp GET `{oid_text}`: empty response")))?;
            return Ok(vec![Reading::plain(value_number(oid_text, &vb.value)?)]);
        }
        let varbinds = client
            .walk(oid.clone())
            .map_err(|e| CollectError::Protocol(format!("snmp WALK `{oid_text}`: {e}")))?
            .collect()
            .await
            .map_err(|e| CollectError::Protocol(format!("snmp WALK `{oid_text}`: {e}")))?;
        if varbinds.is_empty() {
            return Err(CollectError::Protocol(format!("snmp WALK `{oid_text}`: nothing below this OID")));
        }
        let prefix = oid.arcs().len();
        varbinds
            .iter()
            .map(|vb| {
                let index: Vec<String> = vb.oid.arcs().iter().skip(prefix).map(u32::to_string).collect();
                let value = value_number(&vb.oid.to_string(), &vb.value)?;
                Ok(Reading::labelled("index", index.join("."), value))
            })
            .collect()
    }
}

#[async_trait]
impl Collector for SnmpCollector {
    async fn collect(&self, job: &Job) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(job.counters.len());
        for spec in &job.counters {
            let outcome = match &spec.counter.source {
                Source::Snmp(src) => self.read(job, &src.oid, src.walk).await,
                _ => Err(CollectError::Config("not an snmp source".into())),
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values() {
        assert_eq!(value_number("x", &Value::Integer(-3)), Ok(-3.0));
        assert_eq!(value_number("x", &Value::Counter64(1 << 40)), Ok(1_099_511_627_776.0));
        assert_eq!(value_number("x", &Value::TimeTicks(100)), Ok(100.0));
        assert_eq!(
            value_number("x", &Value::OctetString(b"42".to_vec().into())),
            Err(CollectError::Protocol("`x` is a string (\"42\"), not a number".into()))
        );
        assert!(value_number("x", &Value::NoSuchObject).is_err());
    }
}
