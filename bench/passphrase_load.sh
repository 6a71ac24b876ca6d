#!/usr/bin/env bash
# Passphrase checks under load (issue 14 item 5): bench/run.sh's IVR load
# (default 1,000 concurrent calls, six RFC 4733 digits each) and, beside it on
# the same voxgate, PASS_CALLERS (default 20) concurrent callers who each say
# the enrolled passphrase (piper voice, flows/callers/purple_elephant_dance.wav,
# G.711) to bench/flows/pass.yaml, one call after another from 2,000 enrolled
# numbers. Prints run.sh's table (RTP send interval, INVITE→200 of the IVR
# load) and the checks: how many, their verdicts, the decoder's latency from
# /metrics (queued → answer) and the decoding CPU per check (CTranslate2's
# replica threads).
#
#   bench/passphrase_load.sh [LEVEL]      default 1000
#
# Environment: PASS_CALLERS (default 20), WINDOW (default 30), SETTLE
# (default 10: the passphrase callers' first checks), VOXGATE_BIN (run this
# binary, no build), PASS_CONFIG (YAML added under `passphrase:`, e.g.
# `speculate_after: 200ms`), OUT. Everything on 127.0.0.1; bounded.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
level=${1:-1000}
PASS_CALLERS=${PASS_CALLERS:-20}
out=${OUT:-$here/out/passphrase-load-$(date -u +%Y%m%d-%H%M%S)}
HTTP_PORT=15089
mkdir -p "$out/state"

if [ -z "${VOXGATE_BIN:-}" ]; then
  # shellcheck disable=SC1091,SC2086
  (cd "$root" && source scripts/lib.sh && need_ctranslate2 && need_speech_model &&
    cargo build --release --quiet $VOXGATE_CARGO_FEATURES) || { echo "build failed" >&2; exit 1; }
fi
vox=${VOXGATE_BIN:-$root/target/release/voxgate}
[ -s "$root/models/whisper-tiny.en/model.bin" ] || { echo "no speech model: run scripts/fetch-whisper" >&2; exit 1; }

# 2,000 accounts, all with the same phrase: every call is a genuine caller,
# and no account collects enough misses to be locked during a run.
csv="$out/state/accounts.csv"
{
  echo "id,phone,passphrase"
  for i in $(seq 0 1999); do printf 'pl%04d,+1650555%04d,purple elephant dance\n' "$i" "$i"; done
} > "$csv"
"$vox" accounts import --database "$out/state/accounts.db" --key-file "$out/state/secret.key" "$csv" >/dev/null ||
  { echo "accounts import failed" >&2; exit 1; }
rm -f "$csv"
nums="$out/state/numbers.csv"
{ echo "SEQUENTIAL"; for i in $(seq 0 1999); do printf '+1650555%04d;\n' "$i"; done; } > "$nums"

# What each caller streams: 2.5 s of silence while the prompt plays, the
# phrase, 2 s of silence (as tests/passphrase_calls.rs does).
audio="$out/state/pass.ulaw"
sox -n -r 8000 -c 1 -e u-law -t raw "$out/state/lead.ulaw" trim 0 2.5
sox -n -r 8000 -c 1 -e u-law -t raw "$out/state/tail.ulaw" trim 0 2
sox "$root/flows/callers/purple_elephant_dance.wav" -r 8000 -c 1 -e u-law -t raw "$out/state/said.ulaw"
cat "$out/state/lead.ulaw" "$out/state/said.ulaw" "$out/state/tail.ulaw" > "$audio"
# The test suite's passphrase caller, with its number from the -inf file and
# sipp's own RTP port in its SDP.
scenario="$out/state/pass_caller.xml"
sed -e 's/\[from_user\]/[field0]/g' -e 's/\[rtp_listen\]/[rtpstream_audio_port]/g' \
  -e "s#caller.ulaw,1,0#$audio,1,0#" "$root/tests/sipp/passphrase.xml" > "$scenario"

# Started by run.sh in the level's folder once its sipp runs; stopped after the window.
side="exec sipp 127.0.0.1:\$SIP_PORT -sf '$scenario' -s pass -inf '$nums' -i 127.0.0.1 \
  -p 15170 -mp 17000 -cp 15889 -l $PASS_CALLERS -r 50 -rp 1000 -m 1000000 -nostdin \
  -trace_stat -stf pass_stat.csv -fd 1 -trace_err -error_file pass_errors.log"
# At the window's edges: the decoder's counters and the threads' CPU ticks.
hook="python3 - \"\$1\" <<'PY'
import glob, os, sys, urllib.request
edge = sys.argv[1]
open('metrics.' + edge, 'w').write(urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/metrics', timeout=5).read().decode())
rows = []
for f in glob.glob('/proc/[0-9]*/cmdline'):
    try:
        if os.getcwd() + '/voxgate.yaml' not in open(f).read():
            continue
        pid = f.split('/')[2]
        for t in glob.glob('/proc/%s/task/*/stat' % pid):
            s = open(t).read()
            comm = s[s.index('(') + 1:s.rindex(')')]
            rest = s[s.rindex(')') + 2:].split()
            # CTranslate2's replica workers carry the name of the thread
            # that loaded the model: voxgate-ct2 (older builds: the
            # process's, where the main thread is the one whose id is the pid).
            if comm == 'voxgate-ct2' or (comm == 'voxgate' and t.split('/')[4] != pid):
                comm = 'ct2-worker'
            rows.append('%s %d' % (comm, int(rest[11]) + int(rest[12])))
    except OSError:
        pass
open('threads.' + edge, 'w').write('\n'.join(rows) + '\n')
PY"

extra="models_dir: \"$root/models\"
secret_key_file: \"$out/state/secret.key\"
http: { listen: 127.0.0.1:$HTTP_PORT, public_url: \"http://127.0.0.1:$HTTP_PORT\" }"
[ -n "${PASS_CONFIG:-}" ] && extra="$extra
passphrase: { ${PASS_CONFIG} }"

OUT="$out" SKIP_BUILD=1 VOXGATE_BIN="$vox" DATABASE="$out/state/accounts.db" EXTRA_CONFIG="$extra" \
  SIDE_LOAD="$side" WINDOW_HOOK="$hook" SETTLE="${SETTLE:-10}" SETUP_RATES="" \
  "$here/run.sh" "$level" || exit 1

d="$out/level-$level"
python3 "$here/parse.py" passload "$d" "$PASS_CALLERS" "$(getconf CLK_TCK)" | tee -a "$out/results.md"
