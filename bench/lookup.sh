#!/usr/bin/env bash
# voxgate account-store bench (see bench/README.md, "Lookup bench"):
#
#   bench/lookup.sh            import 1,000,000 accounts, lookups alone, lookups
#                              under 1000 calls, the same 1000 calls without lookups
#
# 1. A deterministic CSV of ACCOUNTS accounts (cached in bench/out/cache/), imported
#    with `voxgate accounts import` into a fresh database: rows/s, file size.
# 2. `serve` with that database: VmRSS after start (and with an empty database).
# 3. Lookups alone: short sipp calls (bench/lookup_setup.xml) at RATE calls/s for
#    LOOKUP_SECS, caller IDs from a -inf file (FOUND_PCT % in the database), flow
#    bench/flows/lookup.yaml: p50/p99 of the `lookup` events' micros; VmRSS after.
# 4. Lookups under CALLS concurrent calls: bench/run.sh with FLOW=bench_lookup,
#    SCENARIO=load_lookup.xml (varied caller IDs), DATABASE=that database.
# 5. With PLAIN=1, the same run.sh level without lookups (flow bench, no database).
#
# Environment: ACCOUNTS (1000000), FOUND_PCT (90), RATE (75), LOOKUP_SECS (20),
# CALLS (1000; 0 skips 4 and 5), WINDOW (20, run.sh's window), PLAIN (1),
# SKIP_BUILD=1. Output: bench/out/<UTC time>-lookup/ with lookup.md. Everything
# runs on 127.0.0.1; every run is bounded; children die on exit.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
ACCOUNTS=${ACCOUNTS:-1000000}
FOUND_PCT=${FOUND_PCT:-90}
RATE=${RATE:-75}
LOOKUP_SECS=${LOOKUP_SECS:-20}
CALLS=${CALLS:-1000}
WINDOW=${WINDOW:-20}
PLAIN=${PLAIN:-1}
SIP_PORT=15060 SIPP_PORT=15070 SIPP_MEDIA=16000 SIPP_CTRL=15888  # as run.sh (runs never overlap)
HZ=$(getconf CLK_TCK)
stamp=$(date -u +%Y%m%d-%H%M%S)
out="$here/out/$stamp-lookup"
cache="$here/out/cache"
mkdir -p "$out" "$cache"

source "$here/lib.sh"   # cleanup trap, ulimit, build, $vox

now() { date +%s.%N; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null; }
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; } # all CPUs, ticks
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }
log() { echo "== $*" >&2; }

wait_pid() { # PID SECONDS: wait for a child, kill it when the time is up
  local p=$1 t=$2
  for _ in $(seq $((t * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}

start_voxgate() { # DIR DATABASE
  local d=$1 db=$2
  mkdir -p "$d"
  cat > "$d/voxgate.yaml" <<YAML
listen: 127.0.0.1:$SIP_PORT
rtp_ports: 10000-14999
flows_dir: $here/flows
prompts_dir: $root/prompts
route_by_flow_name: true
rtp_timeout: 30s
max_call_duration: 2m
shutdown_grace: 5s
# The whole load comes from one sipp on one address: no per-source limits
# (issue 16), and room for every port of rtp_ports.
limits: { datagram_rate: 0, invite_rate: 100000, invite_burst: 100000, calls_per_source: 100000, unacked_per_source: 100000, max_calls: 2500, max_unacked: 2500 }
log_format: text
state_dir: "$d/state"
database: "$db"
YAML
  "$vox" serve --config "$d/voxgate.yaml" --events "$d/events.jsonl" 2> "$d/voxgate.log" &
  vpid=$!
  pids+=("$vpid")
  for _ in $(seq 100); do grep -q "voxgate ready" "$d/voxgate.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "voxgate did not start; see $d/voxgate.log" >&2
  return 1
}

stop_voxgate() {
  kill -TERM "$vpid" 2>/dev/null
  for _ in $(seq 150); do kill -0 "$vpid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$vpid" 2>/dev/null
  wait "$vpid" 2>/dev/null
}

lines=()   # lookup.md, in order
say() { lines+=("$*"); echo "$*" >&2; }

# ---- 1. the CSV and the import ---------------------------------------------
csv="$cache/accounts-v1-$ACCOUNTS.csv"
if [ ! -s "$csv" ]; then
  log "generating $csv"
  python3 "$here/gen_accounts.py" accounts "$csv.tmp" "$ACCOUNTS" && mv "$csv.tmp" "$csv" || exit 1
fi
db="$out/db/voxgate.db"
mkdir -p "$out/db"
log "importing $ACCOUNTS accounts into $db (load average $(loadavg))"
la0=$(loadavg); b0=$(busy); t0=$(now)
timeout 600 /usr/bin/time -f "%e %U %S %M" -o "$out/import.time" \
  "$vox" accounts import --database "$db" "$csv" > "$out/import.out" 2> "$out/import.err"
rc=$?
t1=$(now); b1=$(busy)
imported=$(awk '/^imported/ {print $2}' "$out/import.out")
read -r _ iu is imax < <(tail -1 "$out/import.time")
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
irate=$(awk -v n="${imported:-0}" -v w="$wall" 'BEGIN{printf "%.0f", n/w}')
icpu=$(awk -v u="${iu:-0}" -v s="${is:-0}" -v w="$wall" 'BEGIN{printf "%.0f", (u+s)/w*100}')
iothers=$(awk -v a="$b0" -v b="$b1" -v u="${iu:-0}" -v s="${is:-0}" -v w="$wall" -v hz="$HZ" \
  'BEGIN{o=((b-a)/hz-u-s)/w*100; printf "%.0f", o<0?0:o}')
dbsize=$(stat -c %s "$db" 2>/dev/null || echo 0)
walsize=$(stat -c %s "$db-wal" 2>/dev/null || echo 0)
say "voxgate lookup bench $(date -u "+%Y-%m-%d %H:%M UTC"), $(nproc) cores, $(uname -r); results in $out"
say ""
say "## Import ($(basename "$csv"): phone,name,brand,email,plan; shuffled order)"
say ""
say "| rows imported | exit | wall s | rows/s | import CPU % of one core (user+sys ${iu}+${is} s) | peak RSS MiB | other processes CPU % | load avg before | DB file MiB (+ WAL) |"
say "|---:|---:|---:|---:|---:|---:|---:|---|---:|"
say "| ${imported:-0}/$ACCOUNTS | $rc | $wall | $irate | $icpu | $(mib $((${imax:-0} * 1024))) | $iothers | $la0 | $(mib "$dbsize") (+ $(mib "$walsize")) |"
[ "$rc" = 0 ] && [ "${imported:-0}" = "$ACCOUNTS" ] || { echo "import failed; see $out/import.err" >&2; exit 1; }

# ---- 2./3. serve with the database: RSS, lookups alone ----------------------
# One throw-away key for every serve of this run (run.sh's included): the first
# serve records its check value in the database, later ones must match it.
VOXGATE_SECRET_KEY=$(head -c 32 /dev/urandom | base64)
export VOXGATE_SECRET_KEY
log "serve with an empty database (RSS reference)"
start_voxgate "$out/serve-empty" "$out/serve-empty/empty.db" || exit 1
sleep 2
rss_empty=$(rss_mib "$vpid")
stop_voxgate

log "serve with the $ACCOUNTS-account database"
d="$out/alone"
start_voxgate "$d" "$db" || exit 1
sleep 2
rss_start=$(rss_mib "$vpid")
m=$((RATE * LOOKUP_SECS))
nums="$d/numbers.csv"
python3 "$here/gen_accounts.py" numbers "$nums" "$m" "$FOUND_PCT" "$ACCOUNTS" 1
log "lookups alone: $RATE calls/s for ${LOOKUP_SECS}s ($m calls, ${FOUND_PCT}% numbers in the database)"
la0=$(loadavg); b0=$(busy); v0=$(ticks "$vpid"); t0=$(now)
(cd "$d" && exec sipp 127.0.0.1:$SIP_PORT -sf "$here/lookup_setup.xml" -s lookup -inf "$nums" \
    -i 127.0.0.1 -p $SIPP_PORT -mp $SIPP_MEDIA -cp $SIPP_CTRL -l $((RATE * 5)) -r "$RATE" -rp 1000 \
    -m "$m" -timeout "$((LOOKUP_SECS + 40))s" -nostdin -trace_stat -stf stat.csv -fd 1 \
    -trace_err -error_file errors.log > sipp.out 2>&1) &
spid=$!
pids+=("$spid")
wait_pid "$spid" $((LOOKUP_SECS + 50))
t1=$(now); b1=$(busy); v1=$(ticks "$vpid")
sleep 1
rss_after=$(rss_mib "$vpid")
stop_voxgate
read -r ok failed <<< "$(python3 "$here/parse.py" stat "$d/stat.csv" 'SuccessfulCall(C)' 'FailedCall(C)')"
read -r n nf nn ne p50 p99 p999 pmax pmean <<< "$(python3 "$here/parse.py" lookups "$d/events.jsonl")"
expect=$(grep -c ';found$' "$nums")
vcpu=$(awk -v a="$v0" -v b="$v1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz/(t1-t0)*100}')
others=$(awk -v a="$b0" -v b="$b1" -v v="$vcpu" -v t0="$t0" -v t1="$t1" -v hz="$HZ" \
  'BEGIN{o=(b-a)/hz/(t1-t0)*100-v; printf "%.0f", o<0?0:o}')
say ""
say "## serve with the database"
say ""
say "| VmRSS MiB: empty database, after start | $ACCOUNTS accounts, after start | after the lookups alone |"
say "|---:|---:|---:|"
say "| $rss_empty | $rss_start | $rss_after |"
say ""
say "## Lookups alone ($RATE calls/s for ${LOOKUP_SECS}s, 1 s calls, flow lookup)"
say ""
say "| calls ok/failed | lookups | found / not found / error (expected found) | micros p50 | p99 | p99.9 | max | mean | voxgate CPU % | other processes CPU % (sipp included) | load avg before |"
say "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
say "| ${ok:-0}/${failed:-0} | $n | $nf / $nn / $ne ($expect) | $p50 | $p99 | $p999 | $pmax | $pmean | $vcpu | $others | $la0 |"

# ---- 4./5. under CALLS concurrent calls -------------------------------------
table_rows=()
lk_rows=()
run_load() { # NAME  ENV...: one run.sh level, its table row and notes
  local name=$1; shift
  local o="$out/$name"
  log "$name: bench/run.sh $CALLS (window ${WINDOW}s; load avg $(loadavg))"
  env "$@" OUT="$o" SKIP_BUILD=1 WINDOW="$WINDOW" SETUP_RATES="" \
    timeout 900 "$here/run.sh" "$CALLS" > "$o.txt" 2>&1
  local row; row=$(grep "^| $CALLS |" "$o/results.md" 2>/dev/null | head -1)
  table_rows+=("| $name ${row:-| (no result, see $o.txt)}")
  grep "^- $CALLS:" "$o/results.md" 2>/dev/null | sed "s/^- $CALLS:/- $name:/" > "$o.notes"
}
if [ "$CALLS" -gt 0 ]; then
  nums_load="$out/numbers-load.csv"
  python3 "$here/gen_accounts.py" numbers "$nums_load" 20000 "$FOUND_PCT" "$ACCOUNTS" 2
  run_load with-lookups FLOW=bench_lookup SCENARIO="$here/load_lookup.xml" INF="$nums_load" DATABASE="$db"
  ev="$out/with-lookups/level-$CALLS/events.jsonl"
  read -r n nf nn ne p50 p99 p999 pmax pmean <<< "$(python3 "$here/parse.py" lookups "$ev" 2>/dev/null || echo "0 0 0 0 - - - - -")"
  lk_rows+=("| $CALLS concurrent calls (all calls of the run, ramp included) | $n | $nf / $nn / $ne | $p50 | $p99 | $p999 | $pmax | $pmean |")
  [ "$PLAIN" = 1 ] && run_load without-lookups
  say ""
  say "## $CALLS concurrent calls (bench/run.sh, window ${WINDOW}s): with a lookup at each call's start, and without"
  say ""
  say "| run | concurrent calls | voxgate CPU % of one core | % per call | RSS MiB | INVITE→200 avg / p99 ms | failed calls | digits right | RTP loss | send interval p50 / p99 ms | holds |"
  say "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"
  for r in "${table_rows[@]}"; do say "$r"; done
  say ""
  while read -r l; do say "$l"; done < <(cat "$out"/*.notes 2>/dev/null)
  say ""
  say "Lookups during the run with lookups (one per call, varied caller IDs, ${FOUND_PCT}% in the database):"
  say ""
  say "| load | lookups | found / not found / error | micros p50 | p99 | p99.9 | max | mean |"
  say "|---|---:|---:|---:|---:|---:|---:|---:|"
  for r in "${lk_rows[@]}"; do say "$r"; done
  p99s=$(grep -o '| with-lookups.*' <<< "${table_rows[0]}" | awk -F'|' '{print $11}' | awk -F/ '{gsub(/ /,"",$2); print $2}')
  if [ -n "$p99s" ]; then
    verdict=$(awk -v p="$p99s" 'BEGIN{print (p !~ />/ && p+0 >= 18 && p+0 <= 22) ? "within" : "NOT within"}')
    say ""
    say "Send-interval p99 with lookups: $p99s ms, $verdict 20 ± 2 ms."
  fi
fi

printf '%s\n' "${lines[@]}" > "$out/lookup.md"
echo "written: $out/lookup.md" >&2
