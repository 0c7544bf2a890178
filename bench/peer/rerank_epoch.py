#!/usr/bin/env python3
"""The peer of bench_rerank: one training epoch of KAR's rerankers (DLCM and PRM, with or without
knowledge through the hybrid-expert adapter) written the way KAR's PyTorch code writes them: one
nn.Module per expert looped over, the adapter applied to every list slot and every list's user,
nn.GRU / nn.BatchNorm1d / nn.MultiheadAttention, BCE-with-logits, torch.optim.AdamW, one step per
batch of 64 lists. It reads the training lists, item attributes and knowledge vectors that
bench_rerank writes (DIR/meta.json and raw little-endian arrays), so both train on the same data
with the same shapes and threads. Prints one JSON line per epoch: seconds, lists.

  /usr/bin/python3 bench/peer/rerank_epoch.py DIR --model dlcm --knowledge 1 --epochs 2 --threads 1
"""
import argparse
import json
import math
import os
import random
import time

import peer_threads  # noqa: F401  (before torch: its BLAS pool takes --threads)
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Expert(nn.Module):
    def __init__(self, d_in, hidden, out):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x):
        return F.relu(self.fc2(F.relu(self.fc1(x))))


class HybridExpertAdapter(nn.Module):
    """KAR's HEA: per tower, shared and tower-specific expert MLPs mixed by a softmax gate."""

    def __init__(self, d_in, towers, shared=2, specific=5, hidden=128, out=32):
        super().__init__()
        self.shared = nn.ModuleList([Expert(d_in, hidden, out) for _ in range(shared)])
        self.specific = nn.ModuleList(
            [nn.ModuleList([Expert(d_in, hidden, out) for _ in range(specific)]) for _ in range(towers)])
        self.gates = nn.ModuleList([nn.Linear(d_in, shared + specific) for _ in range(towers)])

    def forward_tower(self, t, x):
        outs = [e(x) for e in self.shared] + [e(x) for e in self.specific[t]]
        experts = torch.stack(outs, dim=1)                      # [N, E, out]
        gate = torch.softmax(self.gates[t](x), dim=-1)          # [N, E]
        return (gate.unsqueeze(-1) * experts).sum(1)            # [N, out]


class Dlcm(nn.Module):
    def __init__(self, d_in, hidden=64):
        super().__init__()
        self.gru = nn.GRU(d_in, hidden, batch_first=True)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, x):
        seq, last = self.gru(x)
        f = torch.tanh(self.fc1(self.bn1(last.squeeze(0))))
        s = self.bn2(seq.transpose(1, 2)).transpose(1, 2)
        z = self.fc2(f.unsqueeze(1) * s)
        return z[..., 0] - z[..., 1]


class Prm(nn.Module):
    def __init__(self, d_in, heads=2, mlp=(200, 80), max_len=16):
        super().__init__()
        pos = torch.zeros(max_len, d_in)
        for p in range(1, max_len):
            for j in range(d_in):
                angle = p / (10000 ** (2 * (j // 2) / d_in))
                pos[p, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
        self.register_buffer("pos", pos)
        self.attn = nn.MultiheadAttention(d_in, heads, batch_first=True)
        layers, d = [], 2 * d_in
        for h in mlp:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(d, 1)

    def forward(self, x):
        h = x + self.pos[: x.size(1)]
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.out(self.mlp(torch.cat([a, h], -1))).squeeze(-1)


class Reranker(nn.Module):
    def __init__(self, meta, model, knowledge, embed=32, out=32):
        super().__init__()
        self.item_emb = nn.Embedding(meta["n_items"], embed)
        self.attr_emb = nn.ModuleList([nn.Embedding(c, embed) for c in meta["attribute_cardinality"]])
        d = embed * (1 + len(meta["attribute_cardinality"]))
        self.knowledge = knowledge
        if knowledge:
            self.adapter = HybridExpertAdapter(meta["user_dim"], towers=2, out=out)
            d += 2 * out
        self.scorer = Dlcm(d) if model == "dlcm" else Prm(d)

    def forward(self, items, attrs, user_vec=None, item_vec=None):
        b, l = items.shape
        parts = [self.item_emb(items)] + [e(attrs[..., a]) for a, e in enumerate(self.attr_emb)]
        if self.knowledge:
            u = self.adapter.forward_tower(0, user_vec)                                  # [B, out]
            parts.append(u.unsqueeze(1).expand(b, l, u.size(-1)))
            parts.append(self.adapter.forward_tower(1, item_vec.reshape(b * l, -1)).view(b, l, -1))
        return self.scorer(torch.cat(parts, -1))


def read(path, dtype, shape):
    return torch.from_numpy(np.fromfile(path, dtype=dtype).reshape(shape))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--model", default="dlcm")
    ap.add_argument("--knowledge", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    random.seed(1)
    with open(os.path.join(args.dir, "meta.json")) as f:
        meta = json.load(f)
    n, length = meta["n_lists"], meta["list_size"]
    items = read(os.path.join(args.dir, "items.bin"), np.int64, (n, length))
    labels = read(os.path.join(args.dir, "labels.bin"), np.float32, (n, length))
    users = read(os.path.join(args.dir, "users.bin"), np.int64, (n,))
    item_attrs = read(os.path.join(args.dir, "item_attributes.bin"), np.int64,
                      (meta["n_items"], len(meta["attribute_cardinality"])))
    user_vec = item_vec = None
    if args.knowledge:
        user_vec = read(os.path.join(args.dir, "user_vectors.bin"), np.float32, (meta["n_users"], meta["user_dim"]))
        item_vec = read(os.path.join(args.dir, "item_vectors.bin"), np.float32, (meta["n_items"], meta["item_dim"]))
        user_vec = (user_vec - user_vec.mean(0)) / (user_vec.std(0) + 1e-6)
        item_vec = (item_vec - item_vec.mean(0)) / (item_vec.std(0) + 1e-6)
    model = Reranker(meta, args.model, args.knowledge)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    steps = math.ceil(n / args.batch) * args.epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    order = list(range(n))
    for epoch in range(args.epochs):
        model.train()
        random.shuffle(order)
        t0 = time.perf_counter()
        for s in range(0, n, args.batch):
            idx = torch.tensor(order[s:s + args.batch])
            it = items[idx]
            logits = model(it, item_attrs[it],
                           user_vec[users[idx]] if args.knowledge else None,
                           item_vec[it] if args.knowledge else None)
            loss = F.binary_cross_entropy_with_logits(logits, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        seconds = time.perf_counter() - t0
        print(json.dumps({"epoch": epoch + 1, "seconds": seconds, "lists": n}), flush=True)


if __name__ == "__main__":
    main()
