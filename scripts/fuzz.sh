#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers on the stable toolchain: cargo-afl
# (AFL++). Installs what it needs (idempotently), builds fuzz/ (which
# includes the parser modules' sources directly: no CTranslate2 build) and
# fuzz/loaders/ (the flow and config loaders, through the voxgate library:
# built into target/ next to the release build, whose dependencies it reuses;
# only voxgate and the targets are instrumented) and runs each target for FUZZ_SECONDS (default 5). A crash fails the script and
# is left in fuzz/out/<target>/default/crashes/ (replay it with
# `fuzz/target/release/<target> < FILE`, `target/release/<flow|config>` for
# the loaders; add a regression test).
# Usage: scripts/fuzz.sh [TARGET...]   (default: every target)
# FUZZ_EXECS=N stops each target after N executions instead (the long runs:
# FUZZ_EXECS=10000000; FUZZ_SECONDS then caps the time, default a day).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_debs afl++ clang
if ! cargo afl --version >/dev/null 2>&1; then
    log "installing cargo-afl"
    cargo install cargo-afl --locked --version 0.18.2
fi
cd "$ROOT/fuzz"
SECONDS_PER=${FUZZ_SECONDS:-5}
EXECS=${FUZZ_EXECS:-}
LIMIT=(-V "$SECONDS_PER")
[ -z "$EXECS" ] || LIMIT=(-E "$EXECS" -V "${FUZZ_SECONDS:-86400}")
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(sip_wire tcp_framer sdp rtp flow config)

wants() { local t; for t in "${TARGETS[@]}"; do case " $* " in *" $t "*) return 0 ;; esac; done; return 1; }
if wants sip_wire tcp_framer sdp rtp; then
    log "building the parser fuzz targets (cargo afl build --release)"
    cargo afl build --release --locked --quiet
fi
if wants flow config; then
    # The loaders need no recogniser: no libvosk.
    VOXGATE_VOSK=off need_ctranslate2
    # Only voxgate and the two targets are compiled (instrumented, by
    # fuzz/loaders/instrument-rustc); every dependency comes from the main
    # release build in target/ as it is, so after `cargo build --release` this
    # costs one instrumented build of the library (~3 CPU-minutes), not the
    # whole tree's (~18 with cargo afl build).
    afl_rt() {
        ls "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-"$(rustc --version | awk '{print $2}')"-*/afl.rs-*/afl-llvm/afl-compiler-rt.o 2>/dev/null | head -1
    }
    AFL_RT=$(afl_rt)
    [ -n "$AFL_RT" ] || { cargo afl config --build >/dev/null; AFL_RT=$(afl_rt); }
    [ -n "$AFL_RT" ] || { log "cannot find AFL++'s runtime object (cargo afl config --build)"; exit 1; }
    log "building the loader fuzz targets (fuzz/loaders into target/, instrumenting voxgate only)"
    # shellcheck disable=SC2086 # the features are words
    (cd loaders && AFL_RT="$AFL_RT" RUSTC_WRAPPER="$ROOT/fuzz/loaders/instrument-rustc" \
        cargo build --release --locked --quiet --target-dir "$ROOT/target" $VOXGATE_CARGO_FEATURES)
fi

# Seeds: RFC 4475's torture messages (../shared/conformance), the SDP bodies
# in them, and a few hand-made RTP runs; every flow in the tree (shipped,
# bench and test flows) and the shipped voxgate.yaml, also with its
# commented-out settings switched on, plus hand-made configs.
SEEDS="$ROOT/fuzz/seeds"
CONF="${CONFORMANCE_DIR:-$ROOT/../shared/conformance/rfc4475}"
mkdir -p "$SEEDS"/{sip_wire,tcp_framer,sdp,rtp,flow,config}
for f in "$ROOT"/flows/*.yaml "$ROOT"/bench/flows/*.yaml "$ROOT"/tests/flows_*/*.yaml; do
    case "$f" in *.test.yaml) continue ;; esac
    b=${f#"$ROOT"/}
    [ -e "$f" ] && cp -n "$f" "$SEEDS/flow/${b//\//_}"
done
# The YAML examples in the docs: flows.md's are flows, the others config.
for f in "$ROOT"/docs/*.md; do
    d=config; [ "$(basename "$f")" = flows.md ] && d=flow
    awk -v out="$SEEDS/$d/doc_$(basename "$f" .md)_" \
        '/^```yaml/ {n++; p=1; next} /^```/ {p=0} p {print > (out n ".yaml")}' "$f"
done
cp -n "$ROOT"/fuzz/corpus/config/* "$SEEDS/config/" 2>/dev/null || true
cp -n "$ROOT/voxgate.yaml" "$SEEDS/config/voxgate.yaml"
[ -e "$SEEDS/config/voxgate_all.yaml" ] ||
    sed -E 's/^# ( *[a-z_"*]+:)/\1/' "$ROOT/voxgate.yaml" > "$SEEDS/config/voxgate_all.yaml"
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

# The loader targets load libctranslate2 (the rpath build.rs sets is voxgate's
# own binaries').
# (no empty entry: an empty one would search the current directory)
ldp=${LIBRARY_PATH:-}
[ -z "${LD_LIBRARY_PATH:-}" ] || ldp=${ldp:+$ldp:}$LD_LIBRARY_PATH
[ -z "$ldp" ] || export LD_LIBRARY_PATH="$ldp"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
failed=0
total_execs=0
for t in "${TARGETS[@]}"; do
    out="$ROOT/fuzz/out/$t"
    rm -rf "$out"; mkdir -p "$ROOT/fuzz/out"
    log "fuzzing $t (${LIMIT[*]})"
    bin="$ROOT/fuzz/target/release/$t"
    case $t in flow | config) bin="$ROOT/target/release/$t" ;; esac
    cargo afl fuzz "${LIMIT[@]}" -i "$SEEDS/$t" -o "$out" "$bin" >"$out.log" 2>&1 || {
        tail -20 "$out.log"; failed=1; continue; }
    stats="$out/default/fuzzer_stats"
    execs=$(awk -F: '/^execs_done/ {gsub(/ /, "", $2); print $2}' "$stats")
    crashes=$(awk -F: '/^saved_crashes|^unique_crashes/ {gsub(/ /, "", $2); print $2}' "$stats" | head -1)
    field() { awk -F: -v k="$1" '$1 ~ "^"k" *$" {gsub(/ /, "", $2); print $2}' "$stats"; }
    total_execs=$((total_execs + execs))
    echo "fuzz $t: ${execs} executions in $(field run_time) s ($(field execs_per_sec) /s)," \
        "edges $(field edges_found)/$(field total_edges) ($(field bitmap_cvg)), ${crashes} crashes"
    if [ "${crashes:-0}" != 0 ]; then
        ls "$out/default/crashes/"
        failed=1
    fi
done
echo "fuzz total: ${total_execs} executions"
exit "$failed"
