#!/usr/bin/env bash
# Install rankstack into the active Python environment.
#
# Order matters: torch comes first, pinned to the local CPU wheel. Installing anything that
# depends on torch before it would make pip pull the CUDA build (several GB).
#
#   bash scripts/install.sh                 # everything: neural, training, serving, LLMs, tests
#   EXTRAS=test bash scripts/install.sh     # core only (BM25, evaluation, I/O)
#   WITH_GGUF=0 bash scripts/install.sh     # skip llama-cpp-python (a ~20 min source build)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-all,test}
WITH_GGUF=${WITH_GGUF:-1}
LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:-0.3.36}
WHEELS=${RANKSTACK_WHEEL_CACHE:-$HOME/.cache/rankstack/wheels}

"$PY" -m pip install -q --upgrade pip
if [[ ",$EXTRAS," == *",all,"* || ",$EXTRAS," == *",neural,"* || ",$EXTRAS," == *",train,"* ]]; then
  "$PY" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
"$PY" -m pip install -q -e ".[$EXTRAS]"

if [[ "$WITH_GGUF" == "1" && ",$EXTRAS," == *",all,"* ]]; then
  # llama-cpp-python ships as an sdist only. The default (native) build crashes in the AMX
  # kernels on these CPUs, so build a portable AVX2 wheel once and cache it.
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_CPP_VERSION (portable, cached in $WHEELS)..."
    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
-DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
-DGGML_AMX_BF16=OFF" "$PY" -m pip wheel -q --no-deps "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$WHEELS"
  fi
  "$PY" -m pip install -q "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl
  "$PY" -m pip install -q -e ".[llm-gguf]"
fi
"$PY" -c "import rankstack; print('rankstack', rankstack.__version__, 'installed')"
