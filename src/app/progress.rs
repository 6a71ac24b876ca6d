//! Progress of long commands (`accounts import`) where a person waits: a bar
//! on a terminal (indicatif, on stderr), plain count lines otherwise (a log
//! or a pipe gets no escape codes and no redraws).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Where progress goes.
pub(crate) enum Progress {
    /// A bar over the file's bytes, rows counted in its message.
    Bar(ProgressBar),
    /// One line on stderr per `every` rows.
    Lines { what: String, every: u64, next: u64 },
}

impl Progress {
    /// Progress through `total_bytes` of `what` (a file name): a bar when
    /// stderr is a terminal, else a line every `every` rows.
    pub(crate) fn new(what: &str, total_bytes: u64, every: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total_bytes.max(1));
            let style = ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {percent:>3}% {msg} ({elapsed}, ~{eta} left)",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                what: what.to_string(),
                every: every.max(1),
                next: every.max(1),
            }
        }
    }

    /// `bytes` of the file read; `good` rows kept and `bad` refused so far.
    pub(crate) fn update(&mut self, bytes: u64, good: u64, bad: u64) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!("{good} rows, {bad} bad"));
            }
            Progress::Lines { what, every, next } => {
                let done = good + bad;
                if done >= *next {
                    eprintln!("{what}: {done} rows done ({good} good, {bad} bad)");
                    *next = (done / *every + 1) * *every;
                }
            }
        }
    }

    /// Remove the bar (the command prints its own summary).
    pub(crate) fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
