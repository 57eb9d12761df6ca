// A C++17 trainer-side use of libldctq through include/ldctq.hpp:
//  1. scores every frame of the given float32 .npy files (values in the model's input space) and
//     prints them as CSV (path,frame,score), the format of `ldctq score --format csv`;
//  2. checks the gradient: the vector-Jacobian product of a float64 model on a float64 DLPack
//     tensor against central differences, and the float32 host gradient against the float64
//     model's (finite differences of a float32 function would mostly measure its rounding);
//  3. runs a few steps of gradient ascent on the quality of a noisy copy of the first image,
//     printing the score as it rises;
//  4. draws both quality maps of that image (intrinsic in [0, 4], gradient >= 0 and not all zero).
// Exit status 0 only if every check passes.
//
// usage: score_and_ascend MODEL_DIR FILE.npy... [--steps K]
#include "ldctq.hpp"
#include "npy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

namespace {

// Central differences of sum_i u_i score_i at a few pixels against the VJP, all in float64.
bool check_grad_f64(const std::string& model_dir, const NpyImages& im) {
    ldctq_model_options opts = ldctq::default_options();
    opts.dtype = LDCTQ_DTYPE_FLOAT64;
    ldctq::Model model = ldctq::Model::open(model_dir, opts);
    const std::size_t n = 1, px = im.h * im.w;
    std::vector<double> x(im.data.begin(), im.data.begin() + px), grad(px);
    int64_t shape[3] = {int64_t(n), int64_t(im.h), int64_t(im.w)};
    const DLDevice cpu{kDLCPU, 0};
    const DLDataType f64{kDLFloat, 64, 1};
    DLTensor xt = ldctq::dl_view(x.data(), cpu, f64, 3, shape);
    DLTensor gt = ldctq::dl_view(grad.data(), cpu, f64, 3, shape);
    const std::vector<double> upstream{-0.5};  // e.g. the weight of a loss term -0.5 * score
    model.score_grad(xt, gt, upstream);
    auto objective = [&]() { return upstream[0] * model.score(xt)[0]; };
    const double eps = 1e-6;
    double worst = 0;
    for (std::size_t k : {std::size_t(0), px / 3, px / 2, px - 1}) {
        const double x0 = x[k];
        x[k] = x0 + eps;
        const double plus = objective();
        x[k] = x0 - eps;
        const double minus = objective();
        x[k] = x0;
        const double fd = (plus - minus) / (2 * eps);
        const double err = std::abs(fd - grad[k]) / std::max(std::abs(grad[k]), 1e-3);
        worst = std::max(worst, err);
        std::fprintf(stderr, "  f64 pixel %zu: vjp %.9e, central difference %.9e, rel err %.1e\n", k, grad[k], fd, err);
    }
    // float64: truncation (eps^2 times the third derivative, ~1e-12) and rounding (u |f| / eps, ~1e-9)
    // stay far below 1e-5 of the 1e-3 floor on any CPU; a wrong gradient shows as >= 1e-3.
    const bool ok = worst < 1e-5;
    std::fprintf(stderr, "gradient check (float64 DLPack vs central differences): %s\n", ok ? "ok" : "FAILED");
    return ok;
}

// The float32 host gradient against the float64 model's on the same image.
bool check_grad_f32(ldctq::Model& model, const std::string& model_dir, const NpyImages& im) {
    const std::size_t px = im.h * im.w;
    std::vector<float> x(im.data.begin(), im.data.begin() + px);
    auto r = model.score_grad(x.data(), 1, im.h, im.w);
    ldctq_model_options opts = ldctq::default_options();
    opts.dtype = LDCTQ_DTYPE_FLOAT64;
    ldctq::Model model64 = ldctq::Model::open(model_dir, opts);
    std::vector<double> x64(x.begin(), x.end()), grad64(px);
    int64_t shape[3] = {1, int64_t(im.h), int64_t(im.w)};
    const DLDevice cpu{kDLCPU, 0};
    const DLDataType f64{kDLFloat, 64, 1};
    DLTensor xt = ldctq::dl_view(x64.data(), cpu, f64, 3, shape);
    DLTensor gt = ldctq::dl_view(grad64.data(), cpu, f64, 3, shape);
    model64.score_grad(xt, gt);
    double diff = 0, gmax = 0;
    for (std::size_t k = 0; k < px; k++) {
        diff = std::max(diff, std::abs(double(r.grad[k]) - grad64[k]));
        gmax = std::max(gmax, std::abs(grad64[k]));
    }
    // float32 rounding of an input gradient, whatever kernels the CPU runs, for models up to
    // MedSigLIP-448's size: 8 u sqrt(k) depth (tests/common/mod.rs's rounding_tol) with sums of
    // k = 4304 and 2 x 40 layers is 2.5e-3 of max |g|.
    const double tol = 8 * 0x1p-24 * std::sqrt(4304.0) * 80 * gmax;
    const bool ok = diff <= tol;
    std::fprintf(stderr, "gradient check (float32 host vs float64 model): max |diff| %.2e, bound %.2e: %s\n", diff, tol,
                 ok ? "ok" : "FAILED");
    return ok;
}

// Both quality maps of an image: intrinsic values in [0, 4], gradient values >= 0 and not all zero.
bool check_maps(ldctq::Model& model, const NpyImages& im) {
    const std::vector<float> x(im.data.begin(), im.data.begin() + im.h * im.w);
    const auto intrinsic = model.quality_map(x.data(), 1, im.h, im.w, LDCTQ_MAP_METHOD_INTRINSIC);
    const auto gradient = model.quality_map(x.data(), 1, im.h, im.w, LDCTQ_MAP_METHOD_GRADIENT);
    const auto [imin, imax] = std::minmax_element(intrinsic.begin(), intrinsic.end());
    const auto [gmin, gmax] = std::minmax_element(gradient.begin(), gradient.end());
    const bool ok = *imin >= 0.f && *imax <= 4.f && *gmin >= 0.f && *gmax > 0.f;
    std::fprintf(stderr, "quality maps: intrinsic in [%.4f, %.4f], gradient in [%.3e, %.3e]: %s\n", *imin, *imax,
                 *gmin, *gmax, ok ? "ok" : "FAILED");
    return ok;
}

// Gradient ascent on the score of a noisy image: x <- x + lr * grad / max|grad|.
bool ascend(ldctq::Model& model, const NpyImages& im, int steps) {
    const std::size_t px = im.h * im.w;
    std::vector<float> x(im.data.begin(), im.data.begin() + px);
    std::mt19937 rng(7);
    std::normal_distribution<float> noise(0.f, 0.05f);
    for (auto& v : x) v = std::clamp(v + noise(rng), 0.f, 1.f);
    double first = 0, last = 0;
    const float lr = 0.02f;
    for (int step = 0; step <= steps; step++) {
        auto r = model.score_grad(x.data(), 1, im.h, im.w);
        last = r.scores[0];
        if (step == 0) first = last;
        std::fprintf(stderr, "ascent step %d: score %.6f\n", step, last);
        float gmax = 0;
        for (float g : r.grad) gmax = std::max(gmax, std::abs(g));
        if (gmax == 0) break;
        for (std::size_t k = 0; k < px; k++) x[k] += lr * r.grad[k] / gmax;
    }
    const bool ok = last > first;
    std::fprintf(stderr, "gradient ascent: %.6f -> %.6f (%s)\n", first, last, ok ? "rising" : "NOT rising");
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s MODEL_DIR FILE.npy... [--steps K]\n", argv[0]);
        return 2;
    }
    const std::string model_dir = argv[1];
    std::vector<std::string> files;
    int steps = 5;
    for (int i = 2; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--steps" && i + 1 < argc) {
            steps = std::atoi(argv[++i]);
        } else {
            files.push_back(a);
        }
    }
    try {
        std::fprintf(stderr, "%s\n", ldctq::version().c_str());
        ldctq::Model model = ldctq::Model::open(model_dir);
        const ldctq_model_info info = model.info();
        std::fprintf(stderr, "model: %s input, %lld x %lld, scores in [%g, %g]\n",
                     info.input_space == LDCTQ_INPUT_SPACE_UNIT ? "[0, 1]" : "HU", (long long)info.image_size,
                     (long long)info.image_size, info.score_min, info.score_max);
        std::vector<NpyImages> images;
        std::size_t mid = 0;  // the image scored closest to the middle of the range: not saturated
        double mid_dist = 1e300;
        std::printf("path,frame,score\n");
        for (const auto& f : files) {
            images.push_back(read_npy(f));
            const NpyImages& im = images.back();
            const std::vector<double> s = model.score(im.data.data(), im.n, im.h, im.w);
            for (std::size_t i = 0; i < s.size(); i++) std::printf("%s,%zu,%.9f\n", f.c_str(), i, s[i]);
            const double dist = std::abs(s[0] - 0.5 * (info.score_min + info.score_max));
            if (dist < mid_dist) mid = images.size() - 1, mid_dist = dist;
        }
        std::fprintf(stderr, "gradient checks and ascent on %s\n", files[mid].c_str());
        bool ok = check_grad_f64(model_dir, images[mid]);
        ok = check_grad_f32(model, model_dir, images[mid]) && ok;
        ok = ascend(model, images[mid], steps) && ok;
        ok = check_maps(model, images[mid]) && ok;
        // Errors come back as exceptions carrying the status and the message.
        try {
            model.set_prompt("\xff not UTF-8");
            ok = false;
        } catch (const ldctq::Error& e) {
            std::fprintf(stderr, "expected error: status %d: %s\n", int(e.status()), e.what());
            ok = ok && e.status() == LDCTQ_STATUS_INVALID_UTF8;
        }
        return ok ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
