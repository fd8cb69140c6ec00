#!/usr/bin/env python3
"""Fits the weights of `tokens::quick_estimate_input` on the corpus.

    cargo run --release --example estimate_accuracy -- --features /tmp/features.jsonl
    python3 benches/tokens/fit_weights.py /tmp/features.jsonl
    python3 benches/tokens/fit_weights.py /tmp/features.jsonl --hold-out   # ~3 minutes

The model is the one in src/tokens.rs: every byte has a class (CLASSES below); a byte adds
the weight of its class, plus a piece-start weight where it starts a piece that o200k's
pre-tokenizer splits off (a word, told apart by what precedes it, since the pre-tokenizer
joins one leading space or punctuation mark to a word; an upper-case letter after a
lower-case one; a run of digits, of punctuation, of line breaks); each message adds 4 tokens and the request 3.

Weights are fitted by least squares on the relative error against a target ratio, every
category weighing the same, under-estimates weighing UNDER_PENALTY times more (iteratively
reweighted), none negative. Weights in FIXED are not fitted: the digit weight is o200k's own
rule (digits go in groups of up to three), the others are classes the corpus has (almost)
nothing of, set from a few strings tried on the tokenizer.
Prints the weights in 1/64 token, ready for src/tokens.rs, and the ratio per category with
the rounded weights (the example's table for the new estimate should show the same).
Standard library only.
"""

import json
import math
import sys


def byte_class(b):
    """The class of a byte value, as `byte_classes` in src/tokens.rs."""
    if 0x61 <= b <= 0x7A:
        return "lower"
    if 0x41 <= b <= 0x5A:
        return "upper"
    if 0x30 <= b <= 0x39:
        return "digit"
    if b in (0x20, 0x09):
        return "space"
    if b in (0x0A, 0x0D):
        return "newline"
    if b < 0x80:
        return "punct"
    if b < 0xC0:
        return "continuation"
    if b < 0xCE:
        return "latin"  # U+0080..U+037F: accents, Latin extended, IPA, combining marks
    if b < 0xD0:
        return "greek"  # U+0380..U+03FF
    if b < 0xD4:
        return "cyrillic"  # U+0400..U+04FF
    if b < 0xE0:
        return "hebrew_arabic"  # U+0500..U+07FF: Armenian, Hebrew, Arabic, Syriac, Thaana
    if b == 0xE0:
        return "indic_thai"  # U+0800..U+0FFF: Devanagari .. Malayalam, Sinhala, Thai, Tibetan
    if b == 0xE1:
        return "other_1000"  # U+1000..U+1FFF: Myanmar, Georgian, Ethiopic, Khmer, Vietnamese
    if b == 0xE2:
        return "symbol"  # U+2000..U+2FFF: punctuation, arrows, math, box drawing
    if b < 0xEA:
        return "cjk"  # U+3000..U+9FFF: kana, CJK ideographs
    if b < 0xEE:
        return "hangul"  # U+A000..U+DFFF: Yi, Hangul syllables
    if b < 0xF0:
        return "private_fullwidth"  # U+E000..U+FFFF: private use, fullwidth forms
    return "four_byte"  # emoji, rare CJK


CLASS_NAMES = [
    "lower", "upper", "digit", "space", "newline", "punct", "latin", "greek", "cyrillic",
    "hebrew_arabic", "indic_thai", "other_1000", "symbol", "cjk", "hangul",
    "private_fullwidth", "four_byte",
]
START_NAMES = [
    "word_after_space", "word_after_punct", "word_after_other", "upper_after_lower",
    "digits_start", "punct_start", "newline_start",
]
NAMES = CLASS_NAMES + START_NAMES
LETTERS = ("lower", "upper")

# Tokens per byte of the class (per character for lead bytes) that are not fitted.
FIXED = {
    "digit": 1 / 3,
    "symbol": 0.8,  # quotes, dashes, arrows: about one token each, some merge
    # Vietnamese letters, but also Georgian, Myanmar, Khmer, Ethiopic (2 tokens a letter):
    # no lower than the old 4 bytes per token.
    "other_1000": 0.75,
    "private_fullwidth": 1.0,
    "four_byte": 2.0,  # an emoji is often two tokens, a skin tone another
}

FRAMING_PER_MESSAGE = 4
FRAMING_PER_REQUEST = 3
TARGET = 1.07
UNDER_PENALTY = 4.0
UNIT = 64  # weights are stored in 1/64 token

CLASS_OF = [byte_class(b) for b in range(256)]


def features(text):
    """Counts of each class and of each kind of piece start in `text`."""
    f = dict.fromkeys(NAMES, 0)
    prev = "continuation"
    for b in text.encode():
        c = CLASS_OF[b]
        if c != "continuation":
            f[c] += 1
        if c in LETTERS and prev not in LETTERS:
            if prev == "space":
                f["word_after_space"] += 1
            elif prev == "punct":
                f["word_after_punct"] += 1
            else:
                f["word_after_other"] += 1
        if c == "upper" and prev == "lower":
            f["upper_after_lower"] += 1
        if c == "digit" and prev != "digit":
            f["digits_start"] += 1
        if c == "punct" and prev != "punct":
            f["punct_start"] += 1
        if c == "newline" and prev != "newline":
            f["newline_start"] += 1
        prev = c
    return [f[n] for n in NAMES]


def load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            x = [0.0] * len(NAMES)
            for message in row["messages"]:
                for i, v in enumerate(features(message)):
                    x[i] += v
            framing = FRAMING_PER_MESSAGE * len(row["messages"]) + FRAMING_PER_REQUEST
            rows.append((row["category"], x, framing, row["content_tokens"] + framing))
    return rows


def solve(a, b):
    """Gaussian elimination with partial pivoting: a x = b."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        if abs(m[col][col]) < 1e-12:
            m[col][col] = 1e-12
        for r in range(n):
            if r != col:
                f = m[r][col] / m[col][col]
                for c in range(col, n + 1):
                    m[r][c] -= f * m[col][c]
    return [m[i][n] / m[i][i] for i in range(n)]


def estimate(weights, x, framing):
    return sum(w * c for w, c in zip(weights, x)) + framing


def fit(rows):
    fixed = {NAMES.index(name): w for name, w in FIXED.items()}
    weights = [fixed.get(i, 0.2) for i in range(len(NAMES))]
    per_category = {}
    for category, *_ in rows:
        per_category[category] = per_category.get(category, 0) + 1
    sample_weight = [1.0] * len(rows)
    for _ in range(40):
        # Minimise sum sw * ((est - TARGET * real) / real)^2 over the free weights, none
        # negative: a weight the solution wants below 0 is held at 0 and the rest solved
        # again (active set).
        zero = set()
        while True:
            free = [i for i in range(len(NAMES)) if i not in fixed and i not in zero]
            ata = [[0.0] * len(free) for _ in free]
            atb = [0.0] * len(free)
            for k, (category, x, framing, real) in enumerate(rows):
                sw = sample_weight[k] / per_category[category]
                fixed_part = framing + sum(w * x[i] for i, w in fixed.items())
                xs = [x[i] / real for i in free]
                y = TARGET - fixed_part / real
                for p in range(len(free)):
                    atb[p] += sw * xs[p] * y
                    for q in range(len(free)):
                        ata[p][q] += sw * xs[p] * xs[q]
            for p in range(len(free)):
                ata[p][p] += 1e-6  # classes absent from the corpus stay near 0
            solution = solve(ata, atb)
            most_negative = min(range(len(free)), key=lambda p: solution[p])
            if solution[most_negative] >= 0:
                break
            zero.add(free[most_negative])
        for i in zero:
            weights[i] = 0.0
        for p, i in enumerate(free):
            weights[i] = solution[p]
        sample_weight = [
            UNDER_PENALTY if estimate(weights, x, framing) < TARGET * real else 1.0
            for _, x, framing, real in rows
        ]
    return weights


def report(rows, weights):
    categories = []
    for category, *_ in rows:
        if category not in categories:
            categories.append(category)
    print(f"{'category':<16} {'n':>4} {'mean':>6} {'p5':>6} {'min':>6}")
    for category in categories:
        ratios = sorted(
            estimate(weights, x, framing) / real for c, x, framing, real in rows if c == category
        )
        p5 = ratios[max(math.ceil(0.05 * len(ratios)), 1) - 1]
        print(f"{category:<16} {len(ratios):>4} {sum(ratios) / len(ratios):>6.2f} {p5:>6.2f} {ratios[0]:>6.2f}")


def hold_out(rows):
    """Fits without each category in turn (and without `long-doc`, made of the others) and
    prints the ratio on the category left out: how far the fit carries beyond the corpus."""
    categories = []
    for category, *_ in rows:
        if category not in categories and category != "long-doc":
            categories.append(category)
    print("| held out | mean | p5 |")
    print("|---|---:|---:|")
    for held in categories:
        train = [r for r in rows if r[0] not in (held, "long-doc")]
        weights = [round(w * UNIT) / UNIT for w in fit(train)]
        ratios = sorted(estimate(weights, x, framing) / real for c, x, framing, real in rows if c == held)
        p5 = ratios[max(math.ceil(0.05 * len(ratios)), 1) - 1]
        print(f"| {held} | {sum(ratios) / len(ratios):.2f} | {p5:.2f} |")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rows = load(args[0] if args else "/tmp/features.jsonl")
    if "--hold-out" in sys.argv:
        hold_out(rows)
        return
    weights = fit(rows)
    print("weights (tokens per byte of the class, per character for lead bytes, per piece start):")
    for name, w in zip(NAMES, weights):
        fixed = " (fixed)" if name in FIXED else ""
        print(f"  {name:<20} {w:.4f} = {round(w * UNIT)}/{UNIT}{fixed}")
    report(rows, [round(w * UNIT) / UNIT for w in weights])


if __name__ == "__main__":
    main()
