#!/usr/bin/env python3
"""PyTorch peer of `build/bin/mnist` (MLP): the same model, data and settings, for seconds/epoch.

  python3 bench/peers/torch_mnist_mlp.py [--epochs 5] [--threads 2] [--hidden 512] [--cosine]

Fashion-MNIST from /usr/share/datasets/fashion-mnist (IDX, gzipped), pixels /255 normalised
with mean 0.2860 and std 0.3530, MLP 784-H-H-10 (ReLU), Adam lr 1e-3, batch 512 (last partial
batch kept), shuffled per epoch; cosine learning-rate decay to 0 with --cosine. Prints the
training seconds of each epoch (data already in memory, evaluation excluded) and the test
accuracy after each epoch. Optional: PyTorch is not a dependency of Lattice.
"""
import argparse
import gzip
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DIR = "/usr/share/datasets/fashion-mnist/"


def load(name, offset):
    with gzip.open(DIR + name) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--cosine", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def images(name):
        x = torch.tensor(load(name, 16).reshape(-1, 784), dtype=torch.float32) / 255
        return (x - 0.2860) / 0.3530

    xtr, xte = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
    ytr = torch.tensor(load("train-labels-idx1-ubyte.gz", 8).astype(np.int64))
    yte = torch.tensor(load("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
    h = args.hidden
    model = nn.Sequential(nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps_per_epoch = math.ceil(len(xtr) / 512)
    total = args.epochs * steps_per_epoch
    step = 0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xtr))
        start = time.perf_counter()
        for i in range(0, len(xtr), 512):
            if args.cosine:
                for g in opt.param_groups:
                    g["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / total))
            idx = perm[i:i + 512]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
            step += 1
        seconds = time.perf_counter() - start
        with torch.no_grad():
            accuracy = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1}: {seconds:.2f} s, test accuracy {100 * accuracy:.2f}%", flush=True)


if __name__ == "__main__":
    main()
