#!/usr/bin/env bash
# Speech recognition cost: every caller recording of the flow tests through
# `voxgate recognize` (telephone quality, endpointer, Whisper tiny.en), plain
# and digits-only. Prints model load time, CPU and wall time per utterance,
# and the process's peak RSS. Not a test: numbers only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
need_ctranslate2
# shellcheck disable=SC2086 # the features are words
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked --quiet $VOXGATE_CARGO_FEATURES
"$ROOT/scripts/fetch-whisper" >/dev/null
VOX="$ROOT/target/release/voxgate"
files=(flows/callers/*.wav tests/data/asr/*.wav)

run() { # LABEL ARGS...
    local label=$1; shift
    local out rss
    out="$(mktemp)"
    # Peak RSS from /proc after each run would miss the peak: read VmHWM at exit.
    "$VOX" recognize "$@" > "$out" &
    local pid=$! peak=0 v
    while kill -0 "$pid" 2>/dev/null; do
        v="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
        [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v
        sleep 0.05
    done
    wait "$pid" || true
    echo "== $label"
    cat "$out"
    awk -v rss="$peak" '/cpu [0-9]+ ms/ { for (i = 1; i <= NF; i++) if ($i == "cpu") { s += $(i+1); n++ } }
        END { if (n) printf "-> %d utterances, mean CPU %.0f ms per utterance, peak RSS %.0f MiB\n", n, s / n, rss / 1024 }' "$out"
    rm -f "$out"
}

run "plain" "${files[@]}"
run "digits only" --digits "${files[@]}"
