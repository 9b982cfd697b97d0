#!/usr/bin/env python3
"""PyTorch peer of `build/bin/llama`: the same model and optimizer, for the step time.

  python3 bench/peers/torch_llama.py [--config 9m] [--batch 16] [--seq 128] [--threads 2]
                                     [--keep-openblas-env]

The model is examples/models/llama.h: token embedding, pre-norm blocks (RMSNorm eps 1e-5,
causal attention with interleaved RoPE of base 10000, SwiGLU), a final RMSNorm and an untied
head, no biases; Adam(lr 1e-3) as the trainer's default, next-token cross entropy. 9m: vocab
4096, dim 256, 8 layers, 4 heads, SwiGLU width 768 (8,917,248 parameters). Tokens are drawn
once at random (the step's cost does not depend on them). One step = zero_grad, forward,
loss, backward, optimizer step. Prints the median, min and max ms per step after --warmup
steps. Debian's torch links the reference BLAS; like ../shared/peers/torch_bench.py this
re-executes itself with OpenBLAS (libopenblas0-openmp) first on the library path.
Optional: PyTorch is not a dependency of Lattice.
"""
import argparse
import math
import os
import statistics
import sys
import time

OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
CONFIGS = {"9m": dict(vocab=4096, dim=256, layers=8, heads=4, hidden=768)}


def use_openblas(keep_openblas_env):
    if os.environ.get("_TORCH_LLAMA_REEXEC") == "1" or not os.path.isdir(OPENBLAS_DIR):
        return
    env = dict(os.environ, _TORCH_LLAMA_REEXEC="1")
    env["LD_LIBRARY_PATH"] = OPENBLAS_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    # OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where a machine sets them, force a slower kernel;
    # but on a CPU Debian's OpenBLAS 0.3.21 does not know (a Xeon with AMX) it falls back to its
    # generic Prescott kernels unless OPENBLAS_CORETYPE=SkylakeX is given and kept.
    if not keep_openblas_env:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def llama(torch, nn, F, vocab, dim, layers, heads, hidden, seq):
    head_dim = dim // heads
    inverse = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq, dtype=torch.float64), inverse)
    cos, sin = angles.cos().float()[None, :, None, :], angles.sin().float()[None, :, None, :]

    def rope(x):  # x (B, T, H, head_dim), rotating interleaved pairs
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = RMSNorm(), RMSNorm()
            self.wq, self.wk, self.wv, self.wo = (nn.Linear(dim, dim, bias=False) for _ in range(4))
            self.gate, self.up = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
            self.down = nn.Linear(hidden, dim, bias=False)

        def forward(self, x):
            b, t, _ = x.shape
            h = self.norm1(x)
            q = rope(self.wq(h).view(b, t, heads, head_dim)).transpose(1, 2)
            k = rope(self.wk(h).view(b, t, heads, head_dim)).transpose(1, 2)
            v = self.wv(h).view(b, t, heads, head_dim).transpose(1, 2)
            scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
            attended = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, t, dim)
            x = x + self.wo(attended)
            h = self.norm2(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab, dim)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.norm = RMSNorm()
            self.head = nn.Linear(dim, vocab, bias=False)

        def forward(self, tokens):
            x = self.embedding(tokens)
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    return Model()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="9m", choices=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--keep-openblas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (dropped by default)")
    args = parser.parse_args()
    use_openblas(args.keep_openblas_env)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = CONFIGS[args.config]
    model = llama(torch, nn, F, seq=args.seq, **config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, config["vocab"], (args.batch, args.seq + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, config["vocab"]), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__} llama {args.config} ({parameters} parameters), batch {args.batch} x "
          f"{args.seq}, {args.threads} threads: median {statistics.median(times):.1f} ms/step "
          f"(min {min(times):.1f}, max {max(times):.1f}; {args.steps} steps)")


if __name__ == "__main__":
    main()
