#!/usr/bin/env python3
"""Plain-PyTorch reference of the alignment trainers on the real tinystories-656k checkpoint: DPO
(full fine-tune, and LoRA from a given adapter) and SFT, with AdamW, a constant learning rate, gradient
accumulation and norm clipping, pairs in file order. Writes the first optimizer steps' losses and
DPO rewards to tests/data/align/dpo_golden.json, and the LoRA adapter the C++ test starts from.

  /usr/bin/python3 tools/ref/align_dpo_ref.py

The model math is tools/ref/llm_llama_ref.py's (itself checked against the shared greedy golden).
DPO: L = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), log-probs summed over response
tokens; the reference is the model before training (adapters off). SFT: NLL per response token.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llm_llama_ref as ref  # noqa: E402

OUT = os.path.join(ref.ROOT, "tests", "data", "align")
MODEL = os.path.join(ref.SHARED, "models", "tinystories-656k")

# Prompts and answers as token ids of the tinystories tokenizer (from the shared greedy golden).
GOLD = json.load(open(os.path.join(ref.SHARED, "reference", "tinystories-656k-greedy.json")))
P0, G0 = GOLD[0]["prompt_ids"], GOLD[0]["greedy_ids"]
P1, G1 = GOLD[1]["prompt_ids"], GOLD[1]["greedy_ids"]
PAIRS = [
    (P0, G0[:12], G1[:9]),
    (P1, G1[:7], G0[5:19]),
    (P0 + G0[:4], G0[4:10], G1[10:16]),
    (P1 + G1[:6], G0[20:31], G1[6:9]),
    (P0, G1[30:40], G0[40:45]),
    (P1, G0[50:54], G1[20:33]),
    (P0 + G0[:20], G0[20:28], G0[28:30]),
    (P1 + G1[:3], G1[3:15], G0[0:6]),
]
BETA, LR, BATCH, ACCUM, CLIP = 0.1, 1e-3, 2, 2, 1.0


def seq_logprob(cfg, W, prompt, answer, lora):
    ids = torch.tensor([prompt + answer])
    logits = ref.forward(cfg, W, ids, torch.arange(ids.shape[1])[None], lora=lora)[0]
    lp = torch.log_softmax(logits, -1)
    n = len(prompt)
    return sum(lp[n - 1 + i, answer[i]] for i in range(len(answer)))


def dpo_steps(cfg, W, params, lora, ref_lora_off):
    with torch.no_grad():
        ref_lp = [(seq_logprob(cfg, W, p, c, ref_lora_off), seq_logprob(cfg, W, p, r, ref_lora_off)) for p, c, r in PAIRS]
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    per_step = BATCH * ACCUM
    steps = []
    for s in range(0, len(PAIRS), per_step):
        idx = range(s, min(len(PAIRS), s + per_step))
        losses, cr, rr = [], [], []
        for i in idx:
            p, c, r = PAIRS[i]
            pc, pr = seq_logprob(cfg, W, p, c, lora), seq_logprob(cfg, W, p, r, lora)
            rc, rj = ref_lp[i]
            logit = BETA * ((pc - rc) - (pr - rj))
            losses.append(-torch.nn.functional.logsigmoid(logit))
            cr.append(float(BETA * (pc - rc)))
            rr.append(float(BETA * (pr - rj)))
        loss = torch.stack(losses).mean()
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        n = len(losses)
        steps.append({"loss": float(loss), "chosen_reward": sum(cr) / n, "rejected_reward": sum(rr) / n,
                      "margin": (sum(cr) - sum(rr)) / n, "accuracy": sum(1.0 for a, b in zip(cr, rr) if a > b) / n,
                      "grad_norm": float(norm)})
    return steps


def sft_steps(cfg, W, params):
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    examples = [(p, c) for p, c, _ in PAIRS]
    per_step = BATCH * ACCUM
    steps = []
    for s in range(0, len(examples), per_step):
        chunk = examples[s:s + per_step]
        tokens = sum(len(c) for _, c in chunk)
        nll = -sum(seq_logprob(cfg, W, p, c, None) for p, c in chunk)
        loss = nll / tokens
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        steps.append({"loss": float(loss), "grad_norm": float(norm)})
    return steps


def fresh_weights():
    cfg, W = ref.load_checkpoint(MODEL)
    W = {k: v.float().clone() for k, v in W.items()}
    if cfg.get("tie_word_embeddings"):
        W["model.embed_tokens.weight"] = W.get("lm_head.weight", W["model.embed_tokens.weight"])
        W.pop("lm_head.weight", None)
    return cfg, W


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    golden = {"pairs": [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS],
              "beta": BETA, "lr": LR, "batch_size": BATCH, "grad_accum": ACCUM, "max_grad_norm": CLIP}

    # Full fine-tune: every weight trainable (the tied embedding is one tensor).
    cfg, W = fresh_weights()
    params = [W[k].requires_grad_() for k in sorted(W)]
    golden["full"] = dpo_steps(cfg, W, params, None, None)

    # LoRA r=4, alpha=8 on q_proj and v_proj with nonzero A and B (so the first step differs from 0.693),
    # written in PEFT's layout for the C++ test to load.
    cfg, W = fresh_weights()
    for v in W.values():
        v.requires_grad_(False)
    gen = torch.Generator().manual_seed(7)
    r, alpha = 4, 8.0
    lora = {"A": {}, "B": {}, "scaling": alpha / r}
    tensors = {}
    for l in range(cfg["num_hidden_layers"]):
        for m in ("q_proj", "v_proj"):
            name = f"model.layers.{l}.self_attn.{m}"
            out_f, in_f = W[name + ".weight"].shape
            a = (torch.randn(r, in_f, generator=gen) * 0.1)
            b = (torch.randn(out_f, r, generator=gen) * 0.05)
            tensors[f"base_model.model.{name}.lora_A.weight"] = a.clone()
            tensors[f"base_model.model.{name}.lora_B.weight"] = b.clone()
            lora["A"][name] = a.requires_grad_()
            lora["B"][name] = b.requires_grad_()
    adapter_dir = os.path.join(OUT, "dpo-start-adapter")
    os.makedirs(adapter_dir, exist_ok=True)
    ref.write_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
                   "target_modules": ["q_proj", "v_proj"], "bias": "none", "fan_in_fan_out": False,
                   "base_model_name_or_path": "tinystories-656k", "use_rslora": False}, f, indent=2)
        f.write("\n")
    params = [lora[k][n] for k in ("A", "B") for n in sorted(lora[k])]
    golden["lora"] = dpo_steps(cfg, W, params, lora, None)

    # SFT on the chosen answers, full fine-tune.
    cfg, W = fresh_weights()
    params = [W[k].requires_grad_() for k in sorted(W)]
    golden["sft"] = sft_steps(cfg, W, params)

    with open(os.path.join(OUT, "dpo_golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    for k in ("full", "lora"):
        print(k, [round(s["loss"], 6) for s in golden[k]])
    print("sft", [round(s["loss"], 6) for s in golden["sft"]])


if __name__ == "__main__":
    main()
