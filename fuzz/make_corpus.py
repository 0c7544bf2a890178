#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets (fuzz/corpus/NAME/): small inputs of every
format, made here or taken from the project's own test fixtures (tests/data), never from
../shared. scripts/fuzz.sh adds seeds cut from the real files in ../shared at run time.
   fuzz/make_corpus.py            (rewrites fuzz/corpus/*/seed-*; inputs that once crashed, crash-*, stay)
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
SEP = b"\n--file--\n"


def read(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes)"""
    header, off, blob = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def gguf(kvs, tensors, alignment=32):
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, typ, val in kvs:
        out += s(key) + struct.pack("<I", typ)
        if typ == 8:
            out += s(val)
        elif typ == 4:
            out += struct.pack("<I", val)
        elif typ == 6:
            out += struct.pack("<f", val)
        elif typ == 9:
            et, items = val
            out += struct.pack("<IQ", et, len(items))
            for it in items:
                out += s(it) if et == 8 else struct.pack("<i", it)
    data, off = b"", 0
    for name, dims, raw in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", 0, off)
        pad = (alignment - len(raw) % alignment) % alignment
        data += raw + b"\0" * pad
        off += len(raw) + pad
    out += b"\0" * ((alignment - len(out) % alignment) % alignment)
    return out + data


def main():
    # Tokenizers: the tests' WordPiece fixture and a hand-made byte-level BPE.
    put("tokenizer_json", "wordpiece.json", read("tests/data/encode/bert-tiny/tokenizer.json"))
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "\u0120": 4, "\u0120a": 5, "<|eot_id|>": 6}
    bpe = {
        "version": "1.0",
        "added_tokens": [{"id": 6, "content": "<|eot_id|>", "special": True, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False}],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|eot_id|>", "type_id": 0}},
                                                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {"<|eot_id|>": {"id": "<|eot_id|>", "ids": [6], "tokens": ["<|eot_id|>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["a b", "\u0120 a"]},
    }
    put("tokenizer_json", "bytelevel-bpe.json", json.dumps(bpe, ensure_ascii=False))
    put("tokenizer_json", "sentencepiece-like.json", json.dumps({
        "version": "1.0", "added_tokens": [], "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None, "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                     {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True,
                  "vocab": {"<unk>": 0, "<0x41>": 1, "\u2581": 2, "a": 3, "\u2581a": 4}, "merges": [["\u2581", "a"]]}},
        ensure_ascii=False))

    # Text to encode: ASCII, accents, CJK, emoji, specials, invalid UTF-8, long runs of spaces/digits.
    for i, t in enumerate([b"Hello, world! It's 1999.", "Caf\u00e9 na\u00efve \u4e2d\u6587 \U0001F600".encode(),
                           b"<|begin_of_text|>Hi<|eot_id|>", b"\xff\xfe\xc3(\xe2\x82 bad", b" " * 40 + b"1234567890" * 5,
                           b"[CLS] don't STOP [SEP] \t\n\r\x00"]):
        put("tokenizer_encode", "text-%d" % i, t)

    # safetensors: the tests' LoRA fixture, and a hand-made file with metadata, alias and dtypes.
    st_lora = read("tests/data/llm/tiny-llama31-lora/adapter_model.safetensors")
    put("safetensors", "lora-fixture.safetensors", st_lora)
    put("safetensors", "dtypes.safetensors", safetensors(
        [("a", "F32", [2, 2], f32([1, 2, 3, 4])), ("b", "BF16", [3], b"\x80\x3f\x00\x40\x40\x40"),
         ("c", "F16", [1, 2], b"\x00\x3c\x00\x40"), ("d", "I64", [1], struct.pack("<q", 7))],
        {"format": "pt", "tied": "a"}))
    put("safetensors", "empty.safetensors", safetensors([]))

    for m in ("tiny-llama31", "tiny-mistral", "tiny-qwen2"):
        put("model_config", m + ".json", read("tests/data/llm/%s/config.json" % m))

    # Run configurations: the demo and the planted-label design, with overrides after the separator.
    put("run_config", "demo.toml", read("configs/demo.toml") + SEP + b"run.rounds=1\ngenerate.n=3\nrerank.epochs=2")
    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        if name.endswith(".toml") and name != "demo.toml":
            put("run_config", name, read("configs/" + name))
    put("run_config", "sets-only.toml", b"" + SEP + b'run.dir="x"\nknowledge.encoder="fields:hash"\neval.seeds=[1,2]')

    # Ratings: made-up users and items in each layout (first byte 0 / 1 / 2 picks it).
    genre = "unknown|0\nAction|1\nComedy|2\nDrama|3\n"
    users = "".join("%d|%d|%s|student|0000%d\n" % (u, 20 + u, "MF"[u % 2], u) for u in range(1, 7))
    items = "".join("%d|Film %d, The (199%d)|01-Jan-199%d||http://x|0|%d|%d|%d\n" % (i, i, i, i, i % 2, (i + 1) % 2, 1)
                    for i in range(1, 21))
    data = "".join("%d\t%d\t%d\t%d\n" % (u, i, 1 + (u * i) % 5, 880000000 + 100 * u + i)
                   for u in range(1, 7) for i in range(u, u + 7))
    put("ratings", "ml-100k", b"\x00" + (genre + SEP.decode() + users + SEP.decode() + items + SEP.decode() + data).encode())
    users1 = "".join("%d::%s::25::4::0000%d\n" % (u, "MF"[u % 2], u) for u in range(1, 7))
    movies1 = "".join("%d::Film %d, A (199%d)::Action|Comedy\n" % (i, i, i) for i in range(1, 21))
    ratings1 = "".join("%d::%d::%d::%d\n" % (u, i, 1 + (u + i) % 5, 960000000 + 100 * u + i)
                       for u in range(1, 7) for i in range(u + 1, u + 8))
    put("ratings", "ml-1m", b"\x01" + (users1 + SEP.decode() + movies1 + SEP.decode() + ratings1).encode())
    reviews = "".join(json.dumps({"reviewerID": "U%d" % u, "asin": "B%04d" % i, "overall": float(1 + (u + i) % 5),
                                  "unixReviewTime": 1400000000 + 100 * u + i}) + "\n"
                      for u in range(1, 7) for i in range(u + 2, u + 9))
    meta = "".join(json.dumps({"asin": "B%04d" % i, "title": "Book &amp; %d" % i, "brand": "Press %d" % (i % 3),
                               "category": ["Books", "Fiction %d" % (i % 2)]}) + "\n" for i in range(1, 21))
    put("ratings", "amazon", b"\x02" + (reviews + SEP.decode() + meta).encode())

    # JSON / JSONL files (first byte mod 5 picks the reader).
    put("jsonl", "responses", b"\x00" + b'{"user": "1", "sample": 0, "text": "Likes: Comedy."}\n{"user": 2, "text": "x"}\n\n'
        b'{"user": "1", "text": "second"}\n')
    put("jsonl", "user-knowledge", b"\x01" + b'{"user": "3", "text": "likes films"}\n{"user": 4, "text": ""}\n')
    put("jsonl", "kar-items", b"\x02" + json.dumps({"1": {"prompt": "p", "ans": "a film"}, "2": {"ans": "b"}}).encode())
    put("jsonl", "trl-conversational", b"\x03" + (json.dumps({
        "prompt": [{"role": "user", "content": "Tell me a story."}],
        "chosen": [{"role": "assistant", "content": "Once upon a time."}],
        "rejected": [{"role": "assistant", "content": "No."}]}) + "\n" + json.dumps({
            "prompt": "A cat", "chosen": " sat.", "rejected": " ran away."}) + "\n" + json.dumps({
                "chosen": "A dog barked.", "rejected": "A dog."}) + "\n").encode())
    put("jsonl", "trl-llama3-cut", b"\x26" + (json.dumps({"prompt": "Lily had a red ball and she liked it very much",
                                                        "chosen": " so she played with it all day long in the park",
                                                        "rejected": "."}) + "\n").encode())
    put("jsonl", "llamafactory", b"\x04" + json.dumps({"prefs": {"file_name": "pairs.json", "ranking": True,
                                                               "columns": {"prompt": "instruction", "query": "input",
                                                                           "chosen": "chosen", "rejected": "rejected"}}}).encode()
        + SEP + json.dumps([{"instruction": "Tell a story", "input": "", "chosen": "Once.", "rejected": "No.",
                             "rlrf_prompt_ids": [1, 2], "rlrf_chosen_ids": [3], "rlrf_rejected_ids": [4]}]).encode())

    # Prepared data and reranker checkpoints (fuzz/corpus/{prepared,rerank_checkpoint}/seed-*) were
    # made by the built rlrf from the synthetic ML-100K above, its four parts written to DIR/ml-100k/:
    #   rlrf prepare --config P.toml --data-dir DIR --out OUT    (P.toml: [prepare] list_size = 5, real_per_list = 2)
    #   rlrf rerank --prepared OUT/prepared.bin --knowledge none --item-knowledge metadata --seeds 1 \
    #     --epochs 1 --save-models --out RR        (RR/models/{dlcm,prm}-base-seed1.rrk)

    put("gguf", "tiny.gguf", gguf([("general.architecture", 8, "llama"), ("llama.block_count", 4, 1),
                                   ("llama.rope.freq_base", 6, 10000.0),
                                   ("tokenizer.ggml.tokens", 9, (8, ["a", "b", "<s>"])),
                                   ("tokenizer.ggml.token_type", 9, (5, [1, 1, 3]))],
                                  [("token_embd.weight", [4, 3], f32(range(12))), ("output_norm.weight", [4], f32([1] * 4))]))
    put("gguf", "no-tensors.gguf", gguf([("general.alignment", 4, 64)], [], 64))

    put("peft_adapter", "fixture", read("tests/data/llm/tiny-llama31-lora/adapter_config.json") + SEP + st_lora)
    return 0


if __name__ == "__main__":
    sys.exit(main())
