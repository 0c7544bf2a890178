#!/usr/bin/python3
"""Reference outputs for the first-stage generators of src/data/first_stage.h.

Writes tests/data/data/first_stage_small.json: for a small hand-made set of known item sets,
  - implicit ALS (Hu, Koren, Volinsky 2008) from fixed initial item factors, solved exactly with
    torch.linalg.solve in float64 on the dense confidence-weighted normal equations (no shortcuts:
    C_u = diag(c_ui) over all items), its factors after each iteration and the objective;
  - the fold-in user vector and scores for a history;
  - item-kNN cosine scores computed from scratch on a dense 0/1 user-item matrix in which the
    scored user's known set is replaced by its history (leave-self-out);
  - the first outputs of the data module's generator (splitmix64-seeded xoshiro256**, src/data/rng.h),
    written from the published algorithms.
Run: /usr/bin/python3 tools/ref/data_first_stage.py
"""
import json
import math
import os

import torch

torch.set_default_dtype(torch.float64)

N_ITEMS = 7
KNOWN = [[0, 1, 2], [1, 2, 3], [0, 3, 4, 5], [5, 6], [], [2, 4, 6, 0], [1]]
F, LAM, ALPHA, ITERS = 3, 0.1, 2.0, 3
# Fixed start: y_i = 0.1 * (sin(1 + i*F + k))
INIT = [[0.1 * math.sin(1 + i * F + k) for k in range(F)] for i in range(N_ITEMS)]


def dense(known, n_users):
    p = torch.zeros(n_users, N_ITEMS)
    for u, items in enumerate(known):
        for i in items:
            p[u, i] = 1.0
    return p


def als(known):
    n_users = len(known)
    p = dense(known, n_users)
    c = 1.0 + ALPHA * p
    y = torch.tensor(INIT)
    x = torch.zeros(n_users, F)
    history = []
    for _ in range(ITERS):
        for u in range(n_users):
            a = y.T @ torch.diag(c[u]) @ y + LAM * torch.eye(F)
            b = y.T @ (c[u] * p[u])
            x[u] = torch.linalg.solve(a, b)
        for i in range(N_ITEMS):
            a = x.T @ torch.diag(c[:, i]) @ x + LAM * torch.eye(F)
            b = x.T @ (c[:, i] * p[:, i])
            y[i] = torch.linalg.solve(a, b)
        loss = (c * (p - x @ y.T) ** 2).sum() + LAM * ((x ** 2).sum() + (y ** 2).sum())
        history.append(float(loss))
    return x, y, history


def fold_in(y, history):
    p = torch.zeros(N_ITEMS)
    for i in history:
        p[i] = 1.0
    c = 1.0 + ALPHA * p
    a = y.T @ torch.diag(c) @ y + LAM * torch.eye(F)
    b = y.T @ (c * p)
    xu = torch.linalg.solve(a, b)
    return xu, y @ xu


def knn_scores(known, user, history):
    rows = [list(k) for k in known]
    rows[user] = list(history)
    m = dense(rows, len(rows))
    co = m.T @ m  # diagonal = n_i
    n = torch.diag(co).clone()
    scores = []
    for j in range(N_ITEMS):
        if j in history:
            scores.append(None)
            continue
        s = 0.0
        for i in history:
            if n[j] > 0:
                s += float(co[i, j]) / math.sqrt(float(n[i]) * float(n[j]))
        scores.append(s)
    return scores


M64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Xoshiro:
    def __init__(self, seed):
        self.s = []
        st = seed
        for _ in range(4):
            st, v = splitmix64(st)
            self.s.append(v)

    def next(self):
        s = self.s
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def uniform(self, n):
        limit = M64 - ((M64 % n) + 1) % n
        while True:
            x = self.next()
            if x <= limit:
                return x % n


def derive_seed(seed, stream, index):
    _, a = splitmix64(seed)
    _, b = splitmix64(a ^ ((stream * 0xD1B54A32D192ED03) & M64))
    _, c = splitmix64(b ^ ((index * 0x8CB92BA72F3D8DD7) & M64))
    return c


def _take(rng, n):
    return [rng.next() for _ in range(n)]


def _uniform_seq(rng, m, n):
    return [rng.uniform(m) for _ in range(n)]


def main():
    x, y, losses = als(KNOWN)
    xu, fold_scores = fold_in(y, [0, 3])
    knn_cases = []
    for user, history in [(0, [0, 1]), (2, [0, 3, 4, 5, 6]), (4, [2]), (5, [2, 4])]:
        knn_cases.append({"user": user, "history": history, "scores": knn_scores(KNOWN, user, history)})
    out = {
        "n_items": N_ITEMS,
        "known": KNOWN,
        "als": {
            "factors": F, "regularization": LAM, "alpha": ALPHA, "iterations": ITERS,
            "init_items": [v for row in INIT for v in row],
            "user_factors": [float(v) for v in x.flatten()],
            "item_factors": [float(v) for v in y.flatten()],
            "loss_per_iteration": losses,
            "fold_in_history": [0, 3],
            "fold_in_user": [float(v) for v in xu],
            "fold_in_scores": [float(v) for v in fold_scores],
        },
        "knn": knn_cases,
        "rng": {
            "seed42_next": [str(v) for v in _take(Xoshiro(42), 3)],
            "seed1_uniform10": _uniform_seq(Xoshiro(1), 10, 8),
            "derive_42_3_7": str(derive_seed(42, 3, 7)),
        },
    }
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "tests", "data", "data", "first_stage_small.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
