//! Decoder threads for live calls.
//!
//! Decoding one utterance costs a few hundred ms of CPU: it must not run on
//! the media runtime (RTP pacing) or the signalling runtime. A fixed set of
//! threads takes jobs from a bounded queue; when the queue is full the job is
//! refused at once (`AsrError::Busy`) so a caller hears a re-prompt instead
//! of waiting behind a backlog that only grows.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use std::time::Instant;

use tokio::sync::oneshot;

use super::stats::STATS;

use super::{AsrError, Heard, Hints, SpeechEngine};

type Reply = oneshot::Sender<Result<Heard, AsrError>>;

struct Job {
    /// When it was queued: the answer's latency counts from here.
    queued_at: Instant,
    pcm: Vec<i16>,
    hints: Hints,
    reply: Reply,
}

/// Shared by all calls; cheap to clone.
#[derive(Clone)]
pub struct SpeechPool {
    engine: Arc<dyn SpeechEngine>,
    jobs: SyncSender<Job>,
    threads: usize,
}

impl std::fmt::Debug for SpeechPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechPool")
            .field("engine", &self.engine.name())
            .field("threads", &self.threads)
            .finish()
    }
}

impl SpeechPool {
    /// `threads` decoders, each with room for `queue_per_thread` waiting jobs.
    pub fn new(engine: Arc<dyn SpeechEngine>, threads: usize, queue_per_thread: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(threads * queue_per_thread.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let engine = engine.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("voxgate-asr-{i}"))
                .spawn(move || worker(&*engine, &rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a speech decoder thread");
            }
        }
        SpeechPool {
            engine,
            jobs: tx,
            threads,
        }
    }

    /// The engine the decoder threads run, e.g. to ask which languages it
    /// speaks before listening.
    pub fn engine(&self) -> &Arc<dyn SpeechEngine> {
        &self.engine
    }

    /// Queue an utterance; the result arrives on the returned receiver.
    pub fn submit(
        &self,
        pcm: Vec<i16>,
        hints: Hints,
    ) -> Result<oneshot::Receiver<Result<Heard, AsrError>>, AsrError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            queued_at: Instant::now(),
            pcm,
            hints,
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {
                STATS.queued();
                Ok(rx)
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                STATS.refused();
                Err(AsrError::Busy(self.threads))
            }
        }
    }
}

/// The nice value decoding runs at: bulk work, below signalling, flows and
/// media (which `serve` raises to `nice`, -10 by default), so a burst of
/// passphrase checks delays decisions, never a SIP answer or an RTP send.
pub const DECODER_NICE: i32 = 5;

/// Put the calling thread at [`DECODER_NICE`]; threads it creates inherit
/// it. Raising the nice value needs no privilege.
pub(super) fn lower_to_decoder_priority() {
    // SAFETY: setpriority only reads its integer arguments; on Linux the
    // nice value is per thread and 0 names the calling one.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, DECODER_NICE) };
    if rc != 0 {
        // Lowering a nice value needs privilege: a process
        // started at a nice above DECODER_NICE keeps decoding at its own.
        tracing::debug!(error = %std::io::Error::last_os_error(), "decoders keep this thread's priority");
    }
}

/// Run `load` on a new thread at [`DECODER_NICE`] and wait for it.
/// CTranslate2 starts its replica threads, which do the decoding's CPU
/// work, when a model is loaded, and they inherit the loading thread's
/// priority: loaded on `serve`'s main thread they ran at the signalling's.
/// They inherit its name too, so `top -H` shows them as `voxgate-ct2`.
pub fn load_at_decoder_priority<T: Send + Default>(load: impl FnOnce() -> T + Send) -> T {
    // Taken by whichever thread runs it: the loader, or this one if no
    // thread can be started.
    let load = Mutex::new(Some(load));
    let run = || load.lock().ok().and_then(|mut l| l.take()).map(|f| f());
    let loaded = std::thread::scope(|s| {
        let loader = std::thread::Builder::new()
            .name("voxgate-ct2".into())
            .spawn_scoped(s, || {
                lower_to_decoder_priority();
                run()
            });
        match loader {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a thread to load speech models at decoder priority");
                run()
            }
        }
    });
    // `load` runs exactly once (a panic in it is resumed above).
    loaded.unwrap_or_default()
}

fn worker(engine: &dyn SpeechEngine, rx: &Mutex<Receiver<Job>>) {
    lower_to_decoder_priority();
    loop {
        // The lock is held only while waiting for the next job.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        STATS.dequeued();
        // The caller may have hung up meanwhile: skip the work.
        if job.reply.is_closed() {
            continue;
        }
        // A decoder bug must cost one utterance, not a decoder thread.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.recognize(&job.pcm, &job.hints)
        }))
        .unwrap_or_else(|_| Err(AsrError::Decode("the decoder panicked".into())));
        STATS.answered(job.queued_at.elapsed());
        let _ = job.reply.send(res);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::SpeechResult;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Answers with the number of samples; blocks until released.
    struct Counting {
        gate: Mutex<()>,
        calls: AtomicUsize,
    }

    impl SpeechEngine for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn speaks(&self, _: Option<&str>) -> bool {
            true
        }
        fn recognize(&self, pcm: &[i16], hints: &Hints) -> Result<Heard, AsrError> {
            let _g = self.gate.lock().unwrap();
            self.calls.fetch_add(1, Ordering::SeqCst);
            if pcm.is_empty() {
                return Ok(Heard::Nothing);
            }
            Ok(Heard::Speech(SpeechResult {
                text: format!("{} {}", pcm.len(), hints.digits_only),
                confidence: 0.5,
            }))
        }
    }

    /// This thread's nice value (0 = the calling thread on Linux).
    fn nice() -> i32 {
        // SAFETY: getpriority only reads its integer arguments.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn threads_started_while_loading_run_at_decoder_priority_and_the_caller_keeps_its_own() {
        let before = nice();
        let (loader, started) = load_at_decoder_priority(|| {
            // As CTranslate2 starts its replica threads inside a model load.
            let started = std::thread::spawn(nice).join().unwrap();
            (nice(), started)
        });
        if before <= DECODER_NICE {
            // Raising the nice value is always allowed.
            assert_eq!(loader, DECODER_NICE);
        }
        assert_eq!(
            started, loader,
            "a thread started while loading inherits its priority"
        );
        assert_eq!(nice(), before, "the calling thread's priority is untouched");
        let value = load_at_decoder_priority(|| 42);
        assert_eq!(value, 42);
    }

    fn engine() -> Arc<Counting> {
        Arc::new(Counting {
            gate: Mutex::new(()),
            calls: AtomicUsize::new(0),
        })
    }

    #[test]
    fn results_come_back_to_their_caller() {
        let e = engine();
        let pool = SpeechPool::new(e.clone(), 2, 4);
        let rxs: Vec<_> = (1..=5)
            .map(|n| {
                pool.submit(
                    vec![0; n],
                    Hints {
                        digits_only: n % 2 == 0,
                        ..Hints::default()
                    },
                )
                .unwrap()
            })
            .collect();
        for (i, rx) in rxs.into_iter().enumerate() {
            let n = i + 1;
            match rx.blocking_recv().unwrap().unwrap() {
                Heard::Speech(r) => assert_eq!(r.text, format!("{n} {}", n % 2 == 0)),
                Heard::Nothing => panic!("expected speech"),
            }
        }
        assert_eq!(
            pool.submit(vec![], Hints::default())
                .unwrap()
                .blocking_recv()
                .unwrap()
                .unwrap(),
            Heard::Nothing
        );
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let e = engine();
        let held = e.gate.lock().unwrap();
        let pool = SpeechPool::new(e.clone(), 1, 2);
        // One job in the decoder (blocked on the gate), two waiting: full.
        let mut rxs = vec![pool.submit(vec![1], Hints::default()).unwrap()];
        std::thread::sleep(Duration::from_millis(50));
        rxs.push(pool.submit(vec![1], Hints::default()).unwrap());
        rxs.push(pool.submit(vec![1], Hints::default()).unwrap());
        match pool.submit(vec![1], Hints::default()) {
            Err(AsrError::Busy(1)) => {}
            other => panic!("expected Busy, got {:?}", other.map(|_| ())),
        }
        drop(held);
        for rx in rxs {
            assert!(rx.blocking_recv().unwrap().is_ok());
        }
    }

    #[test]
    fn abandoned_jobs_are_skipped() {
        let e = engine();
        let held = e.gate.lock().unwrap();
        let pool = SpeechPool::new(e.clone(), 1, 4);
        let first = pool.submit(vec![1], Hints::default()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(pool.submit(vec![1], Hints::default()).unwrap()); // caller hung up
        let last = pool.submit(vec![1], Hints::default()).unwrap();
        drop(held);
        assert!(first.blocking_recv().unwrap().is_ok());
        assert!(last.blocking_recv().unwrap().is_ok());
        assert_eq!(e.calls.load(Ordering::SeqCst), 2);
    }
}
