#!/usr/bin/env bash
# The measurements behind one CPU kind's rows of accel/PERFORMANCE.md, on an otherwise idle
# machine: `bash runs/cpu_kind.sh` from the repository root (about 25 minutes on 2 cores). Files go to
# runs/measurements/cpu_<vendor>_<flags>/ (the CPU named by its model line and the flags that decide
# which paths can win: AVX-512, AVX512-BF16, AMX).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python}
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
# The flags accel acts on: /proc/cpuinfo's, less those above RCAN_MAX_ISA where it is set.
flags=$($PY -c 'from accel import hardware
print(" ".join(f for f in hardware._field("flags").split() if f in hardware.cpu_flags()))' \
  | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f|avx512_bf16|amx_tile|amx_bf16' | tr '\n' ' ')
vendor=$(echo "$model" | grep -qi intel && echo intel || echo amd)
out=runs/measurements/cpu_${vendor}_$(echo "$flags" | tr -d '_' | tr ' ' '-' | sed 's/-$//')
out=$out${RCAN_MAX_ISA:+_max-$RCAN_MAX_ISA}
mkdir -p "$out"
{ echo "model: $model"; echo "flags: $flags${RCAN_MAX_ISA:+ (RCAN_MAX_ISA=$RCAN_MAX_ISA)}"; echo "cores: $(nproc)"
  date -u; } | tee "$out/cpu.txt"
run() {   # run NAME COMMAND...: stdout to $out/NAME, a line of progress here
  echo "== $1 $(date +%T)"
  local name=$1; shift
  "$@" > "$out/$name" 2> "$out/$name.log" || echo "   failed: see $out/$name.log"
  [ -s "$out/$name.log" ] || rm -f "$out/$name.log"
}
# The AMX and bfloat16 kernels against the exact convolution first: a number is worth nothing from a wrong kernel.
run kernel_tests.txt $PY -m pytest -q tests/test_cpu_kernel.py
# The must-show: official ×2, accel / torch in float32 and in bfloat16.
run bench_official.json $PY -m accel.bench --models official --sizes 64 128 256 --impls accel torch accel-bf16 \
  torch-bf16 --repeats 3 --rounds 2 --json
$PY -m accel.bench --table "$out/bench_official.json" > "$out/bench_official.txt" 2>/dev/null
# One conv in a chain, per path and kernel; bfloat16 also on vdpbf16ps where the fastest build is AMX's.
run conv_kernels_f32.txt env PYTHONPATH=.:runs/experiments $PY runs/experiments/conv_kernels.py --float32
run conv_kernels_bf16.txt env PYTHONPATH=.:runs/experiments $PY runs/experiments/conv_kernels.py
case " $flags " in *" amx_bf16 "*)
  run conv_kernels_bf16_vdpbf16ps.txt env PYTHONPATH=.:runs/experiments $PY runs/experiments/conv_kernels.py \
    --build avx512bf16 ;;
esac
run bf16_conv_paths.txt env PYTHONPATH=.:runs/experiments $PY runs/experiments/bf16_conv_paths.py
echo "== done $(date +%T): $out"
