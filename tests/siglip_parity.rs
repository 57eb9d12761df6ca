//! Stage-by-stage parity of the SigLIP towers with Hugging Face `transformers`, on the tiny random
//! checkpoints made by `tests/fixtures/siglip/gen_siglip_fixtures.py` (f32, CPU, max abs error 1e-5).
mod common;

use common::{assert_close, fixture, load_tensors};
use ldctq::siglip::{l2_normalize, SiglipModel};
use ldctq::Placement;
use tch::Kind;

const TOL: f64 = 1e-5;

fn check_model(name: &str) {
    tch::set_num_threads(1);
    let dir = fixture(&format!("siglip/{name}"));
    let want = load_tensors(&dir.join("expected.safetensors"));
    let model = SiglipModel::load(dir.to_str().unwrap(), Placement::default()).unwrap();
    let _guard = tch::no_grad_guard();

    // Vision tower: embeddings, every layer, post-LN, MAP head.
    let out = model.vision.vision_model.forward(&want["pixel_values"], true, true).unwrap();
    let layers = model.config.vision_config.num_hidden_layers as usize;
    assert_eq!(out.hidden_states.len(), layers + 1);
    assert_close(
        &format!("{name} vision.embeddings"),
        &out.hidden_states[0],
        &want["vision.embeddings"],
        TOL,
    );
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(
            &format!("{name} vision.hidden_states.{i}"),
            h,
            &want[&format!("vision.hidden_states.{i}")],
            TOL,
        );
    }
    assert_close(
        &format!("{name} vision.last_hidden_state"),
        &out.last_hidden_state,
        &want["vision.last_hidden_state"],
        TOL,
    );
    let pooled = out.pooler_output.unwrap();
    assert_close(&format!("{name} vision.pooler_output"), &pooled, &want["vision.pooler_output"], TOL);
    assert_close(
        &format!("{name} image_embeds"),
        &l2_normalize(&pooled).unwrap(),
        &want["image_embeds"],
        TOL,
    );

    // Interpolated position table at another (non-square) size.
    let interp = model.vision.vision_model.forward(&want["pixel_values_interp"], false, true).unwrap();
    assert_close(
        &format!("{name} vision.interp.last_hidden_state"),
        &interp.last_hidden_state,
        &want["vision.interp.last_hidden_state"],
        TOL,
    );
    assert_close(
        &format!("{name} vision.interp.pooler_output"),
        interp.pooler_output.as_ref().unwrap(),
        &want["vision.interp.pooler_output"],
        TOL,
    );

    // Text tower: every layer, final LN, last-position pooling + head.
    let ids = &want["input_ids"];
    let text = model.text.text_model.forward(ids, true).unwrap();
    for (i, h) in text.hidden_states.iter().enumerate() {
        assert_close(
            &format!("{name} text.hidden_states.{i}"),
            h,
            &want[&format!("text.hidden_states.{i}")],
            TOL,
        );
    }
    assert_close(
        &format!("{name} text.last_hidden_state"),
        &text.last_hidden_state,
        &want["text.last_hidden_state"],
        TOL,
    );
    assert_close(
        &format!("{name} text.pooler_output"),
        &text.pooler_output,
        &want["text.pooler_output"],
        TOL,
    );
    assert_close(
        &format!("{name} text_embeds"),
        &l2_normalize(&text.pooler_output).unwrap(),
        &want["text_embeds"],
        TOL,
    );

    // Logits of the whole model.
    let logits = model.logits_per_image(&want["pixel_values"], ids).unwrap();
    assert_close(&format!("{name} logits_per_image"), &logits, &want["logits_per_image"], 1e-4);
}

#[test]
fn tiny_a_matches_transformers() {
    check_model("tiny_a");
}

#[test]
fn tiny_b_matches_transformers() {
    check_model("tiny_b");
}

#[test]
fn sharded_and_half_precision_checkpoints_load() {
    let _guard = tch::no_grad_guard();
    let want = load_tensors(&fixture("siglip/tiny_a/expected.safetensors"));
    let pv = &want["pixel_values"];
    for (folder, tol) in [("tiny_a_sharded", TOL), ("tiny_a_bf16", 0.05), ("tiny_a_f16", 0.005)] {
        let dir = fixture(&format!("siglip/{folder}"));
        // Loaded into f32: the stored precision limits the accuracy, not the compute.
        let model = SiglipModel::load(dir.to_str().unwrap(), Placement::default()).unwrap();
        let feats = model.vision.image_features(pv).unwrap();
        assert_eq!(feats.kind(), Kind::Float);
        assert_close(&format!("{folder} pooler_output"), &feats, &want["vision.pooler_output"], tol);
    }
    // And computed in bf16 from the f32 file.
    let at = Placement { kind: Kind::BFloat16, ..Placement::default() };
    let model = SiglipModel::load(fixture("siglip/tiny_a").to_str().unwrap(), at).unwrap();
    let feats = model.vision.image_features(&pv.to_kind(Kind::BFloat16)).unwrap();
    assert_eq!(feats.kind(), Kind::BFloat16);
    assert_close("tiny_a bf16 compute pooler_output", &feats, &want["vision.pooler_output"], 0.05);
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
