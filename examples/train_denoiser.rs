//! Trains a tiny residual CNN denoiser on paired data with the ldctq criterion in its loss:
//!
//! loss = |denoised - full dose|^2 + lambda * (4 - score(denoised)),
//!
//! on low-dose / full-dose pairs simulated from procedural phantoms (10 % dose; the full dose is the
//! noise-free full-view reconstruction). The criterion's weights are frozen; its gradient flows into
//! the denoiser only. The recipe in small of the perceptual-loss study (docs/perceptual-loss.md).
//!
//! cargo run --example train_denoiser -- [MODEL_DIR] [STEPS] [LAMBDA]
use ldctq::criterion::{QualityCriterion, Reduction};
use ldctq::metrics::psnr;
use ldctq::model::QualityModel;
use ldctq::simulate::{simulate_pair, ScanParams};
use ldctq::Placement;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_dir = args.get(1).map(String::as_str).unwrap_or("models/default");
    let steps: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(60);
    let lambda: f64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1e-4);
    let criterion = QualityModel::load(model_dir.as_ref(), Placement::default())?;
    let size = criterion.config.image_size;
    let window = criterion.config.window();

    // Pairs: 6 phantoms for training, 2 to test, scanned at 10 % dose, as [0, 1] images.
    let (mut low, mut full) = (vec![], vec![]);
    for seed in 0..8 {
        let hu = ldctq::phantom::phantom(seed, size);
        let params = ScanParams {
            dose: 0.1,
            pixel_mm: 358.4 / size as f64,
            seed: Some(seed),
            ..ScanParams::default()
        };
        let (l, f) = simulate_pair(&hu, &params)?;
        low.push(window.to_unit(&l)?);
        full.push(window.to_unit(&f)?);
    }
    let stack = |v: &[Tensor]| Tensor::stack(v, 0).unsqueeze(1).to_kind(Kind::Float); // (N, 1, S, S)
    let (train_low, train_full) = (stack(&low[..6]), stack(&full[..6]));
    let (test_low, test_full) = (stack(&low[6..]), stack(&full[6..]));

    // denoised = x - net(x), the last layer starting at zero (the identity).
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let conv = |name: &str, i, o, ws_init| {
        nn::conv2d(&p / name, i, o, 3, nn::ConvConfig { padding: 1, ws_init, ..Default::default() })
    };
    let relu = |x: &Tensor| x.relu();
    let default = nn::ConvConfig::default().ws_init;
    let net = nn::seq()
        .add(conv("c1", 1, 16, default))
        .add_fn(relu)
        .add(conv("c2", 16, 16, default))
        .add_fn(relu)
        .add(conv("c3", 16, 1, nn::Init::Const(0.0)));
    // The net sees the image in units of 100 HU.
    let scale = window.width / 100.0;
    let denoise = |x: &Tensor| x - net.forward(&(x * scale)) / scale;
    let mut opt = nn::Adam::default().build(&vs, 2e-3)?;
    println!("lambda {lambda}\nstep  train mse  train score");
    for step in 0..=steps {
        let denoised = denoise(&train_low);
        let mse = (&denoised - &train_full).square().mean(Kind::Float);
        let quality_loss = criterion.loss(&denoised, Reduction::Mean)?; // 4 - mean score
        if step % 10 == 0 {
            println!(
                "{step:>4}  {:.3e}  {:>11.3}",
                mse.double_value(&[]),
                4.0 - quality_loss.double_value(&[])
            );
        }
        opt.backward_step(&(mse + quality_loss * lambda));
    }
    let mean = |t: Tensor| t.mean(Kind::Double).double_value(&[]);
    let denoised = tch::no_grad(|| denoise(&test_low));
    for (name, x) in [("input", &test_low), ("denoised", &denoised), ("full dose", &test_full)] {
        let p = if name == "full dose" {
            String::new()
        } else {
            format!("  PSNR {:.2} dB", mean(psnr(x, &test_full)))
        };
        println!("held-out phantoms, {name:>9}: score {:.3}{p}", mean(criterion.score(x)?));
    }
    Ok(())
}
