//! The configuration loader (`voxgate.yaml`): the input is the file's text.
//! Anything not a valid configuration is a `ConfigError` with a message,
//! never a panic.
use std::path::Path;

use voxgate::config::Config;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        // The file is read as UTF-8 text (config::textfile).
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match Config::parse("voxgate.yaml", text) {
            Ok(mut c) => c.resolve_relative_to(Path::new("/etc/voxgate")),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    });
}
