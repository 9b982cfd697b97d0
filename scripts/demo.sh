#!/usr/bin/env bash
# The README demo: trains the mnist MLP on Fashion-MNIST twice — in fp32, and with every GEMM
# operand (forward and backward) in MXFP4 — then prints both runs side by side and plots their
# loss curves (runs/demo/loss.png). DEMO_EPOCHS (default 3) and DEMO_STACK (default mxfp4)
# change the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin
epochs="${DEMO_EPOCHS:-3}"
low="${DEMO_STACK:-mxfp4}"

for stack in fp32 "$low"; do
  echo "== mnist MLP, $epochs epochs, stack $stack =="
  "$bin/mnist" --epochs "$epochs" --stack "$stack" --log-every 100 --out "runs/demo/$stack"
  echo
done
echo "== Both runs =="
"$bin/lattice" plot "runs/demo/fp32" "runs/demo/$low" --metric loss --out runs/demo/loss.png \
  --title "mnist MLP: fp32 vs $low"
echo
echo "loss curves: runs/demo/loss.png; metrics, summaries and checkpoints under runs/demo/"
