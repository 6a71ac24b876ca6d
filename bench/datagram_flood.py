#!/usr/bin/env python3
"""Random-datagram flood for bench/datagram_flood.sh: from SRC, send RATE
datagrams per second for SECONDS to HOST:PORT — a mix of random bytes, SIP
start lines with garbage headers, and requests missing mandatory headers —
and print one JSON object: packets and bytes sent, send errors, and how many
of each kind (a kind's share of the log lines is what the bench reports)."""
import json, os, random, socket, sys, time

host, port, src, rate, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
rng = random.Random(16)

def garbage():
    return os.urandom(rng.randint(1, 1400))

def bad_headers(n):
    lines = "".join(f"X-{rng.randint(0, 9999)}:{os.urandom(8).hex()}\r\n\t folded\r\n" for _ in range(rng.randint(1, 30)))
    return (f"OPTIONS sip:x@{host} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:9;branch=z9hG4bKdg{n}\r\n{lines}\r\n").encode()

def missing_call_id(n):
    return (f"INVITE sip:bench@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:9;branch=z9hG4bKmc{n}\r\n"
            f"From: <sip:a@{src}>;tag={n}\r\nTo: <sip:bench@{host}>\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()

# A pool built up front: the sender's own cost stays small and steady.
pool = []
for n in range(4096):
    r = rng.random()
    pool.append(("garbage", garbage()) if r < 0.5 else ("bad_headers", bad_headers(n)) if r < 0.8 else ("missing_call_id", missing_call_id(n)))

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
s.bind((src, 0))
stats = {"packets": 0, "bytes": 0, "send_errors": 0, "garbage": 0, "bad_headers": 0, "missing_call_id": 0}
start = time.time(); n = 0
while (now := time.time()) - start < seconds:
    due = int((now - start) * rate)
    while n < due:
        kind, data = pool[n % len(pool)]
        try:
            s.sendto(data, (host, port))
            stats["packets"] += 1; stats["bytes"] += len(data); stats[kind] += 1
        except OSError:
            stats["send_errors"] += 1
        n += 1
    time.sleep(0.001)
stats["seconds"] = round(time.time() - start, 2)
print(json.dumps(stats))
