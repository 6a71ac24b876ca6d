//! Where a field is in a config file: a value the parser took but the
//! config refused ("passphrase.enrolment.min_digits: 2 is outside 4..20")
//! is reported at its `file:line:col`, as a YAML or type error is, so an
//! operator goes straight to it. The refusal names the field; this finds
//! the field's value in the text.

use crate::yaml::{Node, Val};

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
        at = match &at.val {
            Val::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.scalar_text().as_deref() == Some(part))
                .map(|(_, v)| v)?,
            Val::Seq(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!std::ptr::eq(at, &root) && at.span.line > 0)
        .then_some((at.span.line as usize, at.span.col as usize))
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
