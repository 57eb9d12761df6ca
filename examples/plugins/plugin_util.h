/*
 * Helpers shared by the example plugins (header-only, C99): a tiny reader of numbers and
 * strings in a flat JSON object, an error writer, and mirror indexing at the borders.
 * Not part of the ABI: a plugin needs only include/ldctq_denoiser.h.
 */
#ifndef LDCTQ_PLUGIN_UTIL_H
#define LDCTQ_PLUGIN_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of "key" in a flat JSON object: its start, or NULL when absent. */
static inline const char *json_value(const char *json, const char *key) {
    size_t len = strlen(key);
    const char *p = json;
    while (p && (p = strchr(p, '"')) != NULL) {
        if (strncmp(p + 1, key, len) == 0 && p[len + 1] == '"') {
            const char *q = p + len + 2;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
            if (*q != ':') return NULL;
            q++;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
            return q;
        }
        p++;
    }
    return NULL;
}

/* A number: 1 and *out set, 0 when absent (out untouched), -1 when not a number. */
static inline int json_number(const char *json, const char *key, double *out) {
    const char *v = json_value(json, key);
    char *end = NULL;
    double x;
    if (!v) return 0;
    x = strtod(v, &end);
    if (end == v) return -1;
    *out = x;
    return 1;
}

/* A string value copied into buf: 1, 0 when absent, -1 when not a string or too long. */
static inline int json_string(const char *json, const char *key, char *buf, size_t len) {
    const char *v = json_value(json, key);
    const char *end;
    if (!v) return 0;
    if (*v != '"') return -1;
    end = strchr(v + 1, '"');
    if (!end || (size_t)(end - v - 1) >= len) return -1;
    memcpy(buf, v + 1, (size_t)(end - v - 1));
    buf[end - v - 1] = '\0';
    return 1;
}

static inline int32_t fail(char *err, size_t err_len, int32_t code, const char *fmt, ...) {
    va_list ap;
    if (err && err_len > 0) {
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Mirror index (…, 2, 1, 0, 1, 2, …, n-2, n-1, n-2, …) into 0..n-1. */
static inline int64_t mirror(int64_t i, int64_t n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) {
        if (i < 0) i = -i;
        if (i >= n) i = 2 * (n - 1) - i;
    }
    return i;
}

#endif
