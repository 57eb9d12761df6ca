/*
 * A plugin that fails cleanly: {"fail_in": "denoise"} (the default) returns an error from denoise
 * (after "after" successful calls, default 0); {"fail_in": "create"} refuses to be created.
 * For the tests of the plugin host: the benchmark must report it and go on with the others.
 */
#include "ldctq_denoiser.h"
#include "plugin_util.h"

typedef struct {
    long calls;
    long after;
} fail_state;

static int32_t create(const char *config, void **out, char *err, size_t err_len) {
    char where[32] = "denoise";
    double after = 0.0;
    fail_state *s;
    if (json_string(config, "fail_in", where, sizeof where) < 0) return fail(err, err_len, 1, "bad fail_in");
    json_number(config, "after", &after);
    if (strcmp(where, "create") == 0) return fail(err, err_len, 42, "refusing to start (fail_in = create)");
    s = (fail_state *)calloc(1, sizeof *s);
    if (!s) return fail(err, err_len, 2, "out of memory");
    s->after = (long)after;
    *out = s;
    return 0;
}

static int32_t denoise(void *state, const float *in, float *out, int64_t n, int64_t h, int64_t w, char *err,
                       size_t err_len) {
    fail_state *s = (fail_state *)state;
    int64_t i;
    if (s->calls >= s->after)
        return fail(err, err_len, 7, "simulated failure on call %ld (%lld x %lld x %lld)", s->calls + 1,
                    (long long)n, (long long)h, (long long)w);
    s->calls++;
    for (i = 0; i < n * h * w; i++) out[i] = in[i];
    return 0;
}

static void destroy(void *state) { free(state); }

static const ldctq_denoiser_api API = {
    LDCTQ_DENOISER_ABI_MAJOR, LDCTQ_DENOISER_ABI_MINOR, sizeof(ldctq_denoiser_api), 0,
    "fail", "1.0.0", create, denoise, destroy,
};

LDCTQ_DENOISER_EXPORT const ldctq_denoiser_api *ldctq_denoiser_get_api(uint32_t host_abi_major) {
    return host_abi_major == LDCTQ_DENOISER_ABI_MAJOR ? &API : NULL;
}
