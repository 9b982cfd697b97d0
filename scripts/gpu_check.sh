#!/usr/bin/env bash
# The GPU check, in two halves. Here (a CPU machine with the CUDA toolkit):
#   scripts/gpu_check.sh --bundle        builds build/ and packs gpu_bundle.tar.xz: the test,
#                                        trainer and benchmark binaries (with symbols, for a
#                                        cuda-gdb backtrace), the shared
#                                        libraries they need that a GPU machine may lack (not
#                                        glibc, the driver, cuBLAS or cuDNN), a Fashion-MNIST
#                                        subset and a small text corpus; about 30 MB
# On the GPU machine, from the repository root (the device tool carries gpu_bundle.tar.xz):
#   scripts/gpu_check.sh --run gpu_bundle.tar.xz [OUT]
#     every CUDA test (kernel parity per family, the op table's values and gradients, tensors on
#     the device), mnist, vit, diffusion and llama trained on cpu and on cuda from one seed (their
#     losses must agree within LOSS_TOLERANCE), a repeated GPU run, resumes across devices, and
#     the GPU step benchmarks beside PyTorch on the same card;
#     logs under OUT (default gpu_check_out/), one summary table last.
#   scripts/gpu_check.sh --dry-run       both halves here: the CUDA parts report "skipped".
set -uo pipefail
cd "$(dirname "$0")/.."

readonly LOSS_TOLERANCE=0.01  # relative; GEMM and reduction order differ between devices
readonly BINARIES=(lattice_tests mnist vit diffusion llama bench_mlp bench_llama bench_ops
  bench_block_gemm bench_cnn)

bundle() {
  local dir=gpu_bundle
  scripts/build.sh || return 1
  rm -rf "$dir" && mkdir -p "$dir/bin" "$dir/lib" "$dir/mnist" "$dir/text" || return 1
  for binary in "${BINARIES[@]}"; do cp "build/bin/$binary" "$dir/bin/" || return 1; done
  # Shared libraries found here, except the C library, the CUDA driver, cuBLAS and cuDNN (the
  # GPU machine has its own, matching its driver; either alone would overflow the carry limit).
  ldd "$dir"/bin/* | awk '/=> \// {print $3}' | sort -u |
    grep -Ev '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*|libcuda|libcublas[^/]*|libcudnn[^/]*)\.so' |
    while read -r library; do cp -L "$library" "$dir/lib/"; done
  # 6400 training and 1000 test images: 200 steps of batch 32 without a repeat.
  python3 - "$dir/mnist" <<'EOF' || return 1
import gzip, struct, sys
source = "/usr/share/datasets/fashion-mnist/"
for split, count in (("train", 6400), ("t10k", 1000)):
    for kind, item in (("images-idx3", 784), ("labels-idx1", 1)):
        with gzip.open(f"{source}{split}-{kind}-ubyte.gz") as f:
            data = f.read()
        header = 16 if kind.startswith("images") else 8
        out = bytearray(data[:header]) + data[header:header + count * item]
        struct.pack_into(">I", out, 4, count)
        open(f"{sys.argv[1]}/{split}-{kind}-ubyte", "wb").write(out)
EOF
  # A byte-level corpus from the fortune files (Debian's fortunes package).
  cat /usr/share/games/fortunes/*[^t] 2>/dev/null | tr -d '%' | head -c 1200000 >"$dir/text/all"
  head -c 1000000 "$dir/text/all" >"$dir/text/wiki.train.raw"
  tail -c 200000 "$dir/text/all" >"$dir/text/wiki.valid.raw"
  rm "$dir/text/all"
  # -9: its 64 MiB dictionary spans the binaries, which share most of their bytes (the kernels).
  tar -cf - "$dir" | xz -T0 -9 >"$dir.tar.xz" && rm -rf "$dir" && du -h "$dir.tar.xz"
}

# ---- The GPU half.

declare -a ROWS=()
row() { ROWS+=("$(printf '| %-44s | %-9s | %s |' "$1" "$2" "$3")"); }

# A table cell without its surrounding blanks (unquoted echo would expand a `*` in it).
trim() { sed -E 's/^ +| +$//g' <<<"$1"; }

# A field of a run's summary.json, and its training loss.
summary_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
train_loss() { summary_field "$1" train_loss; }

compare_losses() {  # name cpu_summary cuda_summary
  local cpu cuda
  cpu=$(train_loss "$2" 2>/dev/null) && cuda=$(train_loss "$3" 2>/dev/null) || {
    row "$1 loss, cpu vs cuda" FAIL "no summary.json (see the logs)"
    return
  }
  if python3 -c "import sys; c, g = $cpu, $cuda; sys.exit(abs(g - c) > $LOSS_TOLERANCE * abs(c))"; then
    row "$1 loss, cpu vs cuda" pass "cpu $cpu, cuda $cuda (tolerance $LOSS_TOLERANCE relative)"
  else
    row "$1 loss, cpu vs cuda" FAIL "cpu $cpu, cuda $cuda (tolerance $LOSS_TOLERANCE relative)"
  fi
}

# Data-parallel on two GPUs: `mpirun -np 2` (a GPU per rank, gradients summed over NCCL in the
# fixed chain order) must write the checkpoint of one process with --accumulate 2, for fp32 and
# for an SR stack with bf16:sr gradients. Needs two GPUs and an MPI launcher on the machine (the
# bundle carries libmpi for the binaries, not mpirun and its plugins).
check_data_parallel_gpus() {  # bundle_dir out
  local name="mnist, 2 GPUs over mpirun = --accumulate 2" gpus
  gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  if ((gpus < 2)); then row "$name" skipped "$gpus GPU"; return; fi
  if ! command -v mpirun >/dev/null; then row "$name" skipped "no mpirun"; return; fi
  local common=(--device cuda --data "$1/mnist" --steps 20 --batch 32 --seed 3 --log-every 10)
  local stack run
  for stack in fp32 'gemm=mxfp4,gemm.bwd=mxfp4:sr,w=bf16:sr'; do
    run=("${common[@]}")
    [ "$stack" = fp32 ] || run+=(--stack "$stack" --allreduce-format bf16:sr)
    timeout 240 "$1/bin/mnist" "${run[@]}" --accumulate 2 --out "$2/dp-$stack-alone" \
      >"$2/dp-$stack-alone.log" 2>&1
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 240 \
      mpirun -np 2 -x LD_LIBRARY_PATH "$1/bin/mnist" "${run[@]}" --out "$2/dp-$stack-mpi" \
      >"$2/dp-$stack-mpi.log" 2>&1
    local path="over NCCL"
    grep -q "NCCL not used" "$2/dp-$stack-mpi.log" && path="over the host (NCCL not loaded)"
    if cmp -s "$(ls "$2/dp-$stack-alone/"checkpoint.*.safetensors 2>/dev/null)" \
      "$(ls "$2/dp-$stack-mpi/"checkpoint.*.safetensors 2>/dev/null)"; then
      row "$name, $stack" pass "bit-identical checkpoints, $path"
    else
      row "$name, $stack" FAIL "checkpoints differ or missing ($path; see $2/dp-$stack-*.log)"
    fi
  done
}

# The folder holding shared library $1 on this machine, empty when none does: /usr, /opt and
# Python's package folders (pip's nvidia-cudnn-cu13 puts cuDNN in site-packages/nvidia/cudnn/lib).
library_dir() {
  local -a roots=(/usr /opt)
  local folder found
  while read -r folder; do [ -d "$folder" ] && roots+=("$folder"); done < <(python3 -c \
    'import site; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)
  found=$(find "${roots[@]}" -name "$1" 2>/dev/null | head -1)
  [ -n "$found" ] && dirname "$found"
}

run_checks() {
  local dir out gpu=1
  tar -xJf "$1" || return 1
  dir=$(cd "${1%.tar.xz}" && pwd) || return 1
  out=${2:-gpu_check_out}
  mkdir -p "$out"
  # cuBLAS and cuDNN are the machine's own (the bundle leaves them out); without either every
  # binary fails to load, which the first row says.
  local cublas_dir cudnn_dir missing
  cublas_dir=$(library_dir libcublas.so.13)
  cudnn_dir=$(library_dir libcudnn.so.9)
  export LD_LIBRARY_PATH="$dir/lib:${cublas_dir:+$cublas_dir:}${cudnn_dir:+$cudnn_dir:}${LD_LIBRARY_PATH:-}"
  missing=$(ldd "$dir"/bin/* 2>&1 | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
  {
    echo "libcublas.so.13: ${cublas_dir:-not found in /usr, /opt or the Python site-packages}"
    echo "libcudnn.so.9: ${cudnn_dir:-not found in /usr, /opt or the Python site-packages (pip: nvidia-cudnn-cu13)}"
    echo "libraries the binaries cannot find: ${missing:-none}"
  } | tee "$out/libraries.txt" >&2
  if [ -n "$missing" ]; then
    row "shared libraries of the binaries" FAIL "not found: ${missing}- every binary fails to load (see $out/libraries.txt)"
  else
    row "shared libraries of the binaries" pass "cuBLAS from $cublas_dir, cuDNN from $cudnn_dir"
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt" 2>&1 || gpu=0
  [ "$gpu" = 1 ] && row "device" info "$(head -1 "$out/gpu.txt")" || row "device" info "no GPU"

  local tests
  for tests in test_cuda_quantize test_cuda_tensor test_cuda_elementwise test_cuda_layers \
    test_cuda_conv test_cuda_gemm test_cuda_block_gemm test_pack_fp8 test_cuda_collective \
    test_fused_attention test_op_table; do
    if [ ! -f "tests/$tests.cpp" ]; then
      row "$tests" missing "not in this build"
      continue
    fi
    # Debug-sync mode: a kernel's error is reported at its own launch. Of the op table its
    # device case runs, and of the CPU cases (CI's) the strided-input bits: they depend on the
    # processor's sgemm kernels, and the device machine's Xeon has others than CI's.
    local only_case='*'
    [ "$tests" = test_op_table ] && only_case='*other device*,*same bits from strided inputs*'
    if (cd "$dir/bin" && LATTICE_CUDA_SYNC=1 timeout 120 ./lattice_tests \
      --source-file="*$tests.cpp" --test-case="$only_case" --no-intro) \
      >"$out/$tests.log" 2>&1; then
      row "$tests" pass "$(grep -E 'test cases:' "$out/$tests.log" | tail -1 | tr -s ' ')"
    else
      row "$tests" FAIL "see $out/$tests.log: $(grep -m1 -E 'ERROR|error|what\(\)' "$out/$tests.log" | cut -c1-90)"
    fi
    grep -h "entries bit-identical" "$out/$tests.log" >>"$out/parity.txt" 2>/dev/null
  done
  # The tensor tests once more as programs run, without debug-sync: a check made on the GPU
  # (an index out of range) is thrown at the next read back, not at its launch.
  if [ "$gpu" = 1 ]; then
    if (cd "$dir/bin" && timeout 120 ./lattice_tests --source-file="*test_cuda_tensor.cpp" \
      --no-intro) >"$out/test_cuda_tensor-async.log" 2>&1; then
      row "test_cuda_tensor, no debug-sync" pass \
        "$(grep -E 'test cases:' "$out/test_cuda_tensor-async.log" | tail -1 | tr -s ' ')"
    else
      row "test_cuda_tensor, no debug-sync" FAIL \
        "see $out/test_cuda_tensor-async.log: $(grep -m1 -E 'ERROR|error|what\(\)' "$out/test_cuda_tensor-async.log" | cut -c1-90)"
    fi
  fi

  if [ "$gpu" = 0 ]; then
    row "trainers and benchmarks on cuda" skipped "no GPU"
  else
    local device
    for device in cpu cuda; do
      timeout 240 "$dir/bin/mnist" --device "$device" --data "$dir/mnist" --steps 200 --batch 32 \
        --seed 3 --log-every 50 --out "$out/mnist-$device" >"$out/mnist-$device.log" 2>&1
      # Quantizers and stochastic rounding in every GEMM, activation and weight write-back.
      timeout 240 "$dir/bin/mnist" --device "$device" --data "$dir/mnist" --steps 200 --batch 32 \
        --stack 'gemm=mxfp4,gemm.bwd=mxfp4:sr,a=bf16:sr,w=bf16:sr' --seed 3 --log-every 50 \
        --out "$out/mnist-mxfp4-$device" >"$out/mnist-mxfp4-$device.log" 2>&1
      # The same through the block-scaled FP8 GEMM on both devices (on the CPU its golden model),
      # wherever K is a multiple of 32 (all but the first layer's forward).
      timeout 240 "$dir/bin/mnist" --device "$device" --data "$dir/mnist" --steps 200 --batch 32 \
        --stack 'gemm=mxfp4,gemm.bwd=mxfp4:sr,a=bf16:sr,w=bf16:sr' --gemm fp8-blocks --seed 3 \
        --log-every 50 --out "$out/mnist-fp8-$device" >"$out/mnist-fp8-$device.log" 2>&1
      timeout 240 "$dir/bin/vit" --device "$device" --dataset fashion-mnist --data "$dir/mnist" \
        --steps 20 --batch 32 --eval-batches 2 --seed 3 --log-every 10 --out "$out/vit-$device" \
        >"$out/vit-$device.log" 2>&1
      # Training, then 4 ancestral samples over 50 timesteps (the sampling path on the device).
      timeout 240 "$dir/bin/diffusion" --device "$device" --dataset fashion-mnist \
        --data "$dir/mnist" --steps 10 --batch 8 --timesteps 50 --sample 4 --eval-batches 1 \
        --seed 3 --log-every 5 --out "$out/diffusion-$device" >"$out/diffusion-$device.log" 2>&1
      timeout 240 "$dir/bin/llama" --device "$device" --config 9m --tokenizer byte \
        --data "$dir/text" --seq 64 --batch 8 --steps 40 --eval-batches 2 --seed 3 \
        --log-every 10 --out "$out/llama-$device" >"$out/llama-$device.log" 2>&1
      # NVFP4 operands quantized into bf16 bits for the bf16 GEMM, tensor scales on the output.
      timeout 240 "$dir/bin/llama" --device "$device" --config 9m --tokenizer byte \
        --data "$dir/text" --seq 64 --batch 8 --steps 40 --eval-batches 2 --seed 3 \
        --stack 'gemm=nvfp4,gemm.bwd=nvfp4:sr' --log-every 10 --out "$out/llama-nvfp4-$device" \
        >"$out/llama-nvfp4-$device.log" 2>&1
    done
    compare_losses "mnist mlp, 200 steps" "$out/mnist-cpu/summary.json" "$out/mnist-cuda/summary.json"
    compare_losses "mnist mlp mxfp4+sr, 200 steps" "$out/mnist-mxfp4-cpu/summary.json" \
      "$out/mnist-mxfp4-cuda/summary.json"
    compare_losses "mnist mlp mxfp4+sr --gemm fp8-blocks, 200 steps" \
      "$out/mnist-fp8-cpu/summary.json" "$out/mnist-fp8-cuda/summary.json"
    compare_losses "llama 9m, 40 steps" "$out/llama-cpu/summary.json" "$out/llama-cuda/summary.json"
    compare_losses "llama 9m nvfp4+sr, 40 steps" "$out/llama-nvfp4-cpu/summary.json" \
      "$out/llama-nvfp4-cuda/summary.json"
    compare_losses "vit on fashion-mnist, 20 steps" "$out/vit-cpu/summary.json" \
      "$out/vit-cuda/summary.json"
    compare_losses "diffusion u-net, 10 steps and sampling" "$out/diffusion-cpu/summary.json" \
      "$out/diffusion-cuda/summary.json"
    # A seeded GPU run replays itself to the bit.
    timeout 240 "$dir/bin/mnist" --device cuda --data "$dir/mnist" --steps 200 --batch 32 \
      --stack 'gemm=mxfp4,gemm.bwd=mxfp4:sr,a=bf16:sr,w=bf16:sr' --seed 3 --log-every 50 \
      --out "$out/mnist-mxfp4-cuda-again" >"$out/mnist-mxfp4-cuda-again.log" 2>&1
    cmp -s "$(ls "$out/mnist-mxfp4-cuda/"*.safetensors 2>/dev/null)" \
      "$(ls "$out/mnist-mxfp4-cuda-again/"*.safetensors 2>/dev/null)" &&
      row "mnist mxfp4+sr on cuda, run twice" pass "bit-identical checkpoints" ||
      row "mnist mxfp4+sr on cuda, run twice" FAIL "checkpoints differ"
    check_data_parallel_gpus "$dir" "$out"
    # A checkpoint written on the GPU resumes on the CPU, and the other way round.
    local from to
    for from in cuda cpu; do
      to=$([ "$from" = cuda ] && echo cpu || echo cuda)
      if timeout 120 "$dir/bin/mnist" --device "$to" --data "$dir/mnist" --steps 230 --batch 32 \
        --seed 3 --log-every 50 --resume "$out/mnist-$from/checkpoint" \
        --out "$out/mnist-resume-$to" >"$out/mnist-resume-$to.log" 2>&1 &&
        [ -f "$out/mnist-resume-$to/summary.json" ]; then
        row "mnist checkpoint from $from resumed on $to" pass "30 more steps"
      else
        row "mnist checkpoint from $from resumed on $to" FAIL "see $out/mnist-resume-$to.log"
      fi
    done
    local name
    local cpu_checkpoint cuda_checkpoint
    for name in mnist mnist-mxfp4 mnist-fp8 llama llama-nvfp4; do
      cpu_checkpoint=$(ls "$out/$name-cpu/"*.safetensors 2>/dev/null)
      cuda_checkpoint=$(ls "$out/$name-cuda/"*.safetensors 2>/dev/null)
      if [ -z "$cpu_checkpoint" ] || [ -z "$cuda_checkpoint" ]; then
        row "$name checkpoint, cpu vs cuda" FAIL "a run wrote no checkpoint"
      elif cmp -s "$cpu_checkpoint" "$cuda_checkpoint"; then
        row "$name checkpoint, cpu vs cuda" info "bit-identical weights"
      else
        row "$name checkpoint, cpu vs cuda" info "weights differ in their bits"
      fi
    done
    # One row per stack: the GEMM paths (bf16 GEMMs, the block-scaled FP8 GEMM for mxfp4)
    # against fp32 sgemm for the same stacks.
    local line stack_line suffix
    for line in "bench_mlp --device cuda --steps 50 --warmup 10 --stacks fp32;mxfp4" \
      "bench_llama --device cuda --steps 20 --warmup 5 --stack fp32;bf16;gemm=bf16;mxfp4;nvfp4" \
      "bench_llama --device cuda --steps 20 --warmup 5 --stack bf16;mxfp4;nvfp4 --gemm exact-fp32" \
      "bench_cnn --device cuda --steps 20 --warmup 5 --stack fp32"; do
      read -ra args <<<"$line"
      suffix=""
      [[ $line == *"--gemm exact-fp32"* ]] && suffix=", --gemm exact-fp32"
      if timeout 120 "$dir/bin/${args[@]}" >"$out/bench-line.log" 2>&1; then
        while read -r stack_line; do
          row "${args[0]} $(sed -E 's/.*(stack .*), cuda: .*/\1/' <<<"$stack_line")$suffix" ran \
            "$(grep -oE 'median [0-9.]+ ms/step' <<<"$stack_line")"
        done < <(grep median "$out/bench-line.log")
      else
        row "${args[0]} ${line#* --device cuda}" FAIL "see $out/bench.log"
      fi
      cat "$out/bench-line.log" >>"$out/bench.log"
    done
    if timeout 60 "$dir/bin/bench_ops" --device cuda --steps 20 --warmup 5 >"$out/bench_ops.log" 2>&1
    then
      while IFS='|' read -r _ name ms _; do
        row "bench_ops $(trim "$name")" ran "$(trim "$ms") ms forward and backward"
      done < <(grep '^|' "$out/bench_ops.log")
    else
      row "bench_ops --device cuda" FAIL "see $out/bench_ops.log"
    fi
    # Block-scaled FP8 GEMM beside cuBLAS bf16 and fp32, and the FP8 packers (pack_fp8,
    # pack_fp8_blocks both ways, quantize_pack_mx and the unfused pair it replaces) beside a copy:
    # one row per table line (those with a time).
    if timeout 90 "$dir/bin/bench_block_gemm" >"$out/bench_block_gemm.log" 2>&1; then
      while IFS='|' read -r _ problem method ms throughput ratio _; do
        row "bench_block_gemm $(trim "$problem"), $(trim "$method")" ran \
          "$(trim "$ms") ms, $(trim "$throughput"), $(trim "$ratio") the table's baseline"
      done < <(grep -E '^\| .*\| +[0-9.]+ \|' "$out/bench_block_gemm.log")
    else
      row "bench_block_gemm" FAIL "see $out/bench_block_gemm.log"
    fi
    # An epoch of the mnist MLP over the bundle's training images, beside PyTorch's below: the
    # median wall time of epochs 2-4 (batch waits, copies and logging in), evaluating only at
    # the end, as the peer's epoch loop does not evaluate.
    local lattice_epoch=""
    if timeout 120 "$dir/bin/mnist" --device cuda --data "$dir/mnist" --hidden 256 --batch 512 \
      --epochs 4 --eval-every 1000000 --seed 3 --log-every 100 --out "$out/mnist-epochs" \
      >"$out/mnist-epochs.log" 2>&1
    then
      lattice_epoch=$(summary_field "$out/mnist-epochs/summary.json" epoch_seconds_median)
      row "mnist mlp epoch, cuda" ran "$(printf '%.4f s/epoch (median of epochs 2-4), median step %.3f ms' \
        "$lattice_epoch" "$(summary_field "$out/mnist-epochs/summary.json" step_ms_median)")"
    else
      row "mnist mlp epoch, cuda" FAIL "see $out/mnist-epochs.log"
    fi
    # Where the llama step's time goes: step times over batch and sequence sizes, debug-sync
    # mode, and Nsight Compute's time per kernel.
    timeout 200 bench/gpu_profile.sh "$dir" >"$out/profile.log" 2>&1
    row "bench/gpu_profile.sh" "$([ $? = 0 ] && echo ran || echo FAIL)" \
      "$(grep -m1 '^ncu' "$out/profile.log"); see $out/profile.log"
    if timeout 180 python3 bench/peers/torch_gpu_bench.py --steps 50 --warmup 10 \
      --mnist-epoch "$dir/mnist" >"$out/torch.log" 2>&1; then
      while read -r line; do
        row "${line%%:*}" ran "${line#*: }"
      done < <(grep median "$out/torch.log")
      # The issue's goals, as ratios of this run's numbers: the mnist epoch against PyTorch's,
      # and the llama step (fp32) against PyTorch's bf16 autocast step.
      local torch_epoch torch_llama lattice_llama
      torch_epoch=$(grep -oP 'mnist mlp epoch.*median \K[0-9.]+' "$out/torch.log")
      torch_llama=$(grep -oP 'llama .* bf16: median \K[0-9.]+' "$out/torch.log")
      lattice_llama=$(grep -m1 -oP '^llama .*stack fp32, cuda: median \K[0-9.]+' "$out/bench.log")
      [ -n "$lattice_epoch" ] && [ -n "$torch_epoch" ] &&
        row "goal: mnist epoch <= 0.5x PyTorch" info \
          "$(python3 -c "print(f'{$lattice_epoch / $torch_epoch:.2f}x ($lattice_epoch s / $torch_epoch s)')")"
      [ -n "$lattice_llama" ] && [ -n "$torch_llama" ] &&
        row "goal: llama step <= 0.8x PyTorch bf16" info \
          "$(python3 -c "print(f'{$lattice_llama / $torch_llama:.2f}x ($lattice_llama ms fp32 / $torch_llama ms)')")"
    else
      row "pytorch peer" FAIL "see $out/torch.log"
    fi
  fi
  echo
  cat "$out/parity.txt" 2>/dev/null
  printf '| %-44s | %-9s | %s |\n|%s|%s|%s|\n' check result detail \
    "----------------------------------------------" "-----------" "------"
  printf '%s\n' "${ROWS[@]}"
  ! printf '%s\n' "${ROWS[@]}" | grep -q '| FAIL'
}

case "${1:-}" in
  --bundle) bundle ;;
  --run) run_checks "${2:?--run needs the bundle (gpu_bundle.tar.xz)}" "${3:-}" ;;
  --dry-run) bundle && run_checks gpu_bundle.tar.xz gpu_check_out ;;
  *)
    echo "usage: scripts/gpu_check.sh --bundle | --run BUNDLE [OUT] | --dry-run" >&2
    exit 2
    ;;
esac
