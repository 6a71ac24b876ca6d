//! Where a field is in a config file: a value the parser took but the
//! config refused ("passphrase.enrolment.min_digits: 2 is outside 4..20")
//! is reported at its `file:line:col`, as a YAML or type error is, so an
//! operator goes straight to it. The refusal names the field; this finds
//! the field's value in the text.

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A YAML node: where its value starts, and its children by key (a
/// sequence's by index). Scalars have no children.
struct Node {
    line: usize,
    col: usize,
    kids: Vec<(String, Node)>,
}

struct Kids(Vec<(String, Node)>);

/// A mapping key of any scalar type, as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                Ok(Key(s.to_string()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Key, E> {
                Ok(Key(b.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Key, E> {
                Ok(Key(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Kids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Kids;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_none<E>(self) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Kids, D2::Error> {
                Kids::deserialize(d)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_i128<E>(self, _: i128) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_u128<E>(self, _: u128) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Kids, E> {
                Ok(Kids(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Kids, A::Error> {
                let mut kids = Vec::new();
                while let Some(n) = a.next_element::<Node>()? {
                    kids.push((kids.len().to_string(), n));
                }
                Ok(Kids(kids))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Kids, A::Error> {
                let mut kids = Vec::new();
                while let Some(Key(k)) = a.next_key::<Key>()? {
                    kids.push((k, a.next_value::<Node>()?));
                }
                Ok(Kids(kids))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Kids>::deserialize(d)?;
        Ok(Node {
            line: s.referenced.line() as usize,
            col: s.referenced.column() as usize,
            kids: s.value.0,
        })
    }
}

/// The 1-based line and column of the value of `field` in the YAML `text`:
/// a dotted path (`limits.tcp.idle_timeout`; `gateways[1].url` or
/// `gateways.1.url` for a sequence's item). `None` when the text does not
/// parse or the whole path is not in it (a default refused together with
/// another value, a name with a dot in it): a parent's place would point
/// at the wrong line.
pub(crate) fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    let root: Node = serde_saphyr::from_str(text).ok()?;
    let mut at = &root;
    for part in field.split(['.', '[', ']']).filter(|p| !p.is_empty()) {
        at = &at.kids.iter().find(|(k, _)| k == part)?.1;
    }
    (!std::ptr::eq(at, &root) && at.line > 0).then_some((at.line, at.col))
}

/// The field a refusal names: its message up to the first `": "`, when
/// that is a dotted path of YAML keys.
pub(crate) fn field_of(message: &str) -> Option<&str> {
    let (field, _) = message.split_once(": ")?;
    let ok = !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '-'));
    ok.then_some(field)
}

#[cfg(test)]
mod tests {
    use super::{field_of, locate};

    #[test]
    fn a_field_is_found_by_its_path() {
        let yaml = "listen: 0.0.0.0:5060\npassphrase:\n  enrolment:\n    min_digits: 2\n\
                    sms:\n  gateways:\n    - url: http://a\n    - { url: x, name: b }\n";
        assert_eq!(locate(yaml, "listen"), Some((1, 9)));
        assert_eq!(
            locate(yaml, "passphrase.enrolment.min_digits"),
            Some((4, 17))
        );
        assert_eq!(locate(yaml, "sms.gateways[1].url"), Some((8, 14)));
        assert_eq!(locate(yaml, "sms.gateways.0.url"), Some((7, 12)));
        // Only part of the path: not located.
        assert_eq!(locate(yaml, "passphrase.enrolment.words"), None);
        assert_eq!(locate(yaml, "codes.max_failures"), None);
        assert_eq!(locate("a: [", "a"), None);
        assert_eq!(locate("", "a"), None);
    }

    #[test]
    fn the_field_is_the_message_s_first_part() {
        assert_eq!(
            field_of("limits.tcp.idle_timeout: `soon` is not a duration"),
            Some("limits.tcp.idle_timeout")
        );
        assert_eq!(field_of("no secret key: set it"), None);
        assert_eq!(field_of("listen"), None);
    }
}
