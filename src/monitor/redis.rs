//! The `redis` source: `LLEN key`, or any command whose reply is a number.
//!
//! One multiplexed connection per host (and database) is kept and shared by
//! every counter of that host; a broken one is dropped and reopened on the
//! next collection. A `redis.password` (read when the job was planned) is
//! sent with `AUTH` when the connection opens. Integer and double replies are numbers; a bulk or simple
//! string reply must be a number as a whole (strict, like the `number`
//! parser); nil, arrays and errors are failures.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::IntoConnectionInfo;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::parse::{number, Reading};
use super::{CollectError, Collector, Job, Outcome};
use crate::model::Source;

/// Reads Redis replies.
#[derive(Default)]
pub struct RedisCollector {
    connections: Mutex<HashMap<String, MultiplexedConnection>>,
}

fn url_of(job: &Job) -> (String, String) {
    let settings = job.target.as_ref().and_then(|t| t.redis.as_ref());
    let (address, own_port) = (&job.address.host, job.address.port);
    let port = own_port.or(settings.and_then(|s| s.port)).unwrap_or(6379);
    let db = settings.and_then(|s| s.db).unwrap_or(0);
    let addr = format!("{address}:{port}");
    (format!("redis://{addr}/{db}"), addr)
}

/// The connection pool's key: the URL, and the password the connection
/// authenticated with (kept in memory only), so a changed password opens a
/// new connection.
fn pool_key(job: &Job) -> String {
    let password = job.credentials().ok().and_then(|c| c.redis_password.as_ref()).map(|p| p.expose_secret()).unwrap_or_default();
    format!("{}|{password}", url_of(job).0)
}

/// A reply as a number.
pub fn reply_number(value: &redis::Value) -> Result<f64, CollectError> {
    match value {
        redis::Value::Int(i) => Ok(*i as f64),
        redis::Value::Double(d) if d.is_finite() => Ok(*d),
        redis::Value::BulkString(b) => Ok(number(&String::from_utf8_lossy(b))?),
        redis::Value::SimpleString(s) => Ok(number(s)?),
        redis::Value::Nil => Err(CollectError::Protocol("redis replied nil (no such key?)".into())),
        redis::Value::ServerError(e) => Err(CollectError::Protocol(format!("redis error: {e:?}"))),
        other => Err(CollectError::Protocol(format!("redis reply is not a number: {other:?}"))),
    }
}

impl RedisCollector {
    async fn connection(&self, job: &Job) -> Result<MultiplexedConnection, CollectError> {
        let password = job.credentials()?.redis_password.as_ref().map(|p| p.expose_secret());
        let (url, addr) = url_of(job);
        let key = pool_key(job);
        if let Some(c) = self.connections.lock().await.get(&key) {
            return Ok(c.clone());
        }
        let mut info = url.as_str().into_connection_info().map_err(|e| CollectError::Config(format!("redis url `{url}`: {e}")))?;
        if let Some(p) = password {
            let settings = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(|e| CollectError::Config(format!("redis url `{url}`: {e}")))?;
        let conn = client.get_multiplexed_async_connection().await.map_err(|e| match e.kind() {
            // a refused AUTH is not a reachability problem
            redis::ErrorKind::AuthenticationFailed => CollectError::Protocol(format!("redis `{addr}`: {e}")),
            _ => CollectError::Connect { addr, detail: e.to_string() },
        })?;
        self.connections.lock().await.insert(key, conn.clone());
        Ok(conn)
    }

    async fn forget(&self, job: &Job) {
        self.connections.lock().await.remove(&pool_key(job));
    }
}

#[async_trait]
impl Collector for RedisCollector {
    async fn collect(&self, job: &Job) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(job.counters.len());
        for spec in &job.counters {
            let Source::Redis(src) = &spec.counter.source else {
                outcomes.push(Err(CollectError::Config("not a redis source".into())));
                continue;
            };
            let cmd = match (&src.llen, &src.command) {
                (Some(key), _) => {
                    let mut c = redis::cmd("LLEN");
                    c.arg(key);
                    c
                }
                (None, Some(words)) if !words.is_empty() => {
                    let mut c = redis::cmd(&words[0]);
                    for w in &words[1..] {
                        c.arg(w);
                    }
                    c
                }
                _ => {
                    outcomes.push(Err(CollectError::Config("a redis source needs `llen` or `command`".into())));
                    continue;
                }
            };
            let outcome = async {
                let mut conn = self.connection(job).await?;
                match cmd.query_async::<redis::Value>(&mut conn).await {
                    Ok(v) => Ok(vec![Reading::plain(reply_number(&v)?)]),
                    Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() => {
                        self.forget(job).await;
                        Err(CollectError::Connect { addr: url_of(job).1, detail: e.to_string() })
                    }
                    Err(e) => Err(CollectError::Protocol(format!("redis: {e}"))),
                }
            }
            .await;
            outcomes.push(outcome);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_numbers_strictly() {
        assert_eq!(reply_number(&redis::Value::Int(3)), Ok(3.0));
        assert_eq!(reply_number(&redis::Value::Double(2.5)), Ok(2.5));
        assert_eq!(reply_number(&redis::Value::BulkString(b"42\n".to_vec())), Ok(42.0));
        assert!(reply_number(&redis::Value::BulkString(b"abc".to_vec())).is_err());
        assert!(reply_number(&redis::Value::Nil).is_err());
        assert!(reply_number(&redis::Value::Array(vec![])).is_err());
    }
}
