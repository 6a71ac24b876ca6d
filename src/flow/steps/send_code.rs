//! `send_code`: ask the code backend to send a one-time code by the first
//! of the step's channels (SMS, voice, e-mail) the account can take and a
//! gateway accepts.
//! The code itself never passes through the engine.

use crate::backends::{CodeRequest, CodeTarget, SendAttempt, SendResult};
use crate::call::{CallChannel, CallInput};
use crate::events::{Event, SendOutcome};
use crate::flow::model::{CodeChannel, Exit, SendCode};
use crate::flow::state::PendingCode;
use crate::phone;

use super::{Abort, Ctx, Flowing};

/// Where `channel` would take the code for this call's account, or why it
/// cannot (`Err`: the reason, naming no destination).
fn target_for<C: CallChannel>(
    ctx: &Ctx<'_, C>,
    step: &SendCode,
    channel: CodeChannel,
) -> Result<CodeTarget, &'static str> {
    let state = &ctx.state;
    let to = match channel {
        CodeChannel::Sms | CodeChannel::Voice => {
            let rendered = ctx
                .scope()
                .render_public(&step.to.value)
                .map_err(|_| "no phone number")?;
            if rendered.trim().is_empty() {
                return Err("no phone number");
            }
            // Lenient like lookups: the number is on file (or the flow's); a
            // number the numbering plan does not know is the gateway's to refuse.
            let n = phone::for_lookup(&rendered, ctx.services.default_country)
                .ok_or("not a phone number")?;
            // The line type on file speaks for the account's own number only.
            let own = state.read("account.phone").as_deref() == Some(n.as_str());
            if channel == CodeChannel::Sms
                && own
                && state.read("account.line_type").as_deref() == Some("landline")
            {
                return Err("a landline cannot take a text message");
            }
            n.as_str().to_string()
        }
        CodeChannel::Email => {
            let a = state.read("account.email").unwrap_or_default();
            let a = a.trim();
            match a.split_once('@') {
                Some((l, d)) if !l.is_empty() && d.contains('.') => a.to_string(),
                _ => return Err("no e-mail address on file"),
            }
        }
    };
    Ok(CodeTarget { channel, to })
}

fn attempt_event(step: &str, a: &SendAttempt) -> Event {
    Event::CodeAttempt {
        step: step.to_string(),
        channel: a.channel.as_str(),
        to_masked: a.to_masked.clone(),
        outcome: if a.error.is_none() { "sent" } else { "failed" },
        reason: a.error.clone(),
        gateway: Some(a.gateway.clone()).filter(|g| !g.is_empty()),
        message_id: a.message_id.clone(),
    }
}

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &SendCode,
) -> Result<Flowing, Abort> {
    let step_id = ctx.id().to_string();
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for &channel in &step.channels.value {
        match target_for(ctx, step, channel) {
            Ok(t) => targets.push(t),
            Err(why) => {
                skipped.push(format!("{}: {why}", channel.as_str()));
                ctx.emit(Event::CodeAttempt {
                    step: step_id.clone(),
                    channel: channel.as_str(),
                    to_masked: String::new(),
                    outcome: "skipped",
                    reason: Some(why.to_string()),
                    gateway: None,
                    message_id: None,
                });
            }
        }
    }
    let first_channel = step
        .channels
        .value
        .first()
        .copied()
        .unwrap_or(CodeChannel::Sms);
    let Some(first) = targets.first().cloned() else {
        let why = format!("no channel can take the code ({})", skipped.join("; "));
        ctx.emit(Event::CodeSent {
            step: step_id,
            channel: first_channel.as_str(),
            to_masked: String::new(),
            outcome: SendOutcome::Error,
            reason: Some(why.clone()),
            gateway: None,
            message_id: None,
        });
        return Err(Abort::Fail(format!("send_code: {why}")));
    };
    // The subject: the account's, else the number the code goes to.
    let subject_key = match first.channel {
        CodeChannel::Email => ctx.state.read("account.phone").unwrap_or_default(),
        _ => first.to.clone(),
    };
    let subject = ctx.state.code_subject_for(&subject_key);
    let caller = phone::for_lookup(ctx.state.caller(), ctx.services.default_country);
    let req = CodeRequest {
        call_id: ctx.state.call_id().to_string(),
        subject: subject.clone(),
        caller,
        targets,
        brand: ctx.call.info().brand.clone(),
        language: step.language.value.clone(),
        length: step.length.value,
        ttl: step.ttl.value,
        max_attempts: step.max_attempts.value,
        resend_cooldown: step.resend_cooldown.value,
        now: ctx.clock(),
        caller_left: Default::default(),
    };
    let hold = ctx.render_prompts(&step.hold)?;
    let res = send_holding(ctx, &req, &hold).await?;
    let (mut reason, mut gateway, mut message_id) = (None, None, None);
    let (mut channel, mut to_masked) = (first.channel, first.masked());
    let (outcome, flowing) = match res {
        Ok(SendResult::Sent {
            channel: c,
            to_masked: t,
            gateway: g,
            message_id: m,
            attempts,
        }) => {
            for a in &attempts {
                ctx.emit(attempt_event(&step_id, a));
            }
            (channel, to_masked, gateway, message_id) = (c, t, Some(g), m);
            (SendOutcome::Sent, Ok(Flowing::Exit(Exit::Success)))
        }
        Ok(SendResult::Undeliverable { attempts }) => {
            for a in &attempts {
                ctx.emit(attempt_event(&step_id, a));
            }
            if let Some(last) = attempts.last() {
                (channel, to_masked) = (last.channel, last.to_masked.clone());
            }
            let why = attempts
                .iter()
                .map(|a| {
                    format!(
                        "{}: {}",
                        a.channel.as_str(),
                        a.error.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            reason = Some(why.clone());
            (
                SendOutcome::Error,
                Err(Abort::Fail(format!("code service: {why}"))),
            )
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
    if matches!(outcome, SendOutcome::Sent | SendOutcome::StillValid) {
        ctx.state.code_sent(PendingCode {
            channel,
            subject,
            sent_to_masked: to_masked.clone(),
        });
    }
    ctx.emit(Event::CodeSent {
        step: step_id,
        channel: channel.as_str(),
        to_masked,
        outcome,
        reason,
        gateway,
        message_id,
    });
    flowing
}

/// A send that takes longer than this (a code call ringing, an SMS
/// receipt awaited) starts the step's `hold` prompts.
const HOLD_AFTER: Duration = Duration::from_millis(800);
/// Silence between two plays of the `hold` prompts.
const HOLD_GAP: Duration = Duration::from_secs(2);

/// At most this long the step still waits, after a hang-up, for the send
/// it started to end (a code call cancelled, a relay's answer) so that its
/// delivery is recorded; the e-mail timeout is at most 60 s.
const FINISH_AFTER_HANGUP: Duration = Duration::from_secs(65);

/// Send the code; while the send takes time the caller hears `hold`
/// (again after each [`HOLD_GAP`]), not silence. Digits keyed meanwhile
/// are kept for the code entry. A hang-up tells the send (a code call in
/// progress is cancelled, no further channel tried) and waits for it to
/// end, so every delivery it made is recorded, then ends the flow.
async fn send_holding<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    req: &CodeRequest,
    hold: &[String],
) -> Result<Result<SendResult, crate::backends::ServiceError>, Abort> {
    let services = ctx.services;
    if hold.is_empty() {
        // Nothing listens to the call meanwhile: a hang-up is seen after
        // the send, which runs its course and records itself.
        return Ok(services.codes.send(req).await);
    }
    let mut send = std::pin::pin!(services.codes.send(req));
    let mut playing = false;
    let mut wait = HOLD_AFTER;
    loop {
        let timeout = if playing { None } else { Some(wait) };
        tokio::select! {
            biased;
            r = &mut send => {
                if playing {
                    ctx.call.stop_playback().await;
                }
                return Ok(r);
            }
            input = ctx.call.next_input(timeout) => match input {
                Ok(None) => {
                    ctx.call.play(hold).await.map_err(Abort::from_call)?;
                    playing = true;
                    wait = HOLD_GAP;
                }
                Ok(Some(CallInput::PlaybackDone)) => playing = false,
                Ok(Some(CallInput::Digit { digit, source })) => {
                    ctx.typeahead.push_back((digit, source));
                }
                Ok(Some(CallInput::HungUp)) => {
                    req.caller_left.set();
                    if tokio::time::timeout(FINISH_AFTER_HANGUP, &mut send).await.is_err() {
                        tracing::warn!("the code send did not end after the hang-up; its delivery may be unrecorded");
                    }
                    return Err(Abort::HungUp);
                }
                Ok(Some(_)) => {}
                Err(e) => return Err(Abort::from_call(e)),
            }
        }
    }
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
    prompts: |k| match k {
        StepKind::SendCode(c) => c.hold.iter().map(|p| ("hold", p)).collect(),
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
    const CHANNELS: &[(&str, CodeChannel)] = &[
        ("sms", CodeChannel::Sms),
        ("voice", CodeChannel::Voice),
        ("email", CodeChannel::Email),
    ];
    let one = r.choice("channel", CHANNELS);
    let list = r.choice_list("channels", CHANNELS);
    let channels = match (one, list) {
        (Some(c), None) => Spanned::new(vec![c], span),
        (None, Some(l)) => l,
        (Some(_), Some(l)) => {
            r.ferr(l.span, "`channel` or `channels`, not both");
            l
        }
        (None, None) => Spanned::new(vec![CodeChannel::Sms], span),
    };
    Some(StepKind::SendCode(SendCode {
        channels,
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
        hold: r.prompts("hold"),
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
