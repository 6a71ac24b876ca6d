//! `say`: speak a value as prompts.
//!
//! - digits: each character alone: `0`–`9` → `digits/0`…`digits/9`, `*` →
//!   `digits/star`, `#` → `digits/pound`; spaces, dashes, dots, `+` and
//!   parentheses are skipped; anything else fails the step.
//! - number: English cardinal from `numbers/0`…`numbers/19`, `numbers/20`,
//!   `numbers/30`…`numbers/90`, `numbers/hundred`, `numbers/thousand`,
//!   `numbers/million` (no "and"); values of 10 digits or more fall back to digits.
//! - last_digits(n): the last n digits of the value, as digits.
//!
//! Secrets are refused (the value is rendered as a public template).

use crate::call::CallChannel;
use crate::flow::model::{Exit, Say, SayAs};

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &Say,
) -> Result<Flowing, Abort> {
    let value = ctx
        .scope()
        .render_public(&step.value.value)
        .map_err(|e| Abort::Fail(format!("say: {e}")))?;
    let spoken = prompts_for(&value, step.say_as).map_err(Abort::Fail)?;
    let mut prompts = ctx.render_prompts(&step.before)?;
    prompts.extend(spoken);
    prompts.extend(ctx.render_prompts(&step.after)?);
    ctx.play_to_end(&prompts, step.barge_in).await?;
    Ok(Flowing::Exit(Exit::Next))
}

/// Prompt names that speak `value` the given way.
pub fn prompts_for(value: &str, how: SayAs) -> Result<Vec<String>, String> {
    match how {
        SayAs::Digits => digit_prompts(value),
        SayAs::LastDigits(n) => {
            let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
            let start = digits.len().saturating_sub(n as usize);
            digit_prompts(&digits[start..].iter().collect::<String>())
        }
        SayAs::Number => {
            let v = value.trim();
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!("say: `{v}` is not a number"));
            }
            let trimmed = v.trim_start_matches('0');
            if trimmed.len() >= 10 {
                return digit_prompts(v);
            }
            let n: u64 = if trimmed.is_empty() {
                0
            } else {
                trimmed
                    .parse()
                    .map_err(|_| format!("say: `{v}` is not a number"))?
            };
            Ok(number_prompts(n))
        }
    }
}

fn digit_prompts(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for c in value.chars() {
        match c {
            '0'..='9' => out.push(format!("digits/{c}")),
            '*' => out.push("digits/star".into()),
            '#' => out.push("digits/pound".into()),
            ' ' | '-' | '.' | '+' | '(' | ')' => {}
            other => return Err(format!("say: cannot speak `{other}` as a digit")),
        }
    }
    Ok(out)
}

/// English cardinal, below one billion.
fn number_prompts(n: u64) -> Vec<String> {
    if n == 0 {
        return vec!["numbers/0".into()];
    }
    let mut out = Vec::new();
    let mut rest = n;
    for (unit, name) in [(1_000_000, "numbers/million"), (1_000, "numbers/thousand")] {
        if rest >= unit {
            below_thousand(rest / unit, &mut out);
            out.push(name.into());
            rest %= unit;
        }
    }
    below_thousand(rest, &mut out);
    out
}

fn below_thousand(n: u64, out: &mut Vec<String>) {
    let (h, rest) = (n / 100, n % 100);
    if h > 0 {
        out.push(format!("numbers/{h}"));
        out.push("numbers/hundred".into());
    }
    if rest >= 20 {
        out.push(format!("numbers/{}", rest / 10 * 10));
        if rest % 10 > 0 {
            out.push(format!("numbers/{}", rest % 10));
        }
    } else if rest > 0 {
        out.push(format!("numbers/{rest}"));
    }
}

// --- the unit: how a `say` step is read and what it may do ---

use crate::flow::load::FieldReader;
use crate::flow::model::{BargeIn, Say as UnitSay, StepKind};

use super::unit::{tagged, Build, Read, Sink, Unit};

pub(crate) const UNIT: Unit = Unit {
    prompts: |k| match k {
        StepKind::Say(s) => tagged(&[("before", &s.before), ("after", &s.after)]),
        _ => Vec::new(),
    },
    reads: |k| match k {
        StepKind::Say(s) => vec![Read::new("`value`", &s.value, Sink::Spoken)],
        _ => Vec::new(),
    },
    exits: &[Exit::Next],
    needs_next: true,
    ..Unit::new("say", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    let value = r.required_template("value", "(what to say, e.g. \"${entered_number}\")");
    let as_given = r.get("as").is_some();
    let say_as = r.choice("as", &[("digits", 0u8), ("number", 1), ("last_digits", 2)]);
    let count = r.uint("count").and_then(|c| match u8::try_from(c.value) {
        Ok(v) if v >= 1 => Some((v, c.span)),
        _ => {
            r.ferr(
                c.span,
                format!("`count` must be between 1 and 255, got {}", c.value),
            );
            None
        }
    });
    // A bad `as:` was reported; `count` may be right for what was meant.
    let as_bad = as_given && say_as.is_none();
    let say_as = match say_as.unwrap_or(0) {
        2 => SayAs::LastDigits(count.map_or(4, |c| c.0)),
        other => {
            if let Some((_, cspan)) = count.filter(|_| !as_bad) {
                r.ferr(cspan, "`count` only applies to `as: last_digits`");
            }
            if other == 1 {
                SayAs::Number
            } else {
                SayAs::Digits
            }
        }
    };
    let barge_in = BargeIn {
        digits: true,
        speech: false,
    };
    Some(StepKind::Say(UnitSay {
        value,
        say_as,
        before: r.prompts("before"),
        after: r.prompts("after"),
        barge_in: r.barge_in("barge_in", barge_in),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_keys() {
        assert_eq!(
            prompts_for("1*#0", SayAs::Digits).unwrap(),
            ["digits/1", "digits/star", "digits/pound", "digits/0"]
        );
        assert!(prompts_for("12a", SayAs::Digits).is_err());
    }

    #[test]
    fn last_digits() {
        assert_eq!(
            prompts_for("+1 555 123 0001", SayAs::LastDigits(4)).unwrap(),
            ["digits/0", "digits/0", "digits/0", "digits/1"]
        );
        assert_eq!(
            prompts_for("12", SayAs::LastDigits(4)).unwrap(),
            ["digits/1", "digits/2"]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(prompts_for("0", SayAs::Number).unwrap(), ["numbers/0"]);
        assert_eq!(
            prompts_for("42", SayAs::Number).unwrap(),
            ["numbers/40", "numbers/2"]
        );
        assert_eq!(
            prompts_for("2015", SayAs::Number).unwrap(),
            ["numbers/2", "numbers/thousand", "numbers/15"]
        );
        assert_eq!(
            prompts_for("1300100", SayAs::Number).unwrap(),
            [
                "numbers/1",
                "numbers/million",
                "numbers/3",
                "numbers/hundred",
                "numbers/thousand",
                "numbers/1",
                "numbers/hundred"
            ]
        );
        assert!(prompts_for("4x", SayAs::Number).is_err());
    }
}
