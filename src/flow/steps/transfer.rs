//! `transfer`: hand the call to an agent (REFER or bridge), with SIP headers.
//!
//! On success the call belongs to the target: the flow ends with disposition
//! `transferred`, or continues at a named `success` exit for bookkeeping. Target and
//! header values are public renders: a secret can never reach the agent leg.

use crate::backends::handoff::HandoffContext;
use crate::call::{self, CallChannel, CallError, TransferOutcome, TransferPath, TransferRequest};
use crate::events::{Event, TransferResult};
use crate::flow::model::{Exit, Transfer, TransferMode};
use crate::flow::state::TransferFailed;

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &Transfer,
) -> Result<Flowing, Abort> {
    let target = ctx
        .scope()
        .render_public(&step.target.value)
        .map_err(|e| Abort::Fail(format!("transfer target: {e}")))?;
    let id = ctx.id().to_string();
    let ev = |outcome, status, detail| Event::Transfer {
        step: id.clone(),
        target: target.clone(),
        outcome,
        status,
        detail,
    };
    let handoff = handoff_context(ctx);
    let plan = match ctx
        .services
        .handoff
        .plan(&target, step.timeout.value, &handoff, ctx.clock())
    {
        Ok(p) => p,
        Err(e) => {
            ctx.emit(ev(TransferResult::Error, None, None));
            return Err(Abort::Fail(format!("transfer: {e}")));
        }
    };
    // The engine's context headers come first and win: a flow header of
    // the same name (whose value a webhook answer could have shaped) is
    // left out rather than sent twice.
    let mut headers = plan.headers;
    for (name, t) in &step.headers {
        if headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(&name.value))
        {
            continue;
        }
        let v = ctx
            .scope()
            .render_public(&t.value)
            .map_err(|e| Abort::Fail(format!("transfer header {}: {e}", name.value)))?;
        headers.push((name.value.clone(), v));
    }
    let req = TransferRequest {
        targets: plan.targets,
        headers,
        mode: match step.mode {
            TransferMode::Refer => call::TransferMode::Refer,
            TransferMode::Bridge => call::TransferMode::Bridge,
            TransferMode::ReferThenBridge => call::TransferMode::ReferThenBridge,
        },
        attempt_timeout: plan.attempt_timeout,
        max_bridge: plan.max_bridge,
    };
    match ctx.call.transfer(&req).await {
        Ok(TransferOutcome::Transferred {
            target: agent,
            path,
        }) => {
            let via = match path {
                TransferPath::Referred => "refer",
                TransferPath::Bridged => "bridge",
            };
            tracing::info!(step = %ctx.id(), via, "transferred");
            ctx.emit(ev(TransferResult::Transferred, None, Some(via)));
            Ok(Flowing::Transferred { target: agent })
        }
        Ok(TransferOutcome::Failed { status, reason }) => {
            tracing::info!(step = %ctx.id(), ?status, reason = reason.as_str(), "transfer failed");
            ctx.emit(ev(TransferResult::Failed, status, Some(reason.as_str())));
            ctx.state.transfer_failed(TransferFailed { status, reason });
            Ok(Flowing::Exit(Exit::Failure))
        }
        Err(CallError::HungUp) => Err(Abort::HungUp),
        Err(e) => {
            ctx.emit(ev(TransferResult::Error, None, None));
            match Abort::from_call(e) {
                Abort::Call(m) => Err(Abort::Fail(format!("transfer: {m}"))),
                other => Err(other),
            }
        }
    }
}

/// The engine's typed state as the agent will see it.
fn handoff_context<C: CallChannel>(ctx: &Ctx<'_, C>) -> HandoffContext {
    let s = &*ctx.state;
    let last = s.auth_result();
    HandoffContext {
        call_id: s.call_id().to_string(),
        brand: ctx.call.info().brand.clone(),
        trust: s.trust().as_str().to_string(),
        auth_result: last.map_or("none", |a| a.outcome.as_str()).to_string(),
        auth_method: last.map_or("none", |a| a.method.as_str()).to_string(),
        methods: s
            .auth_attempts()
            .iter()
            .map(|a| {
                (
                    a.method.as_str().to_string(),
                    a.outcome.as_str().to_string(),
                )
            })
            .collect(),
        account_id: s.account().and_then(|a| a.id()).map(str::to_string),
    }
}

// --- the unit: how a `transfer` step is read and what it may do ---

use std::time::Duration;

use crate::config::transfer::is_group_name;
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
                && !is_group_name(target)
                && !["sip:", "sips:", "tel:"]
                    .iter()
                    .any(|p| target.starts_with(p))
            {
                f.err(
                    t.target.span,
                    format!("{w}: `target` {target:?} is neither a SIP URI nor an agent group; write it like \"sip:agents@10.0.0.5:5060\" (or \"tel:+15551234567\" through transfer.outbound_proxy) or name a group of transfer.groups such as `agents`"),
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
