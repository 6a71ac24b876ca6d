//! What the subcommands do, at the CLI edge (anyhow errors, process setup).

pub mod accounts;
pub mod codes;
pub mod console;
pub mod evaluate;
mod fdlimit;
mod progress;
pub mod report;
mod timestamp;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::backends::codes::StoreCodes;
use crate::backends::directory::Directories;
use crate::backends::passphrase::StorePassphrases;
use crate::backends::totp::StoreTotp;
use crate::backends::webhook_http::HttpWebhook;
use crate::backends::Services;
use crate::call::setup::{CallRunner, CallSetup, SetupConfig};
use crate::call::sip::SipCall;
use crate::call::CallChannel;
use crate::config::{self, Config};
use crate::events::{Event, EventSink};
use crate::flow::diag::Diagnostic;
use crate::flow::model::Flow;
use crate::flow::{engine, load, testing, validate as fvalidate};
use crate::linewriter::LineWriter;
use crate::media::prompt::PromptCache;
use crate::media::session::SessionConfig;
use crate::media::stats;
use crate::sip::endpoint::{self, Endpoint, SipConfig};
use crate::store::{SecretKey, Store};
use crate::telemetry::{CallStart, CallTap, LabelledCounters, Metrics, Telemetry};

/// The `serve` command line; each `Some` overrides the config file.
pub struct ServeArgs {
    /// Config file (YAML); None: the defaults, paths relative to `.`.
    pub config: Option<PathBuf>,
    /// SIP listen address as `ADDR:PORT`; parsed (and refused) in [`serve`].
    pub listen: Option<String>,
    /// Directory of the flow files.
    pub flows: Option<PathBuf>,
    /// Directory of the prompt recordings the flows name.
    pub prompts: Option<PathBuf>,
    /// Directory of the Whisper models; none found means no `recognize`.
    pub models: Option<PathBuf>,
    /// File for the call events as JSON lines; `-` is stdout.
    pub events: Option<PathBuf>,
}

/// The log filter unless `VOXGATE_LOG` says otherwise: rsipstack only at
/// warn (it logs raw messages, with INFO digits, at info), and its parser
/// not at all (one warning per folded header line of a hostile message).
pub const DEFAULT_LOG_FILTER: &str = "info,rsipstack=warn,rsipstack::sip::parser=off";

/// Log lines go through a writer thread (see `linewriter`); the handle lets
/// `serve` flush them before exiting.
fn init_logging(json: bool) -> Option<LineWriter> {
    use tracing_subscriber::EnvFilter;
    // rsipstack logs raw messages (INFO bodies carry digits) at info: keep it quiet.
    let filter = EnvFilter::try_from_env("VOXGATE_LOG")
        // Its parser warns once per folded header line (thousands per
        // datagram from a hostile peer): off; our own parser answers 400.
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    use std::io::IsTerminal;
    let writer = LineWriter::spawn(Box::new(std::io::stderr()), "voxgate-log").ok();
    let w = writer.clone();
    let make = move || -> Box<dyn Write> {
        match &w {
            Some(w) => Box::new(w.clone()),
            None => Box::new(std::io::stderr()),
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(make);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
    writer
}

/// Flows by name, swapped whole on reload so running calls keep their version.
pub struct FlowSet {
    flows: RwLock<Arc<HashMap<String, Arc<Flow>>>>,
    routes: std::collections::BTreeMap<String, config::Route>,
    by_name: bool,
}

impl FlowSet {
    fn get(&self, name: &str) -> Option<Arc<Flow>> {
        self.flows.read().ok()?.get(name).cloned()
    }

    fn replace(&self, flows: Vec<Flow>) {
        let map: HashMap<String, Arc<Flow>> = flows
            .into_iter()
            .map(|f| (f.name.clone(), Arc::new(f)))
            .collect();
        if let Ok(mut g) = self.flows.write() {
            *g = Arc::new(map);
        }
    }

    /// Every flow now loaded, by name (the console draws them).
    fn all(&self) -> Vec<Arc<Flow>> {
        let mut v: Vec<Arc<Flow>> = self
            .flows
            .read()
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn names(&self) -> Vec<String> {
        self.flows
            .read()
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// SIGUSR1: RTP counters since the start and since the previous SIGUSR1.
fn log_rtp_stats(last: &mut stats::Snapshot) {
    let now = stats::STATS.snapshot();
    info!("rtp stats {}", now.summary());
    info!("rtp stats since last report {}", now.since(last).summary());
    info!(
        "relay stats since last report {}",
        crate::media::bridge::RELAY.report()
    );
    *last = now;
}

/// Load and validate every flow of a directory; any diagnostic is fatal.
fn load_valid_flows(dir: &Path, prompts: &Path) -> Result<Vec<Flow>, Vec<Diagnostic>> {
    let (flows, mut diags) = load::load_dir(dir);
    let opts = fvalidate::ValidateOptions {
        prompts_dir: prompts.to_path_buf(),
    };
    for f in &flows {
        diags.extend(fvalidate::validate(f, &opts));
    }
    if diags.is_empty() {
        Ok(flows)
    } else {
        Err(diags)
    }
}

/// Raise (or lower) the scheduling priority before the runtime's threads
/// start; they inherit it. Without the privilege (CAP_SYS_NICE) we go on at
/// normal priority and say so.
fn set_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: setpriority only reads its integer arguments; 0 = this thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        info!(nice, "scheduling priority set");
    } else {
        warn!(nice, error = %std::io::Error::last_os_error(), "cannot change scheduling priority; running at normal priority (grant CAP_SYS_NICE or set nice: 0)");
    }
}

/// Decoders for `recognize`, or None (with the reason logged) when no model
/// is installed: those steps then take their `error` exit. The models of
/// `languages` (what the flows' speech steps name) are loaded now, so the
/// first caller in a language does not wait seconds for its model.
fn speech_pool(
    models_dir: &Path,
    languages: &[String],
    confirm: bool,
    short_window: bool,
) -> Option<crate::asr::SpeechPool> {
    let started = std::time::Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    match crate::asr::load_serving(models_dir, threads, confirm, short_window) {
        Ok(engine) => {
            for language in languages {
                let t = std::time::Instant::now();
                match engine.prepare(Some(language)) {
                    Ok(()) => info!(
                        language = language.as_str(),
                        load_ms = t.elapsed().as_millis() as u64,
                        "speech model ready for a language the flows use"
                    ),
                    // The steps in it take their error exit, as before.
                    Err(e) => {
                        warn!(language = language.as_str(), error = %e, "no speech model for a language the flows use")
                    }
                }
            }
            info!(
                engine = engine.name(),
                threads,
                load_ms = started.elapsed().as_millis() as u64,
                "speech recognition ready"
            );
            Some(crate::asr::SpeechPool::new(engine, threads, 8))
        }
        Err(e) => {
            warn!(error = %e, "no speech recognition: recognize steps will take their error exit (run scripts/fetch-whisper)");
            None
        }
    }
}

/// The runtime that runs every call's media session (RTP pacing, jitter
/// buffer, DTMF): kept apart from signalling and flows so a burst of SIP work
/// or a busy machine does not delay the 20 ms sends. Its threads ask for
/// SCHED_RR as telephony engines do; the kernel still reserves CPU for other
/// work (sched_rt_runtime_us), and each tick is bounded work.
fn media_runtime(priority: i32) -> anyhow::Result<tokio::runtime::Runtime> {
    // One core stays free of real-time threads: signalling, flows and
    // speech decoding must still run when media is busy.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.saturating_sub(1).max(1);
    // On one core a real-time thread could starve everything else.
    let priority = if cores < 2 { 0 } else { priority };
    if priority == 0 && cores < 2 {
        info!("one CPU core: media threads run without real-time priority");
    }
    let warned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("voxgate-media")
        .enable_all()
        .on_thread_start(move || {
            if priority == 0 {
                return;
            }
            let param = libc::sched_param {
                sched_priority: priority,
            };
            // SAFETY: sched_setscheduler reads the param struct only; 0 = this thread.
            let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) };
            let first = !warned.swap(true, std::sync::atomic::Ordering::Relaxed);
            if rc == 0 && first {
                info!(priority, threads, "media threads run at real-time priority (SCHED_RR)");
            } else if rc != 0 && first {
                warn!(priority, error = %std::io::Error::last_os_error(), "cannot give media threads real-time priority; they run at the normal priority (grant CAP_SYS_NICE or set media_priority: 0)");
            }
        })
        .build()
        .context("starting the media runtime")
}

/// Swap in the flows on disk if they are all valid; otherwise keep what runs.
fn reload_flows(set: &FlowSet, flows_dir: &Path, prompts_dir: &Path, why: &str) {
    match load_valid_flows(flows_dir, prompts_dir) {
        Ok(flows) => {
            let n = flows.len();
            set.replace(flows);
            info!(
                flows = n,
                trigger = why,
                "flows reloaded; running calls keep their version"
            );
        }
        Err(diags) => {
            for d in &diags {
                error!("{d}");
            }
            error!(
                problems = diags.len(),
                trigger = why,
                "flow reload refused; the previous flows stay in service"
            );
        }
    }
}

/// Names, sizes and modification times of the flow files: cheap change detection
/// without an inotify dependency.
fn flows_fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| load::is_flow_file(&e.path()))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    v.sort();
    v
}

/// Events of live calls as JSON lines (one writer shared by all calls),
/// and folded into the call's record and the metrics.
struct JsonLines {
    out: Option<LineWriter>,
    call_id: String,
    tap: CallTap,
}

impl EventSink for JsonLines {
    fn emit(&mut self, ev: Event) {
        self.tap.event(&ev);
        tracing::info!(
            event = ev.name(),
            "{}",
            serde_json::to_string(&ev).unwrap_or_default()
        );
        if let Some(out) = &mut self.out {
            let ts = timestamp::rfc3339_millis(std::time::SystemTime::now());
            let line = serde_json::json!({ "ts": ts, "call_id": self.call_id, "event": ev });
            let _ = out.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Events not made by a call's flow (delivery receipts), in the same stream.
struct ServerEvents(LineWriter);

impl std::fmt::Debug for ServerEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerEvents")
    }
}

impl crate::web::EventLines for ServerEvents {
    fn emit(&self, call_id: Option<&str>, ev: &Event) {
        tracing::info!(
            event = ev.name(),
            "{}",
            serde_json::to_string(ev).unwrap_or_default()
        );
        let ts = timestamp::rfc3339_millis(std::time::SystemTime::now());
        let line = serde_json::json!({ "ts": ts, "call_id": call_id, "event": ev });
        let _ = self.0.clone().write_all(format!("{line}\n").as_bytes());
    }
}

struct FlowRunner {
    flows: Arc<FlowSet>,
    services: Arc<Services>,
    events: Option<LineWriter>,
    telemetry: Arc<Telemetry>,
}

impl CallRunner for FlowRunner {
    fn route(&self, dialled: &str) -> Option<config::Route> {
        let route = match self.flows.routes.get(dialled) {
            Some(r) => r.clone(),
            None if self.flows.by_name => config::Route::to_flow(dialled),
            None => return None,
        };
        self.flows.get(&route.flow).map(|_| route)
    }

    fn run(
        &self,
        flow: String,
        mut call: SipCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let flows = self.flows.clone();
        let services = self.services.clone();
        let info = call.info();
        let tap = self.telemetry.call(CallStart {
            call_id: info.call_id.clone(),
            caller: info.caller.clone(),
            dialled: info.dialled.clone(),
            brand: info.brand.clone(),
            flow: flow.clone(),
            started_at_ms: crate::store::now_ms(),
        });
        let mut sink = JsonLines {
            out: self.events.clone(),
            call_id: info.call_id.clone(),
            tap,
        };
        Box::pin(async move {
            let Some(flow) = flows.get(&flow) else {
                error!(%flow, "flow vanished before the call started");
                call.hangup().await;
                return;
            };
            // Nothing runs before the ACK: an INVITE never ACKed ends at Timer H.
            if !call
                .wait_confirmed(std::time::Duration::from_secs(64))
                .await
            {
                sink.tap.caller_gone();
                return;
            }
            sink.tap.answered(call.info().answered_at);
            let outcome = engine::run_flow(&flow, &mut call, &services, &mut sink).await;
            info!(flow = %flow.name, outcome = ?outcome.disposition, "flow finished");
            call.hangup().await;
            sink.tap.finish();
        })
    }
}

/// Open the store of `cfg` and check the secret key against it. With
/// `create_key`, a missing key file is created (0600) — `serve` on a fresh
/// machine; the account commands that seal secrets do the same.
pub(crate) fn open_store_checked(
    cfg: &Config,
    create_key: bool,
) -> anyhow::Result<(Store, SecretKey)> {
    let store = Store::open(&cfg.database)?;
    let key = SecretKey::load(&cfg.secret_key_file, create_key)?;
    store.check_key(&key)?;
    Ok((store, key))
}

/// `voxgate serve`: load and check every flow (refusing to start on any
/// problem), then answer calls until SIGTERM/SIGINT; SIGHUP or a change in
/// the flows directory reloads the flows (a bad reload keeps the old ones).
/// Blocks the calling thread; builds its own tokio runtimes.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (mut cfg, base) = match &args.config {
        Some(p) => {
            let c = Config::load(p)?;
            (c, p.parent().map(Path::to_path_buf).unwrap_or_default())
        }
        None => (Config::default(), PathBuf::from(".")),
    };
    cfg.resolve_relative_to(&base);
    if let Some(l) = &args.listen {
        cfg.listen = l
            .parse()
            .with_context(|| format!("--listen `{l}` is not ADDR:PORT (e.g. 0.0.0.0:5060)"))?;
    }
    if let Some(f) = args.flows {
        cfg.flows_dir = f;
    }
    if let Some(p) = args.prompts {
        cfg.prompts_dir = p;
    }
    if let Some(m) = args.models {
        cfg.models_dir = m;
    }
    let _log_flush = SyncOnDrop(init_logging(cfg.json_logs));
    config::check_rtp_range(cfg.rtp_ports).map_err(|e| anyhow::anyhow!(e))?;
    config::check_sip_port(cfg.listen.port(), cfg.rtp_ports).map_err(|e| anyhow::anyhow!(e))?;

    let flows = match load_valid_flows(&cfg.flows_dir, &cfg.prompts_dir) {
        Ok(f) => f,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            bail!(
                "{} problem(s) in the flows under {}; not starting",
                diags.len(),
                cfg.flows_dir.display()
            );
        }
    };
    if flows.is_empty() {
        bail!("no flows in {}", cfg.flows_dir.display());
    }
    let mut speech_languages: Vec<String> = Vec::new();
    for l in flows.iter().flat_map(|f| f.speech_languages()) {
        if !speech_languages.iter().any(|have| have == l) {
            speech_languages.push(l.to_string());
        }
    }
    // A transfer to a group that is not configured takes its error exit on
    // every call: say so before answering any (not fatal, so a flow can
    // still be served while its agents are being set up).
    for f in &flows {
        for step in &f.steps {
            if let crate::flow::model::StepKind::Transfer(t) = &step.kind {
                let target = t.target.value.trim();
                if crate::config::transfer::is_group_name(target)
                    && !cfg.transfer.groups.contains_key(target)
                {
                    error!(
                        "{}:{}:{}: step `{}` transfers to agent group `{target}`, which transfer.groups does not define: it will take its error exit",
                        f.path.display(),
                        t.target.span.line,
                        t.target.span.col,
                        step.id.value
                    );
                }
            }
        }
    }
    for (number, route) in &cfg.routes {
        if !flows.iter().any(|f| f.name == route.flow) {
            bail!(
                "routes: `{number}` points at flow `{}`, which is not in {}",
                route.flow,
                cfg.flows_dir.display()
            );
        }
    }
    let (store, key) = open_store_checked(&cfg, true)?;
    info!(database = %store.path().display(), accounts = store.count().unwrap_or(0), "account store open");
    let code_store = Arc::new(store);
    let key = Arc::new(key);
    let store: Arc<dyn crate::store::AccountStore> = code_store.clone();
    let sms = Arc::new(crate::backends::sms::build(&cfg.sms)?);
    if sms.is_empty() {
        info!("no SMS gateway configured (sms.gateways): send_code by SMS takes its error exit");
    }
    let email = cfg
        .email
        .as_ref()
        .map(crate::backends::email::build)
        .transpose()?;
    // The voice channel's caller needs the SIP endpoint, built later.
    let voice_slot = crate::backends::voice::CallerSlot::default();
    let voice_trunk = cfg.codes_voice.as_ref().map(|v| v.trunk);
    let voice = cfg.codes_voice.clone().map(|v| {
        Arc::new(crate::backends::voice::Voice::new(
            v,
            voice_slot.clone(),
            cfg.prompts_dir.clone(),
        ))
    });
    let codes = StoreCodes::new(code_store.clone(), &key, cfg.codes, sms.clone())
        .with_email(email.map(Arc::new))
        .with_voice(voice);
    let directories = Directories::build(
        &cfg.directories,
        &cfg.lookup,
        store.clone(),
        cfg.default_country,
    )?;
    let flow_set = Arc::new(FlowSet {
        flows: RwLock::new(Arc::new(HashMap::new())),
        routes: cfg.routes.clone(),
        by_name: cfg.route_by_flow_name,
    });
    flow_set.replace(flows);

    let events: Option<LineWriter> = match &args.events {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(LineWriter::spawn(
            Box::new(std::io::stdout()),
            "voxgate-events",
        )?),
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("--events {}", p.display()))?;
            Some(LineWriter::spawn(Box::new(f), "voxgate-events")?)
        }
    };
    let _events_flush = SyncOnDrop(events.clone());

    let advertised_ip = match cfg.public_ip {
        Some(ip) => Some(ip),
        None if !cfg.listen.ip().is_unspecified() => Some(cfg.listen.ip()),
        None => {
            info!("listening on {} without public_ip: SDP and Contact carry our address on the route to each caller (set public_ip behind NAT)", cfg.listen);
            None
        }
    };
    let mut metrics = Metrics::new();
    // SIP sits above telemetry: its counters are handed in here.
    metrics.register_counters(LabelledCounters {
        name: "sip_responses",
        help: "SIP responses sent (retransmissions included), by class",
        label: "class",
        read: || crate::sip::stats::STATS.responses_by_class(),
    });
    let metrics = Arc::new(metrics);
    if cfg.records.enabled {
        close_crashed_calls(&code_store);
    }
    let (record_queue, record_writer) = if cfg.records.enabled {
        let (q, w) = crate::telemetry::writer::queue(
            crate::telemetry::writer::QUEUE,
            code_store.clone(),
            metrics.clone(),
        );
        (Some(q), Some(w))
    } else {
        (None, None)
    };
    let telemetry = Arc::new(Telemetry::new(
        metrics.clone(),
        record_queue.clone(),
        &cfg.records,
        cfg.default_country,
    ));
    let server_events: Option<Arc<dyn crate::web::EventLines>> = events
        .clone()
        .map(|w| Arc::new(ServerEvents(w)) as Arc<dyn crate::web::EventLines>);
    let prompts = Arc::new(PromptCache::new(cfg.prompts_dir.clone()));
    let runner = Arc::new(FlowRunner {
        flows: flow_set.clone(),
        services: Arc::new(Services {
            directory: Box::new(directories),
            webhook: Box::new(
                HttpWebhook::new().map_err(|e| anyhow::anyhow!("webhook client: {e}"))?,
            ),
            passphrase: Box::new(StorePassphrases::new(
                store.clone(),
                key.clone(),
                cfg.passphrase,
            )),
            codes: Box::new(codes),
            totp: Box::new(StoreTotp::new(store.clone(), key.clone(), cfg.totp)),
            handoff: crate::backends::handoff::Handoff::new(cfg.transfer.clone(), Some(&key))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            default_country: cfg.default_country,
            speculate_after: cfg.passphrase.speculate_after,
        }),
        events,
        telemetry,
    });
    // Threads inherit the nice value of the thread that creates them: set it
    // first, so media threads keep it even where SCHED_RR is refused.
    set_priority(cfg.nice);
    let media_rt = media_runtime(cfg.media_priority)?;
    let speech = crate::asr::load_at_decoder_priority(|| {
        speech_pool(
            &cfg.models_dir,
            &speech_languages,
            cfg.passphrase.confirm,
            cfg.passphrase.encoder_window == crate::config::EncoderWindow::Short,
        )
    });
    let sip_cfg = SipConfig {
        listen: cfg.listen,
        advertised_ip,
        shutdown_grace: cfg.shutdown_grace,
        ring_time: cfg.ring_time,
        limits: cfg.limits.clone(),
        exempt: cfg.trusted_peers.clone(),
    };
    fdlimit::raise(&cfg.limits);
    let setup_cfg = SetupConfig {
        listen_ip: cfg.listen.ip(),
        advertised_ip,
        rtp: cfg.rtp_ports,
        rtp_recv_buffer: cfg.limits.rtp_recv_buffer,
        session: SessionConfig {
            rtp_timeout: cfg.rtp_timeout,
            inband_dtmf: cfg.inband_dtmf,
            jitter_frames: 3,
            rtp_source: cfg.rtp_source,
        },
        max_call_duration: cfg.max_call_duration,
        trusted_peers: cfg.trusted_peers.clone(),
        media: media_rt.handle().clone(),
        speech,
        outbound_proxy: cfg.transfer.outbound_proxy,
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        if let Some(h) = &cfg.http {
            let listener = tokio::net::TcpListener::bind(h.listen)
                .await
                .with_context(|| format!("binding HTTP (http.listen) on {}", h.listen))?;
            info!(listen = %listener.local_addr()?, public_url = %h.public_url, "HTTP endpoint ready");
            let state = crate::web::WebState {
                store: code_store.clone(),
                sms: sms.clone(),
                public_url: h.public_url.clone(),
                events: server_events.clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(async move {
                if let Err(e) = crate::web::serve(listener, state).await {
                    error!(error = %e, "HTTP endpoint stopped");
                }
            });
        }
        if let Some(c) = &cfg.console {
            let listener = tokio::net::TcpListener::bind(c.listen)
                .await
                .with_context(|| format!("binding the console (console.listen) on {}", c.listen))?;
            info!(listen = %listener.local_addr()?, "operator console ready");
            let graphs = flow_set.clone();
            let state = crate::web::console::ConsoleState::new(
                code_store.clone(),
                c.clone(),
                Some(runner.telemetry.active().clone()),
                Arc::new(move || graphs.all().iter().map(|f| console::flow_graph(f)).collect()),
            );
            tokio::spawn(async move {
                if let Err(e) = crate::web::console::serve(listener, state).await {
                    error!(error = %e, "operator console stopped");
                }
            });
        }
        let bound = endpoint::bind(cfg.listen)
            .await
            .with_context(|| format!("binding SIP UDP+TCP on {}", cfg.listen))?;
        let local: SocketAddr = bound.udp.local_addr()?;
        let (ep, tcp) = Endpoint::new(sip_cfg, bound, |sip| {
            let setup = CallSetup::new(setup_cfg, prompts, runner, sip.clone());
            if let Some(trunk) = voice_trunk {
                voice_slot.set(Arc::new(setup.code_caller(sip, trunk)));
            }
            setup
        })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        info!(listen = %local, flows = ?flow_set.names(), "voxgate ready (SIP over UDP and TCP)");
        tokio::spawn(purge_codes(code_store.clone()));
        if let Some(w) = record_writer {
            tokio::spawn(w.run());
            tokio::spawn(crate::telemetry::writer::purge_loop(
                code_store.clone(),
                cfg.records.retention_days,
            ));
        }
        let reload_set = flow_set.clone();
        let (flows_dir, prompts_dir) = (cfg.flows_dir.clone(), cfg.prompts_dir.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut last_stats = stats::STATS.snapshot();
            let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
                signal(SignalKind::user_defined1()),
            ) else {
                error!("cannot install signal handlers");
                return;
            };
            let mut fingerprint = flows_fingerprint(&flows_dir);
            loop {
                tokio::select! {
                    _ = term.recv() => { let _ = stop_tx.send(true); }
                    _ = int.recv() => { let _ = stop_tx.send(true); }
                    _ = usr1.recv() => log_rtp_stats(&mut last_stats),
                    _ = hup.recv() => reload_flows(&reload_set, &flows_dir, &prompts_dir, "SIGHUP"),
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                        let now = flows_fingerprint(&flows_dir);
                        if now != fingerprint {
                            fingerprint = now;
                            reload_flows(&reload_set, &flows_dir, &prompts_dir, "file change");
                        }
                    }
                }
            }
        });
        ep.run(tcp, stop_rx).await;
        if let Some(q) = &record_queue {
            if !q.flush(std::time::Duration::from_secs(5)).await {
                warn!("call records still queued at exit were not all written");
            }
        }
        info!(
            "rtp stats (process total) {}",
            stats::STATS.snapshot().summary()
        );
        anyhow::Ok(())
    })
}

/// Delete ended codes and old send counts once a minute, off the call
/// path. Codes stay a day past their expiry (for reports); send counts as
/// long as the longest abuse-limit window.
/// Records for the calls an earlier run was killed in the middle of
/// (`store::open_calls`), before this run takes any call.
fn close_crashed_calls(store: &Store) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match store.close_open_calls(now) {
        Ok(ids) if ids.is_empty() => {}
        Ok(ids) => warn!(
            records = ids.len(),
            "closed the records of calls the last run did not end (hangup_by server_restart)"
        ),
        Err(e) => {
            warn!(error = %e, "could not close the records of calls the last run did not end")
        }
    }
}

async fn purge_codes(store: Arc<Store>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let s = store.clone();
        let now = crate::store::now_ms();
        let done = tokio::task::spawn_blocking(move || {
            let _ = s.purge_voice_calls(now);
            s.purge_codes(now, now - 86_400_000)
        })
        .await;
        match done {
            Ok(Ok((codes, sends))) if codes + sends > 0 => {
                tracing::debug!(codes, sends, "purged ended codes and old send counts");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "purging codes failed"),
            Err(e) => warn!(error = %e, "purging codes failed"),
        }
    }
}

/// Nothing written before `serve` returns (on any path) may be lost.
struct SyncOnDrop(Option<LineWriter>);

impl Drop for SyncOnDrop {
    fn drop(&mut self) {
        if let Some(w) = &self.0 {
            w.sync();
        }
    }
}

/// `voxgate validate`: print every problem of the flows under `paths`
/// (default `flows/`) as `file:line:col: message`, prompt files looked up in
/// `prompts`. Exit 1 if there is any.
pub fn validate(paths: &[PathBuf], prompts: &Path) -> ExitCode {
    let paths: Vec<PathBuf> = if paths.is_empty() {
        vec![PathBuf::from("flows")]
    } else {
        paths.to_vec()
    };
    let opts = fvalidate::ValidateOptions {
        prompts_dir: prompts.to_path_buf(),
    };
    let (files, diags) = fvalidate::validate_paths(&paths, &opts);
    for d in &diags {
        println!("{d}");
    }
    if diags.is_empty() {
        println!("{files} flow file(s) OK");
        ExitCode::SUCCESS
    } else {
        println!("{} problem(s) in {files} flow file(s)", diags.len());
        ExitCode::from(1)
    }
}

/// `voxgate test`: run the flow tests (`*.test.yaml`) under `paths`
/// (default `flows/`) with the scripted caller. Exit 1 if any fails or if
/// none ran, so an empty or mistyped path cannot pass.
pub fn test(paths: &[PathBuf], models_dir: &Path) -> ExitCode {
    let paths: Vec<PathBuf> = if paths.is_empty() {
        vec![PathBuf::from("flows")]
    } else {
        paths.to_vec()
    };
    let summary = testing::run_paths(&paths, models_dir);
    if summary.failed == 0 && summary.passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `voxgate recognize`: each file through the endpointer and the engine, as
/// an `audio:` line of a flow test would be. Exit 1 if any file fails.
pub fn recognize(
    files: &[PathBuf],
    digits: bool,
    digit_answer: Option<usize>,
    phrases: &[String],
    models: &Path,
) -> ExitCode {
    use crate::asr::recording::{hear_file, Simulated};
    use crate::asr::Heard;
    let started = std::time::Instant::now();
    let engine = match crate::asr::load_default(models) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("voxgate: {e} (install it with scripts/fetch-whisper, or pass --models DIR)");
            return ExitCode::from(2);
        }
    };
    println!(
        "engine: {} (loaded in {} ms)",
        engine.name(),
        started.elapsed().as_millis()
    );
    let spec = crate::call::RecognitionSpec {
        phrases: phrases.to_vec(),
        digits_only: digits,
        language: None,
        timers: crate::asr::Timers::RECORDING,
        early: None,
        confirm: false,
        digit_answer,
    };
    let mut failed = false;
    for f in files {
        let cpu0 = process_cpu();
        let wall0 = std::time::Instant::now();
        let res = hear_file(&*engine, f, &spec);
        let cpu_ms = (process_cpu() - cpu0).as_millis();
        let wall_ms = wall0.elapsed().as_millis();
        match res {
            Ok(Simulated::Heard {
                started,
                ended,
                heard,
            }) => {
                let what = match heard {
                    Heard::Speech(r) => format!("\"{}\" confidence {:.2}", r.text, r.confidence),
                    Heard::Nothing => "no speech (sound judged not to be speech)".into(),
                };
                println!(
                    "{}: {what}; speech {:.2}-{:.2} s; cpu {cpu_ms} ms, wall {wall_ms} ms",
                    f.display(),
                    started.as_secs_f32(),
                    ended.as_secs_f32()
                );
            }
            Ok(Simulated::Silent) => println!("{}: no voice found (no input)", f.display()),
            Err(e) => {
                failed = true;
                println!("{}: error: {e}", f.display());
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Keep large freed blocks in the heap for the next allocation instead of
/// handing them back to the kernel. glibc maps every block over its
/// (adaptive) threshold afresh and unmaps it when freed, so each Whisper
/// decode's multi-megabyte CTranslate2 buffers were page-faulted in anew:
/// 14 % of a short-window check's CPU was the kernel clearing pages. With
/// blocks up to 32 MiB reused, a check took 108–111 ms CPU (p50) instead of
/// 121–142 ms at the same peak RSS (bench/README.md, "Short encoder window
/// by default"). Call first thing, before the decoders allocate.
pub fn keep_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = 128 << 20;
        // SAFETY: mallopt only sets allocator parameters and is thread-safe
        // (it takes the arenas' locks). A refusal (0) leaves glibc's defaults.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

/// CPU time of the whole process: CTranslate2 decodes on its own worker threads.
pub(crate) fn process_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
