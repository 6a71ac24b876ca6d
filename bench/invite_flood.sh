#!/usr/bin/env bash
# INVITE flood (issue 16): one source (127.0.0.2) sends RATE new INVITEs per
# second for DURATION seconds, never ACKing, its SDP naming itself; meanwhile sipp
# places CALLS legitimate calls from 127.0.0.1 (caller_bye: answer, 1.5 s,
# BYE). Reports the legitimate calls' success, bytes voxgate sent the
# flooder per byte it received (SIP + RTP), and voxgate's RSS before, at the
# end of the flood and after it settled (Timer H ends the un-ACKed dialogs).
#   RATE=2000 DURATION=20 CALLS=100 bench/invite_flood.sh
# The shipped limits, limits.datagram_rate (2,000/s per source) included;
# EXTRA_CONFIG='limits: { datagram_rate: 0 }' measures the INVITE limits alone.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$(mktemp -d /tmp/vg-flood.XXXX)}
RATE=${RATE:-2000} DURATION=${DURATION:-20} CALLS=${CALLS:-100} SETTLE=${SETTLE:-45}
source "$root/bench/lib.sh"
port=$(python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > "$out/voxgate.yaml" <<YAML
listen: 127.0.0.1:$port
rtp_ports: 16000-19999
flows_dir: $root/flows
prompts_dir: $root/prompts
models_dir: $root/models
state_dir: $out/state
${EXTRA_CONFIG:-}
YAML
VOXGATE_LOG=info "$vox" serve --config "$out/voxgate.yaml" 2> "$out/voxgate.log" &
vg=$!; pids+=("$vg")
for _ in $(seq 100); do grep -q "voxgate ready" "$out/voxgate.log" && break; sleep 0.2; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$vg/status"; }
rss_before=$(rss)
log_before=$(stat -c %s "$out/voxgate.log")
python3 "$root/bench/invite_flood.py" 127.0.0.1 "$port" 127.0.0.2 "$RATE" "$DURATION" 3 > "$out/flood.json" &
flood=$!
sleep 1
# Legitimate calls spread over the flood.
cps=$(python3 -c "print(max(1, round($CALLS / max(1, $DURATION - 2))))")
(cd "$out" && sipp 127.0.0.1:"$port" -sf "$root/tests/sipp/caller_bye.xml" -s demo -i 127.0.0.1 \
   -key rtp_listen 9 -m "$CALLS" -r "$cps" -l 200 -nostdin -timeout 120s -trace_stat -stf stat.csv \
   > sipp.out 2>&1)
ok=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="SuccessfulCall(C)") s=i; next} {v=$s} END{print v+0}' "$out"/stat.csv)
failed=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="FailedCall(C)") s=i; next} {v=$s} END{print v+0}' "$out"/stat.csv)
rss_flood=$(rss)
wait "$flood"
sleep "$SETTLE"
rss_after=$(rss)
log_after=$(stat -c %s "$out/voxgate.log")
echo "rate=$RATE/s duration=${DURATION}s legit_calls=$CALLS ok=$ok failed=$failed success=$(python3 -c "print(round(100*$ok/max(1,$CALLS),1))")%"
echo "flood: $(cat "$out/flood.json")"
echo "rss_kb before=$rss_before end_of_calls=$rss_flood after_${SETTLE}s=$rss_after"
echo "log bytes during the run: $((log_after - log_before)) ($(grep -c "over the limit" "$out/voxgate.log") summary lines)"
