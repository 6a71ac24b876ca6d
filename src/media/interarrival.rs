//! RFC 3550 §6.4.1 interarrival jitter of one inbound RTP stream: the mean
//! deviation of the difference in transit time between consecutive packets,
//! smoothed with gain 1/16, in timestamp units.
//!
//! Sans-IO: the caller feeds each audio packet's RTP timestamp, SSRC and
//! arrival time. The arrival should be the kernel's receive time
//! ([`super::rx_time`]): the session reads its socket once per 20 ms tick, so
//! the tick's time would measure our own batching, not the network.

use std::time::Duration;

/// When a packet arrived, on one clock. Transit times on two clocks cannot
/// be compared: a change of clock starts the estimate's reference again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrival {
    /// The kernel's receive timestamp (`SO_TIMESTAMPNS`, wall clock).
    Kernel(Duration),
    /// Read by the session at this offset from its start (tick resolution).
    Read(Duration),
}

impl Arrival {
    fn is_kernel(self) -> bool {
        matches!(self, Arrival::Kernel(_))
    }

    fn at(self) -> Duration {
        match self {
            Arrival::Kernel(d) | Arrival::Read(d) => d,
        }
    }
}

/// The previous packet: what the next one is compared with.
#[derive(Clone, Copy, Debug)]
struct Previous {
    ssrc: u32,
    timestamp: u32,
    arrival: Arrival,
}

/// The running jitter estimate of one stream.
#[derive(Clone, Debug)]
pub struct Interarrival {
    clock_hz: u32,
    previous: Option<Previous>,
    /// J, in timestamp units (fractional: the RFC's integer version keeps
    /// four extra bits for the same purpose).
    jitter: f64,
    /// Packet pairs compared (J means something from the first one).
    pairs: u64,
}

impl Interarrival {
    /// A stream whose RTP clock runs at `clock_hz` (8000 for G.711).
    pub fn new(clock_hz: u32) -> Interarrival {
        Interarrival {
            clock_hz: clock_hz.max(1),
            previous: None,
            jitter: 0.0,
            pairs: 0,
        }
    }

    /// One packet of the stream arrived. A new SSRC starts the reference
    /// again (a new source's timestamps have another origin); the estimate
    /// carries on, as an RTCP receiver's would for the call.
    pub fn packet(&mut self, ssrc: u32, timestamp: u32, arrival: Arrival) {
        let now = Previous {
            ssrc,
            timestamp,
            arrival,
        };
        let Some(prev) = self.previous.replace(now) else {
            return;
        };
        if prev.ssrc != ssrc || prev.arrival.is_kernel() != arrival.is_kernel() {
            return;
        }
        // D(i,j) = (Rj - Ri) - (Sj - Si), both in timestamp units; the RTP
        // timestamp difference taken modulo 2^32 so a wrap is a small step.
        // In whole nanoseconds first: subtracting two epoch times as f64
        // would leave rounding noise in a steady stream's zero.
        let ns = arrival.at().as_nanos() as i128 - prev.arrival.at().as_nanos() as i128;
        let received = (ns * i128::from(self.clock_hz)) as f64 / 1e9;
        let sent = f64::from(timestamp.wrapping_sub(prev.timestamp) as i32);
        let d = received - sent;
        self.jitter += (d.abs() - self.jitter) / 16.0;
        self.pairs += 1;
    }

    /// J in timestamp units; None before two packets were compared.
    pub fn jitter_units(&self) -> Option<f64> {
        (self.pairs > 0).then_some(self.jitter)
    }

    /// J in milliseconds at the stream's clock.
    pub fn jitter_ms(&self) -> Option<f64> {
        self.jitter_units()
            .map(|j| j * 1000.0 / f64::from(self.clock_hz))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Arrival {
        Arrival::Kernel(Duration::from_millis(n))
    }

    #[test]
    fn constant_transit_is_no_jitter() {
        let mut j = Interarrival::new(8000);
        assert_eq!(j.jitter_ms(), None);
        // 20 ms apart on the wire and 160 timestamp units apart.
        for i in 0..100u32 {
            j.packet(7, 1000 + 160 * i, ms(5_000 + 20 * u64::from(i)));
        }
        assert_eq!(j.jitter_units(), Some(0.0));
        assert_eq!(j.jitter_ms(), Some(0.0));
    }

    #[test]
    fn alternating_transit_converges_to_its_deviation() {
        // Transit alternates between t and t + 8 ms: every |D| is 64 units
        // (8 ms at 8 kHz), and J = J + (64 - J)/16 tends to 64.
        let mut j = Interarrival::new(8000);
        for i in 0..400u64 {
            let extra = if i % 2 == 1 { 8 } else { 0 };
            j.packet(1, (160 * i) as u32, ms(20 * i + extra));
        }
        let units = j.jitter_units().unwrap();
        assert!((units - 64.0).abs() < 1e-6, "{units}");
        assert!((j.jitter_ms().unwrap() - 8.0).abs() < 1e-6);

        // The first steps follow the recurrence exactly: 4, then 7.75.
        let mut k = Interarrival::new(8000);
        k.packet(1, 0, ms(0));
        k.packet(1, 160, ms(28));
        assert!((k.jitter_units().unwrap() - 4.0).abs() < 1e-9);
        k.packet(1, 320, ms(40));
        assert!((k.jitter_units().unwrap() - 7.75).abs() < 1e-9);
    }

    #[test]
    fn timestamp_wrap_is_a_small_step() {
        let mut j = Interarrival::new(8000);
        j.packet(1, u32::MAX - 79, ms(0));
        j.packet(1, 80, ms(20));
        assert_eq!(j.jitter_units(), Some(0.0));
    }

    #[test]
    fn a_new_source_or_clock_starts_the_reference_again() {
        let mut j = Interarrival::new(8000);
        j.packet(1, 0, ms(0));
        j.packet(1, 160, ms(20));
        // Another SSRC with an unrelated timestamp origin: not compared.
        j.packet(2, 9_999_999, ms(40));
        j.packet(2, 9_999_999 + 160, ms(60));
        assert_eq!(j.jitter_units(), Some(0.0));
        // A read time after kernel stamps: not compared either.
        j.packet(2, 9_999_999 + 320, Arrival::Read(Duration::from_secs(1)));
        assert_eq!(j.jitter_units(), Some(0.0));
    }
}
