//! The QoS verdict in exact arithmetic, status answers as sent, and the
//! aggregate of status fields.
//!
//! Pure: no IO. A QoS such as `99.5` is an exact decimal (`995 / 10`), and
//! "met" means `ok × 100 ≥ qos × total` computed in integers, never floats.
//! A number in a status answer keeps the text it was sent as (`1.10` stays
//! `1.10`, which a float would make `1.1`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeMap;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Failure, Reason};

/// Most digits accepted after the decimal point of a QoS.
const MAX_DECIMALS: u32 = 9;

/// A QoS percentage in (0, 100], kept as `units / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    units: u64,
    scale: u32,
}

impl Qos {
    /// `ok × 100 ≥ qos × total`, exactly.
    pub fn met(&self, ok: u64, total: u64) -> bool {
        u128::from(ok) * 100 * pow10(self.scale) >= u128::from(self.units) * u128::from(total)
    }
}

fn pow10(n: u32) -> u128 {
    10u128.pow(n)
}

impl FromStr for Qos {
    type Err = String;

    fn from_str(s: &str) -> Result<Qos, String> {
        let text = s.trim().trim_end_matches('%');
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() && frac.is_empty() || !digits(int) || !digits(frac) {
            return Err(format!("`{s}` is not a percentage such as `99` or `99.5`"));
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > MAX_DECIMALS as usize {
            return Err(format!("`{s}` has more than {MAX_DECIMALS} decimals"));
        }
        let int = int.trim_start_matches('0');
        if int.len() > 3 {
            return Err(format!("qos `{s}` must be in (0, 100]"));
        }
        let scale = frac.len() as u32;
        let units = format!("{int}{frac}").parse::<u64>().unwrap_or(0);
        let qos = Qos { units, scale };
        if units == 0 || u128::from(units) > 100 * pow10(scale) {
            return Err(format!("qos `{s}` must be in (0, 100]"));
        }
        Ok(qos)
    }
}

impl fmt::Display for Qos {
    /// The shortest exact decimal: `99`, `99.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = pow10(self.scale);
        let units = u128::from(self.units);
        if self.scale == 0 {
            write!(f, "{units}")
        } else {
            write!(f, "{}.{:0width$}", units / p, units % p, width = self.scale as usize)
        }
    }
}

impl Qos {
    /// The QoS as a percentage with at least two decimals, exactly:
    /// `99.00%`, `99.50%`, `33.333333333%`.
    pub fn percent(&self) -> String {
        let scale = self.scale.max(2);
        let units = u128::from(self.units) * pow10(scale - self.scale);
        let p = pow10(scale);
        format!("{}.{:0width$}%", units / p, units % p, width = scale as usize)
    }
}

impl Serialize for Qos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `ok × 100 / total` rounded down to two decimals (`"57.00"`), so the shown
/// value never exceeds the true one.
pub fn actual_percent(ok: u64, total: u64) -> String {
    if total == 0 {
        return "0.00".to_string();
    }
    let hundredths = u128::from(ok) * 10_000 / u128::from(total);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// `num / den` rounded half up to six decimals (`"0.985123"`); `None` when `den` is 0.
pub fn ratio6(num: u128, den: u128) -> Option<String> {
    if den == 0 {
        return None;
    }
    let scaled = (num.saturating_mul(2_000_000) / den).div_ceil(2);
    Some(format!("{}.{:06}", scaled / 1_000_000, scaled % 1_000_000))
}

/// Which fields of the status JSON are grouped and summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fields {
    /// Group by these fields, in order (values are opaque strings).
    pub group_by: Vec<String>,
    /// Summed as successes.
    pub success: String,
    /// Summed as requests (the success rate's denominator).
    pub requests: String,
    /// Summed as errors.
    pub errors: String,
}

impl Default for Fields {
    /// The keys the fleet's `/status` uses (clusterstats).
    fn default() -> Fields {
        Fields {
            group_by: vec!["Application".to_string(), "Version".to_string()],
            success: "Success_Count".to_string(),
            requests: "Request_Count".to_string(),
            errors: "Error_Count".to_string(),
        }
    }
}

/// What one host contributes to the aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The group-by values.
    pub key: Vec<String>,
    /// Successes.
    pub success: u64,
    /// Requests.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
}

/// A status answer: its JSON object, and the text each top-level number was
/// sent as. serde_json reads a number without an exponent or fraction that
/// fits as an integer exactly, but any other as an `f64`, which loses text
/// (`1.10` becomes `1.1`, `1e3` becomes `1000.0`); the text is read from the
/// body itself ([`RawValue`]), for this field only, without changing how
/// numbers are read anywhere else.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusBody {
    /// The object, as serde_json reads it.
    pub object: Map<String, Value>,
    /// Top-level number fields -> their text in the body.
    pub number_text: BTreeMap<String, String>,
}

impl StatusBody {
    /// Parses a body that must be a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<StatusBody, Failure> {
        let bad = |detail: String| Failure { reason: Reason::BadJson, detail };
        let object = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return Err(bad(format!("expected a JSON object, got {}", crate::model::json_type(&other)))),
            Err(e) => return Err(bad(format!("invalid JSON: {e}"))),
        };
        let mut number_text = BTreeMap::new();
        if object.values().any(Value::is_number) {
            // The body parsed as an object above, so it parses as this too.
            if let Ok(raw) = serde_json::from_slice::<BTreeMap<String, &RawValue>>(bytes) {
                for (k, v) in raw {
                    if object.get(&k).is_some_and(Value::is_number) {
                        number_text.insert(k, v.get().to_string());
                    }
                }
            }
        }
        Ok(StatusBody { object, number_text })
    }

    /// The text of a field for grouping: a string as is, a number as sent,
    /// `true`/`false`; `None` for a missing field, null, an array or an object.
    fn group_text(&self, name: &str) -> Option<Result<String, &Value>> {
        let v = self.object.get(name)?;
        Some(match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(self.number_text.get(name).cloned().unwrap_or_else(|| n.to_string())),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(other),
        })
    }
}

impl From<Map<String, Value>> for StatusBody {
    /// An object without the text of its numbers (they print as serde_json reads them).
    fn from(object: Map<String, Value>) -> StatusBody {
        StatusBody { object, number_text: BTreeMap::new() }
    }
}

impl Serialize for StatusBody {
    /// The object, its top-level numbers written as they were sent.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.object.len()))?;
        for (k, v) in &self.object {
            match self.number_text.get(k).and_then(|t| RawValue::from_string(t.clone()).ok()) {
                Some(raw) => map.serialize_entry(k, &raw)?,
                None => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// Reads the fields from a status answer; a missing or mistyped field fails the host.
pub fn extract(body: &StatusBody, fields: &Fields) -> Result<Sample, Failure> {
    let mut key = Vec::with_capacity(fields.group_by.len());
    for name in &fields.group_by {
        let text = match body.group_text(name) {
            Some(Ok(text)) => text,
            Some(Err(other)) => return Err(missing(format!("`{name}` is not a string: {}", short(other)))),
            None => return Err(missing(format!("`{name}` is missing"))),
        };
        key.push(text);
    }
    let number = |name: &str| -> Result<u64, Failure> {
        match body.object.get(name) {
            Some(v) => v.as_u64().ok_or_else(|| missing(format!("`{name}` is not a non-negative integer: {}", short(v)))),
            None => Err(missing(format!("`{name}` is missing"))),
        }
    };
    Ok(Sample { key, success: number(&fields.success)?, requests: number(&fields.requests)?, errors: number(&fields.errors)? })
}

fn missing(detail: String) -> Failure {
    Failure { reason: Reason::MissingField, detail }
}

fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 60 {
        let mut cut = 57;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// One aggregate row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The group-by values, in the order of [`Fields::group_by`].
    pub values: Vec<String>,
    /// Hosts in this group.
    pub hosts: u64,
    /// Sum of the success field.
    pub success: u128,
    /// Sum of the requests field.
    pub requests: u128,
    /// Sum of the errors field.
    pub errors: u128,
    /// `success / requests` to six decimals, `null` when no requests.
    pub success_rate: Option<String>,
}

/// Sums samples by key; rows come out sorted by the values (byte order).
#[derive(Debug, Default)]
pub struct Aggregator {
    groups: BTreeMap<Vec<String>, (u64, u128, u128, u128)>,
}

impl Aggregator {
    /// Adds one host.
    pub fn add(&mut self, s: Sample) {
        let g = self.groups.entry(s.key).or_default();
        g.0 += 1;
        g.1 += u128::from(s.success);
        g.2 += u128::from(s.requests);
        g.3 += u128::from(s.errors);
    }

    /// The rows, sorted by the group-by values.
    pub fn rows(&self) -> Vec<Row> {
        self.groups
            .iter()
            .map(|(k, &(hosts, success, requests, errors))| Row {
                values: k.clone(),
                hosts,
                success,
                requests,
                errors,
                success_rate: ratio6(success, requests),
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Qos {
        s.parse().unwrap()
    }

    #[test]
    fn qos_boundaries_are_exact() {
        assert!(q("57").met(57, 100));
        assert!(!q("57").met(56, 100));
        assert!(q("99.5").met(995, 1000));
        assert!(!q("99.5").met(994, 1000));
        assert!(q("100").met(10, 10));
        assert!(!q("100").met(9, 10));
        // 1/3 of 100 % is 33.33...: 33.333333333 passes, 33.333333334 does not
        assert!(q("33.333333333").met(1, 3));
        assert!(!q("33.333333334").met(1, 3));
        // a float would call 0.1 + 0.2 style values wrong; integers do not
        assert!(q("0.3").met(3, 1000));
        assert!(!q("0.3").met(2, 1000));
        assert!(q("99.99").met(9999, 10000) && !q("99.99").met(9998, 10000));
        assert!(q("100").met(u64::MAX, u64::MAX) && !q("100").met(u64::MAX - 1, u64::MAX));
    }

    #[test]
    fn qos_parsing() {
        assert_eq!(q("99").to_string(), "99");
        assert_eq!(q("99.50").to_string(), "99.5");
        assert_eq!(q("099.5%").to_string(), "99.5");
        assert_eq!(q(".5").to_string(), "0.5");
        assert_eq!(q("100.000").to_string(), "100");
        assert_eq!(q("0.000000001").to_string(), "0.000000001");
        for bad in ["0", "0.0", "100.01", "101", "-1", "", ".", "1e2", "nan", "99,5", "1000", "0.0000000001", "5 0"] {
            assert!(bad.parse::<Qos>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn percent_and_ratio_rounding() {
        assert_eq!(actual_percent(57, 100), "57.00");
        assert_eq!(actual_percent(2, 3), "66.66");
        assert_eq!(actual_percent(9999, 10000), "99.99");
        assert_eq!(ratio6(2, 3), Some("0.666667".into()));
        assert_eq!(ratio6(1, 3), Some("0.333333".into()));
        assert_eq!(ratio6(5, 5), Some("1.000000".into()));
        assert_eq!(ratio6(1, 0), None);
    }

    #[test]
    fn extract_reads_fields_and_names_what_is_missing() {
        let f = Fields::default();
        let ok = json!({"Application": "app1", "Version": "1.10", "Success_Count": 9, "Request_Count": 10, "Error_Count": 1});
        let body = |v: Value| StatusBody::from(v.as_object().unwrap().clone());
        let s = extract(&body(ok), &f).unwrap();
        assert_eq!(s, Sample { key: vec!["app1".into(), "1.10".into()], success: 9, requests: 10, errors: 1 });
        let no_count = json!({"Application": "a", "Version": "1", "Request_Count": 10, "Error_Count": 1});
        let e = extract(&body(no_count), &f).unwrap_err();
        assert_eq!((e.reason, e.detail.as_str()), (Reason::MissingField, "`Success_Count` is missing"));
        let text = json!({"Application": "a", "Version": "1", "Success_Count": "9", "Request_Count": 10, "Error_Count": 1});
        let e = extract(&body(text), &f).unwrap_err();
        assert_eq!(e.detail, "`Success_Count` is not a non-negative integer: \"9\"");
        let no_app = json!({"Version": "1"});
        assert_eq!(extract(&body(no_app), &f).unwrap_err().detail, "`Application` is missing");
    }

    #[test]
    fn numbers_keep_the_text_they_were_sent_as() {
        let sent = br#"{"Application": "web", "Version":  1.10 , "Build": 1e3, "Big": 12345678901234567890123, "Success_Count": 9, "Request_Count": 10, "Error_Count": 1, "n": {"x": 1.50}}"#;
        let b = StatusBody::parse(sent).unwrap();
        let f = Fields { group_by: vec!["Application".into(), "Version".into(), "Build".into(), "Big".into()], ..Fields::default() };
        let s = extract(&b, &f).unwrap();
        assert_eq!(s.key, ["web", "1.10", "1e3", "12345678901234567890123"]);
        assert_eq!((s.success, s.requests, s.errors), (9, 10, 1));
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"Application":"web","Version":1.10,"Build":1e3,"Big":12345678901234567890123,"Success_Count":9,"Request_Count":10,"Error_Count":1,"n":{"x":1.5}}"#
        );
        let e = StatusBody::parse(b"[1]").unwrap_err();
        assert_eq!((e.reason, e.detail.as_str()), (Reason::BadJson, "expected a JSON object, got an array"));
        assert!(StatusBody::parse(b"{").unwrap_err().detail.starts_with("invalid JSON: "));
    }

    #[test]
    fn percent_has_two_decimals_at_least_and_stays_exact() {
        assert_eq!(q("99").percent(), "99.00%");
        assert_eq!(q("99.5").percent(), "99.50%");
        assert_eq!(q("100").percent(), "100.00%");
        assert_eq!(q("33.333333333").percent(), "33.333333333%");
        assert_eq!(q("0.001").percent(), "0.001%");
    }

    #[test]
    fn aggregate_sorts_and_keeps_versions_opaque() {
        let mut a = Aggregator::default();
        let s = |app: &str, v: &str, ok: u64, req: u64| Sample { key: vec![app.into(), v.into()], success: ok, requests: req, errors: req - ok };
        a.add(s("b", "1.1", 1, 2));
        a.add(s("a", "1.10", 3, 4));
        a.add(s("a", "1.1", 5, 5));
        a.add(s("a", "1.10", 1, 2));
        let rows = a.rows();
        let keys: Vec<_> = rows.iter().map(|r| r.values.join("/")).collect();
        assert_eq!(keys, vec!["a/1.1", "a/1.10", "b/1.1"]);
        assert_eq!((rows[1].hosts, rows[1].success, rows[1].requests, rows[1].errors), (2, 4, 6, 2));
        assert_eq!(rows[1].success_rate.as_deref(), Some("0.666667"));
    }
}
