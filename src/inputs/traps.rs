//! The SNMP trap receiver: v1 Trap-PDUs and v2c SNMPv2-Trap/InformRequest on
//! one UDP socket, through async-snmp's `NotificationReceiver` (which decodes,
//! and answers an accepted inform before handing it over).
//!
//! A trap carrying the configured community feeds every counter with source
//! `trap` whose `oid` is the trap's OID: `snmpTrapOID.0` for v2c, and for
//! v1 the OID derived from enterprise/generic/specific-trap as RFC 3584 §3
//! says (`enterprise.0.specific`, or `snmpTraps.(generic+1)`). The sample is
//! 1, or the number in varbind `value_oid` (a string or a missing varbind is
//! an error sample, never a number), for host = the sender's IP address.
//! A wrong community is dropped (an inform with it is not answered);
//! malformed datagrams are dropped and logged; the receiver never stops.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_snmp::notification::{Notification, NotificationAcceptance, NotificationEnvelope, NotificationReceiver};
use secrecy::ExposeSecret;

use crate::clock::SharedClock;
use super::{current, InputConfig, InputError, InputSink, SharedConfig, WarnLimiter};
use crate::monitor::snmp::value_number;
use crate::store::{Sample, SeriesKey};

/// Logs a warning unless too many were logged this minute.
fn warn_limited(limiter: &Mutex<WarnLimiter>, message: std::fmt::Arguments<'_>) {
    let (log, suppressed) = limiter.lock().unwrap_or_else(|p| p.into_inner()).allow();
    if suppressed > 0 {
        tracing::warn!(suppressed, "trap receiver: {suppressed} similar warnings suppressed in the last minute");
    }
    if log {
        tracing::warn!("trap receiver: {message}");
    }
}

/// The samples one trap gives: one per matching counter (pure).
pub fn map_trap(cfg: &InputConfig, notification: &Notification, source: SocketAddr, received_ms: i64) -> Result<Vec<Sample>, String> {
    let trap_oid = notification.trap_oid().map_err(|e| format!("trap without a usable trap OID: {e}"))?.to_string();
    let host = source.ip().to_canonical().to_string();
    let mut samples = Vec::new();
    for c in cfg.traps.iter().filter(|c| c.oid == trap_oid) {
        let series = SeriesKey { counter: c.counter.clone(), host: host.clone(), labels: c.labels.clone() };
        let sample = match &c.value_oid {
            None => Sample::value(series, received_ms, 1.0),
            Some(value_oid) => match notification.varbinds().iter().find(|vb| vb.oid.to_string() == *value_oid) {
                None => Sample::error(series, received_ms, format!("trap `{trap_oid}` has no varbind `{value_oid}`")),
                Some(vb) => match value_number(value_oid, &vb.value) {
                    Ok(v) => Sample::value(series, received_ms, v),
                    Err(e) => Sample::error(series, received_ms, e.to_string()),
                },
            },
        };
        samples.push(sample);
    }
    Ok(samples)
}

/// Accepts only notifications with the configured community (v1/v2c).
fn community_ok(cfg: &SharedConfig, envelope: &NotificationEnvelope<'_>) -> bool {
    let cfg = current(cfg);
    envelope.community.is_some_and(|c| c.matches(cfg.trap_community.expose_secret().as_bytes()))
}

/// A bound trap receiver; [`TrapReceiver::run`] serves it.
pub struct TrapReceiver {
    receiver: NotificationReceiver,
    cfg: SharedConfig,
    sink: Arc<dyn InputSink>,
    clock: SharedClock,
    warnings: Arc<Mutex<WarnLimiter>>,
}

impl TrapReceiver {
    /// Binds the UDP socket (`127.0.0.1:0` picks a free port; see
    /// [`TrapReceiver::local_addr`]).
    pub async fn bind(addr: &str, cfg: SharedConfig, sink: Arc<dyn InputSink>, clock: SharedClock) -> Result<TrapReceiver, InputError> {
        let warnings = Arc::new(Mutex::new(WarnLimiter::new()));
        let (policy_cfg, policy_warnings) = (cfg.clone(), warnings.clone());
        let receiver = NotificationReceiver::builder()
            .bind(addr)
            .acceptance_policy(move |envelope| {
                if community_ok(&policy_cfg, envelope) {
                    NotificationAcceptance::Accept
                } else {
                    warn_limited(&policy_warnings, format_args!("dropped a {:?} notification from {} with a wrong community", envelope.version, envelope.source));
                    NotificationAcceptance::Reject
                }
            })
            .build()
            .await
            .map_err(|e| InputError::Bind { addr: addr.to_string(), message: e.to_string() })?;
        Ok(TrapReceiver { receiver, cfg, sink, clock, warnings })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.receiver.local_addr()
    }

    /// Receives traps until the task is dropped; never returns on bad input.
    pub async fn run(self) {
        tracing::info!(listen = %self.local_addr(), "SNMP trap receiver started");
        loop {
            match self.receiver.recv().await {
                Ok(received) => {
                    let received_ms = self.clock.now_ms();
                    self.handle(&received.notification, received.source, received_ms).await;
                }
                Err(e) => {
                    warn_limited(&self.warnings, format_args!("receive failed: {e}"));
                    // A socket error may repeat at once; do not spin on it.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn handle(&self, notification: &Notification, source: SocketAddr, received_ms: i64) {
        let samples = match map_trap(&current(&self.cfg), notification, source, received_ms) {
            Ok(s) => s,
            Err(e) => return warn_limited(&self.warnings, format_args!("dropped a trap from {source}: {e}")),
        };
        if samples.is_empty() {
            tracing::debug!(%source, oid = ?notification.trap_oid().ok(), "trap matches no counter");
            return;
        }
        let sink = self.sink.clone();
        let n = samples.len();
        match tokio::task::spawn_blocking(move || sink.accept(samples)).await {
            Ok(Ok(())) => tracing::debug!(%source, samples = n, "trap recorded"),
            Ok(Err(e)) => warn_limited(&self.warnings, format_args!("lost a trap from {source}: cannot record it: {e}")),
            Err(e) => warn_limited(&self.warnings, format_args!("lost a trap from {source}: {e}")),
        }
    }
}

/// Binds `socket_addr` and receives traps forever (for the daemon; tests use
/// [`TrapReceiver::bind`] to learn the port first).
pub async fn run_trap_receiver(socket_addr: SocketAddr, cfg: SharedConfig, sink: Arc<dyn InputSink>, clock: SharedClock) -> Result<(), InputError> {
    TrapReceiver::bind(&socket_addr.to_string(), cfg, sink, clock).await?.run().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use async_snmp::{Community, Oid, Value, VarBind};

    use super::*;
    use crate::inputs::TrapCounter;
    use crate::store::SampleValue;

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    fn v2c(trap_oid: &str, varbinds: Vec<VarBind>) -> Notification {
        Notification::TrapV2c {
            community: Community::from("public"),
            uptime: 1,
            trap_oid: oid(trap_oid),
            varbinds,
            request_id: 1,
            decode_anomalies: vec![],
        }
    }

    fn cfg() -> InputConfig {
        let counter = |name: &str, value_oid: Option<&str>| TrapCounter {
            counter: name.into(),
            oid: "1.3.6.1.4.1.8072.2.3.0.1".into(),
            value_oid: value_oid.map(str::to_string),
            labels: BTreeMap::new(),
        };
        InputConfig { traps: vec![counter("hits", None), counter("level", Some("1.3.6.1.4.1.8072.2.3.2.1"))], ..InputConfig::default() }
    }

    #[test]
    fn a_trap_feeds_every_matching_counter() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let n = v2c("1.3.6.1.4.1.8072.2.3.0.1", vec![VarBind::new(oid("1.3.6.1.4.1.8072.2.3.2.1"), Value::Integer(42))]);
        let got = map_trap(&cfg(), &n, src, 5).unwrap();
        assert_eq!(got, vec![
            Sample::value(SeriesKey::new("hits", "192.0.2.7"), 5, 1.0),
            Sample::value(SeriesKey::new("level", "192.0.2.7"), 5, 42.0),
        ]);
        assert!(map_trap(&cfg(), &v2c("1.3.6.1.4.1.8072.2.3.0.2", vec![]), src, 5).unwrap().is_empty());
    }

    #[test]
    fn a_string_or_missing_value_is_an_error_sample() {
        let src: SocketAddr = "[::ffff:127.0.0.1]:162".parse().unwrap();
        let n = v2c("1.3.6.1.4.1.8072.2.3.0.1", vec![VarBind::new(oid("1.3.6.1.4.1.8072.2.3.2.1"), Value::OctetString(b"42".to_vec().into()))]);
        let got = map_trap(&cfg(), &n, src, 5).unwrap();
        assert_eq!(got[1].series.host, "127.0.0.1", "an IPv4-mapped sender shows as IPv4");
        assert!(matches!(&got[1].value, SampleValue::Error(e) if e.contains("a string")), "{:?}", got[1].value);
        let got = map_trap(&cfg(), &v2c("1.3.6.1.4.1.8072.2.3.0.1", vec![]), src, 5).unwrap();
        assert!(matches!(&got[1].value, SampleValue::Error(e) if e.contains("no varbind `1.3.6.1.4.1.8072.2.3.2.1`")));
    }
}
