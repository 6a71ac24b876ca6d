#!/usr/bin/env python3
"""Helpers for bench/run.sh: parse sipp and voxgate output into table cells."""
import csv, glob, json, math, re, sys


def sipp_stat(path, *names):
    """Last row of a sipp -trace_stat CSV: the named columns (cumulative)."""
    rows = list(csv.reader(open(path), delimiter=";"))
    head, last = rows[0], rows[-1]
    return [last[head.index(n)] if n in head else "0" for n in names]


def rtt(pattern):
    """avg and p99 (ms) of INVITE->200 from sipp -trace_rtt files; share >= 200 ms."""
    vals = []
    for f in glob.glob(pattern):
        for line in open(f):
            parts = line.strip().split(";")
            if len(parts) >= 2:
                try:
                    vals.append(float(parts[1]))
                except ValueError:
                    pass
    if not vals:
        return "- - - 0"
    vals.sort()
    p99 = vals[max(0, math.ceil(0.99 * len(vals)) - 1)]
    slow = sum(1 for v in vals if v >= 200) / len(vals) * 100
    return f"{sum(vals) / len(vals):.1f} {p99:.1f} {slow:.2f} {len(vals)}"


def digits(path, want="123456"):
    """Calls whose digit string was exactly `want`, and all digit events."""
    right = total = 0
    for line in open(path):
        try:
            ev = json.loads(line)["event"]
        except (ValueError, KeyError):
            continue
        if ev.get("event") == "digits":
            total += 1
            right += ev.get("digits") == want
    return f"{right} {total}"


def lookups(path):
    """`lookup` events (voxgate --events): count, found / not_found / error, and
    micros p50 / p99 / p99.9 / max / mean (nearest rank) of the lookups made
    (a withheld or non-numeric caller ID makes no query: directory "")."""
    vals, outcomes = [], {"found": 0, "not_found": 0, "error": 0}
    for line in open(path):
        try:
            ev = json.loads(line)["event"]
        except (ValueError, KeyError):
            continue
        if ev.get("event") != "lookup" or not ev.get("directory"):
            continue
        outcomes[ev.get("outcome")] = outcomes.get(ev.get("outcome"), 0) + 1
        vals.append(int(ev.get("micros", 0)))
    if not vals:
        return "0 0 0 0 - - - - -"
    vals.sort()
    pct = lambda q: vals[max(0, math.ceil(q * len(vals)) - 1)]
    return (f"{len(vals)} {outcomes['found']} {outcomes['not_found']} {outcomes['error']} "
            f"{pct(0.5)} {pct(0.99)} {pct(0.999)} {vals[-1]} {sum(vals) / len(vals):.0f}")


def rtpstats(log):
    """Fields of the last `rtp stats since last report` line of the voxgate log."""
    line = ""
    for l in open(log, errors="replace"):
        if "rtp stats since last report" in l:
            line = l
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    return " ".join(f.get(k, "-") for k in ("sent", "received", "lost", "send_interval_p50_ms", "p99_ms", "p999_ms", "over_30ms"))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "stat":
        print(" ".join(sipp_stat(args[0], *args[1:])))
    elif cmd == "rtt":
        print(rtt(args[0]))
    elif cmd == "digits":
        print(digits(args[0]))
    elif cmd == "lookups":
        print(lookups(args[0]))
    elif cmd == "rtpstats":
        print(rtpstats(args[0]))
