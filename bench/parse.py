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
    """Calls whose digit string was exactly `want`, and all digit events. A
    secret entry (verify_code: the event has no `digits`) counts as right when
    it has as many digits as `want` — what was keyed cannot be checked."""
    right = total = 0
    for line in open(path):
        try:
            ev = json.loads(line)["event"]
        except (ValueError, KeyError):
            continue
        if ev.get("event") == "digits":
            total += 1
            if "digits" in ev:
                right += ev["digits"] == want
            else:
                right += ev.get("count") == len(want)
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


LOGLINE = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z .*?call\{id=([^}]*)\}: voxgate::app: (\{.*\}) event="(\w+)"$')


def codes(events, log):
    """One-time codes under load (bench/codes.sh), as markdown lines. From
    voxgate's log (text format: a microsecond UTC time, the call id and each
    event's JSON): sends and verifications per second over run.sh's steady
    window (between the first two `rtp stats since last report` lines, i.e. its
    two SIGUSR1s); the send latency (`step_entered` of the send_code step to
    its `code_sent`: the store's send transaction, the HTTP POST to the
    gateway, the delivery recorded) and the verification latency (the
    verify_code step's `digits` event, emitted when the sixth digit has been
    collected, to its `auth_*` event: the store's check and the attempt
    written) of every call; totals cross-checked with the events file."""
    from datetime import datetime
    ts = lambda t: datetime.fromisoformat(t).timestamp()
    marks, per_call, names_all = [], {}, {}
    sends, verifs = [], []  # (time, latency ms) per call
    for line in open(log, errors="replace"):
        if "rtp stats since last report" in line:
            marks.append(ts(line[:26]))
            continue
        m = LOGLINE.match(line.rstrip("\n"))
        if not m:
            continue
        t, call, name = ts(m.group(1)), m.group(2), m.group(4)
        names_all[name] = names_all.get(name, 0) + 1
        c = per_call.setdefault(call, {})
        if name == "step_entered" and '"kind":"send_code"' in m.group(3):
            c["send0"] = t
        elif name.startswith("code_") and "send0" in c:
            sends.append((t, (t - c.pop("send0")) * 1e3, name))
        elif name == "digits" and '"step":"code"' in m.group(3):
            c["dig"] = t
        elif name.startswith("auth_") and "dig" in c:
            verifs.append((t, (t - c.pop("dig")) * 1e3, name))
    ev_names = {}
    for line in open(events):
        try:
            n = json.loads(line)["event"]["event"]
        except (ValueError, KeyError):
            continue
        ev_names[n] = ev_names.get(n, 0) + 1
    out = []
    if len(marks) < 2:
        return "no steady window marks (rtp stats) in the log"
    w0, w1 = marks[0], marks[1]
    span = w1 - w0

    def pcts(xs):
        xs = sorted(xs)
        if not xs:
            return "- | - | - | - | -"
        p = lambda q: xs[max(0, math.ceil(q * len(xs)) - 1)]
        return f"{p(0.5):.2f} | {p(0.99):.2f} | {p(0.999):.2f} | {xs[-1]:.2f} | {sum(xs) / len(xs):.2f}"

    def outcomes(rows):
        d = {}
        for r in rows:
            d[r[2]] = d.get(r[2], 0) + 1
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"

    ws = [r for r in sends if w0 <= r[0] < w1]
    wv = [r for r in verifs if w0 <= r[0] < w1]
    out.append(f"Steady window: {span:.1f} s (run.sh's two SIGUSR1s).")
    out.append("")
    out.append("| what | in the window | per second | outcomes (window) | latency p50 ms | p99 | p99.9 | max | mean (window) | all calls of the run | latency p50 ms | p99 | p99.9 | max | mean (all) |")
    out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out.append(f"| codes sent (send_code → code_*) | {len(ws)} | {len(ws) / span:.1f} | {outcomes(ws)} | {pcts([r[1] for r in ws])} | {len(sends)} | {pcts([r[1] for r in sends])} |")
    out.append(f"| codes verified (digits → auth_*) | {len(wv)} | {len(wv) / span:.1f} | {outcomes(wv)} | {pcts([r[1] for r in wv])} | {len(verifs)} | {pcts([r[1] for r in verifs])} |")
    out.append("")
    keys = sorted(k for k in set(ev_names) | set(names_all) if k.startswith(("code_", "auth_")) or k in ("digits", "lookup", "flow_started"))
    out.append("Event totals, whole run (events file / log): " + ", ".join(f"{k} {ev_names.get(k, 0)}/{names_all.get(k, 0)}" for k in keys))
    return "\n".join(out)


def dbrows(path):
    """Row counts of every table of a SQLite file (read-only)."""
    import sqlite3
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    names = [r[0] for r in c.execute("select name from sqlite_master where type='table' order by name")]
    count = lambda n: c.execute('select count(*) from "%s"' % n).fetchone()[0]
    line = ", ".join(f"{n} {count(n)}" for n in names)
    try:  # bytes on disk per table, its indexes included (SQLite's dbstat, if built in)
        owner = dict(c.execute("select name, tbl_name from sqlite_master where type in ('table', 'index')"))
        size = {}
        for name, b in c.execute("select name, sum(pgsize) from dbstat group by name"):
            t = owner.get(name, name)
            size[t] = size.get(t, 0) + b
        line += "; KiB with indexes: " + ", ".join(f"{t} {b // 1024}" for t, b in sorted(size.items(), key=lambda x: -x[1]))
    except sqlite3.Error:
        pass
    return line


def rtpstats(log):
    """Fields of the last `rtp stats since last report` line of the voxgate log."""
    line = ""
    for l in open(log, errors="replace"):
        if "rtp stats since last report" in l:
            line = l
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    return " ".join(f.get(k, "-") for k in ("sent", "received", "lost", "send_interval_p50_ms", "p99_ms", "p999_ms", "over_30ms"))


def relaystats(log):
    """Fields of the last `relay stats since last report` line of the voxgate log."""
    line = ""
    for l in open(log, errors="replace"):
        if "relay stats since last report" in l:
            line = l
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    return " ".join(f.get(k, "-") for k in ("frames", "dropped", "wait_p50_ms", "wait_p99_ms", "caller_send_p50_ms", "caller_send_p99_ms", "agent_send_p50_ms", "agent_send_p99_ms"))


def _histogram(path, name):
    """Cumulative buckets {le: count} of a histogram in a Prometheus text file."""
    out = {}
    for line in open(path):
        m = re.match(r'%s_bucket\{le="([^"]+)"\} (\S+)' % re.escape(name), line)
        if m:
            out[float(m.group(1))] = float(m.group(2))
    return out


def _ticks(path, prefix):
    return sum(int(n) for comm, n in (l.split() for l in open(path) if l.strip()) if comm.startswith(prefix))


def passload(d, callers, hz):
    """The passphrase side of bench/passphrase_load.sh: checks in the window
    (decoder latency from /metrics, decoder CPU per check), and the verdicts
    of every passphrase call of the run (events)."""
    name = "voxgate_recognition_seconds"
    a, b = _histogram(d + "/metrics.start", name), _histogram(d + "/metrics.end", name)
    les = sorted(b)
    delta = [b[le] - a.get(le, 0) for le in les]
    n = delta[-1] if delta else 0

    def q(p):
        for le, c in zip(les, delta):
            if c >= p * n:
                return "> 5000" if math.isinf(le) else "%d" % (le * 1000)
        return "-"

    # Decoding runs on CTranslate2's replica threads (the voxgate-asr
    # threads only hand them work and wait).
    cpu = (_ticks(d + "/threads.end", "ct2-worker") - _ticks(d + "/threads.start", "ct2-worker")) / float(hz)
    verdicts = {}
    for line in open(d + "/events.jsonl"):
        try:
            ev = json.loads(line)["event"]
        except (ValueError, KeyError):
            continue
        if ev.get("event") in ("auth_passed", "auth_failed") and ev.get("step") == "passphrase":
            key = ev["event"] + ("/" + ev["reason"] if ev.get("reason") else "")
            verdicts[key] = verdicts.get(key, 0) + 1
    ok, failed = sipp_stat(d + "/pass_stat.csv", "SuccessfulCall(C)", "FailedCall(C)")
    per = "%.0f" % (cpu / n * 1000) if n else "-"
    lines = [
        "",
        "Passphrase callers (%s at a time): %s calls completed, %s failed (sipp); verdicts over the run: %s"
        % (callers, ok, failed, ", ".join("%s %d" % kv for kv in sorted(verdicts.items())) or "none"),
        "",
        "| checks in the window | decoder latency p50 / p95 / p99 ms (queued → answer, bucket bounds) | decoding CPU s (CTranslate2 threads) | CPU per check ms |",
        "|---:|---:|---:|---:|",
        "| %d | %s / %s / %s | %.1f | %s |" % (n, q(0.5), q(0.95), q(0.99), cpu, per),
    ]
    return "\n".join(lines)


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
    elif cmd == "codes":
        print(codes(args[0], args[1]))
    elif cmd == "dbrows":
        print(dbrows(args[0]))
    elif cmd == "rtpstats":
        print(rtpstats(args[0]))
    elif cmd == "relaystats":
        print(relaystats(args[0]))
    elif cmd == "passload":
        print(passload(args[0], args[1], args[2]))
