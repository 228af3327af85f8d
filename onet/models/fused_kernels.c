/* Elementwise passes of the fused decoder trunk (onet/models/fused.py), and of the folded bf16
   eval-mode network (onet/models/decoders.py: MISE, refinement, normals), as single OpenMP loops.

   Each function does, over one chunk of rows, the work that takes the torch path
   two to five whole-chunk ops (each with its own dispatch, thread hand-off and pass over the
   chunk).  Built at first use by onet/utils/native.py with the system C compiler and linked
   against the OpenMP runtime torch has already loaded, so these loops share torch's threads.

   Layout: row-major, H values per row, float32 or (the bf16 trunk's matmul operands and stored
   block intermediates, flagged per argument) bf16; a chunk of n rows holds whole objects of tt rows,
   or a part of one object (tt >= n), so row r belongs to object r / tt of the chunk.  Per-object
   tensors (s, t) point at the chunk's first object.  Sums split rows between threads; a thread
   writes the sums of an object it holds whole straight to the output and the sums of an object it
   shares into its own slots of `part`, added up after the parallel region: results do not depend
   on how many threads run, beyond rounding. */

#include <omp.h>
#include <stdint.h>
#if defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <string.h>

typedef int64_t i64;

/* bf16 values are stored as their 16 bits; conversions round to nearest even with NaN kept NaN, as
   torch's (so results equal the torch-op path's up to float rounding). */
typedef uint16_t bf16;

static inline bf16 to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t rounded = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)0x7fc0 : rounded;
}

static inline float from_bf16(bf16 b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}


/* Rows [r0, r1) of thread tid out of nt, in equal blocks. */
static void row_range(i64 n, int tid, int nt, i64 *r0, i64 *r1) {
    i64 q = n / nt, rem = n % nt;
    *r0 = tid * q + (tid < rem ? tid : rem);
    *r1 = *r0 + q + (tid < rem ? 1 : 0);
}

/* Row r of x as floats: the row itself, or converted from bf16 into tmp. */
static inline const float *row_f32(const void *x, int x16, i64 r, i64 H, float *tmp) {
    if (!x16) return (const float *)x + r * H;
    const bf16 *xr = (const bf16 *)x + r * H;
#pragma omp simd
    for (i64 j = 0; j < H; j++) tmp[j] = from_bf16(xr[j]);
    return tmp;
}

/* a = relu(x * s_b + t_b), or relu(x) when s is NULL; x and a float32, or bf16 where x16 / a16 (the
   bf16 trunk: matmul inputs and the stored block intermediate in bf16). */
void onet_act(const void *x, int x16, const float *s, const float *t, void *a, int a16, i64 n, i64 tt, i64 H,
              int nt) {
#pragma omp parallel num_threads(nt)
    {
        float tmp[H], v[H];
#pragma omp for schedule(static)
        for (i64 r = 0; r < n; r++) {
            const float *xr = row_f32(x, x16, r, H, tmp);
            float *out = a16 ? v : (float *)a + r * H;
            if (s) {
                const float *sb = s + (r / tt) * H, *tb = t + (r / tt) * H;
#pragma omp simd
                for (i64 j = 0; j < H; j++) {
                    float u = xr[j] * sb[j] + tb[j];
                    out[j] = u < 0.f ? 0.f : u;  /* NaN stays NaN, as torch.relu */
                }
            } else {
#pragma omp simd
                for (i64 j = 0; j < H; j++) out[j] = xr[j] < 0.f ? 0.f : xr[j];
            }
            if (a16) {
                bf16 *ar = (bf16 *)a + r * H;
#pragma omp simd
                for (i64 j = 0; j < H; j++) ar[j] = to_bf16(v[j]);
            }
        }
    }
}

/* Per-object sums over rows of two functions of each row (see the kinds below): out1[b], out2[b]
   (rows of H floats) for the chunk's objects b.  Sums run in double: the batch variance is
   E[d^2] - E[d]^2 and dgamma is S2 - mean * S1, differences that a float running sum over
   thousands of rows spoils (measured: a weight gradient 7e-3 off with one thread).  Rows are
   summed in float in blocks of BLOCK_ROWS (vectorised), each block's sums added in double.
   part: nt * 3 * 2 * H doubles of scratch. */
#define BLOCK_ROWS 32
enum { SUMS_STATS = 0, SUMS_RELU_BACK = 1, SUMS_INPUT_GRAD = 2 };

typedef struct {
    /* SUMS_STATS: out = m + bias (+ skip); sums of d = out - K and d * d; m bf16 where m16 */
    const void *m;
    const float *bias, *skip, *K;
    float *out;
    int m16;
    /* SUMS_RELU_BACK: dz = da * [a > 0]; sums of dz and dz * x (no sums when x is NULL); da and a bf16
       where low, x where x16 */
    const void *da, *a, *x;
    float *dz;
    int low, x16;
    /* SUMS_INPUT_GRAD: gout = dz * s_b (+ x * v + c0) (+ add), s_b the row's object's (tt rows each);
       keep = a copy (when not NULL), glow = a bf16 copy (when not NULL); sums of gout */
    const float *s, *v, *c0, *add;
    float *gout, *keep;
    bf16 *glow;
    i64 tt;
} Args;

/* dst[0:H] = row[0:H]; rows bound for memory (read again only in a later pass) are written with
   streaming stores where the CPU has them: no read of the old line first, no cache space taken. */
static inline void stream_row(float *dst, const float *row, i64 H) {
#if defined(__AVX512F__)
    if (((uintptr_t)dst & 63) == 0 && H % 16 == 0) {
        for (i64 j = 0; j < H; j += 16) _mm512_stream_ps(dst + j, _mm512_loadu_ps(row + j));
        return;
    }
#elif defined(__AVX__)
    if (((uintptr_t)dst & 31) == 0 && H % 8 == 0) {
        for (i64 j = 0; j < H; j += 8) _mm256_stream_ps(dst + j, _mm256_loadu_ps(row + j));
        return;
    }
#endif
    memcpy(dst, row, H * sizeof(float));
}

static inline void stream_fence(void) {
#if defined(__AVX__) || defined(__AVX512F__)
    _mm_sfence();
#endif
}

static void row_sums_kind(int kind, const Args *g, i64 r0, i64 r1, i64 H, float *row, float *acc1, float *acc2) {
    float tmp[H];
    for (i64 r = r0; r < r1; r++) {
        if (kind == SUMS_STATS) {
            const float *mr = row_f32(g->m, g->m16, r, H, tmp);
            const float *sk = g->skip ? g->skip + r * H : NULL, *bias = g->bias, *K = g->K;
            if (sk && bias) {
#pragma omp simd
                for (i64 j = 0; j < H; j++) row[j] = mr[j] + bias[j] + sk[j];
            } else if (bias) {
#pragma omp simd
                for (i64 j = 0; j < H; j++) row[j] = mr[j] + bias[j];
            } else if (sk) {
#pragma omp simd
                for (i64 j = 0; j < H; j++) row[j] = mr[j] + sk[j];
            } else {
                memcpy(row, mr, H * sizeof(float));
            }
            if (acc1) {
#pragma omp simd
                for (i64 j = 0; j < H; j++) {
                    float d = row[j] - K[j];
                    acc1[j] += d;
                    acc2[j] += d * d;
                }
            }
            if (g->out) stream_row(g->out + r * H, row, H);
        } else if (kind == SUMS_INPUT_GRAD) {
            const float *dzr = g->dz + r * H, *ad = g->add ? g->add + r * H : NULL;
            float *o = g->gout + r * H;
            if (g->s && g->v) {
                const float *sb = g->s + (r / g->tt) * H, *xr = row_f32(g->x, g->x16, r, H, tmp), *v = g->v,
                            *c0 = g->c0;
#pragma omp simd
                for (i64 j = 0; j < H; j++) o[j] = dzr[j] * sb[j] + (xr[j] * v[j] + c0[j]);
            } else if (g->s) {
                const float *sb = g->s + (r / g->tt) * H;
#pragma omp simd
                for (i64 j = 0; j < H; j++) o[j] = dzr[j] * sb[j];
            } else if (o != dzr) {
                memcpy(o, dzr, H * sizeof(float));
            }
            if (ad) {
#pragma omp simd
                for (i64 j = 0; j < H; j++) o[j] += ad[j];
            }
            if (acc1) {
#pragma omp simd
                for (i64 j = 0; j < H; j++) acc1[j] += o[j];
            }
            if (g->keep) stream_row(g->keep + r * H, o, H);
            if (g->glow) {
                bf16 *lr = g->glow + r * H;
#pragma omp simd
                for (i64 j = 0; j < H; j++) lr[j] = to_bf16(o[j]);
            }
        } else {
            if (g->low) {
                const bf16 *dar = (const bf16 *)g->da + r * H, *arr = (const bf16 *)g->a + r * H;
#pragma omp simd
                for (i64 j = 0; j < H; j++) row[j] = from_bf16(arr[j]) <= 0.f ? 0.f : from_bf16(dar[j]);
            } else {
                const float *dar = (const float *)g->da + r * H, *arr = (const float *)g->a + r * H;
#pragma omp simd
                for (i64 j = 0; j < H; j++) row[j] = arr[j] <= 0.f ? 0.f : dar[j];
            }
            if (acc1) {
                const float *xr = row_f32(g->x, g->x16, r, H, tmp);
#pragma omp simd
                for (i64 j = 0; j < H; j++) {
                    acc1[j] += row[j];
                    acc2[j] += row[j] * xr[j];
                }
            }
            stream_row(g->dz + r * H, row, H);
        }
    }
}

static void object_sums(int kind, const Args *g, i64 n, i64 tt, i64 H, float *out1, float *out2, double *part,
                        int nt, int sums) {
    i64 shared_obj[64][2];  /* per thread: the objects of its two shared slots, -1 when unused */
    if (nt > 64) nt = 64;
    for (int k = 0; k < nt; k++) shared_obj[k][0] = shared_obj[k][1] = -1;
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        i64 r0, r1;
        row_range(n, tid, nth, &r0, &r1);
        double *mine = part + (i64)tid * 3 * 2 * H;  /* slots 0, 1: shared objects; 2: the current whole one */
        float block[2 * H], row[H];
        int slot = 0;
        for (i64 b = r0 / tt; r0 < r1 && b * tt < r1; b++) {
            i64 s0 = b * tt > r0 ? b * tt : r0, s1 = (b + 1) * tt < r1 ? (b + 1) * tt : r1;
            if (s0 >= s1) continue;
            if (!sums) {
                row_sums_kind(kind, g, s0, s1, H, row, NULL, NULL);
                continue;
            }
            int whole = s0 == b * tt && s1 == (b + 1) * tt;
            double *acc = mine + (whole ? 2 : slot) * 2 * H;
            if (!whole) {
                shared_obj[tid][slot] = b;
                slot = 1;  /* only a thread's first and last objects can be shared */
            }
            memset(acc, 0, 2 * H * sizeof(double));
            for (i64 q = s0; q < s1; q += BLOCK_ROWS) {
                memset(block, 0, 2 * H * sizeof(float));
                row_sums_kind(kind, g, q, q + BLOCK_ROWS < s1 ? q + BLOCK_ROWS : s1, H, row, block, block + H);
                for (i64 j = 0; j < 2 * H; j++) acc[j] += block[j];
            }
            if (whole)
                for (i64 j = 0; j < H; j++) {
                    out1[b * H + j] = (float)acc[j];
                    if (out2) out2[b * H + j] = (float)acc[H + j];
                }
        }
        stream_fence();
    }
    if (!sums) return;
    /* shared objects, added up in double: slots in thread order hold nondecreasing objects, so the
       slots of one object are consecutive */
    double *run = NULL;
    i64 run_b = -1;
    for (int k = 0; k <= nt; k++)
        for (int sl = 0; sl < 2; sl++) {
            i64 b = k < nt ? shared_obj[k][sl] : -2;  /* -2: past the last slot, flush */
            if (b == -1) continue;
            if (b == run_b) {
                const double *p = part + ((i64)k * 3 + sl) * 2 * H;
                for (i64 j = 0; j < 2 * H; j++) run[j] += p[j];
                continue;
            }
            if (run)
                for (i64 j = 0; j < H; j++) {
                    out1[run_b * H + j] = (float)run[j];
                    if (out2) out2[run_b * H + j] = (float)run[H + j];
                }
            if (b == -2) return;
            run = part + ((i64)k * 3 + sl) * 2 * H;
            run_b = b;
        }
}

/* out (n, H) = m (+ bias) (+ skip), NULLs left out: a product from the cache (bf16 where m16), its bias
   and the residual stream, written to memory once (not at all when out is NULL); s1 = sum over rows of
   (out - K), s2 = sum of (out - K)^2 when s1 is not NULL.  out may be m itself (float32 m). */
void onet_bias_stats(const void *m, int m16, const float *bias, const float *skip, float *out, const float *K, i64 n,
                     i64 H, float *s1, float *s2, double *part, int nt) {
    Args g = {.m = m, .m16 = m16, .bias = bias, .skip = skip, .K = K, .out = out};
    object_sums(SUMS_STATS, &g, n, n, H, s1, s2, part, nt, s1 != NULL);
}

/* dz = da * [a > 0] (da and a bf16 where low); per object of the chunk S1[b] = sum dz, S2[b] = sum
   dz * x (x bf16 where x16), when x is not NULL. */
void onet_relu_back(const void *da, const void *a, int low, const void *x, int x16, float *dz, i64 n, i64 tt, i64 H,
                    float *S1, float *S2, double *part, int nt) {
    Args g = {.da = da, .a = a, .low = low, .x = x, .x16 = x16, .dz = dz};
    object_sums(SUMS_RELU_BACK, &g, n, tt, H, S1, S2, part, nt, x != NULL);
}

/* The input gradient of a unit, evaluated where it is used (the next unit down's backward pass, or
   the trunk's input): out = dz * s_b (+ x * v + c0) (+ add), or dz (+ add) when s is NULL (an
   unnormalised unit); x bf16 where x16; v and c0 (H) are NULL in eval mode (constant statistics); add
   (rows of H) the skip gradient or NULL.  keep (not NULL): a copy streamed to memory; low (not NULL):
   a bf16 copy, the next products' operand.  db (not NULL): the sums of out over all rows.  out may be
   dz (in place). */
void onet_input_grad(const float *dz, const void *x, int x16, const float *s, const float *v, const float *c0,
                     const float *add, float *out, float *keep, bf16 *low, i64 n, i64 tt, i64 H, float *db,
                     double *part, int nt) {
    Args g = {.dz = (float *)dz, .x = x, .x16 = x16, .s = s, .v = v, .c0 = c0, .add = add, .gout = out,
              .keep = keep, .glow = low, .tt = tt};
    object_sums(SUMS_INPUT_GRAD, &g, n, n, H, db, NULL, part, nt, db != NULL);
}

/* ---- The folded eval-mode network in bf16 (decoders._relu_form): one object's chunk of n points,
   rows of H channels, the residual stream and the gradient in float32, matmul operands in bf16.
   Each function is one pass where the torch ops take two to five (a dtype copy after every bf16
   product among them). */

/* h = m (replace != 0) or h += m: the residual stream takes a bf16 product. */
void onet_bf16_into(float *h, const bf16 *m, i64 n, i64 H, int replace, int nt) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (i64 r = 0; r < n; r++) {
        float *hr = h + r * H;
        const bf16 *mr = m + r * H;
        if (replace) {
#pragma omp simd
            for (i64 j = 0; j < H; j++) hr[j] = from_bf16(mr[j]);
        } else {
#pragma omp simd
            for (i64 j = 0; j < H; j++) hr[j] += from_bf16(mr[j]);
        }
    }
}

/* ReLU backward in place on a bf16 gradient: g = 0 where the kept output y <= 0 (torch's
   threshold_backward: NaN outputs pass the gradient). */
void onet_bf16_mask(bf16 *g, const bf16 *y, i64 n, i64 H, int nt) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (i64 r = 0; r < n; r++) {
        bf16 *gr = g + r * H;
        const bf16 *yr = y + r * H;
#pragma omp simd
        for (i64 j = 0; j < H; j++) gr[j] = from_bf16(yr[j]) <= 0.f ? (bf16)0 : gr[j];
    }
}

/* The gradient of the residual stream through a block's first ReLU: d = m where a > 0 (else 0),
   g += d (accumulate != 0) or g = d; gb = bf16(g), the next product's operand (not written when NULL). */
void onet_bf16_mask_into(float *g, const bf16 *m, const bf16 *a, bf16 *gb, i64 n, i64 H, int accumulate, int nt) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (i64 r = 0; r < n; r++) {
        float *gr = g + r * H;
        const bf16 *mr = m + r * H, *ar = a + r * H;
        bf16 *gbr = gb ? gb + r * H : NULL;
#pragma omp simd
        for (i64 j = 0; j < H; j++) {
            float d = from_bf16(ar[j]) <= 0.f ? 0.f : from_bf16(mr[j]);
            gr[j] = accumulate ? gr[j] + d : d;
        }
        if (gbr) {
#pragma omp simd
            for (i64 j = 0; j < H; j++) gbr[j] = to_bf16(gr[j]);
        }
    }
}

/* The output layer and the start of the backward pass, per point: a = relu(h * s + shift) (fp32),
   logits = b + a . w, g = w_grad where a > 0 (else 0), gb = bf16(g). */
void onet_bf16_head(const float *h, const float *s, const float *shift, const float *w, float b,
                    const float *w_grad, float *logits, float *g, bf16 *gb, i64 n, i64 H, int nt) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (i64 r = 0; r < n; r++) {
        const float *hr = h + r * H;
        float *gr = g + r * H;
        bf16 *gbr = gb + r * H;
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (i64 j = 0; j < H; j++) {
            float v = hr[j] * s[j] + shift[j];
            float a = v < 0.f ? 0.f : v;
            acc += a * w[j];
            float d = a <= 0.f ? 0.f : w_grad[j];
            gr[j] = d;
            gbr[j] = to_bf16(d);
        }
        logits[r] = b + acc;
    }
}

/* The same network in `_centered`'s clamp form (make_eval_fn, forward only): a = bf16(clamp(x + q,
   lo, hi)), x the float32 residual stream (q = -m, its shifts) or a bf16 product (x16; q its bias);
   q, lo, hi: (H,), infinite bounds allowed. */
void onet_bf16_clamp(const void *x, int x16, const float *q, const float *lo, const float *hi, bf16 *a, i64 n, i64 H,
                     int nt) {
#pragma omp parallel num_threads(nt)
    {
        float tmp[H];
#pragma omp for schedule(static)
        for (i64 r = 0; r < n; r++) {
            const float *xr = row_f32(x, x16, r, H, tmp);
            bf16 *ar = a + r * H;
#pragma omp simd
            for (i64 j = 0; j < H; j++) {
                float v = xr[j] + q[j];
                v = v < lo[j] ? lo[j] : v;
                ar[j] = to_bf16(v > hi[j] ? hi[j] : v);  /* NaN stays NaN, as torch.clamp */
            }
        }
    }
}
