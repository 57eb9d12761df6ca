/*
 * A plugin that crashes or hangs, for the tests of the isolated plugin host: {"how": "segv" | "abort" |
 * "exit" | "hang"} in {"in": "denoise" | "create"} (default denoise) after "after" good calls (default 0). Every call
 * prints to stdout and stderr first, which must not disturb the host. {"how": "none"} copies its input.
 */
#include <stdio.h>

#include "ldctq_denoiser.h"
#include "plugin_util.h"

typedef struct {
    char how[16];
    long calls;
    long after;
} crash_state;

static void crash(const char *how) {
    printf("crash plugin: about to %s\n", how);
    fflush(stdout);
    if (strcmp(how, "segv") == 0) {
        /* A real invalid write (raise(SIGSEGV) would meet the host's handlers and return). */
        volatile int *volatile nowhere = NULL;
        *nowhere = 1;
    }
    if (strcmp(how, "abort") == 0) abort();
    if (strcmp(how, "exit") == 0) exit(3);
    if (strcmp(how, "hang") == 0) {
        volatile unsigned long spin = 0;
        for (;;) spin++;
    }
}

static int32_t create(const char *config, void **out, char *err, size_t err_len) {
    char where[16] = "denoise";
    double after = 0.0;
    crash_state *s = (crash_state *)calloc(1, sizeof *s);
    if (!s) return fail(err, err_len, 2, "out of memory");
    strcpy(s->how, "segv");
    if (json_string(config, "how", s->how, sizeof s->how) < 0 || json_string(config, "in", where, sizeof where) < 0) {
        free(s);
        return fail(err, err_len, 1, "bad how or in");
    }
    json_number(config, "after", &after);
    s->after = (long)after;
    if (strcmp(where, "create") == 0) crash(s->how);
    *out = s;
    return 0;
}

static int32_t denoise(void *state, const float *in, float *out, int64_t n, int64_t h, int64_t w, char *err,
                       size_t err_len) {
    crash_state *s = (crash_state *)state;
    int64_t i;
    (void)err;
    (void)err_len;
    printf("crash plugin: call %ld on stdout\n", s->calls + 1);
    fprintf(stderr, "crash plugin: call %ld on stderr\n", s->calls + 1);
    fflush(stdout);
    if (s->calls++ >= s->after && strcmp(s->how, "none") != 0) crash(s->how);
    for (i = 0; i < n * h * w; i++) out[i] = in[i];
    return 0;
}

static void destroy(void *state) { free(state); }

static const ldctq_denoiser_api API = {
    LDCTQ_DENOISER_ABI_MAJOR, LDCTQ_DENOISER_ABI_MINOR, sizeof(ldctq_denoiser_api), 0,
    "crash", "1.0.0", create, denoise, destroy,
};

LDCTQ_DENOISER_EXPORT const ldctq_denoiser_api *ldctq_denoiser_get_api(uint32_t host_abi_major) {
    return host_abi_major == LDCTQ_DENOISER_ABI_MAJOR ? &API : NULL;
}
