/*
 * Makes images worse: adds Gaussian noise and clips to [0, 1]. Config: {"sigma": 0.05, "seed": 1}.
 * Deterministic: a state draws from its own generator seeded by "seed", so the same calls give
 * the same output. A negative control for `ldctq bench`.
 */
#include "ldctq_denoiser.h"
#include "plugin_util.h"
#include <math.h>

typedef struct {
    double sigma;
    uint64_t rng;
} noise_state;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *x) { return ((double)(splitmix64(x) >> 11) + 0.5) / 9007199254740992.0; }

static int32_t create(const char *config, void **out, char *err, size_t err_len) {
    double sigma = 0.05, seed = 1.0;
    noise_state *s;
    if (json_number(config, "sigma", &sigma) < 0 || json_number(config, "seed", &seed) < 0)
        return fail(err, err_len, 1, "sigma and seed must be numbers");
    if (!(sigma >= 0.0 && sigma <= 1.0)) return fail(err, err_len, 1, "sigma must be in [0, 1], got %g", sigma);
    s = (noise_state *)malloc(sizeof *s);
    if (!s) return fail(err, err_len, 2, "out of memory");
    s->sigma = sigma;
    s->rng = (uint64_t)seed;
    *out = s;
    return 0;
}

static int32_t denoise(void *state, const float *in, float *out, int64_t n, int64_t h, int64_t w, char *err,
                       size_t err_len) {
    noise_state *s = (noise_state *)state;
    int64_t i, total = n * h * w;
    (void)err;
    (void)err_len;
    for (i = 0; i < total; i++) {
        /* Box-Muller */
        double g = sqrt(-2.0 * log(uniform01(&s->rng))) * cos(6.283185307179586 * uniform01(&s->rng));
        double v = in[i] + s->sigma * g;
        out[i] = (float)(v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v);
    }
    return 0;
}

static void destroy(void *state) { free(state); }

static const ldctq_denoiser_api API = {
    LDCTQ_DENOISER_ABI_MAJOR, LDCTQ_DENOISER_ABI_MINOR, sizeof(ldctq_denoiser_api), 0,
    "add_noise", "1.0.0", create, denoise, destroy,
};

LDCTQ_DENOISER_EXPORT const ldctq_denoiser_api *ldctq_denoiser_get_api(uint32_t host_abi_major) {
    return host_abi_major == LDCTQ_DENOISER_ABI_MAJOR ? &API : NULL;
}
