//! Times the quality model on random images: forward (score) or score + input gradient, at a batch
//! size and dtype, optionally with activation checkpointing; prints one JSON line. Driven by
//! `benches/compare_transformers.py` (`make bench`).
//!
//! cargo run --release --example bench_vision -- MODEL_DIR f32|bf16 BATCH ITERS forward|grad [LAYERS_PER_SEGMENT]
//! cargo run --release --example bench_vision -- MODEL_DIR guard N
//!   (the accuracy guard: bf16 against f32 scores and input gradients on N fixed images, and the floor
//!   of any bf16-weight model: f32 gradients with the weights rounded to bf16, against f32)
use ldctq::criterion::QualityCriterion;
use ldctq::model::QualityModel;
use ldctq::Placement;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() == 4 && a[2] == "guard" {
        return guard(&a[1], a[3].parse()?);
    }
    anyhow::ensure!(
        a.len() >= 6,
        "usage: bench_vision MODEL_DIR f32|bf16 BATCH ITERS forward|grad [LAYERS_PER_SEGMENT]"
    );
    let kind = ldctq::placement::parse_kind(&a[2])?;
    let (batch, iters): (i64, usize) = (a[3].parse()?, a[4].parse()?);
    let grad = a[5] == "grad";
    let every: usize = a.get(6).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let mut model = QualityModel::load(a[1].as_ref(), Placement { device: Device::Cpu, kind })?;
    model.set_activation_checkpointing(every);
    let s = model.config.image_size;
    tch::manual_seed(0);
    let x = Tensor::rand([batch, 1, s, s], (Kind::Float, Device::Cpu));
    let run = || -> anyhow::Result<()> {
        if grad {
            let _ = model.score_and_grad(&x, None)?;
        } else {
            let _ = model.score(&x)?;
        }
        Ok(())
    };
    run()?; // warm-up (also computes the prompt's FiLM parameters)
    let start = Instant::now();
    for _ in 0..iters {
        run()?;
    }
    let secs = start.elapsed().as_secs_f64() / iters as f64;
    println!(
        "{}",
        serde_json::json!({"impl": if every > 0 { format!("ldctq (checkpoint every {every})") } else { "ldctq".into() },
                           "dtype": a[2], "batch": batch, "mode": a[5], "seconds_per_batch": secs,
                           "seconds_per_image": secs / batch as f64, "threads": tch::get_num_threads(),
                           "allocator_tuned": std::env::var("LDCTQ_MALLOC_TUNING").map_or(true, |v| v != "0")})
    );
    Ok(())
}

/// bf16 against f32 on `n` procedural CT slices (phantoms, simulated at dose 1, 0.25, 0.1, 0.05 in turn).
fn guard(dir: &str, n: u64) -> anyhow::Result<()> {
    let f32_model = QualityModel::load(dir.as_ref(), Placement::default())?;
    let window = f32_model.config.window();
    let doses = [1.0, 0.25, 0.1, 0.05];
    let slices = (0..n)
        .map(|i| -> anyhow::Result<Tensor> {
            let hu = ldctq::phantom::phantom(11 + i, 512);
            let params = ldctq::simulate::ScanParams {
                dose: doses[i as usize % 4],
                seed: Some(i),
                ..Default::default()
            };
            let ld = ldctq::simulate::simulate(&hu, &params)?;
            Ok(window.to_unit(&ld)?.unsqueeze(0))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let x = Tensor::stack(&slices, 0);
    let (s32, g32) = f32_model.score_and_grad(&x, None)?;
    // The floor no bf16-weight implementation can pass: f32 arithmetic on weights rounded to bf16.
    tch::no_grad(|| {
        for (_, mut v) in f32_model.vision_store().variables() {
            v.copy_(&v.to_kind(Kind::BFloat16).to_kind(Kind::Float));
        }
    });
    let (_, g32r) = f32_model.score_and_grad(&x, None)?;
    drop(f32_model);
    let bf16_model =
        QualityModel::load(dir.as_ref(), Placement { device: Device::Cpu, kind: Kind::BFloat16 })?;
    let (s16, g16) = bf16_model.score_and_grad(&x, None)?;
    let cos = |g: &Tensor, i: i64| {
        let (a, b) =
            (g.get(i).flatten(0, -1).to_kind(Kind::Double), g32.get(i).flatten(0, -1).to_kind(Kind::Double));
        (a.dot(&b) / (a.norm() * b.norm())).double_value(&[])
    };
    let diff = (&s16 - &s32).abs();
    println!(
        "{}",
        serde_json::json!({"scores_f32": Vec::<f64>::try_from(s32.to_kind(Kind::Double))?,
                           "scores_bf16": Vec::<f64>::try_from(s16.to_kind(Kind::Double))?,
                           "max_score_diff": diff.max().double_value(&[]),
                           "gradient_cosines": (0..n as i64).map(|i| cos(&g16, i)).collect::<Vec<_>>(),
                           "weight_rounding_cosines": (0..n as i64).map(|i| cos(&g32r, i)).collect::<Vec<_>>()})
    );
    Ok(())
}
