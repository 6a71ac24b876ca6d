//! The Prometheus metrics of a voxgate process (`GET /metrics`), with the
//! `prometheus-client` crate.
//!
//! Call metrics are updated from the same fold of each call's events that
//! builds its record ([`super::CallTap`]): atomic increments (and a
//! read-locked label lookup) on the call's task, never I/O. The media
//! layer's global RTP counters ([`crate::media::stats::STATS`]) and the
//! speech decoders' ([`crate::asr::stats::STATS`]) are read at scrape time by
//! collectors, so those paths keep their plain atomics; counters of layers
//! above this one (SIP responses) are handed in by `serve` as
//! [`LabelledCounters`].

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::asr::stats as asr_stats;
use crate::events::Event;
use crate::media::stats;

/// `flow`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    flow: String,
    outcome: &'static str,
}

/// `method`, `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    method: &'static str,
    result: &'static str,
}

/// `channel`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SendLabels {
    channel: &'static str,
    outcome: &'static str,
}

/// `gateway`, `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    gateway: String,
    status: String,
}

/// `directory`, `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    directory: String,
    result: &'static str,
}

/// One label: `result` or `by`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `by`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByLabel {
    by: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn lookup_histogram() -> Histogram {
    // 100 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric of the process, and the registry that prints them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    active_calls: Gauge,
    calls: Family<CallLabels, Counter>,
    auths: Family<AuthLabels, Counter>,
    code_sends: Family<SendLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    lookups: HistogramFamily<LookupLabels>,
    transfers: Family<ResultLabel, Counter>,
    hangups: Family<ByLabel, Counter>,
    records_written: Counter,
    records_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("voxgate");
        let active_calls = Gauge::default();
        let calls = Family::<CallLabels, Counter>::default();
        let auths = Family::<AuthLabels, Counter>::default();
        let code_sends = Family::<SendLabels, Counter>::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let lookups: HistogramFamily<LookupLabels> =
            Family::new_with_constructor(lookup_histogram as fn() -> Histogram);
        let transfers = Family::<ResultLabel, Counter>::default();
        let hangups = Family::<ByLabel, Counter>::default();
        let records_written = Counter::default();
        let records_dropped = Counter::default();
        registry.register(
            "active_calls",
            "Calls running a flow now",
            active_calls.clone(),
        );
        registry.register(
            "calls",
            "Calls ended, by flow and funnel outcome",
            calls.clone(),
        );
        registry.register(
            "authentications",
            "Verification steps concluded, by method and result",
            auths.clone(),
        );
        registry.register(
            "code_sends",
            "send_code results, by channel and outcome",
            code_sends.clone(),
        );
        registry.register(
            "code_deliveries",
            "Delivery receipts recorded, by gateway and status",
            deliveries.clone(),
        );
        registry.register(
            "lookup_seconds",
            "Caller lookup time, by directory and result",
            lookups.clone(),
        );
        registry.register(
            "transfers",
            "Transfer attempts, by result",
            transfers.clone(),
        );
        registry.register("hangups", "Calls ended, by who hung up", hangups.clone());
        registry.register(
            "records_written",
            "Call records written to the store",
            records_written.clone(),
        );
        registry.register(
            "records_dropped",
            "Call records dropped because the writer's queue was full or the write failed",
            records_dropped.clone(),
        );
        registry.register_collector(Box::new(RtpCollector));
        registry.register_collector(Box::new(AsrCollector));
        Metrics {
            registry,
            active_calls,
            calls,
            auths,
            code_sends,
            deliveries,
            lookups,
            transfers,
            hangups,
            records_written,
            records_dropped,
        }
    }

    /// Also print `counters` (read at scrape time) with the others.
    pub fn register_counters(&mut self, counters: LabelledCounters) {
        self.registry.register_collector(Box::new(counters));
    }

    /// Every metric in the Prometheus text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// A gateway reported `status` for a message (a delivery receipt).
    pub fn delivery(&self, gateway: &str, status: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                gateway: gateway.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub(super) fn call_started(&self) {
        self.active_calls.inc();
    }

    pub(super) fn call_ended(&self, flow: &str, outcome: &'static str) {
        self.active_calls.dec();
        self.calls
            .get_or_create(&CallLabels {
                flow: flow.to_string(),
                outcome,
            })
            .inc();
    }

    pub(super) fn record_written(&self, n: u64) {
        self.records_written.inc_by(n);
    }

    pub(super) fn record_dropped(&self, n: u64) {
        self.records_dropped.inc_by(n);
    }

    /// Count what one event says (called on the call's task).
    pub(super) fn event(&self, ev: &Event) {
        match ev {
            Event::Auth {
                method, outcome, ..
            } => {
                self.auths
                    .get_or_create(&AuthLabels {
                        method: method.as_str(),
                        result: outcome.as_str(),
                    })
                    .inc();
            }
            Event::CodeSent {
                channel, outcome, ..
            } => {
                self.code_sends
                    .get_or_create(&SendLabels {
                        channel,
                        outcome: outcome.as_str(),
                    })
                    .inc();
            }
            Event::Lookup {
                outcome,
                directory,
                micros,
                ..
            } if !directory.is_empty() => {
                self.lookups
                    .get_or_create(&LookupLabels {
                        directory: directory.clone(),
                        result: outcome.as_str(),
                    })
                    .observe(*micros as f64 / 1e6);
            }
            Event::Transfer { outcome, .. } => {
                self.transfers
                    .get_or_create(&ResultLabel {
                        result: outcome.as_str(),
                    })
                    .inc();
            }
            Event::HungUp { by, .. } => {
                self.hangups
                    .get_or_create(&ByLabel { by: by.as_str() })
                    .inc();
            }
            _ => {}
        }
    }
}

/// A counter family kept elsewhere (a layer above this one), read at
/// scrape time: `read` gives each label value and its count.
pub struct LabelledCounters {
    /// Metric name, without the `voxgate_` prefix or `_total`.
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// The one label's name, e.g. `class`.
    pub label: &'static str,
    /// The counts now, by label value.
    pub read: fn() -> Vec<(&'static str, u64)>,
}

impl std::fmt::Debug for LabelledCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelledCounters")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector for LabelledCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Counter)?;
        for (value, n) in (self.read)() {
            let labels = [(self.label, value)];
            let c = ConstCounter::new(n);
            c.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The speech decoders' global counters, read at scrape time.
#[derive(Debug)]
struct AsrCollector;

impl Collector for AsrCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = asr_stats::STATS.snapshot();
        let queued = ConstGauge::new(i64::try_from(snap.queued).unwrap_or(i64::MAX));
        queued.encode(encoder.encode_descriptor(
            "asr_queue_depth",
            "Utterances waiting for a speech decoder thread now",
            None,
            queued.metric_type(),
        )?)?;
        let busy = ConstCounter::new(snap.busy);
        busy.encode(encoder.encode_descriptor(
            "asr_refused_busy",
            "Utterances refused because every decoder was busy (the caller is re-prompted)",
            None,
            busy.metric_type(),
        )?)?;
        // Per-bucket counts: the text encoder makes them cumulative.
        let buckets: Vec<(f64, u64)> = snap
            .latency
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let le = asr_stats::LATENCY_BOUNDS_MS
                    .get(i)
                    .map_or(f64::INFINITY, |ms| *ms as f64 / 1000.0);
                (le, *n)
            })
            .collect();
        let count = snap.latency.iter().sum();
        let mut m = encoder.encode_descriptor(
            "recognition_seconds",
            "Time from an utterance queued for decoding to its answer (decoder wait + decode)",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            snap.latency_sum,
            count,
            &buckets,
            None,
        )
    }
}

/// The media layer's global RTP counters, read at scrape time.
#[derive(Debug)]
struct RtpCollector;

impl Collector for RtpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = stats::STATS.snapshot();
        for (name, help, v) in [
            ("rtp_packets_sent", "RTP packets sent, all calls", snap.sent),
            (
                "rtp_packets_received",
                "RTP packets received, all calls",
                snap.received,
            ),
            (
                "rtp_frames_lost",
                "Lost frames the jitter buffer played out, all calls",
                snap.lost,
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        // The send-interval histogram in 1 ms buckets up to 60 ms (the
        // media layer keeps 0.1 ms ones), then +Inf.
        let per_ms = (1000 / stats::BUCKET_US) as usize;
        let mut buckets = Vec::with_capacity(61);
        let mut sum = 0.0;
        for (ms, chunk) in snap.send_interval[..stats::BUCKETS]
            .chunks(per_ms)
            .enumerate()
        {
            let n: u64 = chunk.iter().sum();
            buckets.push(((ms + 1) as f64 / 1000.0, n));
            for (i, c) in chunk.iter().enumerate() {
                // Each bucket's midpoint stands for its intervals.
                let mid_us = ((ms * per_ms + i) as f64 + 0.5) * stats::BUCKET_US as f64;
                sum += *c as f64 * mid_us / 1e6;
            }
        }
        // Each call's RFC 3550 interarrival jitter at its end.
        let mut jitter: Vec<(f64, u64)> = stats::JITTER_BOUNDS_MS
            .iter()
            .map(|ms| ms / 1000.0)
            .chain([f64::INFINITY])
            .zip(snap.call_jitter.iter().copied())
            .collect();
        jitter.truncate(stats::JITTER_BOUNDS_MS.len() + 1);
        let calls: u64 = jitter.iter().map(|(_, n)| n).sum();
        let mut m = encoder.encode_descriptor(
            "rtp_jitter_seconds",
            "Interarrival jitter (RFC 3550) of each call's inbound audio, at the call's end",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            snap.call_jitter_sum_us as f64 / 1e6,
            calls,
            &jitter,
            None,
        )?;
        let overflow = snap.send_interval.get(stats::BUCKETS).copied().unwrap_or(0);
        sum += overflow as f64 * 0.06;
        buckets.push((f64::INFINITY, overflow));
        let count: u64 = buckets.iter().map(|(_, n)| n).sum();
        let mut m = encoder.encode_descriptor(
            "rtp_send_interval_seconds",
            "Time between two consecutive RTP sends of a call (the 20 ms pacing)",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }
}
