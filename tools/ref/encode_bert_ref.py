#!/usr/bin/env python3
"""Plain-PyTorch reference of the Hugging Face BertModel encoder and of sentence-transformers
pooling, written from the published equations. It makes the tiny random-initialised checkpoints
and the goldens of tests/encode (bert_test.cpp), and times bert-base-shaped inference for
bench_encode.

  /usr/bin/python3 tools/ref/encode_bert_ref.py make     # writes tests/data/encode/bert-* and bert_golden.json
  /usr/bin/python3 tools/ref/encode_bert_ref.py bench --threads 2 --batch 64 --lengths 64,256 --dtypes fp32,bf16

BertModel (transformers' modeling_bert, eager attention):
  x = LayerNorm(word[ids] + position[0..T) + token_type[type_ids])
  per layer: q, k, v = Linear(x); scores = q k^T / sqrt(head_dim) + (1 - mask) * finfo.min;
             a = softmax(scores) v; x = LayerNorm(x + Linear(a));
             x = LayerNorm(x + Linear(gelu(Linear(x))))        (gelu: the exact erf form)
Pooling (sentence-transformers Pooling): cls = x[:, 0]; mean = sum(x * mask) / max(sum(mask), 1e-9);
max = max over unmasked tokens; mean_sqrt_len = sum(x * mask) / sqrt(sum(mask)); several modes are
concatenated in the order cls, max, mean, mean_sqrt_len; Normalize = x / max(||x||, 1e-12).
"""
import argparse
import json
import math
import os
import string
import sys
import time
import unicodedata

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "encode")
sys.path.insert(0, HERE)
from llm_llama_ref import read_safetensors, write_safetensors  # noqa: E402  (the project's own)


# ---------------------------------------------------------------------------------------------
# The model

def find(W, name, prefix):
    """A tensor by its BertModel name, with the checkpoint's prefix and old gamma/beta names."""
    for cand in (prefix + name, prefix + name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta")):
        if cand in W:
            return W[cand]
    raise KeyError(name)


def gelu(x, act):
    if act == "gelu":
        return torch.nn.functional.gelu(x)
    if act in ("gelu_new", "gelu_pytorch_tanh"):
        return torch.nn.functional.gelu(x, approximate="tanh")
    if act == "relu":
        return torch.relu(x)
    raise ValueError(act)


def bert_forward(cfg, W, ids, mask, type_ids=None, dtype=torch.float32, prefix=None):
    """ids, mask: [B, T] -> last hidden state [B, T, H] in `dtype` (softmax in fp32)."""
    if prefix is None:
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in W else ""
    g = lambda n: find(W, n, prefix).to(dtype)  # noqa: E731
    B, T = ids.shape
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = H // nh
    eps = cfg.get("layer_norm_eps", 1e-12)
    act = cfg.get("hidden_act", "gelu")
    if type_ids is None:
        type_ids = torch.zeros_like(ids)
    ln = lambda x, n: torch.nn.functional.layer_norm(x, (H,), g(n + ".weight"), g(n + ".bias"), eps)  # noqa: E731
    lin = lambda x, n: torch.nn.functional.linear(x, g(n + ".weight"), g(n + ".bias"))  # noqa: E731
    pos = torch.arange(T).unsqueeze(0).expand(B, T)
    x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[pos] + \
        g("embeddings.token_type_embeddings.weight")[type_ids]
    x = ln(x, "embeddings.LayerNorm")
    add = (1.0 - mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        split = lambda t: t.view(B, T, nh, hd).transpose(1, 2)  # noqa: E731
        q, k, v = (split(lin(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
        scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(hd) + add
        probs = torch.softmax(scores, -1).to(dtype)
        a = (probs @ v).transpose(1, 2).reshape(B, T, H)
        x = ln(x + lin(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        h = gelu(lin(x, p + "intermediate.dense"), act)
        x = ln(x + lin(h, p + "output.dense"), p + "output.LayerNorm")
    return x


def pool(hidden, mask, modes, normalize):
    h = hidden.float()
    m = mask.unsqueeze(-1).float()
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(h[:, 0])
        elif mode == "max":
            parts.append(h.masked_fill(m == 0, -1e9).max(1).values)
        elif mode == "mean":
            parts.append((h * m).sum(1) / m.sum(1).clamp(min=1e-9))
        elif mode == "mean_sqrt_len":
            parts.append((h * m).sum(1) / m.sum(1).sqrt())
        else:
            raise ValueError(mode)
    out = torch.cat(parts, -1)
    if normalize:
        out = out / out.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return out


# ---------------------------------------------------------------------------------------------
# A tiny WordPiece vocabulary and tokenizer (lowercase ASCII, split at whitespace and punctuation,
# greedy longest match), enough for the fixture texts; the C++ test checks its ids too.

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "user", "likes", "movies", "movie", "drama", "comedy", "sci", "fi", "and", "a", "of", "in",
         "star", "wars", "is", "great", "film", "about", "love", "war", "he", "she", "rated", "stars", "5", "4",
         "1977", "1995", "story", "space", "thriller", "action", "ff", "##s", "##ing", "##ed", "##er", "##ly",
         "##a", "##e", "##i", "##o", "##t", "##n", "##r", "ch", "##ch", "un", "##known"]
PUNCT = list(".,!?'()-:/")
LETTERS = list("abcdefghijklmnopqrstuvwxyz")


def tiny_vocab():
    toks = SPECIALS + PUNCT + LETTERS + WORDS
    seen, out = set(), []
    for t in toks:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def tiny_tokenize(text, vocab, max_length):
    index = {t: i for i, t in enumerate(vocab)}
    words, cur = [], ""
    for ch in text.lower():
        if ch.isspace():
            if cur:
                words.append(cur)
            cur = ""
        elif ch in string.punctuation or unicodedata.category(ch).startswith("P"):
            if cur:
                words.append(cur)
            words.append(ch)
            cur = ""
        else:
            cur += ch
    if cur:
        words.append(cur)
    ids = []
    for w in words:
        start, pieces = 0, []
        while start < len(w):
            end = len(w)
            found = None
            while end > start:
                piece = w[start:end] if start == 0 else "##" + w[start:end]
                if piece in index:
                    found = index[piece]
                    break
                end -= 1
            if found is None:
                pieces = [index["[UNK]"]]
                break
            pieces.append(found)
            start = end
        ids += pieces
    ids = ids[: max_length - 2]
    return [index["[CLS]"]] + ids + [index["[SEP]"]]


def tokenizer_json(vocab, max_length=None):
    special = lambda n: {"SpecialToken": {"id": n, "type_id": 0}}  # noqa: E731
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": vocab.index(t), "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for t in SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, special("[SEP]")],
            "pair": [special("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, special("[SEP]"),
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {n: {"id": n, "ids": [vocab.index(n)], "tokens": [n]} for n in ("[CLS]", "[SEP]")},
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(vocab)}},
    }


# ---------------------------------------------------------------------------------------------
# Fixtures

TEXTS = [
    "The user likes Sci-Fi and Thriller movies, rated Star Wars (1977) 5 stars.",
    "A great film about love and war.",
    "Comedy!",
    "She rated the drama 4 stars; he likes action movies about space, and sci-fi stories of the 1995 thrillers.",
    "unknown chars: qzx ###",
    "",
]


def random_bert(cfg, seed, names):
    g = torch.Generator().manual_seed(seed)
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    W = {
        "embeddings.word_embeddings.weight": r(cfg["vocab_size"], H),
        "embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], H),
        "embeddings.token_type_embeddings.weight": r(cfg["type_vocab_size"], H),
        "embeddings.LayerNorm.weight": 1 + r(H),
        "embeddings.LayerNorm.bias": r(H),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            W[p + f"attention.self.{n}.weight"] = r(H, H)
            W[p + f"attention.self.{n}.bias"] = r(H)
        W[p + "attention.output.dense.weight"] = r(H, H)
        W[p + "attention.output.dense.bias"] = r(H)
        W[p + "attention.output.LayerNorm.weight"] = 1 + r(H)
        W[p + "attention.output.LayerNorm.bias"] = r(H)
        W[p + "intermediate.dense.weight"] = r(I, H)
        W[p + "intermediate.dense.bias"] = r(I)
        W[p + "output.dense.weight"] = r(H, I)
        W[p + "output.dense.bias"] = r(H)
        W[p + "output.LayerNorm.weight"] = 1 + r(H)
        W[p + "output.LayerNorm.bias"] = r(H)
    stored = {names(k): v for k, v in W.items()}
    return W, stored


def encode_all(cfg, W, texts, vocab, max_length):
    """Each text alone (no padding) and all together (padded batch): hidden states and pools."""
    ids = [tiny_tokenize(t, vocab, max_length) for t in texts]
    T = max(len(x) for x in ids)
    batch = torch.zeros(len(ids), T, dtype=torch.long)
    mask = torch.zeros(len(ids), T, dtype=torch.long)
    for i, x in enumerate(ids):
        batch[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    with torch.no_grad():
        hidden = bert_forward(cfg, W, batch, mask)
        alone = [bert_forward(cfg, W, torch.tensor([x]), torch.ones(1, len(x), dtype=torch.long))[0] for x in ids]
    for i, x in enumerate(ids):
        assert (hidden[i, : len(x)] - alone[i]).abs().max() < 1e-5, "padding changed the result"
    return ids, hidden, mask, alone


def make():
    os.makedirs(OUT, exist_ok=True)
    vocab = tiny_vocab()
    base = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": len(vocab),
            "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
            "hidden_act": "gelu", "max_position_embeddings": 40, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
            "pad_token_id": 0, "torch_dtype": "float32", "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "position_embedding_type": "absolute"}
    golden = {"note": "made by tools/ref/encode_bert_ref.py make; plain-PyTorch BertModel, fp32", "models": {}}

    # 1. bert-tiny: a BertForMaskedLM-style checkpoint as old Hugging Face uploads store it
    #    ("bert." prefix, LayerNorm.gamma/beta, an unused head tensor), 24 positions of max length.
    cfg = dict(base)
    W, stored = random_bert(cfg, 11, lambda k: "bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
        "LayerNorm.bias", "LayerNorm.beta"))
    stored["cls.predictions.bias"] = torch.zeros(len(vocab))
    d = os.path.join(OUT, "bert-tiny")
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), dict(sorted(stored.items())), {"format": "pt"})
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    json.dump(tokenizer_json(vocab), open(os.path.join(d, "tokenizer.json"), "w"))
    json.dump({"model_max_length": 24, "do_lower_case": True, "pad_token": "[PAD]", "tokenizer_class": "BertTokenizer"},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    ids, hidden, mask, alone = encode_all(cfg, W, TEXTS, vocab, 24)
    golden["models"]["bert-tiny"] = {
        "max_length": 24,
        "ids": ids,
        "hidden": [a.tolist() for a in alone[:2]],
        "pooled": {
            "mean": pool(hidden, mask, ["mean"], False).tolist(),
            "cls": pool(hidden, mask, ["cls"], False).tolist(),
            "mean_l2": pool(hidden, mask, ["mean"], True).tolist(),
            "max": pool(hidden, mask, ["max"], False).tolist(),
        },
    }
    # bf16 forward (weights and activations in bf16, softmax in fp32), for the stated tolerance.
    with torch.no_grad():
        hb = bert_forward(cfg, W, *_batch(ids), dtype=torch.bfloat16)
    golden["models"]["bert-tiny"]["pooled_bf16_ref"] = {"mean": pool(hb, _batch(ids)[1], ["mean"], False).tolist()}

    # 2. st-tiny: a sentence-transformers folder around a BertModel checkpoint (no prefix, new
    #    LayerNorm names): modules.json, 1_Pooling (cls + mean, concatenated), 2_Normalize,
    #    sentence_bert_config.json (max_seq_length 16).
    cfg2 = dict(base, architectures=["BertModel"], hidden_size=8, intermediate_size=16, max_position_embeddings=32)
    W2, stored2 = random_bert(cfg2, 22, lambda k: k)
    d = os.path.join(OUT, "bert-tiny-st")
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    os.makedirs(os.path.join(d, "2_Normalize"), exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), dict(sorted(stored2.items())), {"format": "pt"})
    json.dump(cfg2, open(os.path.join(d, "config.json"), "w"), indent=2)
    json.dump(tokenizer_json(vocab), open(os.path.join(d, "tokenizer.json"), "w"))
    json.dump({"model_max_length": 512, "do_lower_case": True, "pad_token": "[PAD]"},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
              open(os.path.join(d, "modules.json"), "w"), indent=2)
    json.dump({"word_embedding_dimension": 8, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
               "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True},
              open(os.path.join(d, "1_Pooling", "config.json"), "w"), indent=2)
    json.dump({"max_seq_length": 16, "do_lower_case": False},
              open(os.path.join(d, "sentence_bert_config.json"), "w"), indent=2)
    ids2, hidden2, mask2, alone2 = encode_all(cfg2, W2, TEXTS, vocab, 16)
    golden["models"]["bert-tiny-st"] = {
        "max_length": 16,
        "ids": ids2,
        "hidden": [a.tolist() for a in alone2[:1]],
        "pooled": {"auto": pool(hidden2, mask2, ["cls", "mean"], True).tolist(),
                   "mean": pool(hidden2, mask2, ["mean"], False).tolist()},
    }
    golden["texts"] = TEXTS
    with open(os.path.join(OUT, "bert_golden.json"), "w") as f:
        json.dump(golden, f, separators=(",", ":"))
    for name in ("bert-tiny", "bert-tiny-st"):
        W_back = read_safetensors(os.path.join(OUT, name, "model.safetensors"))
        assert len(W_back) > 0
    print("wrote", OUT, "vocab", len(vocab))


def _batch(ids):
    T = max(len(x) for x in ids)
    batch = torch.zeros(len(ids), T, dtype=torch.long)
    mask = torch.zeros(len(ids), T, dtype=torch.long)
    for i, x in enumerate(ids):
        batch[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return batch, mask


# ---------------------------------------------------------------------------------------------
# Benchmark peer: bert-base shape, random weights, plain PyTorch (what a Python user would run)

def bench(args):
    torch.set_num_threads(args.threads)
    cfg = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
           "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
           "layer_norm_eps": 1e-12, "hidden_act": "gelu"}
    W, _ = random_bert(cfg, 1, lambda k: k)
    results = []
    for dt in args.dtypes.split(","):
        dtype = torch.bfloat16 if dt == "bf16" else torch.float32
        Wd = {k: v.to(dtype) for k, v in W.items()}
        for T in [int(x) for x in args.lengths.split(",")]:
            ids = torch.randint(1000, 30000, (args.batch, T))
            mask = torch.ones(args.batch, T, dtype=torch.long)
            with torch.inference_mode():
                bert_forward(cfg, Wd, ids[:2, :16], mask[:2, :16], dtype=dtype)  # warm-up
                best = 1e9
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    h = bert_forward(cfg, Wd, ids, mask, dtype=dtype)
                    pool(h, mask, ["mean"], False)
                    best = min(best, time.perf_counter() - t0)
            results.append({"dtype": dt, "length": T, "batch": args.batch, "seconds": best,
                            "texts_per_s": args.batch / best})
            print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("make")
    b = sub.add_parser("bench")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--batch", type=int, default=64)
    b.add_argument("--lengths", default="64,256")
    b.add_argument("--dtypes", default="fp32,bf16")
    b.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    if args.cmd == "make":
        torch.manual_seed(0)
        make()
    else:
        bench(args)


if __name__ == "__main__":
    main()
