//! The one way JSON from outside is read: strictly (request bodies, imported files).
//!
//! `serde_json::from_slice::<T>` lets a derived struct be filled from an array (`["a@b.c"]`
//! became a signup, `["2026-W47"]` an issue), and with duplicate keys the last one silently
//! wins (`{"week":"2026-W01","week":"2026-W47"}`), so what a proxy or log inspected is not what
//! we acted on. Here the body is first parsed into a [`Value`] by a visitor that refuses
//! duplicate keys at any depth; [`object`] then takes only a top-level object.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body was refused; the message names the place (line and column) where it can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonBodyError(pub String);

/// Parses `body` as JSON of any shape, refusing duplicate object keys at any depth.
pub fn value(body: &[u8]) -> Result<Value, JsonBodyError> {
    strict_value(body).map_err(|e| JsonBodyError(e.to_string()))
}

/// [`value`] with serde_json's own error, which knows the line and column.
pub fn strict_value(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
}

/// Parses `body` as one JSON object (no duplicate keys) into `T`; an empty or blank body is
/// `T::default()`.
pub fn object<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, JsonBodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    match value(body)? {
        v @ Value::Object(_) => serde_json::from_value(v).map_err(|e| JsonBodyError(e.to_string())),
        other => Err(JsonBodyError(format!(
            "the body must be a JSON object, not {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Builds a [`Value`] like serde_json does, but an object key seen twice is an error.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    struct Week {
        week: Option<String>,
    }

    #[test]
    fn only_objects_without_duplicate_keys() {
        assert_eq!(
            object::<Week>(br#"{"week":"2026-W47"}"#)
                .unwrap()
                .week
                .as_deref(),
            Some("2026-W47")
        );
        assert_eq!(object::<Week>(b"  \n").unwrap(), Week::default());
        let cases: [(&[u8], &str); 7] = [
            (br#"["2026-W47"]"#, "not an array"),
            (br#""2026-W47""#, "not a string"),
            (b"null", "not null"),
            (b"12", "not a number"),
            (
                br#"{"week":"2026-W01","week":"2026-W47"}"#,
                "duplicate key \"week\"",
            ),
            (br#"{"a":{"b":1,"b":2}}"#, "duplicate key \"b\""),
            (br#"{"week":"x"} {}"#, "trailing characters"),
        ];
        for (body, expected) in cases {
            let err = object::<Week>(body).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(
            value(br#"[{"a":1},{"a":2}]"#).is_ok(),
            "the same key in two objects"
        );
        assert!(
            value(br#"[{"a":1,"a":2}]"#)
                .unwrap_err()
                .0
                .contains("duplicate key")
        );
    }
}
