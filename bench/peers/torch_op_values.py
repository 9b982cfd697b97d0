#!/usr/bin/env python3
"""PyTorch peer of `build/bin/op_values`: recomputes each case's values and gradients in float64
and lists where Lattice differs.

  build/bin/op_values > values.jsonl
  python3 bench/peers/torch_op_values.py values.jsonl

A value agrees when both are NaN, both the same infinity, or within 1e-9 relative (absolute
below magnitude 1); the sign of a zero is not compared. The optimizer cases (four steps on
float32 parameters) agree within 1e-6 relative. The few differences kept on purpose are listed
in BY_DESIGN with the reason. Exits 1 when any other case differs or failed. Optional: PyTorch
is not a dependency of Lattice.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
TOLERANCE = 1e-9


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def batch_norm(x, w, b):
    running_mean, running_var = torch.zeros(3), torch.ones(3)
    y = F.batch_norm(x, running_mean, running_var, w, b, True, 0.1, 1e-5)
    return torch.cat([y.reshape(-1), running_mean, running_var])


def causal_attention(q, k, v):
    scores = q @ k.transpose(-1, -2) * 0.7
    future = torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), -1) @ v


def rope(x):
    """LLaMA's rotation of the interleaved pairs (x[2i], x[2i+1]) of x (B, T, H, D) by the
    angle t * 10000^(-2i/D) of position t, its cos and sin rounded to float32 as Lattice's
    tables are."""
    _, positions, _, dim = x.shape
    angles = torch.arange(positions)[:, None] * 10000.0 ** (-torch.arange(0, dim, 2) / dim)
    cos = torch.cos(angles).float().double()[None, :, None, :]
    sin = torch.sin(angles).float().double()[None, :, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)


ROW_TARGETS = torch.tensor([0, 1, 1, 2, 3, 0, 1, 2, 3, 1])
OPS = {
    "exp": torch.exp, "log": torch.log, "tanh": torch.tanh, "relu": torch.relu,
    "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "abs": torch.abs, "sign": torch.sign,
    "neg": torch.neg, "sigmoid": torch.sigmoid, "silu": F.silu, "sin": torch.sin,
    "cos": torch.cos, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "clamp": lambda x: torch.clamp(x, -1, 1),
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
    "maximum": torch.maximum, "minimum": torch.minimum,
    "sum": lambda x: x.sum(1), "mean": lambda x: x.mean(1), "max": lambda x: x.amax(1),
    "var": lambda x: x.var(1), "logsumexp": lambda x: torch.logsumexp(x, 1),
    "log_softmax": lambda x: torch.log_softmax(x, 1), "softmax": lambda x: torch.softmax(x, 1),
    "cross_entropy": lambda x: F.cross_entropy(x, ROW_TARGETS, reduction="none"),
    "layer_norm": lambda x, w, b: F.layer_norm(x, (5,), w, b, 1e-5),
    "rms_norm": lambda x, w: rms_norm(x, w, 1e-6),
    "group_norm": lambda x, w, b: F.group_norm(x, 3, w, b, 1e-5),
    "batch_norm": batch_norm,
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
    "adaptive_max_pool2d": lambda x: F.adaptive_max_pool2d(x, (3, 2)),
    "max_pool2d": lambda x: F.max_pool2d(x, 3, 2, 1, 1, ceil_mode=True),
    "max_pool2d dilated": lambda x: F.max_pool2d(x, (3, 2), (2, 1), 1, (2, 2)),
    "avg_pool2d": lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True),
    "avg_pool2d without padding counted":
        lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    "upsample_nearest2d": lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
    "pad": lambda x: F.pad(x, (1, 2, -1, 1), value=0.5),
    "conv2d": lambda x, w, b: F.conv2d(x, w, b, (2, 1), (1, 2), (2, 1), 2),
    "cross_entropy weighted, smoothed, ignoring": lambda x: F.cross_entropy(
        x, torch.tensor([0, 4, -100, 2, 1, 3]), weight=torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0]),
        ignore_index=-100, label_smoothing=0.1),
    "causal attention": causal_attention,
    "log_softmax axis 0": lambda x: torch.log_softmax(x, 0),
    "linear": F.linear,
    "matmul broadcast": torch.matmul,
    "mse": F.mse_loss,
    "embedding": lambda w: F.embedding(torch.tensor([[4, 0, 4], [2, 1, 4]]), w, padding_idx=4),
    "index_select": lambda x: torch.index_select(x, 1, torch.tensor([3, 0, 3, 4])),
    "gather": lambda x: torch.gather(x, 1, torch.tensor([[0, 3, 3], [1, 2, 2], [0, 0, 1]])),
    "cat and stack": lambda a, b, c: torch.cat([torch.stack([a, c], 1).reshape(2, 6), b], 1),
    "where": lambda a, b: torch.where(a > b, a, b),
    "rope": rope,
}


# Differences kept on purpose: (case, output, index) -> why Lattice's value is the better one.
BY_DESIGN = {
    ("var", "y", 6): "row (1e308, 1e308, -1e308, 0): its squared deviations overflow, so inf; "
                     "PyTorch's update formula gives NaN",
    ("logsumexp", "dx", 24): "the same row: the gradient is softmax, 1/2 for each 1e308; PyTorch's "
                             "exp(x - result) gives 1 because the result rounds to 1e308",
    ("logsumexp", "dx", 25): "as the element before it",
}


def number(v):
    return float(v)  # JSON strings "nan", "inf", "-inf", "-0.0" included


def agree(got, want):
    if math.isnan(want):
        return math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    return abs(got - want) <= TOLERANCE * max(1.0, abs(want))


def differences(case, label, got, want):
    """'label: k of n differ (index: lattice vs torch, ...)' or None; BY_DESIGN ones left out."""
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(map(number, got), want))
           if not agree(g, w) and (case, label, i) not in BY_DESIGN]
    if len(got) != len(want):
        return f"{label}: {len(got)} values, PyTorch has {len(want)}"
    if not bad:
        return None
    shown = ", ".join(f"[{i}] {g!r} vs {w!r}" for i, g, w in bad[:3])
    return f"{label}: {len(bad)} of {len(want)} differ ({shown})"


def check(case):
    name = case["op"]
    if "error" in case:
        return [f"Lattice threw: {case['error']}"]
    f = OPS.get(name)
    if f is None and name.startswith("pow "):
        exponent = number(json.loads(name[4:]))
        f = lambda x: x.pow(exponent)  # noqa: E731
    if f is None:
        return ["no PyTorch counterpart in this script"]
    inputs = {k: torch.tensor([number(v) for v in spec["data"]]).reshape(spec["shape"])
              .requires_grad_(True) for k, spec in case["inputs"].items()}
    y = f(*inputs.values())
    if list(y.shape) != case["y_shape"]:
        return [f"shape {case['y_shape']}, PyTorch's {list(y.shape)}"]
    w = torch.tensor([number(v) for v in case["w"]]).reshape(y.shape)
    (y * w).sum().backward()
    problems = [differences(name, "y", case["y"], y.detach().flatten().tolist())]
    for k, g in case["grads"].items():
        want = inputs[k].grad
        if want is None:
            want = torch.zeros_like(inputs[k])
        problems.append(f"d{k}: Lattice gives none" if g is None else
                        differences(name, f"d{k}", g, want.flatten().tolist()))
    return [p for p in problems if p]


OPTIMIZERS = {
    "sgd": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd),
    "sgd momentum 0.9, dampening 0.1":
        lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, dampening=0.1, weight_decay=wd),
    "sgd nesterov 0.9":
        lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd),
    "adam": lambda p, lr, wd: torch.optim.Adam(p, lr=lr, betas=(0.8, 0.99), eps=1e-3,
                                               weight_decay=wd),
    "adamw": lambda p, lr, wd: torch.optim.AdamW(p, lr=lr, betas=(0.8, 0.99), eps=1e-3,
                                                 weight_decay=wd),
}


def check_optimizer(case):
    """The steps again with torch.optim on float32 parameters: within 1e-6 relative."""
    params = [torch.tensor([number(v) for v in p0], dtype=torch.float32, requires_grad=True)
              for p0 in case["p0"]]
    optimizer = OPTIMIZERS[case["optimizer"]](params, case["lr"], case["weight_decay"])
    for grads in case["grads"]:
        for p, g in zip(params, grads):
            p.grad = torch.tensor([number(v) for v in g], dtype=torch.float32)
        optimizer.step()
    problems = []
    for i, (p, got) in enumerate(zip(params, case["p"])):
        bad = [j for j, (a, b) in enumerate(zip(map(number, got), p.detach().double().tolist()))
               if abs(a - b) > 1e-6 * max(1.0, abs(b))]
        if bad:
            problems.append(f"p{i}: {len(bad)} of {len(got)} differ "
                            f"([{bad[0]}] {got[bad[0]]} vs {p[bad[0]].item()})")
    return problems


def main():
    failed = 0
    with open(sys.argv[1]) as lines:
        for line in lines:
            case = json.loads(line)
            name = case.get("op") or "optimizer " + case["optimizer"]
            problems = check(case) if "op" in case else check_optimizer(case)
            failed += bool(problems)
            print(f"{name:45s} {'ok' if not problems else '; '.join(problems)}")
    for (case, label, index), why in BY_DESIGN.items():
        print(f"by design: {case} {label}[{index}]: {why}")
    print(f"{failed} case(s) differ" if failed else "every case agrees with PyTorch")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
