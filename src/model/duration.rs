//! Durations (`"90s"`, `"5m"`, `"1h30m"`) and percentages (`"90%"`, `90`).

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern a duration string must match: one or more `<digits><unit>`
/// with units `ms`, `s`, `m`, `h`, `d`.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h|d))+$";

/// A duration written as text in the config. Keeps the text as written so that
/// plans show what the user wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

impl Duration {
    /// Parses `"90s"`, `"5m"`, `"1h30m"`, `"250ms"`, `"2d"`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let mut total: u128 = 0;
        let mut rest = text;
        if rest.is_empty() {
            return Err("empty duration".into());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("`{text}` is not a duration: expected a number at `{rest}`"));
            }
            let (num, tail) = rest.split_at(digits);
            let n: u128 = num
                .parse()
                .map_err(|_| format!("`{text}` is not a duration: number too large"))?;
            let (unit_ms, tail) = if let Some(t) = tail.strip_prefix("ms") {
                (1u128, t)
            } else if let Some(t) = tail.strip_prefix('s') {
                (1_000, t)
            } else if let Some(t) = tail.strip_prefix('m') {
                (60_000, t)
            } else if let Some(t) = tail.strip_prefix('h') {
                (3_600_000, t)
            } else if let Some(t) = tail.strip_prefix('d') {
                (86_400_000, t)
            } else {
                return Err(format!(
                    "`{text}` is not a duration: expected a unit (ms, s, m, h, d) after `{num}`"
                ));
            };
            total = n
                .checked_mul(unit_ms)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("`{text}` is not a duration: too large"))?;
            rest = tail;
        }
        let ms = u64::try_from(total).map_err(|_| format!("`{text}` is not a duration: too large"))?;
        Ok(Duration {
            text: text.to_string(),
            value: std::time::Duration::from_millis(ms),
        })
    }

    /// A duration from a value, written in the largest exact unit.
    pub fn from_std(value: std::time::Duration) -> Duration {
        let ms = value.as_millis();
        let text = if ms % 86_400_000 == 0 && ms > 0 {
            format!("{}d", ms / 86_400_000)
        } else if ms % 3_600_000 == 0 && ms > 0 {
            format!("{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 && ms > 0 {
            format!("{}m", ms / 60_000)
        } else if ms % 1_000 == 0 {
            format!("{}s", ms / 1_000)
        } else {
            format!("{ms}ms")
        };
        Duration { text, value }
    }

    /// The value.
    pub fn get(&self) -> std::time::Duration {
        self.value
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as \"90s\", \"5m\", \"1h30m\" or \"250ms\" (units: ms, s, m, h, d).",
            "examples": ["90s", "5m"]
        })
    }
}

/// A percentage in `[0, 100]`, written `"90%"` or `90`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(f64);

/// The pattern a percentage string must match.
/// Like [`Percent::parse`], it rejects values above 100.
pub const PERCENT_PATTERN: &str = "^(100(\\.0+)?|[0-9]{1,2}(\\.[0-9]+)?)%$";

impl Percent {
    /// Parses `"90%"` or `"12.5%"`.
    pub fn parse(text: &str) -> Result<Percent, String> {
        let num = text
            .strip_suffix('%')
            .ok_or_else(|| format!("`{text}` is not a percentage: expected a number followed by `%`"))?;
        let v: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a percentage"))?;
        Percent::new(v)
    }

    /// A percentage from a number in `[0, 100]`.
    pub fn new(v: f64) -> Result<Percent, String> {
        if v.is_finite() && (0.0..=100.0).contains(&v) {
            Ok(Percent(v))
        } else {
            Err(format!("{v} is not a percentage between 0 and 100"))
        }
    }

    /// The value in `[0, 100]`.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}%", self.0))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(v) => Percent::new(v),
            Raw::Text(t) => Percent::parse(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A percentage: \"90%\" or a number from 0 to 100.",
            "anyOf": [
                { "type": "string", "pattern": PERCENT_PATTERN },
                { "type": "number", "minimum": 0, "maximum": 100 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(Duration::parse("90s").unwrap().get().as_secs(), 90);
        assert_eq!(Duration::parse("5m").unwrap().get().as_secs(), 300);
        assert_eq!(Duration::parse("1h30m").unwrap().get().as_secs(), 5400);
        assert_eq!(Duration::parse("250ms").unwrap().get().as_millis(), 250);
        assert_eq!(Duration::parse("2d").unwrap().get().as_secs(), 172_800);
        assert_eq!(Duration::parse("0s").unwrap().get().as_secs(), 0);
        for bad in ["", "5", "s", "5x", "5 m", "-5s", "5m3", "99999999999999999999999d"] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn durations_keep_their_text() {
        assert_eq!(Duration::parse("60s").unwrap().to_string(), "60s");
        assert_eq!(Duration::from_std(std::time::Duration::from_secs(120)).as_str(), "2m");
        assert_eq!(Duration::from_std(std::time::Duration::from_millis(1500)).as_str(), "1500ms");
    }

    #[test]
    fn percents_parse() {
        assert_eq!(Percent::parse("90%").unwrap().get(), 90.0);
        assert_eq!(Percent::parse("12.5%").unwrap().get(), 12.5);
        assert!(Percent::parse("90").is_err());
        assert!(Percent::parse("101%").is_err());
        assert!(Percent::new(-1.0).is_err());
    }
}
