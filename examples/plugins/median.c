/*
 * Median filter over a size x size window, mirrored borders. Config: {"size": 3} (odd, 1 ..= 9).
 * Example of the ldctq denoiser plugin ABI (include/ldctq_denoiser.h).
 */
#include "ldctq_denoiser.h"
#include "plugin_util.h"

typedef struct {
    int64_t size;
} median_state;

static int32_t create(const char *config, void **out, char *err, size_t err_len) {
    double size = 3.0;
    median_state *s;
    if (json_number(config, "size", &size) < 0) return fail(err, err_len, 1, "size must be a number");
    if (!(size >= 1.0 && size <= 9.0) || (int64_t)size != size || ((int64_t)size) % 2 == 0)
        return fail(err, err_len, 1, "size must be an odd integer in 1 ..= 9, got %g", size);
    s = (median_state *)malloc(sizeof *s);
    if (!s) return fail(err, err_len, 2, "out of memory");
    s->size = (int64_t)size;
    *out = s;
    return 0;
}

static int32_t denoise(void *state, const float *in, float *out, int64_t n, int64_t h, int64_t w, char *err,
                       size_t err_len) {
    const median_state *s = (const median_state *)state;
    int64_t r = s->size / 2, i, y, x, dy, dx, a, b, m;
    float win[81];
    (void)err;
    (void)err_len;
    for (i = 0; i < n; i++) {
        const float *src = in + i * h * w;
        float *dst = out + i * h * w;
        for (y = 0; y < h; y++)
            for (x = 0; x < w; x++) {
                m = 0;
                for (dy = -r; dy <= r; dy++)
                    for (dx = -r; dx <= r; dx++) win[m++] = src[mirror(y + dy, h) * w + mirror(x + dx, w)];
                for (a = 1; a < m; a++) { /* insertion sort of at most 81 values */
                    float v = win[a];
                    for (b = a - 1; b >= 0 && win[b] > v; b--) win[b + 1] = win[b];
                    win[b + 1] = v;
                }
                dst[y * w + x] = win[m / 2];
            }
    }
    return 0;
}

static void destroy(void *state) { free(state); }

static const ldctq_denoiser_api API = {
    LDCTQ_DENOISER_ABI_MAJOR, LDCTQ_DENOISER_ABI_MINOR, sizeof(ldctq_denoiser_api), 0,
    "median", "1.0.0", create, denoise, destroy,
};

LDCTQ_DENOISER_EXPORT const ldctq_denoiser_api *ldctq_denoiser_get_api(uint32_t host_abi_major) {
    return host_abi_major == LDCTQ_DENOISER_ABI_MAJOR ? &API : NULL;
}
