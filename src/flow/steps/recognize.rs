//! `recognize`: speech input into a variable.
//!
//! A result counts when its confidence reaches `min_confidence` and, if
//! phrases are given, it equals one of them (case and punctuation ignored;
//! the variable receives the phrase as written in the flow). `digits_only`
//! keeps only the digits of the transcript and needs at least one.

use crate::call::CallChannel;
use crate::call::RecognitionSpec;
use crate::events::Event;
use crate::flow::model::{Exit, PromptRef, Recognize};

use super::input::{
    listen_once, retry, spec, Attempt, InputTries, Listened, Miss, Retried, RetryPrompts,
};
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

struct Listen<'s> {
    step: &'s Recognize,
    phrases: Vec<String>,
    spec: RecognitionSpec,
}

impl<C: CallChannel> InputTries<C> for Listen<'_> {
    type Got = Listened;
    type Done = ();

    async fn collect(
        &self,
        ctx: &mut Ctx<'_, C>,
        prompts: &[PromptRef],
    ) -> Result<Listened, Abort> {
        listen_once(ctx, prompts, &self.spec, self.step.barge_in).await
    }

    async fn judge(&self, ctx: &mut Ctx<'_, C>, heard: Listened) -> Result<Attempt<()>, Abort> {
        let step = self.step;
        let r = match heard {
            Listened::NoSpeech => return Ok(Attempt::Miss(Miss::NoInput)),
            Listened::Speech(r) => r,
        };
        let value = if r.confidence < step.min_confidence.value {
            None
        } else if step.digits_only {
            let d: String = r.text.chars().filter(char::is_ascii_digit).collect();
            (!d.is_empty()).then_some(d)
        } else if self.phrases.is_empty() {
            (!r.text.trim().is_empty()).then(|| r.text.trim().to_string())
        } else {
            let heard = normalize(&r.text);
            self.phrases.iter().find(|p| normalize(p) == heard).cloned()
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
                Ok(Attempt::Done(()))
            }
            None => Ok(Attempt::Miss(Miss::Invalid)),
        }
    }
}

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &Recognize,
) -> Result<Flowing, Abort> {
    let phrases: Vec<String> = step.phrases.iter().map(|p| p.value.clone()).collect();
    let spec = spec(
        &step.timers,
        phrases.clone(),
        step.digits_only,
        step.language.clone(),
    );
    let prompts = RetryPrompts {
        main: &step.prompts,
        no_input: &step.no_input_prompts,
        invalid: &step.no_match_prompts,
    };
    let tries = Listen {
        step,
        phrases,
        spec,
    };
    Ok(Flowing::Exit(
        match retry(ctx, step.tries.value, prompts, &tries).await? {
            Retried::Done(()) => Exit::Success,
            Retried::Exhausted { exit, .. } => exit,
        },
    ))
}

// --- the unit: how a `recognize` step is read and what it may do ---

use crate::flow::load::{FieldReader, Val};
use crate::flow::model::{BargeIn, StepKind};

use super::unit::{into_guessed, tagged, Build, Unit, Written};

pub(crate) const UNIT: Unit = Unit {
    guess_writes: into_guessed,
    prompts: |k| match k {
        StepKind::Recognize(r) => tagged(&[
            ("prompts", &r.prompts),
            ("no_input_prompts", &r.no_input_prompts),
            ("no_match_prompts", &r.no_match_prompts),
        ]),
        _ => Vec::new(),
    },
    writes: |k| match k {
        StepKind::Recognize(r) => vec![Written::Exact(r.into.value.clone())],
        _ => Vec::new(),
    },
    check_fields: |step, f| {
        if let StepKind::Recognize(r) = &step.kind {
            f.speech_in(&r.timers);
            f.int_in("tries", &r.tries, 1, 10);
            let c = r.min_confidence.value;
            if !(0.0..=1.0).contains(&c) {
                let msg = format!(
                    "{}: `min_confidence` is {c}; it must be between 0 and 1",
                    f.what
                );
                f.err(r.min_confidence.span, msg);
            }
        }
    },
    exits: &[
        Exit::Success,
        Exit::NoInput,
        Exit::NoMatch,
        Exit::MaxAttempts,
        Exit::Error,
    ],
    required: &[Exit::Success],
    fallbacks: &[
        (Exit::NoInput, "the caller says nothing"),
        (Exit::NoMatch, "the caller is not understood"),
    ],
    waits_for_caller: true,
    calls_backend: true,
    ..Unit::new("recognize", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    let prompts = r.prompts("prompts");
    let phrases = match r.get("phrases") {
        None => vec![],
        Some(n) => match &n.val {
            Val::Seq(items) => items
                .iter()
                .filter_map(|i| r.node_string(i, "phrases"))
                .collect(),
            _ => {
                r.err(
                    n.span,
                    format!(
                        "`phrases` must be a list like [\"checking\", \"savings\"], got {}",
                        n.shown()
                    ),
                );
                vec![]
            }
        },
    };
    let both = BargeIn {
        digits: true,
        speech: true,
    };
    Some(StepKind::Recognize(Recognize {
        prompts,
        phrases,
        digits_only: r.boolean("digits_only").unwrap_or(false),
        language: r.string("language").map(|s| s.value),
        timers: r.speech_timers(15),
        min_confidence: r.float_or("min_confidence", 0.5),
        tries: r.uint_or("tries", 2),
        no_input_prompts: r.prompts("no_input_prompts"),
        no_match_prompts: r.prompts("no_match_prompts"),
        barge_in: r.barge_in("barge_in", both),
        into: r.into(false),
    }))
}
