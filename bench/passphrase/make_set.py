#!/usr/bin/env python3
"""Build the passphrase evaluation set: WAVs plus a manifest of what each
recording is checked against and what the answer must be.

Sets (each at telephone quality: 8 kHz, band-passed 300-3400 Hz; voxgate
recognize then does the G.711 round trip itself, as on a call):
  allison_digits  real human speech: Allison Smith's recorded digits from
                  Debian's asterisk-core-sounds-en-wav, spliced into digit
                  passphrases with natural pauses (120-450 ms)
  espeak_words    word passphrases said by several espeak-ng voices
  piper_words     word passphrases said by the piper voice of the prompts
                  (scripts/make-prompts installs it into .deps/venv)
  allison_numbers the same voice saying the digit passphrases as numbers
                  ("nineteen eighty six", "oh three seventy five")
  allison_words   the same real voice saying word passphrases: her recorded
                  words (the phonetic alphabet, days, months, a few more)
                  joined with natural pauses; the similar-sounding impostor
                  is a word she also recorded (tuesday / thursday, hotel /
                  hello, million / billion, second / seconds)
  nonspeech       silence, noise and hum checked against every kind of phrase,
                  and tonal sounds that pass the endpointer (tones, fax, music)
Conditions: clean, noise (pink noise at ~15 dB SNR), hum (50 Hz + harmonics).
Impostors for every genuine phrase: one digit/word changed, two swapped, one
dropped, a similar-sounding word, another account's phrase; for the real-voice
digits also one digit inserted (a zero after a tens digit where it can be).

The manifest's last column splits the set by enrolled phrase into `train`
(the confidence gate is fitted on it) and `test` (the rates reported).

The choices (phrases, impostors, pauses, conditions) are seeded; sox's dither
and noise are not, so two builds differ in their samples and the rates by a
check or two. Usage: make_set.py OUTDIR
"""
import os
import random
import subprocess
import sys

# Debian's package installs Allison's voice under en_US_f_Allison; the `en`
# link to it is made by asterisk's own packages, which need not be here.
SOUNDS = next((d for d in ("/usr/share/asterisk/sounds/en/digits",
                           "/usr/share/asterisk/sounds/en_US_f_Allison/digits")
               if os.path.isdir(d)), "/usr/share/asterisk/sounds/en/digits")
VOICE = os.path.dirname(SOUNDS)
WORD_PHRASES = [
    "purple elephant dance", "white horse", "silver river morning",
    "green apple tree", "blue ocean wave", "quiet mountain lake",
    "orange tiger stripe", "golden summer field", "happy yellow bird",
    "frozen winter garden", "red fox running", "gentle autumn rain",
]
# A word that sounds like one of the phrase's words, for near misses.
SIMILAR = {
    "purple": "people", "elephant": "element", "dance": "dense", "white": "wide",
    "horse": "house", "silver": "sliver", "river": "liver", "morning": "mourning",
    "green": "gray", "apple": "able", "tree": "three", "blue": "glue",
    "ocean": "motion", "wave": "way", "quiet": "quite", "mountain": "fountain",
    "lake": "late", "orange": "arrange", "tiger": "tiller", "stripe": "strike",
    "golden": "olden", "summer": "simmer", "field": "feel", "happy": "hoppy",
    "yellow": "mellow", "bird": "board", "frozen": "chosen", "winter": "winner",
    "garden": "pardon", "red": "bed", "fox": "box", "running": "cunning",
    "gentle": "dental", "autumn": "bottom", "rain": "train",
}
# Allison's recordings of single words (checked with `voxgate recognize`:
# each is heard as its word), by the word.
ALLISON_WORDS = {
    **{d: f"digits/day-{n}" for n, d in enumerate(
        "sunday monday tuesday wednesday thursday friday saturday".split())},
    **{m: f"digits/mon-{n}" for n, m in enumerate(
        ("january february march april may june july august september october "
         "november december").split())},
    **{w: f"phonetic/{w[0]}_p" for w in (
        "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
        "oscar papa quebec romeo sierra tango uniform victor whiskey yankee zulu").split()},
    "hello": "hello", "second": "second", "seconds": "seconds", "million": "digits/million",
    "billion": "digits/billion", "tomorrow": "digits/tomorrow", "location": "location",
    "number": "number", "disabled": "disabled",
}
# Her pairs of words that sound alike, for the similar-sounding impostor.
ALLISON_SIMILAR = {
    "second": "seconds", "seconds": "second", "million": "billion", "billion": "million",
    "sunday": "monday", "monday": "sunday", "tuesday": "thursday", "thursday": "tuesday",
    "june": "july", "july": "june", "alpha": "delta", "delta": "alpha",
    "hotel": "hello", "hello": "hotel",
}
# Three words each, one of them with a similar-sounding partner.
ALLISON_PHRASES = [
    "alpha tango monday", "hotel victor june", "delta oscar friday",
    "yankee million sunday", "echo tuesday seconds", "romeo july location",
    "kilo second sierra", "papa thursday zulu", "india march billion",
    "whiskey hello lima", "golf november monday", "quebec sunday uniform",
    "juliet april delta", "foxtrot june bravo", "charlie seconds number",
    "mike october hotel",
]
ESPEAK_VOICES = ["en-us", "en-gb", "en-us+f3", "en-us+m7", "en-gb-x-rp+f2"]
CONDITIONS = ["clean", "noise", "hum"]
DIGIT_NAMES = "zero one two three four five six seven eight nine".split()


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def telephone(src, dst, condition, rnd):
    """Band-pass to the telephone band at 8 kHz, 0.4 s of line before and
    0.4 s after, and the condition's noise mixed in."""
    tmp = dst + ".tmp.wav"
    sh("sox", src, "-r", "8000", "-c", "1", "-b", "16", tmp, "sinc", "300-3400",
       "pad", "0.4", "0.4", "norm", "-6")
    dur = float(subprocess.run(["soxi", "-D", tmp], check=True, capture_output=True,
                               text=True).stdout)
    if condition == "clean":
        noise = ["synth", str(dur), "whitenoise", "vol", "-60dB"]
    elif condition == "noise":
        noise = ["synth", str(dur), "pinknoise", "sinc", "300-3400", "vol", "-21dB"]
    else:  # hum: mains at 50 Hz with its odd harmonics, as a bad line has
        noise = ["synth", str(dur), "sine", "50", "sine", "150", "sine", "250",
                 "remix", "1-3", "vol", "-24dB"]
    nz = dst + ".nz.wav"
    sh("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", nz, *noise)
    sh("sox", "-m", tmp, nz, "-r", "8000", "-c", "1", "-b", "16", dst)
    os.remove(tmp)
    os.remove(nz)


def allison(digits, dst, rnd):
    """The digits, each cut to its voice (the recordings carry 0.2-0.6 s of
    silence around every digit, which would make 1 s pauses) with 30 ms kept
    either side, then joined with natural pauses of 120-450 ms."""
    join_allison([f"digits/{d}" for d in digits], dst, lambda i: rnd.uniform(0.12, 0.45))


def join_allison(names, dst, pause):
    """Allison's recordings NAME.wav of `names` (paths under her voice's
    folder), each cut to its voice with 30 ms kept either side, `pause(i)`
    seconds of silence after the i-th (drawn in order, so a seeded set stays
    the same)."""
    parts = []
    for i, n in enumerate(names):
        cut = dst + f".d{i}.wav"
        sh("sox", os.path.join(VOICE, f"{n}.wav"), cut,
           "silence", "1", "0.01", "-45d", "reverse", "silence", "1", "0.01", "-45d",
           "reverse", "pad", "0.03", "0.03")
        parts.append(cut)
        if i + 1 < len(names):
            gap = dst + f".gap{i}.wav"
            sh("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", gap, "trim", "0",
               f"{pause(i):.3f}")
            parts.append(gap)
    sh("sox", *parts, dst)
    for p in parts:
        os.remove(p)


def espeak(text, voice, speed, dst):
    sh("espeak-ng", "-v", voice, "-s", str(speed), "-w", dst, text)


def piper_batch(texts, outdir):
    """The piper voice of the prompts (scripts/make-prompts installs it into
    .deps/venv, idempotently) saying each text: {text: wav path}, or {} when
    piper cannot be installed (make-prompts would fall back to espeak-ng,
    which is not wanted here)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.makedirs(outdir, exist_ok=True)
    names = {t: f"p{n:03d}" for n, t in enumerate(sorted(set(texts)))}
    tsv = os.path.join(outdir, "piper.tsv")
    with open(tsv, "w") as f:
        for t, n in names.items():
            f.write(f"{n}\t{t}\n")
    env = dict(os.environ, PROMPTS_TSV=tsv, PROMPTS_DIR=outdir, PROMPTS_ENGINE="piper")
    r = subprocess.run([os.path.join(root, "scripts", "make-prompts")], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.stderr.write("piper unavailable, piper_words left out:\n" + r.stderr[-2000:])
        return {}
    return {t: os.path.join(outdir, n + ".wav") for t, n in names.items()}


# Each as sox effects after `-n` (or "notes" and a melody for `notes`).
TONAL = {
    "dial_tone": ["synth", "2", "sine", "350", "sine", "440", "remix", "1-2"],
    "busy_tone": ["synth", "0.5", "sine", "480", "sine", "620", "remix", "1-2",
                  "pad", "0", "0.5", "repeat", "2"],
    "fax": ["synth", "0.5", "sine", "1100", "pad", "0", "0.5", ":", "synth", "2",
            "sine", "2100"],
    "chord": ["synth", "2.5", "sine", "262", "sine", "330", "sine", "392", "remix", "1-3",
              "tremolo", "3", "80"],
    "melody": ["notes", "C4", "E4", "G4", "C5", "G4", "E4", "D4", "F4"],
    "whistle": ["synth", "1.5", "sine", "800-1600", "tremolo", "5", "30"],
}


def notes(names, dst):
    """A plucked melody, 0.3 s a note (music on hold)."""
    parts = []
    for i, n in enumerate(names):
        part = f"{dst}.n{i}.wav"
        sh("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", part, "synth", "0.3", "pluck", n)
        parts.append(part)
    sh("sox", *parts, dst)
    for p in parts:
        os.remove(p)


def as_numbers(d):
    """How a caller may say a digit string as numbers, two digits at a time
    (a last odd digit alone): 1986 "nineteen eighty six", 0375 "oh three
    seventy five", 2050 "twenty fifty". The recording names Allison's
    files: "19", "80", "6", "oh"."""
    words = []
    for i in range(0, len(d), 2):
        ab = d[i:i + 2]
        if len(ab) == 1:
            words.append("oh" if ab == "0" else ab)
        elif ab[0] == "0":
            words += ["oh", "oh" if ab[1] == "0" else ab[1]]
        elif ab[0] == "1":
            words.append(ab)
        elif ab[1] == "0":
            words.append(ab[0] + "0")
        else:
            words += [ab[0] + "0", ab[1]]
    return words


def allison_said(words, dst, rnd):
    """Allison's recordings of `words` (digits/NAME.wav) joined: a short pause
    inside a number (seventy-five), a natural one between numbers."""
    def pause(i):
        w = words[i]
        inside = len(w) == 2 and w.endswith("0") and w != "10" and len(words[i + 1]) == 1
        return rnd.uniform(0.05, 0.12) if inside else rnd.uniform(0.15, 0.40)
    join_allison([f"digits/{w}" for w in words], dst, pause)


def digit_impostors(d, others, rnd):
    out = []
    i = rnd.randrange(len(d))
    changed = d[:i] + str((int(d[i]) + rnd.randrange(1, 10)) % 10) + d[i + 1:]
    out.append(("one_changed", changed))
    j = rnd.randrange(len(d) - 1)
    swapped = d[:j] + d[j + 1] + d[j] + d[j + 2:]
    if swapped != d:
        out.append(("swapped", swapped))
    k = rnd.randrange(len(d))
    out.append(("dropped", d[:k] + d[k + 1:]))
    out.append(("other_account", rnd.choice([o for o in others if o != d])))
    return out


def inserted(d, rnd):
    """Allison's recordings saying `d` with one digit inserted: "oh" after a
    digit 2-9 that comes before a digit 1-9 where there is such a place,
    else a random digit at a random place."""
    names = [f"digits/{c}" for c in d]
    places = [i for i in range(len(d) - 1) if d[i] in "23456789" and d[i + 1] in "123456789"]
    if places:
        i = rnd.choice(places) + 1
        return names[:i] + ["digits/oh"] + names[i:]
    i = rnd.randrange(len(d) + 1)
    return names[:i] + [f"digits/{rnd.randrange(10)}"] + names[i:]


def word_impostors(p, others, rnd, similar=SIMILAR, words=None):
    """Near misses of phrase `p`: one word changed to another of `words`
    (default: the similar words), two swapped, one dropped, its first word
    that has a partner in `similar` changed to that, another account's."""
    w = p.split()
    out = []
    i = rnd.randrange(len(w))
    repl = rnd.choice([x for x in (words or list(similar.values())) if x != w[i]])
    out.append(("one_changed", " ".join(w[:i] + [repl] + w[i + 1:])))
    if len(w) > 1:
        j = rnd.randrange(len(w) - 1)
        out.append(("swapped", " ".join(w[:j] + [w[j + 1], w[j]] + w[j + 2:])))
        k = rnd.randrange(len(w))
        out.append(("dropped", " ".join(w[:k] + w[k + 1:])))
    sim = [similar.get(x, x) for x in w]
    i = next((n for n, x in enumerate(w) if x in similar), 0)
    out.append(("similar", " ".join(w[:i] + [sim[i]] + w[i + 1:])))
    out.append(("other_account", rnd.choice([o for o in others if o != p])))
    return out


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(20261206)
    rows = []

    def add(src, enrolled, expect, set_, kind, split):
        for cond in CONDITIONS:
            name = f"{set_}-{len(rows):04d}-{kind}-{cond}.wav"
            dst = os.path.join(out, name)
            telephone(src, dst, cond, rnd)
            rows.append((name, enrolled, expect, set_, cond, kind, split))

    # Split by enrolled phrase: thresholds are fitted on `train` and the
    # rates reported on `test`, so no phrase (nor any recording of it) is
    # on both sides.
    def split_of(n):
        return "train" if n % 2 == 0 else "test"

    tmp = os.path.join(out, "src.wav")
    # Real human digits: 30 passphrases of 4-6 digits, each said twice (other
    # pauses), with impostors.
    passes = ["".join(rnd.choice("0123456789") for _ in range(rnd.choice([4, 4, 5, 6])))
              for _ in range(30)]
    for n, d in enumerate(passes):
        for _ in range(2):
            allison(d, tmp, rnd)
            add(tmp, d, "accept", "allison_digits", "genuine", split_of(n))
        for kind, said in digit_impostors(d, passes, rnd):
            allison(said, tmp, rnd)
            add(tmp, d, "reject", "allison_digits", kind, split_of(n))
    # Synthetic voices saying word phrases.
    for n, p in enumerate(WORD_PHRASES):
        voice = ESPEAK_VOICES[n % len(ESPEAK_VOICES)]
        speed = 140 + 10 * (n % 4)
        espeak(p, voice, speed, tmp)
        add(tmp, p, "accept", "espeak_words", "genuine", split_of(n))
        for kind, said in word_impostors(p, WORD_PHRASES, rnd):
            espeak(said, voice, speed, tmp)
            add(tmp, p, "reject", "espeak_words", kind, split_of(n))
    # The piper voice (the prompts' voice) saying the same phrases.
    prnd = random.Random(20261207)
    plan = [(n, p, word_impostors(p, WORD_PHRASES, prnd)) for n, p in enumerate(WORD_PHRASES)]
    wavs = piper_batch([p for _, p, _ in plan] + [s for _, _, imp in plan for _, s in imp],
                       os.path.join(out, "piper"))
    if wavs:
        for n, p, imp in plan:
            add(wavs[p], p, "accept", "piper_words", "genuine", split_of(n))
            for kind, said in imp:
                add(wavs[said], p, "reject", "piper_words", kind, split_of(n))
    # No voice at all, checked against a digit and a word phrase: a quiet
    # line, a louder rumble (brown noise) and a short burst (a breath or a
    # knock on the handset); every condition adds its own noise or hum.
    nonspeech = {
        "silence": ["trim", "0", "2.5"],
        "rumble": ["synth", "2.5", "brownnoise", "vol", "-30dB"],
        "burst": ["synth", "0.4", "pinknoise", "vol", "-18dB", "pad", "1", "1"],
    }
    # Tonal sounds pass the endpointer (noise does not) and reach the
    # decoder, so they are what the no-speech gate is calibrated against:
    # call-progress tones (a transfer or a second line), a fax, music on
    # hold, a whistle.
    nonspeech.update(TONAL)
    for kind, effect in nonspeech.items():
        if effect and effect[0] == "notes":
            notes(effect[1:], tmp)
        else:
            sh("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", tmp, *effect)
        for n, enrolled in enumerate([passes[0], passes[1], WORD_PHRASES[0], WORD_PHRASES[1]]):
            add(tmp, enrolled, "reject", "nonspeech", kind, split_of(n))
    # The same digit passphrases said as numbers ("nineteen eighty six"), by
    # the same real voice, with the impostors that keep the length: one
    # digit changed, another account's.
    nrnd = random.Random(20261208)
    for n, d in enumerate(passes):
        allison_said(as_numbers(d), tmp, nrnd)
        add(tmp, d, "accept", "allison_numbers", "genuine", split_of(n))
        for kind, said in digit_impostors(d, passes, nrnd):
            if kind in ("one_changed", "other_account"):
                allison_said(as_numbers(said), tmp, nrnd)
                add(tmp, d, "reject", "allison_numbers", kind, split_of(n))
    # Word passphrases said by the same real voice, from her recorded words.
    wrnd = random.Random(20261209)
    vocabulary = sorted(ALLISON_WORDS)
    for n, p in enumerate(ALLISON_PHRASES):
        def say(text):
            words = text.split()
            join_allison([ALLISON_WORDS[x] for x in words], tmp,
                         lambda i: wrnd.uniform(0.15, 0.40))
        for _ in range(2):
            say(p)
            add(tmp, p, "accept", "allison_words", "genuine", split_of(n))
        for kind, said in word_impostors(p, ALLISON_PHRASES, wrnd, ALLISON_SIMILAR,
                                         vocabulary):
            say(said)
            add(tmp, p, "reject", "allison_words", kind, split_of(n))
    # One digit inserted, the digits said one by one: the near miss that the
    # numbers decode's reading could bring to the enrolled count ("four oh
    # five eight five" for 4585, if written "40 5 8 5"), so a zero said "oh"
    # after a digit 2-9 that comes before a digit 1-9; where a string has no
    # such place, any digit anywhere. Last, on its own seed, so that every
    # recording above stays as it was.
    irnd = random.Random(20261210)
    for n, d in enumerate(passes):
        join_allison(inserted(d, irnd), tmp, lambda i: irnd.uniform(0.12, 0.45))
        add(tmp, d, "reject", "allison_digits", "inserted", split_of(n))
    os.remove(tmp)
    with open(os.path.join(out, "manifest.tsv"), "w") as f:
        f.write("file\tenrolled\texpect\tset\tcondition\tkind\tsplit\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
    print(f"{len(rows)} recordings in {out}")


if __name__ == "__main__":
    main()
