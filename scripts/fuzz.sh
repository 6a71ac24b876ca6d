#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers on the stable toolchain: cargo-afl
# (AFL++). Installs what it needs (idempotently), builds fuzz/ (which
# includes the parser modules' sources directly: no CTranslate2 build) and
# runs each target for FUZZ_SECONDS (default 5). A crash fails the script and
# is left in fuzz/out/<target>/default/crashes/ (replay it with
# `fuzz/target/release/<target> < FILE`; add a regression test).
# Usage: scripts/fuzz.sh [TARGET...]   (default: every target)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_debs afl++ clang
if ! cargo afl --version >/dev/null 2>&1; then
    log "installing cargo-afl"
    cargo install cargo-afl --locked --version 0.18.2
fi
cd "$ROOT/fuzz"
SECONDS_PER=${FUZZ_SECONDS:-5}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(sip_wire tcp_framer sdp rtp)

log "building the fuzz targets (cargo afl build --release)"
cargo afl build --release --locked --quiet

# Seeds: RFC 4475's torture messages (../shared/conformance), the SDP bodies
# in them, and a few hand-made RTP runs.
SEEDS="$ROOT/fuzz/seeds"
CONF="${CONFORMANCE_DIR:-$ROOT/../shared/conformance/rfc4475}"
mkdir -p "$SEEDS"/{sip_wire,tcp_framer,sdp,rtp}
cp -n "$ROOT"/fuzz/corpus/sip/* "$SEEDS/sip_wire/" 2>/dev/null || true
cp -n "$ROOT"/fuzz/corpus/sip/* "$SEEDS/tcp_framer/" 2>/dev/null || true
cp -n "$ROOT"/fuzz/corpus/sdp/* "$SEEDS/sdp/" 2>/dev/null || true
cp -n "$ROOT"/fuzz/corpus/rtp/* "$SEEDS/rtp/" 2>/dev/null || true
if [ -d "$CONF" ]; then
    for f in "$CONF"/*.dat; do
        b=$(basename "$f" .dat)
        cp -n "$f" "$SEEDS/sip_wire/$b" 2>/dev/null || true
        # The framer target's first byte picks the chunk size.
        [ -e "$SEEDS/tcp_framer/$b" ] || { printf '\x07'; cat "$f"; } > "$SEEDS/tcp_framer/$b"
        if grep -q '^v=0' "$f"; then
            sed -n '/^v=0/,$p' "$f" > "$SEEDS/sdp/$b"
        fi
    done
fi

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
failed=0
total_execs=0
for t in "${TARGETS[@]}"; do
    out="$ROOT/fuzz/out/$t"
    rm -rf "$out"; mkdir -p "$ROOT/fuzz/out"
    log "fuzzing $t for ${SECONDS_PER}s"
    cargo afl fuzz -V "$SECONDS_PER" -i "$SEEDS/$t" -o "$out" "$ROOT/fuzz/target/release/$t" >"$out.log" 2>&1 || {
        tail -20 "$out.log"; failed=1; continue; }
    stats="$out/default/fuzzer_stats"
    execs=$(awk -F: '/^execs_done/ {gsub(/ /, "", $2); print $2}' "$stats")
    crashes=$(awk -F: '/^saved_crashes|^unique_crashes/ {gsub(/ /, "", $2); print $2}' "$stats" | head -1)
    total_execs=$((total_execs + execs))
    echo "fuzz $t: ${execs} executions, ${crashes} crashes"
    if [ "${crashes:-0}" != 0 ]; then
        ls "$out/default/crashes/"
        failed=1
    fi
done
echo "fuzz total: ${total_execs} executions"
exit "$failed"
