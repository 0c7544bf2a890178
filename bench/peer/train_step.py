#!/usr/bin/env python3
"""The peer of bench_train_sizes: the same DPO and SFT training as rlrf4rec's, written the way a
PyTorch user writes it (plain PyTorch modules, autograd, torch.optim.AdamW, CPU autocast for bf16),
on a randomly initialised Llama of the given shape. Prints one JSON line: seconds, tokens, steps.

  /usr/bin/python3 bench/peer/train_step.py --pass dpo --finetune lora --dtype bf16 --threads 2 \
      --hidden 768 --layers 12 --heads 12 --kv-heads 12 --intermediate 2048 --vocab 32000 \
      --pairs 4 --prompt-tokens 128 --response-tokens 64 --batch 2 --grad-accum 2

Layout as TRL's: chosen and rejected as two rows sharing nothing, right-padded, the prompt's
tokens masked out of the loss. DPO: reference log-probs once (no grad, adapters off or the initial
weights), then sigmoid loss with beta 0.1; SFT: mean cross-entropy of the response tokens. Both:
AdamW lr 5e-5, gradient clipping at 1.0, one epoch; LoRA r 8, alpha 16 on all seven projections.
bf16: fp32 master weights, matmuls in bf16 under torch.autocast("cpu") (as rlrf4rec's dtype = "bf16").
The timed span matches bench_train_sizes's: the reference pass (DPO) and the training loop.
"""
import argparse
import json
import math
import random
import time

import peer_threads  # noqa: F401  (before torch: its BLAS pool takes --threads)
import torch
import torch.nn as nn
import torch.nn.functional as F


class LoraLinear(nn.Module):
    def __init__(self, n_in, n_out, r=0, alpha=16.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in).normal_(0, 0.02))
        self.r = r
        self.lora_on = True
        if r:
            self.weight.requires_grad_(False)
            self.lora_A = nn.Parameter(torch.empty(r, n_in).uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
            self.lora_B = nn.Parameter(torch.zeros(n_out, r))
            self.scale = alpha / r

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.r and self.lora_on:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale
        return y


class RMSNorm(nn.Module):
    def __init__(self, n, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Layer(nn.Module):
    def __init__(self, a, r):
        super().__init__()
        h, d = a.hidden, a.hidden // a.heads
        self.heads, self.kv, self.d = a.heads, a.kv_heads, d
        self.q_proj = LoraLinear(h, a.heads * d, r)
        self.k_proj = LoraLinear(h, a.kv_heads * d, r)
        self.v_proj = LoraLinear(h, a.kv_heads * d, r)
        self.o_proj = LoraLinear(a.heads * d, h, r)
        self.gate_proj = LoraLinear(h, a.intermediate, r)
        self.up_proj = LoraLinear(h, a.intermediate, r)
        self.down_proj = LoraLinear(a.intermediate, h, r)
        self.input_layernorm = RMSNorm(h)
        self.post_attention_layernorm = RMSNorm(h)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.heads, self.d).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.kv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.heads // self.kv
        if g > 1:
            k = k.repeat_interleave(g, dim=1)
            v = v.repeat_interleave(g, dim=1)
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d) + mask
        p = torch.softmax(s.float(), dim=-1).to(q.dtype)
        o = torch.matmul(p, v).transpose(1, 2).reshape(B, T, -1)
        x = x + self.o_proj(o)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, a, r):
        super().__init__()
        self.embed = nn.Parameter(torch.empty(a.vocab, a.hidden).normal_(0, 0.02))
        self.layers = nn.ModuleList([Layer(a, r) for _ in range(a.layers)])
        self.norm = RMSNorm(a.hidden)
        d = a.hidden // a.heads
        self.inv_freq = 1.0 / (a.rope_theta ** (torch.arange(0, d, 2).float() / d))

    def forward(self, ids):
        B, T = ids.shape
        x = F.embedding(ids, self.embed)
        freqs = torch.arange(T).float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        dt = torch.bfloat16 if torch.is_autocast_cpu_enabled() else x.dtype
        cos, sin = emb.cos().to(dt), emb.sin().to(dt)
        mask = torch.full((T, T), torch.finfo(dt).min, dtype=dt).triu(1)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return F.linear(self.norm(x), self.embed).float()  # tied head, logits in fp32


def set_lora(model, on):
    for m in model.modules():
        if isinstance(m, LoraLinear):
            m.lora_on = on


def sequence_logps(model, rows):
    """rows: list of (prompt, response) id lists -> summed log-probs of each response [n]."""
    T = max(len(p) + len(r) for p, r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    for i, (p, r) in enumerate(rows):
        seq = p + r
        ids[i, :len(seq)] = torch.tensor(seq)
        labels[i, len(p):len(seq)] = torch.tensor(r)
    logits = model(ids)[:, :-1]
    labels = labels[:, 1:]
    mask = labels != -100
    lp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (lp * mask).sum(-1), mask.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pass", dest="stage", choices=["dpo", "sft"], required=True)
    ap.add_argument("--finetune", choices=["lora", "full"], required=True)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], required=True)
    ap.add_argument("--threads", type=int, required=True)
    for k in ["hidden", "layers", "heads", "kv-heads", "intermediate", "vocab", "pairs", "prompt-tokens",
              "response-tokens", "batch", "grad-accum"]:
        ap.add_argument("--" + k, type=int, required=True)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rng = random.Random(7)
    model = Llama(a, 8 if a.finetune == "lora" else 0)
    pairs = []
    for _ in range(a.pairs):
        prompt = [1] + [rng.randrange(3, a.vocab) for _ in range(a.prompt_tokens - 1)]
        chosen = [rng.randrange(3, a.vocab) for _ in range(a.response_tokens)]
        rejected = [rng.randrange(3, a.vocab) for _ in range(a.response_tokens * 3 // 4)]
        pairs.append((prompt, chosen, rejected))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16")
    t0 = time.perf_counter()
    tokens, steps = 0, 0
    if a.stage == "dpo":
        ref = []
        with torch.no_grad(), autocast:
            set_lora(model, False)
            for i in range(0, a.pairs, a.batch):
                batch = pairs[i:i + a.batch]
                rows = [(p, c) for p, c, _ in batch] + [(p, r) for p, _, r in batch]
                lp, _ = sequence_logps(model, rows)
                ref.append(lp.float())
            set_lora(model, True)
    micro = 0
    for i in range(0, a.pairs, a.batch):
        batch = pairs[i:i + a.batch]
        with autocast:
            if a.stage == "dpo":
                rows = [(p, c) for p, c, _ in batch] + [(p, r) for p, _, r in batch]
                lp, _ = sequence_logps(model, rows)
                lp = lp.float()
                n = len(batch)
                r = ref[i // a.batch]
                margin = (lp[:n] - r[:n]) - (lp[n:] - r[n:])
                loss = -F.logsigmoid(0.1 * margin).mean()
            else:
                rows = [(p, c) for p, c, _ in batch]
                lp, count = sequence_logps(model, rows)
                loss = -lp.sum() / count
        tokens += sum(len(p) + len(c) for p, c in rows)
        (loss / a.grad_accum).backward()
        micro += 1
        if micro % a.grad_accum == 0 or i + a.batch >= a.pairs:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            steps += 1
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "tokens": tokens, "steps": steps}))


if __name__ == "__main__":
    main()
