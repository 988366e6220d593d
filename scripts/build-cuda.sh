#!/usr/bin/env bash
# Build the llmbench wheel with the baseline's CUDA backend (cargo feature `cuda`) on a
# machine without a GPU or a system CUDA toolkit, for GPUs of compute capability
# $CUDA_COMPUTE_CAP (default 90: H100).
#
#   make build-cuda            # -> .whl-cuda/llmbench-*.whl (about 8 MB)
#
# What it does (each step is needed because the machine has no GPU):
# 1. NVIDIA's CUDA toolkit from PyPI into .cuda/venv, pinned to CUDA 13.0 so the PTX it
#    writes is not newer than a 13.0 driver understands.
# 2. A CUDA root (.cuda/root) the build scripts understand: bin, include and nvvm from the
#    wheels, and lib64 with the unversioned library names the linker looks for.
# 3. A link-time stub of the driver library (libcuda.so.1 is not on PyPI): every cu*
#    function cudarc declares, as an empty function. At run time the GPU machine's real
#    driver is loaded instead (the stub is never shipped).
# 4. maturin with CUDA_COMPUTE_CAP, into a separate target dir so the CPU build stays warm;
#    build.rs adds a RUNPATH to the usual CUDA library folders of a GPU machine, and the
#    CUDA libraries are not bundled into the wheel (--auditwheel skip): the GPU machine's
#    own driver and CUDA 13 libraries are used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD
CUDA_DIR=$ROOT_DIR/.cuda
VENV=$CUDA_DIR/venv
CUDA_ROOT=$CUDA_DIR/root
PY=${PYTHON:-python3}
CAP=${CUDA_COMPUTE_CAP:-90}
OUT=${OUT_DIR:-$ROOT_DIR/.whl-cuda}

if [ ! -x "$VENV/bin/nvcc-installed" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet maturin==1.16.0 \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
    nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14
  touch "$VENV/bin/nvcc-installed"
  chmod +x "$VENV/bin/nvcc-installed"
fi
CU13=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')

rm -rf "$CUDA_ROOT"
mkdir -p "$CUDA_ROOT/lib64/stubs"
ln -s "$CU13/bin" "$CUDA_ROOT/bin"
ln -s "$CU13/include" "$CUDA_ROOT/include"
ln -s "$CU13/nvvm" "$CUDA_ROOT/nvvm"
for so in "$CU13"/lib/lib*.so*; do
  name=$(basename "$so")
  ln -sf "$so" "$CUDA_ROOT/lib64/$name"
  # libfoo.so.13 -> also libfoo.so (the wheels ship only versioned sonames).
  ln -sf "$so" "$CUDA_ROOT/lib64/${name%%.so*}.so"
done

# The driver stub: every cu* function cudarc can call.
CUDARC=$(cargo metadata --features cuda --format-version 1 2>/dev/null | "$VENV/bin/python" -c '
import json, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(p["manifest_path"] for p in pkgs if p["name"] == "cudarc").rsplit("/", 1)[0])')
grep -oE "fn cu[A-Za-z0-9_]+\(" "$CUDARC/src/driver/sys/mod.rs" | sed -E 's/fn (cu[A-Za-z0-9_]+)\(/\1/' \
  | sort -u | sed 's/.*/void &(void) {}/' > "$CUDA_DIR/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_ROOT/lib64/stubs/libcuda.so" "$CUDA_DIR/libcuda_stub.c"
ln -sf libcuda.so "$CUDA_ROOT/lib64/stubs/libcuda.so.1"

export PATH="$CUDA_ROOT/bin:$PATH" CUDA_ROOT CUDA_HOME=$CUDA_ROOT CUDA_PATH=$CUDA_ROOT
export CUDA_COMPUTE_CAP=$CAP CUDARC_CUDA_VERSION=13000 CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
export LIBRARY_PATH="$CUDA_ROOT/lib64:$CUDA_ROOT/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export RUSTFLAGS="-L $CUDA_ROOT/lib64 -L $CUDA_ROOT/lib64/stubs"
export CARGO_TARGET_DIR=$ROOT_DIR/target/cuda
mkdir -p "$OUT"
rm -f "$OUT"/llmbench-*.whl
"$VENV/bin/maturin" build --release --features python,cuda --auditwheel skip --out "$OUT"
ls -la "$OUT"
