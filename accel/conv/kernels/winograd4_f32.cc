// SAME 3×3 convolution, stride 1, of NHWC activations as Winograd F(4×4, 3×3) in float32 (Lavin & Gray; the
// matrices of accel/winograd.py), with its three steps fused per block of tiles so that the Winograd-domain
// data never leaves the core's caches: input transform V = Bᵀ d B, 36 GEMMs [tiles × C]·[C × Cout] on
// AVX-512 (or AVX2) FMAs, output transform Y = Aᵀ M A + bias. XLA runs the same algorithm as separate passes over
// memory (accel/winograd.py), 36/16 = 2.25× the activations written and read again per step; this is the
// XLA FFI custom call that accel/cpu_kernel.py builds, registers and calls.
//
//   x  f32 [N, H, W, C]       activations (C a multiple of 16)
//   u  f32 [36, C, Cout]      the Winograd-domain filter U = G g Gᵀ (accel/winograd.py's filter_transform)
//   b  f32 [Cout]             bias (Cout a multiple of 16)
//   y  f32 [N, H, W, Cout]
//   sums f32 [N, R, Cout]      with the attribute pooled = 1: per output channel, the sum of y over each work
//                              item's pixels (R items per image), the channel attention's global average
//                              pooling taken as y is written instead of in another pass over it (XLA adds up
//                              the R rows); otherwise not written
//
// RcanWinograd4Bf16Io takes and gives bfloat16 activations (x, y) for a bfloat16 model, with the same float32
// arithmetic inside: x widened as it is read, y rounded once (to nearest even) as it is written, where XLA
// would add a convert pass over memory on each side of a float32 call. It is the kernel a bfloat16 model has
// on CPUs without AVX512-BF16, and the more accurate one where both run.
//
// Built for AVX2 + FMA (a CPU without AVX-512), the GEMMs take 8-float vectors and smaller register tiles;
// built without either, the same loops run as plain C++: slow, but the tests check the layout, the edges
// and the threads with it on any machine.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#define RCAN_AVX2 1
#endif

// The transforms' vector, written once over kLanes float32 lanes: 16 (a zmm register with AVX-512, and the
// portable build), 8 for AVX2 (a ymm register: a transform's 6 + 6 vectors then fit AVX2's 16 registers, where
// 16-lane vectors, each split in two, spilled to the stack: 1.8–2.8× the input transform's time).
#if defined(RCAN_AVX2)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 16;
#endif
typedef float Vec __attribute__((vector_size(4 * kLanes)));

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// bfloat16 activations, as their bits: kLanes of them widen to float32 by moving to the upper half, and
// float32 rounds to nearest even by adding 0x7FFF plus the kept part's lowest bit (NaN stays a quiet NaN).
typedef uint16_t Bits16 __attribute__((vector_size(2 * kLanes)));
typedef uint32_t Bits32 __attribute__((vector_size(4 * kLanes)));
typedef int32_t Mask32 __attribute__((vector_size(4 * kLanes)));

inline Vec load(const uint16_t* p) {
  Bits16 h;
  std::memcpy(&h, p, sizeof h);
  const Bits32 bits = __builtin_convertvector(h, Bits32) << 16;
  Vec v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}
inline void store(uint16_t* p, Vec v) {
  Bits32 bits;
  std::memcpy(&bits, &v, sizeof bits);
  const Mask32 nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
  const Bits32 rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  const Bits32 quiet = (bits >> 16) | 0x40u;
  const Bits16 h = __builtin_convertvector((rounded & ~Bits32(nan)) | (quiet & Bits32(nan)), Bits16);
  std::memcpy(p, &h, sizeof h);
}

// T: the activations' storage, float (float32) or uint16_t (bfloat16 bits).
template <typename T>
struct Conv {
  int64_t n, h, w, c, co;
  const T* x;
  const float* u;
  const float* b;
  T* y;
  float* sums;   // [items, co], or nullptr: not wanted
};

// Tiles per block: the block's V and M ([36][kBlock][C] each, 221 KB at C = 64) stay in a 1 MB L2 cache
// between the steps, and one position's slice of V (6 KB) with its 16 KB of U in L1 during its GEMM.
constexpr int kBlock = 24;
// Register tiles of the GEMMs: PB tiles × NV vectors of 16 output channels, NV at most kWidest. AVX-512 (and
// the portable build, so that the tests run its tiling): 16 accumulators at 64 channels (of 32 registers;
// enough independent sums to keep both FMA pipes busy); 4 tiles rather than 6 (24 accumulators, as fast in
// the GEMM) waste no work on the images' rows of 16, 32 or 64 tiles: 10 % less time at 64×64 and 128×128.
// AVX2 has 16 registers of 8 floats: 6 tiles × 16 channels (12 accumulators, 2 filter vectors, 1 broadcast).
// kBlock is a multiple of every PB.
#if defined(RCAN_AVX2)
constexpr int kWidest = 1;
constexpr int kTiles(int) { return 6; }
#else
constexpr int kWidest = 4;
constexpr int kTiles(int nv) { return nv == 4 ? 4 : 8; }
#endif
// V and M hold one position's kBlock tiles after another, with 16 floats (a cache line) between positions:
// unpadded, the 36 positions lie 6 KB apart (at 64 channels) and share two of L1's 64 sets, so the
// transforms, which touch all 36 for each tile, evicted their own lines.
inline int64_t stride(int64_t channels) { return kBlock * channels + 16; }

// M[p][·] = Σ_c V[p][c]·U[c][·] for PB tiles and 16·NV output channels (V [PB][C], U [C][Cout], M [PB][Cout]).
template <int NV, int PB>
__attribute__((always_inline)) inline void gemm(const float* V, const float* U, int64_t c, int64_t co, float* M) {
#if defined(__AVX512F__)
  __m512 acc[PB][NV];
  for (int p = 0; p < PB; ++p)
    for (int j = 0; j < NV; ++j) acc[p][j] = _mm512_setzero_ps();
  for (int64_t ci = 0; ci < c; ++ci) {
    __m512 wv[NV];
    for (int j = 0; j < NV; ++j) wv[j] = _mm512_loadu_ps(U + ci * co + 16 * j);
    for (int p = 0; p < PB; ++p) {
      const __m512 xb = _mm512_set1_ps(V[p * c + ci]);
      for (int j = 0; j < NV; ++j) acc[p][j] = _mm512_fmadd_ps(xb, wv[j], acc[p][j]);
    }
  }
  for (int p = 0; p < PB; ++p)
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(M + p * co + 16 * j, acc[p][j]);
#elif defined(RCAN_AVX2)
  __m256 acc[PB][2 * NV];
  for (int p = 0; p < PB; ++p)
    for (int j = 0; j < 2 * NV; ++j) acc[p][j] = _mm256_setzero_ps();
  for (int64_t ci = 0; ci < c; ++ci) {
    __m256 wv[2 * NV];
    for (int j = 0; j < 2 * NV; ++j) wv[j] = _mm256_loadu_ps(U + ci * co + 8 * j);
    for (int p = 0; p < PB; ++p) {
      const __m256 xb = _mm256_broadcast_ss(V + p * c + ci);
      for (int j = 0; j < 2 * NV; ++j) acc[p][j] = _mm256_fmadd_ps(xb, wv[j], acc[p][j]);
    }
  }
  for (int p = 0; p < PB; ++p)
    for (int j = 0; j < 2 * NV; ++j) _mm256_storeu_ps(M + p * co + 8 * j, acc[p][j]);
#else
  for (int p = 0; p < PB; ++p)
    for (int k = 0; k < 16 * NV; ++k) {
      float sum = 0;
      for (int64_t ci = 0; ci < c; ++ci) sum += V[p * c + ci] * U[ci * co + k];
      M[p * co + k] = sum;
    }
#endif
}

// Bᵀ (rows 4 0 -5 0 1 0 | 0 -4 -4 1 1 0 | 0 4 -4 -1 1 0 | 0 -2 -1 2 1 0 | 0 2 -1 -2 1 0 | 0 4 0 -5 0 1)
// applied to six vectors, with the shared partial sums.
inline void input_rows(const Vec d[6], Vec t[6]) {
  const Vec a = d[4] - 4.0f * d[2], b = d[3] - 4.0f * d[1];
  const Vec e = d[4] - d[2], f = 2.0f * (d[3] - d[1]);
  t[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
  t[1] = a + b;
  t[2] = a - b;
  t[3] = e + f;
  t[4] = e - f;
  t[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

// Aᵀ (rows 1 1 1 1 1 0 | 0 1 -1 2 -2 0 | 0 1 1 4 4 0 | 0 1 -1 8 -8 1) applied to six vectors.
inline void output_rows(const Vec m[6], Vec z[4]) {
  const Vec s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  z[0] = m[0] + s12 + s34;
  z[1] = d12 + 2.0f * d34;
  z[2] = s12 + 4.0f * s34;
  z[3] = d12 + 8.0f * d34 + m[5];
}

// What each thread keeps between its blocks: the column pass, V and M of one block.
struct Scratch {
  std::vector<float> T, V, M;
};

// The GEMMs of the block's nt tiles at one position, for output channels co0 up to co1 in register tiles
// of 16·NV channels.
template <int NV, typename T>
int64_t gemms(const Conv<T>& s, const float* V, int64_t nt, int pos, int64_t co0, int64_t co1, float* M) {
  constexpr int PB = kTiles(NV);
  const int64_t ldv = stride(s.c), ldm = stride(s.co);
  for (; co0 + 16 * NV <= co1; co0 += 16 * NV) {
    const float* v = V + pos * ldv;
    const float* u = s.u + pos * s.c * s.co + co0;
    float* m = M + pos * ldm + co0;
    int64_t p = 0;
    for (; p + PB <= nt; p += PB) gemm<NV, PB>(v + p * s.c, u, s.c, s.co, m + p * s.co);
    // The last tiles in the narrowest register tile that covers them (a row of 16 tiles in AVX2's 6-tile
    // register tiles: 6 + 6 + 4, not 18 computed); one that runs past nt computes rows never read.
    const int64_t rest = nt - p;
    if (rest > 0 && rest <= 2)
      gemm<NV, 2>(v + p * s.c, u, s.c, s.co, m + p * s.co);
    else if (rest > 2 && rest <= 4 && PB > 4)
      gemm<NV, 4>(v + p * s.c, u, s.c, s.co, m + p * s.co);
    else if (rest > 0)
      gemm<NV, PB>(v + p * s.c, u, s.c, s.co, m + p * s.co);
  }
  return co0;
}

// The block of nt tiles from tile t0 in tile row r of image n: input transform into V, then for each
// position the GEMMs of all the block's tiles (that position's U and V stay in L1), then the output transform.
template <bool kSums, typename T>
void block(const Conv<T>& s, int64_t n, int64_t r, int64_t t0, int64_t nt, Scratch& sc, float* sums) {
  const int64_t cols = 4 * nt + 2, width = 4 * kBlock + 2, ldv = stride(s.c), ldm = stride(s.co);
  const Vec zero = {};
  // Input transform, kLanes channels at a time: Bᵀ down the six input rows of each column (zeros past the
  // image, as SAME padding sees)…
  for (int64_t cv = 0; cv < s.c / kLanes; ++cv) {
    const T* rows[6];
    for (int k = 0; k < 6; ++k) {
      const int64_t yy = 4 * r - 1 + k;
      rows[k] = yy >= 0 && yy < s.h ? s.x + ((n * s.h + yy) * s.w) * s.c + kLanes * cv : nullptr;
    }
    for (int64_t col = 0; col < cols; ++col) {
      const int64_t xx = 4 * t0 - 1 + col;
      const bool inside = xx >= 0 && xx < s.w;
      Vec d[6], t[6];
      for (int k = 0; k < 6; ++k) d[k] = inside && rows[k] ? load(rows[k] + xx * s.c) : zero;
      input_rows(d, t);
      for (int i = 0; i < 6; ++i) store(sc.T.data() + (i * width + col) * kLanes, t[i]);
    }
    // …then across each tile's six columns.
    for (int64_t t = 0; t < nt; ++t)
      for (int i = 0; i < 6; ++i) {
        Vec e[6], v[6];
        for (int k = 0; k < 6; ++k) e[k] = load(sc.T.data() + (i * width + 4 * t + k) * kLanes);
        input_rows(e, v);
        for (int j = 0; j < 6; ++j) store(sc.V.data() + (i * 6 + j) * ldv + t * s.c + kLanes * cv, v[j]);
      }
  }
  for (int pos = 0; pos < 36; ++pos) {
    int64_t co0 = 0;
    if (kWidest >= 4) co0 = gemms<4>(s, sc.V.data(), nt, pos, co0, s.co, sc.M.data());
    if (kWidest >= 2) co0 = gemms<2>(s, sc.V.data(), nt, pos, co0, s.co, sc.M.data());
    gemms<1>(s, sc.V.data(), nt, pos, co0, s.co, sc.M.data());
  }
  // Output transform: Aᵀ down each column of the 6×6 M, then across the four rows; + bias; the tiles'
  // pixels past the image are not stored.
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t x0 = 4 * (t0 + t);
    for (int64_t v = 0; v < s.co / kLanes; ++v) {
      Vec z[4][6];
      for (int b = 0; b < 6; ++b) {
        Vec m[6], o[4];
        for (int a = 0; a < 6; ++a) m[a] = load(sc.M.data() + (a * 6 + b) * ldm + t * s.co + kLanes * v);
        output_rows(m, o);
        for (int i = 0; i < 4; ++i) z[i][b] = o[i];
      }
      const Vec bias = load(s.b + kLanes * v);
      for (int i = 0; i < 4; ++i) {
        const int64_t yy = 4 * r + i;
        if (yy >= s.h) break;
        Vec o[4];
        output_rows(z[i], o);
        T* out = s.y + ((n * s.h + yy) * s.w + x0) * s.co + kLanes * v;
        Vec total = {};
        for (int j = 0; j < 4 && x0 + j < s.w; ++j) {
          store(out + j * s.co, o[j] + bias);
          if (kSums) total += load(out + j * s.co);   // what was stored (rounded, for bfloat16)
        }
        if (kSums) store(sums + kLanes * v, load(sums + kLanes * v) + total);
      }
    }
  }
}

template <typename T>
ffi::Error run(ffi::ThreadPool pool, ffi::Span<const int64_t> xd, const T* x, ffi::Buffer<ffi::F32> u,
               ffi::Buffer<ffi::F32> b, T* y, ffi::ResultBuffer<ffi::F32> sums, int32_t pooled) {
  const auto ud = u.dimensions(), bd = b.dimensions();
  if (xd.size() != 4 || ud.size() != 3 || bd.size() != 1)
    return ffi::Error::InvalidArgument("winograd4: x must be [N,H,W,C], u [36,C,Cout], b [Cout]");
  const int64_t c = xd[3], co = ud[2];
  if (ud[0] != 36 || ud[1] != c || bd[0] != co || c % 16 != 0 || co % 16 != 0)
    return ffi::Error::InvalidArgument("winograd4: shapes do not match (C and Cout multiples of 16)");
  const Conv<T> s{xd[0], xd[1], xd[2], c, co, x, u.typed_data(), b.typed_data(), y,
                  pooled ? sums->typed_data() : nullptr};
  const int64_t th = (s.h + 3) / 4, tw = (s.w + 3) / 4, blocks = (tw + kBlock - 1) / kBlock;
  const auto sd = sums->dimensions();
  if (pooled && (sd.size() != 3 || sd[0] != s.n || sd[1] != th * blocks || sd[2] != co))
    return ffi::Error::InvalidArgument("winograd4: sums must be [N, tile rows · blocks of 24 tiles, Cout]");
  // Work items: (image, tile row, block of tiles).
  rcan::parallel_for<Scratch>(pool, s.n * th * blocks, [s, th, tw, blocks](int64_t i0, int64_t i1, Scratch& sc) {
    if (sc.V.empty()) {
      sc.T.resize(6 * (4 * kBlock + 2) * kLanes);
      // V's register tiles past the block's last tile read finite leftovers (zeros at first); their sums are
      // never stored.
      sc.V.assign(36 * stride(s.c), 0.0f);
      sc.M.resize(36 * stride(s.co));
    }
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t row = item / blocks, t0 = item % blocks * kBlock;
      const int64_t nt = std::min<int64_t>(kBlock, tw - t0);
      if (s.sums) {   // a template argument: no test in the output loop
        float* sums = s.sums + item * s.co;
        std::fill(sums, sums + s.co, 0.0f);
        block<true>(s, row / th, row % th, t0, nt, sc, sums);
      } else {
        block<false>(s, row / th, row % th, t0, nt, sc, nullptr);
      }
    }
  });
  return ffi::Error::Success();
}

ffi::Error winograd4(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> u,
                     ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::F32> sums,
                     int32_t pooled) {
  return run(pool, x.dimensions(), x.typed_data(), u, b, y->typed_data(), sums, pooled);
}

ffi::Error winograd4_bf16_io(ffi::ThreadPool pool, ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::F32> u,
                             ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::BF16> y,
                             ffi::ResultBuffer<ffi::F32> sums, int32_t pooled) {
  return run(pool, x.dimensions(), reinterpret_cast<const uint16_t*>(x.typed_data()), u, b,
             reinterpret_cast<uint16_t*>(y->typed_data()), sums, pooled);
}

template <ffi::DataType A>
auto binding() {   // (x, u, b; pooled) -> (y, sums), activations in A, on XLA's CPU thread pool
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .template Arg<ffi::Buffer<A>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .template Arg<ffi::Buffer<ffi::F32>>()
      .template Ret<ffi::Buffer<A>>()
      .template Ret<ffi::Buffer<ffi::F32>>()
      .template Attr<int32_t>("pooled");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RcanWinograd4F32, winograd4, binding<ffi::F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(RcanWinograd4Bf16Io, winograd4_bf16_io, binding<ffi::BF16>());
