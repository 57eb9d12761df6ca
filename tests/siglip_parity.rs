//! Stage-by-stage parity of the SigLIP towers with Hugging Face `transformers`, on the tiny random
//! checkpoints made by `tests/fixtures/siglip/gen_siglip_fixtures.py`, CPU.
//!
//! The expectations are transformers' float64 outputs of the float32 weights (exact to about 1e-15).
//! Float64 runs of the port must match them to float64 rounding; float32, bfloat16 and float16 runs,
//! and checkpoints stored in bfloat16 or float16, within the rounding of their precision
//! (`common::rounding_tol`, from the size of the computation): whichever kernels the CPU runs.
mod common;

use common::{assert_close, assert_rounding_close, fixture, load_tensors, max_abs, rounding_tol, SiglipSize};
use ldctq::siglip::{l2_normalize, SiglipModel};
use ldctq::Placement;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// The computation's size: the largest image (the interpolated one) sets the token count.
fn size_of(dir: &std::path::Path, want: &HashMap<String, Tensor>) -> SiglipSize {
    SiglipSize::of(dir, want["vision.interp.last_hidden_state"].size()[1])
}

fn check_model(name: &str, kind: Kind) {
    let dir = fixture(&format!("siglip/{name}"));
    let want = load_tensors(&dir.join("expected.safetensors"));
    let size = size_of(&dir, &want);
    let model = SiglipModel::load(dir.to_str().unwrap(), Placement { device: Device::Cpu, kind }).unwrap();
    let _guard = tch::no_grad_guard();
    // Both the run and the reference round in f64; a float32 run's error dwarfs the reference's.
    let sides = if kind == Kind::Double { 2.0 } else { 1.0 };
    let check = |stage: &str, got: &Tensor, key: &str, depth: i64| {
        assert_eq!(got.kind(), kind, "{stage}");
        let tol = sides * rounding_tol(kind, size.k, depth, max_abs(&want[key]));
        assert_close(&format!("{name} {kind:?} {stage}"), got, &want[key], tol);
    };
    let pixel_values = want["pixel_values"].to_kind(kind);

    // Vision tower: embeddings, every layer, post-LN, MAP head.
    let out = model.vision.vision_model.forward(&pixel_values, true, true).unwrap();
    let layers = model.config.vision_config.num_hidden_layers;
    assert_eq!(out.hidden_states.len() as i64, layers + 1);
    check("vision.embeddings", &out.hidden_states[0], "vision.embeddings", size.vision_hidden(0));
    for (i, h) in out.hidden_states.iter().enumerate() {
        let key = format!("vision.hidden_states.{i}");
        check(&key, h, &key, size.vision_hidden(i as i64));
    }
    check("vision.last_hidden_state", &out.last_hidden_state, "vision.last_hidden_state", size.vision_last());
    let pooled = out.pooler_output.unwrap();
    check("vision.pooler_output", &pooled, "vision.pooler_output", size.vision_pooled());
    check("image_embeds", &l2_normalize(&pooled).unwrap(), "image_embeds", size.vision_pooled() + 1);

    // Interpolated position table (one more layer: the bicubic resize) at another, non-square size.
    let interp =
        model.vision.vision_model.forward(&want["pixel_values_interp"].to_kind(kind), false, true).unwrap();
    let key = "vision.interp.last_hidden_state";
    check(key, &interp.last_hidden_state, key, size.vision_last() + 1);
    let key = "vision.interp.pooler_output";
    check(key, interp.pooler_output.as_ref().unwrap(), key, size.vision_pooled() + 1);

    // Text tower: every layer, final LN, last-position pooling + head.
    let ids = &want["input_ids"];
    let text = model.text.text_model.forward(ids, true).unwrap();
    for (i, h) in text.hidden_states.iter().enumerate() {
        let key = format!("text.hidden_states.{i}");
        check(&key, h, &key, size.text_hidden(i as i64));
    }
    check("text.last_hidden_state", &text.last_hidden_state, "text.last_hidden_state", size.text_last());
    check("text.pooler_output", &text.pooler_output, "text.pooler_output", size.text_pooled());
    let text_embeds = l2_normalize(&text.pooler_output).unwrap();
    check("text_embeds", &text_embeds, "text_embeds", size.text_pooled() + 1);

    // Logits of the whole model: cosine (one more sum) of both embeddings, scaled.
    let logits = model.logits_per_image(&pixel_values, ids).unwrap();
    let depth = size.vision_pooled().max(size.text_pooled()) + 3;
    check("logits_per_image", &logits, "logits_per_image", depth);
}

#[test]
fn tiny_a_matches_transformers() {
    check_model("tiny_a", Kind::Double);
    check_model("tiny_a", Kind::Float);
}

#[test]
fn tiny_b_matches_transformers() {
    check_model("tiny_b", Kind::Double);
    check_model("tiny_b", Kind::Float);
}

/// A sharded checkpoint, and checkpoints stored in bf16 or f16, load into f32: each must give the
/// float64 outputs of its own stored weights (`tiny_a_{bf16,f16}/expected.safetensors`) to float32
/// rounding, so the file is read exactly. A bf16 tower (the f32 file rounded to bf16 on loading, the
/// same weights as `tiny_a_bf16`) computes in bf16 with f32 accumulation: each activation is rounded
/// to bf16 once per layer (k = 1).
#[test]
fn sharded_and_half_precision_checkpoints_load() {
    let _guard = tch::no_grad_guard();
    let dir = fixture("siglip/tiny_a");
    let size = size_of(&dir, &load_tensors(&dir.join("expected.safetensors")));
    let (key, depth) = ("vision.pooler_output", size.vision_pooled());
    for (folder, expected) in
        [("tiny_a_sharded", "tiny_a"), ("tiny_a_bf16", "tiny_a_bf16"), ("tiny_a_f16", "tiny_a_f16")]
    {
        let want = load_tensors(&fixture(&format!("siglip/{expected}/expected.safetensors")));
        let model =
            SiglipModel::load(fixture(&format!("siglip/{folder}")).to_str().unwrap(), Placement::default())
                .unwrap();
        let feats = model.vision.image_features(&want["pixel_values"]).unwrap();
        assert_eq!(feats.kind(), Kind::Float);
        assert_rounding_close(
            &format!("{folder} pooler_output"),
            &feats,
            &want[key],
            Kind::Float,
            size.k,
            depth,
        );
    }
    // The bf16 weights' float64 outputs differ from the f32 weights' by far more than float32
    // rounding: the check above tells the stored precision apart.
    let (f32_want, bf16_want) = (
        load_tensors(&dir.join("expected.safetensors")),
        load_tensors(&fixture("siglip/tiny_a_bf16/expected.safetensors")),
    );
    let apart = common::max_abs_diff(&f32_want[key], &bf16_want[key]);
    assert!(apart > 100.0 * rounding_tol(Kind::Float, size.k, depth, max_abs(&f32_want[key])), "{apart}");
    // And computed in bf16 from the f32 file.
    let at = Placement { kind: Kind::BFloat16, ..Placement::default() };
    let model = SiglipModel::load(dir.to_str().unwrap(), at).unwrap();
    let feats = model.vision.image_features(&bf16_want["pixel_values"].to_kind(Kind::BFloat16)).unwrap();
    assert_eq!(feats.kind(), Kind::BFloat16);
    assert_rounding_close(
        "tiny_a bf16 compute pooler_output",
        &feats,
        &bf16_want[key],
        Kind::BFloat16,
        1,
        depth,
    );
}

#[test]
fn hf_cache_layout_resolves_by_repo_id() {
    let root = common::temp_dir("hfcache");
    let repo = root.join("models--test-org--tiny-a");
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(fixture("siglip/tiny_a").join(f), snap.join(f)).unwrap();
    }
    // SAFETY of set_var: this test binary's other tests do not read HF_HUB_CACHE.
    std::env::set_var("HF_HUB_CACHE", &root);
    let dir = ldctq::checkpoint::resolve_model_dir("test-org/tiny-a").unwrap();
    assert_eq!(dir, snap);
    let model = SiglipModel::load("test-org/tiny-a", Placement::default()).unwrap();
    assert_eq!(model.config.vision_config.hidden_size, 32);
    // The cache folder itself works too; an absent repo id is a clear error.
    assert_eq!(ldctq::checkpoint::resolve_model_dir(repo.to_str().unwrap()).unwrap(), snap);
    let err = ldctq::checkpoint::resolve_model_dir("test-org/absent").unwrap_err().to_string();
    assert!(err.contains("test-org/absent") && err.contains("never downloads"), "{err}");
}
