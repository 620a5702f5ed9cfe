#!/usr/bin/env python3
"""Opacus' privacy accountants over a grid, for crates/train/tests/privacy_accountant.rs.

For every (noise multiplier, sampling rate, steps, delta) of the grid, records the epsilon of
Opacus' `RDPAccountant` and `PRVAccountant` (default eps_error 0.01, delta_error delta/1000),
and for a few (target epsilon, sampling rate, steps, delta) the noise multiplier
`opacus.accountants.utils.get_noise_multiplier` solves for (RDP, epsilon tolerance 0.01).

  python3 scripts/make_privacy_fixture.py crates/train/tests/fixtures/privacy_accountant.json

Needs `pip install opacus` (1.6.0 made the committed file).
"""
import itertools, json, sys, warnings
import opacus
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

warnings.simplefilter("ignore")


def eps(accountant, sigma, q, steps, delta):
    acc = accountant()
    acc.history = [(sigma, q, steps)]
    return float(acc.get_epsilon(delta=delta))


grid = []
for sigma, q, steps, delta in itertools.product(
    [0.6, 1.0, 1.5, 3.0], [0.001, 0.01, 0.064], [10, 300, 3000], [1e-5, 1e-7]
):
    row = {"noise_multiplier": sigma, "sample_rate": q, "steps": steps, "delta": delta}
    row["rdp_epsilon"] = eps(RDPAccountant, sigma, q, steps, delta)
    try:
        row["prv_epsilon"] = eps(PRVAccountant, sigma, q, steps, delta)
    except Exception as e:  # a domain Opacus itself refuses: recorded, and skipped by the test
        row["prv_error"] = str(e)
    grid.append(row)

noise = []
for target, q, steps, delta in [(8.0, 0.0047, 1000, 1e-5), (3.0, 0.0047, 1000, 1e-5), (1.0, 0.01, 500, 1e-6)]:
    sigma = get_noise_multiplier(target_epsilon=target, target_delta=delta, sample_rate=q, steps=steps)
    noise.append({"target_epsilon": target, "sample_rate": q, "steps": steps, "delta": delta, "noise_multiplier": sigma})

out = {"opacus": opacus.__version__, "grid": grid, "noise": noise}
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1)
print(f"{len(grid)} grid points, {len(noise)} noise solves -> {sys.argv[1]}")
