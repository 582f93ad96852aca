#!/usr/bin/env bash
# The GPU measurements of accel/PERFORMANCE.md in one call of a few minutes: from the repository root
# of a machine with a GPU, `bash runs/gpu/measure.sh` (results in $OUT, or /tmp/gpu_out).
# Stages run in order of importance, each under its own time limit, each writing its own files, so a
# stage cut short loses only itself. Arguments name the stages to run (default: all); at most 8 files
# come back from a call, so each stage writes one file and all stderr goes to log.txt.
set -u
ONLY=" $* "
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false
O=${OUT:-/tmp/gpu_out}
mkdir -p "$O"
PY=${PY:-python3}
stage() {   # stage NAME SECONDS COMMAND...: stdout to $O/NAME.out, stderr to $O/log.txt
  local name=$1 limit=$2; shift 2
  [ "$ONLY" = "  " ] || [[ "$ONLY" == *" $name "* ]] || return 0
  echo "== $name $(date +%T)"
  echo "== $name" >> "$O/log.txt"
  timeout "$limit" "$@" > "$O/$name.out" 2>> "$O/log.txt"
  echo "   rc=$? $(date +%T)"
  tail -c 1500 "$O/$name.out"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  nproc; $PY -c "import jax, flax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'torch', torch.__version__, jax.devices())"
} > "$O/log.txt" 2>&1
cat "$O/log.txt"
# The CPU kernels are built at install; a copied checkout has none: built here once (a compiler is there).
[ -f accel/conv/kernels/lib/manifest.json ] || $PY -m accel.conv.kernels.build >> "$O/log.txt" 2>&1
# The machine's own jax/flax/torch are used (flax 0.12.10 worked). Should its flax fail to build the model,
# ours is installed from .whl/ (made here with `pip download --no-deps -d .whl flax==0.12.8`, passed in carry).
if ! $PY -c "import accel, reference; accel.model_from_weights(reference.init_weights(reference.RCANConfig.compact(2)), reference.RCANConfig.compact(2))" 2>>"$O/log.txt"; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site
fi
stage smoke 75 $PY runs/gpu/smoke.py
B="$PY -m accel.bench --json --repeats 10"
stage official_128 100 $B --models official --sizes 128
stage official_256 100 $B --models official --sizes 256
# The shipped model on Set5 in float32 (full precision), TF32 and bfloat16: one JSON object per line.
stage set5 150 bash -c "for p in highest tensorfloat32 bfloat16; do
  d=float32; [ \$p = bfloat16 ] && d=bfloat16 && p=highest
  JAX_DEFAULT_MATMUL_PRECISION=\$p $PY -m accel.evaluate --hr tests/data/Set5/HR_x2 --scale 2 --json --quiet --dtype \$d |
    $PY -c 'import json, sys; print(json.dumps({\"precision\": sys.argv[1], **json.load(sys.stdin)}))' \$p-\$d
done"
# Full float32 as the CLIs run it (conv auto: the autotune times xla, xla-nchw and winograd per shape, the
# path it took in the JSON's conv_path) against torch's NCHW; then cuDNN forced to NCHW for every size.
stage f32_auto 240 $B --models official --sizes 64 128 256 --impls accel torch-nchw
stage f32_nchw 120 env RCAN_CONV=xla-nchw $B --models official --sizes 64 128 256 --impls accel
stage smoke_auto 90 $PY runs/gpu/smoke.py
# TF32 and bfloat16 as the CLIs run them (the autotune's choice per shape), against torch channels_last.
stage mixed_auto 200 $B --models official --sizes 64 128 256 --impls accel-tf32 torch-tf32 accel-bf16 torch-bf16
# The autotune's choice at 64×64 and its memory (a fresh process deciding, then one reading the decision).
stage memory_auto 90 $PY runs/gpu/memory.py 64 auto auto-again
# The autotune's decisions so far on this machine (chain and model times, temporaries), as stored.
stage choices 10 bash -c "cat \$($PY -c 'from accel import runtime; print(runtime.default_cache_dir())')/conv_choices.json"
# At 256×256 the NCHW path's peak was 125 MB above its temporaries (at 64×64: none): with and without command buffers.
stage memory_256 120 $PY runs/gpu/memory.py 256 xla-nchw xla-nchw-again xla-nchw-no-command-buffers
# Device memory at 64×64 without cuDNN's autotuned workspaces: XLA's autotuning off, or XLA's own conv fusions.
stage memory_workspace 120 $PY runs/gpu/memory.py 64 winograd winograd-again xla-nchw-autotune0 xla-nchw-conv-fusion
stage conv_fusion 100 env RCAN_CONV=xla-nchw $B --models official --sizes 64 256 --impls accel \
  --xla-flags=--xla_gpu_experimental_enable_conv_fusion=true
# Whether putting a large array on the device leaves a transient above its size in the allocator's peak.
stage transfer 60 $PY runs/gpu/transfer_peak.py
# The convolution algorithms XLA's autotuner picked for the forward (cuDNN's, with their scratch bytes).
stage autotuned 120 bash -c "for s in 64 256; do echo \"== \$s×\$s\"; f=/tmp/autotuned_\$s.txt
  RCAN_JAX_CACHE=off RCAN_CONV=xla JAX_DEFAULT_MATMUL_PRECISION=highest XLA_FLAGS=--xla_gpu_dump_autotune_results_to=\$f \
    $PY -c 'import sys, accel, reference; from accel import api, runtime; runtime.configure_from_env()
c = reference.RCANConfig.official(2); s = int(sys.argv[1])
print(api.compiled_memory(accel.model_from_weights(reference.init_weights(c, 0), c, conv=\"xla\"), (1, s, s, 3)))' \$s
  cat \$f; done"
# Full float32 by convolution path: XLA's (cuDNN) and Winograd F(4×4, 3×3) (RCAN_CONV=winograd), against
# torch's NCHW (its faster float32 layout on these GPUs); then the Winograd path's accuracy.
stage f32_xla 150 $B --models official --sizes 64 128 256 --impls accel torch-nchw
stage f32_winograd 100 env RCAN_CONV=winograd $B --models official --sizes 64 128 256 --impls accel
stage smoke_winograd 75 env RCAN_CONV=winograd $PY runs/gpu/smoke.py
# Where the device memory goes at 64×64 (the fixed ≈ 130 MB): per step, per setting, fresh processes.
stage memory 150 $PY runs/gpu/memory.py 64
# Where the float32 time goes at 256×256 (accel 1.08× torch NCHW there): device kernels of each, by name.
stage profile 150 $PY runs/gpu/profile.py 256
stage official_1080p 150 $PY -m accel.bench --json --repeats 3 --models official --sizes 1080p
stage official_64 80 $B --models official --sizes 64
stage compact 120 $PY -m accel.bench --json --repeats 5 --models compact --sizes 256 1080p
# A folder of 50 photos of different sizes: one compiled shape, wall vs model time (empty cache, then cached).
stage folder 200 bash -c "$PY runs/make_folder.py /tmp/folder50 && $PY -m accel.bench --folder /tmp/folder50"
# These machines' host CPU is an Intel Xeon with AMX (amx_tile, amx_bf16 in /proc/cpuinfo): on two of its cores
# (as on the project's 2-core machines), the C++ kernels' tests, AMX's real tiles among them, then one
# convolution per path and kernel (bfloat16 on the tiles, then on vdpbf16ps), then the must-show bench.
CPU2="env JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES= taskset -c 0,1"
stage cpu_amx_tests 200 $CPU2 $PY -m pytest -q -p no:cacheprovider tests/test_cpu_kernel.py
stage cpu_amx_convs 200 $CPU2 bash -c "PYTHONPATH=.:runs/experiments $PY runs/experiments/conv_kernels.py &&
  PYTHONPATH=.:runs/experiments $PY runs/experiments/conv_kernels.py --build avx512bf16"
stage cpu_bench 400 $CPU2 $PY -m accel.bench --json --models official --sizes 64 128 256 \
  --impls accel torch accel-bf16 torch-bf16 --repeats 3
# bfloat16 alone at the sizes where accel and torch were closest, five runs each.
stage cpu_bf16 300 $CPU2 $PY -m accel.bench --json --models official --sizes 128 256 \
  --impls accel-bf16 torch-bf16 --repeats 5
echo "== done $(date +%T)"
