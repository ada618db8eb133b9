#!/usr/bin/env bash
# The GPU figures of docs/PERFORMANCE.md ("GPU") in one run, for a machine with an NVIDIA GPU:
#   - benchmarks/gpu_rerank.py: a model of bge-reranker-v2-m3's exact shape through the engine, FP32 against FP16
#     (pairs/s, latency of 50 pairs of 512 tokens, first request, peak GPU memory, FP16 agreement) and
#     cross-request batching (requests/s and p95 at 1, 4, 16 concurrent callers, batching on and off);
#   - the `gpu` tests (tests/rerank/test_gpu.py: FP16 parity, the OOM back-off).
#
#   scripts/gpu_check.sh [OUTDIR]        (default: $OUT when set, else /tmp/gpu_check)
#
# What it needs beyond a CUDA build of PyTorch is installed first: from wheels in .whl/ when that folder holds
# some (a machine without package registries: download them elsewhere with `pip download`), else with pip from
# requirements the project declares. Without CUDA it says so and exits 0. Every result lands in OUTDIR:
# gpu_rerank.json, gpu_tests.txt, nvidia-smi.txt, environment.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/gpu_check}}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python=${PYTHON:-python3}

if compgen -G ".whl/*.whl" > /dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kb-site \
        .whl/*.whl || { echo "installing the wheels in .whl/ failed" >&2; exit 1; }
    export PYTHONPATH="/tmp/kb-site${PYTHONPATH:+:$PYTHONPATH}"
elif ! "$python" -c "import transformers, sentence_transformers, safetensors, pytest" 2> /dev/null; then
    "$python" -m pip install -q "transformers>=4.56,<5" "sentence-transformers>=5.0,<6" safetensors pytest \
        || { echo "pip could not install what the GPU check needs; put wheels in .whl/" >&2; exit 1; }
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi 2>&1 || echo "nvidia-smi: not available"; } > "$out/nvidia-smi.txt"
"$python" - > "$out/environment.txt" 2>&1 <<'EOF'
import platform, torch, transformers, sentence_transformers
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "transformers", transformers.__version__, "sentence-transformers", sentence_transformers.__version__)
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
EOF
cat "$out/environment.txt"
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA GPU here: nothing to measure (see $out/environment.txt)"
    exit 0
fi

status=0
echo "== benchmarks/gpu_rerank.py"
"$python" benchmarks/gpu_rerank.py --json > "$out/gpu_rerank.json" || status=1
cat "$out/gpu_rerank.json"
echo "== tests/rerank/test_gpu.py -m gpu"
"$python" -m pytest -q -p no:cacheprovider -m gpu tests/rerank/test_gpu.py 2>&1 | tee "$out/gpu_tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit $status
