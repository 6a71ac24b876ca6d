//! A real local SMTP server for whole-call tests: Debian's python3-aiosmtpd
//! running `tests/smtp/sink.py`, which writes each accepted message to a
//! folder. Killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, root, scratch};

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub folder: PathBuf,
}

impl SmtpSink {
    /// Starts the sink with `env` (SINK_USER, SINK_PASSWORD, SINK_TLS, …,
    /// see sink.py) on a port of its own.
    pub fn start(name: &str, env: &[(&str, &str)]) -> SmtpSink {
        let folder = scratch(&format!("{name}-mail"));
        // free_port() only probes: should something take the port before
        // the sink binds it, the sink exits and we try another.
        let mut last = String::new();
        for _ in 0..4 {
            let port = free_port();
            let mut child = Command::new("/usr/bin/python3")
                .arg(root().join("tests/smtp/sink.py"))
                .arg(port.to_string())
                .arg(&folder)
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python3 (with Debian's python3-aiosmtpd) runs");
            last.clear();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut last)
                .unwrap();
            if last.trim() == "ready" {
                return SmtpSink {
                    child,
                    port,
                    folder,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the SMTP sink did not start (python3-aiosmtpd installed?): {last:?}");
    }

    /// The messages received, in order.
    pub fn received(&self) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(&self.folder)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// The 6-digit code in the `nth` message to `to` and that message,
    /// waiting up to 40 s for it.
    pub fn wait_code(&self, to: &str, nth: usize) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let mails: Vec<String> = self
                .received()
                .into_iter()
                .filter(|m| m.starts_with(&format!("X-Rcpt-To: {to}\r\n")))
                .collect();
            if mails.len() >= nth {
                let mail = mails[nth - 1].clone();
                let body = mail.split("\r\n\r\n").nth(1).unwrap_or("");
                let code = body
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|w| w.len() == 6)
                    .unwrap_or_else(|| panic!("no 6-digit code in {mail:?}"))
                    .to_string();
                return (code, mail);
            }
            assert!(Instant::now() < deadline, "no mail to {to} arrived");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
