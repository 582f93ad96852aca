// Intel AMX tiles for conv3x3_bf16.cc: eight tile registers of up to 16 rows × 64 bytes, loaded from
// memory with a row stride, and TDPBF16PS, C[m][n] += Σ_k A[m][2k]·B[k][2n] + A[m][2k+1]·B[k][2n+1]
// (float32 C, bfloat16 A and B: B holds K/2 rows of pairs, as vdpbf16ps reads them; 16×16×32 products
// per instruction). The kernel is written once over this interface (the AMX_* macros):
// - built with -mamx-tile -mamx-bf16: the instructions (Sapphire Rapids and later Xeons), after asking
//   Linux once per process for the tile state (arch_prctl ARCH_REQ_XCOMP_PERM, kernel 5.16+);
// - built with -DRCAN_AMX_EMULATE: the same operations in plain C++ on a per-thread register file, which
//   checks each operation's shapes against the configuration as the hardware does, so the tests check
//   the kernel's tiles, strides and edges on any CPU.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include "bf16.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#endif

namespace amx {

// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) Config {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};   // bytes per row of each tile
  uint8_t rows[16] = {};
};

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)

// Linux hands a process the 8 KB tile state only when asked (once per process; the answer holds for every
// thread): 0 when granted, else the errno of the refusal (EOPNOTSUPP: a CPU without AMX; EINVAL: a kernel
// before 5.16; ENOSPC: a thread's alternate signal stack too small for a signal frame with the tile state).
inline int refusal() {
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  static const int error = syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0 ? 0 : errno;
  return error;
}
// Whether this process may use the tiles.
inline bool enable() { return refusal() == 0; }
inline bool failed() { return false; }
inline void configure(const Config& c) { _tile_loadconfig(&c); }
inline void release() { _tile_release(); }
// The intrinsics take tile numbers as literals (the compiler pastes them into the instruction's text).
#define AMX_ZERO(t) _tile_zero(t)
#define AMX_LOAD(t, p, stride) _tile_loadd(t, p, stride)
#define AMX_STORE(t, p, stride) _tile_stored(t, p, stride)
#define AMX_DOT(c, a, b) _tile_dpbf16ps(c, a, b)

#elif defined(RCAN_AMX_EMULATE)

struct Registers {
  Config cfg;
  bool configured = false;
  alignas(64) uint8_t t[8][16 * 64];
};
inline Registers& regs() {
  thread_local Registers r;
  return r;
}
// Set by an operation the hardware would fault on (unconfigured tile, mismatched shapes); the handler
// then returns an error instead of a result.
inline std::atomic<bool>& fault() {
  static std::atomic<bool> f{false};
  return f;
}
inline int refusal() { return 0; }
inline bool enable() { return true; }
inline bool failed() { return fault(); }
inline void configure(const Config& c) {
  bool ok = c.palette == 1;
  for (int i = 0; i < 8; ++i) ok = ok && c.rows[i] <= 16 && c.colsb[i] <= 64;
  if (!ok) fault() = true;
  regs().cfg = c;
  regs().configured = ok;
}
inline void release() { regs() = Registers{}; }
inline bool usable(int t) {
  if (!regs().configured || regs().cfg.rows[t] == 0 || regs().cfg.colsb[t] == 0) fault() = true;
  return !fault();
}
inline void zero(int T) {
  if (usable(T)) std::memset(regs().t[T], 0, sizeof regs().t[T]);
}
inline void load(int T, const void* p, int64_t stride) {
  if (!usable(T)) return;
  std::memset(regs().t[T], 0, sizeof regs().t[T]);   // what lies past the configured shape reads as zero
  for (int r = 0; r < regs().cfg.rows[T]; ++r)
    std::memcpy(regs().t[T] + 64 * r, static_cast<const uint8_t*>(p) + r * stride, regs().cfg.colsb[T]);
}
inline void store(int T, void* p, int64_t stride) {
  if (!usable(T)) return;
  for (int r = 0; r < regs().cfg.rows[T]; ++r)
    std::memcpy(static_cast<uint8_t*>(p) + r * stride, regs().t[T] + 64 * r, regs().cfg.colsb[T]);
}
inline float widen(const uint8_t* p) {   // one bfloat16 in a tile row -> float32
  uint16_t v;
  std::memcpy(&v, p, 2);
  return rcan::to_float(v);
}
inline void dot(int C, int A, int B) {
  if (!usable(C) || !usable(A) || !usable(B)) return;
  const Config& c = regs().cfg;
  // TDPBF16PS's shape rules: M = rows of C and A, K/2 = A's 4-byte columns = B's rows, N = C's and B's columns.
  if (c.rows[A] != c.rows[C] || c.colsb[A] / 4 != c.rows[B] || c.colsb[B] != c.colsb[C] || c.colsb[A] % 4) {
    fault() = true;
    return;
  }
  for (int m = 0; m < c.rows[C]; ++m)
    for (int n = 0; n < c.colsb[C] / 4; ++n) {
      float acc;
      std::memcpy(&acc, regs().t[C] + 64 * m + 4 * n, 4);
      for (int k = 0; k < c.rows[B]; ++k) {
        const uint8_t* a = regs().t[A] + 64 * m + 4 * k;
        const uint8_t* b = regs().t[B] + 64 * k + 4 * n;
        acc += widen(a) * widen(b);
        acc += widen(a + 2) * widen(b + 2);
      }
      std::memcpy(regs().t[C] + 64 * m + 4 * n, &acc, 4);
    }
}
#define AMX_ZERO(t) amx::zero(t)
#define AMX_LOAD(t, p, stride) amx::load(t, p, stride)
#define AMX_STORE(t, p, stride) amx::store(t, p, stride)
#define AMX_DOT(c, a, b) amx::dot(c, a, b)
#endif

}  // namespace amx
