//! Criterion benchmarks of the pieces: preprocessing, the vision tower (f32 and bf16, one
//! MedSigLIP-width layer), score + gradient with and without activation checkpointing, the ranking
//! loss and the rank metrics. The whole-model, side-by-side comparison with transformers is
//! `benches/compare_transformers.py` (`make bench`).
//!
//! cargo bench --bench pieces            (LDCTQ_CPU_ATTENTION=sdpa for libtorch's flash attention)
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ldctq::config::SiglipVisionConfig;
use ldctq::criterion::QualityCriterion;
use ldctq::model::QualityModel;
use ldctq::preprocess::Preprocess;
use ldctq::siglip::SiglipVisionModel;
use ldctq::Placement;
use ldctq::{Space, Window};
use std::path::PathBuf;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

fn preprocess(c: &mut Criterion) {
    let pre = Preprocess { input: Space::Unit, window: Window::LDCTIQA, image_size: 448 };
    let x = Tensor::rand([1, 1, 512, 512], (Kind::Float, Device::Cpu));
    c.bench_function("preprocess/512_to_448", |b| b.iter(|| tch::no_grad(|| pre.pixel_values(&x).unwrap())));
}

/// One MedSigLIP-448 encoder layer's worth of work: d=1152, 16 heads, MLP 4304, 1024 tokens.
fn vision_layer(c: &mut Criterion) {
    let cfg: SiglipVisionConfig = serde_json::from_value(serde_json::json!({
        "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 1, "num_attention_heads": 16,
        "image_size": 448, "patch_size": 14, "vision_use_head": false
    }))
    .unwrap();
    let mut group = c.benchmark_group("vision_tower_1_layer_448");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for kind in [Kind::Float, Kind::BFloat16] {
        let tower = SiglipVisionModel::new(&cfg, Placement { device: Device::Cpu, kind }).unwrap();
        tch::no_grad(|| {
            for (_, mut v) in tower.vs.variables() {
                let _ = v.normal_(0.0, 0.02);
            }
        });
        tower.vs.variables().values().for_each(|v| {
            let _ = v.set_requires_grad(false);
        });
        let x = Tensor::rand([1, 3, 448, 448], (kind, Device::Cpu));
        group.bench_function(BenchmarkId::new("forward", format!("{kind:?}")), |b| {
            b.iter(|| tch::no_grad(|| tower.vision_model.forward(&x, false, false).unwrap()))
        });
        group.bench_function(BenchmarkId::new("input_gradient", format!("{kind:?}")), |b| {
            b.iter(|| {
                let xi = x.detach().set_requires_grad(true);
                let out = tower.vision_model.forward(&xi, false, false).unwrap().last_hidden_state;
                Tensor::run_backward(&[out.to_kind(Kind::Float).mean(Kind::Float)], &[&xi], false, false)
            })
        });
    }
    group.finish();
}

/// The trained default model (small backbone, 128 pixels): score + gradient of a batch of 4.
fn score_and_grad(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let mut model = QualityModel::load(&dir, Placement::default()).unwrap();
    let x = Tensor::rand([4, 1, 256, 256], (Kind::Float, Device::Cpu));
    let mut group = c.benchmark_group("default_model_batch4");
    group.bench_function("score", |b| b.iter(|| model.score(&x).unwrap()));
    group.bench_function("score_and_grad", |b| b.iter(|| model.score_and_grad(&x, None).unwrap()));
    model.set_activation_checkpointing(1);
    group.bench_function("score_and_grad_checkpointed", |b| {
        b.iter(|| model.score_and_grad(&x, None).unwrap())
    });
    group.finish();
}

fn losses_and_metrics(c: &mut Criterion) {
    let pred = Tensor::randn([8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let target = Tensor::rand([8], (Kind::Float, Device::Cpu)) * 4.0;
    c.bench_function("ranking_loss/batch8_forward_backward", |b| {
        b.iter(|| ldctq::train::ranking_loss(&pred, &target, 1.0, 0.0).backward())
    });
    let mut rng = ldctq::rng::Rng::new(1);
    let label: Vec<f64> = (0..1000).map(|_| (rng.range(0.0, 4.0) * 5.0).round() / 5.0).collect(); // ties
    let pred: Vec<f64> = label.iter().map(|l| l + rng.range(-0.5, 0.5)).collect();
    c.bench_function("metrics/srocc_1000", |b| b.iter(|| ldctq::metrics::srocc(&pred, &label).unwrap()));
    c.bench_function("metrics/krocc_1000", |b| b.iter(|| ldctq::metrics::krocc(&pred, &label).unwrap()));
}

/// The full-reference metrics of `ldctq bench`, 8 images of 256 x 256 against references (f64).
fn full_reference(c: &mut Criterion) {
    tch::manual_seed(3);
    let r = Tensor::rand([8, 1, 256, 256], (Kind::Float, Device::Cpu));
    let x = (&r + Tensor::randn([8, 1, 256, 256], (Kind::Float, Device::Cpu)) * 0.02).clamp(0.0, 1.0);
    let (xh, rh) = (ldctq::metrics::hu_plus_1024(&x), ldctq::metrics::hu_plus_1024(&r));
    let mut group = c.benchmark_group("full_reference_8x256");
    group.bench_function("psnr", |b| b.iter(|| ldctq::metrics::psnr(&x, &r)));
    group.bench_function("ssim", |b| b.iter(|| ldctq::metrics::ssim(&x, &r)));
    group.bench_function("vif", |b| b.iter(|| ldctq::metrics::vif(&xh, &rh, 2.0).unwrap()));
    group.finish();
}

criterion_group!(benches, preprocess, vision_layer, score_and_grad, losses_and_metrics, full_reference);
criterion_main!(benches);
