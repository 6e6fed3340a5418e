// autobin packed binary convolution: XOR/popcount kernels for the CPU.
//
// Built by autobin/deploy/build.py into a shared library loaded with ctypes (plain C ABI, no
// torch headers, so it builds in seconds). One build serves every x86-64 CPU: the AVX-512 and
// AVX2 code carries per-function target attributes and is only called when
// autobin_cpu_features() reports the instructions. Threads come from OpenMP; the process
// shares torch's libgomp (same soname), so there is one thread pool.
//
// Data layouts (see autobin/deploy/layers.py for the Python side):
//   activations  act[pixel][group][word]   64 input channels of a group per uint64 word, bit
//                                          c % 64 set where the binarized input is +1; bits past
//                                          the group's channel count are 0
//   input counts sa[pixel][group]          sum of the input signs of the group (2*ones - Cg)
//   weights      wt[group][oblock][l][32]  l = i * RW + r for kernel row i and word r of
//                                          the row, 32 output channels per block; padded
//                                          channels and bits are 0. A row holds its kw taps:
//                                          tap j's word k at r = j * K + k, RW = kw * K; or,
//                                          with fewer than 64 channels per group where it
//                                          saves words ("dense" rows), tap j's channel c at
//                                          bit j * Cg + c of the row, RW = ceil(kw * Cg / 64)
//   tap counts   pcw[o][tap]               popcount of output channel o's bits at a tap
//   output       out[pixel][O]             float32 (NHWC)
//
// For one output channel o and output position p with valid taps V (padded taps are skipped:
// the fake-quantized layer pads its binarized input with 0):
//   X    = sum over all taps, words of popcount(w ^ a)   (padded taps read a = 0, adding I_o)
//   I_o  = sum over invalid taps of pcw[o][t]
//   dot  = nv - 2 (X - I_o)                     nv = Cg * |V|      exact integers
//   y    = cdot*dot + csw*Sw_V + csa*Sa_V + cn*nv + bias
//        = m*X + base + csa*Sa_V,   m = -2 cdot,  base = cdot*(nv + 2 I_o) + csw*Sw_V + cn*nv + bias
// with cdot = s*alpha_w*alpha_a, csw = s*alpha_w*c_a, csa = s*beta_w*alpha_a, cn = s*beta_w*c_a
// and s the folded BatchNorm scale (ADABIN.md section 6).

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace {

constexpr int kPixBlock = 4;  // output pixels per micro-kernel call
constexpr int kOBlock = 32;   // output channels per weight block

enum Path { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

inline uint64_t popcount_swar(uint64_t v) {
  v = v - ((v >> 1) & 0x5555555555555555ULL);
  v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
  v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
  return (v * 0x0101010101010101ULL) >> 56;
}

// ------------------------------------------------------------------ input packing
void pack_pixel_portable(const float* x, int64_t cg, int64_t k_words, float thr, uint64_t* out,
                         int32_t* sa) {
  int64_t ones = 0;
  for (int64_t k = 0; k < k_words; ++k) {
    uint64_t word = 0;
    const int64_t c0 = k * 64, c1 = std::min<int64_t>(cg, c0 + 64);
    for (int64_t c = c0; c < c1; ++c) word |= static_cast<uint64_t>(x[c] >= thr) << (c - c0);
    out[k] = word;
    ones += static_cast<int64_t>(popcount_swar(word));
  }
  *sa = static_cast<int32_t>(2 * ones - cg);
}

__attribute__((target("avx2,popcnt"), always_inline)) inline void pack_pixel_avx2(
    const float* x, int64_t cg,
                                                              int64_t k_words, float thr,
                                                              uint64_t* out, int32_t* sa) {
  const __m256 t = _mm256_set1_ps(thr);
  int64_t ones = 0;
  for (int64_t k = 0; k < k_words; ++k) {
    uint64_t word = 0;
    const int64_t c0 = k * 64, c1 = std::min<int64_t>(cg, c0 + 64);
    int64_t c = c0;
    for (; c + 8 <= c1; c += 8) {
      const __m256 v = _mm256_loadu_ps(x + c);
      const int bits = _mm256_movemask_ps(_mm256_cmp_ps(v, t, _CMP_GE_OQ));
      word |= static_cast<uint64_t>(static_cast<uint32_t>(bits)) << (c - c0);
    }
    for (; c < c1; ++c) word |= static_cast<uint64_t>(x[c] >= thr) << (c - c0);
    out[k] = word;
    ones += _mm_popcnt_u64(word);
  }
  *sa = static_cast<int32_t>(2 * ones - cg);
}

__attribute__((target("avx512f,avx512vpopcntdq,popcnt"), always_inline)) inline void pack_pixel_avx512(
    const float* x, int64_t cg, int64_t k_words, float thr, uint64_t* out, int32_t* sa) {
  const __m512 t = _mm512_set1_ps(thr);
  int64_t ones = 0;
  for (int64_t k = 0; k < k_words; ++k) {
    uint64_t word = 0;
    const int64_t c0 = k * 64, c1 = std::min<int64_t>(cg, c0 + 64);
    if (c1 - c0 == 64) {  // a full word: four compares, no masks
      const float* v = x + c0;
      word = static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(v), t, _CMP_GE_OQ)) |
             static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(v + 16), t, _CMP_GE_OQ))
                 << 16 |
             static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(v + 32), t, _CMP_GE_OQ))
                 << 32 |
             static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(v + 48), t, _CMP_GE_OQ))
                 << 48;
    } else {
      int64_t c = c0;
      for (; c + 16 <= c1; c += 16)
        word |= static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + c), t, _CMP_GE_OQ))
                << (c - c0);
      if (c < c1) {
        const __mmask16 live = static_cast<__mmask16>((1u << (c1 - c)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(live, x + c);
        word |= static_cast<uint64_t>(_mm512_mask_cmp_ps_mask(live, v, t, _CMP_GE_OQ)) << (c - c0);
      }
    }
    out[k] = word;
    ones += _mm_popcnt_u64(word);
  }
  *sa = static_cast<int32_t>(2 * ones - cg);
}

// ------------------------------------------------------------------ micro-kernels
// Each computes, for up to kPixBlock pixels (rows of `patch`, L words each, zero rows past
// npix) and all Og output channels of one group:
//   out[p][o] = m[o] * X[p][o] + base[p][o] + csa[o] * sa[p],  X = sum_l popcount(wt ^ patch)
struct Block {
  // activation word l of pixel p: act[p * pstride + aidx[l]] (the packed input in place)
  const uint64_t* act;
  const int64_t* aidx;
  int64_t pstride;
  int64_t L;
  const uint64_t* wt;  // nob x L x 32
  int64_t og;
  const float* m;
  const float* csa;
  const float* base[kPixBlock];
  float sa[kPixBlock];
  float* out[kPixBlock];
  const float* res[kPixBlock];   // added to the output (a fused residual), or null
  const float* res2[kPixBlock];  // added after res (a fused shortcut add), or null
  int npix;
  // AVX-512 only: the fused Maxout (gp/gn, or null) and, where bits[0] is set, the output's
  // binarization y >= next_thr written 16 channels at a time into each pixel's packed words
  // (one group), its ones counted into ones[p]
  const float* gp;
  const float* gn;
  float next_thr;
  uint16_t* bits[kPixBlock];
  int32_t* ones;
};

// One output of a block: m * popcount + base + csa * sa (+ the fused residual). Always inlined,
// so it is compiled with each caller's target and the paths keep their exact arithmetic.
__attribute__((always_inline)) inline void store_output(const Block& b, int p, int64_t o,
                                                        uint64_t count) {
  float y = b.m[o] * static_cast<float>(count) + b.base[p][o] + b.csa[o] * b.sa[p];
  if (b.res[p]) y += b.res[p][o];
  if (b.res2[p]) y += b.res2[p][o];
  b.out[p][o] = y;
}

void block_portable(const Block& b) {
  const int64_t nob = (b.og + kOBlock - 1) / kOBlock;
  for (int p = 0; p < b.npix; ++p) {
    const uint64_t* a = b.act + p * b.pstride;
    for (int64_t ob = 0; ob < nob; ++ob) {
      uint64_t acc[kOBlock] = {};
      const uint64_t* w = b.wt + ob * b.L * kOBlock;
      for (int64_t l = 0; l < b.L; ++l) {
        const uint64_t al = a[b.aidx[l]];
        for (int j = 0; j < kOBlock; ++j) acc[j] += popcount_swar(w[l * kOBlock + j] ^ al);
      }
      const int64_t o0 = ob * kOBlock, n = std::min<int64_t>(kOBlock, b.og - o0);
      for (int64_t j = 0; j < n; ++j) store_output(b, p, o0 + j, acc[j]);
    }
  }
}

// Outputs o..o+7 of pixel p from two vectors of four 64-bit counts (each below 2^32): the low
// dwords interleaved by one blend, put in order by one permute, converted and combined.
__attribute__((target("avx2,fma"), always_inline)) inline void epilogue8_avx2(
    const Block& b, int p, int64_t o, __m256i lo4, __m256i hi4, __m256 sa) {
  const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i c = _mm256_permutevar8x32_epi32(
      _mm256_blend_epi32(lo4, _mm256_slli_epi64(hi4, 32), 0xAA), order);
  __m256 y = _mm256_fmadd_ps(_mm256_loadu_ps(b.m + o), _mm256_cvtepi32_ps(c),
                             _mm256_loadu_ps(b.base[p] + o));
  y = _mm256_fmadd_ps(_mm256_loadu_ps(b.csa + o), sa, y);
  if (b.res[p]) y = _mm256_add_ps(y, _mm256_loadu_ps(b.res[p] + o));
  if (b.res2[p]) y = _mm256_add_ps(y, _mm256_loadu_ps(b.res2[p] + o));
  _mm256_storeu_ps(b.out[p] + o, y);
}

// Of each 16 output channels, 12 are counted by the nibble lookup on the vector pipes (8 vector
// ops per 4 words: alone, the pipes are the limit) and 4 by scalar POPCNT on the integer units,
// which run alongside (4 ops per word, so more of them make the front end the limit: 12 + 4 is
// the measured optimum, 8 + 8 is slower than all 16 on the vector pipes). One block of 4 pixels
// x 32 channels, against all 16 on the vector pipes (microbenchmark, AMD EPYC Zen 4): 1.05-1.14x
// faster (more for more words per output). Same integers.
constexpr int kAvx2Vectors = 3;  // vectors of 4 channels per 16 on the nibble lookup

__attribute__((target("avx2,fma,popcnt"))) void block_avx2(const Block& b) {
  const int64_t nob = (b.og + kOBlock - 1) / kOBlock;
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
                                       1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  for (int p = 0; p < b.npix; ++p) {
    const uint64_t* a = b.act + p * b.pstride;
    const __m256 sa = _mm256_set1_ps(b.sa[p]);
    for (int64_t ob = 0; ob < nob; ++ob) {
      const uint64_t* w = b.wt + ob * b.L * kOBlock;
      const int64_t o0 = ob * kOBlock, n = std::min<int64_t>(kOBlock, b.og - o0);
      for (int half = 0; 16 * half < n; ++half) {  // 16 output channels = 4 vectors at a time
        __m256i acc64[4] = {zero, zero, zero, zero};
        uint64_t s[16] = {};
        for (int64_t l0 = 0; l0 < b.L; l0 += 31) {  // byte counters hold up to 31 * 8
          const int64_t l1 = std::min<int64_t>(b.L, l0 + 31);
          __m256i acc8[4] = {zero, zero, zero, zero};
#pragma GCC unroll 4  // fewer loop ops per word: the mix is front-end bound (measured +7 %)
          for (int64_t l = l0; l < l1; ++l) {
            const uint64_t* ap = a + b.aidx[l];
            const uint64_t aw = *ap;
            const __m256i av =  // a broadcast from memory: one op
                _mm256_castpd_si256(_mm256_broadcast_sd(reinterpret_cast<const double*>(ap)));
            const uint64_t* wl = w + l * kOBlock + half * 16;
            for (int v = 0; v < kAvx2Vectors; ++v) {
              const __m256i x = _mm256_xor_si256(
                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wl + 4 * v)), av);
              const __m256i lo = _mm256_and_si256(x, low);
              const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
              acc8[v] = _mm256_add_epi8(
                  acc8[v],
                  _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi)));
            }
            for (int j = 4 * kAvx2Vectors; j < 16; ++j) s[j] += _mm_popcnt_u64(wl[j] ^ aw);
          }
          for (int v = 0; v < kAvx2Vectors; ++v)
            acc64[v] = _mm256_add_epi64(acc64[v], _mm256_sad_epu8(acc8[v], zero));
        }
        for (int v = kAvx2Vectors; v < 4; ++v) {  // the scalar counts, kept in registers
          const auto c = [&](int j) { return static_cast<long long>(s[4 * v + j]); };
          acc64[v] = _mm256_setr_epi64x(c(0), c(1), c(2), c(3));
        }
        const int64_t oh = o0 + 16 * half, left = n - 16 * half;
        if (left >= 16) {  // the whole half in registers
          epilogue8_avx2(b, p, oh, acc64[0], acc64[1], sa);
          epilogue8_avx2(b, p, oh + 8, acc64[2], acc64[3], sa);
          continue;
        }
        alignas(32) uint64_t counts[16];
        for (int v = 0; v < 4; ++v)
          _mm256_store_si256(reinterpret_cast<__m256i*>(counts + 4 * v), acc64[v]);
        for (int64_t j = 0; j < left; ++j) store_output(b, p, oh + j, counts[j]);
      }
    }
  }
}

// acc[p][v] += popcount(w ^ a) over the L words, for the first NV vectors of 8 channels
template <int NV>
__attribute__((target("avx512f,avx512vpopcntdq"), always_inline)) inline void accumulate_avx512(
    const uint64_t* w, const Block& b, __m512i (&acc)[kPixBlock][4]) {
  const int64_t* aidx = b.aidx;
  const uint64_t* a0 = b.act;
  const uint64_t* a1 = b.act + b.pstride;
  const uint64_t* a2 = b.act + 2 * b.pstride;
  const uint64_t* a3 = b.act + 3 * b.pstride;
  for (int p = 0; p < kPixBlock; ++p)
    for (int v = 0; v < 4; ++v) acc[p][v] = _mm512_setzero_si512();
  for (int64_t l = 0; l < b.L; ++l) {
    __m512i wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_si512(w + l * kOBlock + 8 * v);
    const int64_t at = aidx[l];
    const __m512i x[4] = {_mm512_set1_epi64(static_cast<long long>(a0[at])),
                          _mm512_set1_epi64(static_cast<long long>(a1[at])),
                          _mm512_set1_epi64(static_cast<long long>(a2[at])),
                          _mm512_set1_epi64(static_cast<long long>(a3[at]))};
    for (int p = 0; p < kPixBlock; ++p)
      for (int v = 0; v < NV; ++v)
        acc[p][v] = _mm512_add_epi64(acc[p][v], _mm512_popcnt_epi64(_mm512_xor_si512(wv[v], x[p])));
  }
}

// Fused: the Maxout and packing steps of the epilogue (b.gp, b.bits) are compiled in (a
// separate instantiation, so the plain epilogue keeps its registers).
template <bool Fused>
__attribute__((target("avx512f,avx512vpopcntdq"))) void block_avx512(const Block& b) {
  const int64_t nob = (b.og + kOBlock - 1) / kOBlock;
  for (int64_t ob = 0; ob < nob; ++ob) {
    const uint64_t* w = b.wt + ob * b.L * kOBlock;
    __m512i acc[kPixBlock][4];
    if (b.og - ob * kOBlock <= 16)  // a last block of at most 16 channels: half the work
      accumulate_avx512<2>(w, b, acc);
    else
      accumulate_avx512<4>(w, b, acc);
    const int64_t o0 = ob * kOBlock;
    // the low dwords of two vectors of 8 64-bit counts: 16 counts (each below 2^32)
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                            28, 30);
    for (int half = 0; half < 2; ++half) {  // 16 output channels per float vector
      const int64_t oh = o0 + 16 * half;
      const int64_t n = std::min<int64_t>(16, b.og - oh);
      if (n <= 0) break;
      const __mmask16 live = static_cast<__mmask16>((n == 16) ? 0xffff : ((1u << n) - 1));
      const __m512 m = _mm512_maskz_loadu_ps(live, b.m + oh);
      const __m512 csa = _mm512_maskz_loadu_ps(live, b.csa + oh);
      __m512 pos = _mm512_setzero_ps(), neg = pos;
      if (Fused && b.gp) {
        pos = _mm512_maskz_loadu_ps(live, b.gp + oh);
        neg = _mm512_maskz_loadu_ps(live, b.gn + oh);
      }
      for (int p = 0; p < kPixBlock; ++p) {
        if (p >= b.npix) break;
        const __m512i counts =
            _mm512_permutex2var_epi32(acc[p][2 * half], evens, acc[p][2 * half + 1]);
        const __m512 base = _mm512_maskz_loadu_ps(live, b.base[p] + oh);
        __m512 y = _mm512_fmadd_ps(m, _mm512_cvtepi32_ps(counts), base);
        y = _mm512_fmadd_ps(csa, _mm512_set1_ps(b.sa[p]), y);
        if (b.res[p]) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(live, b.res[p] + oh));
        if (b.res2[p]) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(live, b.res2[p] + oh));
        if (Fused && b.gp) {  // the Maxout as maxout_rows: y * (y >= 0 ? gp : gn), one rounding
          const __mmask16 ge = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GE_OQ);
          y = _mm512_mul_ps(y, _mm512_mask_blend_ps(ge, neg, pos));
        }
        _mm512_mask_storeu_ps(b.out[p] + oh, live, y);
        if (Fused && b.bits[0]) {  // as pack_pixel_avx512: bit = y >= next_thr
          const __mmask16 set =
              _mm512_mask_cmp_ps_mask(live, y, _mm512_set1_ps(b.next_thr), _CMP_GE_OQ);
          b.bits[p][oh / 16] = static_cast<uint16_t>(set);
          b.ones[p] += __builtin_popcount(static_cast<unsigned>(set));
        }
      }
    }
  }
}

// The portable and AVX2 epilogues compute m*X + base + csa*sa as written (two roundings each
// for the products and sums); the AVX-512 one uses two fused multiply-adds. Both stay within
// the error bound documented in autobin/deploy/reference.py.

// Maxout on one pixel's C contiguous channels: x * (x >= 0 ? gp : gn), one rounding, as the
// fake-quantized max(x,0)*gp + min(x,0)*gn. Compiled for AVX-512, AVX2 and baseline x86-64,
// picked at load time (GCC function multiversioning).
__attribute__((target_clones("avx512f", "avx2", "default"))) void maxout_rows(
    const float* x, int64_t rows, int64_t c, const float* gp, const float* gn, float* out) {
  for (int64_t r = 0; r < rows; ++r, x += c, out += c)
    for (int64_t i = 0; i < c; ++i) out[i] = x[i] * (x[i] >= 0.0f ? gp[i] : gn[i]);
}


// ------------------------------------------------------------------ int8 float-part conv
// A float convolution (groups 1, dilation 1, zero padding) in int8 with AVX-512 VNNI.
// Per image: the input is quantized asymmetrically to uint8, q = clamp(round(x / sx) + zx),
// with sx = (max(x, 0) - min(x, 0)) / 255 so that 0 is exactly zx (the padding value); the
// weights were quantized symmetrically per output channel (s8, scale ws[o]). A kernel row of
// an output pixel is kw*C consecutive bytes of the padded image, read as r4 dwords; vpdpbusd
// multiplies 4 uint8 inputs by 4 int8 weights and adds them to an int32 per output channel.
//   y[o] = (acc - zx * sumw[o]) * (sx * ws[o]) + bias[o]     (then the fused Maxout, if any)
// Weights: wq[kh][r4][op][4] (op = O rounded up to 64; bytes past kw*C and channels past O
// are 0).
constexpr int kQPix = 6;  // output pixels per micro-kernel call

// min(x, 0) and max(x, 0) over n floats
__attribute__((target("avx512f"))) std::pair<float, float> int8_range(const float* x,
                                                                     int64_t n) {
  __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi);
  for (; i < n; ++i) {
    l = std::min(l, x[i]);
    h = std::max(h, x[i]);
  }
  return {l, h};
}

// q = clamp(round_half_even(x * inv) + zx, 0, 255) as uint8
__attribute__((target("avx512f,avx512bw"))) void int8_quantize_row(const float* x, int64_t n,
                                                                   float inv, int32_t zx,
                                                                   uint8_t* q) {
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512 vz = _mm512_set1_ps(static_cast<float>(zx));
  const __m512 top = _mm512_set1_ps(255.0f), zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, vz), zero), top);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i),
                     _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r)));
  }
  for (; i < n; ++i) {
    const float r = std::nearbyint(x[i] * inv) + static_cast<float>(zx);
    q[i] = static_cast<uint8_t>(std::clamp(r, 0.0f, 255.0f));
  }
}

// acc[p][v] = sum over the kernel rows and dwords of vpdpbusd(input dword, weights), for
// kQPix pixels and 64 output channels (op is a multiple of 64).
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) inline void int8_row_block(
    const uint8_t* img, int64_t row_stride, int64_t pix_stride, int64_t kh, int64_t r4,
    const int8_t* wq, int64_t op, int64_t oc0, __m512i (&acc)[kQPix][4]) {
  for (int p = 0; p < kQPix; ++p)
    for (int v = 0; v < 4; ++v) acc[p][v] = _mm512_setzero_si512();
  for (int64_t i = 0; i < kh; ++i) {
    const uint8_t* row = img + i * row_stride;
    const int8_t* wrow = wq + (i * r4 * op + oc0) * 4;
    for (int64_t d = 0; d < r4; ++d) {
      const int8_t* wl = wrow + d * op * 4;
      const __m512i w0 = _mm512_loadu_si512(wl);
      const __m512i w1 = _mm512_loadu_si512(wl + 64);
      const __m512i w2 = _mm512_loadu_si512(wl + 128);
      const __m512i w3 = _mm512_loadu_si512(wl + 192);
#pragma GCC unroll 6
      for (int p = 0; p < kQPix; ++p) {
        int32_t word;
        std::memcpy(&word, row + p * pix_stride + 4 * d, 4);
        const __m512i a = _mm512_set1_epi32(word);
        acc[p][0] = _mm512_dpbusd_epi32(acc[p][0], a, w0);
        acc[p][1] = _mm512_dpbusd_epi32(acc[p][1], a, w1);
        acc[p][2] = _mm512_dpbusd_epi32(acc[p][2], a, w2);
        acc[p][3] = _mm512_dpbusd_epi32(acc[p][3], a, w3);
      }
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void int8_conv_image(
    const uint8_t* img, int64_t wp, int64_t c, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
    int64_t oh_size, int64_t ow_size, const int8_t* wq, int64_t r4, int64_t o, int64_t op,
    const int32_t* sumw, const float* scale, const float* bias, int32_t zx, const float* gp,
    const float* gn, int nthreads, float* out) {
  const int64_t nblk = (ow_size + kQPix - 1) / kQPix;
  const int64_t nchunks = op / 64;
  const int64_t items = oh_size * nblk;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t oy = item / nblk, ox0 = (item % nblk) * kQPix;
    const int npix = static_cast<int>(std::min<int64_t>(kQPix, ow_size - ox0));
    const uint8_t* base = img + ((oy * sh) * wp + ox0 * sw) * c;
    for (int64_t ch = 0; ch < nchunks; ++ch) {
      const int64_t oc0 = ch * 64;
      __m512i acc[kQPix][4];
      int8_row_block(base, wp * c, sw * c, kh, r4, wq, op, oc0, acc);
      for (int v = 0; v < 4; ++v) {
        const int64_t o0 = oc0 + 16 * v;
        const int64_t live_n = std::min<int64_t>(16, o - o0);
        if (live_n <= 0) break;
        const __mmask16 live =
            static_cast<__mmask16>(live_n == 16 ? 0xffff : ((1u << live_n) - 1));
        const __m512i zs = _mm512_mullo_epi32(_mm512_set1_epi32(zx),
                                              _mm512_maskz_loadu_epi32(live, sumw + o0));
        const __m512 sc = _mm512_maskz_loadu_ps(live, scale + o0);
        const __m512 bi = _mm512_maskz_loadu_ps(live, bias + o0);
        __m512 pos = _mm512_setzero_ps(), neg = pos;
        if (gp) {
          pos = _mm512_maskz_loadu_ps(live, gp + o0);
          neg = _mm512_maskz_loadu_ps(live, gn + o0);
        }
        for (int p = 0; p < npix; ++p) {
          const __m512 t = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[p][v], zs));
          __m512 y = _mm512_fmadd_ps(t, sc, bi);
          if (gp) {
            const __mmask16 ge = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GE_OQ);
            y = _mm512_mul_ps(y, _mm512_mask_blend_ps(ge, neg, pos));
          }
          _mm512_mask_storeu_ps(out + ((oy * ow_size) + ox0 + p) * o + o0, live, y);
        }
      }
    }
  }
}

// Max pooling of channels-last float32 (zero-free padding: padded taps are skipped, as torch's
// -inf padding), dilation 1, floor mode. Compiled per ISA like the Maxout.
// AVX-512, channels a multiple of 16: per output pixel, up to 64 channels' running maxima stay
// in registers over the valid taps (visited in the same order, with the same comparison) and
// are stored once: 2.8x the generic loop below (64 channels, 112x112 -> 56x56, one thread).
template <int NV>
__attribute__((target("avx512f"), always_inline)) inline void maxpool_pixel_avx512(
    const float* x, int64_t w, int64_t c, int64_t y0, int64_t i0, int64_t i1, int64_t x0,
    int64_t j0, int64_t j1, float* o) {
  __m512 acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = _mm512_loadu_ps(x + ((y0 + i0) * w + x0 + j0) * c + 16 * v);
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t j = (i == i0 ? j0 + 1 : j0); j < j1; ++j) {
      const float* src = x + ((y0 + i) * w + x0 + j) * c;
      for (int v = 0; v < NV; ++v) {
        const __m512 sv = _mm512_loadu_ps(src + 16 * v);
        const __mmask16 take = _mm512_cmp_ps_mask(sv, acc[v], _CMP_GT_OQ) |
                               _mm512_cmp_ps_mask(sv, sv, _CMP_UNORD_Q);
        acc[v] = _mm512_mask_blend_ps(take, acc[v], sv);
      }
    }
  for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + 16 * v, acc[v]);
}

__attribute__((target("avx512f"))) void maxpool_row_avx512(
    const float* x, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
    int64_t sw, int64_t pt, int64_t pl, int64_t oy, int64_t ow_size, float* out) {
  const int64_t y0 = oy * sh - pt;
  const int64_t i0 = std::max<int64_t>(0, -y0), i1 = std::min<int64_t>(kh, h - y0);
  for (int64_t ox = 0; ox < ow_size; ++ox) {
    const int64_t x0 = ox * sw - pl;
    const int64_t j0 = std::max<int64_t>(0, -x0), j1 = std::min<int64_t>(kw, w - x0);
    if (i0 >= i1 || j0 >= j1) continue;  // no valid tap: left as is, as below
    int64_t k0 = 0;
    for (; k0 + 64 <= c; k0 += 64)
      maxpool_pixel_avx512<4>(x + k0, w, c, y0, i0, i1, x0, j0, j1, out + ox * c + k0);
    for (; k0 < c; k0 += 16)
      maxpool_pixel_avx512<1>(x + k0, w, c, y0, i0, i1, x0, j0, j1, out + ox * c + k0);
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void maxpool_row(
    const float* x, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
    int64_t sw, int64_t pt, int64_t pl, int64_t oy, int64_t ow_size, float* out) {
  for (int64_t ox = 0; ox < ow_size; ++ox) {
    float* o = out + ox * c;
    bool first = true;
    for (int64_t i = 0; i < kh; ++i) {
      const int64_t iy = oy * sh - pt + i;
      if (iy < 0 || iy >= h) continue;
      for (int64_t j = 0; j < kw; ++j) {
        const int64_t ix = ox * sw - pl + j;
        if (ix < 0 || ix >= w) continue;
        const float* src = x + (iy * w + ix) * c;
        if (first) {
          for (int64_t k = 0; k < c; ++k) o[k] = src[k];
          first = false;
        } else {
          for (int64_t k = 0; k < c; ++k) o[k] = (src[k] > o[k] || src[k] != src[k]) ? src[k] : o[k];
        }
      }
    }
  }
}

// ------------------------------------------------------------------ bf16 float-part conv
// The same scheme in bfloat16 (AVX-512 BF16): the input rounded to bf16 (nearest even), the
// weights stored in bf16 as wb[kh][r2][op][2] (pairs of consecutive row values, r2 pairs per
// kernel row, op = O rounded up to 64); vdpbf16ps adds the two products of a pair (exact in
// float32) to a float32 accumulator per output channel. y = acc + bias (then the Maxout).
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void bf16_convert_row(const float* x,
                                                                              int64_t n,
                                                                              uint16_t* q) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    std::memcpy(q + i, &v, 32);
  }
  if (i < n) {
    const __mmask16 live = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(live, x + i));
    uint16_t tmp[16];
    std::memcpy(tmp, &v, 32);
    std::memcpy(q + i, tmp, static_cast<size_t>(n - i) * 2);
  }
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) void bf16_conv_image(
    const uint16_t* img, int64_t wp, int64_t c, int64_t kh, int64_t sh, int64_t sw,
    int64_t oh_size, int64_t ow_size, const uint16_t* wb, int64_t r2, int64_t o, int64_t op,
    const float* bias, const float* gp, const float* gn, int nthreads, float* out) {
  const int64_t nblk = (ow_size + kQPix - 1) / kQPix;
  const int64_t items = oh_size * nblk;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t oy = item / nblk, ox0 = (item % nblk) * kQPix;
    const int npix = static_cast<int>(std::min<int64_t>(kQPix, ow_size - ox0));
    const uint16_t* base = img + ((oy * sh) * wp + ox0 * sw) * c;
    for (int64_t oc0 = 0; oc0 < op; oc0 += 64) {
      __m512 acc[kQPix][4];
      for (int p = 0; p < kQPix; ++p)
        for (int v = 0; v < 4; ++v) acc[p][v] = _mm512_setzero_ps();
      for (int64_t i = 0; i < kh; ++i) {
        const uint16_t* row = base + i * wp * c;
        const uint16_t* wrow = wb + (i * r2 * op + oc0) * 2;
        for (int64_t d = 0; d < r2; ++d) {
          const uint16_t* wl = wrow + d * op * 2;
          const __m512bh w0 = (__m512bh)_mm512_loadu_si512(wl);
          const __m512bh w1 = (__m512bh)_mm512_loadu_si512(wl + 32);
          const __m512bh w2 = (__m512bh)_mm512_loadu_si512(wl + 64);
          const __m512bh w3 = (__m512bh)_mm512_loadu_si512(wl + 96);
#pragma GCC unroll 6
          for (int p = 0; p < kQPix; ++p) {
            int32_t word;
            std::memcpy(&word, row + p * sw * c + 2 * d, 4);
            const __m512bh a = (__m512bh)_mm512_set1_epi32(word);
            acc[p][0] = _mm512_dpbf16_ps(acc[p][0], a, w0);
            acc[p][1] = _mm512_dpbf16_ps(acc[p][1], a, w1);
            acc[p][2] = _mm512_dpbf16_ps(acc[p][2], a, w2);
            acc[p][3] = _mm512_dpbf16_ps(acc[p][3], a, w3);
          }
        }
      }
      for (int v = 0; v < 4; ++v) {
        const int64_t o0 = oc0 + 16 * v;
        const int64_t live_n = std::min<int64_t>(16, o - o0);
        if (live_n <= 0) break;
        const __mmask16 live =
            static_cast<__mmask16>(live_n == 16 ? 0xffff : ((1u << live_n) - 1));
        const __m512 bi = _mm512_maskz_loadu_ps(live, bias + o0);
        __m512 pos = _mm512_setzero_ps(), neg = pos;
        if (gp) {
          pos = _mm512_maskz_loadu_ps(live, gp + o0);
          neg = _mm512_maskz_loadu_ps(live, gn + o0);
        }
        for (int p = 0; p < npix; ++p) {
          __m512 y = _mm512_add_ps(acc[p][v], bi);
          if (gp) {
            const __mmask16 ge = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GE_OQ);
            y = _mm512_mul_ps(y, _mm512_mask_blend_ps(ge, neg, pos));
          }
          _mm512_mask_storeu_ps(out + ((oy * ow_size) + ox0 + p) * o + o0, live, y);
        }
      }
    }
  }
}
// ------------------------------------------------------------------ the convolution driver
// The packed input is first copied (or packed) into a frame with a zero border, so that every
// block of output pixels reads its taps in place: a padded tap reads zero words (the base
// table counts popcount(w) there, as for the fake-quantized layer's zero padding) and a zero
// sign sum. Frame and sums live in the calling thread's scratch (OpenMP workers only read them).
struct ConvScratch {
  std::vector<uint64_t> act, rows;
  std::vector<int32_t> sa, hsum;
  std::vector<float> ssum;
};

template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// Words of one kernel row of one group's weights (see the layouts at the top).
int64_t row_words(int64_t cg, int64_t kw) {
  const int64_t k_words = (cg + 63) / 64, dense = (kw * cg + 63) / 64;
  return (cg < 64 && dense < kw * k_words) ? dense : kw * k_words;
}

struct ConvArgs {
  int64_t n, h, w, groups, cg, og, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
  const uint64_t* wt;
  const int32_t* pcw;
  const double *cdot, *csw, *cn, *bias;
  const float *m, *csa, *residual, *residual2, *gp, *gn;
  int64_t next_groups;
  float next_thr;
  uint64_t* next_act;
  int32_t* next_sa;
  float* out;
  int path, nthreads;
};

// Packs `count` consecutive pixels of cg channels (groups one after another in a pixel).
// (one loop per path, compiled for its target so the pixel packing inlines)
__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))) void pack_pixels_avx512(
    const float* x, int64_t count, int64_t cg, int64_t k_words, float thr, uint64_t* out,
    int32_t* sa) {
  for (int64_t i = 0; i < count; ++i)
    pack_pixel_avx512(x + i * cg, cg, k_words, thr, out + i * k_words, sa + i);
}

__attribute__((target("avx2,popcnt"))) void pack_pixels_avx2(const float* x, int64_t count,
                                                              int64_t cg, int64_t k_words,
                                                              float thr, uint64_t* out,
                                                              int32_t* sa) {
  for (int64_t i = 0; i < count; ++i)
    pack_pixel_avx2(x + i * cg, cg, k_words, thr, out + i * k_words, sa + i);
}

void pack_pixels(int path, const float* x, int64_t count, int64_t cg, int64_t k_words,
                 float thr, uint64_t* out, int32_t* sa) {
  if (path == kAvx512)
    pack_pixels_avx512(x, count, cg, k_words, thr, out, sa);
  else if (path == kAvx2)
    pack_pixels_avx2(x, count, cg, k_words, thr, out, sa);
  else
    for (int64_t i = 0; i < count; ++i)
      pack_pixel_portable(x + i * cg, cg, k_words, thr, out + i * k_words, sa + i);
}

// The frame: n images of hp x wp pixels (pw words and `groups` sign sums per pixel), input
// pixel (y, x) at (y + pt, x + pl), zero elsewhere. From packed pixels (act, sa: n*h*w of
// them) or, when act is null, by binarizing and packing the float input x.
void fill_frame(const ConvArgs& a, const float* x, float thr, const uint64_t* act,
                const int32_t* sa, int64_t hp, int64_t wp, uint64_t* fact, int32_t* fsa) {
  const int64_t k_words = (a.cg + 63) / 64, groups = a.groups, pw = groups * k_words;
  const int64_t right = wp - a.pl - a.w;
#pragma omp parallel for num_threads(a.nthreads) schedule(static)
  for (int64_t r = 0; r < a.n * hp; ++r) {
    const int64_t b = r / hp, y = r % hp - a.pt;
    uint64_t* dst = fact + r * wp * pw;
    int32_t* dsa = fsa + r * wp * groups;
    if (y < 0 || y >= a.h) {
      std::fill_n(dst, wp * pw, 0);
      std::fill_n(dsa, wp * groups, 0);
      continue;
    }
    std::fill_n(dst, a.pl * pw, 0);
    std::fill_n(dsa, a.pl * groups, 0);
    std::fill_n(dst + (a.pl + a.w) * pw, right * pw, 0);
    std::fill_n(dsa + (a.pl + a.w) * groups, right * groups, 0);
    const int64_t first = (b * a.h + y) * a.w;  // the input row's first pixel
    dst += a.pl * pw;
    dsa += a.pl * groups;
    if (act) {
      std::memcpy(dst, act + first * pw, static_cast<size_t>(a.w * pw) * sizeof(uint64_t));
      std::memcpy(dsa, sa + first * groups, static_cast<size_t>(a.w * groups) * sizeof(int32_t));
      continue;
    }
    pack_pixels(a.path, x + first * groups * a.cg, a.w * groups, a.cg, k_words, thr, dst, dsa);
  }
}

// ss[((b*oh + oy)*owx + ox)*groups + g]: the input signs of group g summed over the taps of
// output position (oy, ox), as a float (an integer below 2^24: exact). Rows, then columns.
void sign_sums(const ConvArgs& a, const int32_t* fsa, int64_t hp, int64_t wp, int64_t owx,
               int32_t* hs, float* ss) {
  const int64_t groups = a.groups, q_end = owx * groups;
  const int64_t kw = a.kw, kh = a.kh, tap_step = a.dw * groups, col_step = a.sw * groups;
#pragma omp parallel num_threads(a.nthreads)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < a.n * hp; ++r) {
      const int32_t* s = fsa + r * wp * groups;
      int32_t* d = hs + r * q_end;
      for (int64_t ox = 0; ox < owx; ++ox, s += col_step, d += groups)
        for (int64_t g = 0; g < groups; ++g) {
          int32_t t = 0;
          for (int64_t j = 0; j < kw; ++j) t += s[j * tap_step + g];
          d[g] = t;
        }
    }
#pragma omp for schedule(static)
    for (int64_t r = 0; r < a.n * a.oh; ++r) {
      const int32_t* top = hs + ((r / a.oh) * hp + (r % a.oh) * a.sh) * q_end;
      const int64_t row_step = a.dh * q_end;
      float* d = ss + r * q_end;
      for (int64_t q = 0; q < q_end; ++q) d[q] = 0.0f;
      for (int64_t i = 0; i < kh; ++i)  // integer sums below 2^24: exact in float
        for (int64_t q = 0; q < q_end; ++q) d[q] += static_cast<float>(top[i * row_step + q]);
    }
  }
}

// Dense kernel rows (fewer than 64 channels per group): rows[((b*hp + y)*owx + ox)*groups + g]
// holds rw words: the pixels of taps j = 0..kw-1 of output column ox on frame row y, tap j's
// channel c at bit j*cg + c (the weights' layout).
void dense_rows(const ConvArgs& a, const uint64_t* fact, int64_t hp, int64_t wp, int64_t owx,
                int64_t rw, uint64_t* rows) {
  const int64_t groups = a.groups, cg = a.cg, kw = a.kw;  // one word per pixel and group
  const int64_t tap_step = a.dw * groups, col_step = a.sw * groups;
#pragma omp parallel for num_threads(a.nthreads) schedule(static)
  for (int64_t r = 0; r < a.n * hp; ++r) {
    const uint64_t* s = fact + r * wp * groups;
    uint64_t* d = rows + r * owx * groups * rw;
    if (rw == 1) {  // the whole row in one word
      for (int64_t ox = 0; ox < owx; ++ox, s += col_step)
        for (int64_t g = 0; g < groups; ++g) {
          uint64_t word = 0;
          for (int64_t j = 0; j < kw; ++j) word |= s[j * tap_step + g] << (j * cg);
          *d++ = word;
        }
      continue;
    }
    for (int64_t ox = 0; ox < owx; ++ox, s += col_step)
      for (int64_t g = 0; g < groups; ++g, d += rw) {
        std::fill_n(d, rw, 0);
        for (int64_t j = 0; j < kw; ++j) {
          const uint64_t v = s[j * tap_step + g];
          const int64_t bit = j * cg, at = bit >> 6, shift = bit & 63;
          d[at] |= v << shift;
          if (shift + cg > 64) d[at + 1] |= v >> (64 - shift);
        }
      }
  }
}

// The packed convolution of input x (float, packed here) or act/sa (already packed).
void packed_conv(const ConvArgs& a, const float* x, float thr, const uint64_t* act,
                 const int32_t* sa) {
  const int64_t k_words = (a.cg + 63) / 64, groups = a.groups, og = a.og;
  const int64_t O = og * groups, pw = groups * k_words;
  const int64_t kh = a.kh, kw = a.kw, taps = kh * kw;
  const int64_t rw = row_words(a.cg, kw);
  const bool dense = rw < kw * k_words;
  const int64_t L = kh * rw;
  const int64_t nob = (og + kOBlock - 1) / kOBlock;
  const int64_t nbw = (a.ow + kPixBlock - 1) / kPixBlock, owx = nbw * kPixBlock;
  const int64_t hp = std::max(a.pt + a.h, (a.oh - 1) * a.sh + (kh - 1) * a.dh + 1);
  const int64_t wp = std::max(a.pl + a.w, (owx - 1) * a.sw + (kw - 1) * a.dw + 1);

  thread_local ConvScratch scratch;
  uint64_t* fact = grow(scratch.act, a.n * hp * wp * pw);
  int32_t* fsa = grow(scratch.sa, a.n * hp * wp * groups);
  fill_frame(a, x, thr, act, sa, hp, wp, fact, fsa);
  float* ss = grow(scratch.ssum, a.n * a.oh * owx * groups);
  sign_sums(a, fsa, hp, wp, owx, grow(scratch.hsum, a.n * hp * owx * groups), ss);
  const uint64_t* src = fact;
  if (dense) {
    uint64_t* rows = grow(scratch.rows, a.n * hp * owx * groups * rw);
    dense_rows(a, fact, hp, wp, owx, rw, rows);
    src = rows;
  }
  // Word l = i * rw + r of a pixel block's first pixel, relative to its first tap word; the
  // next pixel of the block is pstride words on.
  std::vector<int64_t> aidx(static_cast<size_t>(L));
  for (int64_t i = 0; i < kh; ++i)
    for (int64_t r = 0; r < rw; ++r)
      aidx[i * rw + r] = dense ? i * a.dh * owx * groups * rw + r
                               : (i * a.dh * wp + (r / k_words) * a.dw) * pw + r % k_words;
  const int64_t pstride = dense ? groups * rw : a.sw * pw;
  const int64_t gstride = dense ? rw : k_words;

  // The valid taps of a position are the product of a contiguous range of kernel rows and one
  // of kernel columns. Positions share `base` when they share both ranges: one table entry
  // per distinct (row range, column range) pair, computed once per call.
  std::vector<int64_t> row_pat(a.oh), col_pat(a.ow);
  std::vector<std::pair<int64_t, int64_t>> row_ranges, col_ranges;
  auto classify = [](int64_t pos, int64_t stride, int64_t pad, int64_t dil, int64_t k,
                     int64_t size, std::vector<std::pair<int64_t, int64_t>>& ranges) {
    int64_t lo = k, hi = 0;  // valid kernel indices [lo, hi)
    for (int64_t i = 0; i < k; ++i) {
      const int64_t at = pos * stride - pad + i * dil;
      if (at >= 0 && at < size) {
        lo = std::min(lo, i);
        hi = i + 1;
      }
    }
    if (lo >= hi) lo = hi = 0;
    const std::pair<int64_t, int64_t> r{lo, hi};
    for (size_t j = 0; j < ranges.size(); ++j)
      if (ranges[j] == r) return static_cast<int64_t>(j);
    ranges.push_back(r);
    return static_cast<int64_t>(ranges.size() - 1);
  };
  for (int64_t y = 0; y < a.oh; ++y)
    row_pat[y] = classify(y, a.sh, a.pt, a.dh, kh, a.h, row_ranges);
  for (int64_t x = 0; x < a.ow; ++x)
    col_pat[x] = classify(x, a.sw, a.pl, a.dw, kw, a.w, col_ranges);
  const int64_t ncol = static_cast<int64_t>(col_ranges.size());
  // 2-D prefix sums of the tap popcounts: the popcount over any rectangle of taps in O(1)
  const int64_t pwid = kw + 1, psize = (kh + 1) * (kw + 1);
  std::vector<int64_t> prefix(static_cast<size_t>(O * psize), 0);
  for (int64_t o = 0; o < O; ++o) {
    int64_t* pre = prefix.data() + o * psize;
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j)
        pre[(i + 1) * pwid + j + 1] = a.pcw[o * taps + i * kw + j] + pre[i * pwid + j + 1] +
                                      pre[(i + 1) * pwid + j] - pre[i * pwid + j];
  }
  std::vector<float> base_tab(row_ranges.size() * col_ranges.size() * O);
  for (size_t r = 0; r < row_ranges.size(); ++r) {
    for (int64_t cidx = 0; cidx < ncol; ++cidx) {
      const auto [i0, i1] = row_ranges[r];
      const auto [j0, j1] = col_ranges[cidx];
      const int64_t nv = a.cg * (i1 - i0) * (j1 - j0);
      float* bt = base_tab.data() + (r * ncol + cidx) * O;
      for (int64_t o = 0; o < O; ++o) {
        // Padded taps contribute nothing (not beta): X also counted popcount(w) there.
        const int64_t* pre = prefix.data() + o * psize;
        const int64_t valid_pop = pre[i1 * pwid + j1] - pre[i0 * pwid + j1] -
                                  pre[i1 * pwid + j0] + pre[i0 * pwid + j0];
        const int64_t inv_pop = pre[kh * pwid + kw] - valid_pop;
        const int64_t valid_sw = 2 * valid_pop - nv;
        bt[o] = static_cast<float>(a.cdot[o] * static_cast<double>(nv + 2 * inv_pop) +
                                   a.csw[o] * static_cast<double>(valid_sw) +
                                   a.cn[o] * static_cast<double>(nv) + a.bias[o]);
      }
    }
  }

  // The fused epilogue's per-pixel steps after all channels of the pixel are stored (the row
  // is still in L1): Maxout in place, then binarize and pack for the next layer.
  const int64_t next_cg = a.next_groups > 0 ? O / a.next_groups : 0;
  const int64_t next_k = (next_cg + 63) / 64;
  const bool finishing = a.gp != nullptr || a.next_act != nullptr;
  auto finish_pixel = [&](int64_t pix) {
    float* row = a.out + pix * O;
    if (a.gp) maxout_rows(row, 1, O, a.gp, a.gn, row);
    if (!a.next_act) return;
    pack_pixels(a.path, row, a.next_groups, next_cg, next_k, a.next_thr,
                a.next_act + pix * a.next_groups * next_k, a.next_sa + pix * a.next_groups);
  };

  // AVX-512 with one group: the Maxout and the packing (one group of 16k channels) are done on
  // the output vectors in registers instead of by finish_pixel (the same values and bits)
  const bool fast_finish = finishing && a.path == kAvx512 && groups == 1 &&
                           (!a.next_act || (a.next_groups == 1 && O % 16 == 0));
  void (*block_fn)(const Block&) =
      a.path == kAvx512 ? (fast_finish ? block_avx512<true> : block_avx512<false>)
                        : (a.path == kAvx2 ? block_avx2 : block_portable);
  const int64_t items = a.n * a.oh * nbw;
#pragma omp parallel for num_threads(a.nthreads) schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t bw = item % nbw;
    const int64_t oy = (item / nbw) % a.oh;
    const int64_t b = item / (nbw * a.oh);
    const int64_t ox0 = bw * kPixBlock;
    const int npix = static_cast<int>(std::min<int64_t>(kPixBlock, a.ow - ox0));
    const int64_t y0 = b * hp + oy * a.sh;  // frame row of the block's first kernel row
    const uint64_t* first = src + (dense ? (y0 * owx + ox0) * groups * rw
                                         : (y0 * wp + ox0 * a.sw) * pw);
    const float* sums = ss + ((b * a.oh + oy) * owx + ox0) * groups;
    const float* base_row = base_tab.data() + row_pat[oy] * ncol * O;
    const int64_t out_row = (b * a.oh + oy) * a.ow;
    int32_t ones[kPixBlock] = {};
    for (int64_t g = 0; g < groups; ++g) {
      Block blk;
      blk.act = first + g * gstride;
      blk.aidx = aidx.data();
      blk.pstride = pstride;
      blk.L = L;
      blk.wt = a.wt + g * nob * L * kOBlock;
      blk.og = og;
      blk.m = a.m + g * og;
      blk.csa = a.csa + g * og;
      blk.npix = npix;
      if (fast_finish) {
        blk.gp = a.gp;
        blk.gn = a.gn;
        blk.next_thr = a.next_thr;
        blk.ones = ones;
        for (int p = 0; p < kPixBlock; ++p) {
          blk.bits[p] = nullptr;
          if (a.next_act && p < npix) {
            uint64_t* words = a.next_act + (out_row + ox0 + p) * next_k;
            std::fill_n(words, next_k, 0);  // bits past the channels stay 0
            blk.bits[p] = reinterpret_cast<uint16_t*>(words);
          }
        }
      }
      for (int p = 0; p < kPixBlock; ++p) {
        // pixels past the row's end (p >= npix) are computed from whatever the frame holds
        // there and not stored
        const int64_t ox = std::min<int64_t>(ox0 + p, a.ow - 1);
        const int64_t at = (out_row + ox) * O + g * og;
        blk.base[p] = base_row + col_pat[ox] * O + g * og;
        blk.sa[p] = sums[p * groups + g];
        blk.out[p] = a.out + at;
        blk.res[p] = a.residual ? a.residual + at : nullptr;
        blk.res2[p] = a.residual2 ? a.residual2 + at : nullptr;
      }
      block_fn(blk);
    }
    if (fast_finish) {
      if (a.next_act)
        for (int p = 0; p < npix; ++p)
          a.next_sa[out_row + ox0 + p] = static_cast<int32_t>(2 * ones[p] - O);
    } else if (finishing) {
      for (int p = 0; p < npix; ++p) finish_pixel(out_row + ox0 + p);
    }
  }
}

// ------------------------------------------------------------------ float32 float-part conv
// A float convolution (groups 1, dilation 1, zero padding) in float32: the float layers a
// deployment keeps at full precision (a detector's stem and downsample shortcuts) run inside
// compiled chains, with the following Maxout and the next packed layer's binarization and
// bit-packing in the epilogue.
// Weights wf[kh][kw*C][op] (op = O rounded up to 16, zero past O), bias[op]. Output pixels are
// taken kFPix at a time in raster order. For kernel row i, pixel p of a block reads kw*C
// consecutive floats at base[i] + p * stride[i]: in place in the input row where the block's
// pixels share an output row and their span lies inside the image (stride sw*C), else from a
// zero-filled copy holding the inputs that are inside. A kernel row above or below the image
// for a whole block is skipped (it would add 0 * w = 0). Per output channel:
//   y = bias + sum over the kernel rows i, then the row's kw*C values k in order, of x*w
// one fused multiply-add per product on the AVX-512 and AVX2 paths, a product and a sum on the
// portable one (torch sums in another order: the outputs agree within float32 rounding of the
// sum, not bit for bit); then y = y * (y >= 0 ? gp : gn) where a Maxout is fused.
constexpr int kFPix = 8;  // output pixels per block

struct Fp32Args {
  const float* x;
  int64_t h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, o, op;
  const float *wf, *bias, *gp, *gn;
  float* out;  // (oh, ow, o) float32
  int64_t next_groups;
  float next_thr;
  uint64_t* next_act;
  int32_t* next_sa;
  int path, nthreads;
};

// Where the block of pixels pix0 .. pix0 + npix - 1 reads kernel row i: base[i] (null: the row
// is outside the image for every pixel) and stride[i] floats from one pixel to the next.
// Pixels past npix read valid memory (their outputs are not stored).
void fp32_rows(const Fp32Args& a, int64_t pix0, int npix, float* buf, const float** base,
               int64_t* stride) {
  const int64_t kwc = a.kw * a.c, oy0 = pix0 / a.ow, ox0 = pix0 % a.ow;
  const int64_t span = (kFPix - 1) * a.sw * a.c + kwc;  // floats a block's row reads
  const int64_t per_row = std::max<int64_t>(span, kFPix * kwc);
  const bool one_row =
      ox0 + kFPix <= a.ow || (pix0 + npix == a.oh * a.ow && ox0 + npix <= a.ow);
  for (int64_t i = 0; i < a.kh; ++i) {
    float* bi = buf + i * per_row;
    if (one_row) {
      const int64_t y = oy0 * a.sh - a.pt + i;
      stride[i] = a.sw * a.c;
      if (y < 0 || y >= a.h) {
        base[i] = nullptr;
        continue;
      }
      const int64_t x0 = ox0 * a.sw - a.pl, x1 = x0 + span / a.c;  // input columns [x0, x1)
      if (x0 >= 0 && x1 <= a.w) {
        base[i] = a.x + (y * a.w + x0) * a.c;
        continue;
      }
      std::fill_n(bi, span, 0.0f);
      const int64_t v0 = std::max<int64_t>(0, x0), v1 = std::min(a.w, x1);
      if (v1 > v0)
        std::memcpy(bi + (v0 - x0) * a.c, a.x + (y * a.w + v0) * a.c,
                    static_cast<size_t>((v1 - v0) * a.c) * sizeof(float));
      base[i] = bi;
      continue;
    }
    std::fill_n(bi, kFPix * kwc, 0.0f);  // the block crosses output rows: a copy per pixel
    for (int p = 0; p < npix; ++p) {
      const int64_t oy = (pix0 + p) / a.ow, ox = (pix0 + p) % a.ow;
      const int64_t y = oy * a.sh - a.pt + i, x0 = ox * a.sw - a.pl;
      if (y < 0 || y >= a.h) continue;
      const int64_t j0 = std::max<int64_t>(0, -x0), j1 = std::min<int64_t>(a.kw, a.w - x0);
      if (j1 > j0)
        std::memcpy(bi + p * kwc + j0 * a.c, a.x + (y * a.w + x0 + j0) * a.c,
                    static_cast<size_t>((j1 - j0) * a.c) * sizeof(float));
    }
    base[i] = bi;
    stride[i] = kwc;
  }
}

__attribute__((always_inline)) inline void fp32_block_generic(const Fp32Args& a,
                                                              const float* const* base,
                                                              const int64_t* stride, int npix,
                                                              float* const* dst) {
  const int64_t kwc = a.kw * a.c;
  for (int64_t o0 = 0; o0 < a.o; o0 += 16) {
    float acc[kFPix][16];
    for (int p = 0; p < kFPix; ++p)
      for (int l = 0; l < 16; ++l) acc[p][l] = a.bias[o0 + l];
    for (int64_t i = 0; i < a.kh; ++i) {
      if (!base[i]) continue;
      const float* wr = a.wf + i * kwc * a.op + o0;
      for (int64_t k = 0; k < kwc; ++k) {
        const float* wv = wr + k * a.op;
        for (int p = 0; p < kFPix; ++p) {
          const float xv = base[i][p * stride[i] + k];
          for (int l = 0; l < 16; ++l) acc[p][l] += xv * wv[l];
        }
      }
    }
    const int64_t n = std::min<int64_t>(16, a.o - o0);
    for (int p = 0; p < npix; ++p)
      for (int64_t l = 0; l < n; ++l) {
        float y = acc[p][l];
        if (a.gp) y = y * (y >= 0.0f ? a.gp[o0 + l] : a.gn[o0 + l]);
        dst[p][o0 + l] = y;
      }
  }
}

__attribute__((target("avx2,fma"))) void fp32_block_avx2(const Fp32Args& a,
                                                         const float* const* base,
                                                         const int64_t* stride, int npix,
                                                         float* const* dst) {
  fp32_block_generic(a, base, stride, npix, dst);
}

void fp32_block_portable(const Fp32Args& a, const float* const* base, const int64_t* stride,
                         int npix, float* const* dst) {
  fp32_block_generic(a, base, stride, npix, dst);
}

// AVX-512: 16 or 32 output channels (NV vectors) of kFPix pixels in registers over all inputs.
// With `bits` (one group of the next layer's input, a multiple of 16 channels), the epilogue
// also writes each vector's comparison y >= next_thr into the pixel's packed words (16 bits at
// a time) and counts the ones.
template <int NV>
__attribute__((target("avx512f"), always_inline)) inline void fp32_tile_avx512(
    const Fp32Args& a, const float* const* base, const int64_t* stride, int npix,
    float* const* dst, int64_t o0, uint16_t* const* bits, int32_t* ones) {
  const int64_t kwc = a.kw * a.c;
  __m512 acc[kFPix][NV];
  for (int v = 0; v < NV; ++v) {
    const __m512 b = _mm512_loadu_ps(a.bias + o0 + 16 * v);
    for (int p = 0; p < kFPix; ++p) acc[p][v] = b;
  }
  for (int64_t i = 0; i < a.kh; ++i) {
    const float* xk = base[i];
    if (!xk) continue;
    const int64_t ps = stride[i];
    const float* wk = a.wf + i * kwc * a.op + o0;
    for (int64_t k = 0; k < kwc; ++k, ++xk, wk += a.op) {
      __m512 wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(wk + 16 * v);
#pragma GCC unroll 8
      for (int p = 0; p < kFPix; ++p) {
        const __m512 xv = _mm512_set1_ps(xk[p * ps]);
        for (int v = 0; v < NV; ++v) acc[p][v] = _mm512_fmadd_ps(xv, wv[v], acc[p][v]);
      }
    }
  }
  const __m512 thr = _mm512_set1_ps(a.next_thr);
  for (int v = 0; v < NV; ++v) {
    const int64_t oc = o0 + 16 * v, n = std::min<int64_t>(16, a.o - oc);
    if (n <= 0) break;
    const __mmask16 live = static_cast<__mmask16>(n == 16 ? 0xffff : ((1u << n) - 1));
    __m512 pos = _mm512_setzero_ps(), neg = pos;
    if (a.gp) {
      pos = _mm512_maskz_loadu_ps(live, a.gp + oc);
      neg = _mm512_maskz_loadu_ps(live, a.gn + oc);
    }
    for (int p = 0; p < npix; ++p) {
      __m512 y = acc[p][v];
      if (a.gp) {
        const __mmask16 ge = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GE_OQ);
        y = _mm512_mul_ps(y, _mm512_mask_blend_ps(ge, neg, pos));
      }
      _mm512_mask_storeu_ps(dst[p] + oc, live, y);
      if (bits) {
        const __mmask16 set = _mm512_cmp_ps_mask(y, thr, _CMP_GE_OQ);
        bits[p][oc / 16] = static_cast<uint16_t>(set);
        ones[p] += __builtin_popcount(static_cast<unsigned>(set));
      }
    }
  }
}

__attribute__((target("avx512f"))) void fp32_block_avx512(
    const Fp32Args& a, const float* const* base, const int64_t* stride, int npix,
    float* const* dst, uint16_t* const* bits, int32_t* ones) {
  int64_t o0 = 0;
  for (; o0 + 32 <= a.op; o0 += 32) fp32_tile_avx512<2>(a, base, stride, npix, dst, o0, bits, ones);
  if (o0 < a.op) fp32_tile_avx512<1>(a, base, stride, npix, dst, o0, bits, ones);
}

// One image (x: h*w*c floats; out, next_act, next_sa: this image's).
void fp32_conv_image(const Fp32Args& a) {
  const int64_t npix_all = a.oh * a.ow, items = (npix_all + kFPix - 1) / kFPix;
  const int64_t kwc = a.kw * a.c;
  const int64_t per_row = std::max<int64_t>((kFPix - 1) * a.sw * a.c + kwc, kFPix * kwc);
  const int64_t next_cg = a.next_groups > 0 ? a.o / a.next_groups : 0;
  const int64_t next_k = (next_cg + 63) / 64;
  // the AVX-512 epilogue packs in registers where the next layer has one group of 16k channels
  const bool fast_bits =
      a.path == kAvx512 && a.next_act && a.next_groups == 1 && a.o % 16 == 0;
#pragma omp parallel num_threads(a.nthreads)
  {
    thread_local std::vector<float> buf;
    float* bufp = grow(buf, a.kh * per_row);
    std::vector<const float*> base(static_cast<size_t>(a.kh));
    std::vector<int64_t> stride(static_cast<size_t>(a.kh));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t pix0 = item * kFPix;
      const int npix = static_cast<int>(std::min<int64_t>(kFPix, npix_all - pix0));
      fp32_rows(a, pix0, npix, bufp, base.data(), stride.data());
      float* dst[kFPix];
      for (int p = 0; p < kFPix; ++p)
        dst[p] = a.out + (pix0 + std::min(p, npix - 1)) * a.o;
      if (a.path == kAvx512) {
        uint16_t* bits[kFPix] = {};
        int32_t ones[kFPix] = {};
        if (fast_bits)
          for (int p = 0; p < npix; ++p) {
            uint64_t* words = a.next_act + (pix0 + p) * next_k;
            std::fill_n(words, next_k, 0);  // bits past the channels stay 0
            bits[p] = reinterpret_cast<uint16_t*>(words);
          }
        fp32_block_avx512(a, base.data(), stride.data(), npix, dst, fast_bits ? bits : nullptr,
                          ones);
        if (fast_bits) {
          for (int p = 0; p < npix; ++p)
            a.next_sa[pix0 + p] = static_cast<int32_t>(2 * ones[p] - a.o);
          continue;
        }
      } else {
        (a.path == kAvx2 ? fp32_block_avx2 : fp32_block_portable)(a, base.data(),
                                                                    stride.data(), npix, dst);
      }
      if (!a.next_act) continue;
      for (int p = 0; p < npix; ++p)
        pack_pixels(a.path, dst[p], a.next_groups, next_cg, next_k, a.next_thr,
                    a.next_act + (pix0 + p) * a.next_groups * next_k,
                    a.next_sa + (pix0 + p) * a.next_groups);
    }
  }
}

}  // namespace

extern "C" {

// Maxout of npix pixels of c channels each (channels-last float32).
void autobin_maxout(const float* x, int64_t npix, int64_t c, const float* gp, const float* gn,
                    int nthreads, float* out) {
  const int64_t chunk = std::max<int64_t>(1, 16384 / std::max<int64_t>(c, 1));
  const int64_t nchunks = (npix + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t q = 0; q < nchunks; ++q) {
    const int64_t begin = q * chunk, end = std::min(npix, begin + chunk);
    maxout_rows(x + begin * c, end - begin, c, gp, gn, out + begin * c);
  }
}

// The ABI version: autobin/deploy/build.py (ABI_VERSION) rebuilds a library reporting another.
int autobin_abi_version() { return 10; }

// Bit 0: AVX2 path usable; bit 1: AVX-512 VPOPCNTDQ path usable; bit 2: AVX-512 VNNI (the
// int8 float-part convolution); bit 3: AVX-512 BF16 (the bfloat16 one) (cpuid and OS state checked by
// libgcc's __builtin_cpu_supports).
int autobin_cpu_features() {
  __builtin_cpu_init();
  int f = 0;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("popcnt"))
    f |= 1;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq") &&
      __builtin_cpu_supports("popcnt"))
    f |= 2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vnni"))
    f |= 4;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512bf16"))
    f |= 8;
  return f;
}

// Binarize and pack `npix` pixels of NHWC float32 input (C channels, contiguous per pixel):
// bit = (x >= thr). Writes act[npix][groups][k_words] and sa[npix][groups].
void autobin_pack(const float* x, int64_t npix, int64_t channels, int64_t groups, float thr,
                  int path, int nthreads, uint64_t* act, int32_t* sa) {
  const int64_t cg = channels / groups;
  const int64_t k_words = (cg + 63) / 64;
  const int64_t chunk = 256;  // pixels per task
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t i0 = 0; i0 < npix; i0 += chunk) {
    const int64_t count = std::min(chunk, npix - i0) * groups;  // a pixel's groups in turn
    pack_pixels(path, x + i0 * channels, count, cg, k_words, thr, act + i0 * groups * k_words,
                sa + i0 * groups);
  }
}

// Packed binary convolution (a linear layer is a 1x1 convolution over N*1*1 pixels).
//   act, sa: from autobin_pack, input of shape (n, h, w) pixels
//   geometry: kernel (kh, kw), stride, dilation, top/left zero padding, output (oh, ow)
//   wt, pcw: packed weights and per-tap popcounts (layouts above); og = O / groups
//   cdot, csw, cn, bias: per-channel coefficients (double); m = -2*cdot and csa (float)
//   residual: null, or (n, oh, ow, O) float32 added to the output (a fused shortcut)
//   out: (n, oh, ow, O) float32
//   epilogue (fused glue; each step is skipped when its pointer is null), per output pixel,
//   in this order and with the roundings of the separate modules it replaces:
//     residual2: (n, oh, ow, O) float32 added after `residual` (the graph's shortcut add)
//     gp, gn:    Maxout slopes: y = y * (y >= 0 ? gp : gn)
//     next_act, next_sa: the output binarized (y >= next_thr) and bit-packed for the next
//                packed layer (next_groups groups), as autobin_pack would from `out`
void autobin_conv(const uint64_t* act, const int32_t* sa, int64_t n, int64_t h, int64_t w,
                  int64_t groups, int64_t cg, const uint64_t* wt, const int32_t* pcw, int64_t og,
                  int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                  int64_t pt, int64_t pl, int64_t oh_size, int64_t ow_size, const double* cdot,
                  const double* csw, const double* cn, const double* bias, const float* m,
                  const float* csa, const float* residual, int path, int nthreads,
                  float* out, const float* residual2, const float* gp, const float* gn,
                  int64_t next_groups, float next_thr, uint64_t* next_act, int32_t* next_sa) {
  const ConvArgs a{n,    h,    w,   groups, cg,        og,        kh,       kw,
                   sh,   sw,   dh,  dw,     pt,        pl,        oh_size,  ow_size,
                   wt,   pcw,  cdot, csw,   cn,        bias,      m,        csa,
                   residual, residual2, gp, gn, next_groups, next_thr, next_act, next_sa,
                   out,  path, nthreads};
  packed_conv(a, nullptr, 0.0f, act, sa);
}

// Binarize, pack and convolve in one call: the layer's forward pass.
//   x: (n, h, w, groups * cg) float32 channels-last input; residual != 0 adds x to the output
//   (then the output must have the input's shape); in_act, in_sa: x already binarized and
//   packed (by the previous layer's epilogue), or null to pack x here; the epilogue arguments
//   (residual2 .. next_sa) and the others as in autobin_conv.
void autobin_packed_conv(const float* x, int64_t n, int64_t h, int64_t w, int64_t pt,
                         int64_t pl, int64_t oh_size, int64_t ow_size, int residual, int path,
                         int nthreads, float* out, int64_t groups, int64_t cg, float thr,
                         const uint64_t* wt, const int32_t* pcw, int64_t og, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                         const double* cdot, const double* csw, const double* cn,
                         const double* bias, const float* m, const float* csa,
                         const uint64_t* in_act, const int32_t* in_sa, const float* residual2,
                         const float* gp, const float* gn, int64_t next_groups, float next_thr,
                         uint64_t* next_act, int32_t* next_sa) {
  const ConvArgs a{n,    h,    w,   groups, cg,        og,        kh,       kw,
                   sh,   sw,   dh,  dw,     pt,        pl,        oh_size,  ow_size,
                   wt,   pcw,  cdot, csw,   cn,        bias,      m,        csa,
                   residual ? x : nullptr, residual2, gp, gn, next_groups, next_thr, next_act,
                   next_sa, out, path, nthreads};
  packed_conv(a, in_act ? nullptr : x, thr, in_act, in_sa);
}

// bfloat16 convolution of a float layer (see bf16_conv_image); arguments as autobin_int8_conv
// with wb the bf16 weights and r2 pairs per kernel row. Returns -1 when the CPU lacks
// AVX-512 BF16.
int autobin_bf16_conv(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl,
                      int64_t oh_size, int64_t ow_size, const uint16_t* wb, int64_t r2,
                      int64_t o, int64_t op, const float* bias, const float* gp, const float* gn,
                      int nthreads, float* out) {
  if (!(autobin_cpu_features() & 8)) return -1;
  if (kh == 1 && kw == 1 && pt == 0 && pl == 0 && (sh > 1 || sw > 1)) {
    // a strided 1x1 conv (a downsample shortcut) reads one input pixel in sh * sw: only those
    // are converted, into a compact image read with stride 1 (the same bf16 values and sums)
    const int64_t wp = (ow_size + kQPix - 1) / kQPix * kQPix + 3;
    std::vector<uint16_t> img(static_cast<size_t>(oh_size * wp * c + 2 * r2 + 64), 0);
    for (int64_t b = 0; b < n; ++b) {
      const float* xb = x + b * h * w * c;
#pragma omp parallel for num_threads(nthreads) schedule(static)
      for (int64_t y = 0; y < oh_size; ++y)
        for (int64_t xo = 0; xo < ow_size; ++xo)
          bf16_convert_row(xb + (y * sh * w + xo * sw) * c, c, img.data() + (y * wp + xo) * c);
      bf16_conv_image(img.data(), wp, c, 1, 1, 1, oh_size, ow_size, wb, r2, o, op, bias, gp,
                      gn, nthreads, out + b * oh_size * ow_size * o);
    }
    return 0;
  }
  const int64_t hp = std::max(h + pt, (oh_size - 1) * sh + kh);
  const int64_t wp = std::max(w + pl, (ow_size + kQPix - 1) / kQPix * kQPix * sw + kw) + 2;
  std::vector<uint16_t> img(static_cast<size_t>(hp * wp * c + 2 * r2 + 64), 0);
  for (int64_t b = 0; b < n; ++b) {
    const float* xb = x + b * h * w * c;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t y = 0; y < h; ++y)
      bf16_convert_row(xb + y * w * c, w * c, img.data() + ((y + pt) * wp + pl) * c);
    bf16_conv_image(img.data(), wp, c, kh, sh, sw, oh_size, ow_size, wb, r2, o, op, bias, gp,
                    gn, nthreads, out + b * oh_size * ow_size * o);
  }
  return 0;
}

// float32 convolution of a float layer (see fp32_conv_image): x (n, h, w, c) float32
// channels-last, wf and bias as described there (op = O rounded up to 16), gp/gn the fused
// Maxout or null; out (n, oh, ow, o) float32;
// next_act/next_sa: the output binarized (y >= next_thr) and bit-packed for the next packed
// layer (next_groups groups), as autobin_pack would from `out`, or null.
void autobin_fp32_conv(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl,
                       int64_t oh_size, int64_t ow_size, const float* wf, int64_t o, int64_t op,
                       const float* bias, const float* gp, const float* gn, int path,
                       int nthreads, float* out, int64_t next_groups, float next_thr,
                       uint64_t* next_act, int32_t* next_sa) {
  const int64_t npix = oh_size * ow_size;
  const int64_t next_words = next_groups > 0 ? next_groups * ((o / next_groups + 63) / 64) : 0;
  for (int64_t b = 0; b < n; ++b) {
    const Fp32Args a{x + b * h * w * c, h, w, c, kh, kw, sh, sw, pt, pl, oh_size, ow_size, o,
                     op, wf, bias, gp, gn, out + b * npix * o, next_groups,
                     next_thr, next_act ? next_act + b * npix * next_words : nullptr,
                     next_sa ? next_sa + b * npix * next_groups : nullptr, path, nthreads};
    fp32_conv_image(a);
  }
}

// int8 convolution of a float layer (see int8_conv_image): x (n, h, w, c) float32
// channels-last; geometry as in autobin_conv (bottom/right padding implied by oh, ow); out
// (n, oh, ow, o) float32. Returns 0, or -1 when the CPU lacks AVX-512 VNNI.
int autobin_int8_conv(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl,
                      int64_t oh_size, int64_t ow_size, const int8_t* wq, int64_t r4, int64_t o,
                      int64_t op, const int32_t* sumw, const float* wscale, const float* bias,
                      const float* gp, const float* gn, int nthreads, float* out) {
  if (!(autobin_cpu_features() & 4)) return -1;
  // padded image: every read of every output pixel block (kQPix pixels, r4 dwords) is inside
  const int64_t hp = std::max(h + pt, (oh_size - 1) * sh + kh);
  const int64_t wp = std::max(w + pl, (ow_size + kQPix - 1) / kQPix * kQPix * sw + kw) + 4;
  const int64_t img_bytes = hp * wp * c + 4 * r4 + 64;
  std::vector<uint8_t> img(static_cast<size_t>(img_bytes));
  std::vector<float> scale(static_cast<size_t>(o));
  for (int64_t b = 0; b < n; ++b) {
    const float* xb = x + b * h * w * c;
    const auto [lo, hi] = int8_range(xb, h * w * c);
    float sx = (hi - lo) / 255.0f;
    if (!(sx > 0.0f)) sx = 1.0f;
    const float inv = 1.0f / sx;
    const int32_t zx = static_cast<int32_t>(std::clamp(std::nearbyint(-lo * inv), 0.0f, 255.0f));
    std::fill(img.begin(), img.end(), static_cast<uint8_t>(zx));
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t y = 0; y < h; ++y)
      int8_quantize_row(xb + y * w * c, w * c, inv, zx, img.data() + ((y + pt) * wp + pl) * c);
    for (int64_t i = 0; i < o; ++i) scale[i] = sx * wscale[i];
    int8_conv_image(img.data(), wp, c, kh, kw, sh, sw, oh_size, ow_size, wq, r4, o, op, sumw,
                    scale.data(), bias, zx, gp, gn, nthreads,
                    out + b * oh_size * ow_size * o);
  }
  return 0;
}

// ------------------------------------------------------------------ compiled plans
// A plan runs a chain of deployed layers in one call (no Python between them). Activations
// live in an arena owned by the calling thread; every slot is a byte offset into it (-1: the
// plan's input for `in`, its output for `out`; -1 elsewhere: none; -2 for `extra`: the plan's
// second input).
struct PlanOp {
  int64_t kind;  // 0 packed conv, 1 int8 conv, 2 max pool, 3 bf16 conv, 4 float32 conv
  int64_t in, extra, out, in_act, in_sa, next_act, next_sa;
  int64_t n, h, w, c, pt, pl, oh, ow, residual;
  int64_t groups, cg, og, kh, kw, sh, sw, dh, dw, next_groups;
  double thr, next_thr;
  const void* wt;
  const void* pcw;
  const void* cdot;
  const void* csw;
  const void* cn;
  const void* bias;
  const void* m;
  const void* csa;
  const void* gp;
  const void* gn;
  const void* wq;
  int64_t r4, o, op;
  const void* sumw;
  const void* wscale;
};

// A packed conv op (kind 0) on explicit buffers: extra (the fused shortcut operand), in_act and
// in_sa (input packed by its producer), next_act and next_sa (the epilogue's packed output)
// may each be null.
void run_conv_op(const PlanOp& p, const float* in, float* dst, const float* extra,
                 const uint64_t* in_act, const int32_t* in_sa, uint64_t* next_act,
                 int32_t* next_sa, int path, int nthreads) {
  autobin_packed_conv(
      in, p.n, p.h, p.w, p.pt, p.pl, p.oh, p.ow, static_cast<int>(p.residual), path, nthreads,
      dst, p.groups, p.cg, static_cast<float>(p.thr), static_cast<const uint64_t*>(p.wt),
      static_cast<const int32_t*>(p.pcw), p.og, p.kh, p.kw, p.sh, p.sw, p.dh, p.dw,
      static_cast<const double*>(p.cdot), static_cast<const double*>(p.csw),
      static_cast<const double*>(p.cn), static_cast<const double*>(p.bias),
      static_cast<const float*>(p.m), static_cast<const float*>(p.csa), in_act, in_sa, extra,
      static_cast<const float*>(p.gp), static_cast<const float*>(p.gn), p.next_groups,
      static_cast<float>(p.next_thr), next_act, next_sa);
}

// A packed layer's forward pass from its prepared op (autobin/deploy/layers.py builds one per
// input shape; the slots of the op are unused): arguments as run_conv_op.
void autobin_conv_op(const PlanOp* op, const float* x, float* out, const float* extra,
                     const uint64_t* in_act, const int32_t* in_sa, uint64_t* next_act,
                     int32_t* next_sa, int path, int nthreads) {
  run_conv_op(*op, x, out, extra, in_act, in_sa, next_act, next_sa, path, nthreads);
}

// One image through the plan (the plan's ops are built for n = 1). x2: the image's second
// input (an op's extra slot -2), or null.
int run_plan_image(const PlanOp* ops, int64_t nops, uint8_t* base, const float* x,
                   const float* x2, float* out, int path, int nthreads) {
  auto fslot = [&](int64_t off, bool is_out) -> float* {
    if (off < 0) return is_out ? out : const_cast<float*>(x);
    return reinterpret_cast<float*>(base + off);
  };
  auto opt = [&](int64_t off) -> uint8_t* { return off < 0 ? nullptr : base + off; };
  for (int64_t i = 0; i < nops; ++i) {
    const PlanOp& p = ops[i];
    const float* in = fslot(p.in, false);
    float* dst = fslot(p.out, true);
    if (p.kind == 0) {
      const float* extra = p.extra == -2 ? x2 : p.extra < 0 ? nullptr : fslot(p.extra, false);
      run_conv_op(p, in, dst, extra,
                  reinterpret_cast<const uint64_t*>(opt(p.in_act)),
                  reinterpret_cast<const int32_t*>(opt(p.in_sa)),
                  reinterpret_cast<uint64_t*>(opt(p.next_act)),
                  reinterpret_cast<int32_t*>(opt(p.next_sa)), path, nthreads);
    } else if (p.kind == 1) {
      if (autobin_int8_conv(in, p.n, p.h, p.w, p.c, p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.oh,
                            p.ow, static_cast<const int8_t*>(p.wq), p.r4, p.o, p.op,
                            static_cast<const int32_t*>(p.sumw),
                            static_cast<const float*>(p.wscale),
                            static_cast<const float*>(p.bias), static_cast<const float*>(p.gp),
                            static_cast<const float*>(p.gn), nthreads, dst) != 0)
        return -1;
    } else if (p.kind == 4) {
      autobin_fp32_conv(in, p.n, p.h, p.w, p.c, p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.oh, p.ow,
                        static_cast<const float*>(p.wq), p.o, p.op,
                        static_cast<const float*>(p.bias), static_cast<const float*>(p.gp),
                        static_cast<const float*>(p.gn), path, nthreads, dst, p.next_groups,
                        static_cast<float>(p.next_thr),
                        reinterpret_cast<uint64_t*>(opt(p.next_act)),
                        reinterpret_cast<int32_t*>(opt(p.next_sa)));
    } else if (p.kind == 3) {
      if (autobin_bf16_conv(in, p.n, p.h, p.w, p.c, p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.oh,
                            p.ow, static_cast<const uint16_t*>(p.wq), p.r4, p.o, p.op,
                            static_cast<const float*>(p.bias), static_cast<const float*>(p.gp),
                            static_cast<const float*>(p.gn), nthreads, dst) != 0)
        return -1;
    } else {
      const int64_t rows = p.n * p.oh;
#pragma omp parallel for num_threads(nthreads) schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t b = r / p.oh, oy = r % p.oh;
        (path == kAvx512 && p.c % 16 == 0 ? maxpool_row_avx512 : maxpool_row)(
            in + b * p.h * p.w * p.c, p.h, p.w, p.c, p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, oy, p.ow,
            dst + (b * p.oh + oy) * p.ow * p.c);
      }
    }
  }
  return 0;
}

// Runs the plan on n images one after another (x: n images of in_floats floats each, x2:
// null or n images of in2_floats (the chain's second input, a shortcut operand), out: n of
// out_floats): each image's activations stay in cache from one layer to the next.
int autobin_run_plan(const PlanOp* ops, int64_t nops, int64_t arena_bytes, const float* x,
                     const float* x2, float* out, int path, int nthreads, int64_t n,
                     int64_t in_floats, int64_t in2_floats, int64_t out_floats) {
  thread_local std::vector<uint8_t> arena;
  if (static_cast<int64_t>(arena.size()) < arena_bytes)
    arena.resize(static_cast<size_t>(arena_bytes));
  for (int64_t b = 0; b < n; ++b)
    if (run_plan_image(ops, nops, arena.data(), x + b * in_floats,
                       x2 ? x2 + b * in2_floats : nullptr, out + b * out_floats, path,
                       nthreads) != 0)
      return -1;
  return 0;
}

// sizeof(PlanOp), checked by the Python side against its ctypes mirror
int64_t autobin_plan_op_size() { return static_cast<int64_t>(sizeof(PlanOp)); }

}  // extern "C"
