#!/usr/bin/env python3
"""Golden dequantizations from gguf-py (PyPI `gguf`), for crates/engine/tests/quant_parity.rs.

For every ggml type tunesmith reads, writes raw blocks and the f32 bit patterns gguf-py's
`gguf.quants.dequantize` gives them:
  - synthetic blocks: seeded random bytes with finite f16 scales (every bit pattern of the
    quantized fields occurs), for all thirteen types;
  - real blocks: the first blocks of tensors of the real models, for the types they hold
    (SmolLM2-135M-Instruct Q4_1: Q4_1, Q8_0, F32; Gemma 3 270M Q4_K_M: Q5_0, Q4_K, Q6_K, Q8_0, F32),
    when their GGUF files are given;
  - quantizations: seeded f32 weights (with outliers and an all-zero block) and the bytes
    gguf-py's `gguf.quants.quantize` makes of them, for the legacy types tunesmith writes
    (Q8_0, Q5_0).

  python3 scripts/make_quant_fixture.py crates/engine/tests/fixtures/quant_gguf_py.json \
      [SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf]
"""
import json, sys
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

# Byte offsets of each block's f16 scale fields, which must hold finite values.
SCALES = {
    T.F16: [], T.BF16: [], T.F32: [],
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
BLOCKS = 6


def case(source, qtype, raw):
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    block_len, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    n = raw.size // block_bytes * block_len
    values = dequantize(raw, qtype).astype(np.float32).reshape(-1)
    assert values.size == n
    return {"source": source, "type": qtype.name, "n": int(n), "bytes": raw.tobytes().hex(),
            "bits": [int(v) for v in values.view(np.uint32)]}


def synthetic(rng):
    out = []
    for qtype, scale_offsets in SCALES.items():
        block_len, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        count = BLOCKS * (64 if block_len == 1 else 1)
        raw = rng.integers(0, 256, size=(count, block_bytes), dtype=np.uint8)
        for off in scale_offsets:
            scale = (rng.standard_normal(count) * 0.02).astype(np.float16)
            raw[:, off:off + 2] = scale.view(np.uint8).reshape(count, 2)
        if qtype in (T.F16, T.BF16, T.F32):
            vals = rng.standard_normal(count).astype(np.float32)
            if qtype == T.F16:
                raw = vals.astype(np.float16).view(np.uint8).reshape(count, 2)
            elif qtype == T.BF16:
                raw = (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(count, 2)
            else:
                raw = vals.view(np.uint8).reshape(count, 4)
        out.append(case(f"synthetic {qtype.name}", qtype, raw.reshape(-1)))
    return out


def real(path, label):
    reader = gguf.GGUFReader(path)
    seen, out = set(), []
    for t in reader.tensors:
        if t.tensor_type in seen:
            continue
        seen.add(t.tensor_type)
        block_len, block_bytes = gguf.GGML_QUANT_SIZES[t.tensor_type]
        count = BLOCKS * (64 if block_len == 1 else 1)
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)[: count * block_bytes]
        out.append(case(f"{label} {t.name} first {count} blocks", t.tensor_type, raw))
    return out


def quantizations():
    from gguf.quants import quantize
    rng = np.random.default_rng(20261207)
    x = (rng.standard_normal(32 * 64) * 0.02).astype(np.float32)
    x[::97] *= 9.0
    x[32:64] = 0.0
    out = []
    for qtype in (T.Q8_0, T.Q5_0):
        raw = quantize(x.reshape(-1, 32), qtype).reshape(-1)
        out.append({"type": qtype.name, "bits": [int(v) for v in x.view(np.uint32)], "bytes": raw.tobytes().hex()})
    return out


def main():
    dest = sys.argv[1]
    rng = np.random.default_rng(20261206)
    cases = synthetic(rng)
    for path in sys.argv[2:]:
        cases += real(path, path.rsplit("/", 1)[-1])
    with open(dest, "w") as f:
        json.dump({"generator": f"gguf-py {getattr(gguf, '__version__', '?')}", "cases": cases,
                   "quantize": quantizations()}, f)
        f.write("\n")
    print(f"{dest}: {len(cases)} cases")


if __name__ == "__main__":
    main()
