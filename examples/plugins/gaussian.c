/*
 * Gaussian smoothing, separable, mirrored borders. Config: {"sigma": 1.0} (pixels, 0 < sigma <= 20).
 * Example of the ldctq denoiser plugin ABI (include/ldctq_denoiser.h).
 */
#include "ldctq_denoiser.h"
#include "plugin_util.h"
#include <math.h>

typedef struct {
    double sigma;
    int64_t radius;
    float *kernel; /* 2 * radius + 1 taps, summing to 1 */
} gaussian_state;

static int32_t create(const char *config, void **out, char *err, size_t err_len) {
    double sigma = 1.0;
    gaussian_state *s;
    int64_t i;
    double sum = 0.0;
    if (json_number(config, "sigma", &sigma) < 0) return fail(err, err_len, 1, "sigma must be a number");
    if (!(sigma > 0.0 && sigma <= 20.0)) return fail(err, err_len, 1, "sigma must be in (0, 20], got %g", sigma);
    s = (gaussian_state *)malloc(sizeof *s);
    if (!s) return fail(err, err_len, 2, "out of memory");
    s->sigma = sigma;
    s->radius = (int64_t)ceil(3.0 * sigma);
    s->kernel = (float *)malloc(sizeof(float) * (size_t)(2 * s->radius + 1));
    if (!s->kernel) {
        free(s);
        return fail(err, err_len, 2, "out of memory");
    }
    for (i = -s->radius; i <= s->radius; i++) sum += exp(-0.5 * (double)(i * i) / (sigma * sigma));
    for (i = -s->radius; i <= s->radius; i++)
        s->kernel[i + s->radius] = (float)(exp(-0.5 * (double)(i * i) / (sigma * sigma)) / sum);
    *out = s;
    return 0;
}

static int32_t denoise(void *state, const float *in, float *out, int64_t n, int64_t h, int64_t w, char *err,
                       size_t err_len) {
    gaussian_state *s = (gaussian_state *)state;
    int64_t i, y, x, k, r = s->radius;
    float *tmp = (float *)malloc(sizeof(float) * (size_t)(h * w));
    if (!tmp) return fail(err, err_len, 2, "out of memory for a %lld x %lld image", (long long)h, (long long)w);
    for (i = 0; i < n; i++) {
        const float *src = in + i * h * w;
        float *dst = out + i * h * w;
        for (y = 0; y < h; y++) /* rows */
            for (x = 0; x < w; x++) {
                double acc = 0.0;
                for (k = -r; k <= r; k++) acc += s->kernel[k + r] * src[y * w + mirror(x + k, w)];
                tmp[y * w + x] = (float)acc;
            }
        for (y = 0; y < h; y++) /* columns */
            for (x = 0; x < w; x++) {
                double acc = 0.0;
                for (k = -r; k <= r; k++) acc += s->kernel[k + r] * tmp[mirror(y + k, h) * w + x];
                dst[y * w + x] = (float)acc;
            }
    }
    free(tmp);
    return 0;
}

static void destroy(void *state) {
    gaussian_state *s = (gaussian_state *)state;
    if (s) {
        free(s->kernel);
        free(s);
    }
}

static const ldctq_denoiser_api API = {
    LDCTQ_DENOISER_ABI_MAJOR, LDCTQ_DENOISER_ABI_MINOR, sizeof(ldctq_denoiser_api), 0,
    "gaussian", "1.0.0", create, denoise, destroy,
};

LDCTQ_DENOISER_EXPORT const ldctq_denoiser_api *ldctq_denoiser_get_api(uint32_t host_abi_major) {
    return host_abi_major == LDCTQ_DENOISER_ABI_MAJOR ? &API : NULL;
}
