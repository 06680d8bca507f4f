/*
 * ops.c - transformer kernels on OpenBLAS.
 *
 * The GEMMs dominate (over 95% of the FLOPs); the element-wise kernels are plain
 * loops that the compiler vectorises. Accumulations that decide numerical parity
 * with the reference (LayerNorm statistics, softmax sums) run in double.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "pool.h"

/* Attention's inner loops are plain C; these clones give them the CPU's vector width. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ATTN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ATTN_CLONES
#endif

void cm_linear(const float *x, int m, int in, const float *w, const float *b, int out, float *y)
{
    float beta = 0.0f;
    if (b) {
        /* Start from the bias and let sgemm accumulate onto it (beta = 1). */
        for (int i = 0; i < m; i++)
            memcpy(y + (size_t)i * out, b, (size_t)out * sizeof *y);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, out, in, 1.0f, x, in, w, in, beta, y,
                out);
}

void cm_linear_acc(const float *x, int m, int in, const float *w, const float *b, int out, float *y)
{
    for (int i = 0; i < m; i++)
        cm_add(y + (size_t)i * out, b, (size_t)out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, out, in, 1.0f, x, in, w, in, 1.0f, y,
                out);
}

void cm_linear_w(const float *x, int m, int in, const float *w, int packed, const float *b, int out,
                 int accumulate, float *y)
{
    if (!packed) {
        if (accumulate)
            cm_linear_acc(x, m, in, w, b, out, y);
        else
            cm_linear(x, m, in, w, b, out, y);
        return;
    }
    const cm_gemm_args g = {
        .x = x, .m = m, .k = in, .n = out, .p = w, .bias = b, .accumulate = accumulate, .y = y};
    cm_gemm_packed(&g);
}

void cm_linear_rows(const float *x, int m, int in, const float *w, int packed, int out, float *y)
{
    if (packed) {
        /* cm_gemm blocks only K and in a fixed order: no row depends on m. */
        cm_linear_w(x, m, in, w, 1, NULL, out, 0, y);
        return;
    }
    for (int i = 0; i < m; i++)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x + (size_t)i * in, 1, 0.0f,
                    y + (size_t)i * out, 1);
}

cm_gemm_act cm_gemm_act_of(cm_act act)
{
    return act == CM_ACT_GELU ? CM_GEMM_ACT_GELU : CM_GEMM_ACT_QUICK_GELU;
}

void cm_linear_act_w(const float *x, int m, int in, const float *w, int packed, const float *b,
                     int out, cm_act act, float *y)
{
    if (!packed) {
        cm_linear(x, m, in, w, b, out, y);
        cm_activate(y, (size_t)m * out, act);
        return;
    }
    /* Fused: the activation runs on the tile in registers before its only store. */
    const cm_gemm_args g = {
        .x = x, .m = m, .k = in, .n = out, .p = w, .bias = b, .act = cm_gemm_act_of(act), .y = y};
    cm_gemm_packed(&g);
}

static void layernorm_rows(const float *x, int i0, int i1, int d, const float *g, const float *b,
                           float eps, float *y)
{
    for (int i = i0; i < i1; i++) {
        const float *xr = x + (size_t)i * d;
        float *yr = y + (size_t)i * d;
        double sum = 0.0, sq = 0.0;
        for (int j = 0; j < d; j++)
            sum += xr[j];
        const double mean = sum / d;
        for (int j = 0; j < d; j++) {
            const double c = xr[j] - mean;
            sq += c * c;
        }
        const float inv = (float)(1.0 / sqrt(sq / d + eps));
        const float fm = (float)mean;
        for (int j = 0; j < d; j++)
            yr[j] = (xr[j] - fm) * inv * g[j] + b[j];
    }
}

typedef struct ln_job {
    const float *x, *g, *b;
    int m, d, tasks;
    float eps;
    float *y;
} ln_job;

static void ln_task(void *ctx, int t)
{
    const ln_job *j = ctx;
    layernorm_rows(j->x, j->m * t / j->tasks, j->m * (t + 1) / j->tasks, j->d, j->g, j->b, j->eps,
                   j->y);
}

/* Rows are independent: split them over the pool (the profile had LayerNorm single-threaded). */
void cm_layernorm(const float *x, int m, int d, const float *g, const float *b, float eps, float *y)
{
    ln_job j = {.x = x, .g = g, .b = b, .m = m, .d = d, .eps = eps, .y = y};
    j.tasks = m >= 16 ? cm_pool_threads() : 1;
    cm_pool_run(ln_task, &j, j.tasks);
}

/*
 * exp(x) for float, within a few ulp over the range that matters, written so the
 * compiler vectorises the loops that call it (libm's expf is a scalar call: it made
 * QuickGELU 7% of a ViT-B/32 forward pass). x = n ln2 + r with |r| <= ln2/2, a
 * degree-6 Taylor polynomial for e^r, and 2^n put into the exponent bits.
 * Below about -87 the result is a tiny positive number instead of a subnormal or 0,
 * which no caller can tell apart. The exponent is clamped, not x: clamping x to a
 * constant let GCC specialise a path that divided by exp(88) and produced
 * subnormals in every lane, which x86 computes 10x slower.
 */
static inline float exp_fast(float x)
{
    const float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-6f;
    const float round = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float t = x * log2e;
    t = t < 127.0f ? t : 127.0f;
    t = t > -126.0f ? t : -126.0f;
    const float n = (t + round) - round;
    const float r = (x - n * ln2_hi) - n * ln2_lo;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/*
 * erf(x) within 1.5e-7 (Abramowitz & Stegun 7.1.26), vectorisable like exp_fast:
 * libm's erff is a scalar call that made exact-GELU models (LAION ViT-B/32) spend
 * about 8 ms per image in activations.
 */
static inline float erf_fast(float x)
{
    const float ax = x < 0.0f ? -x : x;
    const float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float y = 1.0f - p * t * exp_fast(-ax * ax);
    return x < 0.0f ? -y : y;
}

static void activate_range(float *x, size_t n, cm_act act)
{
    if (act == CM_ACT_QUICK_GELU) {
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] / (1.0f + exp_fast(-1.702f * x[i]));
    } else {
        for (size_t i = 0; i < n; i++)
            x[i] = 0.5f * x[i] * (1.0f + erf_fast(x[i] * (float)M_SQRT1_2));
    }
}

void cm_gemm_act_scalar(float *x, int n, cm_gemm_act act)
{
    if (act != CM_GEMM_ACT_NONE)
        activate_range(x, (size_t)n, act == CM_GEMM_ACT_GELU ? CM_ACT_GELU : CM_ACT_QUICK_GELU);
}

typedef struct act_job {
    float *x;
    size_t n;
    cm_act act;
    int tasks;
} act_job;

static void act_task(void *ctx, int t)
{
    const act_job *j = ctx;
    const size_t a = j->n * (size_t)t / (size_t)j->tasks,
                 e = j->n * (size_t)(t + 1) / (size_t)j->tasks;
    activate_range(j->x + a, e - a, j->act);
}

/* Element-wise, so split evenly over the pool once there is enough to share. */
void cm_activate(float *x, size_t n, cm_act act)
{
    act_job j = {.x = x, .n = n, .act = act};
    j.tasks = n >= 32768 ? cm_pool_threads() : 1;
    cm_pool_run(act_task, &j, j.tasks);
}

void cm_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* n rounded up to whole 16-float vectors. */
static int pad16(int n)
{
    return (n + 15) / 16 * 16;
}

size_t cm_attention_scratch_floats(int max_len, int d, int heads)
{
    const int hd = d / heads;
    /* K^T and one score row here; the OpenBLAS reference path needs t * t scores;
       the AVX-512 path K^T padded to whole vectors and a block of score rows. */
    const size_t plain = (size_t)(max_len > hd + 1 ? max_len : hd + 1) * max_len;
    const size_t padded = (size_t)(hd + CM_ATTN_ROWS) * pad16(max_len);
    return plain > padded ? plain : padded;
}

/*
 * exp of s[0..n) - max, normalised; the sum runs in double for parity. Inlined into
 * attend_row's clones, so the max, exp and scale loops get their vector width (as a
 * separate SSE2 function it was 6.6% of a forward pass).
 */
__attribute__((always_inline)) static inline void softmax_row(float *s, int n)
{
    float mx = s[0];
    for (int j = 1; j < n; j++)
        mx = s[j] > mx ? s[j] : mx;
    for (int j = 0; j < n; j++)
        s[j] = exp_fast(s[j] - mx);
    double sum = 0.0;
    for (int j = 0; j < n; j++)
        sum += s[j];
    const float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++)
        s[j] *= inv;
}

/*
 * Query row i of one head: o = softmax(q_i . K^T * scale) . V, with kt = K^T [hd, t]
 * so the scores are contiguous axpys over keys and the output an axpy over v rows:
 * both inner loops vectorise (OpenBLAS per head cost 2 sgemm calls of 50x50x64,
 * 2,304 per batch-8 pass, mostly call and copy overhead).
 */
ATTN_CLONES static void attend_row(const float *qi, const float *kt, const float *v, int t, int n,
                                   int hd, int ld, float scale, float *s, float *o)
{
    for (int j = 0; j < n; j++)
        s[j] = 0.0f;
    for (int c = 0; c < hd; c++) {
        const float a = qi[c] * scale;
        const float *kr = kt + (size_t)c * t;
        for (int j = 0; j < n; j++)
            s[j] += a * kr[j];
    }
    softmax_row(s, n);
    for (int c = 0; c < hd; c++)
        o[c] = 0.0f;
    for (int j = 0; j < n; j++) {
        const float p = s[j];
        const float *vr = v + (size_t)j * ld;
        for (int c = 0; c < hd; c++)
            o[c] += p * vr[c];
    }
}

/*
 * The reference path (CLIPMOD_GEMM=openblas): scores = q k^T * scale, softmax,
 * out = scores v, as two cblas_sgemm calls per head.
 */
static void attention_head_blas(const float *qkv, int t, int d, int heads, int h, int causal,
                                int q0, int q1, float *scores, float *out)
{
    const int hd = d / heads, ld = 3 * d, nq = q1 - q0;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *q = qkv + (size_t)q0 * ld + h * hd, *k = qkv + d + h * hd,
                *v = qkv + 2 * d + h * hd;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, t, hd, scale, q, ld, k, ld, 0.0f,
                scores, t);
    for (int i = q0; i < q1; i++) {
        float *row = scores + (size_t)(i - q0) * t;
        const int n = causal ? i + 1 : t;
        softmax_row(row, n);
        for (int j = n; j < t; j++)
            row[j] = 0.0f; /* masked keys: exp(-inf) */
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, t, 1.0f, scores, t, v, ld, 0.0f,
                out + h * hd, d);
}

/* attention_head on AVX-512: K^T padded with zero columns to whole vectors. */
static void attention_head_avx512(const float *qkv, int t, int d, int heads, int h, int causal,
                                  int q0, int q1, float *scratch, float *out)
{
    const int hd = d / heads, ld = 3 * d, tp = pad16(t);
    const float *k = qkv + d + h * hd;
    float *kt = scratch;
    for (int c = 0; c < hd; c++) {
        float *row = kt + (size_t)c * tp;
        for (int j = 0; j < t; j++)
            row[j] = k[(size_t)j * ld + c];
        for (int j = t; j < tp; j++)
            row[j] = 0.0f;
    }
    const cm_attn_rows a = {.q = qkv + h * hd,
                            .kt = kt,
                            .v = qkv + 2 * d + h * hd,
                            .s = scratch + (size_t)hd * tp,
                            .out = out + h * hd,
                            .ld = ld,
                            .ldo = d,
                            .t = t,
                            .tp = tp,
                            .hd = hd,
                            .causal = causal,
                            .q0 = q0,
                            .q1 = q1,
                            .scale = 1.0f / sqrtf((float)hd)};
    cm_attend_rows_avx512(&a);
}

/*
 * Head h of one sequence of t tokens. Queries are rows q0..q1-1; query row i's
 * output goes to out + (i - q0) * d (so a caller can ask for one row only).
 * `scratch`: cm_attention_scratch_floats(t, d, heads) floats.
 */
static void attention_head(const float *qkv, int t, int d, int heads, int h, int causal, int q0,
                           int q1, float *scratch, float *out)
{
    if (cm_gemm_isa_active() == CM_GEMM_OPENBLAS) {
        attention_head_blas(qkv, t, d, heads, h, causal, q0, q1, scratch, out);
        return;
    }
    const int hd = d / heads, ld = 3 * d;
    if (cm_gemm_isa_active() == CM_GEMM_AVX512 && hd % 16 == 0) {
        attention_head_avx512(qkv, t, d, heads, h, causal, q0, q1, scratch, out);
        return;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    const float *q = qkv + h * hd, *k = qkv + d + h * hd, *v = qkv + 2 * d + h * hd;
    float *kt = scratch, *s = scratch + (size_t)hd * t;
    for (int j = 0; j < t; j++)
        for (int c = 0; c < hd; c++)
            kt[(size_t)c * t + j] = k[(size_t)j * ld + c];
    for (int i = q0; i < q1; i++)
        attend_row(q + (size_t)i * ld, kt, v, t, causal ? i + 1 : t, hd, ld, scale, s,
                   out + (size_t)(i - q0) * d + h * hd);
}

void cm_attention(const float *qkv, int t, int d, int heads, int causal, float *scratch, float *out)
{
    for (int h = 0; h < heads; h++)
        attention_head(qkv, t, d, heads, h, causal, 0, t, scratch, out);
}

typedef struct attn_job {
    const float *qkv;
    const int *start, *len, *qrow;
    int count, max_len, d, heads, causal;
    float *scratch, *out;
} attn_job;

/* Task = (sequence, head), each with its own scratch slice. */
static void attn_task(void *ctx, int task)
{
    const attn_job *j = ctx;
    const int sq = task / j->heads, h = task % j->heads;
    float *scratch =
        j->scratch + (size_t)task * cm_attention_scratch_floats(j->max_len, j->d, j->heads);
    const float *qkv = j->qkv + (size_t)j->start[sq] * 3 * j->d;
    if (j->qrow) {
        attention_head(qkv, j->len[sq], j->d, j->heads, h, j->causal, j->qrow[sq], j->qrow[sq] + 1,
                       scratch, j->out + (size_t)sq * j->d);
        return;
    }
    attention_head(qkv, j->len[sq], j->d, j->heads, h, j->causal, 0, j->len[sq], scratch,
                   j->out + (size_t)j->start[sq] * j->d);
}

void cm_attention_seqs(const float *qkv, const int *start, const int *len, const int *qrow,
                       int count, int max_len, int d, int heads, int causal, float *scratch,
                       float *out)
{
    attn_job j = {.qkv = qkv,
                  .start = start,
                  .len = len,
                  .qrow = qrow,
                  .count = count,
                  .max_len = max_len,
                  .d = d,
                  .heads = heads,
                  .causal = causal,
                  .scratch = scratch,
                  .out = out};
    cm_pool_run(attn_task, &j, count * heads);
}

void cm_l2_normalize(float *x, int m, int d)
{
    for (int i = 0; i < m; i++) {
        float *r = x + (size_t)i * d;
        double sq = 0.0;
        for (int j = 0; j < d; j++)
            sq += (double)r[j] * r[j];
        const float inv = sq > 0 ? (float)(1.0 / sqrt(sq)) : 0.0f;
        for (int j = 0; j < d; j++)
            r[j] *= inv;
    }
}
