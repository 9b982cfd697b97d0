#!/usr/bin/env bash
# Every CPU speed goal measured together, as README's Benchmarks section reports them: ROUNDS
# rounds, each running all the benchmarks one after another (the machine's speed drifts, so a
# ratio is only read within its round), then one table with a column per round and, per goal,
# in how many rounds it was met.
#   bench/cpu_goals.sh [ROUNDS] [BIN_DIR]      defaults: 3 rounds, build/bin
# PyTorch's steps come from ../shared/peers/torch_bench.py (PyTorch with OpenBLAS on its AVX-512
# kernels); without PyTorch those rows say so. Each round's raw lines go to stderr.
set -uo pipefail
cd "$(dirname "$0")/.."

readonly ROUNDS=${1:-3}
readonly BIN=${2:-build/bin}
readonly PEER=../shared/peers/torch_bench.py

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "cpu_goals: ROUNDS must be a positive integer, got '$ROUNDS'" >&2; exit 2; }
for binary in bench_gemm bench_mlp bench_llama bench_cnn bench_quantize; do
  [ -x "$BIN/$binary" ] || { echo "cpu_goals: $BIN/$binary is missing (build first: scripts/build.sh)" >&2; exit 2; }
done

# bench_gemm's GFLOP/s at 512^3 (the best of its repeats).
sgemm_rate() { "$BIN/bench_gemm" 2>&1 | awk -F'|' '/512\^3/ {gsub(/ /, "", $3); print $3}'; }
# The medians (ms/step) of a bench_* run, in stack order, space-separated.
medians() { grep -o 'median [0-9.]* ms' | awk '{printf "%s ", $2}'; }
# Field $2 of the line starting with $1 in the peer's table.
peer_field() { awk -v model="$1" -v field="$2" '$1 == model {print $field}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b}'; }

declare -A cell value  # a round's table cell, and the figure its goal is judged on
for ((r = 1; r <= ROUNDS; ++r)); do
  echo "=== round $r $(date +%T)" >&2
  read -r mlp mlp_mx mlp_bf16 < <("$BIN/bench_mlp" --steps 60 --stacks 'fp32;mxfp4;bf16' 2>&1 | medians)
  # The sgemm's rate right before and right after the LLaMA's steps, the higher one: the
  # machine's speed drifts within a round too, and the goal compares the two.
  gemm_before=$(sgemm_rate)
  read -r llama llama_bf16 llama_mx llama_nv < <("$BIN/bench_llama" --steps 10 \
    --stack 'fp32;bf16;mxfp4;nvfp4' 2>&1 | medians)
  gemm=$(awk -v a="$gemm_before" -v b="$(sgemm_rate)" 'BEGIN {print (a > b ? a : b)}')
  read -r cnn < <("$BIN/bench_cnn" --steps 10 --stack fp32 2>&1 | medians)
  peer=""
  if [ -f "$PEER" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    peer=$(OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 "$PEER" --blas openblas --keep-openblas-env \
      --threads 2 --models mlp,cnn,llama --steps 20 2>&1)
  fi
  torch_mlp=$(peer_field mlp 3 <<<"$peer") torch_cnn=$(peer_field cnn 3 <<<"$peer")
  torch_llama=$(peer_field llama 3 <<<"$peer") llama_gflop=$(peer_field llama 9 <<<"$peer")
  quantize=$(OMP_NUM_THREADS=1 "$BIN/bench_quantize" --repeats 5 2>&1)
  share() { awk -F'|' -v name="$1" '{gsub(/^ +| +$/, "", $2)} $2 == name {gsub(/[ %]/, "", $4); print $4}' <<<"$quantize"; }
  echo "sgemm $gemm GFLOP/s; mlp $mlp $mlp_mx $mlp_bf16; llama $llama $llama_bf16 $llama_mx $llama_nv; cnn $cnn;" \
    "torch mlp $torch_mlp cnn $torch_cnn llama $torch_llama ($llama_gflop GFLOP)" >&2

  value[mlp,$r]=$(ratio "$mlp" "$torch_mlp")
  cell[mlp,$r]="$mlp / ${torch_mlp:-?} = ${value[mlp,$r]}"
  value[mlp_mx,$r]=$(ratio "$mlp_mx" "$mlp") && cell[mlp_mx,$r]=${value[mlp_mx,$r]}
  value[mlp_bf16,$r]=$(ratio "$mlp_bf16" "$mlp") && cell[mlp_bf16,$r]=${value[mlp_bf16,$r]}
  value[llama,$r]=$(ratio "$llama" "$torch_llama")
  cell[llama,$r]="$llama / ${torch_llama:-?} = ${value[llama,$r]}"
  value[llama_rate,$r]=$(awk -v g="$llama_gflop" -v ms="$llama" -v peak="$gemm" \
    'BEGIN {if (g == "" || peak == "") print "-"; else printf "%.0f", 100 * g / (ms / 1e3) / peak}')
  cell[llama_rate,$r]="${value[llama_rate,$r]} %"
  value[llama_bf16,$r]=$(ratio "$llama_bf16" "$llama") && cell[llama_bf16,$r]=${value[llama_bf16,$r]}
  cell[llama_mx,$r]=$(ratio "$llama_mx" "$llama")
  cell[llama_nv,$r]=$(ratio "$llama_nv" "$llama")
  value[cnn,$r]=$(ratio "$cnn" "$torch_cnn")
  cell[cnn,$r]="$cnn / ${torch_cnn:-?} = ${value[cnn,$r]}"
  # The shares of several kernels: "min–max %" in the cell, the smallest judged.
  shares() {
    local values=""
    for name in "$@"; do values+="$(share "$name") "; done
    awk '{min = $1; max = $1; for (i = 2; i <= NF; ++i) {if ($i < min) min = $i; if ($i > max) max = $i}
          print min, max}' <<<"$values"
  }
  spread() { awk '{printf($1 == $2 ? "%d %%" : "%d–%d %%", $1, $2)}' <<<"$1"; }
  rne=$(shares "bf16 rne" "fp16 rne" "e4m3 rne" "e2m1 rne") sr=$(shares "bf16 sr" "fp16 sr" "e4m3 sr" "e2m1 sr")
  mx=$(shares "mxfp8 rne" "mxfp4 rne") nvfp4=$(share "nvfp4 rne")
  cell[rne,$r]=$(spread "$rne") value[rne,$r]=${rne%% *}
  cell[sr,$r]=$(spread "$sr") value[sr,$r]=${sr%% *}
  cell[mx,$r]=$(spread "$mx") value[mx,$r]=${mx%% *}
  cell[nvfp4,$r]="$nvfp4 %" value[nvfp4,$r]=$nvfp4
  cell[sgemm,$r]="$gemm"
done

row() {  # label key [goal: "<= x" or ">= x"]
  local line="| $1 |" met=0 judged=0
  for ((r = 1; r <= ROUNDS; ++r)); do
    line+=" ${cell[$2,$r]} |"
    [ -n "${3:-}" ] && [ "${value[$2,$r]:--}" != "-" ] || continue
    judged=$((judged + 1))
    awk -v v="${value[$2,$r]}" -v goal="$3" \
      'BEGIN {split(goal, g, " "); exit !(g[1] == "<=" ? v <= g[2] : v >= g[2])}' && met=$((met + 1))
  done
  [ -n "${3:-}" ] && line+=" $met of $judged |" || line+=" |"
  echo "$line"
}
header="| goal |" rule="|---|"
for ((r = 1; r <= ROUNDS; ++r)); do header+=" round $r |" rule+="--:|"; done
echo "$header met |"
echo "$rule---|"
row "MLP step ≤ 0.5x PyTorch (ms)" mlp "<= 0.5"
row "MLP, mxfp4 stack ≤ 1.0x fp32" mlp_mx "<= 1.0"
row "MLP, bf16 stack ≤ 1.0x fp32" mlp_bf16 "<= 1.0"
row "LLaMA step ≤ 0.7x PyTorch (ms)" llama "<= 0.7"
row "LLaMA ≥ 70 % of the sgemm's rate" llama_rate ">= 70"
row "LLaMA, bf16 stack ≤ 0.8x fp32" llama_bf16 "<= 0.8"
row "LLaMA, mxfp4 stack (no goal)" llama_mx
row "LLaMA, nvfp4 stack (no goal)" llama_nv
row "CNN step ≤ 0.7x PyTorch (ms)" cnn "<= 0.7"
row "RNE casts ≥ 50 % of copy (bf16, fp16, e4m3, e2m1)" rne ">= 50"
row "stochastic casts ≥ 35 %" sr ">= 35"
row "MX block RNE ≥ 40 % (mxfp8, mxfp4)" mx ">= 40"
row "NVFP4 block RNE ≥ 40 %" nvfp4 ">= 40"
row "sgemm 512³, GFLOP/s (the rate above)" sgemm
