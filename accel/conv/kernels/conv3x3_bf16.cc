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
//   sums f32 [N, ceil(H/2), Cout]   Winograd only, with the attribute pooled = 1: per output channel, the sum
//                                   of y over each tile row (the channel attention's pooling, taken as y is
//                                   written; XLA adds up the rows); otherwise not written
//
// Built without AVX512-BF16 (a CPU without it), the same loops run in plain C++ with float32 arithmetic:
// slow, but the tests check the layout and the edges with it on any machine.
//
// Built for AMX (-mamx-tile -mamx-bf16: Intel Xeons since Sapphire Rapids), the direct scheme runs on the
// tile units instead where C and Cout are multiples of 32: 16×16×32 products per TDPBF16PS, eight times
// what two vdpbf16ps per cycle give. Built with -DRCAN_AMX_EMULATE, the same tile code runs on amx.h's
// plain C++ tiles, which the tests run on any CPU.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "bf16.h"
#include "parallel.h"
#include "xla/ffi/api/ffi.h"

#if (defined(__AMX_TILE__) && defined(__AMX_BF16__)) || defined(RCAN_AMX_EMULATE)
#define RCAN_AMX 1
#include "amx.h"
#endif

namespace ffi = xla::ffi;

namespace {

struct Conv {
  int64_t n, h, w, c, co;
  const uint16_t* x;
  const uint16_t* wp;
  const float* b;
  uint16_t* y;
  float* sums;   // [N·ceil(H/2), Cout] (Winograd, pooled), else nullptr
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
using rcan::to_bf16;
using rcan::to_float;

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

// 16 float32 lanes: a zmm register in the AVX512-BF16 build, an array in the portable one. The Winograd
// transforms below are written once over it.
#if defined(__AVX512BF16__)
struct Vec {
  __m512 v;
};
inline Vec load_bf16(const uint16_t* p) {   // 16 bfloat16 -> float32: the bits move to the upper half
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16))};
}
inline void store_bf16(uint16_t* p, Vec a) {
  const __m256bh r = _mm512_cvtneps_pbh(a.v);
  std::memcpy(p, &r, sizeof r);
}
inline Vec load_f32(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void store_f32(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
inline Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
#else
struct Vec {
  float v[16];
};
inline Vec load_bf16(const uint16_t* p) {
  Vec r;
  for (int i = 0; i < 16; ++i) r.v[i] = to_float(p[i]);
  return r;
}
inline void store_bf16(uint16_t* p, Vec a) {
  for (int i = 0; i < 16; ++i) p[i] = to_bf16(a.v[i]);
}
inline Vec load_f32(const float* p) {
  Vec r;
  std::memcpy(r.v, p, sizeof r.v);
  return r;
}
inline void store_f32(float* p, Vec a) { std::memcpy(p, a.v, sizeof a.v); }
inline Vec operator+(Vec a, Vec b) {
  for (int i = 0; i < 16; ++i) a.v[i] += b.v[i];
  return a;
}
inline Vec operator-(Vec a, Vec b) {
  for (int i = 0; i < 16; ++i) a.v[i] -= b.v[i];
  return a;
}
#endif

template <int NV>
void row_span(const Conv& s, const uint16_t* const rows[3], int64_t co0, uint16_t* out) {
  constexpr int PB = kPixels(NV);
  for (int64_t w0 = 0; w0 < s.w; w0 += PB) tile<NV>(s, rows, co0, w0, std::min<int64_t>(PB, s.w - w0), out + w0 * s.co);
}

// Pixels of one output row per AMX register block: two A tiles of 16 (the padded rows hold zeros past the
// image for the last block's spare pixels).
constexpr int kAmxPixels = 32;

#if defined(RCAN_AMX)
// Every tile 16 rows × 64 bytes: C 0-3 (16 pixels × 16 output channels, float32), A 4-5 (16 pixels × 32
// input channels), B 6-7 (16 input-channel pairs × 16 output channels, straight from the packed weights).
inline amx::Config amx_config() {
  amx::Config c;
  for (int t = 0; t < 8; ++t) c.rows[t] = 16, c.colsb[t] = 64;
  return c;
}

// Row spans of 32 output channels computed on the tiles since the library was loaded (for the tests: that
// an AMX build does run on its tiles; added once per chunk of rows).
std::atomic<int64_t> amx_spans{0};

// Whether the direct scheme runs on the tiles for these channel counts (the rest of Cout, 16 channels at
// most, on the vector code).
inline bool amx_fits(const Conv& s) { return s.c % 32 == 0 && s.co >= 32 && amx::enable(); }

// Output channels [co0, co0 + 32) of one output row: per block of 32 pixels, four C tiles (2 × 16 pixels
// by 2 × 16 channels) summed over the 9 taps and the input channels 32 at a time, then bias added and
// rounded once to bfloat16 through `buf` [32 pixels][32 channels].
void amx_span(const Conv& s, const uint16_t* const rows[3], int64_t co0, uint16_t* out, float* buf) {
  const int64_t c2n = s.c / 2;
  for (int64_t w0 = 0; w0 < s.w; w0 += kAmxPixels) {
    AMX_ZERO(0);
    AMX_ZERO(1);
    AMX_ZERO(2);
    AMX_ZERO(3);
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) {
        const uint16_t* wk = s.wp + (ky * 3 + kx) * c2n * s.co * 2 + co0 * 2;
        const uint16_t* xr = rows[ky] + (w0 + kx) * s.c;   // padded row: pixel 0 is the zero at w = -1
        for (int64_t k = 0; k < s.c; k += 32) {
          AMX_LOAD(4, xr + k, s.c * 2);                      // pixels w0 .. w0+15, channels k .. k+31
          AMX_LOAD(5, xr + 16 * s.c + k, s.c * 2);           // pixels w0+16 .. w0+31
          AMX_LOAD(6, wk + k * s.co, s.co * 4);              // pairs k/2 .. k/2+15, channels co0 .. co0+15
          AMX_LOAD(7, wk + k * s.co + 32, s.co * 4);         // channels co0+16 .. co0+31
          AMX_DOT(0, 4, 6);
          AMX_DOT(1, 4, 7);
          AMX_DOT(2, 5, 6);
          AMX_DOT(3, 5, 7);
        }
      }
    AMX_STORE(0, buf, 32 * 4);
    AMX_STORE(1, buf + 16, 32 * 4);
    AMX_STORE(2, buf + 16 * 32, 32 * 4);
    AMX_STORE(3, buf + 16 * 32 + 16, 32 * 4);
    const int64_t valid = std::min<int64_t>(kAmxPixels, s.w - w0);
    for (int64_t p = 0; p < valid; ++p)
      for (int j = 0; j < 2; ++j) {
        const Vec sum = load_f32(buf + p * 32 + 16 * j) + load_f32(s.b + co0 + 16 * j);
        store_bf16(out + (w0 + p) * s.co + co0 + 16 * j, sum);
      }
  }
}
#endif

// Winograd F(2×2, 3×3) (Lavin & Gray; the points 0, ±1, ∞): 16 products per 2×2 output tile instead of 36,
// so 2.25× fewer multiplications than the direct loops above. Its transforms' coefficients are 0 and ±1,
// so bfloat16 GEMM operands err about as much as bfloat16's own direct convolution (accel/winograd.py's
// "winograd2", whose GEMMs XLA runs no faster in bfloat16 than in float32). Here the three steps run on
// one block of tiles at a time, in cache: input transform (V = Bᵀ d B, rounded to bfloat16), 16 GEMMs on
// vdpbf16ps with float32 sums, output transform (Y = Aᵀ M A) + bias, rounded once to bfloat16.
// Tiles per block: V (16 × kBlock × C bfloat16, 24 KB at C = 64) stays in a 32 KB L1 for the GEMMs' broadcasts.
constexpr int kBlock = 12;
// Register tiles of the Winograd GEMMs: a multiple of kBlock's divisors (6 tiles × 64 channels, 12 × 32, 12 × 16).
constexpr int kTiles(int nv) { return nv == 4 ? 6 : 12; }

// M[p][·] = Σ_c V[p][c]·U[c][·] for PB tiles and NV·16 output channels (V [PB][C] bf16, U [C/2][Cout][2]).
template <int NV>
inline void gemm(const uint16_t* V, const uint16_t* U, int64_t c, int64_t co, float* M) {
  constexpr int PB = kTiles(NV);
#if defined(__AVX512BF16__)
  __m512 acc[PB][NV];
  for (int p = 0; p < PB; ++p)
    for (int j = 0; j < NV; ++j) acc[p][j] = _mm512_setzero_ps();
  for (int64_t c2 = 0; c2 < c / 2; ++c2) {
    __m512bh wv[NV];
    for (int j = 0; j < NV; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(U + c2 * co * 2 + 32 * j);
    for (int p = 0; p < PB; ++p) {
      int32_t pair;
      std::memcpy(&pair, V + p * c + 2 * c2, sizeof pair);
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(pair);
      for (int j = 0; j < NV; ++j) acc[p][j] = _mm512_dpbf16_ps(acc[p][j], xb, wv[j]);
    }
  }
  for (int p = 0; p < PB; ++p)
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(M + p * 16 * NV + 16 * j, acc[p][j]);
#else
  for (int p = 0; p < PB; ++p)
    for (int k = 0; k < 16 * NV; ++k) {
      float sum = 0;
      for (int64_t ci = 0; ci < c; ++ci)
        sum += to_float(V[p * c + ci]) * to_float(U[(ci / 2) * co * 2 + 2 * k + ci % 2]);
      M[p * 16 * NV + k] = sum;
    }
#endif
}

// Output channels [co0, co0 + 16·NV) of the block's nt tiles from t0, in tile row r (its row of sums: sums).
template <int NV>
void wino_channels(const Conv& s, const uint16_t* V, int64_t n, int64_t r, int64_t t0, int64_t nt, int64_t co0,
                   float* M, float* sums) {
  constexpr int PB = kTiles(NV);
  for (int pb = 0; pb < nt; pb += PB) {   // the block's last tiles may lie past the image
    for (int pos = 0; pos < 16; ++pos)
      gemm<NV>(V + (pos * kBlock + pb) * s.c, s.wp + pos * (s.c / 2) * s.co * 2 + co0 * 2, s.c, s.co,
               M + pos * PB * 16 * NV);
    for (int p = 0; p < PB; ++p) {
      const int64_t x0 = 2 * (t0 + pb + p);   // the tile's first output column
      if (x0 >= s.w) break;
      for (int j = 0; j < NV; ++j) {
        Vec m[4][4], z[2][4];
        for (int a = 0; a < 4; ++a)
          for (int b = 0; b < 4; ++b) m[a][b] = load_f32(M + ((a * 4 + b) * PB + p) * 16 * NV + 16 * j);
        for (int b = 0; b < 4; ++b) {   // Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]] on rows, then on columns
          z[0][b] = m[0][b] + m[1][b] + m[2][b];
          z[1][b] = m[1][b] - m[2][b] - m[3][b];
        }
        const Vec bias = load_f32(s.b + co0 + 16 * j);
        for (int i = 0; i < 2; ++i) {
          const int64_t y = 2 * r + i;
          if (y >= s.h) break;
          uint16_t* out = s.y + ((n * s.h + y) * s.w + x0) * s.co + co0 + 16 * j;
          store_bf16(out, z[i][0] + z[i][1] + z[i][2] + bias);
          if (x0 + 1 < s.w) store_bf16(out + s.co, z[i][1] - z[i][2] - z[i][3] + bias);
          if (sums) {   // what was stored, widened again
            Vec total = load_f32(sums + co0 + 16 * j) + load_bf16(out);
            if (x0 + 1 < s.w) total = total + load_bf16(out + s.co);
            store_f32(sums + co0 + 16 * j, total);
          }
        }
      }
    }
  }
}

// Tile rows [r0, r1) of the flattened N·ceil(H/2): each reads input rows 2r-1 .. 2r+2, copied into `pad`
// with zeros around (as SAME padding sees past the edges) and up to whole blocks of tiles.
void wino_rows(const Conv& s, int64_t r0, int64_t r1, std::vector<uint16_t>& pad, std::vector<uint16_t>& V,
               std::vector<float>& T, std::vector<float>& M) {
  const int64_t th = (s.h + 1) / 2, tw = (s.w + 1) / 2;
  const int64_t blocks = (tw + kBlock - 1) / kBlock, width = 2 * blocks * kBlock + 2;
  pad.assign(4 * width * s.c, 0);
  // A register tile's tiles past the image read finite leftovers (zeros at first); their sums are never stored.
  V.assign(16 * kBlock * s.c, 0);
  T.resize(4 * (2 * kBlock + 2) * 16);
  M.resize(16 * kBlock * 32);   // 16 positions × one register tile (6 × 64 = 12 × 32 floats)
  for (int64_t rr = r0; rr < r1; ++rr) {
    const int64_t n = rr / th, r = rr % th;
    float* sums = s.sums ? s.sums + rr * s.co : nullptr;
    if (sums) std::fill(sums, sums + s.co, 0.0f);
    for (int k = 0; k < 4; ++k) {
      uint16_t* dst = pad.data() + k * width * s.c + s.c;
      const int64_t y = 2 * r - 1 + k;
      if (y < 0 || y >= s.h) std::fill(dst, dst + s.w * s.c, 0);
      else std::memcpy(dst, s.x + ((n * s.h + y) * s.w) * s.c, s.w * s.c * sizeof(uint16_t));
    }
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t t0 = b * kBlock, nt = std::min<int64_t>(kBlock, tw - t0);
      for (int64_t cv = 0; cv < s.c / 16; ++cv) {
        // Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] down the four rows, once per column…
        for (int64_t col = 0; col < 2 * nt + 2; ++col) {
          Vec d[4];
          for (int k = 0; k < 4; ++k) d[k] = load_bf16(pad.data() + (k * width + 2 * t0 + col) * s.c + 16 * cv);
          const Vec t[4] = {d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]};
          for (int i = 0; i < 4; ++i) store_f32(T.data() + (i * (2 * kBlock + 2) + col) * 16, t[i]);
        }
        // …then across each tile's four columns.
        for (int t = 0; t < nt; ++t)
          for (int i = 0; i < 4; ++i) {
            const float* row = T.data() + (i * (2 * kBlock + 2) + 2 * t) * 16;
            const Vec e0 = load_f32(row), e1 = load_f32(row + 16), e2 = load_f32(row + 32), e3 = load_f32(row + 48);
            const Vec v[4] = {e0 - e2, e1 + e2, e2 - e1, e1 - e3};
            for (int j = 0; j < 4; ++j) store_bf16(V.data() + ((i * 4 + j) * kBlock + t) * s.c + 16 * cv, v[j]);
          }
      }
      int64_t co0 = 0;
      for (; co0 + 64 <= s.co; co0 += 64) wino_channels<4>(s, V.data(), n, r, t0, nt, co0, M.data(), sums);
      for (; co0 + 32 <= s.co; co0 += 32) wino_channels<2>(s, V.data(), n, r, t0, nt, co0, M.data(), sums);
      for (; co0 + 16 <= s.co; co0 += 16) wino_channels<1>(s, V.data(), n, r, t0, nt, co0, M.data(), sums);
    }
  }
}

// Output rows [r0, r1) of the flattened N·H. Each output row reads three input rows, copied first into
// `pad` with a zero pixel at both ends (and zeros past the end for the last tile's spare pixels): the
// copies are 1/(3·Cout) of the work and keep the tile loops free of edge tests.
void rows(const Conv& s, int64_t r0, int64_t r1, std::vector<uint16_t>& pad, std::vector<float>& buf) {
  const int64_t width = s.w + 2 + std::max(kPixels(1), kAmxPixels);
  pad.assign(3 * width * s.c, 0);
#if defined(RCAN_AMX)
  const bool tiles = amx_fits(s);
  if (tiles) {   // the tile configuration belongs to the thread: set for this chunk of rows, then released
    amx::configure(amx_config());
    buf.resize(kAmxPixels * 32);
  }
#endif
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
#if defined(RCAN_AMX)
    if (tiles)
      for (; co0 + 32 <= s.co; co0 += 32) amx_span(s, rows3, co0, out, buf.data());
#endif
    for (; co0 + 64 <= s.co; co0 += 64) row_span<4>(s, rows3, co0, out);
    for (; co0 + 32 <= s.co; co0 += 32) row_span<2>(s, rows3, co0, out);
    for (; co0 + 16 <= s.co; co0 += 16) row_span<1>(s, rows3, co0, out);
  }
#if defined(RCAN_AMX)
  if (tiles) {
    amx::release();
    amx_spans += (r1 - r0) * (s.co / 32);
  }
#endif
}

// What each thread keeps between its chunks of rows.
struct Scratch {
  std::vector<uint16_t> pad, V;
  std::vector<float> T, M;
};

// wp: [3, 3, C/2, Cout, 2] (direct) or, with winograd, U = G g Gᵀ as [16, C/2, Cout, 2].
ffi::Error run(ffi::ThreadPool& pool, bool winograd, ffi::Buffer<ffi::BF16>& x, ffi::Buffer<ffi::BF16>& wp,
               ffi::Buffer<ffi::F32>& b, ffi::ResultBuffer<ffi::BF16>& y, float* sums = nullptr) {
  const auto xd = x.dimensions(), wd = wp.dimensions(), bd = b.dimensions();
  const size_t rank = winograd ? 4 : 5;
  if (xd.size() != 4 || wd.size() != rank || bd.size() != 1)
    return ffi::Error::InvalidArgument("conv3x3_bf16: x must be [N,H,W,C], wp [3,3,C/2,Cout,2] or [16,C/2,Cout,2], "
                                       "b [Cout]");
  const int64_t c = xd[3], co = wd[rank - 2];
  const bool taps = winograd ? wd[0] == 16 : wd[0] == 3 && wd[1] == 3;
  if (!taps || wd[rank - 3] * 2 != c || wd[rank - 1] != 2 || bd[0] != co || co % 16 != 0 || (winograd && c % 16 != 0))
    return ffi::Error::InvalidArgument("conv3x3_bf16: shapes do not match (C even, 16·k for Winograd; Cout 16·k)");
  const Conv s{xd[0], xd[1], xd[2], c, co, reinterpret_cast<const uint16_t*>(x.typed_data()),
               reinterpret_cast<const uint16_t*>(wp.typed_data()), b.typed_data(),
               reinterpret_cast<uint16_t*>(y->typed_data()), sums};
  // Output rows, or tile rows for Winograd, of the flattened batch.
  rcan::parallel_for<Scratch>(pool, s.n * (winograd ? (s.h + 1) / 2 : s.h),
                              [s, winograd](int64_t r0, int64_t r1, Scratch& sc) {
                                if (winograd) wino_rows(s, r0, r1, sc.pad, sc.V, sc.T, sc.M);
                                else rows(s, r0, r1, sc.pad, sc.M);
                              });
#if defined(RCAN_AMX)
  if (amx::failed()) return ffi::Error::Internal("conv3x3_bf16: a tile operation broke AMX's shape rules");
#endif
  return ffi::Error::Success();
}

ffi::Error conv3x3(ffi::ThreadPool pool, ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::BF16> wp,
                   ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::BF16> y) {
  return run(pool, false, x, wp, b, y);
}

ffi::Error winograd2(ffi::ThreadPool pool, ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::BF16> up,
                     ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::BF16> y, ffi::ResultBuffer<ffi::F32> sums,
                     int32_t pooled) {
  const auto xd = x.dimensions(), sd = sums->dimensions(), ud = up.dimensions();
  if (pooled && (xd.size() != 4 || ud.size() != 4 || sd.size() != 3 || sd[0] != xd[0] || sd[1] != (xd[1] + 1) / 2 ||
                 sd[2] != ud[2]))
    return ffi::Error::InvalidArgument("winograd2_bf16: sums must be [N, tile rows, Cout]");
  return run(pool, true, x, up, b, y, pooled ? sums->typed_data() : nullptr);
}

// Both handlers take (x, weights, bias) and return y, on XLA's CPU thread pool; Winograd also the sums.
auto binding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::BF16>>()
      .Arg<ffi::Buffer<ffi::BF16>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::BF16>>();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RcanConv3x3Bf16, conv3x3, binding());

// How many row spans ran on AMX tiles in this process (0 in a build without them).
extern "C" int64_t RcanAmxSpans() {
#if defined(RCAN_AMX)
  return amx_spans.load();
#else
  return 0;
#endif
}
// Whether this build runs the direct scheme on AMX tiles: 0 if it does (Linux granted the tile state), the
// errno of Linux's refusal if not (then its vdpbf16ps code runs), -1 for a build without tiles.
extern "C" int RcanAmxRefusal() {
#if defined(RCAN_AMX)
  return amx::refusal();
#else
  return -1;
#endif
}
XLA_FFI_DEFINE_HANDLER_SYMBOL(RcanWinograd2Bf16, winograd2,
                              binding().Ret<ffi::Buffer<ffi::F32>>().Attr<int32_t>("pooled"));
