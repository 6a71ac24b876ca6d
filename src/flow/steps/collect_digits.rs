//! `collect_digits`: read digits into a variable (see `input` for the semantics).
//! With `secret: true` the digits are never in events and the variable is masked.

use regex::Regex;

use crate::call::CallChannel;
use crate::flow::model::{CollectDigits, Exit, PromptRef};
use crate::flow::vars::is_reserved_secret;

use super::input::{
    anchored, collect_once, retry, Attempt, Entry, InputTries, Miss, Retried, RetryPrompts,
};
use super::{Abort, Ctx, Flowing};

struct Collect<'s> {
    step: &'s CollectDigits,
    pattern: Option<Regex>,
}

impl Collect<'_> {
    /// Secret when the step says so or its variable is one of the names that
    /// always hold secrets (`code`, `otp`, `passphrase`, `secret.*`): the
    /// digits then stay out of events as well as out of rendered output.
    fn secret(&self) -> bool {
        self.step.secret || is_reserved_secret(&self.step.into.value)
    }
}

impl<C: CallChannel> InputTries<C> for Collect<'_> {
    type Got = Entry;
    type Done = ();

    async fn collect(&self, ctx: &mut Ctx<'_, C>, prompts: &[PromptRef]) -> Result<Entry, Abort> {
        collect_once(
            ctx,
            &self.step.input,
            prompts,
            self.pattern.as_ref(),
            self.secret(),
        )
        .await
    }

    async fn judge(&self, ctx: &mut Ctx<'_, C>, entry: Entry) -> Result<Attempt<()>, Abort> {
        Ok(match entry {
            Entry::Digits(d) => {
                ctx.vars
                    .set(&self.step.into.value, &d, self.secret())
                    .map_err(|e| Abort::Fail(e.to_string()))?;
                Attempt::Done(())
            }
            Entry::NoInput => Attempt::Miss(Miss::NoInput),
            Entry::Invalid => Attempt::Miss(Miss::Invalid),
        })
    }
}

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &CollectDigits,
) -> Result<Flowing, Abort> {
    let pattern = step
        .pattern
        .as_ref()
        .map(|p| anchored(&p.value))
        .transpose()?;
    let input = &step.input;
    let tries = Collect { step, pattern };
    let res = retry(ctx, input.tries.value, RetryPrompts::digits(input), &tries).await?;
    Ok(Flowing::Exit(match res {
        Retried::Done(()) => Exit::Success,
        Retried::Exhausted { exit, .. } => exit,
    }))
}

// --- the unit: how a `collect_digits` step is read and what it may do ---

use crate::flow::load::FieldReader;
use crate::flow::model::StepKind;

use super::unit::{digit_prompts, into_guessed, Build, Unit, Written};

pub(crate) const UNIT: Unit = Unit {
    guess_writes: into_guessed,
    prompts: |k| match k {
        StepKind::CollectDigits(c) => digit_prompts(&c.input),
        _ => Vec::new(),
    },
    writes: |k| match k {
        StepKind::CollectDigits(c) => vec![Written::Exact(c.into.value.clone())],
        _ => Vec::new(),
    },
    check_fields: |step, f| {
        if let StepKind::CollectDigits(c) = &step.kind {
            f.digits_in(step, &c.input);
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
        (Exit::NoInput, "the caller enters nothing"),
        (Exit::NoMatch, "the digits do not fit"),
    ],
    waits_for_caller: true,
    ..Unit::new("collect_digits", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    let input = r.digit_input(None);
    let pattern =
        r.string("pattern")
            .and_then(|s| match regex::Regex::new(&format!("^(?:{})$", s.value)) {
                Ok(_) => Some(s),
                Err(e) => {
                    let detail = e.to_string();
                    let last = detail
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches("error: ")
                        .to_string();
                    r.ferr(
                        s.span,
                        format!(
                            "`pattern`: {:?} is not a valid regular expression: {last}",
                            s.value
                        ),
                    );
                    None
                }
            });
    let into = r.into(false);
    let secret = r.boolean("secret").unwrap_or(false);
    Some(StepKind::CollectDigits(CollectDigits {
        input,
        pattern,
        into,
        secret,
    }))
}
