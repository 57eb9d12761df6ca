/*
 * ldctq_denoiser.h: the C plugin ABI of `ldctq bench` denoisers (ABI 1.0).
 *
 * A plugin is a shared library (.so / .dylib / .dll) that exports ONE symbol,
 * `ldctq_denoiser_get_api`, returning a pointer to a static, versioned table of
 * functions. Build one with e.g.
 *
 *     cc -std=c99 -shared -fPIC -O2 -I include my_denoiser.c -o libmy_denoiser.so
 *
 * and benchmark it with `ldctq bench --denoiser ./libmy_denoiser.so:'{"sigma": 1.2}' ...`.
 *
 * Images
 *   Denoisers see float32 images in [0, 1]: the LDCTIQA2023 space, i.e. HU mapped
 *   through the window center -300 / width 1400 ([-1000, 400] HU -> [0, 1]).
 *   A batch is N x 1 x H x W, contiguous, row-major (C order), host memory:
 *   pixel (i, y, x) of image i is at index  i*H*W + y*W + x.
 *   The output buffer has exactly the same shape, is allocated by the host and
 *   must be completely written by the plugin (every one of N*H*W values). Values
 *   should stay in [0, 1]; NaN or infinite values are an error. The input must
 *   not be modified. N, H and W may change from call to call.
 *
 * Errors
 *   Every function returning int32_t returns 0 on success and a nonzero,
 *   plugin-defined code on failure; on failure it writes a NUL-terminated UTF-8
 *   message into `err` (at most `err_len` bytes including the NUL; the host
 *   passes err_len >= 256). C++ exceptions, longjmp and the like must not escape
 *   any function of the table. A plugin must not call exit() or abort().
 *   `ldctq bench` runs each plugin state in its own worker process (unless
 *   told --in-process-plugins), so even a crash is reported as that plugin's
 *   failure and the other denoisers go on; what a plugin prints to stdout
 *   goes to stderr there.
 *
 * Lifetime and threads
 *   The host checks abi_major and struct_size before calling anything else.
 *   `create` may be called several times (one state per configuration); each
 *   state is released by one `destroy`. A state is used by one thread at a time
 *   (not always the same one); different states may be used concurrently.
 *   The library is loaded with RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE and never
 *   unloaded, so thread-local storage and static data stay valid for the life
 *   of the process; the same file loaded twice is the same library.
 *
 * Versioning
 *   A change of ABI major is incompatible; the host refuses a table whose
 *   abi_major differs from its own. Minor versions only append fields at the end
 *   of the table; struct_size (sizeof the table as the plugin was compiled) tells
 *   the host which fields exist.
 *
 * This header is C99 (clean under -std=c99 -pedantic -Wall -Wextra) and C++.
 */
#ifndef LDCTQ_DENOISER_H
#define LDCTQ_DENOISER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LDCTQ_DENOISER_ABI_MAJOR 1
#define LDCTQ_DENOISER_ABI_MINOR 0

/* The name of the one exported entry point. */
#define LDCTQ_DENOISER_ENTRY "ldctq_denoiser_get_api"

#if defined(_WIN32)
#define LDCTQ_DENOISER_EXPORT __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define LDCTQ_DENOISER_EXPORT __attribute__((visibility("default")))
#else
#define LDCTQ_DENOISER_EXPORT
#endif

/* The function table (ABI 1.0). Fill every field; keep it static. */
typedef struct ldctq_denoiser_api {
    uint32_t abi_major;   /* LDCTQ_DENOISER_ABI_MAJOR */
    uint32_t abi_minor;   /* LDCTQ_DENOISER_ABI_MINOR */
    uint32_t struct_size; /* sizeof(ldctq_denoiser_api) */
    uint32_t reserved;    /* 0 */
    const char *name;     /* static, UTF-8, non-empty, e.g. "gaussian" */
    const char *version;  /* static, UTF-8, e.g. "1.0.0" */

    /* Parses `config_json` (a JSON object, "{}" when the user gave none; never
     * NULL) and stores a new state in *out_state (may be NULL if the plugin needs
     * none). Returns 0, or nonzero with a message in err. */
    int32_t (*create)(const char *config_json, void **out_state, char *err, size_t err_len);

    /* Denoises n images of h x w: reads n*h*w floats from `input`, writes n*h*w
     * floats to `output` (see "Images" above). Returns 0, or nonzero with a
     * message in err. */
    int32_t (*denoise)(void *state, const float *input, float *output, int64_t n, int64_t h, int64_t w,
                       char *err, size_t err_len);

    /* Releases a state made by create (called once per state; NULL-safe). */
    void (*destroy)(void *state);

    /* ABI 1.x minor versions append fields here. */
} ldctq_denoiser_api;

/* The entry point's type. `host_abi_major` is the host's LDCTQ_DENOISER_ABI_MAJOR;
 * return NULL if the plugin cannot serve it. */
typedef const ldctq_denoiser_api *(*ldctq_denoiser_get_api_fn)(uint32_t host_abi_major);

/* Every plugin defines this one function. */
LDCTQ_DENOISER_EXPORT const ldctq_denoiser_api *ldctq_denoiser_get_api(uint32_t host_abi_major);

#ifdef __cplusplus
}
#endif

#endif /* LDCTQ_DENOISER_H */
