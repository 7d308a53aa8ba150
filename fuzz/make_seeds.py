#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz/corpus (small, deterministic).

The real seeds (the synth GGUF, bible config files, templates) are copied in by
hand; see fuzz/README.md. Run from the repository root: python3 fuzz/make_seeds.py
"""
import json
import os
import random
import struct

SEP = b"\n@@@@\n"  # kPartSeparator in fuzz_targets.h
rng = random.Random(1234)
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(harness, name, data):
    os.makedirs(os.path.join(root, harness), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(root, harness, name), "wb") as f:
        f.write(data)


# ---- GGUF
def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gval(t, v):
    if t == 8:
        return gstr(v)
    if t == 9:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gval(et, i) for i in items)
    return struct.pack(SCALAR[t], v)


def gguf(kvs, tensors, align=32, version=3):
    """kvs: [(key, type, value)]; tensors: [(name, ne list, ggml type, bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + gval(t, v)
    offset = 0
    for name, ne, t, data in tensors:
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", t, offset)
        offset += (len(data) + align - 1) // align * align
    out += b"\0" * (-len(out) % align)
    for _, _, _, data in tensors:
        out += data + b"\0" * (-len(data) % align)
    return out


put("gguf", "kv-every-type.gguf", gguf([
    ("general.architecture", 8, "llama"), ("u8", 0, 7), ("i8", 1, -7), ("u16", 2, 700), ("i16", 3, -700),
    ("u32", 4, 70000), ("i32", 5, -70000), ("f32", 6, 1.5), ("bool", 7, True), ("u64", 10, 1 << 40),
    ("i64", 11, -(1 << 40)), ("f64", 12, 2.25), ("general.alignment", 4, 64),
    ("strs", 9, (8, ["a", "bb", ""])), ("nested", 9, (9, [(4, [1, 2]), (4, [])])),
], [("t", [4], 0, struct.pack("<4f", 1, 2, 3, 4))], align=64))
put("gguf", "v2-empty.gguf", gguf([], [], version=2))

# One tensor of each type tpinfer reads: one row of one block of random bytes
# (a valid-looking scale for the float types).
BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
         30: (1, 2)}
for t, (bs, ts) in BLOCK.items():
    n = bs if bs > 1 else 8
    data = bytes(rng.randrange(256) for _ in range(ts * (n // bs)))
    put("gguf", f"tensor-type{t}.gguf", gguf([], [("w", [n, 2], t, data * 2)]))

# Tokenizers in GGUF metadata: SentencePiece ("llama") and byte-level BPE ("gpt2").
spm_tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "\u2581a", "b", "ab", "\u2581ab"]
put("gguf", "tokenizer-spm.gguf", gguf([
    ("tokenizer.ggml.model", 8, "llama"), ("tokenizer.ggml.tokens", 9, (8, spm_tokens)),
    ("tokenizer.ggml.scores", 9, (6, [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0])),
    ("tokenizer.ggml.token_type", 9, (5, [2, 3, 3] + [6] * 256 + [1] * 5)),
    ("tokenizer.ggml.bos_token_id", 4, 1), ("tokenizer.ggml.eos_token_id", 4, 2),
    ("tokenizer.ggml.add_bos_token", 7, True)], []))
bl = [chr(c) for c in range(0x21, 0x7F)] + ["\u0120", "\u0120t", "he", "\u0120the", "<|endoftext|>"]
put("gguf", "tokenizer-gpt2.gguf", gguf([
    ("tokenizer.ggml.model", 8, "gpt2"), ("tokenizer.ggml.pre", 8, "llama-bpe"),
    ("tokenizer.ggml.tokens", 9, (8, bl)), ("tokenizer.ggml.token_type", 9, (5, [1] * (len(bl) - 1) + [3])),
    ("tokenizer.ggml.merges", 9, (8, ["\u0120 t", "h e", "\u0120t he"])),
    ("tokenizer.ggml.eos_token_id", 4, len(bl) - 1)], []))


# ---- safetensors
def st(tensors, meta=None):
    hdr, data = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "three-dtypes.safetensors", st([
    ("a", "F32", [2, 3], struct.pack("<6f", *range(6))), ("b", "F16", [4], bytes(8)),
    ("c", "BF16", [2, 2], bytes(range(8))), ("empty", "F32", [0, 5], b"")], {"format": "pt"}))
put("safetensors", "header-only.safetensors", struct.pack("<Q", 2) + b"{}")
put("safetensors", "scalar.safetensors", st([("s", "F32", [], struct.pack("<f", 3.0))]))

# ---- Hugging Face folder: config.json, index, tokenizer_config.json, model.safetensors
def hf_model(hidden=8, heads=2, kv=1, ffn=16, vocab=16, layers=1, tied=True):
    hd = hidden // heads
    shapes = {"model.embed_tokens.weight": [vocab, hidden], "model.norm.weight": [hidden]}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": [hidden], p + "post_attention_layernorm.weight": [hidden],
                       p + "self_attn.q_proj.weight": [heads * hd, hidden],
                       p + "self_attn.k_proj.weight": [kv * hd, hidden],
                       p + "self_attn.v_proj.weight": [kv * hd, hidden],
                       p + "self_attn.o_proj.weight": [hidden, heads * hd],
                       p + "mlp.gate_proj.weight": [ffn, hidden], p + "mlp.up_proj.weight": [ffn, hidden],
                       p + "mlp.down_proj.weight": [hidden, ffn]})
    tensors = []
    for name, shape in shapes.items():
        n = 1
        for d in shape:
            n *= d
        tensors.append((name, "BF16", shape, bytes(rng.randrange(256) for _ in range(2 * n))))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": ffn,
              "num_hidden_layers": layers, "vocab_size": vocab, "max_position_embeddings": 64,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": tied,
              "bos_token_id": 1, "eos_token_id": [2, 3]}
    index = {"metadata": {"total_size": sum(len(t[3]) for t in tensors)},
             "weight_map": {name: "model.safetensors" for name in shapes}}
    return config, index, st(tensors)


cfg, idx, model = hf_model()
tok_cfg = {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>", "chat_template": "{{ messages }}"}
put("hf_folder", "llama-tiny", SEP.join([json.dumps(cfg, indent=1).encode(), json.dumps(idx).encode(),
                                         json.dumps(tok_cfg).encode(), model]))
put("hf_folder", "llama-tiny-no-index", SEP.join([json.dumps(cfg).encode(), b"", b"", model]))
cfg2 = dict(cfg, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
put("hf_folder", "qwen2-config-only", json.dumps(cfg2).encode())

# ---- tokenizer.json (+ tokenizer_config.json)
bpe_vocab = {c: i for i, c in enumerate(bl[:-1])}
bpe_tok = {"version": "1.0", "added_tokens": [{"id": len(bl) - 1, "content": "<|endoftext|>", "special": True,
                                               "single_word": False, "lstrip": False, "rstrip": False,
                                               "normalized": False}],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "vocab": bpe_vocab, "merges": ["\u0120 t", "h e", "\u0120t he"]}}
put("hf_tokenizer", "bpe-bytelevel.json", json.dumps(bpe_tok))
spm_vocab = {t: i for i, t in enumerate(spm_tokens)}
spm_tok = {"version": "1.0", "added_tokens": [{"id": 0, "content": "<unk>", "special": True},
                                              {"id": 1, "content": "<s>", "special": True},
                                              {"id": 2, "content": "</s>", "special": True}],
           "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                             {"type": "Replace", "pattern": {"String": " "},
                                                              "content": "\u2581"}]},
           "pre_tokenizer": None,
           "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"},
                                                         "content": " "}, {"type": "ByteFallback"},
                                                        {"type": "Fuse"}, {"type": "Strip", "content": " ",
                                                                           "start": 1, "stop": 0}]},
           "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>", "vocab": spm_vocab,
                     "merges": ["a b", "\u2581 a", "\u2581 ab"]}}
put("hf_tokenizer", "spm-bytefallback", SEP.join([json.dumps(spm_tok).encode(), json.dumps(tok_cfg).encode()]))

# ---- tokenizer text
for i, s in enumerate(["In the beginning God created the heaven and the earth.", "  leading  and trailing  ",
                       "\u2581x \u00e9t\u00e9 \u4e2d\u6587 \U0001F600 12345 don't", "<s></s><|endoftext|>\t\n\r",
                       "\xff\xfe broken \xc3"]):
    put("tokenizer", f"text-{i}", s.encode("utf-8", "surrogateescape") if i < 4 else b"\xff\xfe broken \xc3")

# ---- chat messages (JSON)
put("chat_messages", "tools.json", json.dumps({
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": "c1", "type": "function", "function": {"name": "get", "arguments": {"city": "Oslo"}}}]},
                 {"role": "tool", "content": "{\"t\": 3}", "tool_call_id": "c1"}],
    "tools": [{"type": "function", "function": {"name": "get", "description": "weather",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}],
    "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>"}))
put("chat_messages", "plain.json", json.dumps([{"role": "user", "content": "hi"},
                                                {"role": "assistant", "content": "hello"},
                                                {"role": "user", "content": "\u00e9\u4e2d"}]))
