//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Kind, Tensor};

/// What a toy criterion of the tests says of itself: scores in [0, 4], higher better, on [0, 1] images
/// in the LDCTIQA window, any size, no anatomies.
pub fn toy_info(name: &str) -> ldctq::criterion::CriterionInfo {
    ldctq::criterion::CriterionInfo {
        name: name.into(),
        higher_is_better: true,
        score_range: (0.0, 4.0),
        input: ldctq::Space::Unit,
        window: ldctq::Window::LDCTIQA,
        image_size: 0,
        anatomies: Vec::new(),
    }
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// Tensors of a safetensors file by name.
pub fn load_tensors(path: &std::path::Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

/// Max |a - b| over all elements, in f64.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_device(tch::Device::Cpu).to_kind(Kind::Double);
    let b = b.to_device(tch::Device::Cpu).to_kind(Kind::Double);
    (a - b).abs().max().double_value(&[])
}

/// Max |t| over all elements, in f64.
pub fn max_abs(t: &Tensor) -> f64 {
    t.to_device(tch::Device::Cpu).to_kind(Kind::Double).abs().max().double_value(&[])
}

/// Unit roundoff u of a floating-point dtype: a value rounded to it is off by at most u relatively.
pub fn unit_roundoff(kind: Kind) -> f64 {
    match kind {
        Kind::Double => 2f64.powi(-53),
        Kind::Float => 2f64.powi(-24),
        Kind::Half => 2f64.powi(-11),
        Kind::BFloat16 => 2f64.powi(-8),
        k => panic!("no unit roundoff for {k:?}"),
    }
}

/// Safety factor of [`rounding_tol`]. Rounding errors of a sum of k terms stay below λ sqrt(k) u of
/// its terms' magnitude except with probability 2 exp(-λ²/2) (Higham and Mary, "A new approach to
/// probabilistic rounding error analysis", 2019): λ = 8 puts a failure beyond 1e-13 per sum, and also
/// covers the small constants of layer norm, softmax, GELU and the heads' calibrated gains (measured
/// margins in docs/testing.md).
pub const ROUNDING_C: f64 = 8.0;

/// How far a computation carried out in `kind` may land from its exact value, whatever kernels (AVX2,
/// AVX-512, AMX, any thread count) carry it out: `ROUNDING_C * u * sqrt(k) * depth * scale`.
///
/// - `kind`: the precision the values are rounded to (u = [`unit_roundoff`]);
/// - `k`: the longest sum accumulated in that precision (a dot product's length, an attention's
///   token count); 1 where each value is rounded once and sums accumulate in a wider type (bf16 weights
///   or activations with f32 accumulation);
/// - `depth`: how many layers the rounding errors pass through and add up in;
/// - `scale`: the magnitude of the values compared (usually the max |value| of the exact result).
///
/// Two runs of the same computation on different CPUs each stay within this of the exact value, so
/// tests compare against float64 expectations (the exact value to about 1e-15) with it, never against
/// another machine's float32 rounding.
pub fn rounding_tol(kind: Kind, k: i64, depth: i64, scale: f64) -> f64 {
    assert!(k >= 1 && depth >= 1 && scale > 0.0, "rounding_tol(k {k}, depth {depth}, scale {scale})");
    ROUNDING_C * unit_roundoff(kind) * (k as f64).sqrt() * depth as f64 * scale
}

/// [`assert_close`] with [`rounding_tol`] of a computation in `kind` (longest sum `k`, `depth`
/// layers) at the scale of `want` (its max |value|).
pub fn assert_rounding_close(label: &str, got: &Tensor, want: &Tensor, kind: Kind, k: i64, depth: i64) {
    assert_close(label, got, want, rounding_tol(kind, k, depth, max_abs(want)));
}

/// llm.c-style check: same shape and max |a - b| <= tol, printing the first values, the max diff and
/// its ratio to the tolerance.
pub fn assert_close(label: &str, got: &Tensor, want: &Tensor, tol: f64) {
    assert_eq!(got.size(), want.size(), "{label}: shape");
    let diff = max_abs_diff(got, want);
    let first = |t: &Tensor| -> Vec<f64> {
        let flat = t.to_device(tch::Device::Cpu).to_kind(Kind::Double).flatten(0, -1);
        let n = flat.size()[0].min(5);
        Vec::<f64>::try_from(flat.narrow(0, 0, n)).unwrap()
    };
    if tol > 0.0 {
        println!("{label:<44} maxdiff {diff:.3e}  tol {tol:.1e}  ({:.3} of tol)", diff / tol);
    } else {
        println!("{label:<44} maxdiff {diff:.3e}  (exact)");
    }
    assert!(
        diff <= tol,
        "{label}: max abs diff {diff:.3e} > {tol:e}\n  got  {:?}\n  want {:?}",
        first(got),
        first(want)
    );
}

/// The python of the project's virtualenv (tests call it for pydicom's data files).
pub fn python() -> PathBuf {
    std::env::var_os("LDCTQ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// A fresh temporary folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ldctq-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
/// A tiny LDCTIQA2023-layout set: smooth images whose noise grows as the label falls.
pub fn synthetic_set(n: usize) -> PathBuf {
    let dir = temp_dir("set");
    std::fs::create_dir_all(dir.join("image")).unwrap();
    let mut labels = serde_json::Map::new();
    // A generator of its own: libtorch's global one is shared with tests running in parallel.
    let mut rng = ldctq::rng::Rng::new(5);
    for i in 0..n {
        let label = ((i * 37) % 21) as f64 * 0.2;
        let ramp = Tensor::linspace(0.2, 0.8, 16, tch::kind::FLOAT_CPU);
        let normal: Vec<f32> = (0..256).map(|_| rng.normal() as f32).collect();
        let noise = Tensor::from_slice(&normal).view([16, 16]) * ((4.0 - label) * 0.06);
        let img = (ramp.unsqueeze(0) + ramp.unsqueeze(1) * 0.5 + noise).clamp(0.0, 1.0);
        let arr =
            ndarray::Array2::from_shape_vec((16, 16), Vec::<f32>::try_from(img.flatten(0, -1)).unwrap())
                .unwrap();
        let name = format!("{i:04}.tif");
        ldctq::io::write_tiff_f32(&dir.join("image").join(&name), &arr.view()).unwrap();
        labels.insert(name, serde_json::json!(label));
    }
    std::fs::write(dir.join("train.json"), serde_json::to_string(&labels).unwrap()).unwrap();
    dir
}

/// The trainer settings of the trainer tests: small batches, fold 1 of 3, the last vision block.
pub fn tiny_train_config(epochs: usize) -> ldctq::train::TrainConfig {
    ldctq::train::TrainConfig {
        epochs,
        batch_size: 4,
        accumulation: 2,
        lr: 1e-3,
        head_lr: Some(3e-3),
        folds: 3,
        only_fold: Some(1),
        seed: 9,
        vision: ldctq::train::VisionTraining::LastBlocks(1),
        ..Default::default()
    }
}

pub mod bench;

/// The size of a SigLIP tower's computation as [`rounding_tol`] takes it, and the depth of each of
/// its outputs.
pub struct SiglipSize {
    /// The longest sum: the patch embedding (3 p^2), the widths and MLP widths, the 64 text
    /// positions, and `tokens`, the most image tokens an attention sums over.
    pub k: i64,
    pub vision_layers: i64,
    pub text_layers: i64,
}

impl SiglipSize {
    /// Of the backbone folder `dir`, for images of up to `tokens` patches.
    pub fn of(dir: &std::path::Path, tokens: i64) -> Self {
        let config = ldctq::config::SiglipConfig::from_file(&dir.join("config.json")).unwrap();
        let (v, t) = (&config.vision_config, &config.text_config);
        let k = [
            3 * v.patch_size * v.patch_size,
            v.hidden_size,
            v.intermediate_size,
            tokens,
            t.hidden_size,
            t.intermediate_size,
            t.max_position_embeddings,
        ];
        Self {
            k: k.into_iter().max().unwrap(),
            vision_layers: v.num_hidden_layers,
            text_layers: t.num_hidden_layers,
        }
    }

    /// `hidden_states[i]` of the vision tower: the patch embedding and i layers.
    pub fn vision_hidden(&self, i: i64) -> i64 {
        i + 1
    }

    /// The vision tower's post-layer-norm tokens.
    pub fn vision_last(&self) -> i64 {
        self.vision_layers + 2
    }

    /// The MAP head's output (attention, then layer norm and MLP).
    pub fn vision_pooled(&self) -> i64 {
        self.vision_last() + 2
    }

    /// `hidden_states[i]` of the text tower: the embeddings and i layers.
    pub fn text_hidden(&self, i: i64) -> i64 {
        i + 1
    }

    /// The text tower's final-layer-norm states.
    pub fn text_last(&self) -> i64 {
        self.text_layers + 2
    }

    /// The head's projection of the last position.
    pub fn text_pooled(&self) -> i64 {
        self.text_last() + 1
    }
}

/// The size of a quality model's computation (backbone, FiLM, pooling, heads, fusion) as
/// [`rounding_tol`] takes it, and the depth of each stage: the layers its rounding passes through
/// (embedding, encoder layers, final layer norm; FiLM generator 2; pooling 1; heads 2; fusion 2;
/// sigmoid 1; the resize's two passes).
pub struct QualitySize {
    /// The longest sum: the backbone's ([`SiglipSize`]) or the local head's input (4 d).
    pub k: i64,
    pub resize: i64,
    pub tokens: i64,
    pub z_t: i64,
    pub film: i64,
    pub tokens_film: i64,
    pub pooled: i64,
    pub y: i64,
    pub logit: i64,
    pub score: i64,
}

impl QualitySize {
    /// Of a model on the backbone folder `backbone`, for images of `tokens` patches.
    pub fn of(backbone: &std::path::Path, tokens: i64) -> Self {
        let siglip = SiglipSize::of(backbone, tokens);
        let config = ldctq::config::SiglipConfig::from_file(&backbone.join("config.json")).unwrap();
        let k = siglip.k.max(4 * config.vision_config.hidden_size);
        let (tokens, z_t) = (siglip.vision_last(), siglip.text_pooled() + 1);
        let film = z_t + 2;
        let tokens_film = tokens.max(film) + 1;
        let pooled = tokens_film + 1;
        let y = pooled + 2;
        let logit = y + 2;
        Self { k, resize: 2, tokens, z_t, film, tokens_film, pooled, y, logit, score: logit + 1 }
    }

    /// From the raw images to the scores.
    pub fn end_to_end(&self) -> i64 {
        self.resize + self.score
    }

    /// Two float64 runs of the scores that may take different kernels or graphs: each within
    /// [`rounding_tol`] of the exact value.
    pub fn f64_scores_tol(&self, scale: f64) -> f64 {
        2.0 * rounding_tol(Kind::Double, self.k, self.end_to_end(), scale)
    }

    /// Two float64 runs of the input gradient: the backward pass goes through every layer again.
    pub fn f64_grad_tol(&self, scale: f64) -> f64 {
        2.0 * rounding_tol(Kind::Double, self.k, 2 * self.end_to_end(), scale)
    }
}
