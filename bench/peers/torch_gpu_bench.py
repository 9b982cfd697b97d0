#!/usr/bin/env python3
"""PyTorch CUDA training-step times of the models build/bin/bench_mlp and bench_llama time with
--device cuda, for side-by-side GPU numbers (scripts/gpu_check.sh runs both on one card).

  python3 bench/peers/torch_gpu_bench.py [--steps 50] [--warmup 10] [--models mlp,llama]
                                         [--mnist-epoch DIR]

mlp   : 784-256-256-10, ReLU, batch 512, cross entropy, Adam(lr=1e-3), float32
llama : vocab 256, dim 256, 4 layers, 4 heads, SwiGLU hidden 688, RMSNorm, RoPE (interleaved
        pairs, base 10000), causal attention, untied head, seq 128, batch 16, AdamW(3e-4, wd 0.1);
        float32 (TF32 off, as Lattice's GEMMs) and bf16 autocast
mnist epoch (--mnist-epoch DIR, the IDX files train-images-idx3-ubyte and train-labels-idx1-ubyte
        in DIR): the mlp above over every training image once in shuffled batches of 512 from
        a pinned host tensor (normalised as Lattice's mnist trainer does), as
        `mnist --device cuda --hidden 256` trains; the median of 3 epochs after one warm-up epoch
One step = zero_grad + forward + loss + backward + optimizer step + loss.item() (Lattice's
benchmarks read the loss every step too). Prints the median ms per step after the warm-up.
Optional: PyTorch is not a dependency of Lattice.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):
    # x: (B, T, H, d); rotates the interleaved pairs (2i, 2i + 1)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), -1).flatten(-2)


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        h = self.norm1(x)
        q = rope(self.wq(h).view(b, t, self.heads, -1), cos, sin).transpose(1, 2)
        k = rope(self.wk(h).view(b, t, self.heads, -1), cos, sin).transpose(1, 2)
        v = self.wv(h).view(b, t, self.heads, -1).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(a.transpose(1, 2).reshape(b, t, d))
        h = self.norm2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    def __init__(self, vocab=256, dim=256, layers=4, heads=4, hidden=688, length=128):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden) for _ in range(layers))
        self.norm, self.head = RMSNorm(dim), nn.Linear(dim, vocab, bias=False)
        half = dim // heads // 2
        angles = torch.outer(torch.arange(length, dtype=torch.float64),
                             10000.0 ** (-torch.arange(half, dtype=torch.float64) / half))
        self.register_buffer("cos", angles.cos().float()[None, :, None, :])
        self.register_buffer("sin", angles.sin().float()[None, :, None, :])

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(self.norm(x))


def time_steps(step, warmup, steps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def mnist_epoch_seconds(directory, device):
    images = read_idx(f"{directory}/train-images-idx3-ubyte").reshape(-1, 784).float() / 255
    images = ((images - 0.2860) / 0.3530).pin_memory()
    labels = read_idx(f"{directory}/train-labels-idx1-ubyte").long().pin_memory()
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 10)).to(device)
    adam = torch.optim.Adam(mlp.parameters(), lr=1e-3)

    def epoch():
        order = torch.randperm(len(labels))
        for start in range(0, len(labels), 512):
            batch = order[start:start + 512]
            x = images[batch].to(device, non_blocking=True)
            y = labels[batch].to(device, non_blocking=True)
            adam.zero_grad()
            loss = F.cross_entropy(mlp(x), y)
            loss.backward()
            adam.step()
            loss.item()

    return len(labels), time_steps(epoch, 1, 3) / 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--models", default="mlp,llama")
    parser.add_argument("--mnist-epoch", metavar="DIR")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")
    torch.manual_seed(0)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    models = args.models.split(",")
    if args.mnist_epoch:
        images, seconds = mnist_epoch_seconds(args.mnist_epoch, device)
        print(f"torch mnist mlp epoch ({images} images, b512): median {seconds:.4f} s/epoch")
    if "mlp" in models:
        mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                            nn.Linear(256, 10)).to(device)
        adam = torch.optim.Adam(mlp.parameters(), lr=1e-3)
        x = torch.randn(512, 784, device=device)
        y = torch.arange(512, device=device) % 10

        def mlp_step():
            adam.zero_grad()
            loss = F.cross_entropy(mlp(x), y)
            loss.backward()
            adam.step()
            loss.item()

        print(f"torch mlp 784-256-256-10 b512 adam fp32: median "
              f"{time_steps(mlp_step, args.warmup, args.steps):.3f} ms/step")
    if "llama" in models:
        for dtype in ("fp32", "bf16"):
            llama = Llama().to(device)
            adamw = torch.optim.AdamW(llama.parameters(), lr=3e-4, weight_decay=0.1)
            tokens = torch.randint(0, 256, (16, 129), device=device)

            def llama_step():
                adamw.zero_grad()
                with torch.autocast("cuda", torch.bfloat16, enabled=dtype == "bf16"):
                    logits = llama(tokens[:, :-1])
                loss = F.cross_entropy(logits.float().reshape(-1, 256), tokens[:, 1:].reshape(-1))
                loss.backward()
                adamw.step()
                loss.item()

            print(f"torch llama d256 L4 H4 b16x128 adamw {dtype}: median "
                  f"{time_steps(llama_step, args.warmup, args.steps):.3f} ms/step")


if __name__ == "__main__":
    main()
