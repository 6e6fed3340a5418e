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
//   weights      wt[group][oblock][l][32]  l = tap * K + word, 32 output channels per block;
//                                          padded channels and bits are 0
//   tap counts   pcw[o][tap]               popcount of output channel o's bits at a tap
//   output       out[pixel][O]             float32 (NHWC)
//
// For one output channel o and output position p with valid taps V (padded taps are skipped:
// the fake-quantized layer pads its binarized input with 0):
//   X    = sum over all taps, words of popcount(w ^ a)   (invalid taps gather a = 0, adding I_o)
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
#include <memory>
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

__attribute__((target("avx2,popcnt"))) void pack_pixel_avx2(const float* x, int64_t cg,
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

__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))) void pack_pixel_avx512(
    const float* x, int64_t cg, int64_t k_words, float thr, uint64_t* out, int32_t* sa) {
  const __m512 t = _mm512_set1_ps(thr);
  int64_t ones = 0;
  for (int64_t k = 0; k < k_words; ++k) {
    uint64_t word = 0;
    const int64_t c0 = k * 64, c1 = std::min<int64_t>(cg, c0 + 64);
    for (int64_t c = c0; c < c1; c += 16) {
      const int64_t n = std::min<int64_t>(16, c1 - c);
      const __mmask16 live = static_cast<__mmask16>((n == 16) ? 0xffff : ((1u << n) - 1));
      const __m512 v = _mm512_maskz_loadu_ps(live, x + c);
      const __mmask16 ge = _mm512_mask_cmp_ps_mask(live, v, t, _CMP_GE_OQ);
      word |= static_cast<uint64_t>(ge) << (c - c0);
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
  // activation word l of pixel p: act[p * pstride + aidx[l]] (a gathered patch: aidx[l] = l,
  // pstride = L; an interior block reads the packed input in place)
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

__attribute__((target("avx2,fma,popcnt"))) void block_avx2(const Block& b) {
  const int64_t nob = (b.og + kOBlock - 1) / kOBlock;
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
                                       1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  for (int p = 0; p < b.npix; ++p) {
    const uint64_t* a = b.act + p * b.pstride;
    for (int64_t ob = 0; ob < nob; ++ob) {
      const uint64_t* w = b.wt + ob * b.L * kOBlock;
      alignas(32) uint64_t counts[kOBlock];
      for (int half = 0; half < 2; ++half) {  // 16 output channels = 4 vectors at a time
        __m256i acc64[4] = {zero, zero, zero, zero};
        for (int64_t l0 = 0; l0 < b.L; l0 += 31) {  // byte counters hold up to 31 * 8
          const int64_t l1 = std::min<int64_t>(b.L, l0 + 31);
          __m256i acc8[4] = {zero, zero, zero, zero};
          for (int64_t l = l0; l < l1; ++l) {
            const __m256i av = _mm256_set1_epi64x(static_cast<long long>(a[b.aidx[l]]));
            const uint64_t* wl = w + l * kOBlock + half * 16;
            for (int v = 0; v < 4; ++v) {
              const __m256i x = _mm256_xor_si256(
                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wl + 4 * v)), av);
              const __m256i lo = _mm256_and_si256(x, low);
              const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
              acc8[v] = _mm256_add_epi8(
                  acc8[v],
                  _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi)));
            }
          }
          for (int v = 0; v < 4; ++v)
            acc64[v] = _mm256_add_epi64(acc64[v], _mm256_sad_epu8(acc8[v], zero));
        }
        for (int v = 0; v < 4; ++v)
          _mm256_store_si256(reinterpret_cast<__m256i*>(counts + half * 16 + 4 * v), acc64[v]);
      }
      const int64_t o0 = ob * kOBlock, n = std::min<int64_t>(kOBlock, b.og - o0);
      const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
      const __m256 sa = _mm256_set1_ps(b.sa[p]);
      int64_t j = 0;
      for (; j + 8 <= n; j += 8) {  // 8 channels: counts fit 32 bits, convert and combine
        const int64_t o = o0 + j;
        const __m256i c0 = _mm256_permutevar8x32_epi32(
            _mm256_load_si256(reinterpret_cast<const __m256i*>(counts + j)), low_halves);
        const __m256i c1 = _mm256_permutevar8x32_epi32(
            _mm256_load_si256(reinterpret_cast<const __m256i*>(counts + j + 4)), low_halves);
        const __m256 cf = _mm256_cvtepi32_ps(_mm256_permute2x128_si256(c0, c1, 0x20));
        __m256 y = _mm256_fmadd_ps(_mm256_loadu_ps(b.m + o), cf, _mm256_loadu_ps(b.base[p] + o));
        y = _mm256_fmadd_ps(_mm256_loadu_ps(b.csa + o), sa, y);
        if (b.res[p]) y = _mm256_add_ps(y, _mm256_loadu_ps(b.res[p] + o));
        if (b.res2[p]) y = _mm256_add_ps(y, _mm256_loadu_ps(b.res2[p] + o));
        _mm256_storeu_ps(b.out[p] + o, y);
      }
      for (; j < n; ++j) store_output(b, p, o0 + j, counts[j]);
    }
  }
}

__attribute__((target("avx512f,avx512vpopcntdq"))) void block_avx512(const Block& b) {
  const int64_t nob = (b.og + kOBlock - 1) / kOBlock;
  const int64_t L = b.L;
  const int64_t* aidx = b.aidx;
  const uint64_t* a0 = b.act;
  const uint64_t* a1 = b.act + b.pstride;
  const uint64_t* a2 = b.act + 2 * b.pstride;
  const uint64_t* a3 = b.act + 3 * b.pstride;
  for (int64_t ob = 0; ob < nob; ++ob) {
    const uint64_t* w = b.wt + ob * L * kOBlock;
    __m512i acc[kPixBlock][4];
    for (int p = 0; p < kPixBlock; ++p)
      for (int v = 0; v < 4; ++v) acc[p][v] = _mm512_setzero_si512();
    for (int64_t l = 0; l < L; ++l) {
      const __m512i w0 = _mm512_loadu_si512(w + l * kOBlock);
      const __m512i w1 = _mm512_loadu_si512(w + l * kOBlock + 8);
      const __m512i w2 = _mm512_loadu_si512(w + l * kOBlock + 16);
      const __m512i w3 = _mm512_loadu_si512(w + l * kOBlock + 24);
      const int64_t at = aidx[l];
      const __m512i x[4] = {_mm512_set1_epi64(static_cast<long long>(a0[at])),
                            _mm512_set1_epi64(static_cast<long long>(a1[at])),
                            _mm512_set1_epi64(static_cast<long long>(a2[at])),
                            _mm512_set1_epi64(static_cast<long long>(a3[at]))};
      for (int p = 0; p < kPixBlock; ++p) {
        acc[p][0] = _mm512_add_epi64(acc[p][0], _mm512_popcnt_epi64(_mm512_xor_si512(w0, x[p])));
        acc[p][1] = _mm512_add_epi64(acc[p][1], _mm512_popcnt_epi64(_mm512_xor_si512(w1, x[p])));
        acc[p][2] = _mm512_add_epi64(acc[p][2], _mm512_popcnt_epi64(_mm512_xor_si512(w2, x[p])));
        acc[p][3] = _mm512_add_epi64(acc[p][3], _mm512_popcnt_epi64(_mm512_xor_si512(w3, x[p])));
      }
    }
    const int64_t o0 = ob * kOBlock;
    for (int half = 0; half < 2; ++half) {  // 16 output channels per float vector
      const int64_t oh = o0 + 16 * half;
      const int64_t n = std::min<int64_t>(16, b.og - oh);
      if (n <= 0) break;
      const __mmask16 live = static_cast<__mmask16>((n == 16) ? 0xffff : ((1u << n) - 1));
      const __m512 m = _mm512_maskz_loadu_ps(live, b.m + oh);
      const __m512 csa = _mm512_maskz_loadu_ps(live, b.csa + oh);
      for (int p = 0; p < b.npix; ++p) {
        const __m512i counts = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm512_cvtepi64_epi32(acc[p][2 * half])),
            _mm512_cvtepi64_epi32(acc[p][2 * half + 1]), 1);
        const __m512 base = _mm512_maskz_loadu_ps(live, b.base[p] + oh);
        __m512 y = _mm512_fmadd_ps(m, _mm512_cvtepi32_ps(counts), base);
        y = _mm512_fmadd_ps(csa, _mm512_set1_ps(b.sa[p]), y);
        if (b.res[p]) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(live, b.res[p] + oh));
        if (b.res2[p]) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(live, b.res2[p] + oh));
        _mm512_mask_storeu_ps(b.out[p] + oh, live, y);
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
int autobin_abi_version() { return 7; }

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
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t i = 0; i < npix; ++i) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = x + i * channels + g * cg;
      uint64_t* dst = act + (i * groups + g) * k_words;
      int32_t* s = sa + i * groups + g;
      if (path == kAvx512)
        pack_pixel_avx512(src, cg, k_words, thr, dst, s);
      else if (path == kAvx2)
        pack_pixel_avx2(src, cg, k_words, thr, dst, s);
      else
        pack_pixel_portable(src, cg, k_words, thr, dst, s);
    }
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
  const int64_t k_words = (cg + 63) / 64;
  const int64_t taps = kh * kw;
  const int64_t L = taps * k_words;
  const int64_t O = og * groups;
  const int64_t nob = (og + kOBlock - 1) / kOBlock;
  const int64_t pix_words = groups * k_words;

  // The valid taps of a position are the product of a contiguous range of kernel rows and one
  // of kernel columns. Positions share `base` when they share both ranges: one table entry
  // per distinct (row range, column range) pair, computed once per call.
  std::vector<int64_t> row_pat(oh_size), col_pat(ow_size);
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
  for (int64_t y = 0; y < oh_size; ++y) row_pat[y] = classify(y, sh, pt, dh, kh, h, row_ranges);
  for (int64_t x = 0; x < ow_size; ++x) col_pat[x] = classify(x, sw, pl, dw, kw, w, col_ranges);
  const int64_t ncol = static_cast<int64_t>(col_ranges.size());
  // 2-D prefix sums of the tap popcounts: the popcount over any rectangle of taps in O(1)
  const int64_t pw = kw + 1, psize = (kh + 1) * (kw + 1);
  std::vector<int64_t> prefix(static_cast<size_t>(O * psize), 0);
  for (int64_t o = 0; o < O; ++o) {
    int64_t* pre = prefix.data() + o * psize;
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j)
        pre[(i + 1) * pw + j + 1] = pcw[o * taps + i * kw + j] + pre[i * pw + j + 1] +
                                    pre[(i + 1) * pw + j] - pre[i * pw + j];
  }
  std::vector<float> base_tab(row_ranges.size() * col_ranges.size() * O);
  for (size_t r = 0; r < row_ranges.size(); ++r) {
    for (int64_t cidx = 0; cidx < ncol; ++cidx) {
      const auto [i0, i1] = row_ranges[r];
      const auto [j0, j1] = col_ranges[cidx];
      const int64_t nv = cg * (i1 - i0) * (j1 - j0);
      float* bt = base_tab.data() + (r * ncol + cidx) * O;
      for (int64_t o = 0; o < O; ++o) {
        // Padded taps contribute nothing (not beta): X also counted popcount(w) there.
        const int64_t* pre = prefix.data() + o * psize;
        const int64_t valid_pop = pre[i1 * pw + j1] - pre[i0 * pw + j1] - pre[i1 * pw + j0] +
                                  pre[i0 * pw + j0];
        const int64_t inv_pop = pre[kh * pw + kw] - valid_pop;
        const int64_t valid_sw = 2 * valid_pop - nv;
        bt[o] = static_cast<float>(cdot[o] * static_cast<double>(nv + 2 * inv_pop) +
                                   csw[o] * static_cast<double>(valid_sw) +
                                   cn[o] * static_cast<double>(nv) + bias[o]);
      }
    }
  }

  // Word l = tap * K + k of a pixel: in a gathered patch at l; in the packed input at
  // tap_word[l] past the pixel's first tap (interior blocks read the input in place).
  std::vector<int64_t> patch_idx(L), input_idx(L), tap_pix(taps);
  for (int64_t i = 0; i < kh; ++i) {
    for (int64_t j = 0; j < kw; ++j) {
      const int64_t t = i * kw + j;
      tap_pix[t] = i * dh * w + j * dw;
      for (int64_t k = 0; k < k_words; ++k) {
        patch_idx[t * k_words + k] = t * k_words + k;
        input_idx[t * k_words + k] = tap_pix[t] * pix_words + k;
      }
    }
  }
  auto full = [](const std::pair<int64_t, int64_t>& r, int64_t k) {
    return r.first == 0 && r.second == k;
  };

  // A group's block over activation words act[p * pstride + idx[l]]; the caller fills in
  // each pixel's base, sa and output.
  auto group_block = [&](int64_t g, const uint64_t* a, const int64_t* idx, int64_t pstride,
                         int npix) {
    Block blk;
    blk.act = a;
    blk.aidx = idx;
    blk.pstride = pstride;
    blk.L = L;
    blk.wt = wt + g * nob * L * kOBlock;
    blk.og = og;
    blk.m = m + g * og;
    blk.csa = csa + g * og;
    blk.npix = npix;
    return blk;
  };
  // Pixel p of a block writes output pixel (b, oy, ox), group g (and reads its residual there).
  auto place_output = [&](Block& blk, int p, int64_t b, int64_t oy, int64_t ox, int64_t g) {
    const int64_t at = ((b * oh_size + oy) * ow_size + ox) * O + g * og;
    blk.out[p] = out + at;
    blk.res[p] = residual ? residual + at : nullptr;
    blk.res2[p] = residual2 ? residual2 + at : nullptr;
  };
  // The fused epilogue's per-pixel steps after all channels of the pixel are stored (the row
  // is still in L1): Maxout in place, then binarize and pack for the next layer.
  const int64_t next_cg = next_groups > 0 ? O / next_groups : 0;
  const int64_t next_k = (next_cg + 63) / 64;
  auto finish_pixel = [&](int64_t pix) {
    float* row = out + pix * O;
    if (gp) maxout_rows(row, 1, O, gp, gn, row);
    if (!next_act) return;
    for (int64_t g = 0; g < next_groups; ++g) {
      uint64_t* dst = next_act + (pix * next_groups + g) * next_k;
      int32_t* s = next_sa + pix * next_groups + g;
      if (path == kAvx512)
        pack_pixel_avx512(row + g * next_cg, next_cg, next_k, next_thr, dst, s);
      else if (path == kAvx2)
        pack_pixel_avx2(row + g * next_cg, next_cg, next_k, next_thr, dst, s);
      else
        pack_pixel_portable(row + g * next_cg, next_cg, next_k, next_thr, dst, s);
    }
  };
  const bool finishing = gp != nullptr || next_act != nullptr;

  const int64_t nblocks_w = (ow_size + kPixBlock - 1) / kPixBlock;
  const int64_t items = n * oh_size * nblocks_w;
  void (*block_fn)(const Block&) =
      path == kAvx512 ? block_avx512 : (path == kAvx2 ? block_avx2 : block_portable);

#pragma omp parallel num_threads(nthreads)
  {
    std::vector<uint64_t> patch(static_cast<size_t>(groups * kPixBlock * L), 0);
    std::vector<int64_t> sa_acc(static_cast<size_t>(groups * kPixBlock));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t bw = item % nblocks_w;
      const int64_t oy = (item / nblocks_w) % oh_size;
      const int64_t b = item / (nblocks_w * oh_size);
      const int64_t ox0 = bw * kPixBlock;
      const int npix = static_cast<int>(std::min<int64_t>(kPixBlock, ow_size - ox0));
      std::fill(sa_acc.begin(), sa_acc.end(), 0);
      const bool interior = npix == kPixBlock && full(row_ranges[row_pat[oy]], kh) &&
                            full(col_ranges[col_pat[ox0]], kw) &&
                            full(col_ranges[col_pat[ox0 + kPixBlock - 1]], kw);
      if (interior) {
        // every tap inside the input: read the packed input in place, no gather
        const int64_t pix0 = (b * h + oy * sh - pt) * w + ox0 * sw - pl;
        const float* base = base_tab.data() + (row_pat[oy] * ncol + col_pat[ox0]) * O;
        for (int64_t g = 0; g < groups; ++g) {
          Block blk = group_block(g, act + pix0 * pix_words + g * k_words, input_idx.data(),
                                  sw * pix_words, npix);
          for (int p = 0; p < kPixBlock; ++p) {
            int64_t s_sum = 0;
            const int32_t* sp = sa + (pix0 + p * sw) * groups + g;
            for (int64_t t = 0; t < taps; ++t) s_sum += sp[tap_pix[t] * groups];
            blk.base[p] = base + g * og;
            blk.sa[p] = static_cast<float>(s_sum);
            place_output(blk, p, b, oy, ox0 + p, g);
          }
          block_fn(blk);
        }
        if (finishing)
          for (int p = 0; p < npix; ++p) finish_pixel((b * oh_size + oy) * ow_size + ox0 + p);
        continue;
      }
      const float* base_ptr[kPixBlock];
      for (int p = 0; p < kPixBlock; ++p) {
        base_ptr[p] = base_tab.data();
        if (p >= npix) {  // past the row's end: zero rows, results not stored
          for (int64_t g = 0; g < groups; ++g)
            std::fill_n(&patch[(g * kPixBlock + p) * L], L, 0);
          continue;
        }
        const int64_t ox = ox0 + p;
        base_ptr[p] = base_tab.data() + (row_pat[oy] * ncol + col_pat[ox]) * O;
        for (int64_t i = 0; i < kh; ++i) {
          const int64_t iy = oy * sh - pt + i * dh;
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t ix = ox * sw - pl + j * dw;
            const int64_t t = i * kw + j;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
              for (int64_t g = 0; g < groups; ++g)
                std::fill_n(&patch[(g * kPixBlock + p) * L + t * k_words], k_words, 0);
              continue;
            }
            const int64_t pix = (b * h + iy) * w + ix;
            const uint64_t* src = act + pix * pix_words;
            for (int64_t g = 0; g < groups; ++g) {
              uint64_t* dst = &patch[(g * kPixBlock + p) * L + t * k_words];
              const uint64_t* from = src + g * k_words;
              if (k_words == 1)
                dst[0] = from[0];
              else
                std::memcpy(dst, from, static_cast<size_t>(k_words) * sizeof(uint64_t));
              sa_acc[g * kPixBlock + p] += sa[pix * groups + g];
            }
          }
        }
      }
      for (int64_t g = 0; g < groups; ++g) {
        Block blk = group_block(g, patch.data() + g * kPixBlock * L, patch_idx.data(), L, npix);
        for (int p = 0; p < kPixBlock; ++p) {
          blk.base[p] = base_ptr[p] + g * og;
          blk.sa[p] = static_cast<float>(sa_acc[g * kPixBlock + p]);
          place_output(blk, p, b, oy, ox0 + std::min(p, npix - 1), g);
        }
        block_fn(blk);
      }
      if (finishing)
        for (int p = 0; p < npix; ++p) finish_pixel((b * oh_size + oy) * ow_size + ox0 + p);
    }
  }
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
  const int64_t k_words = (cg + 63) / 64;
  const int64_t npix = n * h * w;
  std::unique_ptr<uint64_t[]> act;
  std::unique_ptr<int32_t[]> sa;
  if (!in_act) {
    act.reset(new uint64_t[static_cast<size_t>(npix * groups * k_words)]);
    sa.reset(new int32_t[static_cast<size_t>(npix * groups)]);
    autobin_pack(x, npix, groups * cg, groups, thr, path, nthreads, act.get(), sa.get());
    in_act = act.get();
    in_sa = sa.get();
  }
  autobin_conv(in_act, in_sa, n, h, w, groups, cg, wt, pcw, og, kh, kw, sh, sw, dh, dw, pt, pl,
               oh_size, ow_size, cdot, csw, cn, bias, m, csa, residual ? x : nullptr, path,
               nthreads, out, residual2, gp, gn, next_groups, next_thr, next_act, next_sa);
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
// plan's input for `in`, its output for `out`; -1 elsewhere: none).
struct PlanOp {
  int64_t kind;  // 0 packed conv, 1 int8 conv, 2 max pool, 3 bf16 conv
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

// One image through the plan (the plan's ops are built for n = 1).
int run_plan_image(const PlanOp* ops, int64_t nops, uint8_t* base, const float* x, float* out,
                   int path, int nthreads) {
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
      autobin_packed_conv(
          in, p.n, p.h, p.w, p.pt, p.pl, p.oh, p.ow, static_cast<int>(p.residual), path,
          nthreads, dst, p.groups, p.cg, static_cast<float>(p.thr),
          static_cast<const uint64_t*>(p.wt), static_cast<const int32_t*>(p.pcw), p.og, p.kh,
          p.kw, p.sh, p.sw, p.dh, p.dw, static_cast<const double*>(p.cdot),
          static_cast<const double*>(p.csw), static_cast<const double*>(p.cn),
          static_cast<const double*>(p.bias), static_cast<const float*>(p.m),
          static_cast<const float*>(p.csa), reinterpret_cast<const uint64_t*>(opt(p.in_act)),
          reinterpret_cast<const int32_t*>(opt(p.in_sa)),
          p.extra < 0 ? nullptr : fslot(p.extra, false), static_cast<const float*>(p.gp),
          static_cast<const float*>(p.gn), p.next_groups, static_cast<float>(p.next_thr),
          reinterpret_cast<uint64_t*>(opt(p.next_act)),
          reinterpret_cast<int32_t*>(opt(p.next_sa)));
    } else if (p.kind == 1) {
      if (autobin_int8_conv(in, p.n, p.h, p.w, p.c, p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.oh,
                            p.ow, static_cast<const int8_t*>(p.wq), p.r4, p.o, p.op,
                            static_cast<const int32_t*>(p.sumw),
                            static_cast<const float*>(p.wscale),
                            static_cast<const float*>(p.bias), static_cast<const float*>(p.gp),
                            static_cast<const float*>(p.gn), nthreads, dst) != 0)
        return -1;
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
        maxpool_row(in + b * p.h * p.w * p.c, p.h, p.w, p.c, p.kh, p.kw, p.sh, p.sw, p.pt,
                    p.pl, oy, p.ow, dst + (b * p.oh + oy) * p.ow * p.c);
      }
    }
  }
  return 0;
}

// Runs the plan on n images one after another (x: n images of in_floats floats each, out:
// n of out_floats): each image's activations stay in cache from one layer to the next.
int autobin_run_plan(const PlanOp* ops, int64_t nops, int64_t arena_bytes, const float* x,
                     float* out, int path, int nthreads, int64_t n, int64_t in_floats,
                     int64_t out_floats) {
  thread_local std::vector<uint8_t> arena;
  if (static_cast<int64_t>(arena.size()) < arena_bytes)
    arena.resize(static_cast<size_t>(arena_bytes));
  for (int64_t b = 0; b < n; ++b)
    if (run_plan_image(ops, nops, arena.data(), x + b * in_floats, out + b * out_floats, path,
                       nthreads) != 0)
      return -1;
  return 0;
}

// sizeof(PlanOp), checked by the Python side against its ctypes mirror
int64_t autobin_plan_op_size() { return static_cast<int64_t>(sizeof(PlanOp)); }

}  // extern "C"
