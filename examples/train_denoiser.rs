//! Trains a tiny residual CNN denoiser with the ldctq criterion as part of its loss.
//!
//! loss = |denoised - noisy|^2 (stay close to the measurement) + lambda * (4 - score(denoised)).
//! The criterion's weights are frozen; its gradient flows into the denoiser only.
//!
//! cargo run --example train_denoiser -- [MODEL_DIR] [STEPS]
use ldctq::criterion::{QualityCriterion, Reduction};
use ldctq::model::QualityModel;
use ldctq::Placement;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_dir = args.get(1).map(String::as_str).unwrap_or("models/default");
    let steps: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(40);
    let criterion = QualityModel::load(model_dir.as_ref(), Placement::default())?;
    let size = criterion.config.image_size;

    // Noisy [0,1] slices: procedural phantoms through the model's window, plus Gaussian noise.
    tch::manual_seed(0);
    let window = criterion.config.window();
    let clean =
        (0..4).map(|s| window.to_unit(&ldctq::phantom::phantom(s, size))).collect::<Result<Vec<_>, _>>()?;
    let clean = Tensor::stack(&clean, 0).unsqueeze(1).to_kind(Kind::Float); // (4, 1, S, S)
    let noisy = &clean + Tensor::randn_like(&clean) * 0.08;

    // The denoiser predicts the noise: denoised = noisy - net(noisy).
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let conv = |name: &str, i, o| {
        nn::conv2d(&p / name, i, o, 3, nn::ConvConfig { padding: 1, ..Default::default() })
    };
    let net = nn::seq()
        .add(conv("c1", 1, 16))
        .add_fn(|x| x.relu())
        .add(conv("c2", 16, 16))
        .add_fn(|x| x.relu())
        .add(conv("c3", 16, 1));
    let mut opt = nn::Adam::default().build(&vs, 2e-3)?;
    let lambda = 0.05;
    println!("step  quality  mse-to-clean");
    for step in 0..=steps {
        let denoised = &noisy - net.forward(&noisy);
        let quality_loss = criterion.loss(&denoised, Reduction::Mean)?; // 4 - mean score
        let loss = (&denoised - &noisy).square().mean(Kind::Float) + &quality_loss * lambda;
        if step % 5 == 0 {
            let mse = (&denoised - &clean).square().mean(Kind::Float).double_value(&[]);
            println!("{step:>4}  {:>7.3}  {mse:.5}", 4.0 - quality_loss.double_value(&[]));
        }
        opt.backward_step(&loss);
    }
    let start = criterion.score(&noisy)?.mean(Kind::Float).double_value(&[]);
    println!("mean score of the noisy input: {start:.3}");
    Ok(())
}
