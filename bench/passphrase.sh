#!/usr/bin/env bash
# Passphrase evaluation: builds the recording set once (bench/passphrase/make_set.py:
# Allison's recorded digits from Debian's asterisk-core-sounds-en-wav spliced
# into digit passphrases, espeak-ng voices saying word passphrases, near-miss
# impostors, silence, noise and hum), then judges every recording as
# verify_passphrase would (`voxgate evaluate-passphrases`) for each beam width
# in BEAMS. Prints true/false-accept rates per set and condition, a sweep of
# the confidence gate and CPU per check. Not a test: numbers only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
need_debs sox espeak-ng asterisk-core-sounds-en-wav python3
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked --quiet
"$ROOT/scripts/fetch-whisper" >/dev/null
SET="$ROOT/bench/out/passphrase-set"
if [ ! -s "$SET/manifest.tsv" ]; then
    python3 bench/passphrase/make_set.py "$SET"
fi
OUT="$ROOT/bench/out/$(date -u +%Y%m%d-%H%M%S)-passphrase"
mkdir -p "$OUT"
for beam in ${BEAMS:-1 5}; do
    echo "== beam $beam" | tee -a "$OUT/passphrase.md"
    ./target/release/voxgate evaluate-passphrases "$SET/manifest.tsv" --models models \
        --beam "$beam" --min-confidence "${MIN_CONFIDENCE:-0.5}" | tee -a "$OUT/passphrase.md"
done
echo "results: $OUT/passphrase.md"
