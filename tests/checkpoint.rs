//! Loader errors: every offending tensor is named, with expected and found shapes; no panics.
mod common;

use common::{fixture, temp_dir};
use ldctq::siglip::SiglipModel;
use ldctq::Placement;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// A copy of tiny_a whose weights are `edit`ed.
fn edited_copy(tag: &str, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> PathBuf {
    let src = fixture("siglip/tiny_a");
    let dir = temp_dir(tag);
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut tensors = Tensor::read_safetensors(src.join("model.safetensors")).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    SiglipModel::load(dir.to_str().unwrap(), Placement::default()).unwrap_err().to_string()
}

#[test]
fn missing_tensor_is_named_with_its_shape() {
    let dir = edited_copy("missing", |t| t.retain(|(n, _)| n != "vision_model.post_layernorm.weight"));
    let err = load_err(&dir);
    assert!(err.contains("missing tensor vision_model.post_layernorm.weight (expected shape [32])"), "{err}");
}

#[test]
fn unexpected_tensor_is_named() {
    let dir = edited_copy("extra", |t| {
        t.push(("vision_model.extra.weight".into(), Tensor::zeros([3], tch::kind::FLOAT_CPU)))
    });
    let err = load_err(&dir);
    assert!(err.contains("unexpected tensor vision_model.extra.weight (shape [3])"), "{err}");
}

#[test]
fn every_wrong_shape_is_listed() {
    let dir = edited_copy("shape", |t| {
        for (name, tensor) in t.iter_mut() {
            if name == "text_model.head.weight" || name == "vision_model.head.probe" {
                *tensor = tensor.narrow(-1, 0, 5).contiguous();
            }
        }
    });
    let err = load_err(&dir);
    assert!(err.contains("tensor text_model.head.weight: expected shape [32, 32], found [32, 5]"), "{err}");
    assert!(
        err.contains("tensor vision_model.head.probe: expected shape [1, 1, 32], found [1, 1, 5]"),
        "{err}"
    );
}

#[test]
fn integer_dtype_is_rejected() {
    let dir = edited_copy("dtype", |t| {
        for (name, tensor) in t.iter_mut() {
            if name == "logit_bias" {
                *tensor = tensor.to_kind(Kind::Int64);
            }
        }
    });
    let err = load_err(&dir);
    assert!(err.contains("logit_bias") && err.contains("not a floating-point type"), "{err}");
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let dir = edited_copy("trunc", |_| {});
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(&dir);
    assert!(err.contains("model.safetensors") && err.contains("not a valid safetensors file"), "{err}");
    std::fs::write(&path, b"garbage").unwrap();
    assert!(load_err(&dir).contains("not a valid safetensors file"));
    std::fs::remove_file(&path).unwrap();
    assert!(load_err(&dir).contains("neither model.safetensors nor model.safetensors.index.json"));
}

#[test]
fn config_errors_name_the_file_and_field() {
    let dir = edited_copy("config", |_| {});
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"hidden_size\": 32,", "")).unwrap();
    let err = load_err(&dir);
    assert!(err.contains("config.json") && err.contains("hidden_size"), "{err}");
    std::fs::write(&cfg, "{").unwrap();
    assert!(load_err(&dir).contains("config.json"));
    assert!(load_err(Path::new("/nonexistent-model")).contains("/nonexistent-model"));
}

/// A prompt's text features from a tower holding only the embedding rows its tokens use equal the
/// full tower's; out-of-range ids and a mis-shaped table are errors.
#[test]
fn text_features_from_the_used_embedding_rows_equal_the_full_tower() {
    use ldctq::siglip::Pretrained;
    let spec = fixture("siglip/tiny_a").display().to_string();
    let full = SiglipModel::load(&spec, Placement::default()).unwrap();
    let p = Pretrained::open(&spec).unwrap();
    let ids = full.tokenizer.encode_batch(&["a low-dose CT slice", "noise, streaks and blur"]).unwrap();
    let want = full.text.text_features(&ids).unwrap();
    let got = p.text_features(&ids, Placement::default()).unwrap();
    common::assert_close("text features from used rows", &got, &want, 0.0);

    let vocab = p.config.text_config.vocab_size;
    let err = p.checkpoint.rows("text_model.embeddings.token_embedding.weight", &[0, vocab]).unwrap_err();
    assert!(err.to_string().contains(&format!("row {vocab} out of range")), "{err}");

    let dir = edited_copy("table", |t| {
        for (n, v) in t.iter_mut() {
            if n == "text_model.embeddings.token_embedding.weight" {
                *v = v.narrow(1, 0, 8).contiguous();
            }
        }
    });
    let err = Pretrained::open(dir.to_str().unwrap())
        .unwrap()
        .text_features(&ids, Placement::default())
        .unwrap_err();
    assert!(err.to_string().contains("token_embedding.weight"), "{err}");
}
