#!/usr/bin/env python3
"""Plain-PyTorch reference of the rerank models (hybrid-expert adapter, DLCM, PRM) written from
KAR's public description, independent of the C++ code. The knowledge vectors are standardised
per dimension with fixed buffers before the adapter (our addition; identity in KAR). Writes small goldens that
tests/rerank/model_test.cpp compares against: the weights, the inputs, the scores in eval mode
(batch-norm running statistics) and in train mode (batch statistics), the BCE loss on the
probabilities (KAR's nn.BCELoss) and the gradient of every parameter.

Trusted pieces: torch.nn.GRU, torch.nn.functional.batch_norm and torch.nn.MultiheadAttention are
PyTorch's own; the adapter and the phi function are a few lines each below.

Usage: /usr/bin/python3 tools/ref/rerank_ref.py [--out tests/data/rerank]
"""
import argparse
import json
import math
import os

import torch
import torch.nn.functional as F

SHAPE = {
    "n_items": 7, "attribute_cardinality": [4, 3], "embed_dim": 2, "user_dim": 5, "item_dim": 5,
    "shared_experts": 2, "specific_experts": 3, "expert_hidden": 6, "expert_out": 3,
    "gru_hidden": 5, "heads": 2, "prm_mlp": [10, 6],
}
B, L = 3, 5


def input_dim(s):
    return s["embed_dim"] * (1 + len(s["attribute_cardinality"])) + 2 * s["expert_out"]


def make_params(model, s, g):
    """Named parameters (the C++ module's names) with random values."""
    p = {}

    def rnd(*shape, scale=0.5):  # float32-representable values, so C++ loads exactly these weights
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).float().double()

    def linear(name, i, o):
        p[name + ".weight"] = rnd(o, i)
        p[name + ".bias"] = rnd(o, scale=0.1)

    p["item_embedding.weight"] = rnd(s["n_items"], s["embed_dim"])
    for a, c in enumerate(s["attribute_cardinality"]):
        p[f"attr_embeddings.{a}.weight"] = rnd(c, s["embed_dim"])
    d, h, o = s["user_dim"], s["expert_hidden"], s["expert_out"]
    for e in range(s["shared_experts"]):
        linear(f"adapter.shared.{e}.fc1", d, h)
        linear(f"adapter.shared.{e}.fc2", h, o)
    for t in range(2):
        for e in range(s["specific_experts"]):
            linear(f"adapter.specific.{t}.{e}.fc1", d, h)
            linear(f"adapter.specific.{t}.{e}.fc2", h, o)
        linear(f"adapter.gates.{t}", d, s["shared_experts"] + s["specific_experts"])
    D = input_dim(s)
    if model == "dlcm":
        H = s["gru_hidden"]
        p["scorer.gru.weight_ih_l0"] = rnd(3 * H, D)
        p["scorer.gru.weight_hh_l0"] = rnd(3 * H, H)
        p["scorer.gru.bias_ih_l0"] = rnd(3 * H, scale=0.1)
        p["scorer.gru.bias_hh_l0"] = rnd(3 * H, scale=0.1)
        for bn in ("bn1", "bn2"):
            p[f"scorer.{bn}.weight"] = 1 + rnd(H, scale=0.2)
            p[f"scorer.{bn}.bias"] = rnd(H, scale=0.1)
        linear("scorer.fc1", H, H)
        linear("scorer.fc2", H, 2)
    else:
        p["scorer.attn.in_proj_weight"] = rnd(3 * D, D, scale=0.3)
        p["scorer.attn.in_proj_bias"] = rnd(3 * D, scale=0.1)
        linear("scorer.attn.out_proj", D, D)
        i = 2 * D
        for k, w in enumerate(s["prm_mlp"]):
            linear(f"scorer.mlp.{k}", i, w)
            i = w
        linear("scorer.fc_out", i, 1)
    return p


def make_buffers(model, s, g):
    b = {}
    for kind in ("user", "item"):  # per-dimension standardisation of the knowledge vectors
        d = s[kind + "_dim"]
        b[f"{kind}_mean"] = (torch.randn(d, generator=g, dtype=torch.float64) * 0.2).float().double()
        b[f"{kind}_inv_std"] = (0.5 + torch.rand(d, generator=g, dtype=torch.float64)).float().double()
    if model == "dlcm":
        H = s["gru_hidden"]
        for bn in ("bn1", "bn2"):
            b[f"scorer.{bn}.running_mean"] = (torch.randn(H, generator=g, dtype=torch.float64) * 0.3).float().double()
            b[f"scorer.{bn}.running_var"] = (0.5 + torch.rand(H, generator=g, dtype=torch.float64)).float().double()
            b[f"scorer.{bn}.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    return b


def expert(p, name, x):
    h = F.relu(F.linear(x, p[name + ".fc1.weight"], p[name + ".fc1.bias"]))
    return F.relu(F.linear(h, p[name + ".fc2.weight"], p[name + ".fc2.bias"]))


def tower(p, s, t, x):
    """KAR's HEA for one tower: softmax gate over [shared experts..., tower experts...]."""
    outs = [expert(p, f"adapter.shared.{e}", x) for e in range(s["shared_experts"])]
    outs += [expert(p, f"adapter.specific.{t}.{e}", x) for e in range(s["specific_experts"])]
    experts = torch.stack(outs, dim=-2)                                   # [..., E, out]
    gate = torch.softmax(F.linear(x, p[f"adapter.gates.{t}.weight"], p[f"adapter.gates.{t}.bias"]), -1)
    return (gate.unsqueeze(-1) * experts).sum(-2)                         # [..., out]


def position_table(n, d):
    """KAR's PRM table: row 0 zeros; row p: sin at even j, cos at odd j of p / 10000^(2*(j//2)/d)."""
    t = torch.zeros(n, d, dtype=torch.float64)
    for pos in range(1, n):
        for j in range(d):
            a = pos / math.pow(10000, 2 * (j // 2) / d)
            t[pos, j] = math.sin(a) if j % 2 == 0 else math.cos(a)
    return t


def forward(model, s, p, buf, inp, training):
    """Scores (probabilities) [B, L]."""
    items, attrs = inp["items"], inp["attrs"]
    parts = [F.embedding(items, p["item_embedding.weight"])]
    for a in range(len(s["attribute_cardinality"])):
        parts.append(F.embedding(attrs[:, :, a], p[f"attr_embeddings.{a}.weight"]))
    uv = (inp["user_vec"] - buf["user_mean"]) * buf["user_inv_std"]
    iv = (inp["item_vec"] - buf["item_mean"]) * buf["item_inv_std"]
    u = tower(p, s, 0, uv)                                                # [B, out]
    parts.append(u.unsqueeze(1).expand(-1, items.shape[1], -1))
    parts.append(tower(p, s, 1, iv))                                      # [B, L, out]
    x = torch.cat(parts, -1)                                              # [B, L, D]
    if model == "dlcm":
        H = s["gru_hidden"]
        gru = torch.nn.GRU(x.shape[-1], H, batch_first=True).double()
        with torch.no_grad():
            for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(gru, n).copy_(p["scorer.gru." + n])
        # Route the gradient to our own tensors: functional GRU call with our parameters.
        seq, last = torch._VF.gru(x, torch.zeros(1, x.shape[0], H, dtype=x.dtype),
                                  [p["scorer.gru.weight_ih_l0"], p["scorer.gru.weight_hh_l0"],
                                   p["scorer.gru.bias_ih_l0"], p["scorer.gru.bias_hh_l0"]],
                                  True, 1, 0.0, training, False, True)
        ref_seq, ref_last = gru(x)
        assert torch.allclose(seq, ref_seq) and torch.allclose(last, ref_last)
        final = last.squeeze(0)

        def bn(name, v):
            return F.batch_norm(v, buf[f"scorer.{name}.running_mean"], buf[f"scorer.{name}.running_var"],
                                p[f"scorer.{name}.weight"], p[f"scorer.{name}.bias"], training, 0.1, 1e-5)
        f = torch.tanh(F.linear(bn("bn1", final), p["scorer.fc1.weight"], p["scorer.fc1.bias"]))
        st = bn("bn2", seq.transpose(1, 2)).transpose(1, 2)
        z = F.linear(f.unsqueeze(1) * st, p["scorer.fc2.weight"], p["scorer.fc2.bias"])
        return torch.softmax(z, -1)[:, :, 0]
    D = x.shape[-1]
    h = x + position_table(x.shape[1], D)
    mha = torch.nn.MultiheadAttention(D, s["heads"], batch_first=True).double()
    attn, _ = F.multi_head_attention_forward(
        h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1), D, s["heads"],
        p["scorer.attn.in_proj_weight"], p["scorer.attn.in_proj_bias"], None, None, False, 0.0,
        p["scorer.attn.out_proj.weight"], p["scorer.attn.out_proj.bias"], training=training, need_weights=False)
    attn = attn.transpose(0, 1)
    with torch.no_grad():  # the module form must agree with the functional call
        mha.in_proj_weight.copy_(p["scorer.attn.in_proj_weight"])
        mha.in_proj_bias.copy_(p["scorer.attn.in_proj_bias"])
        mha.out_proj.weight.copy_(p["scorer.attn.out_proj.weight"])
        mha.out_proj.bias.copy_(p["scorer.attn.out_proj.bias"])
        ref, _ = mha(h, h, h)
        assert torch.allclose(ref, attn)
    z = torch.cat([attn, h], -1)
    for k in range(len(s["prm_mlp"])):
        z = F.relu(F.linear(z, p[f"scorer.mlp.{k}.weight"], p[f"scorer.mlp.{k}.bias"]))
    return torch.sigmoid(F.linear(z, p["scorer.fc_out.weight"], p["scorer.fc_out.bias"])).squeeze(-1)


def short(x):
    """Floats with 9 significant digits: enough to round-trip float32, half the text of repr()."""
    if isinstance(x, list):
        return [short(v) for v in x]
    return float("%.9g" % x) if isinstance(x, float) else x


def tolist(t):
    return short(t.detach().double().tolist()) if t.dtype.is_floating_point else t.tolist()


def golden(model, seed):
    g = torch.Generator().manual_seed(seed)
    s = dict(SHAPE, model=model)
    p = make_params(model, s, g)
    buf = make_buffers(model, s, g)
    inp = {
        "items": torch.randint(0, s["n_items"], (B, L), generator=g),
        "attrs": torch.stack([torch.randint(0, c, (B, L), generator=g) for c in s["attribute_cardinality"]], -1),
        "user_vec": torch.randn(B, s["user_dim"], generator=g, dtype=torch.float64).float().double(),
        "item_vec": torch.randn(B, L, s["item_dim"], generator=g, dtype=torch.float64).float().double(),
        "labels": (torch.rand(B, L, generator=g) < 0.4).double(),
    }
    out = {"shape": s, "params": {k: {"shape": list(v.shape), "data": tolist(v.flatten())} for k, v in p.items()},
           "buffers": {k: {"shape": list(v.shape), "data": tolist(v.flatten())} for k, v in buf.items()},
           "inputs": {k: tolist(v) for k, v in inp.items()}}
    with torch.no_grad():
        out["eval_scores"] = tolist(forward(model, s, p, {k: v.clone() for k, v in buf.items()}, inp, False))
    for v in p.values():
        v.requires_grad_(True)
    tb = {k: v.clone() for k, v in buf.items()}
    scores = forward(model, s, p, tb, inp, True)
    loss = F.binary_cross_entropy(scores, inp["labels"])  # KAR: nn.BCELoss on the probabilities
    loss.backward()
    out["train_scores"] = tolist(scores)
    out["train_loss"] = short(loss.item())
    out["grads"] = {k: tolist(v.grad.flatten()) for k, v in p.items()}
    out["buffers_after_train"] = {k: tolist(v.flatten()) for k, v in tb.items() if k.endswith(("mean", "var"))}
    out["position_table_10x6"] = tolist(position_table(10, 6))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "rerank"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for i, model in enumerate(("dlcm", "prm")):
        path = os.path.join(args.out, f"golden_{model}.json")
        with open(path, "w") as f:
            json.dump(golden(model, 1234 + i), f, separators=(",", ":"))
        print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
