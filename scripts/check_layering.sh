#!/usr/bin/env bash
# The layering check (README, Layout): every #include "dir/..." in a library folder must point
# to that folder or to a layer below it. Prints each include that points the wrong way and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# The folders each layer may include, itself included; lower layers first.
declare -A allowed=(
  [core]="core"
  [kernels]="core kernels"
  [tensor]="core kernels tensor"
  [ops]="core kernels tensor ops"
  [autograd]="core kernels tensor ops autograd"
  [nn]="core kernels tensor ops autograd nn"
  [optim]="core kernels tensor ops autograd optim"
  [data]="core kernels tensor ops data"
  [distributed]="core kernels tensor ops autograd distributed"
  [diagnostics]="core kernels tensor ops autograd nn optim data diagnostics"
  [tools]="core kernels tensor ops autograd nn optim data diagnostics distributed tools"
  [examples]="core kernels tensor ops autograd nn optim data diagnostics distributed examples"
)

status=0
for layer in "${!allowed[@]}"; do
  [[ -d $layer ]] || continue
  while IFS=: read -r file line include; do
    target=${include#*\"}
    target=${target%%/*}
    [[ -d $target ]] || continue  # a header of a dependency, not a folder of ours
    if [[ " ${allowed[$layer]} " != *" $target "* ]]; then
      echo "$file:$line: $layer/ includes $target/ (allowed: ${allowed[$layer]})"
      status=1
    fi
  done < <(grep -rnE '^\s*#\s*include\s*"[^"]+/' "$layer" --include='*.h' --include='*.cpp' \
             --include='*.cu' --include='*.cuh' | sed -E 's/^([^:]+):([0-9]+):/\1:\2:/')
done
if ((status == 0)); then echo "layering: every include points down"; fi
exit $status
