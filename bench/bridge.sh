#!/usr/bin/env bash
# Bridged-transfer bench (issue 17): bench/run.sh's load, every call bridged
# by voxgate to a sipp agent (bench/bridge_agent.xml: PCMA, speech all call
# long, BYE after 18 s), so each call is two RTP legs with transcoding and the
# relay between them. The caller side is bench/load.xml (PCMU speech, six
# RFC 4733 digits relayed to the agent). After run.sh's table, the relay's own
# figures: latency added (queue wait) and each side's send interval.
#
#   bench/bridge.sh [LEVELS...]      default: 250 500 concurrent bridged calls
#
# Environment as bench/run.sh (WINDOW, SETTLE, SKIP_BUILD, OUT…). Loopback only.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
levels=("$@")
[ ${#levels[@]} -eq 0 ] && levels=(250 500)
AGENT_PORT=15080 AGENT_MEDIA=18000
out=${OUT:-$here/out/bridge-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out/agent"
# The agent's speech: the caller's, in A-law.
[ -s "$here/audio/caller.ulaw" ] || { echo "run bench/run.sh once first (it makes bench/audio/caller.ulaw)" >&2; exit 1; }
sox -t raw -r 8000 -c 1 -e u-law "$here/audio/caller.ulaw" -t raw -r 8000 -c 1 -e a-law "$out/agent/agent.alaw"
(cd "$out/agent" && exec sipp -sf "$here/bridge_agent.xml" -i 127.0.0.1 -p $AGENT_PORT \
    -mp $AGENT_MEDIA -cp 15889 -nostdin -timeout 900s -trace_err -error_file errors.log > sipp.out 2>&1) &
agent=$!
trap 'kill -TERM $agent 2>/dev/null' EXIT
sleep 1
EXTRA_CONFIG="transfer: { groups: { agents: { targets: [\"sip:agent@127.0.0.1:$AGENT_PORT\"] } } }" \
  FLOW=bench_bridge OUT="$out" SETUP_RATES="" "$here/run.sh" "${levels[@]}"
# The relay's own figures over each level's window (voxgate logs them at
# each SIGUSR1): the latency it adds (how long a frame waits between one
# leg's playout and the other leg's next send; 0.5 ms buckets) and the send
# interval of each side's legs (0.1 ms buckets).
{
  echo
  echo "Relay, over the same windows (media::bridge::RELAY):"
  echo
  echo "| bridged calls | frames relayed | dropped | relay latency added p50 / p99 ms | caller legs send interval p50 / p99 ms | agent legs send interval p50 / p99 ms |"
  echo "|---:|---:|---:|---:|---:|---:|"
  for n in "${levels[@]}"; do
    [ -s "$out/level-$n/window.log" ] || continue
    read -r fr dr w50 w99 c50 c99 a50 a99 <<< "$(python3 "$here/parse.py" relaystats "$out/level-$n/window.log")"
    echo "| $n | $fr | $dr | $w50 / $w99 | $c50 / $c99 | $a50 / $a99 |"
  done
} | tee -a "$out/results.md"
