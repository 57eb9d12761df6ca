//! Parity of the whole scorer with an independent PyTorch implementation of the paper's model
//! (`tests/fixtures/quality/gen_quality_fixtures.py`), stage by stage, f32, CPU.
mod common;

use common::{assert_close, fixture, load_tensors, max_abs_diff};
use ldctq::criterion::QualityCriterion;
use ldctq::model::QualityModel;
use ldctq::Placement;
use tch::Kind;

fn check(name: &str) {
    tch::set_num_threads(1);
    let want = load_tensors(&fixture(&format!("quality/{name}.expected.safetensors")));
    let model = QualityModel::load(&fixture(&format!("quality/{name}")), Placement::default()).unwrap();
    let images = &want["images"];
    let pixel_values = model.config.preprocess().pixel_values(images).unwrap();
    assert_close(&format!("{name} pixel_values"), &pixel_values, &want["pixel_values"], 1e-5);
    assert_close(&format!("{name} z_t"), &model.prompt_embedding().unwrap(), &want["z_t"], 1e-5);
    let st = tch::no_grad(|| model.forward_stages(&want["pixel_values"], None)).unwrap();
    for (label, got) in [
        ("gamma", &st.gamma),
        ("beta", &st.beta),
        ("tokens", &st.tokens),
        ("tokens_film", &st.tokens_film),
        ("h_g", &st.h_g),
        ("h_l", &st.h_l),
        ("h_tex", &st.h_tex),
        ("y", &st.y),
        ("logit", &st.logit),
        ("score", &st.score),
    ] {
        assert_close(&format!("{name} {label}"), got, &want[label], 1e-5);
    }
    // End to end from the raw images, and the vector-Jacobian product.
    let (scores, grad) = model.score_and_grad(images, Some(&want["upstream"])).unwrap();
    assert_close(&format!("{name} score (from images)"), &scores, &want["score"], 1e-5);
    let scale = want["grad"].abs().max().double_value(&[]);
    let rel = max_abs_diff(&grad, &want["grad"]) / scale;
    println!("{name} grad: max abs diff relative to max |grad| = {rel:.2e}");
    assert!(rel < 1e-4, "{name}: gradient differs by {rel:e} of its max");
    assert_eq!(grad.kind(), Kind::Float);
}

#[test]
fn unit_input_sequence_pooling_matches_pytorch() {
    check("a_unit_seq");
}

#[test]
fn hu_input_grid_pooling_matches_pytorch() {
    check("b_hu_grid");
}

#[test]
fn film_strength_zero_matches_pytorch() {
    check("a_unit_s0");
}
