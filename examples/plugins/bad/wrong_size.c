/* Bad plugin for the host's tests: {"mode": "short"} writes only the first H-1 rows of each image
   (leaving the last row unwritten); {"mode": "long"} writes one image too many (past the end of the
   output buffer; the host keeps a guard zone there and detects it). */
#include "ldctq_denoiser.h"
#include "../plugin_util.h"

static int32_t create(const char *config, void **out, char *err, size_t err_len) {
    int *long_mode;
    char mode[16] = "short";
    if (json_string(config, "mode", mode, sizeof mode) < 0) return fail(err, err_len, 1, "bad mode");
    if (strcmp(mode, "short") != 0 && strcmp(mode, "long") != 0)
        return fail(err, err_len, 1, "mode must be short or long, got %s", mode);
    long_mode = (int *)malloc(sizeof *long_mode);
    if (!long_mode) return fail(err, err_len, 2, "out of memory");
    *long_mode = strcmp(mode, "long") == 0;
    *out = long_mode;
    return 0;
}

static int32_t denoise(void *state, const float *in, float *out, int64_t n, int64_t h, int64_t w, char *err,
                       size_t err_len) {
    int long_mode = *(const int *)state;
    int64_t i, y, x;
    (void)err;
    (void)err_len;
    if (long_mode) {
        for (i = 0; i < n * h * w; i++) out[i] = in[i];
        for (i = 0; i < h * w && i < 1024; i++) out[n * h * w + i] = 0.5f; /* within the host's guard */
    } else {
        for (i = 0; i < n; i++)
            for (y = 0; y + 1 < h; y++)
                for (x = 0; x < w; x++) out[(i * h + y) * w + x] = in[(i * h + y) * w + x];
    }
    return 0;
}

static void destroy(void *state) { free(state); }

static const ldctq_denoiser_api API = {
    LDCTQ_DENOISER_ABI_MAJOR, LDCTQ_DENOISER_ABI_MINOR, sizeof(ldctq_denoiser_api), 0,
    "wrong_size", "1.0.0", create, denoise, destroy,
};

LDCTQ_DENOISER_EXPORT const ldctq_denoiser_api *ldctq_denoiser_get_api(uint32_t host_abi_major) {
    return host_abi_major == LDCTQ_DENOISER_ABI_MAJOR ? &API : NULL;
}
