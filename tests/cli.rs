//! The `ldctq` binary end to end on the tiny fixtures: embed agrees with transformers, init + score
//! work, and bad arguments fail with a message.
mod common;

use common::{assert_rounding_close, fixture, load_tensors, temp_dir, SiglipSize};
use std::process::Command;
use tch::{Kind, Tensor};

fn ldctq(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ldctq")).args(args).output().expect("ldctq runs")
}

fn write_npy(path: &std::path::Path, t: &Tensor) {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
    ndarray_npy::write_npy(path, &ndarray::ArrayD::from_shape_vec(shape, data).unwrap()).unwrap();
}

fn read_npy(path: &std::path::Path) -> Tensor {
    let arr: ndarray::ArrayD<f32> = ndarray_npy::read_npy(path).unwrap();
    let shape: Vec<i64> = arr.shape().iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&arr.iter().copied().collect::<Vec<_>>()).view(shape.as_slice())
}

#[test]
fn embed_matches_transformers_for_images_tokens_and_text() {
    let dir = temp_dir("cli-embed");
    for name in ["tiny_a", "tiny_b"] {
        let model = fixture(&format!("siglip/{name}"));
        let want = load_tensors(&model.join("expected.safetensors"));
        let pv = dir.join(format!("{name}-pv.npy"));
        write_npy(&pv, &want["pixel_values"]);
        let (feats, toks) = (dir.join(format!("{name}-f.npy")), dir.join(format!("{name}-t.npy")));
        let m = model.to_str().unwrap();
        for (out, extra) in [(&feats, None), (&toks, Some("--tokens"))] {
            let mut args = vec![
                "embed",
                "--model",
                m,
                "--pixel-values",
                pv.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ];
            args.extend(extra);
            let o = ldctq(&args);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        // float32 against transformers' float64 values: float32 rounding of the towers' size.
        let size = SiglipSize::of(&model, want["vision.last_hidden_state"].size()[1]);
        let (f, t) = (&want["vision.pooler_output"], &want["vision.last_hidden_state"]);
        assert_rounding_close(
            &format!("{name} embed features"),
            &read_npy(&feats),
            f,
            Kind::Float,
            size.k,
            size.vision_pooled(),
        );
        assert_rounding_close(
            &format!("{name} embed tokens"),
            &read_npy(&toks),
            t,
            Kind::Float,
            size.k,
            size.vision_last(),
        );
    }
    // Text features of the tokenizer's encoding of a text equal text_model(input_ids).pooler_output.
    let model = fixture("siglip/tiny_a");
    let out = dir.join("text.npy");
    let o = ldctq(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "A noisy low-dose abdominal CT slice.",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = load_tensors(&model.join("expected.safetensors"));
    let size = SiglipSize::of(&model, want["vision.last_hidden_state"].size()[1]);
    let text = want["text.pooler_output"].narrow(0, 1, 1);
    assert_rounding_close(
        "tiny_a embed text",
        &read_npy(&out),
        &text,
        Kind::Float,
        size.k,
        size.text_pooled(),
    );
}

#[test]
fn init_then_score_and_clear_errors() {
    let dir = temp_dir("cli-score");
    let m = dir.join("model");
    let o = ldctq(&[
        "init",
        "--backbone",
        fixture("siglip/tiny_b").to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tif = fixture("io/f32.tif");
    let o = ldctq(&["score", "--model", m.to_str().unwrap(), "--format", "csv", tif.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = String::from_utf8_lossy(&o.stdout);
    let score: f64 = csv.lines().nth(1).unwrap().rsplit(',').next().unwrap().parse().unwrap();
    assert!((0.0..=4.0).contains(&score), "{csv}");
    let o = ldctq(&["score", "--model", "/nonexistent", tif.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("/nonexistent"));
    let o = ldctq(&["score", "--model", m.to_str().unwrap(), fixture("io/f32_2d.npy").to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("f32_2d.npy"));
}
