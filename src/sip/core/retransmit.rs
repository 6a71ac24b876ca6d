//! The one retransmission timer of RFC 3261 17: over an unreliable
//! transport re-send at T1, doubling the interval up to T2; give up at
//! 64·T1 (Timers G/H for our final INVITE responses, E/F for our requests).
//! Over TCP nothing is re-sent, but the give-up time still applies.

use std::time::{Duration, Instant};

/// What a timeout means for one retransmitted message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tick {
    /// Not due yet.
    Wait,
    /// Send the message again now.
    Resend,
    /// 64·T1 passed without an answer.
    GiveUp,
}

#[derive(Debug)]
pub(super) struct Retransmit {
    /// Next re-send; None over TCP or once a provisional response came.
    next: Option<Instant>,
    interval: Duration,
    /// T2: the interval stops doubling here.
    cap: Duration,
    give_up: Instant,
}

impl Retransmit {
    /// Start when the message is first sent at `now`.
    pub(super) fn start(now: Instant, t1: Duration, t2: Duration, reliable: bool) -> Self {
        Self {
            next: (!reliable).then(|| now + t1),
            interval: t1,
            cap: t2,
            give_up: now + t1 * 64,
        }
    }

    /// A provisional response came: stop re-sending, keep the give-up time.
    pub(super) fn stop_resending(&mut self) {
        self.next = None;
    }

    /// When `on_timeout` has something to do.
    pub(super) fn next_deadline(&self) -> Instant {
        self.next.map_or(self.give_up, |n| n.min(self.give_up))
    }

    pub(super) fn on_timeout(&mut self, now: Instant) -> Tick {
        if now >= self.give_up {
            return Tick::GiveUp;
        }
        match self.next {
            Some(n) if now >= n => {
                self.interval = (self.interval * 2).min(self.cap);
                self.next = Some(now + self.interval);
                Tick::Resend
            }
            _ => Tick::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: Duration = Duration::from_millis(500);
    const T2: Duration = Duration::from_secs(4);

    #[test]
    fn doubles_to_t2_then_gives_up_at_64_t1() {
        let t0 = Instant::now();
        let mut r = Retransmit::start(t0, T1, T2, false);
        let mut sends = vec![];
        loop {
            let t = r.next_deadline();
            match r.on_timeout(t) {
                Tick::Resend => sends.push((t - t0).as_millis()),
                Tick::GiveUp => {
                    assert_eq!(t - t0, T1 * 64);
                    break;
                }
                Tick::Wait => panic!("woken before anything was due"),
            }
        }
        assert_eq!(
            sends,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
    }

    #[test]
    fn reliable_or_provisional_only_waits_for_the_give_up() {
        let t0 = Instant::now();
        let r = Retransmit::start(t0, T1, T2, true);
        assert_eq!(r.next_deadline(), t0 + T1 * 64);
        let mut r = Retransmit::start(t0, T1, T2, false);
        r.stop_resending();
        assert_eq!(r.on_timeout(t0 + T1), Tick::Wait);
        assert_eq!(r.next_deadline(), t0 + T1 * 64);
    }
}
