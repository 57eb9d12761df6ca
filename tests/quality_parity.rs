//! Parity of the whole scorer with an independent PyTorch implementation of the paper's model
//! (`tests/fixtures/quality/gen_quality_fixtures.py`), stage by stage, CPU.
//!
//! The expectations are the float64 outputs of the float32 weights (exact to about 1e-15). A float64
//! run of the model must match them to float64 rounding and a float32 run to float32 rounding, both
//! bounded by `common::rounding_tol` from the size of the computation, so the test passes whichever
//! kernels the CPU runs (AVX2, AVX-512, AMX) and with any number of threads.
mod common;

use common::{assert_close, fixture, load_tensors, max_abs, rounding_tol, QualitySize};
use ldctq::criterion::QualityCriterion;
use ldctq::model::QualityModel;
use ldctq::Placement;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// The computation's size: the fixture's backbone at the fixture's token count.
fn size_of(dir: &std::path::Path, want: &HashMap<String, Tensor>) -> QualitySize {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ldctq.json")).unwrap()).unwrap();
    QualitySize::of(&dir.join(config["backbone"].as_str().unwrap()), want["tokens"].size()[1])
}

fn check(name: &str, kind: Kind) {
    let want = load_tensors(&fixture(&format!("quality/{name}.expected.safetensors")));
    let dir = fixture(&format!("quality/{name}"));
    let size = size_of(&dir, &want);
    let model = QualityModel::load(&dir, Placement { device: Device::Cpu, kind }).unwrap();
    let label = |stage: &str| format!("{name} {kind:?} {stage}");
    // Both the run and the reference round in f64; a float32 run's error dwarfs the reference's.
    let sides = if kind == Kind::Double { 2.0 } else { 1.0 };
    let tol = |want: &Tensor, depth: i64| sides * rounding_tol(kind, size.k, depth, max_abs(want));
    let d = &size;
    let images = want["images"].to_kind(kind);
    let pixel_values = model.config.preprocess().pixel_values(&images).unwrap();
    assert_close(
        &label("pixel_values"),
        &pixel_values,
        &want["pixel_values"],
        tol(&want["pixel_values"], d.resize),
    );
    assert_close(&label("z_t"), &model.prompt_embedding().unwrap(), &want["z_t"], tol(&want["z_t"], d.z_t));
    let st = tch::no_grad(|| model.forward_stages(&want["pixel_values"], None)).unwrap();
    for (stage, got, depth) in [
        ("gamma", &st.gamma, d.film),
        ("beta", &st.beta, d.film),
        ("tokens", &st.tokens, d.tokens),
        ("tokens_film", &st.tokens_film, d.tokens_film),
        ("h_g", &st.h_g, d.pooled),
        ("h_l", &st.h_l, d.pooled),
        ("h_tex", &st.h_tex, d.pooled),
        ("y", &st.y, d.y),
        ("logit", &st.logit, d.logit),
        ("score", &st.score, d.score),
    ] {
        assert_eq!(got.kind(), kind, "{stage}");
        assert_close(&label(stage), got, &want[stage], tol(&want[stage], depth));
    }
    // End to end from the raw images, and the vector-Jacobian product: the backward pass runs
    // through every layer of the forward pass again.
    let (scores, grad) = model.score_and_grad(&images, Some(&want["upstream"])).unwrap();
    let end_to_end = d.end_to_end();
    assert_close(&label("score (from images)"), &scores, &want["score"], tol(&want["score"], end_to_end));
    assert_close(&label("grad"), &grad, &want["grad"], tol(&want["grad"], 2 * end_to_end));
    assert_eq!(grad.kind(), kind);
}

#[test]
fn unit_input_sequence_pooling_matches_pytorch() {
    check("a_unit_seq", Kind::Double);
    check("a_unit_seq", Kind::Float);
}

#[test]
fn hu_input_grid_pooling_matches_pytorch() {
    check("b_hu_grid", Kind::Double);
    check("b_hu_grid", Kind::Float);
}

#[test]
fn film_strength_zero_matches_pytorch() {
    check("a_unit_s0", Kind::Double);
    check("a_unit_s0", Kind::Float);
}

/// The float64 check can fail: a float32 run (as a float32 leak into the float64 path would give) is
/// not within float64 rounding of the expectations.
#[test]
fn float64_tolerance_tells_float32_apart() {
    let want = load_tensors(&fixture("quality/a_unit_seq.expected.safetensors"));
    let dir = fixture("quality/a_unit_seq");
    let size = size_of(&dir, &want);
    let score = QualityModel::load(&dir, Placement::default()).unwrap().score(&want["images"]).unwrap();
    let f64_tol = size.f64_scores_tol(max_abs(&want["score"]));
    let diff = common::max_abs_diff(&score, &want["score"]);
    assert!(diff > 100.0 * f64_tol, "float32 scores within 100x float64 rounding ({diff:e}, {f64_tol:e})");
}
