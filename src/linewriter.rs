//! Output written by a background thread.
//!
//! Log lines and call events are produced on the async workers that also
//! pace RTP; a slow disk or a full pipe must never stall them. Writers send
//! their bytes over a channel; one thread per output writes and flushes.
//! Nothing is dropped: `sync` waits until everything sent so far is out.

use std::io::Write;
use std::sync::mpsc;

enum Msg {
    Data(Vec<u8>),
    Sync(mpsc::Sender<()>),
}

/// A handle to one output. Each handle gathers bytes up to a newline and
/// sends whole lines, so lines written in pieces (`writeln!` with arguments)
/// from several threads never interleave.
pub struct LineWriter {
    tx: mpsc::Sender<Msg>,
    pending: Vec<u8>,
}

impl Clone for LineWriter {
    fn clone(&self) -> Self {
        LineWriter {
            tx: self.tx.clone(),
            pending: Vec::new(),
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let _ = self.tx.send(Msg::Data(std::mem::take(&mut self.pending)));
        }
    }
}

impl LineWriter {
    /// Start the writer thread (named `name`, as seen in `top -H`) that owns
    /// `out`, and return the first handle to it; clone it for more. The
    /// thread ends when the last handle is dropped, after writing everything
    /// sent. Fails only when the thread cannot be spawned.
    pub fn spawn(mut out: Box<dyn Write + Send>, name: &str) -> std::io::Result<LineWriter> {
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    // Write what is queued, then flush once.
                    while let Some(msg) = next.take().or_else(|| rx.try_recv().ok()) {
                        match msg {
                            Msg::Data(d) => {
                                let _ = out.write_all(&d);
                            }
                            Msg::Sync(done) => {
                                let _ = out.flush();
                                let _ = done.send(());
                            }
                        }
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(LineWriter {
            tx,
            pending: Vec::new(),
        })
    }

    /// Block until everything sent before this call has been flushed
    /// (including this handle's partial line).
    pub fn sync(&self) {
        if !self.pending.is_empty() {
            let _ = self.tx.send(Msg::Data(self.pending.clone()));
        }
        let (done_tx, done_rx) = mpsc::channel();
        if self.tx.send(Msg::Sync(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            let rest = self.pending.split_off(end + 1);
            let lines = std::mem::replace(&mut self.pending, rest);
            self.send(lines)?;
        }
        Ok(buf.len())
    }

    /// Sends a partial line too (the writer thread flushes on its own).
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let data = std::mem::take(&mut self.pending);
            self.send(data)?;
        }
        Ok(())
    }
}

impl LineWriter {
    fn send(&self, data: Vec<u8>) -> std::io::Result<()> {
        self.tx
            .send(Msg::Data(data))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "writer thread gone"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn everything_written_is_out_after_sync_in_order() {
        let sink = Shared::default();
        let w = LineWriter::spawn(Box::new(sink.clone()), "test-writer").unwrap();
        let mut handles = vec![];
        for t in 0..4 {
            let mut w = w.clone();
            handles.push(std::thread::spawn(move || {
                for i in 0..500 {
                    writeln!(w, "t{t} line {i}").unwrap();
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        w.sync();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2000);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
                .collect();
            assert_eq!(mine, (0..500).collect::<Vec<_>>(), "per-writer order kept");
        }
    }
}
