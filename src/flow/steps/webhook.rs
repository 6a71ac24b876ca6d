//! `webhook`: call an HTTP backend; the JSON answer becomes `<into>.<field>`.
//!
//! 2xx → `success`, other statuses → `failure` (with `<into>.status` set to
//! the HTTP status), no answer within `timeout` →
//! `timeout` (or `error` when the flow names no `timeout`), transport errors
//! → `error`. URL, header and body values are public renders: secrets never
//! leave the engine (the validator checks the same statically).
//! Nested JSON objects flatten with dots; arrays and nulls are kept as JSON text.

use crate::backends::{ServiceError, WebhookRequest};
use crate::call::CallChannel;
use crate::events::{Event, WebhookResult};
use crate::flow::model::{Exit, HttpMethod, Webhook};
use crate::flow::vars::Vars;

use super::{Abort, Ctx, Flowing};

pub(super) async fn run<C: CallChannel>(
    ctx: &mut Ctx<'_, C>,
    step: &Webhook,
) -> Result<Flowing, Abort> {
    let url = ctx
        .scope()
        .render_url(&step.url.value)
        .map_err(|e| Abort::Fail(format!("webhook url: {e}")))?;
    let mut headers = Vec::new();
    for (name, t) in &step.headers {
        let v = ctx
            .scope()
            .render_public(&t.value)
            .map_err(|e| Abort::Fail(format!("webhook header {}: {e}", name.value)))?;
        headers.push((name.value.clone(), v));
    }
    let mut body = serde_json::Map::new();
    for (name, t) in &step.body {
        let v = ctx
            .scope()
            .render_public(&t.value)
            .map_err(|e| Abort::Fail(format!("webhook body {}: {e}", name.value)))?;
        body.insert(name.value.clone(), serde_json::Value::String(v));
    }
    let req = WebhookRequest {
        url,
        post: step.method == HttpMethod::Post,
        headers,
        body,
        timeout: step.timeout.value,
    };
    let res = ctx.services.webhook.call(&req).await;
    let id = ctx.id().to_string();
    let (outcome, status, flowing) = match res {
        Ok(resp) if (200..300).contains(&resp.status) => {
            store(ctx.vars, &step.into.value, &resp.body);
            (
                WebhookResult::Ok,
                Some(resp.status),
                Ok(Flowing::Exit(Exit::Success)),
            )
        }
        Ok(resp) => {
            // The answer body is not stored on failure; the status is.
            let name = format!("{}.status", step.into.value);
            if ctx
                .vars
                .set(&name, &resp.status.to_string(), false)
                .is_err()
            {
                tracing::warn!(step = %id, "webhook `into` names engine state; status not stored");
            }
            (
                WebhookResult::Failed,
                Some(resp.status),
                Ok(Flowing::Exit(Exit::Failure)),
            )
        }
        Err(ServiceError::Timeout(m)) if !ctx.has_exit(Exit::Timeout) => (
            WebhookResult::Timeout,
            None,
            Err(Abort::Fail(format!("webhook timed out: {m}"))),
        ),
        Err(ServiceError::Timeout(_)) => (
            WebhookResult::Timeout,
            None,
            Ok(Flowing::Exit(Exit::Timeout)),
        ),
        Err(e) => (
            WebhookResult::Error,
            None,
            Err(Abort::Fail(format!("webhook: {e}"))),
        ),
    };
    ctx.emit(Event::Webhook {
        step: id,
        outcome,
        status,
    });
    flowing
}

/// Store an answer under `prefix.`: every name starts with the prefix and a
/// dot, so a key such as `"auth.result"` lands in `crm.auth.result` and never
/// reaches engine state. A name the engine owns (only possible if the loader
/// let a reserved `into` through) is dropped, not stored.
fn store(vars: &mut Vars, prefix: &str, v: &serde_json::Value) {
    let refused = match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m {
                store(vars, &format!("{prefix}.{k}"), val);
            }
            Ok(())
        }
        serde_json::Value::String(s) => vars.set(prefix, s, false),
        other => vars.set(prefix, &other.to_string(), false),
    };
    if refused.is_err() {
        tracing::warn!("webhook answer field names engine state; not stored");
    }
}

// --- the unit: how a `webhook` step is read and what it may do ---

use std::time::Duration;

use crate::flow::load::FieldReader;
use crate::flow::model::StepKind;

use super::unit::{Build, Read, Sink, Unit, Written};

pub(crate) const UNIT: Unit = Unit {
    guess_writes: |into, _| vec![Written::Prefix(format!("{into}."))],
    reads: |k| match k {
        StepKind::Webhook(h) => {
            let mut out = vec![Read::new("`url`", &h.url, Sink::WebhookUrl)];
            for (k, val) in &h.headers {
                out.push(Read::new(
                    format!("header {}", k.value),
                    val,
                    Sink::WebhookHeader,
                ));
            }
            for (k, val) in &h.body {
                out.push(Read::new(
                    format!("body field `{}`", k.value),
                    val,
                    Sink::WebhookBody,
                ));
            }
            out
        }
        _ => Vec::new(),
    },
    writes: |k| match k {
        StepKind::Webhook(h) => vec![Written::Prefix(format!("{}.", h.into.value))],
        _ => Vec::new(),
    },
    check_fields: |step, f| {
        if let StepKind::Webhook(h) = &step.kind {
            f.dur_in(
                "timeout",
                &h.timeout,
                Duration::from_secs(1),
                Duration::from_secs(120),
            );
            let url = h.url.value.trim();
            if !url.starts_with("http://") && !url.starts_with("https://") {
                let msg = format!(
                    "{}: `url` {url:?} must start with http:// or https://",
                    f.what
                );
                f.err(h.url.span, msg);
            }
        }
    },
    exits: &[Exit::Success, Exit::Failure, Exit::Timeout, Exit::Error],
    required: &[Exit::Success, Exit::Failure],
    calls_backend: true,
    ..Unit::new("webhook", Build::Reader(build))
};

fn build(r: &mut FieldReader<'_, '_, '_>) -> Option<StepKind> {
    if !r.mapping() {
        return None;
    }
    let url = r.required_template("url", "(e.g. \"http://127.0.0.1:8080/crm?n=${caller}\")");
    let method = r
        .choice(
            "method",
            &[("get", HttpMethod::Get), ("post", HttpMethod::Post)],
        )
        .unwrap_or(HttpMethod::Post);
    let timeout = r.duration_or("timeout", 3, 0);
    let headers = r.template_map("headers");
    let body = r.template_map("body");
    Some(StepKind::Webhook(Webhook {
        url,
        method,
        headers,
        body,
        timeout,
        into: r.into(true),
    }))
}
