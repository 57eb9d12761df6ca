/*
 * The C ABI as a C caller sees it: every call below goes through the installed ldctq.h, compiled
 * with -Werror and linked to libldctq, so a declaration that drifts from the library fails to
 * compile, link or pass. Status codes, NULL handling, outputs left alone on failure, model info,
 * prompts, DLPack views (strides, byte_offset, dtypes) against the host path, the float64
 * vector-Jacobian product against central differences, activation checkpointing, and threads.
 * Run by scripts/test_ffi.sh (tests/c/bad_input.c adds more bad input, also under valgrind).
 *
 * usage: abi MODEL_DIR SCRATCH_DIR PACKAGE_VERSION
 *   MODEL_DIR: the "unit" test model tests/fixtures/quality/a_unit_seq (16 px, window -300/1400)
 *   SCRATCH_DIR: an existing folder for a corrupt model folder
 *   PACKAGE_VERSION: the version ldctq_version_string() must start with (Cargo.toml's)
 */
#define _POSIX_C_SOURCE 200809L
#include "ldctq.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int passes = 0;
static int failures = 0;
static const char* model_dir;

/* ---- checks --------------------------------------------------------------------------------- */

/* Counts a check; on failure prints `what` (printf format). Main thread only. */
static void check(int ok, const char* what, ...) {
    if (ok) {
        passes++;
        return;
    }
    va_list args;
    va_start(args, what);
    printf("FAIL ");
    vprintf(what, args);
    printf("\n");
    va_end(args);
    failures++;
}

static char last_message[4096];

/* The status must be `want`, with an empty message after success and a message after a failure.
 * Returns the message (a copy, valid until the next expect). */
static const char* expect(ldctq_status got, ldctq_status want, const char* what) {
    snprintf(last_message, sizeof last_message, "%s", ldctq_last_error_message());
    if (got != want) {
        check(0, "%-40s status %d (%s), want %d (%s): %s", what, (int)got, ldctq_status_string(got), (int)want,
              ldctq_status_string(want), last_message);
    } else if (want == LDCTQ_STATUS_OK) {
        check(last_message[0] == '\0', "%-40s message after success: %s", what, last_message);
    } else {
        check(last_message[0] != '\0', "%-40s status %d without a message", what, (int)got);
        printf("ok   %-40s %-20s %s\n", what, ldctq_status_string(got), last_message);
    }
    return last_message;
}

/* ---- helpers -------------------------------------------------------------------------------- */

/* Deterministic pseudo-random pixels in [0.1, 0.9] (malloc'ed). */
static float* pixels(size_t n, uint64_t seed) {
    float* x = malloc(n * sizeof *x);
    uint64_t s = seed * 6364136223846793005u + 1442695040888963407u;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        x[i] = 0.1f + 0.8f * ((float)(s >> 40) / 16777216.0f);
    }
    return x;
}

/* How far a run of the test model in precision `u` (2^-24 float32, 2^-53 float64) may land from
 * the exact value, whatever kernels and threads the CPU runs: tests/common/mod.rs's rounding_tol,
 * 8 u sqrt(k) depth scale, with the model's longest sum k = 128 (a_unit_seq's local head: 4 x 32
 * inputs). Depth: SCORE_DEPTH layers to the scores (resize 2, vision tower 4, prompt and FiLM 5,
 * pooling 1, heads 2, fusion 2, sigmoid 1), twice that for the input gradient. */
enum { SCORE_DEPTH = 17, GRAD_DEPTH = 2 * SCORE_DEPTH };
static double rounding_tol(double u, int depth, double scale) { return 8.0 * u * sqrt(128.0) * depth * scale; }
#define F32_U 0x1p-24
#define F64_U 0x1p-53

static double* to_f64(const float* x, size_t n) {
    double* y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

/* A host DLTensor header over `data` (shape and strides stay the caller's). */
static DLTensor dl(void* data, int32_t ndim, int64_t* shape, int64_t* strides, uint8_t code, uint8_t bits) {
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.device.device_type = kDLCPU;
    t.device.device_id = 0;
    t.ndim = ndim;
    t.dtype.code = code;
    t.dtype.bits = bits;
    t.dtype.lanes = 1;
    t.shape = shape;
    t.strides = strides;
    t.byte_offset = 0;
    return t;
}

static ldctq_model_options default_options(void) {
    ldctq_model_options o;
    memset(&o, 0xab, sizeof o); /* init must overwrite every field */
    ldctq_model_options_init(&o);
    return o;
}

static ldctq_model* open_model(const ldctq_model_options* options, const char* what) {
    ldctq_model* m = NULL;
    expect(ldctq_model_open(model_dir, options, &m), LDCTQ_STATUS_OK, what);
    check(m != NULL, "%s: no handle", what);
    return m;
}

static int write_file(const char* path, const char* data, size_t len) {
    FILE* f = fopen(path, "wb");
    if (!f) return 0;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len;
}

static int all_equal_f32(const float* x, size_t n, float v) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != v) return 0;
    return 1;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void versions_and_status_strings(const char* package_version) {
    check(ldctq_abi_version() == ((uint32_t)LDCTQ_ABI_VERSION_MAJOR << 16 | LDCTQ_ABI_VERSION_MINOR),
          "ldctq_abi_version() %#x, header %d.%d", ldctq_abi_version(), LDCTQ_ABI_VERSION_MAJOR,
          LDCTQ_ABI_VERSION_MINOR);
    const char* v = ldctq_version_string();
    char want[256];
    snprintf(want, sizeof want, "ldctq %s (C ABI %d.%d; tch ", package_version, LDCTQ_ABI_VERSION_MAJOR,
             LDCTQ_ABI_VERSION_MINOR);
    check(v != NULL && strncmp(v, want, strlen(want)) == 0, "version string \"%s\" does not start with \"%s\"",
          v ? v : "(null)", want);
    check(v != NULL && strstr(v, "; libtorch ") != NULL && v[strlen(v) - 1] == ')',
          "version string \"%s\" names no libtorch", v ? v : "(null)");
    printf("%s\n", v);

    struct {
        int code;
        const char* text;
    } strings[] = {{LDCTQ_STATUS_OK, "ok"},
                   {LDCTQ_STATUS_NULL_ARGUMENT, "null argument"},
                   {LDCTQ_STATUS_INVALID_UTF8, "invalid UTF-8"},
                   {LDCTQ_STATUS_PANIC, "internal error (panic)"},
                   {77, "unknown status"},
                   {-1, "unknown status"}};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        const char* got = ldctq_status_string(strings[i].code);
        check(got && strcmp(got, strings[i].text) == 0, "status string of %d: \"%s\", want \"%s\"",
              strings[i].code, got ? got : "(null)", strings[i].text);
    }
    /* Every status the header declares is known to the library. */
    const ldctq_status all[] = {LDCTQ_STATUS_OK,
                                LDCTQ_STATUS_NULL_ARGUMENT,
                                LDCTQ_STATUS_INVALID_ARGUMENT,
                                LDCTQ_STATUS_INVALID_UTF8,
                                LDCTQ_STATUS_UNSUPPORTED_DTYPE,
                                LDCTQ_STATUS_UNSUPPORTED_DEVICE,
                                LDCTQ_STATUS_UNSUPPORTED,
                                LDCTQ_STATUS_SHAPE_MISMATCH,
                                LDCTQ_STATUS_NOT_FOUND,
                                LDCTQ_STATUS_INVALID_MODEL,
                                LDCTQ_STATUS_IO,
                                LDCTQ_STATUS_OUT_OF_MEMORY,
                                LDCTQ_STATUS_BACKEND,
                                LDCTQ_STATUS_PANIC};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        check(strcmp(ldctq_status_string(all[i]), "unknown status") != 0, "status %d unknown to the library",
              (int)all[i]);
    }

    ldctq_model_options o = default_options();
    check(o.struct_size == sizeof(ldctq_model_options), "options.struct_size %u", o.struct_size);
    check(o.device_type == kDLCPU && o.device_id == 0 && o.dtype == LDCTQ_DTYPE_FLOAT32 && o.num_threads == 0 &&
              o.override_film_strength == 0 && o.film_strength == 1.0 && o.prompt == NULL,
          "default options: device %d:%d, dtype %d, threads %d, override %d, s %g", o.device_type, o.device_id,
          o.dtype, o.num_threads, o.override_film_strength, o.film_strength);
    ldctq_model_options_init(NULL); /* ignored */
    ldctq_model_free(NULL);         /* ignored */
    check(ldctq_cuda_device_count() >= 0, "cuda device count %d", ldctq_cuda_device_count());
}

static void null_arguments_and_bad_options(void) {
    ldctq_model* m = NULL;
    expect(ldctq_model_open(NULL, NULL, &m), LDCTQ_STATUS_NULL_ARGUMENT, "open(NULL path)");
    expect(ldctq_model_open(model_dir, NULL, NULL), LDCTQ_STATUS_NULL_ARGUMENT, "open(NULL model_out)");
    ldctq_model_options o = default_options();
    o.struct_size = 8;
    expect(ldctq_model_open(model_dir, &o, &m), LDCTQ_STATUS_INVALID_ARGUMENT, "open: struct_size 8");
    o = default_options();
    o.dtype = 42;
    expect(ldctq_model_open(model_dir, &o, &m), LDCTQ_STATUS_UNSUPPORTED_DTYPE, "open: dtype 42");
    o = default_options();
    o.device_type = kDLOpenCL;
    expect(ldctq_model_open(model_dir, &o, &m), LDCTQ_STATUS_UNSUPPORTED_DEVICE, "open: kDLOpenCL");
    o = default_options();
    o.device_type = kDLCUDA;
    o.device_id = 99;
    expect(ldctq_model_open(model_dir, &o, &m), LDCTQ_STATUS_UNSUPPORTED_DEVICE, "open: cuda:99");
    o = default_options();
    o.override_film_strength = 1;
    o.film_strength = NAN;
    expect(ldctq_model_open(model_dir, &o, &m), LDCTQ_STATUS_INVALID_ARGUMENT, "open: NaN film strength");
    const char bad_path[] = {0x66, (char)0xff, (char)0xfe, 0};
    expect(ldctq_model_open(bad_path, NULL, &m), LDCTQ_STATUS_INVALID_UTF8, "open: non-UTF-8 path");
    expect(ldctq_model_open("/nonexistent/ldctq-model", NULL, &m), LDCTQ_STATUS_NOT_FOUND, "open: missing folder");
    check(m == NULL, "model_out written on failure");

    float* x = pixels(16 * 16, 1);
    double s[1] = {7.0};
    float g[256];
    expect(ldctq_score(NULL, x, 1, 16, 16, s), LDCTQ_STATUS_NULL_ARGUMENT, "score(NULL model)");
    expect(ldctq_score_dlpack(NULL, NULL, 1, s), LDCTQ_STATUS_NULL_ARGUMENT, "score_dlpack(NULL model)");
    ldctq_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    expect(ldctq_model_get_info(NULL, &info), LDCTQ_STATUS_NULL_ARGUMENT, "get_info(NULL model)");
    ldctq_model* h = open_model(NULL, "open");
    expect(ldctq_score(h, NULL, 1, 16, 16, s), LDCTQ_STATUS_NULL_ARGUMENT, "score: NULL images");
    expect(ldctq_score(h, x, 1, 16, 16, NULL), LDCTQ_STATUS_NULL_ARGUMENT, "score: NULL scores_out");
    expect(ldctq_score_grad(h, x, 1, 16, 16, NULL, s, NULL), LDCTQ_STATUS_NULL_ARGUMENT, "score_grad: NULL grad_out");
    expect(ldctq_score_grad(h, x, 1, 16, 16, NULL, NULL, g), LDCTQ_STATUS_OK, "score_grad: NULL scores_out");
    expect(ldctq_set_prompt(h, NULL), LDCTQ_STATUS_NULL_ARGUMENT, "set_prompt: NULL");
    expect(ldctq_model_get_info(h, NULL), LDCTQ_STATUS_NULL_ARGUMENT, "get_info: NULL info_out");
    info.struct_size = 4;
    expect(ldctq_model_get_info(h, &info), LDCTQ_STATUS_INVALID_ARGUMENT, "get_info: struct_size 4");
    check(s[0] == 7.0, "scores_out written on failure");
    ldctq_model_free(h);
    free(x);
}

static void corrupt_model_folder_is_an_invalid_model(const char* scratch) {
    char dir[4096], json_path[4200], head_path[4200];
    snprintf(dir, sizeof dir, "%s/corrupt-abi", scratch);
    check(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s", dir);
    /* The model's ldctq.json with its relative backbone path made absolute. */
    snprintf(json_path, sizeof json_path, "%s/ldctq.json", model_dir);
    char json[8192] = {0};
    FILE* f = fopen(json_path, "rb");
    size_t len = f ? fread(json, 1, sizeof json - 1, f) : 0;
    if (f) fclose(f);
    const char* rel = "\"../../siglip/tiny_a\"";
    char* at = strstr(json, rel);
    char fixed[12288] = {0};
    check(len > 0 && at != NULL, "read %s with a backbone %s", json_path, rel);
    if (at) {
        snprintf(fixed, sizeof fixed, "%.*s\"%s/../../siglip/tiny_a\"%s", (int)(at - json), json, model_dir,
                 at + strlen(rel));
    }
    snprintf(json_path, sizeof json_path, "%s/ldctq.json", dir);
    snprintf(head_path, sizeof head_path, "%s/head.safetensors", dir);
    const char head[] = "\xff\x00\x00\x00\x00\x00\x00\x00{not json";
    check(write_file(json_path, fixed, strlen(fixed)) && write_file(head_path, head, sizeof head - 1),
          "write the corrupt model");
    ldctq_model* m = NULL;
    const char* msg = expect(ldctq_model_open(dir, NULL, &m), LDCTQ_STATUS_INVALID_MODEL, "open: corrupt safetensors");
    check(strstr(msg, "head.safetensors") != NULL, "message names head.safetensors: %s", msg);
    check(write_file(json_path, "{", 1), "write a bad ldctq.json");
    expect(ldctq_model_open(dir, NULL, &m), LDCTQ_STATUS_INVALID_MODEL, "open: bad ldctq.json");
    check(m == NULL, "model_out written on failure");
    remove(json_path);
    remove(head_path);
    rmdir(dir);
}

static void info_prompt_and_film_strength(void) {
    ldctq_model* h = open_model(NULL, "open");
    ldctq_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    expect(ldctq_model_get_info(h, &info), LDCTQ_STATUS_OK, "get_info");
    check(info.struct_size == sizeof info && info.input_space == LDCTQ_INPUT_SPACE_UNIT && info.image_size == 16 &&
              info.higher_is_better == 1,
          "info: struct_size %u, space %d, size %lld, higher %d", info.struct_size, info.input_space,
          (long long)info.image_size, info.higher_is_better);
    check(info.score_min == 0.0 && info.score_max == 4.0 && info.device_type == kDLCPU && info.device_id == 0 &&
              info.dtype == LDCTQ_DTYPE_FLOAT32,
          "info: scores %g..%g, device %d:%d, dtype %d", info.score_min, info.score_max, info.device_type,
          info.device_id, info.dtype);
    check(info.window_center == -300.0 && info.window_width == 1400.0 && info.film_strength == 1.0,
          "info: window %g/%g, film strength %g", info.window_center, info.window_width, info.film_strength);

    float* x = pixels(2 * 20 * 24, 3);
    double before[2], after[2], again[2];
    expect(ldctq_score(h, x, 2, 20, 24, before), LDCTQ_STATUS_OK, "score");
    const char bad[] = {'a', (char)0xc3, 0x28, 0};
    expect(ldctq_set_prompt(h, bad), LDCTQ_STATUS_INVALID_UTF8, "set_prompt: invalid UTF-8");
    const char* prompt = "A sharp abdominal CT slice.";
    expect(ldctq_set_prompt(h, prompt), LDCTQ_STATUS_OK, "set_prompt");
    expect(ldctq_set_anatomy(NULL, "head"), LDCTQ_STATUS_NULL_ARGUMENT, "set_anatomy: NULL model");
    const char* why = expect(ldctq_set_anatomy(h, "head"), LDCTQ_STATUS_INVALID_ARGUMENT, "set_anatomy: unknown");
    check(strstr(why, "no anatomy prompts") != NULL, "set_anatomy message: %s", why);
    expect(ldctq_set_anatomy(h, NULL), LDCTQ_STATUS_OK, "set_anatomy: NULL clears");
    expect(ldctq_score(h, x, 2, 20, 24, after), LDCTQ_STATUS_OK, "score after the prompt");
    check(before[0] != after[0] || before[1] != after[1], "the prompt changes the score at film strength 1");
    expect(ldctq_set_film_strength(h, INFINITY), LDCTQ_STATUS_INVALID_ARGUMENT, "set_film_strength: Inf");
    expect(ldctq_set_film_strength(h, 0.0), LDCTQ_STATUS_OK, "set_film_strength: 0");
    expect(ldctq_model_get_info(h, &info), LDCTQ_STATUS_OK, "get_info");
    check(info.film_strength == 0.0, "film strength %g after setting 0", info.film_strength);

    /* The same prompt given as an option at open time gives the same scores. */
    ldctq_model_options o = default_options();
    o.prompt = prompt;
    ldctq_model* h2 = open_model(&o, "open with a prompt option");
    expect(ldctq_score(h2, x, 2, 20, 24, again), LDCTQ_STATUS_OK, "score, prompt option");
    check(again[0] == after[0] && again[1] == after[1], "prompt option: %.9g %.9g vs %.9g %.9g", again[0], again[1],
          after[0], after[1]);
    ldctq_model_free(h2);
    ldctq_model_free(h);
    free(x);
}

static void bad_images_return_statuses_and_leave_outputs_alone(void) {
    ldctq_model* h = open_model(NULL, "open");
    const size_t n = 2, px = 16 * 16;
    float* x = pixels(n * px, 5);
    double s[2] = {7.0, 7.0};
    expect(ldctq_score(h, x, 0, 16, 16, s), LDCTQ_STATUS_INVALID_ARGUMENT, "score: n = 0");
    expect(ldctq_score(h, x, 1, 0, 16, s), LDCTQ_STATUS_INVALID_ARGUMENT, "score: h = 0");
    expect(ldctq_score(h, x, SIZE_MAX / 2, 16, 16, s), LDCTQ_STATUS_INVALID_ARGUMENT, "score: n * h * w overflows");
    expect(ldctq_score(h, x, (size_t)1 << 21, (size_t)1 << 21, (size_t)1 << 21, s), LDCTQ_STATUS_INVALID_ARGUMENT,
           "score: n * h * w = 2^63");
    x[17] = NAN;
    const char* msg = expect(ldctq_score(h, x, n, 16, 16, s), LDCTQ_STATUS_INVALID_ARGUMENT, "score: NaN pixel");
    check(strstr(msg, "NaN") != NULL, "message names the NaN: %s", msg);
    x[17] = INFINITY;
    expect(ldctq_score(h, x, n, 16, 16, s), LDCTQ_STATUS_INVALID_ARGUMENT, "score: Inf pixel");
    x[17] = 0.5f;
    const double u[2] = {1.0, NAN};
    float* g = malloc(n * px * sizeof *g);
    for (size_t i = 0; i < n * px; i++) g[i] = 5.0f;
    expect(ldctq_score_grad(h, x, n, 16, 16, u, s, g), LDCTQ_STATUS_INVALID_ARGUMENT, "score_grad: NaN upstream");
    check(s[0] == 7.0 && s[1] == 7.0, "scores_out written on failure");
    check(all_equal_f32(g, n * px, 5.0f), "grad_out written on failure");

    /* DLPack headers. */
    int64_t shape[3] = {2, 16, 16};
    DLTensor t = dl(x, 3, shape, NULL, kDLInt, 32);
    expect(ldctq_score_dlpack(h, &t, n, s), LDCTQ_STATUS_UNSUPPORTED_DTYPE, "dlpack: int32");
    t.dtype.code = kDLFloat;
    t.dtype.lanes = 4;
    expect(ldctq_score_dlpack(h, &t, n, s), LDCTQ_STATUS_UNSUPPORTED_DTYPE, "dlpack: float32x4");
    t.dtype.lanes = 1;
    t.device.device_type = kDLOpenCL;
    expect(ldctq_score_dlpack(h, &t, n, s), LDCTQ_STATUS_UNSUPPORTED_DEVICE, "dlpack: kDLOpenCL");
    t.device.device_type = kDLCUDA;
    t.device.device_id = 99;
    expect(ldctq_score_dlpack(h, &t, n, s), LDCTQ_STATUS_UNSUPPORTED_DEVICE, "dlpack: kDLCUDA 99");
    t.device.device_type = kDLCPU;
    t.device.device_id = 0;
    expect(ldctq_score_dlpack(h, &t, 3, s), LDCTQ_STATUS_SHAPE_MISMATCH, "dlpack: n != N");
    t.ndim = 2;
    expect(ldctq_score_dlpack(h, &t, n, s), LDCTQ_STATUS_SHAPE_MISMATCH, "dlpack: ndim 2");
    t.ndim = 3;
    t.shape = NULL;
    expect(ldctq_score_dlpack(h, &t, n, s), LDCTQ_STATUS_NULL_ARGUMENT, "dlpack: NULL shape");
    t.shape = shape;
    t.data = NULL;
    expect(ldctq_score_dlpack(h, &t, n, s), LDCTQ_STATUS_NULL_ARGUMENT, "dlpack: NULL data");
    t.data = x;
    int64_t negative[3] = {256, -16, 1};
    t.strides = negative;
    expect(ldctq_score_dlpack(h, &t, n, s), LDCTQ_STATUS_INVALID_ARGUMENT, "dlpack: negative stride");
    int64_t huge[3] = {INT64_MAX / 2, 16, 1};
    t.strides = huge;
    expect(ldctq_score_dlpack(h, &t, n, s), LDCTQ_STATUS_INVALID_ARGUMENT, "dlpack: stride overflow");
    t.strides = NULL;
    int64_t wrong_shape[3] = {2, 16, 15};
    DLTensor gt = dl(g, 3, wrong_shape, NULL, kDLFloat, 32);
    expect(ldctq_score_grad_dlpack(h, &t, NULL, n, s, &gt), LDCTQ_STATUS_SHAPE_MISMATCH, "dlpack: grad_out shape");
    int64_t gshape[3] = {2, 16, 16};
    int64_t overlapping[3] = {0, 16, 1};
    gt = dl(g, 3, gshape, overlapping, kDLFloat, 32);
    expect(ldctq_score_grad_dlpack(h, &t, NULL, n, s, &gt), LDCTQ_STATUS_INVALID_ARGUMENT,
           "dlpack: overlapping grad_out");
    check(s[0] == 7.0 && s[1] == 7.0, "scores_out written on failure");
    check(all_equal_f32(g, n * px, 5.0f), "grad_out written on failure");
    ldctq_model_free(h);
    free(g);
    free(x);
}

static void dlpack_views_agree_with_the_host_path(void) {
    ldctq_model* h = open_model(NULL, "open");
    enum { N = 3, H = 20, W = 24, PAD = 5 };
    const size_t count = N * H * W;
    float* x = pixels(count, 9);
    double host[N], s[N];
    expect(ldctq_score(h, x, N, H, W, host), LDCTQ_STATUS_OK, "score (host)");

    /* Contiguous float32, N x 1 x H x W: the same numbers. */
    int64_t shape4[4] = {N, 1, H, W};
    DLTensor t = dl(x, 4, shape4, NULL, kDLFloat, 32);
    expect(ldctq_score_dlpack(h, &t, N, s), LDCTQ_STATUS_OK, "dlpack N x 1 x H x W");
    check(memcmp(s, host, sizeof s) == 0, "N x 1 x H x W scores differ from the host path");

    /* Transposed storage (W, H, N order in memory) after PAD floats: a strided view, byte_offset. */
    float* xt = malloc((PAD + count) * sizeof *xt);
    for (size_t i = 0; i < PAD; i++) xt[i] = -1.0f;
    for (size_t i = 0; i < N; i++)
        for (size_t r = 0; r < H; r++)
            for (size_t c = 0; c < W; c++) xt[PAD + c * H * N + r * N + i] = x[i * H * W + r * W + c];
    int64_t shape[3] = {N, H, W};
    int64_t strides[3] = {1, N, H * N};
    t = dl(xt, 3, shape, strides, kDLFloat, 32);
    t.byte_offset = PAD * sizeof(float);
    expect(ldctq_score_dlpack(h, &t, N, s), LDCTQ_STATUS_OK, "dlpack strided + byte_offset");
    /* The library copies the view into a contiguous float32 tensor and runs the host path's ops on
     * the same values and shapes: the same kernels, so equal scores on any CPU (memcmp above for the
     * contiguous view); 1e-6 is 8 float32 ulps of a score below 4. */
    for (size_t i = 0; i < N; i++) check(fabs(s[i] - host[i]) < 1e-6, "strided %zu: %.9g vs %.9g", i, s[i], host[i]);

    /* float64, and bfloat16 (truncated float32 bits). */
    double* x64 = to_f64(x, count);
    t = dl(x64, 3, shape, NULL, kDLFloat, 64);
    expect(ldctq_score_dlpack(h, &t, N, s), LDCTQ_STATUS_OK, "dlpack float64");
    /* float32 values held in float64: converted back exactly, then the host path's ops (as above). */
    for (size_t i = 0; i < N; i++) check(fabs(s[i] - host[i]) < 1e-6, "float64 %zu: %.9g vs %.9g", i, s[i], host[i]);

    float* g = malloc(count * sizeof *g);
    expect(ldctq_score_grad(h, x, N, H, W, NULL, s, g), LDCTQ_STATUS_OK, "score_grad (host)");
    check(memcmp(s, host, sizeof s) == 0, "score_grad scores differ from score's");

    /* bfloat16: float32 bits truncated, each pixel off by less than 2^-7 of itself. To first order
     * the score moves by at most sum_k |g_k x_k| 2^-7 (g: the float32 gradient); twice that covers
     * the second order and the float32 runs' own rounding. */
    uint16_t* x16 = malloc(count * sizeof *x16);
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        x16[i] = (uint16_t)(bits >> 16);
    }
    t = dl(x16, 3, shape, NULL, kDLBfloat, 16);
    expect(ldctq_score_dlpack(h, &t, N, s), LDCTQ_STATUS_OK, "dlpack bfloat16");
    for (size_t i = 0; i < N; i++) {
        double bound = 0;
        for (size_t k = i * H * W; k < (i + 1) * H * W; k++) bound += fabs((double)g[k] * x[k]) * 0x1p-7;
        bound = 2 * bound + 2 * rounding_tol(F32_U, SCORE_DEPTH, 4.0);
        check(fabs(s[i] - host[i]) < bound, "bfloat16 %zu: %.9g vs %.9g (bound %.2g)", i, s[i], host[i], bound);
    }

    /* The gradient into a strided float64 grad_out equals the host float32 gradient: the same ops on
     * the same values (as the scores above), written to float64 exactly. */
    double* gt_buf = calloc(count, sizeof *gt_buf);
    int64_t gshape[3] = {N, H, W};
    int64_t gstrides[3] = {1, N, H * N};
    DLTensor gt = dl(gt_buf, 3, gshape, gstrides, kDLFloat, 64);
    t = dl(x, 3, shape, NULL, kDLFloat, 32);
    expect(ldctq_score_grad_dlpack(h, &t, NULL, N, NULL, &gt), LDCTQ_STATUS_OK, "dlpack grad into strided float64");
    int bad = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t r = 0; r < H; r++)
            for (size_t c = 0; c < W; c++) {
                const double want = g[i * H * W + r * W + c], got = gt_buf[c * H * N + r * N + i];
                bad += fabs(got - want) > 1e-6 * (1.0 + fabs(want));
            }
    check(bad == 0, "%d gradient values of the strided float64 grad_out differ from the host gradient", bad);
    ldctq_model_free(h);
    free(gt_buf);
    free(g);
    free(x16);
    free(x64);
    free(xt);
    free(x);
}

/* sum_i u[i] * score_i of float64 images (the objective whose gradient the VJP is). */
static double objective(ldctq_model* h, double* x, int64_t* shape, const double* u) {
    DLTensor t = dl(x, 3, shape, NULL, kDLFloat, 64);
    double s[2];
    check(ldctq_score_dlpack(h, &t, 2, s) == LDCTQ_STATUS_OK, "objective: %s", ldctq_last_error_message());
    return s[0] * u[0] + s[1] * u[1];
}

static void gradient_is_a_vjp_matching_central_differences_in_f64(void) {
    ldctq_model_options o = default_options();
    o.dtype = LDCTQ_DTYPE_FLOAT64;
    ldctq_model* h = open_model(&o, "open float64");
    enum { N = 2, H = 12, W = 20 };
    const size_t count = N * H * W;
    float* x32 = pixels(count, 11);
    double* x = to_f64(x32, count);
    int64_t shape[3] = {N, H, W}, gshape[3] = {N, H, W};
    const double u[N] = {0.7, -1.3};
    double* g = calloc(count, sizeof *g);
    double s[N];
    DLTensor t = dl(x, 3, shape, NULL, kDLFloat, 64);
    DLTensor gt = dl(g, 3, gshape, NULL, kDLFloat, 64);
    expect(ldctq_score_grad_dlpack(h, &t, u, N, s, &gt), LDCTQ_STATUS_OK, "float64 VJP");

    const double eps = 1e-6;
    const size_t pixels_checked[] = {0, 17, 100, 239, 250, 479};
    double worst = 0;
    for (size_t j = 0; j < sizeof pixels_checked / sizeof pixels_checked[0]; j++) {
        const size_t k = pixels_checked[j];
        const double x0 = x[k];
        x[k] = x0 + eps;
        const double plus = objective(h, x, shape, u);
        x[k] = x0 - eps;
        const double minus = objective(h, x, shape, u);
        x[k] = x0;
        const double fd = (plus - minus) / (2 * eps);
        const double err = fabs(fd - g[k]) / fmax(fabs(g[k]), 1e-3);
        printf("pixel %3zu: vjp %.9e, central difference %.9e, rel err %.2e\n", k, g[k], fd, err);
        worst = fmax(worst, err);
    }
    /* float64: truncation eps^2 |f'''| ~ 1e-12 and rounding u |f| / eps ~ 1e-9 stay far below 1e-5 of
     * the 1e-3 floor on any CPU (float64 kernels differ by ~1e-15); a wrong VJP shows as >= 1e-3. */
    check(worst < 1e-5, "worst relative error %g", worst);

    /* Linearity in upstream: vjp(u) == u0 * vjp(e0) + u1 * vjp(e1). */
    double* g0 = calloc(count, sizeof *g0);
    double* g1 = calloc(count, sizeof *g1);
    const double e0[N] = {1.0, 0.0}, e1[N] = {0.0, 1.0};
    DLTensor gt0 = dl(g0, 3, gshape, NULL, kDLFloat, 64), gt1 = dl(g1, 3, gshape, NULL, kDLFloat, 64);
    expect(ldctq_score_grad_dlpack(h, &t, e0, N, NULL, &gt0), LDCTQ_STATUS_OK, "VJP of e0");
    expect(ldctq_score_grad_dlpack(h, &t, e1, N, NULL, &gt1), LDCTQ_STATUS_OK, "VJP of e1");
    /* Linear in exact arithmetic; each of the three float64 backward passes rounds within
     * rounding_tol of its scale. */
    double scale = 0;
    for (size_t k = 0; k < count; k++) scale = fmax(scale, fabs(u[0] * g0[k]) + fabs(u[1] * g1[k]));
    const double linear_tol = 2 * rounding_tol(F64_U, GRAD_DEPTH, scale);
    int bad = 0;
    for (size_t k = 0; k < count; k++) bad += fabs(g[k] - (u[0] * g0[k] + u[1] * g1[k])) > linear_tol;
    check(bad == 0, "%d gradient values are not linear in upstream (tolerance %g)", bad, linear_tol);

    /* Activation checkpointing (one layer per segment) gives the same product. */
    expect(ldctq_set_activation_checkpointing(NULL, 1), LDCTQ_STATUS_NULL_ARGUMENT, "checkpointing: NULL model");
    expect(ldctq_set_activation_checkpointing(h, 1), LDCTQ_STATUS_OK, "checkpointing on");
    double* gc = calloc(count, sizeof *gc);
    double sc[N];
    DLTensor gtc = dl(gc, 3, gshape, NULL, kDLFloat, 64);
    expect(ldctq_score_grad_dlpack(h, &t, u, N, sc, &gtc), LDCTQ_STATUS_OK, "checkpointed VJP");
    check(memcmp(sc, s, sizeof s) == 0, "checkpointed scores differ");
    /* Recomputed segments may run other kernels than one graph: two float64 runs of the gradient. */
    double diff = 0, gmax = 0;
    for (size_t k = 0; k < count; k++) diff = fmax(diff, fabs(g[k] - gc[k])), gmax = fmax(gmax, fabs(g[k]));
    const double checkpoint_tol = 2 * rounding_tol(F64_U, GRAD_DEPTH, gmax);
    check(diff <= checkpoint_tol, "checkpointed gradient differs by %g > %g", diff, checkpoint_tol);
    ldctq_model_free(h);
    free(gc);
    free(g1);
    free(g0);
    free(g);
    free(x);
    free(x32);
}

/* ---- threads -------------------------------------------------------------------------------- */

enum { TN = 2, TH = 16, TW = 16 };

struct thread_job {
    int index;
    ldctq_model* shared;
    const float* x;
    const double* want;
    /* Other threads may run the kernels with other thread counts (MKL adapts to the load), and the
     * odd ones on their own model: two float32 runs, each within rounding_tol of the exact scores. */
    double tol;
    /* results, read by the main thread after join */
    int failed;
    char detail[512];
    char last_error[512];
};

static void* thread_main(void* arg) {
    struct thread_job* job = arg;
    /* Even threads use the shared model, odd ones open their own. */
    ldctq_model* own = NULL;
    if (job->index % 2 == 1 && ldctq_model_open(model_dir, NULL, &own) != LDCTQ_STATUS_OK) {
        job->failed = 1;
        snprintf(job->detail, sizeof job->detail, "open: %s", ldctq_last_error_message());
        return NULL;
    }
    ldctq_model* m = own ? own : job->shared;
    float g[TN * TH * TW];
    for (int it = 0; it < 3 && !job->failed; it++) {
        double s[TN];
        if (ldctq_score_grad(m, job->x, TN, TH, TW, NULL, s, g) != LDCTQ_STATUS_OK) {
            job->failed = 1;
            snprintf(job->detail, sizeof job->detail, "score_grad: %s", ldctq_last_error_message());
        } else if (fabs(s[0] - job->want[0]) >= job->tol || fabs(s[1] - job->want[1]) >= job->tol) {
            job->failed = 1;
            snprintf(job->detail, sizeof job->detail, "scores %.9g %.9g vs %.9g %.9g", s[0], s[1], job->want[0],
                     job->want[1]);
        }
    }
    /* The last error is per thread. */
    if (ldctq_score(m, job->x, 0, TH, TW, NULL) == LDCTQ_STATUS_OK) {
        job->failed = 1;
        snprintf(job->detail, sizeof job->detail, "a bad call succeeded");
    }
    snprintf(job->last_error, sizeof job->last_error, "%s", ldctq_last_error_message());
    ldctq_model_free(own);
    return NULL;
}

static void threads_share_one_model_and_run_separate_models(void) {
    ldctq_model* h = open_model(NULL, "open");
    float* x = pixels(TN * TH * TW, 21);
    double want[TN];
    expect(ldctq_score(h, x, TN, TH, TW, want), LDCTQ_STATUS_OK, "score");
    struct thread_job jobs[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].index = i;
        jobs[i].shared = h;
        jobs[i].x = x;
        jobs[i].want = want;
        jobs[i].tol = 2 * rounding_tol(F32_U, SCORE_DEPTH, 4.0);
        check(pthread_create(&threads[i], NULL, thread_main, &jobs[i]) == 0, "pthread_create %d", i);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        check(!jobs[i].failed, "thread %d: %s", i, jobs[i].detail);
        check(jobs[i].last_error[0] != '\0', "thread %d: no message after its failed call", i);
    }
    const char* here = ldctq_last_error_message();
    check(here[0] == '\0', "another thread's error leaked into this one: %s", here);
    ldctq_model_free(h);
    free(x);
}

/* Quality maps: host and DLPack paths agree (float32 N x H x W, float64 N x 1 x H x W); bad arguments
 * are statuses and leave the output alone. Writes the images and the host maps to SCRATCH/map_*.f32
 * for scripts/test_ffi.sh to compare with `ldctq map`. */
static void quality_maps_host_dlpack_and_bad_input(const char* scratch) {
    ldctq_model* h = open_model(NULL, "open for maps");
    enum { N = 2, H = 20, W = 24, K = N * H * W };
    float* x = pixels(K, 31);
    float* maps = malloc(K * sizeof *maps);
    float* viewed = malloc(K * sizeof *viewed);
    double* viewed64 = malloc(K * sizeof *viewed64);
    int64_t shape[3] = {N, H, W}, shape4[4] = {N, 1, H, W};
    const char* names[4] = {"intrinsic", "gradient", "occlusion", "smoothing"};
    char path[4096];
    for (int32_t method = LDCTQ_MAP_METHOD_INTRINSIC; method <= LDCTQ_MAP_METHOD_SMOOTHING; method++) {
        expect(ldctq_quality_map(h, x, N, H, W, method, maps), LDCTQ_STATUS_OK, names[method]);
        double lo = 1e30, hi = -1e30;
        for (size_t i = 0; i < K; i++) {
            lo = maps[i] < lo ? maps[i] : lo;
            hi = maps[i] > hi ? maps[i] : hi;
        }
        /* intrinsic in [0, 4], gradient >= 0, occlusion a score difference in [-4, 4], smoothing finite
         * of either sign */
        int in_range = method == LDCTQ_MAP_METHOD_SMOOTHING ? isfinite(lo) && isfinite(hi)
                       : method == LDCTQ_MAP_METHOD_OCCLUSION ? lo >= -4.0 && hi <= 4.0
                       : lo >= 0.0 && (method == LDCTQ_MAP_METHOD_GRADIENT || hi <= 4.0);
        check(in_range && hi > lo, "%s map range %g..%g", names[method], lo, hi);
        DLTensor images = dl(x, 3, shape, NULL, kDLFloat, 32);
        DLTensor out = dl(viewed, 3, shape, NULL, kDLFloat, 32);
        expect(ldctq_quality_map_dlpack(h, &images, N, method, &out), LDCTQ_STATUS_OK, "map dlpack f32");
        DLTensor out64 = dl(viewed64, 4, shape4, NULL, kDLFloat, 64);
        expect(ldctq_quality_map_dlpack(h, &images, N, method, &out64), LDCTQ_STATUS_OK, "map dlpack f64 Nx1xHxW");
        double worst = 0.0;
        for (size_t i = 0; i < K; i++) {
            worst = fmax(worst, fabs((double)viewed[i] - maps[i]));
            worst = fmax(worst, fabs(viewed64[i] - maps[i]));
        }
        check(worst <= 1e-5, "%s: dlpack vs host maps differ by %g", names[method], worst);
        printf("ok   %s map: host vs DLPack max |diff| %g\n", names[method], worst);
        snprintf(path, sizeof path, "%s/map_%s.f32", scratch, names[method]);
        check(write_file(path, (const char*)maps, K * sizeof *maps), "writing %s", path);
    }
    snprintf(path, sizeof path, "%s/map_images.f32", scratch);
    check(write_file(path, (const char*)x, K * sizeof *x), "writing %s", path);

    for (size_t i = 0; i < K; i++) maps[i] = -1.0f;
    expect(ldctq_quality_map(NULL, x, N, H, W, 0, maps), LDCTQ_STATUS_NULL_ARGUMENT, "map(NULL model)");
    expect(ldctq_quality_map(h, NULL, N, H, W, 0, maps), LDCTQ_STATUS_NULL_ARGUMENT, "map(NULL images)");
    expect(ldctq_quality_map(h, x, N, H, W, 0, NULL), LDCTQ_STATUS_NULL_ARGUMENT, "map(NULL maps_out)");
    expect(ldctq_quality_map(h, x, N, H, W, 7, maps), LDCTQ_STATUS_INVALID_ARGUMENT, "map(method 7)");
    expect(ldctq_quality_map(h, x, N, H, W, -1, maps), LDCTQ_STATUS_INVALID_ARGUMENT, "map(method -1)");
    expect(ldctq_quality_map(h, x, 0, H, W, 0, maps), LDCTQ_STATUS_INVALID_ARGUMENT, "map(n 0)");
    DLTensor images = dl(x, 3, shape, NULL, kDLFloat, 32);
    int64_t wrong[3] = {N, W, H};
    DLTensor out = dl(maps, 3, wrong, NULL, kDLFloat, 32);
    expect(ldctq_quality_map_dlpack(h, &images, N, 0, &out), LDCTQ_STATUS_SHAPE_MISMATCH, "map dlpack: out W x H");
    out = dl(maps, 3, shape, NULL, kDLFloat, 32);
    expect(ldctq_quality_map_dlpack(h, &images, N + 1, 0, &out), LDCTQ_STATUS_SHAPE_MISMATCH, "map dlpack: n != N");
    expect(ldctq_quality_map_dlpack(h, &images, N, 0, NULL), LDCTQ_STATUS_NULL_ARGUMENT, "map dlpack: NULL out");
    expect(ldctq_quality_map_dlpack(h, NULL, N, 0, &out), LDCTQ_STATUS_NULL_ARGUMENT, "map dlpack: NULL images");
    int64_t two[2] = {H, W};
    DLTensor flat = dl(x, 2, two, NULL, kDLFloat, 32);
    expect(ldctq_quality_map_dlpack(h, &flat, N, 0, &out), LDCTQ_STATUS_SHAPE_MISMATCH, "map dlpack: 2-d images");
    check(all_equal_f32(maps, K, -1.0f), "maps_out written by a failed call");
    free(x);
    free(maps);
    free(viewed);
    free(viewed64);
    ldctq_model_free(h);
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_DIR SCRATCH_DIR PACKAGE_VERSION\n", argv[0]);
        return 2;
    }
    model_dir = argv[1];
    versions_and_status_strings(argv[3]);
    null_arguments_and_bad_options();
    corrupt_model_folder_is_an_invalid_model(argv[2]);
    info_prompt_and_film_strength();
    bad_images_return_statuses_and_leave_outputs_alone();
    dlpack_views_agree_with_the_host_path();
    gradient_is_a_vjp_matching_central_differences_in_f64();
    threads_share_one_model_and_run_separate_models();
    quality_maps_host_dlpack_and_bad_input(argv[2]);
    printf("abi: %d passed, %d failed\n", passes, failures);
    return failures == 0 ? 0 : 1;
}
