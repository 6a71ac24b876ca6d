//! The flow loader and validator, as `voxgate validate` runs them on one
//! file: the input is the file's text. Load errors and problems are
//! diagnostics (each rendered as `file:line:col: message`), never a panic.
use std::path::{Path, PathBuf};

use voxgate::flow::{load, validate};

fn main() {
    // The shipped prompts, so prompt references are looked up for real.
    let prompts = std::env::var_os("VOXGATE_FUZZ_PROMPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts"));
    let opts = validate::ValidateOptions {
        prompts_dir: prompts,
    };
    let path = Path::new("fuzz.yaml");
    afl::fuzz!(|data: &[u8]| {
        // A flow file is read as UTF-8 text (config::textfile); other bytes
        // never reach the loader.
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let loaded = load::load_flow_recovering(path, text);
        let diags = validate::check_loaded(&loaded, &opts);
        let _ = load::render_diagnostics(&diags);
    });
}
