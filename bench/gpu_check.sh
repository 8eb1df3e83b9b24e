#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md in one run, for a machine with an NVIDIA GPU and a Python that
# has torch with CUDA. Usage, from the repository root:
#   WHEELS=dir-of-wheels bash bench/gpu_check.sh OUT_DIR
# WHEELS (optional) holds the wheels that Python lacks (onnxruntime-gpu, rasterio, pyproj, shapely,
# pydantic-settings...); they are installed with --no-deps into a private folder. The cube must be
# at ./cube and the demo model at runs/demo. Steps, each logged to OUT_DIR:
#   1. bench/ensemble.py: CONUS single evaluation and the E x S = 3 x 50 = 150 ensemble on onnxruntime CUDA;
#   2. bench/model_speed.py --config configs/paper.yaml --device cuda: training steps/s at the poster's
#      setting and onnxruntime CUDA vs torch CUDA on 256x256 windows;
#   3. the same for configs/demo.yaml.
# ONLY_ENSEMBLE=1 stops after step 1.
set -uo pipefail
out=${1:?usage: bench/gpu_check.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
if [[ -n "${WHEELS:-}" ]]; then
  site=${SITE:-/tmp/m3-site}
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$WHEELS"/*.whl \
    || exit 1
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# onnxruntime-gpu finds CUDA and cuDNN through the loader path; torch's nvidia-* packages provide them
nv=$("$py" -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]) + "/nvidia")' 2>/dev/null)
if [[ -n "$nv" ]]; then
  export LD_LIBRARY_PATH="$(find "$nv" -maxdepth 3 -type d -name lib | tr '\n' ':')${LD_LIBRARY_PATH:-}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())' | tee -a "$out/gpu.txt"
export PYTHONUNBUFFERED=1
"$py" bench/ensemble.py --masks 3 --seeds 50 --require-gpu --diagnose 2>&1 | tee "$out/ensemble.log" \
  || "$py" bench/ensemble.py --masks 3 --seeds 50 --require-gpu --sliding 2>&1 | tee "$out/ensemble_sliding.log"
cp bench/results/ensemble.json "$out/" 2>/dev/null
[[ -n "${ONLY_ENSEMBLE:-}" ]] && exit 0
"$py" bench/model_speed.py --config configs/paper.yaml --device cuda --steps 40 --batch 4 --repeats 20 --threads 8 \
  2>&1 | tee "$out/model_speed_paper.log"
cp bench/results/model_speed_cuda.json "$out/model_speed_paper.json" 2>/dev/null
"$py" bench/model_speed.py --config configs/demo.yaml --device cuda --steps 40 --batch 4 --repeats 20 --threads 8 \
  2>&1 | tee "$out/model_speed_demo.log"
cp bench/results/model_speed_cuda.json "$out/model_speed_demo.json" 2>/dev/null
nvidia-smi --query-gpu=memory.used,memory.total --format=csv | tee -a "$out/gpu.txt"
