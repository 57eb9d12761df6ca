/*
 * Bad input through the C ABI: every case must come back as the expected status with a message,
 * leave the outputs alone, and crash nothing. Run by scripts/test_ffi.sh, also under valgrind.
 *
 * usage: bad_input MODEL_DIR SCRATCH_DIR
 *   MODEL_DIR: a "unit" test model (tests/fixtures/quality/a_unit_seq)
 *   SCRATCH_DIR: an empty folder for a corrupt model folder
 */
#include "ldctq.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static int passes = 0;

static void expect(const char* what, ldctq_status got, ldctq_status want) {
    const char* msg = ldctq_last_error_message();
    if (got != want) {
        printf("FAIL %-34s got %d (%s), want %d (%s): %s\n", what, (int)got, ldctq_status_string(got), (int)want,
               ldctq_status_string(want), msg);
        failures++;
    } else if (want != LDCTQ_STATUS_OK && msg[0] == '\0') {
        printf("FAIL %-34s status %d but no message\n", what, (int)got);
        failures++;
    } else {
        printf("ok   %-34s %-20s %s\n", what, ldctq_status_string(got), msg);
        passes++;
    }
}

static void check(const char* what, int ok) {
    if (!ok) {
        printf("FAIL %s\n", what);
        failures++;
    } else {
        passes++;
    }
}

static int write_file(const char* path, const char* data, size_t len) {
    FILE* f = fopen(path, "wb");
    if (!f) return 0;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    const char* model_dir = argv[1];
    const char* scratch = argv[2];
    printf("%s, ABI %u.%u\n", ldctq_version_string(), ldctq_abi_version() >> 16, ldctq_abi_version() & 0xffffu);
    check("ABI major", (ldctq_abi_version() >> 16) == LDCTQ_ABI_VERSION_MAJOR);

    /* free(NULL) and init(NULL) are no-ops. */
    ldctq_model_free(NULL);
    ldctq_model_options_init(NULL);
    check("status string of an unknown code", strcmp(ldctq_status_string(1000), "unknown status") == 0);

    /* Opening. */
    ldctq_model* model = NULL;
    ldctq_model_options opts;
    ldctq_model_options_init(&opts);
    expect("open: NULL path", ldctq_model_open(NULL, &opts, &model), LDCTQ_STATUS_NULL_ARGUMENT);
    expect("open: NULL model_out", ldctq_model_open(model_dir, &opts, NULL), LDCTQ_STATUS_NULL_ARGUMENT);
    expect("open: missing folder", ldctq_model_open("/nonexistent/ldctq", NULL, &model), LDCTQ_STATUS_NOT_FOUND);
    expect("open: invalid UTF-8 path", ldctq_model_open("\xff\xfe", NULL, &model), LDCTQ_STATUS_INVALID_UTF8);
    opts.struct_size = 4;
    expect("open: struct_size too small", ldctq_model_open(model_dir, &opts, &model), LDCTQ_STATUS_INVALID_ARGUMENT);
    ldctq_model_options_init(&opts);
    opts.dtype = 99;
    expect("open: unknown dtype", ldctq_model_open(model_dir, &opts, &model), LDCTQ_STATUS_UNSUPPORTED_DTYPE);
    ldctq_model_options_init(&opts);
    opts.device_type = kDLCUDA;
    opts.device_id = 77;
    expect("open: CUDA device 77", ldctq_model_open(model_dir, &opts, &model), LDCTQ_STATUS_UNSUPPORTED_DEVICE);
    ldctq_model_options_init(&opts);
    opts.prompt = "\xc3\x28 invalid";
    expect("open: invalid UTF-8 prompt", ldctq_model_open(model_dir, &opts, &model), LDCTQ_STATUS_INVALID_UTF8);
    check("model_out untouched on failure", model == NULL);

    /* A corrupt model folder: valid ldctq.json, garbage head.safetensors. */
    char path[4096], json_path[4200], head_path[4200];
    snprintf(path, sizeof path, "%s/corrupt", scratch);
    snprintf(json_path, sizeof json_path, "%s/%s", model_dir, "ldctq.json");
    {
        FILE* f = fopen(json_path, "rb");
        char json[8192] = {0};
        size_t len = f ? fread(json, 1, sizeof json - 1, f) : 0;
        if (f) fclose(f);
        /* The backbone path is relative to the model folder: point it at the original's. */
        const char* rel = "\"../../siglip/tiny_a\"";
        char* at = strstr(json, rel);
        char fixed[12288] = {0};
        if (at) {
            snprintf(fixed, sizeof fixed, "%.*s\"%s/../../siglip/tiny_a\"%s", (int)(at - json), json, model_dir,
                     at + strlen(rel));
        }
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
        check("mkdir", system(cmd) == 0);
        snprintf(json_path, sizeof json_path, "%s/ldctq.json", path);
        snprintf(head_path, sizeof head_path, "%s/head.safetensors", path);
        check("write corrupt model", len > 0 && at && write_file(json_path, fixed, strlen(fixed)) &&
                                         write_file(head_path, "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", 13));
    }
    expect("open: corrupt safetensors", ldctq_model_open(path, NULL, &model), LDCTQ_STATUS_INVALID_MODEL);
    check("model_out untouched on failure", model == NULL);

    expect("open: the test model", ldctq_model_open(model_dir, NULL, &model), LDCTQ_STATUS_OK);
    if (model == NULL) {
        printf("cannot go on without a model\n");
        return 1;
    }

    enum { N = 2, H = 16, W = 16 };
    static float img[N * H * W], grad[N * H * W];
    for (int i = 0; i < N * H * W; i++) img[i] = 0.25f + 0.5f * (float)((i * 7919) % 101) / 101.0f;
    double scores[N] = {-1.0, -1.0};

    expect("score: NULL model", ldctq_score(NULL, img, N, H, W, scores), LDCTQ_STATUS_NULL_ARGUMENT);
    expect("score: NULL images", ldctq_score(model, NULL, N, H, W, scores), LDCTQ_STATUS_NULL_ARGUMENT);
    expect("score: NULL scores_out", ldctq_score(model, img, N, H, W, NULL), LDCTQ_STATUS_NULL_ARGUMENT);
    expect("score: n = 0", ldctq_score(model, img, 0, H, W, scores), LDCTQ_STATUS_INVALID_ARGUMENT);
    expect("score: w = 0", ldctq_score(model, img, N, H, 0, scores), LDCTQ_STATUS_INVALID_ARGUMENT);
    expect("score: n*h*w overflows", ldctq_score(model, img, SIZE_MAX / 2, 3, 3, scores),
           LDCTQ_STATUS_INVALID_ARGUMENT);
    expect("score: n*h*w*4 overflows", ldctq_score(model, img, (size_t)1 << 31, (size_t)1 << 31, 2, scores),
           LDCTQ_STATUS_INVALID_ARGUMENT);
    img[5] = NAN;
    expect("score: NaN pixel", ldctq_score(model, img, N, H, W, scores), LDCTQ_STATUS_INVALID_ARGUMENT);
    img[5] = INFINITY;
    expect("score_grad: Inf pixel", ldctq_score_grad(model, img, N, H, W, NULL, scores, grad),
           LDCTQ_STATUS_INVALID_ARGUMENT);
    img[5] = 0.5f;
    check("scores untouched on failure", scores[0] == -1.0 && scores[1] == -1.0);
    double bad_upstream[N] = {1.0, NAN};
    expect("score_grad: NaN upstream", ldctq_score_grad(model, img, N, H, W, bad_upstream, scores, grad),
           LDCTQ_STATUS_INVALID_ARGUMENT);
    expect("score_grad: NULL grad_out", ldctq_score_grad(model, img, N, H, W, NULL, scores, NULL),
           LDCTQ_STATUS_NULL_ARGUMENT);

    /* DLPack. */
    int64_t shape[3] = {N, H, W};
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = img;
    t.device.device_type = kDLCPU;
    t.ndim = 3;
    t.dtype.code = kDLInt;
    t.dtype.bits = 32;
    t.dtype.lanes = 1;
    t.shape = shape;
    expect("dlpack: int32 dtype", ldctq_score_dlpack(model, &t, N, scores), LDCTQ_STATUS_UNSUPPORTED_DTYPE);
    t.dtype.code = kDLFloat;
    t.device.device_type = kDLVulkan;
    expect("dlpack: Vulkan device", ldctq_score_dlpack(model, &t, N, scores), LDCTQ_STATUS_UNSUPPORTED_DEVICE);
    t.device.device_type = kDLCUDA;
    t.device.device_id = 77;
    expect("dlpack: CUDA device 77", ldctq_score_dlpack(model, &t, N, scores), LDCTQ_STATUS_UNSUPPORTED_DEVICE);
    t.device.device_type = kDLCPU;
    t.device.device_id = 0;
    expect("dlpack: n != N", ldctq_score_dlpack(model, &t, N + 1, scores), LDCTQ_STATUS_SHAPE_MISMATCH);
    t.ndim = 5;
    expect("dlpack: ndim 5", ldctq_score_dlpack(model, &t, N, scores), LDCTQ_STATUS_SHAPE_MISMATCH);
    t.ndim = 3;
    expect("dlpack: NULL tensor", ldctq_score_dlpack(model, NULL, N, scores), LDCTQ_STATUS_NULL_ARGUMENT);
    int64_t huge[3] = {INT64_MAX / 4, 1, 1};
    t.strides = huge;
    expect("dlpack: stride overflow", ldctq_score_dlpack(model, &t, N, scores), LDCTQ_STATUS_INVALID_ARGUMENT);
    t.strides = NULL;
    check("scores untouched on failure", scores[0] == -1.0 && scores[1] == -1.0);

    /* Prompts. */
    expect("set_prompt: invalid UTF-8", ldctq_set_prompt(model, "abc\xe2\x82"), LDCTQ_STATUS_INVALID_UTF8);
    expect("set_prompt: NULL", ldctq_set_prompt(model, NULL), LDCTQ_STATUS_NULL_ARGUMENT);
    expect("set_film_strength: NaN", ldctq_set_film_strength(model, NAN), LDCTQ_STATUS_INVALID_ARGUMENT);

    /* Still usable after all that. */
    expect("score: good input", ldctq_score(model, img, N, H, W, scores), LDCTQ_STATUS_OK);
    check("scores in [0, 4]", scores[0] >= 0.0 && scores[0] <= 4.0 && scores[1] >= 0.0 && scores[1] <= 4.0);
    expect("score_grad: good input", ldctq_score_grad(model, img, N, H, W, NULL, scores, grad), LDCTQ_STATUS_OK);
    check("empty message after success", ldctq_last_error_message()[0] == '\0');
    ldctq_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    expect("model_get_info", ldctq_model_get_info(model, &info), LDCTQ_STATUS_OK);
    check("info: unit input, 16 px, score 0..4",
          info.input_space == LDCTQ_INPUT_SPACE_UNIT && info.image_size == 16 && info.score_max == 4.0);

    ldctq_model_free(model);
    printf("%d passed, %d failed\n", passes, failures);
    return failures == 0 ? 0 : 1;
}
