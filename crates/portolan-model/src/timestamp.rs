//! Serde helpers: a [`Millis`] field written and read as an RFC 3339 string.

use serde::{Deserialize, Deserializer, Serializer};

use crate::Millis;

pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::format_millis(*ms))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
    let text = String::deserialize(d)?;
    crate::blueprint::parse_date_time(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
}

/// The same for an optional field.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => super::serialize(ms, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => crate::blueprint::parse_date_time(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time")),
        }
    }
}
