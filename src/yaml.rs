//! A YAML document as a tree of nodes that know where they were written:
//! what the flow loader builds flows from (so it can report every mistake
//! at its `file:line:col`) and what the config uses to place a refused value.
//! Below flow and config; depends only on serde and serde-saphyr.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// 1-based position in the source file; the default `0:0` means "unknown"
/// (diagnostics print it as `1:1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

/// A YAML node with the position it was written at.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) val: Val,
    pub(crate) span: Span,
}

#[derive(Debug)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Val, E> {
                Ok(Val::Null)
            }
            fn visit_none<E>(self) -> Result<Val, E> {
                Ok(Val::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Val, D2::Error> {
                Val::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Val, E> {
                Ok(Val::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Val, E> {
                Ok(Val::Int(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Val, E> {
                Ok(i64::try_from(n).map_or_else(|_| Val::Str(n.to_string()), Val::Int))
            }
            fn visit_i128<E>(self, n: i128) -> Result<Val, E> {
                Ok(Val::Str(n.to_string()))
            }
            fn visit_u128<E>(self, n: u128) -> Result<Val, E> {
                Ok(Val::Str(n.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Val, E> {
                Ok(Val::Float(n))
            }
            fn visit_char<E>(self, c: char) -> Result<Val, E> {
                Ok(Val::Str(c.to_string()))
            }
            fn visit_str<E>(self, s: &str) -> Result<Val, E> {
                Ok(Val::Str(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Val, E> {
                Ok(Val::Str(s))
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<Val, E> {
                Ok(Val::Str(String::from_utf8_lossy(b).into_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Val, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Val::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Val, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = a.next_key()? {
                    let val = a.next_value()?;
                    v.push((k, val));
                }
                Ok(Val::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<Val>::deserialize(d)?;
        Ok(Node {
            val: s.value,
            span: to_span(s.referenced),
        })
    }
}

/// A serde-saphyr location as a [`Span`].
pub(crate) fn to_span(l: serde_saphyr::Location) -> Span {
    Span {
        line: u32::try_from(l.line()).unwrap_or(u32::MAX),
        col: u32::try_from(l.column()).unwrap_or(u32::MAX),
    }
}

impl Node {
    /// A scalar as text (numbers and booleans written the way YAML would).
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match &self.val {
            Val::Str(s) => Some(s.clone()),
            Val::Int(n) => Some(n.to_string()),
            Val::Float(f) => Some(f.to_string()),
            Val::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// How the value looks, for "got …" in messages.
    pub(crate) fn shown(&self) -> String {
        match &self.val {
            Val::Null => "nothing".into(),
            Val::Str(s) => format!("{s:?}"),
            Val::Seq(_) => "a list".into(),
            Val::Map(_) => "a mapping".into(),
            _ => self.scalar_text().unwrap_or_default(),
        }
    }
}
