//! Links the prebuilt CTranslate2 when the `mkl` feature is on: ct2rs's
//! `system` feature only names the libraries (`-lctranslate2` …), so this says
//! where they are (scripts/fetch-ctranslate2 puts them in
//! `.deps/ctranslate2-4.8.4/lib`, or `$VOXGATE_CT2_DIR/lib`) and records that
//! directory as the binaries' run-time search path, so neither the build nor
//! a run needs LD_LIBRARY_PATH. The same for libvosk with the `vosk` feature.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    link_vosk();
    println!("cargo:rerun-if-env-changed=VOXGATE_CT2_DIR");
    let mkl = env::var_os("CARGO_FEATURE_MKL").is_some();
    let ruy = env::var_os("CARGO_FEATURE_RUY").is_some();
    match (mkl, ruy) {
        (true, true) => fail(
            "features `mkl` and `ruy` are both on: build with `--no-default-features --features mkl`",
        ),
        (false, false) => fail("one CTranslate2 build is needed: feature `ruy` (default) or `mkl`"),
        (false, true) => return,
        (true, false) => {}
    }
    let dir = env::var_os("VOXGATE_CT2_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
                .join(".deps/ctranslate2-4.8.4")
        })
        .join("lib");
    let lib = dir.join("libctranslate2.so");
    println!("cargo:rerun-if-changed={}", lib.display());
    if !lib.exists() {
        fail(&format!(
            "feature `mkl`: {} is missing; run scripts/fetch-ctranslate2 (x86_64 Linux), \
             or build with the default `ruy` feature",
            lib.display()
        ));
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}

/// The `vosk` feature: the crate only prints `-lvosk`; libvosk.so comes from
/// PyPI's vosk wheel (scripts/fetch-vosk puts it in `.deps/vosk-0.3.45/lib`,
/// or `$VOXGATE_VOSK_DIR/lib`), found here and recorded as an rpath too.
fn link_vosk() {
    println!("cargo:rerun-if-env-changed=VOXGATE_VOSK_DIR");
    if env::var_os("CARGO_FEATURE_VOSK").is_none() {
        return;
    }
    let dir = env::var_os("VOXGATE_VOSK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
                .join(".deps/vosk-0.3.45")
        })
        .join("lib");
    let lib = dir.join("libvosk.so");
    println!("cargo:rerun-if-changed={}", lib.display());
    if !lib.exists() {
        fail(&format!(
            "feature `vosk`: {} is missing; run scripts/fetch-vosk (x86_64 Linux), \
             or build without the `vosk` feature",
            lib.display()
        ));
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}

fn fail(msg: &str) -> ! {
    eprintln!("voxgate build: {msg}");
    std::process::exit(1);
}
