//! Times the quality model on random images: forward (score) or score + input gradient, at a batch
//! size and dtype; prints one JSON line. Driven by `benches/compare_transformers.py` (`make bench`).
//!
//! cargo run --release --example bench_vision -- MODEL_DIR f32|bf16 BATCH ITERS forward|grad [checkpoint]
use ldctq::criterion::QualityCriterion;
use ldctq::model::QualityModel;
use ldctq::siglip::Placement;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    anyhow::ensure!(a.len() >= 6, "usage: bench_vision MODEL_DIR f32|bf16 BATCH ITERS forward|grad");
    let kind = ldctq::device::parse_kind(&a[2])?;
    let (batch, iters): (i64, usize) = (a[3].parse()?, a[4].parse()?);
    let grad = a[5] == "grad";
    let model = QualityModel::load(a[1].as_ref(), Placement { device: Device::Cpu, kind })?;
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
        serde_json::json!({"impl": "ldctq", "dtype": a[2], "batch": batch, "mode": a[5], "seconds_per_batch": secs,
                           "seconds_per_image": secs / batch as f64, "threads": tch::get_num_threads()})
    );
    Ok(())
}
