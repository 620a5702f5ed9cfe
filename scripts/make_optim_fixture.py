#!/usr/bin/env python3
"""Golden optimizer trajectories from torch.optim, for crates/engine/tests/optim_parity.rs.

Two parameters in two param groups (own lr and weight decay), 10 steps of AdamW and of SGD
(momentum + Nesterov, and plain momentum with dampening), with fixed per-step gradients and
global grad-norm clipping at 1.0 before each step. Writes JSON with every value as float32.

  python3 scripts/make_optim_fixture.py crates/engine/tests/fixtures/optim_torch.json
"""
import json, sys
import torch

torch.manual_seed(0)
p0 = torch.randn(5, 3)
p1 = torch.randn(7)
grads = [[torch.randn(5, 3) * 0.5, torch.randn(7) * 2.0] for _ in range(10)]


def run(make_opt):
    a = p0.clone().requires_grad_(True)
    b = p1.clone().requires_grad_(True)
    opt = make_opt([a, b])
    traj, norms = [], []
    for g0, g1 in grads:
        a.grad = g0.clone()
        b.grad = g1.clone()
        norms.append(float(torch.nn.utils.clip_grad_norm_([a, b], 1.0)))
        opt.step()
        traj.append([a.detach().flatten().tolist(), b.detach().flatten().tolist()])
    return dict(trajectory=traj, grad_norms=norms)


cases = {
    "adamw": run(lambda ps: torch.optim.AdamW([{"params": [ps[0]], "lr": 1e-2, "weight_decay": 0.1},
                                             {"params": [ps[1]], "lr": 3e-3, "weight_decay": 0.0}],
                                            betas=(0.9, 0.999), eps=1e-8)),
    "sgd_nesterov": run(lambda ps: torch.optim.SGD([{"params": [ps[0]], "lr": 0.1, "weight_decay": 0.01},
                                                   {"params": [ps[1]], "lr": 0.05, "weight_decay": 0.0}],
                                                  momentum=0.9, nesterov=True)),
    "sgd_dampened": run(lambda ps: torch.optim.SGD([{"params": [ps[0]], "lr": 0.1, "weight_decay": 0.0},
                                                   {"params": [ps[1]], "lr": 0.2, "weight_decay": 0.05}],
                                                  momentum=0.8, dampening=0.3)),
}
out = dict(torch=torch.__version__, p0=p0.flatten().tolist(), p1=p1.flatten().tolist(),
           grads=[[g0.flatten().tolist(), g1.flatten().tolist()] for g0, g1 in grads], cases=cases)
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
