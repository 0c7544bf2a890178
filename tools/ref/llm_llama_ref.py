#!/usr/bin/env python3
"""Plain-PyTorch reference of the Hugging Face Llama-family math (Llama, Qwen2, Mistral), written
from the published equations, reading checkpoints with its own safetensors code. It makes the
small checkpoints and goldens of tests/llm and checks itself against the shared greedy reference.

  /usr/bin/python3 tools/ref/llm_llama_ref.py check      # ref vs ../shared/reference/tinystories-656k-greedy.json
  /usr/bin/python3 tools/ref/llm_llama_ref.py make       # writes tests/data/llm/* (checkpoints + goldens)

HF conventions followed: RMSNorm statistics in fp32 then cast back and scaled by the weight;
rotary embeddings with rotate_half (cos/sin from inv_freq x position in fp32, then cast to the
compute dtype), optional llama3 / linear rope scaling; repeat_kv for grouped-query attention;
scores scaled by head_dim**-0.5, additive mask of finfo.min, softmax in fp32; SwiGLU MLP;
lm_head (or the tied embedding) and logits cast to fp32.
"""
import argparse
import json
import math
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.environ.get("RLRF_SHARED", os.path.normpath(os.path.join(ROOT, "..", "shared")))
OUT = os.path.join(ROOT, "tests", "data", "llm")

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
NAMES = {v: k for k, v in DTYPES.items()}


# ---------------------------------------------------------------------------------------------
# safetensors

def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = DTYPES[e["dtype"]]
        raw = bytearray(data[base + b: base + end])
        if dt == torch.float32:
            t = torch.frombuffer(raw, dtype=torch.float32) if raw else torch.empty(0)
        else:
            t = (torch.frombuffer(raw, dtype=torch.int16) if raw else torch.empty(0, dtype=torch.int16)).view(dt)
        out[name] = t.reshape(e["shape"]).clone()
    for k, v in meta.items():  # aliases of tied weights: {"model.embed_tokens.weight": "lm_head.weight"}
        if k not in out and v in out:
            out[k] = out[v]
    return out


def write_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, off = [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = (t.view(torch.int16) if t.dtype in (torch.bfloat16, torch.float16) else t).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def load_checkpoint(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    index = os.path.join(d, "model.safetensors.index.json")
    weights = {}
    if os.path.exists(index):
        for shard in sorted(set(json.load(open(index))["weight_map"].values())):
            weights.update(read_safetensors(os.path.join(d, shard)))
    else:
        weights = read_safetensors(os.path.join(d, "model.safetensors"))
    return cfg, weights


# ---------------------------------------------------------------------------------------------
# the math

def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def inv_freq(cfg):
    dim = head_dim(cfg)
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.get("rope_scaling")
    kind = None if not rs else rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > lo_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < hi_wl) * ~(wavelen > lo_wl)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rms_norm(x, w, eps):
    dt = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(dt)


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


def linear(W, name, x, lora):
    y = torch.nn.functional.linear(x, W[name + ".weight"], W.get(name + ".bias"))
    if lora and name in lora["A"]:
        a, b = lora["A"][name].to(x.dtype), lora["B"][name].to(x.dtype)
        y = y + (x @ a.t() @ b.t()) * lora["scaling"]
    return y


def forward(cfg, W, ids, positions, key_valid=None, dtype=torch.float32, lora=None):
    """ids, positions [B, T] int64; key_valid [B, T] bool or None. Returns logits [B, T, V] fp32."""
    W = {k: v.to(dtype) for k, v in W.items()}
    B, T = ids.shape
    nh, nkv, hd = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"]), head_dim(cfg)
    eps = cfg.get("rms_norm_eps", 1e-6)
    qwen = cfg.get("model_type") == "qwen2"
    x = W["model.embed_tokens.weight"][ids]
    freqs = (inv_freq(cfg)[None, :, None] @ positions[:, None, :].float()).transpose(1, 2)  # [B, T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]  # [B, 1, T, hd]
    allowed = torch.ones(T, T, dtype=torch.bool).tril()[None].expand(B, T, T).clone()
    if cfg.get("model_type") == "mistral" and cfg.get("sliding_window"):
        q = torch.arange(T)[:, None]
        k = torch.arange(T)[None, :]
        allowed &= (k > q - cfg["sliding_window"])[None]
    if key_valid is not None:
        allowed &= key_valid[:, None, :]
    mask = torch.zeros(B, 1, T, T, dtype=dtype).masked_fill(~allowed[:, None], torch.finfo(dtype).min)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(W, p + "self_attn.q_proj", h, lora).view(B, T, nh, hd).transpose(1, 2)
        k = linear(W, p + "self_attn.k_proj", h, lora).view(B, T, nkv, hd).transpose(1, 2)
        v = linear(W, p + "self_attn.v_proj", h, lora).view(B, T, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = nh // nkv
        k = k[:, :, None].expand(B, nkv, g, T, hd).reshape(B, nh, T, hd)  # repeat_kv
        v = v[:, :, None].expand(B, nkv, g, T, hd).reshape(B, nh, T, hd)
        att = torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5 + mask
        att = torch.softmax(att, dim=-1, dtype=torch.float32).to(dtype)
        o = torch.matmul(att, v).transpose(1, 2).reshape(B, T, nh * hd)
        x = x + linear(W, p + "self_attn.o_proj", o, lora)
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        gate = linear(W, p + "mlp.gate_proj", h, lora)
        up = linear(W, p + "mlp.up_proj", h, lora)
        x = x + linear(W, p + "mlp.down_proj", torch.nn.functional.silu(gate) * up, lora)
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["lm_head.weight"] if "lm_head.weight" in W and not cfg.get("tie_word_embeddings") else W["model.embed_tokens.weight"]
    return torch.nn.functional.linear(x, head).float()


def greedy(cfg, W, prompt, n, dtype=torch.float32, lora=None):
    """Greedy continuation without a cache (full forward each step): ids, per-token log-probs,
    and the logits at the first generated position."""
    ids = list(prompt)
    out, lps, first = [], [], None
    for _ in range(n):
        t = torch.tensor([ids])
        logits = forward(cfg, W, t, torch.arange(len(ids))[None], dtype=dtype, lora=lora)[0, -1]
        if first is None:
            first = logits.clone()
        nxt = int(torch.argmax(logits))
        lps.append(float(torch.log_softmax(logits.double(), -1)[nxt]))
        out.append(nxt)
        ids.append(nxt)
    return out, lps, first


# ---------------------------------------------------------------------------------------------
# commands

def check():
    ref = json.load(open(os.path.join(SHARED, "reference", "tinystories-656k-greedy.json")))
    cfg, W = load_checkpoint(os.path.join(SHARED, "models", "tinystories-656k"))
    worst = 0.0
    for case in ref:
        ids, lps, first = greedy(cfg, W, case["prompt_ids"], len(case["greedy_ids"]))
        assert ids == case["greedy_ids"], f"greedy ids differ for {case['prompt']!r}"
        d16 = max(abs(a - b) for a, b in zip(first[:16].tolist(), case["next_token_logits_first16"]))
        dtop = max(abs(float(first[i]) - v) for i, v in case["next_token_logits_top5"])
        dlp = max(abs(a - b) for a, b in zip(lps, case["greedy_token_logprobs"]))
        dsum = abs(sum(lps[:32]) - case["greedy_logprob_sum_first32"])
        worst = max(worst, d16, dtop, dlp)
        print(f"{case['prompt']!r}: ids equal; max |dlogit| first16 {d16:.2e} top5 {dtop:.2e}; "
              f"max |dlogprob| {dlp:.2e}; |dsum32| {dsum:.2e}")
    print("OK" if worst < 1e-4 else "MISMATCH", f"(worst {worst:.2e})")


def randn(gen, *shape, std=1.0):
    return torch.randn(*shape, generator=gen) * std


def random_weights(cfg, gen, dtype):
    H, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"]), head_dim(cfg)
    qwen = cfg.get("model_type") == "qwen2"
    W = {"model.embed_tokens.weight": randn(gen, V, H, std=0.3 if cfg.get("tie_word_embeddings") else 1.0)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = 1 + randn(gen, H, std=0.1)
        for name, (o, i) in {"q_proj": (nh * hd, H), "k_proj": (nkv * hd, H), "v_proj": (nkv * hd, H),
                             "o_proj": (H, nh * hd)}.items():
            W[p + "self_attn." + name + ".weight"] = randn(gen, o, i, std=i ** -0.5)
            if qwen and name != "o_proj":
                W[p + "self_attn." + name + ".bias"] = randn(gen, o, std=0.1)
        W[p + "post_attention_layernorm.weight"] = 1 + randn(gen, H, std=0.1)
        W[p + "mlp.gate_proj.weight"] = randn(gen, I, H, std=H ** -0.5)
        W[p + "mlp.up_proj.weight"] = randn(gen, I, H, std=H ** -0.5)
        W[p + "mlp.down_proj.weight"] = randn(gen, H, I, std=I ** -0.5)
    W["model.norm.weight"] = 1 + randn(gen, H, std=0.1)
    if not cfg.get("tie_word_embeddings"):
        W["lm_head.weight"] = randn(gen, V, H, std=H ** -0.5)
    return {k: v.to(dtype) for k, v in W.items()}


def r6(t):
    return [round(float(v), 6) for v in t.reshape(-1).tolist()]


def logits_case(name, cfg, W, ids, positions, key_valid=None, dtype=torch.float32, lora=None):
    ids_t, pos_t = torch.tensor(ids), torch.tensor(positions)
    kv = torch.tensor(key_valid, dtype=torch.bool) if key_valid is not None else None
    logits = forward(cfg, W, ids_t, pos_t, kv, dtype=dtype, lora=lora)
    return {"name": name, "dtype": "bf16" if dtype == torch.bfloat16 else "fp32", "ids": ids, "positions": positions,
            "key_valid": key_valid, "shape": list(logits.shape), "logits": r6(logits)}


def write_model(d, cfg, W, shards=None, metadata=None):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    for old in os.listdir(d):
        if old.endswith(".safetensors") or old.endswith(".index.json"):
            os.remove(os.path.join(d, old))
    if not shards:
        write_safetensors(os.path.join(d, "model.safetensors"), W, metadata or {"format": "pt"})
        return
    weight_map, total = {}, 0
    for i, names in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        part = {n: W[n] for n in names}
        write_safetensors(os.path.join(d, fname), part, {"format": "pt"})
        for n in names:
            weight_map[n] = fname
            total += part[n].numel() * part[n].element_size()
    assert set(weight_map) == set(W), "shards must cover every tensor"
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")


def make():
    gen = torch.Generator().manual_seed(20240531)
    goldens = {}

    # Llama-3.1-shaped: GQA 4/2, explicit head_dim (q dim 64 != hidden 32), llama3 rope scaling,
    # theta 5e5, untied lm_head, eos list, bf16 weights in two shards with an index.
    llama = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 96, "hidden_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "intermediate_size": 64, "max_position_embeddings": 131072, "rope_theta": 500000.0,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": [2, 3], "torch_dtype": "bfloat16"}
    W = random_weights(llama, gen, torch.bfloat16)
    names = list(W)
    shard1 = [n for n in names if n.startswith("model.embed_tokens") or n.startswith("model.layers.0.")]
    shard2 = [n for n in names if n not in shard1]
    write_model(os.path.join(OUT, "tiny-llama31"), llama, W, shards=[shard1, shard2])
    cfg, W = load_checkpoint(os.path.join(OUT, "tiny-llama31"))  # read back through the reader
    ids = [[1, 17, 42, 5, 88, 63, 29]]
    pad_ids = [[0, 0, 0, 1, 17, 42, 5], [1, 9, 33, 71, 20, 14, 60]]
    pad_valid = [[False, False, False, True, True, True, True], [True] * 7]
    pad_pos = [[0, 0, 0, 0, 1, 2, 3], list(range(7))]
    # A LoRA adapter in PEFT's layout with non-zero A and B (rank 4, alpha 8) on q, v, down.
    lora_dir = os.path.join(OUT, "tiny-llama31-lora")
    os.makedirs(lora_dir, exist_ok=True)
    targets = ["q_proj", "v_proj", "down_proj"]
    lora = {"A": {}, "B": {}, "scaling": 8.0 / 4}
    tensors = {}
    for l in range(cfg["num_hidden_layers"]):
        for t in targets:
            mod = f"model.layers.{l}.{'mlp' if t == 'down_proj' else 'self_attn'}.{t}"
            out_f, in_f = W[mod + ".weight"].shape
            lora["A"][mod] = randn(gen, 4, in_f, std=in_f ** -0.5)
            lora["B"][mod] = randn(gen, out_f, 4, std=0.1)
            tensors[f"base_model.model.{mod}.lora_A.weight"] = lora["A"][mod]
            tensors[f"base_model.model.{mod}.lora_B.weight"] = lora["B"][mod]
    write_safetensors(os.path.join(lora_dir, "adapter_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(lora_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-llama31",
                   "r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": targets, "bias": "none",
                   "fan_in_fan_out": False, "inference_mode": True, "use_rslora": False, "use_dora": False,
                   "modules_to_save": None}, f, indent=2)
        f.write("\n")
    # RoPE sees relative positions only: distances of thousands reach the frequencies that llama3
    # scaling changes. Check that they matter here (else the golden would not test the scaling).
    spread = [0, 700, 1900, 3300, 5200, 7100, 9000]
    unscaled = dict(cfg, rope_scaling=None)
    pos_t = torch.tensor([spread])
    diff = (forward(cfg, W, torch.tensor(ids), pos_t) - forward(unscaled, W, torch.tensor(ids), pos_t)).abs().max()
    assert diff > 1e-2, f"llama3 rope scaling changes the logits by only {diff}"
    print(f"llama3 scaling changes the spread-position logits by up to {float(diff):.3f}")
    g_ids, g_lps, _ = greedy(cfg, W, [1, 5, 17, 33], 12)
    goldens["tiny-llama31"] = {
        "cases": [
            logits_case("plain", cfg, W, ids, [list(range(7))]),
            logits_case("spread_positions", cfg, W, ids, [spread]),
            logits_case("left_padded", cfg, W, pad_ids, pad_pos, pad_valid),
            logits_case("bf16", cfg, W, ids, [list(range(7))], dtype=torch.bfloat16),
            logits_case("lora", cfg, W, ids, [list(range(7))], lora=lora),
        ],
        "greedy": {"prompt": [1, 5, 17, 33], "ids": g_ids, "logprobs": [round(v, 6) for v in g_lps]},
        "inv_freq": [float(v) for v in inv_freq(cfg).tolist()],
    }

    # Qwen2-shaped: q/k/v biases, one KV head (MQA), tied embeddings, F16 weights, one file.
    qwen = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 96, "hidden_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 48,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True, "use_sliding_window": False, "sliding_window": 32768, "max_window_layers": 2,
        "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float16"}
    W = random_weights(qwen, gen, torch.float16)
    write_model(os.path.join(OUT, "tiny-qwen2"), qwen, W)
    cfg, W = load_checkpoint(os.path.join(OUT, "tiny-qwen2"))
    g_ids, g_lps, _ = greedy(cfg, W, [1, 44, 7], 10)
    goldens["tiny-qwen2"] = {
        "cases": [logits_case("plain", cfg, W, ids, [list(range(7))]),
                  logits_case("left_padded", cfg, W, pad_ids, pad_pos, pad_valid)],
        "greedy": {"prompt": [1, 44, 7], "ids": g_ids, "logprobs": [round(v, 6) for v in g_lps]},
    }

    # Mistral-shaped: sliding window of 4 over a 12-token input, F32 weights, one file.
    mistral = {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 64, "hidden_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 32,
        "max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "sliding_window": 4,
        "tie_word_embeddings": False, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "float32"}
    W = random_weights(mistral, gen, torch.float32)
    write_model(os.path.join(OUT, "tiny-mistral"), mistral, W)
    cfg, W = load_checkpoint(os.path.join(OUT, "tiny-mistral"))
    m_ids = [[1, 5, 9, 33, 60, 2, 17, 40, 8, 21, 11, 50]]
    full = dict(cfg, sliding_window=None)
    m_t, m_pos = torch.tensor(m_ids), torch.arange(12)[None]
    diff = (forward(cfg, W, m_t, m_pos) - forward(full, W, m_t, m_pos)).abs().max()
    assert diff > 1e-2, f"the sliding window changes the logits by only {diff}"
    g_ids, g_lps, _ = greedy(cfg, W, [1, 5, 9], 10)
    goldens["tiny-mistral"] = {
        "cases": [logits_case("plain", cfg, W, m_ids, [list(range(12))])],
        "greedy": {"prompt": [1, 5, 9], "ids": g_ids, "logprobs": [round(v, 6) for v in g_lps]},
    }

    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump(goldens, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["check", "make"])
    a = ap.parse_args()
    torch.set_num_threads(1)
    check() if a.command == "check" else make()


if __name__ == "__main__":
    main()
