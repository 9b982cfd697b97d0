#!/usr/bin/env bash
# Data-parallel bit identity (README, "Data-parallel training"): `mpirun -np 2` on loopback must
# write the checkpoint and metrics of one process accumulating the same micro-batches, for fp32
# and for a stochastic-rounding stack with gradient compression, and a run resumed with another
# rank count must continue as the straight run. Usage: data_parallel_check.sh BIN_DIR
set -euo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,tcp
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
mpi() {
  mpirun --oversubscribe -np 2 "$bin/mnist" "$@"
}
alone() {
  "$bin/mnist" "$@"
}
common=(--model mlp --batch 16 --threads 1 --log-every 100 --schedule constant --eval-batches 2)
sr_stack='gemm=mxfp4,gemm.bwd=mxfp4:sr,w=bf16:sr'

# The same run: equal tensor files, checkpoint state and metrics (less wall-clock fields).
same_run() {
  local a=$1 b=$2 what=$3
  cmp "$a"/checkpoint.*.safetensors "$b"/checkpoint.*.safetensors
  cmp <(grep -v metrics_bytes "$a/checkpoint.json") <(grep -v metrics_bytes "$b/checkpoint.json")
  cmp <(sed -E 's/"seconds":[^,}]*//' "$a/metrics.jsonl") \
      <(sed -E 's/"seconds":[^,}]*//' "$b/metrics.jsonl")
  echo "ok: $what"
}

alone "${common[@]}" --steps 4 --accumulate 2 --out "$work/fp32_alone" 2>/dev/null
mpi "${common[@]}" --steps 4 --out "$work/fp32_mpi" 2>/dev/null
same_run "$work/fp32_alone" "$work/fp32_mpi" "fp32, 2 ranks = --accumulate 2"
# The ranks wrote into one directory; rank 1 must not have written a file of its own there.
[ "$(ls "$work/fp32_mpi" | wc -l)" -eq 4 ] || { ls "$work/fp32_mpi"; exit 1; }

sr=("${common[@]}" --stack "$sr_stack" --allreduce-format bf16:sr)
alone "${sr[@]}" --steps 4 --accumulate 4 --out "$work/sr_alone" 2>/dev/null
mpi "${sr[@]}" --steps 4 --accumulate 2 --out "$work/sr_mpi" 2>/dev/null
same_run "$work/sr_alone" "$work/sr_mpi" "SR stack and bf16:sr gradients, 2 ranks x 2 = 4"
# Not the bits of a run without gradient compression: the rounding happened.
alone "${common[@]}" --stack "$sr_stack" --steps 4 --accumulate 4 --out "$work/sr_fp32" 2>/dev/null
! cmp -s "$work"/sr_alone/checkpoint.*.safetensors "$work"/sr_fp32/checkpoint.*.safetensors

# Resumed with another rank count: 2 ranks for 2 steps, then one process to step 4.
mpi "${sr[@]}" --steps 2 --accumulate 2 --out "$work/resumed" 2>/dev/null
alone "${sr[@]}" --steps 4 --accumulate 4 --resume "$work/resumed/checkpoint" \
  --out "$work/resumed" 2>/dev/null
cmp "$work"/resumed/checkpoint.*.safetensors "$work"/sr_alone/checkpoint.*.safetensors
# Its state as the straight run's, less the metrics' length and the tensor file's generation.
cmp <(grep -vE 'metrics_bytes|"tensors"' "$work/resumed/checkpoint.json") \
    <(grep -vE 'metrics_bytes|"tensors"' "$work/sr_alone/checkpoint.json")
echo "ok: 2 ranks resumed by 1 process"
