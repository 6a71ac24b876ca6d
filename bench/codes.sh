#!/usr/bin/env bash
# voxgate one-time-code bench under calls (see bench/README.md, "Codes bench"):
#
#   bench/codes.sh             1000 concurrent calls, each looking the caller up,
#                              sending an SMS code through a fake Twilio and
#                              checking one entry; then the same 1000 calls plain
#
# 1. A deterministic CSV of ACCOUNTS accounts (bench/gen_accounts.py, cached in
#    bench/out/cache/), imported with `voxgate accounts import` into a fresh database.
# 2. A fake SMS gateway on 127.0.0.1 (bench/fake_sms.py: Twilio's Messages API,
#    201 {"sid": "SM…", "status": "queued"}; counters only, nothing logged).
# 3. bench/run.sh CALLS with FLOW=bench_codes (lookup_caller, send_code,
#    two prompts, verify_code with one try, goodbye), SCENARIO=load_lookup.xml
#    (a caller ID per call from a -inf file, FOUND_PCT % in the database; keys
#    123456 15 s in: a wrong code), DATABASE=that database and EXTRA_CONFIG=
#    `sms:` pointing at the fake and `codes:` limits raised so nothing is
#    rate limited. Codes sent / verified per second over run.sh's steady window
#    and the verification latency, from voxgate's log (see parse.py codes).
# 4. With PLAIN=1, the same run.sh level without codes (flow bench, no database).
#
# Environment: ACCOUNTS (1000000), FOUND_PCT (100), CALLS (1000), WINDOW (20,
# run.sh's window), PLAIN (1), SKIP_BUILD=1. Output: bench/out/<UTC time>-codes/
# with codes.md. Everything runs on 127.0.0.1; every run is bounded; children
# die on exit.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
ACCOUNTS=${ACCOUNTS:-1000000}
FOUND_PCT=${FOUND_PCT:-100}
CALLS=${CALLS:-1000}
WINDOW=${WINDOW:-20}
PLAIN=${PLAIN:-1}
SMS_PORT=15891   # the fake gateway (run.sh uses 15060, 15070, 15888, 10000-14999, 16000+)
HZ=$(getconf CLK_TCK)
stamp=$(date -u +%Y%m%d-%H%M%S)
out="$here/out/$stamp-codes"
cache="$here/out/cache"
mkdir -p "$out" "$cache"

source "$here/lib.sh"   # cleanup trap, ulimit, build, $vox

ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }
fsize() { local t=0 f; for f in "$@"; do [ -e "$f" ] && t=$((t + $(stat -c %s "$f"))); done; echo "$t"; }
log() { echo "== $*" >&2; }
lines=()   # codes.md, in order
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
timeout 600 "$vox" accounts import --database "$db" "$csv" > "$out/import.out" 2> "$out/import.err" ||
  { echo "import failed; see $out/import.err" >&2; exit 1; }
db_before=$(fsize "$db" "$db-wal" "$db-shm")

# ---- 2. the fake SMS gateway ------------------------------------------------
BENCH_SMS_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
VOXGATE_SECRET_KEY=$(head -c 32 /dev/urandom | base64)
export BENCH_SMS_TOKEN VOXGATE_SECRET_KEY   # throw-away; serve reads both from its environment
sid="AC$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
python3 "$here/fake_sms.py" "$SMS_PORT" "$sid" BENCH_SMS_TOKEN > "$out/fake_sms.out" 2>&1 &
fpid=$!
pids+=("$fpid")
for _ in $(seq 50); do grep -q listening "$out/fake_sms.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$out/fake_sms.out" || { echo "fake_sms did not start; see $out/fake_sms.out" >&2; exit 1; }

extra=$(cat <<YAML
sms:
  gateways:
    bench_fake:
      type: twilio
      account_sid: $sid
      auth_token_env: BENCH_SMS_TOKEN
      from: "+15005550006"
      base_url: http://127.0.0.1:$SMS_PORT
      timeout: 5s
codes:
  per_destination: { hour: 100000, day: 100000 }
  per_caller: { hour: 100000, day: 100000 }
  max_failures: 100
YAML
)

# ---- 3./4. under CALLS concurrent calls --------------------------------------
table_rows=()
run_load() { # NAME  ENV...: one run.sh level, its table row and notes
  local name=$1; shift
  local o="$out/$name"
  log "$name: bench/run.sh $CALLS (window ${WINDOW}s; load avg $(loadavg))"
  la_before+=("$name $(loadavg)")
  env "$@" OUT="$o" SKIP_BUILD=1 WINDOW="$WINDOW" SETUP_RATES="" \
    timeout 900 "$here/run.sh" "$CALLS" > "$o.txt" 2>&1
  local row; row=$(grep "^| $CALLS |" "$o/results.md" 2>/dev/null | head -1)
  table_rows+=("| $name ${row:-| (no result, see $o.txt)}")
  grep "^- $CALLS:" "$o/results.md" 2>/dev/null | sed "s/^- $CALLS:/- $name:/" > "$o.notes"
}
la_before=()
nums="$out/numbers-load.csv"
python3 "$here/gen_accounts.py" numbers "$nums" 20000 "$FOUND_PCT" "$ACCOUNTS" 3
f0=$(ticks "$fpid")
run_load with-codes FLOW=bench_codes SCENARIO="$here/load_lookup.xml" INF="$nums" DATABASE="$db" EXTRA_CONFIG="$extra"
f1=$(ticks "$fpid")
db_after=$(fsize "$db" "$db-wal" "$db-shm")
db_main=$(fsize "$db")
rows=$(python3 "$here/parse.py" dbrows "$db" 2>&1)
kill -TERM "$fpid" 2>/dev/null; wait "$fpid" 2>/dev/null
fake=$(grep '^fake_sms ' "$out/fake_sms.out" | tail -1)
lv="$out/with-codes/level-$CALLS"
codes=$(python3 "$here/parse.py" codes "$lv/events.jsonl" "$lv/voxgate.log" 2> "$out/codes.err")
[ "$PLAIN" = 1 ] && run_load without-codes

say "voxgate codes bench $(date -u "+%Y-%m-%d %H:%M UTC"), $(nproc) cores, $(uname -r); $ACCOUNTS accounts, ${FOUND_PCT}% of the callers in the database; results in $out"
say ""
say "## $CALLS concurrent calls (bench/run.sh, window ${WINDOW}s): with a lookup, an SMS code and its check in every call, and without"
say ""
say "| run | concurrent calls | voxgate CPU % of one core | % per call | RSS MiB | INVITE→200 avg / p99 ms | failed calls | digits right | RTP loss | send interval p50 / p99 ms | holds |"
say "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"
for r in "${table_rows[@]}"; do say "$r"; done
say ""
while read -r l; do say "$l"; done < <(cat "$out"/*.notes 2>/dev/null)
for l in "${la_before[@]}"; do say "- load average before ${l%% *}: ${l#* }"; done
say ""
say "## Codes (run with codes)"
say ""
while IFS= read -r l; do say "$l"; done <<< "$codes"
say ""
say "- fake gateway: $fake; its CPU over the whole run $(awk -v a="$f0" -v b="$f1" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz}') s"
say "- database (file + WAL + shm): $(mib "$db_before") MiB after the import of $ACCOUNTS accounts, $(mib "$db_after") MiB after the run (main file $(mib "$db_main") MiB); rows: $rows"
p99s=$(awk -F'|' '{print $11}' <<< "${table_rows[0]}" | awk -F/ '{gsub(/ /,"",$2); print $2}')
if [ -n "$p99s" ]; then
  verdict=$(awk -v p="$p99s" 'BEGIN{print (p !~ />/ && p+0 >= 18 && p+0 <= 22) ? "within" : "NOT within"}')
  say ""
  say "Send-interval p99 with codes: $p99s ms, $verdict 20 ± 2 ms."
fi
printf '%s\n' "${lines[@]}" > "$out/codes.md"
echo "written: $out/codes.md" >&2
