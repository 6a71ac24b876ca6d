# Shared by bench/run.sh and bench/lookup.sh (sourced after `root` and `out`
# are set): kill what a run started on exit, raise the descriptor limit,
# build, and run a private copy of the binary (`$vox`) so concurrent rebuilds
# of target/ cannot change it mid-run.
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 1
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n 16384 2>/dev/null || true
if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${VOXGATE_BIN:-}" ]; then
  # The CTranslate2 build the set-up scripts choose (scripts/lib.sh).
  # shellcheck disable=SC1091,SC2086
  (cd "$root" && source scripts/lib.sh && need_ctranslate2 && cargo build --release --quiet $VOXGATE_CARGO_FEATURES) \
    || { echo "build failed" >&2; exit 1; }
fi
# VOXGATE_BIN: run that binary instead (A/B runs of two builds).
cp "${VOXGATE_BIN:-$root/target/release/voxgate}" "$out/voxgate" || exit 1
vox="$out/voxgate"
