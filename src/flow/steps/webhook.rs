//! `webhook`: call an HTTP backend; the JSON answer becomes `<into>.<field>`.
//!
//! 2xx → `success`, other statuses → `failure` (with `<into>.status` set to
//! the HTTP status), no answer within `timeout` →
//! `timeout` (or `error` when the flow names no `timeout`), transport errors
//! → `error`. URL, header and body values are public renders: secrets never
//! leave the engine (the validator checks the same statically).
//! Nested JSON objects flatten with dots; arrays and nulls are kept as JSON text.

use crate::call::CallChannel;
use crate::events::{Event, WebhookResult};
use crate::flow::model::{Exit, HttpMethod, Webhook};
use crate::flow::services::{ServiceError, WebhookRequest};
use crate::flow::vars::Vars;

use super::{Abort, Ctx, Flowing};

pub async fn run<C: CallChannel>(ctx: &mut Ctx<'_, C>, step: &Webhook) -> Result<Flowing, Abort> {
    let url = ctx
        .vars
        .render_url(&step.url.value)
        .map_err(|e| Abort::Fail(format!("webhook url: {e}")))?;
    let mut headers = Vec::new();
    for (name, t) in &step.headers {
        let v = ctx
            .vars
            .render_public(&t.value)
            .map_err(|e| Abort::Fail(format!("webhook header {}: {e}", name.value)))?;
        headers.push((name.value.clone(), v));
    }
    let mut body = serde_json::Map::new();
    for (name, t) in &step.body {
        let v = ctx
            .vars
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
            ctx.vars.set(&name, &resp.status.to_string(), false);
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

fn store(vars: &mut Vars, prefix: &str, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m {
                store(vars, &format!("{prefix}.{k}"), val);
            }
        }
        serde_json::Value::String(s) => vars.set(prefix, s, false),
        other => vars.set(prefix, &other.to_string(), false),
    }
}
