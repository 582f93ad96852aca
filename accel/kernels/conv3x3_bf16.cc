// SAME 3×3 convolution, stride 1, of bfloat16 NHWC activations on the CPU's bfloat16 dot instructions
// (AVX512-BF16's vdpbf16ps: 16 lanes, each a float32 sum of two bfloat16 products per instruction, twice
// the multiplications of a float32 FMA). XLA:CPU converts a bfloat16 convolution to float32 and reaches
// these instructions only through dots (accel/PERFORMANCE.md); this is the XLA FFI custom call that
// accel/cpu_kernel.py builds, registers and calls.
//
//   x  bf16 [N, H, W, C]            activations (C even)
//   wp bf16 [3, 3, C/2, Cout, 2]    HWIO kernel with input channels paired: the pair (2c, 2c+1) of every
//                                   output channel sits side by side, as vdpbf16ps reads it
//   b  f32  [Cout]                  bias (Cout a multiple of 16)
//   y  bf16 [N, H, W, Cout]         float32 sums rounded once to bfloat16 (round to nearest even)
//
// Built without AVX512-BF16 (a CPU without it), the same loops run in plain C++ with float32 arithmetic:
// slow, but the tests check the layout and the edges with it on any machine.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Conv {
  int64_t n, h, w, c, co;
  const uint16_t* x;
  const uint16_t* wp;
  const float* b;
  uint16_t* y;
};

// Register tiles: PB output pixels × NV vectors of 16 output channels, PB·NV ≤ 24 accumulators, leaving
// room for the NV weight vectors and the broadcast input pair in AVX-512's 32 registers.
constexpr int kPixels(int nv) { return nv == 4 ? 6 : nv == 2 ? 12 : 24; }

#if defined(__AVX512BF16__)
template <int NV>
inline void tile(const Conv& s, const uint16_t* const rows[3], int64_t co0, int64_t w0, int64_t valid,
                 uint16_t* out) {
  constexpr int PB = kPixels(NV);
  const int64_t c2n = s.c / 2;
  __m512 acc[PB][NV];
  for (int j = 0; j < NV; ++j) {
    const __m512 bias = _mm512_loadu_ps(s.b + co0 + 16 * j);
    for (int p = 0; p < PB; ++p) acc[p][j] = bias;
  }
  for (int ky = 0; ky < 3; ++ky) {
    for (int kx = 0; kx < 3; ++kx) {
      const uint16_t* wk = s.wp + (ky * 3 + kx) * c2n * s.co * 2 + co0 * 2;
      const uint16_t* xr = rows[ky] + (w0 + kx) * s.c;   // padded row: pixel 0 is the zero at w = -1
      for (int64_t c2 = 0; c2 < c2n; ++c2) {
        __m512bh wv[NV];
        for (int j = 0; j < NV; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(wk + c2 * s.co * 2 + 32 * j);
        for (int p = 0; p < PB; ++p) {
          int32_t pair;
          std::memcpy(&pair, xr + p * s.c + 2 * c2, sizeof pair);
          const __m512bh xb = (__m512bh)_mm512_set1_epi32(pair);
          for (int j = 0; j < NV; ++j) acc[p][j] = _mm512_dpbf16_ps(acc[p][j], xb, wv[j]);
        }
      }
    }
  }
  for (int p = 0; p < PB; ++p) {
    if (p >= valid) break;
    for (int j = 0; j < NV; ++j) {
      const __m256bh r = _mm512_cvtneps_pbh(acc[p][j]);
      std::memcpy(out + p * s.co + co0 + 16 * j, &r, sizeof r);
    }
  }
}
#else
inline float to_float(uint16_t v) {
  const uint32_t bits = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t to_bf16(float f) {   // round to nearest even, as vcvtneps2bf16
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits += 0x7FFF + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

template <int NV>
inline void tile(const Conv& s, const uint16_t* const rows[3], int64_t co0, int64_t w0, int64_t valid,
                 uint16_t* out) {
  constexpr int PB = kPixels(NV);
  const int64_t c2n = s.c / 2;
  float acc[PB][16 * NV];
  for (int p = 0; p < PB; ++p)
    for (int k = 0; k < 16 * NV; ++k) acc[p][k] = s.b[co0 + k];
  for (int ky = 0; ky < 3; ++ky)
    for (int kx = 0; kx < 3; ++kx) {
      const uint16_t* wk = s.wp + (ky * 3 + kx) * c2n * s.co * 2 + co0 * 2;
      const uint16_t* xr = rows[ky] + (w0 + kx) * s.c;
      for (int64_t c2 = 0; c2 < c2n; ++c2)
        for (int p = 0; p < PB; ++p) {
          const float x0 = to_float(xr[p * s.c + 2 * c2]), x1 = to_float(xr[p * s.c + 2 * c2 + 1]);
          for (int k = 0; k < 16 * NV; ++k)
            acc[p][k] += x0 * to_float(wk[c2 * s.co * 2 + 2 * k]) + x1 * to_float(wk[c2 * s.co * 2 + 2 * k + 1]);
        }
    }
  for (int p = 0; p < PB && p < valid; ++p)
    for (int k = 0; k < 16 * NV; ++k) out[p * s.co + co0 + k] = to_bf16(acc[p][k]);
}
#endif

template <int NV>
void row_span(const Conv& s, const uint16_t* const rows[3], int64_t co0, uint16_t* out) {
  constexpr int PB = kPixels(NV);
  for (int64_t w0 = 0; w0 < s.w; w0 += PB) tile<NV>(s, rows, co0, w0, std::min<int64_t>(PB, s.w - w0), out + w0 * s.co);
}

// Output rows [r0, r1) of the flattened N·H. Each output row reads three input rows, copied first into
// `pad` with a zero pixel at both ends (and zeros past the end for the last tile's spare pixels): the
// copies are 1/(3·Cout) of the work and keep the tile loops free of edge tests.
void rows(const Conv& s, int64_t r0, int64_t r1, std::vector<uint16_t>& pad) {
  const int64_t width = s.w + 2 + kPixels(1);
  pad.assign(3 * width * s.c, 0);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / s.h, h = r % s.h;
    const uint16_t* rows3[3];
    for (int ky = 0; ky < 3; ++ky) {
      uint16_t* dst = pad.data() + ky * width * s.c;
      const int64_t hh = h + ky - 1;
      if (hh < 0 || hh >= s.h) {
        std::fill(dst + s.c, dst + (s.w + 1) * s.c, 0);
      } else {
        std::memcpy(dst + s.c, s.x + ((n * s.h + hh) * s.w) * s.c, s.w * s.c * sizeof(uint16_t));
      }
      rows3[ky] = dst;
    }
    uint16_t* out = s.y + (n * s.h + h) * s.w * s.co;
    int64_t co0 = 0;
    for (; co0 + 64 <= s.co; co0 += 64) row_span<4>(s, rows3, co0, out);
    for (; co0 + 32 <= s.co; co0 += 32) row_span<2>(s, rows3, co0, out);
    for (; co0 + 16 <= s.co; co0 += 16) row_span<1>(s, rows3, co0, out);
  }
}

// Rows handed out in chunks by an atomic counter: the calling thread works too and then waits only for
// chunks already taken, so a pool busy with other work delays nothing and can never deadlock the call.
struct Job {
  Conv s;
  int64_t chunk, chunks;
  std::atomic<int64_t> next{0}, done{0};
  void work() {
    std::vector<uint16_t> pad;
    for (int64_t i; (i = next.fetch_add(1)) < chunks;) {
      rows(s, i * chunk, std::min((i + 1) * chunk, s.n * s.h), pad);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error conv3x3(ffi::ThreadPool pool, ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::BF16> wp,
                   ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::BF16> y) {
  const auto xd = x.dimensions(), wd = wp.dimensions(), bd = b.dimensions();
  if (xd.size() != 4 || wd.size() != 5 || bd.size() != 1)
    return ffi::Error::InvalidArgument("conv3x3_bf16: x must be [N,H,W,C], wp [3,3,C/2,Cout,2], b [Cout]");
  const int64_t c = xd[3], co = wd[3];
  if (wd[0] != 3 || wd[1] != 3 || wd[2] * 2 != c || wd[4] != 2 || bd[0] != co || co % 16 != 0)
    return ffi::Error::InvalidArgument("conv3x3_bf16: shapes do not match (C even, Cout a multiple of 16)");
  auto job = std::make_shared<Job>();
  job->s = Conv{xd[0], xd[1], xd[2], c, co, reinterpret_cast<const uint16_t*>(x.typed_data()),
                reinterpret_cast<const uint16_t*>(wp.typed_data()), b.typed_data(),
                reinterpret_cast<uint16_t*>(y->typed_data())};
  const int64_t total = job->s.n * job->s.h;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  job->chunk = std::max<int64_t>(1, total / (8 * threads));   // a few chunks per thread evens out the ends
  job->chunks = (total + job->chunk - 1) / job->chunk;
  for (int64_t t = 1; t < threads && t < job->chunks; ++t) pool.Schedule([job] { job->work(); });
  job->work();
  while (job->done.load(std::memory_order_acquire) < job->chunks) std::this_thread::yield();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RcanConv3x3Bf16, conv3x3,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::BF16>>());
