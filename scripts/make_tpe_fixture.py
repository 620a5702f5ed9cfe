"""Optuna's TPE on standard test functions: the fixture that `crates/sweep/tests/tpe_vs_optuna.rs`
compares our TPE with (median best value over seeds, at a fixed number of trials).

Run: bench/.venv/bin/python scripts/make_tpe_fixture.py  (needs `pip install optuna`)
Writes crates/sweep/tests/fixtures/optuna_tpe.json.
"""
import json
import math
import statistics
import sys
import time

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

HARTMANN6_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
HARTMANN6_P = [
    [1312, 1696, 5569, 124, 8283, 5886],
    [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650],
    [4047, 8828, 8732, 5743, 1091, 381],
]
HARTMANN6_ALPHA = [1.0, 1.2, 3.0, 3.2]


def branin(x):
    x1, x2 = x
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def hartmann6(x):
    total = 0.0
    for i in range(4):
        inner = sum(HARTMANN6_A[i][j] * (x[j] - 1e-4 * HARTMANN6_P[i][j]) ** 2 for j in range(6))
        total += HARTMANN6_ALPHA[i] * math.exp(-inner)
    return -total


FUNCTIONS = {
    "branin": (branin, [(-5.0, 10.0), (0.0, 15.0)], 0.397887, 50),
    "hartmann6": (hartmann6, [(0.0, 1.0)] * 6, -3.32237, 100),
}
SEEDS = 20


def run(name, sampler_kind, seed):
    f, bounds, _, trials = FUNCTIONS[name]
    sampler = optuna.samplers.TPESampler(seed=seed) if sampler_kind == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)

    def objective(trial):
        return f([trial.suggest_float(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(bounds)])

    study.optimize(objective, n_trials=trials)
    return study.best_value


def main():
    out = {"optuna": optuna.__version__, "seeds": SEEDS, "functions": {}}
    for name, (_, bounds, optimum, trials) in FUNCTIONS.items():
        t0 = time.time()
        tpe = [run(name, "tpe", s) for s in range(SEEDS)]
        rnd = [run(name, "random", s) for s in range(SEEDS)]
        out["functions"][name] = {
            "dims": len(bounds),
            "bounds": bounds,
            "optimum": optimum,
            "trials": trials,
            "tpe_best": tpe,
            "tpe_median": statistics.median(tpe),
            "random_best": rnd,
            "random_median": statistics.median(rnd),
        }
        print(f"{name}: TPE median {statistics.median(tpe):.5f}, random {statistics.median(rnd):.5f} ({time.time() - t0:.0f} s)", file=sys.stderr)
    path = "crates/sweep/tests/fixtures/optuna_tpe.json"
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
