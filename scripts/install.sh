#!/usr/bin/env bash
# Install rankstack into the active Python environment.
# torch comes first, pinned to the local CPU wheel: installing anything that depends on torch
# before it would make pip pull the CUDA build (several GB).
#   bash scripts/install.sh            # everything (neural, training, serving, tests)
#   EXTRAS=test bash scripts/install.sh  # core only
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-all,test}
"$PY" -m pip install -q --upgrade pip
if [[ ",$EXTRAS," == *",all,"* || ",$EXTRAS," == *",neural,"* || ",$EXTRAS," == *",train,"* ]]; then
  "$PY" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
"$PY" -m pip install -q -e ".[$EXTRAS]"
"$PY" -c "import rankstack; print('rankstack', rankstack.__version__, 'installed')"
