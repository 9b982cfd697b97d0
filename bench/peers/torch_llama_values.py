#!/usr/bin/env python3
"""PyTorch peer of `build/bin/llama_values`: rebuilds its tiny LLaMA with bench/peers/
torch_llama.py's model (the one the step-time comparisons use), loads the same parameters,
runs the same batch in float64 and compares the loss and every parameter gradient.

  build/bin/llama_values > llama.json
  python3 bench/peers/torch_llama_values.py llama.json

Lattice computes in float32, so the loss must agree within 1e-5 relative and each gradient
within 1e-4 of its tensor's largest magnitude. Exits 1 when anything differs. Optional: PyTorch
is not a dependency of Lattice.
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama import llama  # noqa: E402

# Lattice's parameter names -> the PyTorch model's (SwiGLU: w1 gate, w3 up, w2 down).
RENAMES = {"attention.": "", "feed_forward.w1": "gate", "feed_forward.w3": "up",
           "feed_forward.w2": "down"}


def torch_name(name):
    for lattice_part, torch_part in RENAMES.items():
        name = name.replace(lattice_part, torch_part)
    return name


def main():
    case = json.load(open(sys.argv[1]))
    torch.set_default_dtype(torch.float64)
    model = llama(torch, nn, F, case["vocab"], case["dim"], case["layers"], case["heads"],
                  case["hidden"], case["seq"]).double()
    parameters = dict(model.named_parameters())
    names = {torch_name(name): name for name in case["parameters"]}
    if set(names) != set(parameters):
        print("parameter names differ:", sorted(set(names) ^ set(parameters)))
        sys.exit(1)
    with torch.no_grad():
        for name, lattice_name in names.items():
            values = torch.tensor(case["parameters"][lattice_name]["data"])
            parameters[name].copy_(values.reshape(parameters[name].shape))
    tokens = torch.tensor(case["tokens"], dtype=torch.int64).reshape(case["batch"], case["seq"] + 1)
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, case["vocab"]), tokens[:, 1:].reshape(-1))
    loss.backward()

    failed = 0
    got_loss = case["loss"][0]
    ok = abs(got_loss - loss.item()) <= 1e-5 * abs(loss.item())
    failed += not ok
    print(f"{'loss':40s} {'ok' if ok else 'DIFFERS'}: Lattice {got_loss:.9g}, PyTorch {loss.item():.9g}")
    for name, lattice_name in names.items():
        want = parameters[name].grad.flatten()
        got = torch.tensor(case["parameters"][lattice_name]["grad"])
        error = (got - want).abs().max().item()
        scale = want.abs().max().item()
        ok = error <= 1e-4 * max(scale, 1e-30)
        failed += not ok
        print(f"d {lattice_name:38s} {'ok' if ok else 'DIFFERS'}: largest error {error:.2e} "
              f"of largest gradient {scale:.2e}")
    print(f"{failed} value(s) differ" if failed else "the loss and every gradient agree with PyTorch")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
