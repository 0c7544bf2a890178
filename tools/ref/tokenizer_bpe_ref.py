#!/usr/bin/env python3
"""Independent plain-Python reference for the C++ tokenizer (src/text/tokenizer.cpp).

Implements, from the tokenizer.json files alone, the two pipelines the project needs:
  * Llama-3 byte-level BPE: added tokens split out, the Split regex (Python `regex` module),
    GPT-2's byte->unicode map, ignore_merges, then classic GPT-2 BPE (merge every occurrence of
    the best-ranked pair, repeat).
  * TinyStories SentencePiece-style BPE: added tokens split out, Prepend "▁" + Replace " "->"▁",
    unknown characters -> <unk> (fused runs; this vocabulary has no <0xXX> byte tokens), then the
    same classic BPE over characters.
  * "llama3_1_gpt2_pretokenizer": the Llama-3 vocabulary behind GPT-2's pre-tokenizer
    (ByteLevel with add_prefix_space and its built-in regex), to check that path too.
The algorithm differs on purpose from the C++ one (priority queue over symbol ids), so agreement
on a few KB of varied text is evidence that both are right.

Usage: python3 tools/ref/tokenizer_bpe_ref.py [SHARED_DIR] > tests/data/text/tokenizer_ref_golden.json
"""
import json
import os
import sys

import regex

TEXTS = [
    # Plain English, written for this test.
    "The reranker reads what the language model writes about a user, and it scores each candidate "
    "movie with that knowledge in mind. When the scores improve, the writer is rewarded; when they "
    "fall, it learns to write differently. Nobody labels the knowledge by hand.",
    "She liked slow science-fiction films from the seventies, disliked musicals, and rated every "
    "Hitchcock thriller four or five stars. Her brother, on the other hand, watched mostly comedies.",
    "Once upon a time, there was a little dog named Max. Max liked to play in the park with his "
    "friend Lily. One day, they found a big red ball under a tree!\n\"Can we keep it?\" asked Lily.",
    # Numbers, dates, punctuation runs, code-like text.
    "Ratings: 5/5, 4.5/5 and 3/5; IDs 0012345 and 987654321; on 2024-07-26 at 13:45:07 (UTC+2)...!!!",
    "```python\ndef f(x):\n    return x ** 2  # square\n```\n\tTabbed\t\tline\r\nCRLF line\r\n",
    "Contractions: DON'T, I'M, We'Ve, they'LL, it'S, o'clock, rock 'n' roll, ''quoted''",
    # Whitespace patterns the Split regex treats specially.
    "a  b   c    d\n\n\ne \n f\t\n g   \n\n   h",
    "   \n   ",
    "\u00a0non-breaking\u00a0spaces\u2003and\u3000ideographic space",
    # Scripts and symbols.
    "Ünïcödé: façade, Straße, smörgåsbord, Ærø, çà et là, naïveté",
    "日本語のテキストと中文文本，还有한국어와 Русский текст и Ελληνικά.",
    "العربية من اليمين إلى اليسار، हिन्दी देवनागरी, ไทย",
    "Emoji: 🎬🍿👍🏽 🧑‍🤝‍🧑 🇫🇷 ❤️ ✨ — and math: ∑ x² ≤ ∞, ½ ⅓",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ and ſ long s, ﬁ ligature, K Kelvin",
    # Added tokens in text (Llama-3 specials; TinyStories markers).
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nRate Heat (1995).<|eot_id|>",
    "<|start_story|>Once upon a time<|end_story|> and <|reserved_special_token_5|> <|eot_id",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def load(path):
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    model = j["model"]
    ranks = {}
    for i, m in enumerate(model["merges"]):
        a, b = m.split(" ") if isinstance(m, str) else m
        ranks[(a, b)] = i
    added = {t["content"]: t["id"] for t in j["added_tokens"]}
    return j, model["vocab"], ranks, added


def classic_bpe(symbols, ranks):
    while len(symbols) > 1:
        best = min(((ranks.get(p, 1 << 60), p) for p in zip(symbols, symbols[1:])))
        if best[0] == 1 << 60:
            break
        a, b = best[1]
        out, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    return symbols


def split_added(text, added):
    if not added:
        return [(False, text)]
    pattern = regex.compile("|".join(regex.escape(t) for t in sorted(added, key=len, reverse=True)))
    out, last = [], 0
    for m in pattern.finditer(text):
        if m.start() > last:
            out.append((False, text[last:m.start()]))
        out.append((True, m.group(0)))
        last = m.end()
    if last < len(text):
        out.append((False, text[last:]))
    return out


def encode_llama3(text, j, vocab, ranks, added):
    split = j["pre_tokenizer"]["pretokenizers"][0]
    assert split["type"] == "Split" and split["behavior"] == "Isolated"
    pat = regex.compile(split["pattern"]["Regex"])
    b2u = bytes_to_unicode()
    ids = []
    for is_added, seg in split_added(text, added):
        if is_added:
            ids.append(added[seg])
            continue
        for piece in pat.findall(seg):
            mapped = "".join(b2u[b] for b in piece.encode("utf-8"))
            if j["model"].get("ignore_merges") and mapped in vocab:
                ids.append(vocab[mapped])
                continue
            ids.extend(vocab[s] for s in classic_bpe(list(mapped), ranks))
    return ids


GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def encode_gpt2_style(text, j, vocab, ranks, added):
    """The Llama-3 vocabulary behind GPT-2's pre-tokenizer: ByteLevel(add_prefix_space=true,
    use_regex=true) alone, i.e. a space before every text segment, then the GPT-2 regex."""
    pat = regex.compile(GPT2_PATTERN)
    b2u = bytes_to_unicode()
    ids = []
    for is_added, seg in split_added(text, added):
        if is_added:
            ids.append(added[seg])
            continue
        if not seg.startswith(" "):
            seg = " " + seg
        for piece in pat.findall(seg):
            mapped = "".join(b2u[b] for b in piece.encode("utf-8"))
            if j["model"].get("ignore_merges") and mapped in vocab:
                ids.append(vocab[mapped])
                continue
            ids.extend(vocab[s] for s in classic_bpe(list(mapped), ranks))
    return ids


def encode_tinystories(text, j, vocab, ranks, added):
    unk = j["model"]["unk_token"]
    ids = []
    for is_added, seg in split_added(text, added):
        if is_added:
            ids.append(added[seg])
            continue
        norm = "\u2581" + seg.replace(" ", "\u2581")
        symbols = []
        for ch in norm:
            if ch in vocab:
                symbols.append(ch)
            elif not (symbols and symbols[-1] == unk and j["model"]["fuse_unk"]):
                symbols.append(unk)
        ids.extend(vocab[s] for s in classic_bpe(symbols, ranks))
    return ids


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../shared")
    llama = load(os.path.join(shared, "tokenizers/llama-3.1/tokenizer.json"))
    tiny = load(os.path.join(shared, "models/tinystories-656k/tokenizer.json"))
    cases = [{"text": t, "llama3_1": encode_llama3(t, *llama), "tinystories656k": encode_tinystories(t, *tiny),
              "llama3_1_gpt2_pretokenizer": encode_gpt2_style(t, *llama)}
             for t in TEXTS]
    json.dump({"generator": "tools/ref/tokenizer_bpe_ref.py (plain Python, classic BPE; no BOS)", "cases": cases},
              sys.stdout, ensure_ascii=False, indent=None)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
