#!/usr/bin/env bash
# Set up (idempotently) and run voxgate serving the default flows.
# Extra arguments go to `voxgate serve` (e.g. --listen 127.0.0.1:5060).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build_release
need_speech_model
cd "$ROOT"
exec "$ROOT/target/release/voxgate" serve --config "$ROOT/voxgate.yaml" "$@"
