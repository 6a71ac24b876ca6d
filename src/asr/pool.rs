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

fn worker(engine: &dyn SpeechEngine, rx: &Mutex<Receiver<Job>>) {
    // Decoding is bulk work: below signalling, flows and media (raising the
    // nice value needs no privilege). 0 = this thread on Linux.
    // SAFETY: setpriority only reads its integer arguments.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 5);
    }
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
