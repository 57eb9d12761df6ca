/* Bad plugin for the host's tests: copies its input but puts a NaN (or with {"inf": 1}, +Inf) in the
   middle of every image. */
#include "ldctq_denoiser.h"
#include "../plugin_util.h"
#include <math.h>

/* The state says which: NULL for NaN, &INF_TAG for +Inf (per state, not a global). */
static const int INF_TAG = 1;

static int32_t create(const char *config, void **out, char *err, size_t err_len) {
    double inf = 0.0;
    (void)err;
    (void)err_len;
    json_number(config, "inf", &inf);
    *out = inf != 0.0 ? (void *)&INF_TAG : NULL;
    return 0;
}

static int32_t denoise(void *state, const float *in, float *out, int64_t n, int64_t h, int64_t w, char *err,
                       size_t err_len) {
    int64_t i;
    (void)err;
    (void)err_len;
    for (i = 0; i < n * h * w; i++) out[i] = in[i];
    for (i = 0; i < n; i++) out[i * h * w + (h / 2) * w + w / 2] = state ? (float)HUGE_VAL : (float)NAN;
    return 0;
}

static void destroy(void *state) { (void)state; }

static const ldctq_denoiser_api API = {
    LDCTQ_DENOISER_ABI_MAJOR, LDCTQ_DENOISER_ABI_MINOR, sizeof(ldctq_denoiser_api), 0,
    "nan_output", "1.0.0", create, denoise, destroy,
};

LDCTQ_DENOISER_EXPORT const ldctq_denoiser_api *ldctq_denoiser_get_api(uint32_t host_abi_major) {
    return host_abi_major == LDCTQ_DENOISER_ABI_MAJOR ? &API : NULL;
}
