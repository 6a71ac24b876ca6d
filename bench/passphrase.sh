#!/usr/bin/env bash
# Passphrase evaluation: builds the recording set once (bench/passphrase/make_set.py:
# Allison's recorded digits and words from Debian's asterisk-core-sounds-en-wav
# spliced into digit and word passphrases, the piper voice of the prompts and espeak-ng voices
# saying word passphrases, near-miss impostors, silence, noise and hum), then
# judges every recording as verify_passphrase would (`voxgate
# evaluate-passphrases`) for each beam width in BEAMS: the real-voice digits
# and the rest in two processes at once (one decode each), their per-check
# numbers then summarised together (bench/passphrase/summarize.py): true/false
# accept per set and condition on the test split, at MIN_CONFIDENCE and at the
# gate fitted on the train split, a gate sweep, the no-speech gate's margins
# and CPU per check; with --confirm, the word checks tiny.en matches decoded
# again by Whisper base, with and without the hint (models/whisper-base).
# Not a test: numbers only. Never prints a transcript.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
need_debs sox espeak-ng asterisk-core-sounds-en-wav python3
need_ctranslate2
# shellcheck disable=SC2086 # the features are words
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked --quiet $VOXGATE_CARGO_FEATURES
"$ROOT/scripts/fetch-whisper" >/dev/null
"$ROOT/scripts/fetch-whisper" base >/dev/null   # the second model of --confirm
SET="$ROOT/bench/out/passphrase-set"
# Rebuilt when made by an older make_set.py (7 columns; the tonal non-speech,
# the digits said as numbers and Allison's word phrases came later).
if [ ! -s "$SET/manifest.tsv" ] || [ "$(head -1 "$SET/manifest.tsv" | awk -F'\t' '{print NF}')" != 7 ] \
    || ! grep -q allison_numbers "$SET/manifest.tsv" || ! grep -q -- -dial_tone- "$SET/manifest.tsv" \
    || ! grep -q allison_words "$SET/manifest.tsv"; then
    rm -rf "$SET"
    python3 bench/passphrase/make_set.py "$SET"
fi
OUT="$ROOT/bench/out/$(date -u +%Y%m%d-%H%M%S)-passphrase"
mkdir -p "$OUT"
BIN="$OUT/voxgate"
cp target/release/voxgate "$BIN"   # a rebuild of target/ cannot change it mid-run
GATE="${MIN_CONFIDENCE:-0.5}"
# The short encoder window's (serve's default) no-speech gate,
# asr::whisper::NO_SPEECH_GATE_SHORT.
NO_SPEECH_GATE="${NO_SPEECH_GATE:-0.6}"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
for beam in ${BEAMS:-1 5}; do
    pids=()
    for part in allison_digits,allison_numbers allison_words,espeak_words,piper_words,nonspeech; do
        nice "$BIN" evaluate-passphrases "$SET/manifest.tsv" --models models --beam "$beam" \
            --min-confidence "$GATE" --sets "$part" --confirm --dump "$OUT/beam$beam-${part%%,*}.tsv" \
            > "$OUT/beam$beam-${part%%,*}.md" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    pids=()
    echo "== beam $beam" | tee -a "$OUT/passphrase.md"
    python3 bench/passphrase/summarize.py --gate "$GATE" --no-speech-gate "$NO_SPEECH_GATE" \
        "$OUT"/beam"$beam"-*.tsv | tee -a "$OUT/passphrase.md"
done
echo "results: $OUT/passphrase.md"
