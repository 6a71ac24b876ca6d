//! What voxgate may write about a call, as allow-lists: the fields of each
//! event type (src/events.rs) and the keys of log lines (the `tracing` fields
//! in src/). A field not listed fails by name: a new one is a decision to take
//! here, against the privacy rules of src/events.rs (no transcripts, no secret
//! digits, masked numbers), not something a test lets through unseen.

use serde_json::Value;

/// Keys of one `--events` line: `{"ts": …, "call_id": …, "event": {…}}`
/// (`ts`: RFC 3339, UTC, milliseconds).
const EVENT_LINE: &[&str] = &["ts", "call_id", "event"];

/// The fields an event object of type `name` may carry (besides `event`).
fn event_fields(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "flow_started" => &["flow"],
        "step_entered" => &["step", "kind"],
        "step_left" => &["step", "exit"],
        // `digits` only when the step is not secret.
        "digits" => &["step", "count", "source", "digits"],
        // Never the transcript: only how many words and how sure.
        "recognition" => &["step", "confidence", "matched", "words"],
        "auth_passed" | "auth_failed" | "auth_expired" | "auth_locked" | "auth_no_input"
        | "auth_error" => &["step", "method", "outcome", "reason"],
        "code_sent" | "code_still_valid" | "code_rate_limited" | "code_locked"
        | "code_send_error" => &[
            "step",
            "channel",
            "to_masked",
            "outcome",
            "reason",
            "gateway",
            "message_id",
        ],
        // One try per channel: `to_masked` is "" when skipped (no address).
        "code_attempt" => &[
            "step",
            "channel",
            "to_masked",
            "outcome",
            "reason",
            "gateway",
            "message_id",
        ],
        "code_delivery" => &["gateway", "message_id", "status", "error"],
        "transferred" | "transfer_failed" | "transfer_error" => {
            &["step", "target", "outcome", "status", "via", "reason"]
        }
        "webhook_ok" | "webhook_failed" | "webhook_timeout" | "webhook_error" => {
            &["step", "outcome", "status"]
        }
        "error" => &["step", "message"],
        "hung_up_by_caller" | "hung_up_by_engine" => &["by", "step"],
        "barge_in" => &["step", "by"],
        // A hang-up mid-entry: how many keys, never which.
        "digits_abandoned" => &["step", "count"],
        "lookup" => &["step", "outcome", "trust", "directory", "micros"],
        _ => return None,
    })
}

/// Keys a log line may carry: the `tracing` fields voxgate logs (and the
/// `call{id=…}` span), plus the `k=v` pairs of the RTP statistics line.
const LOG_KEYS: &[&str] = &[
    // call and signalling
    "id",
    "call",
    "dialled",
    "caller",
    "trust",
    "brand",
    "source",
    "directory",
    "database",
    "accounts",
    // records, metrics and the HTTP endpoint
    "records",
    "dropped_total",
    "public_url",
    "error_code",
    "pointer",
    // limits (issue 16): refused INVITEs, socket buffers, descriptors, accept back-off
    "refused",
    "dropped",
    "asked",
    "granted",
    "before",
    "limit",
    "needed",
    "backoff",
    "file",
    "flow",
    "flows",
    "from",
    "to",
    "codec",
    "dtmf_pts",
    "hold",
    "rtp_port",
    "status",
    "reason",
    "why",
    "error",
    // transfer by REFER: the agent URI, how many headers ride along (never
    // their values), the REFER's progress and each attempt's end
    "target",
    "headers",
    "refer",
    "attempt",
    // the bridge: how the agent was reached, the agent leg's Call-ID and
    // the relay's frame counts
    "via",
    "leg",
    "outcome",
    "relayed_out",
    "relayed_in",
    "digits_relayed_out",
    "digits_relayed_in",
    // hold passed through a bridge: SDP directions (sendrecv, sendonly…)
    "direction",
    "answered",
    // code calls (codes_voice): the trunk, whether the whole script was
    // heard and how long the call lasted (never the number, never a digit)
    "trunk",
    "heard_all",
    "talk_ms",
    "listen",
    "calls",
    "grace",
    "max",
    "trigger",
    "problems",
    // flow
    "step",
    "message",
    "outcome",
    "event",
    "prompt",
    "ms",
    "bytes",
    "variables",
    // speech (counts and timings, never words)
    "engine",
    "threads",
    "load_ms",
    // a step's language tag (`ko`): which model was made ready at start
    "language",
    "utterance_s",
    "decode_ms",
    "confidence",
    "words",
    // media and process
    "nice",
    "priority",
    "sent",
    "received",
    "lost",
    // RFC 3550 interarrival jitter of the call's inbound audio, in ms
    "jitter_ms",
    "digits",
    "dropped_foreign",
    // RTP of a payload type the call did not negotiate (issue 16 item 7)
    "unnegotiated",
    "send_interval_p50_ms",
    "p99_ms",
    "p999_ms",
    "intervals",
    "over_30ms",
];

/// Fields of one event object (the inner `{"event": NAME, …}`) that are not
/// on its type's allow-list; an unknown type is a problem of its own.
pub fn event_problems(ev: &Value) -> Vec<String> {
    let Some(obj) = ev.as_object() else {
        return vec![format!("an event that is not a JSON object: {ev}")];
    };
    let name = obj.get("event").and_then(Value::as_str).unwrap_or("");
    let Some(allowed) = event_fields(name) else {
        return vec![format!(
            "event type `{name}` is not on the allow-list (tests/common/fields.rs)"
        )];
    };
    obj.keys()
        .filter(|k| *k != "event" && !allowed.contains(&k.as_str()))
        .map(|k| format!("event `{name}` has field `{k}`, which is not on its allow-list"))
        .collect()
}

/// Problems of every line of an `--events` file.
pub fn events_file_problems(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in raw.lines().enumerate() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            out.push(format!("events line {}: not JSON", n + 1));
            continue;
        };
        if let Some(obj) = v.as_object() {
            for k in obj.keys().filter(|k| !EVENT_LINE.contains(&k.as_str())) {
                out.push(format!(
                    "events line {}: field `{k}` beside the event",
                    n + 1
                ));
            }
        }
        for p in event_problems(&v["event"]) {
            out.push(format!("events line {}: {p}", n + 1));
        }
    }
    out
}

/// Log keys not on [`LOG_KEYS`], and the fields of events the log repeats
/// (the event sink logs each event's JSON). Names the key and the line
/// number, never the line: it may hold the very secret being looked for.
pub fn log_problems(log: &str) -> Vec<String> {
    let key = regex::Regex::new(r"(?:^|[\s{,(])([A-Za-z_][A-Za-z0-9_.]*)=").expect("regex");
    let mut out = Vec::new();
    for (n, line) in log.lines().enumerate() {
        let (text, event) = match line.find(r#"{"event":"#) {
            Some(i) => {
                let mut it = serde_json::Deserializer::from_str(&line[i..]).into_iter::<Value>();
                match it.next() {
                    Some(Ok(ev)) => {
                        let end = i + it.byte_offset();
                        (format!("{} {}", &line[..i], &line[end..]), Some(ev))
                    }
                    _ => (line.to_string(), None),
                }
            }
            None => (line.to_string(), None),
        };
        for c in key.captures_iter(&text) {
            let k = &c[1];
            if !LOG_KEYS.contains(&k) {
                out.push(format!(
                    "log line {}: key `{k}` is not on the allow-list (tests/common/fields.rs)",
                    n + 1
                ));
            }
        }
        if let Some(ev) = event {
            for p in event_problems(&ev) {
                out.push(format!("log line {}: {p}", n + 1));
            }
        }
    }
    out
}
