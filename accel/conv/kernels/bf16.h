// bfloat16 <-> float32 one value at a time, for the plain C++ code paths (the portable builds and the
// emulated AMX tiles): a bfloat16 is the upper half of a float32.
#pragma once

#include <cstdint>
#include <cstring>

namespace rcan {

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

}  // namespace rcan
