#!/usr/bin/env python3
"""PyTorch side of `cargo run --release -p bench -- ops`: times forward+backward of the same ops,
on the same shapes and thread count, and prints one JSON object {case_name: median_ms}.

  python3 bench/ops_peer.py CASES.json --threads 2 [--precision fp32|bf16]

With --precision bf16 each forward runs under torch.autocast("cpu", dtype=torch.bfloat16), as a
CPU user of bf16 mixed precision runs it.

CASES.json is written by the Rust bench: a list of {name, op, ...shape fields}.
"""
import argparse, json, time
import torch
import torch.nn.functional as F


def timeit(fn, min_time=0.6, warmup=3, max_iters=200):
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time and len(times) < max_iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e3


def case_fn(c, precision="fp32"):
    fn = case_body(c)
    if precision != "bf16":
        return fn
    def autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fn()
    return autocast


def case_body(c):
    g = torch.Generator().manual_seed(0)
    rn = lambda *s, grad=True: torch.randn(*s, generator=g).requires_grad_(grad)
    op = c["op"]
    if op in ("linear", "linear_frozen"):
        x, w, b = rn(c["n"], c["in"]), rn(c["out"], c["in"], grad=op == "linear"), rn(c["out"], grad=op == "linear")
        def f():
            y = F.linear(x, w, b)
            y.backward(torch.ones_like(y))
            x.grad = None; w.grad = None; b.grad = None
        return f
    if op == "lora":
        x, w = rn(c["n"], c["in"]), rn(c["out"], c["in"], grad=False)
        a, bm = rn(c["r"], c["in"]), rn(c["out"], c["r"])
        scale, p = c["scale"], c["dropout"]
        def f():
            y = F.linear(x, w) + F.linear(F.linear(F.dropout(x, p, True), a), bm) * scale
            y.backward(torch.ones_like(y))
            x.grad = None; a.grad = None; bm.grad = None
        return f
    if op == "attention":
        b, t, h, hkv, d = c["b"], c["t"], c["h"], c["hkv"], c["d"]
        q, k, v = rn(b, h, t, d), rn(b, hkv, t, d), rn(b, hkv, t, d)
        def f():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=hkv != h)
            o.backward(torch.ones_like(o))
            q.grad = None; k.grad = None; v.grad = None
        return f
    if op == "layer_norm":
        x, gm, bt = rn(c["n"], c["d"]), rn(c["d"]), rn(c["d"])
        def f():
            y = F.layer_norm(x, (c["d"],), gm, bt, 1e-5)
            y.backward(torch.ones_like(y))
            x.grad = None; gm.grad = None; bt.grad = None
        return f
    if op == "rms_norm":
        x, gm = rn(c["n"], c["d"]), rn(c["d"])
        def f():
            y = F.rms_norm(x, (c["d"],), gm, 1e-6)
            y.backward(torch.ones_like(y))
            x.grad = None; gm.grad = None
        return f
    if op == "cross_entropy":
        h = (torch.randn(c["n"], c["d"], generator=g) * c.get("h_scale", 1.0)).requires_grad_(True)
        w = rn(c["v"], c["d"])
        y = torch.randint(0, c["v"], (c["n"],), generator=g)
        def f():
            loss = F.cross_entropy(F.linear(h, w), y)
            loss.backward()
            h.grad = None; w.grad = None
        return f
    raise ValueError(op)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cases")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cases = json.load(open(a.cases))
    out = {"torch": torch.__version__}
    for c in cases:
        out[c["name"]] = timeit(case_fn(c, a.precision))
    print(json.dumps(out))
