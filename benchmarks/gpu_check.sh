#!/usr/bin/env bash
# The engine on a CUDA GPU, in one run of under 10 minutes (docs/engine.md, "Devices"):
# install numbench into the machine's Python (which already holds torch with CUDA), run the
# device tests on the GPU, then time the default evaluate of the reference GRU and of
# transformer_multi_object_s0 there and compare their cells with the committed CPU results.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on the GPU machine
#
# Figures and logs go to $OUT (default: gpu_check/). A machine that cannot reach a package
# index needs the wheels of what its Python lacks (jsonschema, referencing,
# jsonschema-specifications, rpds-py) in .whl/ (see the GPU machine's notes); they are
# installed from there first. Targets (issue "engine on any device"): the GRU's default
# evaluate ≤ 60 s, the transformer's ≤ 5 minutes.
set -uo pipefail
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
say() { echo "== $(date +%T) $*" | tee -a "$OUT/summary.txt"; }

say "install"
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
$PY - <<'PY' | tee -a "$OUT/summary.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
      "bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
PY

say "device tests on the GPU"
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_device.py \
  -o addopts="" 2>&1 | tee "$OUT/tests.log" | tail -5
echo "tests exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"

for model in gru_multi_object_s0 transformer_multi_object_s0; do
  say "evaluate $model --device cuda"
  start=$(date +%s.%N)
  timeout 420 $PY -m numbench.cli evaluate "baselines/$model.pt" --device cuda \
    --out "$OUT/$model/result.json" > "$OUT/$model.log" 2>&1
  rc=$?
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  echo "$model: exit $rc, wall ${wall} s" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] && $PY benchmarks/compare_results.py "submissions/$model/result.json" \
    "$OUT/$model/result.json" | tee -a "$OUT/summary.txt"
done
say "done"
