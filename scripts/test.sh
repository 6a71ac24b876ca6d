#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite: unit tests, flow
# validation and flow tests, and the integration tests against real SIP
# peers (sipp, baresip) with real audio (sox, espeak-ng).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_debs gcc g++ libc6-dev pkg-config sip-tester baresip-core sox libsox-fmt-base espeak-ng iproute2 util-linux oathtool python3-aiosmtpd openssl asterisk-core-sounds-en-wav chromium chromium-driver
need_rust
need_rust_lints
need_ctranslate2
VOXGATE_CONFIRM=on need_speech_model   # tests/confirm.rs needs Whisper base too
cd "$ROOT"
export CARGO_TERM_COLOR=never

# Style first: a formatting slip or a lint fails in a minute, not after the
# eight-minute suite. Release profile, so the dependencies' release build
# (CTranslate2 above all) is reused rather than rebuilt for a debug profile.
log "checking formatting (cargo fmt --check)"
cargo fmt --check
log "linting (cargo clippy, warnings are errors)"
cargo clippy --release --locked --all-targets --quiet $VOXGATE_CARGO_FEATURES -- -D warnings

log "building (tests and release binary)"
cargo build --release --locked --quiet $VOXGATE_CARGO_FEATURES
cargo test --release --locked --no-run --quiet $VOXGATE_CARGO_FEATURES 2>/dev/null || cargo test --release --locked --no-run $VOXGATE_CARGO_FEATURES

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
set -o pipefail

log "validating the shipped flows"
./target/release/voxgate validate flows --prompts prompts

log "running the shipped flows' tests"
./target/release/voxgate test flows --models models | tee -a "$LOG"

# Coverage-guided fuzzing of the parsers (SIP wire and TCP framer, SDP, RTP
# and RFC 4733) and of the flow and config loaders, a few seconds per target;
# a crash fails the suite. The loaders' targets reuse the release build above
# and add one instrumented build of the library (~3 CPU-minutes).
FUZZ_TARGETS=(sip_wire tcp_framer sdp rtp flow config)
log "fuzzing ${FUZZ_TARGETS[*]} (scripts/fuzz.sh, ${FUZZ_SECONDS:-5} s per target)"
FUZZ_SECONDS="${FUZZ_SECONDS:-5}" "$ROOT/scripts/fuzz.sh" "${FUZZ_TARGETS[@]}"

# Tests talk to loopback only; inside a fresh network namespace nothing
# else even exists, so a stray packet fails instead of leaving the machine.
run_tests() { cargo test --release --locked --no-fail-fast $VOXGATE_CARGO_FEATURES -- --test-threads=2 "$@"; }
if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
    log "running cargo tests inside a private network namespace (loopback only)"
    # A veth pair gives softphones (baresip) a non-loopback address that
    # exists only inside this namespace.
    unshare -n bash -c 'ip link set lo up \
        && ip link add vgtest0 type veth peer name vgtest1 \
        && ip addr add 10.254.254.1/24 dev vgtest0 && ip link set vgtest0 up && ip link set vgtest1 up \
        && cargo test --release --locked --offline --no-fail-fast $VOXGATE_CARGO_FEATURES -- --test-threads=2' 2>&1 | tee -a "$LOG"
else
    log "cannot create a network namespace here; running tests on the host loopback"
    run_tests 2>&1 | tee -a "$LOG"
fi

# One closing line over everything: cargo's suites and the flow tests.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     /^[0-9]+ passed, [0-9]+ failed/ { p += $1; f += $3 }
     END { printf "%d passed, %d failed\n", p, f }' "$LOG"
