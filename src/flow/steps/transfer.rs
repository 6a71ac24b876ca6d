//! `transfer`: hand the call to an agent (REFER or bridge), with SIP headers.
//!
//! On success the call belongs to the target: the flow ends with disposition
//! `transferred`, or continues at a named `success` exit for bookkeeping. Target and
//! header values are public renders: a secret can never reach the agent leg.

use crate::call::{self, CallChannel, CallError, TransferOutcome, TransferRequest};
use crate::events::{Event, TransferResult};
use crate::flow::model::{Exit, Transfer, TransferMode};

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &Transfer,
) -> Result<Flowing, Abort> {
    let target = ctx
        .scope()
        .render_public(&step.target.value)
        .map_err(|e| Abort::Fail(format!("transfer target: {e}")))?;
    let mut headers = Vec::new();
    for (name, t) in &step.headers {
        let v = ctx
            .scope()
            .render_public(&t.value)
            .map_err(|e| Abort::Fail(format!("transfer header {}: {e}", name.value)))?;
        headers.push((name.value.clone(), v));
    }
    let req = TransferRequest {
        targets: vec![target.clone()],
        headers,
        mode: match step.mode {
            TransferMode::Refer => call::TransferMode::Refer,
            TransferMode::Bridge => call::TransferMode::Bridge,
            TransferMode::ReferThenBridge => call::TransferMode::ReferThenBridge,
        },
        attempt_timeout: step.timeout.value,
        max_bridge: Duration::from_secs(4 * 3600),
    };
    let res = ctx.call.transfer(&req).await;
    let id = ctx.id().to_string();
    let ev = |outcome, status| Event::Transfer {
        step: id.clone(),
        target: target.clone(),
        outcome,
        status,
    };
    match res {
        Ok(TransferOutcome::Transferred { .. }) => {
            ctx.emit(ev(TransferResult::Transferred, None));
            Ok(Flowing::Transferred { target })
        }
        Ok(TransferOutcome::Failed { status, reason }) => {
            tracing::info!(step = %ctx.id(), ?status, reason = reason.as_str(), "transfer failed");
            ctx.emit(ev(TransferResult::Failed, status));
            Ok(Flowing::Exit(Exit::Failure))
        }
        Err(CallError::HungUp) => Err(Abort::HungUp),
        Err(e) => {
            ctx.emit(ev(TransferResult::Error, None));
            match Abort::from_call(e) {
                Abort::Call(m) => Err(Abort::Fail(format!("transfer: {m}"))),
                other => Err(other),
            }
        }
    }
}

// --- the unit: how a `transfer` step is read and what it may do ---

use std::time::Duration;

use crate::flow::load::FieldReader;
use crate::flow::model::StepKind;

use super::unit::{Build, Read, Sink, Unit};

pub(crate) const UNIT: Unit = Unit {
    reads: |k| match k {
        StepKind::Transfer(t) => {
            let mut out = vec![Read::new("`target`", &t.target, Sink::TransferTarget)];
            for (k, val) in &t.headers {
                out.push(Read::new(
                    format!("header {}", k.value),
                    val,
                    Sink::TransferHeader,
                ));
            }
            out
        }
        _ => Vec::new(),
    },
    check_fields: |step, f| {
        if let StepKind::Transfer(t) = &step.kind {
            let s = Duration::from_secs;
            f.dur_in("timeout", &t.timeout, s(1), s(120));
            let w = f.what.clone();
            let target = t.target.value.trim();
            if target.is_empty() {
                f.err(
                    t.target.span,
                    format!("{w}: `target` is empty; give a SIP URI such as \"sip:agents@10.0.0.5:5060\""),
                );
            } else if !target.contains("${")
                && !["sip:", "sips:", "tel:"]
                    .iter()
                    .any(|p| target.starts_with(p))
            {
                f.err(
                    t.target.span,
                    format!("{w}: `target` {target:?} is not a SIP URI; write it like \"sip:agents@10.0.0.5:5060\" or \"tel:+15551234567\""),
                );
            }
        }
    },
    exits: &[Exit::Success, Exit::Failure, Exit::Error],
    required: &[Exit::Failure],
    calls_backend: true,
    ends_call: true,
    ..Unit::new("transfer", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    // Missing or bad: reported here; the validator's own `target` check is
    // at the same position and is not repeated.
    let target = r.required_template("target", "(a SIP URI such as \"sip:agents@10.0.0.5:5060\")");
    let mode = r
        .choice(
            "mode",
            &[
                ("refer", TransferMode::Refer),
                ("bridge", TransferMode::Bridge),
                ("refer_then_bridge", TransferMode::ReferThenBridge),
            ],
        )
        .unwrap_or(TransferMode::ReferThenBridge);
    let timeout = r.duration_or("timeout", 30, 0);
    Some(StepKind::Transfer(Transfer {
        target,
        headers: r.template_map("headers"),
        mode,
        timeout,
    }))
}
