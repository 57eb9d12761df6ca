// ldctq.hpp: header-only C++17 RAII wrapper over the C ABI in ldctq.h.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Errors become ldctq::Error exceptions carrying the status and the library's message. Everything
// is inline; the wrapper adds no state. Thread safety is that of the C API: a Model may be used
// from several threads (calls are serialized inside the library).
#ifndef LDCTQ_HPP
#define LDCTQ_HPP

#include "ldctq.h"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ldctq {

/// A failed call: the status code and the message of ldctq_last_error_message().
class Error : public std::runtime_error {
public:
    Error(ldctq_status status, const std::string& message)
        : std::runtime_error(std::string(ldctq_status_string(static_cast<int32_t>(status))) + ": " + message),
          status_(status) {}
    ldctq_status status() const noexcept { return status_; }

private:
    ldctq_status status_;
};

/// Throws ldctq::Error unless `status` is LDCTQ_STATUS_OK.
inline void check(ldctq_status status) {
    if (status != LDCTQ_STATUS_OK) {
        throw Error(status, ldctq_last_error_message());
    }
}

/// Throws unless the loaded library speaks the ABI major version this header was written for.
inline void check_abi() {
    const uint32_t v = ldctq_abi_version();
    if ((v >> 16) != LDCTQ_ABI_VERSION_MAJOR) {
        throw Error(LDCTQ_STATUS_UNSUPPORTED,
                    "libldctq has ABI " + std::to_string(v >> 16) + "." + std::to_string(v & 0xffffu) +
                        ", this header needs " + std::to_string(LDCTQ_ABI_VERSION_MAJOR) + ".x");
    }
}

/// Options of Model::open, with the library's defaults.
inline ldctq_model_options default_options() {
    ldctq_model_options o;
    ldctq_model_options_init(&o);
    return o;
}

/// Scores and the vector-Jacobian product of a batch.
struct ScoresAndGrad {
    std::vector<double> scores;
    std::vector<float> grad;  // n * h * w, the images' layout
};

/// A loaded model (move-only; released on destruction).
class Model {
public:
    /// Opens a model (or ensemble) folder; throws ldctq::Error.
    static Model open(const std::string& path, const ldctq_model_options& options = default_options()) {
        check_abi();
        ldctq_model* m = nullptr;
        check(ldctq_model_open(path.c_str(), &options, &m));
        return Model(m);
    }

    Model(Model&& other) noexcept : model_(std::exchange(other.model_, nullptr)) {}
    Model& operator=(Model&& other) noexcept {
        if (this != &other) {
            ldctq_model_free(model_);
            model_ = std::exchange(other.model_, nullptr);
        }
        return *this;
    }
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;
    ~Model() { ldctq_model_free(model_); }

    /// The C handle, for the functions this wrapper does not cover.
    ldctq_model* get() const noexcept { return model_; }

    ldctq_model_info info() const {
        ldctq_model_info i{};
        i.struct_size = sizeof(i);
        check(ldctq_model_get_info(model_, &i));
        return i;
    }

    void set_prompt(const std::string& prompt) { check(ldctq_set_prompt(model_, prompt.c_str())); }
    void set_film_strength(double s) { check(ldctq_set_film_strength(model_, s)); }
    /// For a model with anatomy prompts: the anatomy word of the images scored (nullptr: none).
    void set_anatomy(const char* anatomy) { check(ldctq_set_anatomy(model_, anatomy)); }

    /// Scores of n contiguous float32 h x w images.
    std::vector<double> score(const float* images, std::size_t n, std::size_t h, std::size_t w) {
        std::vector<double> scores(n);
        check(ldctq_score(model_, images, n, h, w, scores.data()));
        return scores;
    }

    /// Scores and d(sum_i upstream[i] * score_i) / d images (upstream empty: ones).
    ScoresAndGrad score_grad(const float* images, std::size_t n, std::size_t h, std::size_t w,
                             const std::vector<double>& upstream = {}) {
        if (!upstream.empty() && upstream.size() != n) {
            throw Error(LDCTQ_STATUS_INVALID_ARGUMENT, "upstream must have n values");
        }
        ScoresAndGrad out{std::vector<double>(n), std::vector<float>(n * h * w)};
        check(ldctq_score_grad(model_, images, n, h, w, upstream.empty() ? nullptr : upstream.data(),
                               out.scores.data(), out.grad.data()));
        return out;
    }

    /// Quality maps of n contiguous float32 h x w images: n * h * w floats, high where quality is lost.
    std::vector<float> quality_map(const float* images, std::size_t n, std::size_t h, std::size_t w,
                                   ldctq_map_method method = LDCTQ_MAP_METHOD_INTRINSIC) {
        std::vector<float> maps(n * h * w);
        check(ldctq_quality_map(model_, images, n, h, w, static_cast<int32_t>(method), maps.data()));
        return maps;
    }

    /// Scores of DLPack images (host or CUDA; see ldctq.h).
    std::vector<double> score(const DLTensor& images) {
        std::vector<double> scores(batch_of(images));
        check(ldctq_score_dlpack(model_, &images, scores.size(), scores.data()));
        return scores;
    }

    /// Scores of DLPack images, and their gradient written into the caller's `grad`.
    std::vector<double> score_grad(const DLTensor& images, DLTensor& grad, const std::vector<double>& upstream = {}) {
        std::vector<double> scores(batch_of(images));
        if (!upstream.empty() && upstream.size() != scores.size()) {
            throw Error(LDCTQ_STATUS_INVALID_ARGUMENT, "upstream must have N values");
        }
        check(ldctq_score_grad_dlpack(model_, &images, upstream.empty() ? nullptr : upstream.data(), scores.size(),
                                      scores.data(), &grad));
        return scores;
    }

private:
    explicit Model(ldctq_model* m) noexcept : model_(m) {}

    static std::size_t batch_of(const DLTensor& t) {
        if (t.shape == nullptr || t.ndim < 1 || t.shape[0] < 1) {
            throw Error(LDCTQ_STATUS_SHAPE_MISMATCH, "images must be N x H x W or N x 1 x H x W");
        }
        return static_cast<std::size_t>(t.shape[0]);
    }

    ldctq_model* model_ = nullptr;
};

/// A DLTensor header over caller memory (no ownership): shape and strides must outlive it.
inline DLTensor dl_view(void* data, DLDevice device, DLDataType dtype, int32_t ndim, int64_t* shape,
                        int64_t* strides = nullptr, uint64_t byte_offset = 0) {
    DLTensor t;
    t.data = data;
    t.device = device;
    t.ndim = ndim;
    t.dtype = dtype;
    t.shape = shape;
    t.strides = strides;
    t.byte_offset = byte_offset;
    return t;
}

inline std::string version() { return ldctq_version_string(); }

}  // namespace ldctq

#endif  // LDCTQ_HPP
