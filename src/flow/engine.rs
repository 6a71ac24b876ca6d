//! The flow interpreter: walk steps from `start`, follow exits, stop cleanly.
//!
//! Ways a run ends:
//! - the caller hangs up (at any wait, or as a call error) → `HungUpByCaller`;
//! - a `hangup` step, or a step whose `next` is not given → `Ended` (we send BYE);
//! - a successful transfer → `Transferred` (if the transfer step names a
//!   `success` exit the flow continues there for bookkeeping, and the run
//!   still counts as `Transferred` when it then ends or the leg goes away);
//! - anything else (`max_duration`, more than [`MAX_TRANSITIONS`] steps, an
//!   exit with no target, a failure in a step without an `error` exit, a
//!   broken call) → an `Error` event, we hang up, `Error`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::backends::Services;
use crate::call::CallChannel;
use crate::events::{Event, EventSink, HangupBy};
use crate::flow::model::{Exit, Flow};
use crate::flow::state::CallState;
use crate::flow::steps::{run_step, Abort, Ctx, Flowing};
use crate::flow::vars::{Scope, Vars};

/// Steps run before a flow is declared runaway (a loop without input).
pub const MAX_TRANSITIONS: usize = 1000;

/// How the run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Disposition {
    /// The caller hung up (while waiting for input, or seen as a call error).
    HungUpByCaller {
        /// The step the run was in.
        step: String,
    },
    /// The flow ended itself: a `hangup` step, or a `next` exit with no target.
    Ended {
        /// The step that ended it.
        step: String,
    },
    /// A transfer succeeded; the call now belongs to someone else.
    Transferred {
        /// The transfer step (not a bookkeeping step after it).
        step: String,
        /// The rendered transfer target.
        target: String,
    },
    /// The run was stopped by a failure; we hung up.
    Error {
        /// The step that failed (empty when `vars:` could not be set).
        step: String,
        /// What went wrong, as in the `error` event.
        message: String,
    },
}

impl Disposition {
    /// `hung_up` | `ended` | `transferred` | `error` (test files use these).
    pub fn name(&self) -> &'static str {
        match self {
            Disposition::HungUpByCaller { .. } => "hung_up",
            Disposition::Ended { .. } => "ended",
            Disposition::Transferred { .. } => "transferred",
            Disposition::Error { .. } => "error",
        }
    }
}

/// One move from a step: the exit label (`success`, `if#1`, `else`, …) and where it led.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The step id that was left.
    pub from: String,
    /// The exit label taken, as test files and `StepLeft` events spell it.
    pub exit: String,
    /// The step id entered next; `None` when the exit ended the run.
    pub to: Option<String>,
}

/// What [`run_flow`] reports about one run: for `voxgate test` assertions and
/// the end-of-call log.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowOutcome {
    /// Step ids in the order entered.
    pub path: Vec<String>,
    /// Every exit taken, in order (one per entered step that finished).
    pub transitions: Vec<Transition>,
    /// How the run ended.
    pub disposition: Disposition,
    /// Final variables (the flow's and the engine's), secrets masked.
    pub vars: BTreeMap<String, String>,
    /// Call time when the run ended.
    pub elapsed: Duration,
}

/// Run `flow` on `call` until it ends. Never panics on flow or call input.
pub async fn run_flow<C: CallChannel>(
    flow: &Flow,
    call: &mut C,
    services: &Services,
    sink: &mut dyn EventSink,
) -> FlowOutcome {
    let mut state = CallState::from_call(call.info());
    let mut vars = Vars::for_run();
    let mut path = Vec::new();
    let mut transitions = Vec::new();
    let mut typeahead = VecDeque::new();
    sink.emit(Event::FlowStarted {
        flow: flow.name.clone(),
    });
    let deadline = flow.max_duration.map(|d| call.elapsed() + d);
    let mut current = flow.start.value.clone();
    // Set once a transfer succeeded and the flow continued at its `success` exit.
    let mut transferred: Option<(String, String)> = None;

    let disposition = 'run: {
        for (name, t) in &flow.vars {
            let set = Scope::new(&state, &vars)
                .render_internal(&t.value)
                .and_then(|(v, secret)| vars.set(name, &v, secret));
            match set {
                Ok(()) => {}
                Err(e) => {
                    break 'run fail(call, sink, "", format!("flow variable `{name}`: {e}")).await;
                }
            }
        }
        loop {
            if path.len() >= MAX_TRANSITIONS {
                let msg = format!(
                    "flow ran {MAX_TRANSITIONS} steps without ending; stopping a runaway loop"
                );
                break 'run fail(call, sink, &current, msg).await;
            }
            let Some(step) = flow.step(&current) else {
                break 'run fail(call, sink, &current, format!("no step named `{current}`")).await;
            };
            if deadline.is_some_and(|d| call.elapsed() >= d) {
                break 'run fail(call, sink, &current, max_duration_msg(flow)).await;
            }
            path.push(current.clone());
            sink.emit(Event::StepEntered {
                step: current.clone(),
                kind: step.kind.name(),
            });
            let res = {
                let mut ctx = Ctx {
                    call: &mut *call,
                    services,
                    sink: &mut *sink,
                    vars: &mut vars,
                    state: &mut state,
                    step,
                    deadline,
                    typeahead: &mut typeahead,
                };
                run_step(&mut ctx).await
            };
            let (label, next) = match res {
                Ok(Flowing::Exit(exit)) => {
                    vars.set_last_exit(exit.as_str());
                    match step.exits.get(&exit) {
                        Some(t) => (exit.as_str().to_string(), t.value.clone()),
                        None if exit == Exit::Next => {
                            left(sink, &mut transitions, &current, "next", None);
                            let by = if call.ended_by_caller() {
                                HangupBy::Caller
                            } else {
                                HangupBy::Engine
                            };
                            call.hangup().await;
                            sink.emit(Event::HungUp {
                                by,
                                step: current.clone(),
                            });
                            break 'run Disposition::Ended { step: current };
                        }
                        None => {
                            left(sink, &mut transitions, &current, exit.as_str(), None);
                            let msg = format!(
                                "step `{current}` took exit `{}` which has no target",
                                exit.as_str()
                            );
                            break 'run fail(call, sink, &current, msg).await;
                        }
                    }
                }
                Ok(Flowing::Goto { target, label }) => (label, target),
                Ok(Flowing::Hangup) => {
                    left(sink, &mut transitions, &current, "hangup", None);
                    break 'run Disposition::Ended { step: current };
                }
                Ok(Flowing::Transferred { target }) => {
                    vars.set_last_exit("success");
                    match step.exits.get(&Exit::Success) {
                        // Bookkeeping steps may follow (set, webhook, hangup).
                        Some(t) => {
                            transferred = Some((current.clone(), target));
                            ("success".to_string(), t.value.clone())
                        }
                        None => {
                            left(sink, &mut transitions, &current, "success", None);
                            break 'run Disposition::Transferred {
                                step: current,
                                target,
                            };
                        }
                    }
                }
                Err(Abort::HungUp) => {
                    sink.emit(Event::HungUp {
                        by: HangupBy::Caller,
                        step: current.clone(),
                    });
                    break 'run Disposition::HungUpByCaller { step: current };
                }
                Err(Abort::MaxDuration) => {
                    break 'run fail(call, sink, &current, max_duration_msg(flow)).await;
                }
                Err(Abort::Call(m)) | Err(Abort::Fail(m)) => {
                    break 'run fail(call, sink, &current, m).await;
                }
            };
            left(sink, &mut transitions, &current, &label, Some(&next));
            current = next;
        }
    };

    // Once the call belongs to an agent, ending or losing our leg is still a transfer.
    let disposition = match (disposition, transferred) {
        (Disposition::Ended { .. } | Disposition::HungUpByCaller { .. }, Some((step, target))) => {
            Disposition::Transferred { step, target }
        }
        (d, _) => d,
    };
    FlowOutcome {
        path,
        transitions,
        disposition,
        vars: Scope::new(&state, &vars).masked(),
        elapsed: call.elapsed(),
    }
}

fn max_duration_msg(flow: &Flow) -> String {
    let d = flow.max_duration.unwrap_or_default();
    format!("flow exceeded its max_duration of {}s", d.as_secs_f64())
}

fn left(
    sink: &mut dyn EventSink,
    transitions: &mut Vec<Transition>,
    from: &str,
    exit: &str,
    to: Option<&str>,
) {
    sink.emit(Event::StepLeft {
        step: from.to_string(),
        exit: exit.to_string(),
    });
    transitions.push(Transition {
        from: from.to_string(),
        exit: exit.to_string(),
        to: to.map(str::to_string),
    });
}

/// End the run with an error: event, log line, BYE.
async fn fail<C: CallChannel>(
    call: &mut C,
    sink: &mut dyn EventSink,
    step: &str,
    message: String,
) -> Disposition {
    tracing::warn!(%step, %message, "flow error; hanging up");
    sink.emit(Event::Error {
        step: step.to_string(),
        message: message.clone(),
    });
    call.hangup().await;
    sink.emit(Event::HungUp {
        by: HangupBy::Engine,
        step: step.to_string(),
    });
    Disposition::Error {
        step: step.to_string(),
        message,
    }
}
