#!/usr/bin/env bash
# voxgate load bench: the Asterisk call shape from docs/peers (see bench/README.md).
#
#   bench/run.sh [LEVELS...]          default: 100 500 1000 concurrent calls
#   bench/run.sh none                 only the call set-up runs
#
# Environment: WINDOW (steady window, s, default 30), SETTLE (s after the ramp,
# default 5), SETUP_RATES (call set-up rates, default "50 100 200 400"; "" skips),
# SETUP_SECS (default 20), SKIP_BUILD=1, EVENTS=0 (no --events file: digits not
# counted); for the levels only: FLOW (flow dialled, default bench), SCENARIO
# (sipp scenario, default load.xml), INF (sipp -inf file, default none),
# DATABASE (account database for voxgate, default none); for every run:
# EXTRA_CONFIG (YAML appended to voxgate's config as is, default none: e.g.
# `sms:` and `codes:` for bench/codes.sh); OUT (output folder); for the
# levels: SIDE_LOAD (a command started beside the level's sipp, in the level's
# folder, with SIP_PORT exported, and stopped after the window: a second load,
# e.g. bench/passphrase_load.sh's passphrase callers) and WINDOW_HOOK (a
# command run with `start` and then `end` at the window's edges).
# Everything runs on 127.0.0.1; every run is bounded; children die on exit.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
levels=("$@")
[ ${#levels[@]} -eq 0 ] && levels=(100 500 1000)
[ "${levels[0]}" = none ] && levels=()   # `run.sh none`: call set-up runs only
WINDOW=${WINDOW:-30}
SETTLE=${SETTLE:-5}
SETUP_RATES=${SETUP_RATES-50 100 200 400}
SETUP_SECS=${SETUP_SECS:-20}
EVENTS=${EVENTS:-1}
INBAND=${INBAND:-true}   # voxgate's in-band DTMF detector (its default: on)
FLOW=${FLOW:-bench}           # levels: the flow dialled (route_by_flow_name)
SCENARIO=${SCENARIO:-$here/load.xml}
INF=${INF:-}                  # levels: sipp -inf file (e.g. caller numbers for [field0])
DATABASE=${DATABASE:-}        # voxgate's account database (default: none configured)
EXTRA_CONFIG=${EXTRA_CONFIG:-} # YAML appended to voxgate's config (default: nothing)
SIP_PORT=15060 SIPP_PORT=15070 SIPP_MEDIA=16000 SIPP_CTRL=15888
CALL_SECS=19   # length of one bench call (bench/flows/bench.yaml + load.xml)
HZ=$(getconf CLK_TCK)
out=${OUT:-$here/out/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out"

source "$here/lib.sh"   # cleanup trap, ulimit, build, $vox
audio="$here/audio/caller.ulaw"
if [ ! -s "$audio" ]; then
  mkdir -p "$here/audio"
  espeak-ng -v en-us -s 150 -w "$out/speech.wav" "Hello, I would like to check the balance of my account please. My number is one two three four five six. Thank you very much, I will wait on the line while you look that up." &&
    sox "$out/speech.wav" -r 8000 -c 1 -e u-law -t raw "$audio" sinc 300-3400
fi

ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null; }
now() { date +%s.%N; }
cur_calls() { # CurrentCall from the last row of sipp's stat CSV (cheap: awk, no python)
  [ -s "$1" ] || { echo 0; return; }
  awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="CurrentCall") c=i} END{print (c ? $c : 0) + 0}' "$1"
}
schedstat() { # PID: run-queue wait (ns) and time slices summed over all threads
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{w+=$2; n+=$3} END{print w+0, n+0}'
}

start_voxgate() { # DIR
  local d=$1
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
inband_dtmf: $INBAND
log_format: text
${MEDIA_PRIORITY:+media_priority: $MEDIA_PRIORITY}
${DATABASE:+database: \"$DATABASE\"}
YAML
  [ -n "$EXTRA_CONFIG" ] && printf '%s\n' "$EXTRA_CONFIG" >> "$d/voxgate.yaml"
  local ev=()
  [ "$EVENTS" = 1 ] && ev=(--events "$d/events.jsonl")
  "$vox" serve --config "$d/voxgate.yaml" "${ev[@]}" 2> "$d/voxgate.log" &
  vpid=$!
  pids+=("$vpid")
  for _ in $(seq 50); do grep -q "voxgate ready" "$d/voxgate.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "voxgate did not start; see $d/voxgate.log" >&2
  return 1
}

stop_voxgate() {
  kill -TERM "$vpid" 2>/dev/null
  for _ in $(seq 150); do kill -0 "$vpid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$vpid" 2>/dev/null
  wait "$vpid" 2>/dev/null
}

wait_pid() { # PID SECONDS: wait for a child, kill it when the time is up
  local p=$1 t=$2
  for _ in $(seq $((t * 10))); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}

header="| concurrent calls | voxgate CPU % of one core | % per call | RSS MiB | INVITE→200 avg / p99 ms | failed calls | digits right | RTP loss | send interval p50 / p99 ms | holds |"
rows=()
notes=()

run_level() { # N
  local n=$1 d="$out/level-$1"
  mkdir -p "$d"
  cp "$audio" "$d/caller.ulaw"
  start_voxgate "$d" || return 1
  local rate m ramp tglobal
  rate=$(awk -v n="$n" 'BEGIN{printf "%.2f", 1.25*n/20}')
  ramp=$(awk -v n="$n" -v r="$rate" 'BEGIN{printf "%d", n/r + 0.999}')
  m=$(awk -v n="$n" -v s="$SETTLE" -v w="$WINDOW" -v c="$CALL_SECS" 'BEGIN{printf "%d", n + n*(s+w+8)/c + 0.999}')
  tglobal=$((ramp + 30 + SETTLE + WINDOW + 60))
  echo "== $n concurrent calls: rate $rate/s, $m calls, window ${WINDOW}s (out: $d)" >&2
  local inf=()
  [ -n "$INF" ] && inf=(-inf "$INF")
  (cd "$d" && exec sipp 127.0.0.1:$SIP_PORT -sf "$SCENARIO" -s "$FLOW" "${inf[@]}" -i 127.0.0.1 \
      -p $SIPP_PORT -mp $SIPP_MEDIA -cp $SIPP_CTRL -l "$n" -r "$rate" -rp 1000 -m "$m" \
      -timeout "${tglobal}s" -nostdin -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 \
      -trace_err -error_file errors.log > sipp.out 2>&1) &
  local spid=$!
  pids+=("$spid")
  local side=""
  if [ -n "${SIDE_LOAD:-}" ]; then
    (cd "$d" && SIP_PORT=$SIP_PORT exec setsid bash -c "$SIDE_LOAD" > side.out 2>&1) &
    side=$!
    pids+=("$side")
  fi
  # Ramp: until sipp holds N calls (or the ramp time plus 20 s has passed).
  local t_start; t_start=$(now)
  while :; do
    local c; c=$(cur_calls "$d/stat.csv")
    [ "${c:-0}" -ge "$n" ] && break
    awk -v a="$t_start" -v b="$(now)" -v lim="$((ramp + 20))" 'BEGIN{exit !(b-a > lim)}' && { notes+=("$n: ramp did not reach $n calls (had $c)"); break; }
    kill -0 "$spid" 2>/dev/null || { notes+=("$n: sipp exited during the ramp"); break; }
    sleep 1
  done
  sleep "$SETTLE"
  [ -n "${WINDOW_HOOK:-}" ] && (cd "$d" && bash -c "$WINDOW_HOOK" hook start)
  kill -USR1 "$vpid"
  local v0 s0 t0 cmin=999999 cmax=0
  v0=$(ticks "$vpid"); s0=$(ticks "$spid"); t0=$(now)
  local idle0; idle0=$(awk '/^cpu /{print $5+$6; exit}' /proc/stat)
  local rq0 ts0; read -r rq0 ts0 <<< "$(schedstat "$vpid")"
  for _ in $(seq "$WINDOW"); do
    sleep 1
    local c; c=$(cur_calls "$d/stat.csv")
    [ "${c:-0}" -lt "$cmin" ] && cmin=$c
    [ "${c:-0}" -gt "$cmax" ] && cmax=$c
  done
  local v1 s1 t1 idle1 rss
  v1=$(ticks "$vpid"); s1=$(ticks "$spid"); t1=$(now)
  idle1=$(awk '/^cpu /{print $5+$6; exit}' /proc/stat)
  local rq1 ts1; read -r rq1 ts1 <<< "$(schedstat "$vpid")"
  kill -USR1 "$vpid"
  [ -n "${WINDOW_HOOK:-}" ] && (cd "$d" && bash -c "$WINDOW_HOOK" hook end)
  # The side load's process group (setsid): its sipp and helpers.
  [ -n "$side" ] && { kill -TERM -- "-$side" 2>/dev/null; wait "$side" 2>/dev/null; }
  rss=$(rss_mib "$vpid")
  for t in /proc/"$vpid"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14+$15}' "$t/stat")"; done > "$d/threads.txt" 2>/dev/null
  sleep 0.3
  cp "$d/voxgate.log" "$d/window.log"
  # Let sipp finish its bounded run (calls in flight end with voxgate's BYE).
  wait_pid "$spid" $((tglobal + 10))
  stop_voxgate
  local cpu percall scpu idle
  cpu=$(awk -v a="$v0" -v b="$v1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz/(t1-t0)*100}')
  percall=$(awk -v c="$cpu" -v n="$n" 'BEGIN{printf "%.3f", c/n}')
  scpu=$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz/(t1-t0)*100}')
  idle=$(awk -v a="$idle0" -v b="$idle1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz/(t1-t0)*100}')
  local others rqwait
  others=$(awk -v i="$idle" -v v="$cpu" -v s="$scpu" -v c="$(nproc)" 'BEGIN{o=c*100-i-v-s; printf "%.0f", o<0?0:o}')
  # Run-queue wait of voxgate's threads: ms waiting for a CPU per second, and per time slice.
  rqwait=$(awk -v a="$rq0" -v b="$rq1" -v x="$ts0" -v y="$ts1" -v t0="$t0" -v t1="$t1" \
    'BEGIN{n=y-x; printf "%.0f ms/s (%.3f ms per slice)", (b-a)/1e6/(t1-t0), (n>0 ? (b-a)/1e6/n : 0)}')
  local ok failed; read -r ok failed <<< "$(python3 "$here/parse.py" stat "$d/stat.csv" 'SuccessfulCall(C)' 'FailedCall(C)')"
  local total=$((ok + failed))
  local ravg rp99 rslow rn; read -r ravg rp99 rslow rn <<< "$(python3 "$here/parse.py" rtt "$d/*_rtt.csv")"
  local digits="n/a (events off)"
  if [ "$EVENTS" = 1 ]; then
    local right dig; read -r right dig <<< "$(python3 "$here/parse.py" digits "$d/events.jsonl")"
    digits="$right/$total"
  fi
  local sent recv lost p50 p99 p999 over30
  read -r sent recv lost p50 p99 p999 over30 <<< "$(python3 "$here/parse.py" rtpstats "$d/window.log")"
  local loss; loss=$(awk -v l="$lost" -v r="$recv" 'BEGIN{ if (l+r>0) printf "%.3f%%", l/(l+r)*100; else print "-"}')
  local holds=yes
  awk -v f="$failed" -v t="$total" 'BEGIN{exit !(t==0 || f/t > 0.01)}' && holds=no
  [ "$EVENTS" = 1 ] && awk -v r="${right:-0}" -v t="$total" 'BEGIN{exit !(t==0 || r/t < 0.99)}' && holds=no
  awk -v s="${rslow:-0}" 'BEGIN{exit !(s > 5)}' && holds=no
  rows+=("| $n | $cpu | $percall | $rss | $ravg / $rp99 | $failed/$total | $digits | $loss | $p50 / $p99 | $holds |")
  awk -v p="$p99" 'BEGIN{exit !(p ~ />/ || p+0 >= 30)}' && notes+=("$n: WARNING send-interval p99 ${p99} ms: voxgate's packets leave late (see run-queue wait)")
  notes+=("$n: sipp CPU ${scpu}%, other processes ${others}%, idle ${idle}% (of $(nproc)00); voxgate run-queue wait $rqwait; calls in window min/max $cmin/$cmax; RTP window sent=$sent received=$recv lost=$lost send p99.9=${p999}ms intervals>=30ms=$over30; INVITE->200 >=200ms: ${rslow}% of $rn")
  printf '%s\n%s\n' "$header" "${rows[-1]}" >&2
}

run_setup() { # RATE
  local r=$1 d="$out/setup-$1" m=$(( $1 * SETUP_SECS ))
  mkdir -p "$d"
  EVENTS=0 start_voxgate "$d" || return 1
  echo "== call set-up: $r calls/s for ${SETUP_SECS}s ($m calls)" >&2
  local v0 t0; v0=$(ticks "$vpid"); t0=$(now)
  (cd "$d" && exec sipp 127.0.0.1:$SIP_PORT -sf "$here/setup.xml" -s bench -i 127.0.0.1 \
      -p $SIPP_PORT -mp $SIPP_MEDIA -cp $SIPP_CTRL -l $((r * 5)) -r "$r" -rp 1000 -m "$m" \
      -timeout "$((SETUP_SECS + 40))s" -nostdin -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 \
      -trace_err -error_file errors.log > sipp.out 2>&1) &
  local spid=$!
  pids+=("$spid")
  wait_pid "$spid" $((SETUP_SECS + 50))
  local v1 t1; v1=$(ticks "$vpid"); t1=$(now)
  stop_voxgate
  local ok failed; read -r ok failed <<< "$(python3 "$here/parse.py" stat "$d/stat.csv" 'SuccessfulCall(C)' 'FailedCall(C)')"
  local ravg rp99 rslow rn; read -r ravg rp99 rslow rn <<< "$(python3 "$here/parse.py" rtt "$d/*_rtt.csv")"
  local wall achieved cpu
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  # Calls are placed over (wall - 1 s call - ~0.1 s); achieved rate over that span.
  achieved=$(awk -v n="$((ok + failed))" -v w="$wall" 'BEGIN{printf "%.0f", n/(w-1.2)}')
  cpu=$(awk -v a="$v0" -v b="$v1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz/(t1-t0)*100}')
  local ok_s=yes
  [ "$failed" != 0 ] && ok_s=no
  [ "$ok" != "$m" ] && ok_s=no
  awk -v a="$achieved" -v r="$r" 'BEGIN{exit !(a < 0.95*r)}' && ok_s=no
  setup_rows+=("| $r | $achieved | $ok/$m | $failed | $ravg / $rp99 | $cpu | $ok_s |")
  printf '%s\n' "${setup_rows[-1]}" >&2
  [ "$ok_s" = yes ]
}

for n in "${levels[@]}"; do run_level "$n"; done
setup_rows=()
for r in $SETUP_RATES; do run_setup "$r" || break; done

{
  echo "voxgate load bench $(date -u "+%Y-%m-%d %H:%M UTC"), $(nproc) cores, $(uname -r); inband_dtmf=$INBAND, events=$EVENTS; window ${WINDOW}s after ${SETTLE}s settle; results in $out"
  echo
  echo "$header"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"
  printf '%s\n' "${rows[@]}"
  echo
  printf -- '- %s\n' "${notes[@]}"
  if [ ${#setup_rows[@]} -gt 0 ]; then
    echo
    echo "Call set-up (INVITE, 200, ACK, 1 s, caller BYE; ${SETUP_SECS}s per rate):"
    echo
    echo "| target calls/s | achieved calls/s | completed | failed | INVITE→200 avg / p99 ms | voxgate CPU % | sustained |"
    echo "|---:|---:|---:|---:|---:|---:|:---:|"
    printf '%s\n' "${setup_rows[@]}"
  fi
} | tee "$out/results.md"
