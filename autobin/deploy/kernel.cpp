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
  const float* res[kPixBlock];  // added to the output (a fused residual), or null
  int npix;
};

// One output of a block: m * popcount + base + csa * sa (+ the fused residual). Always inlined,
// so it is compiled with each caller's target and the paths keep their exact arithmetic.
__attribute__((always_inline)) inline void store_output(const Block& b, int p, int64_t o,
                                                        uint64_t count) {
  float y = b.m[o] * static_cast<float>(count) + b.base[p][o] + b.csa[o] * b.sa[p];
  if (b.res[p]) y += b.res[p][o];
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
int autobin_abi_version() { return 2; }

// Bit 0: AVX2 path usable; bit 1: AVX-512 VPOPCNTDQ path usable (cpuid and OS state checked by
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
void autobin_conv(const uint64_t* act, const int32_t* sa, int64_t n, int64_t h, int64_t w,
                  int64_t groups, int64_t cg, const uint64_t* wt, const int32_t* pcw, int64_t og,
                  int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                  int64_t pt, int64_t pl, int64_t oh_size, int64_t ow_size, const double* cdot,
                  const double* csw, const double* cn, const double* bias, const float* m,
                  const float* csa, const float* residual, int path, int nthreads,
                  float* out) {
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
  };

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
    }
  }
}

// Binarize, pack and convolve in one call: the layer's forward pass.
//   x: (n, h, w, groups * cg) float32 channels-last input; residual != 0 adds x to the output
//   (then the output must have the input's shape); other arguments as in autobin_conv.
void autobin_packed_conv(const float* x, int64_t n, int64_t h, int64_t w, int64_t pt,
                         int64_t pl, int64_t oh_size, int64_t ow_size, int residual, int path,
                         int nthreads, float* out, int64_t groups, int64_t cg, float thr,
                         const uint64_t* wt, const int32_t* pcw, int64_t og, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                         const double* cdot, const double* csw, const double* cn,
                         const double* bias, const float* m, const float* csa) {
  const int64_t k_words = (cg + 63) / 64;
  const int64_t npix = n * h * w;
  std::unique_ptr<uint64_t[]> act(new uint64_t[static_cast<size_t>(npix * groups * k_words)]);
  std::unique_ptr<int32_t[]> sa(new int32_t[static_cast<size_t>(npix * groups)]);
  autobin_pack(x, npix, groups * cg, groups, thr, path, nthreads, act.get(), sa.get());
  autobin_conv(act.get(), sa.get(), n, h, w, groups, cg, wt, pcw, og, kh, kw, sh, sw, dh, dw, pt,
               pl, oh_size, ow_size, cdot, csw, cn, bias, m, csa, residual ? x : nullptr, path,
               nthreads, out);
}

}  // extern "C"
