//! `recognize`: speech input into a variable.
//!
//! A result counts when its confidence reaches `min_confidence` and, if
//! phrases are given, it equals one of them (case and punctuation ignored;
//! the variable receives the phrase as written in the flow). `digits_only`
//! keeps only the digits of the transcript and needs at least one.

use crate::call::CallChannel;
use crate::events::Event;
use crate::flow::model::{Exit, Recognize};

use super::input::{listen_once, spec, Listened, Miss, Tries};
use super::{Abort, Ctx, Flowing};

/// Lower-case words only, for phrase comparison.
pub fn normalize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run<C: CallChannel>(ctx: &mut Ctx<'_, C>, step: &Recognize) -> Result<Flowing, Abort> {
    let phrases: Vec<String> = step.phrases.iter().map(|p| p.value.clone()).collect();
    let spec = spec(
        &step.timers,
        phrases.clone(),
        step.digits_only,
        step.language.clone(),
    );
    let mut tries = Tries::new(step.tries.value);
    while tries.start_try() {
        let prompts: Vec<_> = tries
            .prompts(
                &step.prompts,
                &step.no_input_prompts,
                &step.no_match_prompts,
            )
            .into_iter()
            .cloned()
            .collect();
        let heard = listen_once(ctx, &prompts, &spec, step.barge_in).await?;
        ctx.set_attempts(tries.used());
        let r = match heard {
            Listened::NoSpeech => {
                tries.miss(Miss::NoInput);
                continue;
            }
            Listened::Speech(r) => r,
        };
        let value = if r.confidence < step.min_confidence.value {
            None
        } else if step.digits_only {
            let d: String = r.text.chars().filter(char::is_ascii_digit).collect();
            (!d.is_empty()).then_some(d)
        } else if phrases.is_empty() {
            (!r.text.trim().is_empty()).then(|| r.text.trim().to_string())
        } else {
            let heard = normalize(&r.text);
            phrases.iter().find(|p| normalize(p) == heard).cloned()
        };
        let id = ctx.id().to_string();
        ctx.emit(Event::Recognition {
            step: id,
            confidence: r.confidence,
            matched: value.is_some(),
            words: r.text.split_whitespace().count(),
        });
        match value {
            Some(v) => {
                ctx.vars
                    .set(&step.into.value, &v, false)
                    .map_err(|e| Abort::Fail(e.to_string()))?;
                return Ok(Flowing::Exit(Exit::Success));
            }
            None => tries.miss(Miss::Invalid),
        }
    }
    Ok(Flowing::Exit(tries.exhausted_exit(ctx)))
}
