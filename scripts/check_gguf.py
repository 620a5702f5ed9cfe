#!/usr/bin/env python3
"""Opens GGUF files with the reference reader (gguf-py, PyPI `gguf`) and dequantizes every tensor,
printing each file's type, architecture, tensor count and tensor types: the live check that the
files tunesmith exports read cleanly outside tunesmith.

  python3 scripts/check_gguf.py model.gguf adapter.gguf
"""
import sys
from collections import Counter

import numpy as np
import gguf
from gguf.quants import dequantize


def check(path):
    r = gguf.GGUFReader(path)
    field = lambda k: r.fields[k].contents() if k in r.fields else None
    types = Counter(t.tensor_type.name for t in r.tensors)
    for t in r.tensors:
        values = dequantize(t.data, t.tensor_type)
        if values.size != int(np.prod(t.shape)) or not np.isfinite(values).all():
            raise SystemExit(f"{path}: tensor {t.name} does not dequantize to {t.shape} finite values")
    print(f"{path}: general.type={field('general.type')} arch={field('general.architecture')} "
          f"tensors={len(r.tensors)} {dict(types)} lora_alpha={field('adapter.lora.alpha')}")


for p in sys.argv[1:]:
    check(p)
