//! Typed values: what a left operand resolves to and what a right operand means, compared with the right type.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

/// A typed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "camelCase")]
pub enum Value {
    Integer(i64),
    Decimal(f64),
    Boolean(bool),
    String(String),
    Iri(String),
    DateTime(DateTime<FixedOffset>),
    Date(NaiveDate),
    /// An `xsd:duration`, in seconds (a year counts 365 days, a month 30).
    Duration(f64),
    List(Vec<Value>),
}

/// The kind of value a left operand expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ValueKind {
    Integer,
    Decimal,
    Boolean,
    String,
    Iri,
    DateTime,
    Duration,
    /// Whatever the runtime value turns out to be (claims).
    Any,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Integer => "an integer",
            ValueKind::Decimal => "a number",
            ValueKind::Boolean => "a boolean",
            ValueKind::String => "a string",
            ValueKind::Iri => "an IRI",
            ValueKind::DateTime => "a date-time (xsd:dateTime)",
            ValueKind::Duration => "a duration (xsd:duration, e.g. P30D)",
            ValueKind::Any => "a value",
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(v) => write!(f, "{v}"),
            Value::Decimal(v) => write!(f, "{v}"),
            Value::Boolean(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "\"{v}\""),
            Value::Iri(v) => f.write_str(&crate::term::short(v)),
            Value::DateTime(v) => f.write_str(&v.to_rfc3339()),
            Value::Date(v) => write!(f, "{v}"),
            Value::Duration(v) => f.write_str(&format_duration(*v)),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl Value {
    /// The lexical form written into a DSP message (DSP right operands are strings).
    pub fn lexical(&self) -> String {
        match self {
            Value::String(v) | Value::Iri(v) => v.clone(),
            Value::DateTime(v) => v.to_rfc3339(),
            Value::Duration(v) => format_duration(*v),
            other => other.to_string(),
        }
    }

    /// The elements of a list, or the value itself as a one-element slice.
    pub fn items(&self) -> &[Value] {
        match self {
            Value::List(items) => items,
            other => std::slice::from_ref(other),
        }
    }

    /// A value from JSON as it arrives in a claim (string, number, boolean, or array of them).
    pub fn from_json(json: &serde_json::Value) -> Option<Value> {
        Some(match json {
            serde_json::Value::Bool(b) => Value::Boolean(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Integer(i),
                None => Value::Decimal(n.as_f64()?),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => Value::List(items.iter().filter_map(Value::from_json).collect()),
            _ => return None,
        })
    }
}

/// Parses `lexical` as a value of `kind`; the error says what was expected.
pub fn parse_as(lexical: &str, kind: ValueKind) -> Result<Value, String> {
    let text = lexical.trim();
    let fail = || format!("`{text}` is not {kind}");
    Ok(match kind {
        ValueKind::Integer => Value::Integer(text.parse().map_err(|_| fail())?),
        ValueKind::Decimal => {
            let v: f64 = text.parse().map_err(|_| fail())?;
            if !v.is_finite() {
                return Err(fail());
            }
            Value::Decimal(v)
        }
        ValueKind::Boolean => Value::Boolean(match text {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(fail()),
        }),
        ValueKind::String | ValueKind::Any => Value::String(text.to_owned()),
        ValueKind::Iri => {
            if text.is_empty() || text.contains(char::is_whitespace) {
                return Err(fail());
            }
            Value::Iri(crate::term::canonical(text))
        }
        ValueKind::DateTime => parse_date_time(text).ok_or_else(fail)?,
        ValueKind::Duration => Value::Duration(parse_duration(text).ok_or_else(fail)?),
    })
}

fn parse_date_time(text: &str) -> Option<Value> {
    if let Ok(v) = DateTime::parse_from_rfc3339(text) {
        return Some(Value::DateTime(v));
    }
    // xsd:dateTime without a zone is read as UTC; xsd:date as that day.
    if let Ok(v) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(Value::DateTime(v.and_utc().fixed_offset()));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().map(Value::Date)
}

/// Seconds of an ISO 8601 / `xsd:duration` such as `P1Y2M3DT4H5M6.5S` (a year counts 365 days, a month 30).
pub fn parse_duration(text: &str) -> Option<f64> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let rest = rest.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    let mut seconds = 0.0;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
            } else {
                let index = units[next_unit..].iter().position(|(u, _)| *u == c)? + next_unit;
                let value: f64 = number.parse().ok()?;
                seconds += value * units[index].1;
                number.clear();
                next_unit = index + 1;
            }
        }
        number.is_empty().then_some(())
    };
    const DAY: f64 = 86_400.0;
    take(date, &[('Y', 365.0 * DAY), ('M', 30.0 * DAY), ('W', 7.0 * DAY), ('D', DAY)])?;
    if let Some(time) = time {
        take(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    Some(if negative { -seconds } else { seconds })
}

/// A duration in seconds as `P…DT…H…M…S`.
pub fn format_duration(seconds: f64) -> String {
    let negative = seconds < 0.0;
    let mut rest = seconds.abs();
    let days = (rest / 86_400.0).floor();
    rest -= days * 86_400.0;
    let hours = (rest / 3600.0).floor();
    rest -= hours * 3600.0;
    let minutes = (rest / 60.0).floor();
    rest -= minutes * 60.0;
    let mut out = String::from(if negative { "-P" } else { "P" });
    if days > 0.0 {
        out.push_str(&format!("{days}D"));
    }
    if hours > 0.0 || minutes > 0.0 || rest > 0.0 || days == 0.0 {
        out.push('T');
        if hours > 0.0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0.0 {
            out.push_str(&format!("{minutes}M"));
        }
        if rest > 0.0 || (hours == 0.0 && minutes == 0.0) {
            out.push_str(&format!("{rest}S"));
        }
    }
    out
}

/// Orders two values of compatible types; `None` when they cannot be ordered (e.g. an IRI and a number).
pub fn compare(left: &Value, right: &Value) -> Option<Ordering> {
    use Value::*;
    match (left, right) {
        (Integer(a), Integer(b)) => Some(a.cmp(b)),
        (Integer(a), Decimal(b)) => (*a as f64).partial_cmp(b),
        (Decimal(a), Integer(b)) => a.partial_cmp(&(*b as f64)),
        (Decimal(a), Decimal(b)) => a.partial_cmp(b),
        (DateTime(a), DateTime(b)) => Some(a.cmp(b)),
        (DateTime(a), Date(b)) => Some(a.date_naive().cmp(b)),
        (Date(a), DateTime(b)) => Some(a.cmp(&b.date_naive())),
        (Date(a), Date(b)) => Some(a.cmp(b)),
        (Duration(a), Duration(b)) => a.partial_cmp(b),
        _ => None,
    }
}

/// Equality with numeric widening and canonical IRIs; strings and IRIs compare by their text.
pub fn equal(left: &Value, right: &Value) -> bool {
    use Value::*;
    match (left, right) {
        (String(a) | Iri(a), String(b) | Iri(b)) => a == b || crate::term::canonical(a) == crate::term::canonical(b),
        (List(a), List(b)) => a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| equal(x, y))),
        _ => compare(left, right) == Some(Ordering::Equal) || left == right,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_seconds() {
        assert_eq!(parse_duration("P30D"), Some(30.0 * 86_400.0));
        assert_eq!(parse_duration("PT1H30M"), Some(5400.0));
        assert_eq!(parse_duration("P1Y"), Some(365.0 * 86_400.0));
        assert_eq!(parse_duration("P1DT0.5S"), Some(86_400.5));
        assert_eq!(parse_duration("P"), None);
        assert_eq!(parse_duration("PT"), None);
        assert_eq!(parse_duration("P1H"), None, "hours belong after T");
        assert_eq!(parse_duration("30 days"), None);
        assert_eq!(parse_duration(&format_duration(93_784.0)), Some(93_784.0));
    }

    #[test]
    fn date_times_with_and_without_zone_compare() {
        let a = parse_as("2027-12-31T23:59:59Z", ValueKind::DateTime).unwrap();
        let b = parse_as("2027-12-31T23:59:59", ValueKind::DateTime).unwrap();
        assert!(equal(&a, &b));
        let day = parse_as("2027-12-31", ValueKind::DateTime).unwrap();
        assert_eq!(compare(&a, &day), Some(Ordering::Equal));
        assert!(parse_as("end of 2027", ValueKind::DateTime).is_err());
    }

    #[test]
    fn numbers_widen_and_iris_meet_their_curies() {
        assert!(equal(&Value::Integer(10), &Value::Decimal(10.0)));
        assert!(equal(&Value::Iri("odrl:use".into()), &Value::Iri("http://www.w3.org/ns/odrl/2/use".into())));
        assert_eq!(compare(&Value::Iri("a".into()), &Value::Integer(1)), None);
    }
}
