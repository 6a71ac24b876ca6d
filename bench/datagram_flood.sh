#!/usr/bin/env bash
# Random-datagram flood (issue 16): one source (127.0.0.2) sends RATE
# datagrams per second for DURATION seconds at voxgate's SIP port — random
# bytes, requests with piles of garbage folded headers, requests missing
# Call-ID — while sipp places CALLS legitimate calls from 127.0.0.1 that key
# "123456" by RFC 4733 (bench/load.xml on bench/flows/bench.yaml). Reports:
# legitimate calls and their digits, the kernel's UDP receive-buffer drops
# during the run (/proc/net/snmp RcvbufErrors, machine-wide), voxgate's CPU
# (user + system, % of one core) over the flood, its RSS, and log bytes per
# malformed datagram.
#   RATE=20000 DURATION=20 CALLS=40 bench/datagram_flood.sh
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
here="$root/bench"
out=${OUT:-$(mktemp -d /tmp/vg-dgflood.XXXX)}
RATE=${RATE:-20000} DURATION=${DURATION:-20} CALLS=${CALLS:-40}
source "$root/bench/lib.sh"
port=$(python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > "$out/voxgate.yaml" <<YAML
listen: 127.0.0.1:$port
rtp_ports: 16000-19999
flows_dir: $here/flows
prompts_dir: $root/prompts
models_dir: $root/models
state_dir: $out/state
route_by_flow_name: true
log_format: text
${EXTRA_CONFIG:-}
YAML
audio="$here/audio/caller.ulaw"
[ -s "$audio" ] || { echo "missing $audio: run bench/run.sh once (it makes the caller audio)" >&2; exit 1; }
cp "$audio" "$out/caller.ulaw"
VOXGATE_LOG=info "$vox" serve --config "$out/voxgate.yaml" --events "$out/events.jsonl" 2> "$out/voxgate.log" &
vg=$!; pids+=("$vg")
for _ in $(seq 100); do grep -q "voxgate ready" "$out/voxgate.log" && break; sleep 0.2; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$vg/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$vg/stat"; }
rcvbuf_errors() { awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp; }
rss_before=$(rss)
log_before=$(stat -c %s "$out/voxgate.log")
drops_before=$(rcvbuf_errors)
ticks_before=$(cpu_ticks); t0=$(date +%s.%N)
python3 "$here/datagram_flood.py" 127.0.0.1 "$port" 127.0.0.2 "$RATE" "$DURATION" > "$out/flood.json" &
flood=$!
sleep 1
# Legitimate calls spread over the flood (each lasts ~19 s).
cps=$(python3 -c "print(max(1, round($CALLS / max(1, $DURATION - 2))))")
(cd "$out" && sipp 127.0.0.1:"$port" -sf "$here/load.xml" -s bench -i 127.0.0.1 \
   -m "$CALLS" -r "$cps" -l 500 -nostdin -timeout 120s -trace_stat -stf stat.csv > sipp.out 2>&1) &
calls=$!
wait "$flood"
ticks_after=$(cpu_ticks); t1=$(date +%s.%N)
drops_after=$(rcvbuf_errors)
rss_flood=$(rss)
wait "$calls"
log_after=$(stat -c %s "$out/voxgate.log")
hz=$(getconf CLK_TCK)
ok=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="SuccessfulCall(C)") s=i; next} {v=$s} END{print v+0}' "$out"/stat.csv)
failed=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="FailedCall(C)") s=i; next} {v=$s} END{print v+0}' "$out"/stat.csv)
read -r right total <<< "$(python3 "$here/parse.py" digits "$out/events.jsonl")"
sent=$(python3 -c "import json;print(json.load(open('$out/flood.json'))['packets'])")
echo "datagram flood: rate=$RATE/s duration=${DURATION}s $(cat "$out/flood.json")"
echo "legitimate calls: $ok/$CALLS ok, $failed failed; digits right $right/$total"
echo "kernel UDP receive-buffer drops during the flood: $((drops_after - drops_before)) of $sent datagrams"
python3 -c "print('voxgate CPU during the flood: %.1f %% of one core' % (100 * ($ticks_after - $ticks_before) / $hz / ($t1 - $t0)))"
echo "rss_kb before=$rss_before end_of_flood=$rss_flood"
warn_bytes=$(tail -c +$((log_before + 1)) "$out/voxgate.log" | grep -E " (WARN|ERROR) " | wc -c)
python3 -c "print('log: %d bytes in all (the legitimate calls\' info lines included); warnings %d bytes = %.4f bytes per datagram' % ($log_after - $log_before, $warn_bytes, $warn_bytes / max(1, $sent)))"
echo "results in $out"
