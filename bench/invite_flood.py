#!/usr/bin/env python3
"""INVITE flood for bench/invite_flood.sh: from one source address, send new
INVITEs (never ACKed) at RATE per second for SECONDS, their SDP naming our
own RTP port, and count every byte that comes back (SIP to the INVITE's
source, RTP to the SDP address) until QUIET seconds pass without any.
Prints one JSON object: bytes in/out, responses by status."""
import json, socket, sys, time, threading, collections

target_ip, target_port, src_ip, rate, seconds, quiet = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sip.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sip.bind((src_ip, 0))
rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
rtp.bind((src_ip, 0))
lport, rport = sip.getsockname()[1], rtp.getsockname()[1]
stats = collections.Counter()
last_rx = [time.time()]

def invite(n):
    sdp = (f"v=0\r\no=f 1 1 IN IP4 {src_ip}\r\ns=-\r\nc=IN IP4 {src_ip}\r\nt=0 0\r\n"
           f"m=audio {rport} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    return (f"INVITE sip:demo@{target_ip}:{target_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {src_ip}:{lport};branch=z9hG4bKflood{n}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:flood@{src_ip}>;tag={n}\r\nTo: <sip:demo@{target_ip}>\r\n"
            f"Call-ID: flood-{n}@{src_ip}\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@{src_ip}:{lport}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()

def rx(sock, kind):
    sock.settimeout(0.2)
    while not done.is_set():
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            continue
        last_rx[0] = time.time()
        stats[kind + "_bytes"] += len(data)
        if kind == "sip":
            stats["status_" + data[8:11].decode(errors="replace")] += 1

done = threading.Event()
threads = [threading.Thread(target=rx, args=(s, k), daemon=True) for s, k in ((sip, "sip"), (rtp, "rtp"))]
for t in threads: t.start()
start = time.time(); n = 0
while time.time() - start < seconds:
    due = int((time.time() - start) * rate)
    while n < due:
        msg = invite(n)
        try:
            sip.sendto(msg, (target_ip, target_port))
            stats["out_bytes"] += len(msg); stats["invites"] += 1
        except OSError:
            stats["send_errors"] += 1
        n += 1
    time.sleep(0.002)
while time.time() - last_rx[0] < quiet:
    time.sleep(0.2)
done.set()
for t in threads: t.join()
inb = stats["sip_bytes"] + stats["rtp_bytes"]
stats["amplification"] = round(inb / stats["out_bytes"], 3) if stats["out_bytes"] else 0
print(json.dumps(dict(stats), sort_keys=True))
