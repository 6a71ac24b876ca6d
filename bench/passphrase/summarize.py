#!/usr/bin/env python3
"""Summarise one or more `voxgate evaluate-passphrases --dump` files (numbers
only: no transcript is ever in them) as the evaluation does, so runs over
parts of the set (e.g. `--sets allison_digits` and the rest, in parallel) can
be judged together, and gates swept without decoding again.

Prints true/false-accept rates per set and condition on the test split at
the configured gate and at the gate fitted on the train split (the most true
accepts with false accepts <= 0.5 % and no non-speech accepted; the middle of
the gates that reach it), per impostor kind, a gate sweep, the no-speech
gate's margins and CPU per check p50/p95.

Usage: summarize.py [--gate 0.5] [--gate-digits 0.4] [--no-speech-gate 0.6] DUMP.tsv...
"""
import argparse
import csv
from collections import defaultdict

FA_TARGET = 0.005


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            for r in csv.DictReader(f, delimiter="\t"):
                r["genuine"] = r["genuine"] == "1"
                r["heard"] = r["heard"] == "1"
                r["words_match"] = r["words_match"] == "1"
                for k in ("confidence", "no_speech", "cpu_ms"):
                    r[k] = float(r[k])
                if not r.get("mode"):
                    # Dumps before the mode column: the set tells, and
                    # non-speech counts against both kinds.
                    r["mode"] = ("digits" if "digits" in r["set"] else
                                 "both" if r["set"] == "nonspeech" else "words")
                rows.append(r)
    return rows


def accepted(r, gate, ns):
    """`gate`: one number, or {"words": g, "digits": g}."""
    if isinstance(gate, dict):
        gate = gate["digits"] if r["mode"] == "digits" else gate["words"]
    return r["heard"] and r["no_speech"] <= ns and r["words_match"] and r["confidence"] >= gate


def tally(rows, gate, ns):
    g = [r for r in rows if r["genuine"]]
    i = [r for r in rows if not r["genuine"]]
    return (sum(accepted(r, gate, ns) for r in g), len(g),
            sum(accepted(r, gate, ns) for r in i), len(i))


def pct(n, d):
    return "-" if d == 0 else f"{100.0 * n / d:.1f} % ({n}/{d})"


def table(title, rows, gate, ns):
    print(f"\n{title}\n")
    print("| set | condition | true accept | false accept |")
    print("|---|---|---|---|")
    by = defaultdict(list)
    for r in rows:
        by[(r["set"], r["condition"])].append(r)
    for (s, c) in sorted(by):
        ta, g, fa, i = tally(by[(s, c)], gate, ns)
        print(f"| {s} | {c} | {pct(ta, g)} | {pct(fa, i)} |")
    for s in sorted({r["set"] for r in rows}):
        ta, g, fa, i = tally([r for r in rows if r["set"] == s], gate, ns)
        print(f"| **{s}** | all | {pct(ta, g)} | {pct(fa, i)} |")
    ta, g, fa, i = tally(rows, gate, ns)
    print(f"| **all** | all | {pct(ta, g)} | {pct(fa, i)} |")


def calibrate(rows, ns):
    ok = []
    for n in range(100):
        gate = n / 100
        ta, g, fa, i = tally(rows, gate, ns)
        nonspeech = any(r["set"] == "nonspeech" and accepted(r, gate, ns) for r in rows)
        if (i == 0 or fa / i <= FA_TARGET) and not nonspeech:
            ok.append((gate, ta))
    if not ok:
        return None
    best = max(n for _, n in ok)
    at = [g for g, n in ok if n == best]
    return round((at[0] + at[-1]) / 2, 2), (at[0], at[-1])


def percentile(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * p))] if v else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gate", type=float, default=0.5, help="word passphrases")
    ap.add_argument("--gate-digits", type=float, default=0.4, help="digit passphrases")
    # serve's default, the short encoder window's (0.5 for --full-window dumps)
    ap.add_argument("--no-speech-gate", type=float, default=0.6)
    ap.add_argument("dumps", nargs="+")
    a = ap.parse_args()
    rows = load(a.dumps)
    ns = a.no_speech_gate
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    print(f"{len(rows)} checks ({len(train)} train, {len(test)} test), no-speech gate {ns}")
    conf = {"words": a.gate, "digits": a.gate_digits}
    table(f"Test split, confidence gates {a.gate} (words), {a.gate_digits} (digits):",
          test, conf, ns)
    fitted = {}
    for mode in ("words", "digits"):
        part = [r for r in train if r["mode"] in (mode, "both")]
        fit = calibrate(part, ns) if part else None
        if fit:
            gate, (lo, hi) = fit
            ta, g, fa, i = tally(part, gate, ns)
            print(f"\n{mode}: gate fitted on train {gate:.2f} (range {lo:.2f}-{hi:.2f}; train "
                  f"{pct(ta, g)} true, {pct(fa, i)} false accept)")
            fitted[mode] = gate
        else:
            print(f"\n{mode}: no gate meets the limits on the train split.")
    if len(fitted) == 2:
        table(f"Test split, gates {fitted['words']:.2f} (words), {fitted['digits']:.2f} (digits), "
              "fitted on train:", test, fitted, ns)
    print("\n| impostor kind (all splits) | false accept as configured |")
    print("|---|---|")
    kinds = defaultdict(list)
    for r in rows:
        if not r["genuine"]:
            kinds[(r["set"], r["kind"])].append(r)
    for k in sorted(kinds):
        _, _, fa, i = tally(kinds[k], conf, ns)
        print(f"| {k[0]} {k[1]} | {pct(fa, i)} |")
    f = lambda t: f"{100 * t[0] / max(t[1], 1):.1f} / {100 * t[2] / max(t[3], 1):.2f} %"
    for mode in ("words", "digits"):
        print(f"\n| {mode}: gate | train true / false accept | test true / false accept |")
        print("|---|---|---|")
        tr = [r for r in train if r["mode"] in (mode, "both")]
        te = [r for r in test if r["mode"] in (mode, "both")]
        for n in range(0, 20):
            gate = n / 20
            print(f"| {gate:.2f} | {f(tally(tr, gate, ns))} | {f(tally(te, gate, ns))} |")
    right = [r["no_speech"] for r in rows if r["genuine"] and r["heard"] and r["words_match"]]
    noise = [r["no_speech"] for r in rows if r["set"] == "nonspeech" and r["heard"]]
    ns_total = sum(r["set"] == "nonspeech" for r in rows)
    print(f"\nNo-speech probability: genuine heard right (n={len(right)}) p50 "
          f"{percentile(right, 0.5):.2f}, p95 {percentile(right, 0.95):.2f}, max "
          f"{max(right, default=0):.2f}; non-speech reaching the decoder {len(noise)} of "
          f"{ns_total}: min {min(noise, default=float('nan')):.2f}")
    words_nonspeech = sum(r["set"] == "nonspeech" and r["words_match"] for r in rows)
    print(f"non-speech whose words matched (before any gate): {words_nonspeech}")
    lost = sum(1 for r in rows if r["genuine"] and r["heard"] and r["words_match"]
               and r["no_speech"] > ns)
    print(f"genuine with the right words dropped by the no-speech gate: {lost}")
    exact = [r for r in rows if r["genuine"] and r["words_match"]]
    confs = sorted(r["confidence"] for r in exact)
    if confs:
        print(f"confidence of exact genuine transcripts: min {confs[0]:.2f}, p5 "
              f"{percentile(confs, 0.05):.2f}, p50 {percentile(confs, 0.5):.2f}; below 0.5: "
              f"{sum(c < 0.5 for c in confs)} of {len(confs)}")
    fa_confs = sorted((r["confidence"] for r in rows if not r["genuine"] and r["words_match"]),
                      reverse=True)
    print(f"impostors heard as the enrolled phrase: {len(fa_confs)}; their confidences: "
          + ", ".join(f"{c:.2f}" for c in fa_confs[:12]))
    cpu = [r["cpu_ms"] for r in rows]
    print(f"CPU per check: p50 {percentile(cpu, 0.5):.0f} ms, p95 {percentile(cpu, 0.95):.0f} ms")
    confirmation(rows, conf, ns)


def confirmation(rows, conf, ns):
    """The word checks tiny.en accepts, confirmed by Whisper base (dumps of
    `evaluate-passphrases --confirm`): with the phrase as base's hint and
    without, true/false accept per set and split."""
    words = [r for r in rows if r["mode"] == "words" and r["set"] != "nonspeech"]
    if not any(r.get("confirm_hint_match") for r in words):
        return
    def ok(r, how):
        if not accepted(r, conf, ns):
            return False
        return how is None or r.get(f"confirm_{how}_match") == "1"
    hows = [("tiny.en alone", None), ("+ base, phrase as hint", "hint"), ("+ base, no hint", "plain")]
    print("\nWord passphrases confirmed by whisper base, true / false accept:\n")
    print("| split | set | " + " | ".join(h for h, _ in hows) + " |")
    print("|---|---|" + "---|" * len(hows))
    for split in ("train", "test"):
        part = [r for r in words if r["split"] == split]
        for s in sorted({r["set"] for r in part}) + ["all"]:
            sel = [r for r in part if s == "all" or r["set"] == s]
            cells = []
            for _, how in hows:
                g = [r for r in sel if r["genuine"]]
                i = [r for r in sel if not r["genuine"]]
                cells.append(f"{pct(sum(ok(r, how) for r in g), len(g))} / "
                             f"{pct(sum(ok(r, how) for r in i), len(i))}")
            print(f"| {split} | {s} | " + " | ".join(cells) + " |")
    for how in ("hint", "plain"):
        alone = [float(r[f"confirm_{how}_cpu_ms"]) for r in words if r.get(f"confirm_{how}_cpu_ms")]
        print(f"CPU of the confirmation ({how}): ran on {len(alone)} of {len(words)} word checks, "
              f"p50 {percentile(alone, 0.5):.0f} ms, p95 {percentile(alone, 0.95):.0f} ms")


if __name__ == "__main__":
    main()
