//! `send_code`: ask the code backend to send a one-time code (SMS or voice).
//! The code itself never passes through the engine.

use crate::backends::{CodeRequest, SendResult};
use crate::call::CallChannel;
use crate::events::{mask_number, Event, SendOutcome};
use crate::flow::model::{CodeChannel, Exit, SendCode};
use crate::flow::state::PendingCode;
use crate::phone;

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &SendCode,
) -> Result<Flowing, Abort> {
    let rendered = ctx
        .scope()
        .render_public(&step.to.value)
        .map_err(|e| Abort::Fail(format!("send_code to: {e}")))?;
    // Lenient like lookups: the number is on file (or the flow's); a number
    // the numbering plan does not know is the gateway's to refuse.
    let to = phone::for_lookup(&rendered, ctx.services.default_country)
        .ok_or_else(|| Abort::Fail("send_code to: not a phone number".to_string()))?;
    let channel = match step.channel {
        CodeChannel::Sms => "sms",
        CodeChannel::Voice => "voice",
    };
    let subject = ctx.state.code_subject_for(to.as_str());
    let caller = phone::for_lookup(ctx.state.caller(), ctx.services.default_country);
    let req = CodeRequest {
        call_id: ctx.state.call_id().to_string(),
        subject: subject.clone(),
        caller,
        channel: step.channel,
        to: to.clone(),
        brand: ctx.call.info().brand.clone(),
        language: step.language.value.clone(),
        length: step.length.value,
        ttl: step.ttl.value,
        max_attempts: step.max_attempts.value,
        resend_cooldown: step.resend_cooldown.value,
        now: ctx.clock(),
    };
    let res = ctx.services.codes.send(&req).await;
    let (mut reason, mut gateway, mut message_id) = (None, None, None);
    let (outcome, flowing) = match res {
        Ok(SendResult::Sent {
            gateway: g,
            message_id: m,
        }) => {
            (gateway, message_id) = (Some(g), m);
            (SendOutcome::Sent, Ok(Flowing::Exit(Exit::Success)))
        }
        Ok(SendResult::StillValid) => (SendOutcome::StillValid, Ok(Flowing::Exit(Exit::Success))),
        Ok(SendResult::RateLimited(limit)) => {
            reason = Some(limit.as_str().to_string());
            (
                SendOutcome::RateLimited,
                Ok(Flowing::Exit(Exit::RateLimited)),
            )
        }
        Ok(SendResult::Locked) => {
            reason = Some("too many wrong codes for the account".to_string());
            (SendOutcome::Locked, Ok(Flowing::Exit(Exit::RateLimited)))
        }
        Err(e) => {
            reason = Some(e.to_string());
            (
                SendOutcome::Error,
                Err(Abort::Fail(format!("code service: {e}"))),
            )
        }
    };
    let step_id = ctx.id().to_string();
    let to_masked = mask_number(to.as_str());
    if matches!(outcome, SendOutcome::Sent | SendOutcome::StillValid) {
        ctx.state.code_sent(PendingCode {
            channel: step.channel,
            subject,
            sent_to_masked: to_masked.clone(),
        });
    }
    ctx.emit(Event::CodeSent {
        step: step_id,
        channel,
        to_masked,
        outcome,
        reason,
        gateway,
        message_id,
    });
    flowing
}

// --- the unit: how a `send_code` step is read and what it may do ---

use std::time::Duration;

use crate::flow::load::FieldReader;
use crate::flow::model::{Spanned, StepKind};

use super::unit::{Build, Read, Sink, Unit, Written};

pub(crate) const UNIT: Unit = Unit {
    guess_writes: |_, _| {
        vec![
            Written::Exact("code.sent_to".into()),
            Written::Exact("code.channel".into()),
        ]
    },
    reads: |k| match k {
        StepKind::SendCode(c) => vec![Read::new("`to`", &c.to, Sink::Internal)],
        _ => Vec::new(),
    },
    writes: |_| {
        vec![
            Written::Exact("code.sent_to".into()),
            Written::Exact("code.channel".into()),
        ]
    },
    check_fields: |step, f| {
        if let StepKind::SendCode(c) = &step.kind {
            let s = Duration::from_secs;
            f.int_in("length", &c.length, 4, 10);
            f.dur_in("ttl", &c.ttl, s(30), s(15 * 60));
            f.int_in("max_attempts", &c.max_attempts, 1, 10);
            f.dur_in("resend_cooldown", &c.resend_cooldown, s(0), s(15 * 60));
            if !is_language_tag(&c.language.value) {
                f.err(
                    c.language.span,
                    format!(
                        "language `{}` is not a language tag (e.g. `en`, `es`, `fr-CA`)",
                        c.language.value
                    ),
                );
            }
        }
    },
    exits: &[Exit::Success, Exit::RateLimited, Exit::Error],
    required: &[Exit::Success, Exit::RateLimited],
    calls_backend: true,
    ..Unit::new("send_code", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    let span = r.span();
    Some(StepKind::SendCode(SendCode {
        channel: r
            .choice(
                "channel",
                &[("sms", CodeChannel::Sms), ("voice", CodeChannel::Voice)],
            )
            .unwrap_or(CodeChannel::Sms),
        to: r
            .template("to")
            .unwrap_or_else(|| Spanned::new("${account.phone}".into(), span)),
        length: r.uint_or("length", 6),
        ttl: r.duration_or("ttl", 60, 0),
        max_attempts: r.uint_or("max_attempts", 3),
        resend_cooldown: r.duration_or("resend_cooldown", 30, 0),
        language: r
            .string("language")
            .unwrap_or_else(|| Spanned::new("en".into(), span)),
    }))
}

/// `en`, `es`, `fr-CA`, `pt-BR`: a primary language of 2–3 letters and an
/// optional region or script subtag (it names a message template).
fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    let rest: Vec<&str> = parts.collect();
    primary_ok
        && rest.len() <= 1
        && rest
            .iter()
            .all(|p| (2..=4).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}
