//! The perceptual-loss study (docs/perceptual-loss.md): one small residual CNN denoiser trained on
//! simulated pairs (low dose -> noise-free full-dose reference) with MSE alone and with
//! MSE + lambda (4 - score) for a few lambdas (same initial weights, batches and steps), then evaluated
//! on held-out pairs: PSNR and SSIM (abdomen window 50/400), VIF (HU + 1024), the criterion's score,
//! the residual against the reference (rms over the body, centroid of its noise power spectrum) and
//! the edge sigma of the denoiser (`ldctq::degrade::edge_sigma_of`: a 100 HU edge through it with the
//! scan's own noise). Writes OUT/results.json, OUT/results.md (the table) and OUT/crops.png (centre
//! crops of two slices at the lowest dose).
//!
//! cargo run --example perceptual_loss_study -- --model models/default --train TRAIN --test TEST --out OUT
//! (TRAIN and TEST from `ldctq simulate`: image/, reference/ and meta.json; see
//! scripts/perceptual_loss_study.sh, which makes them.)
use anyhow::Context;
use clap::Parser;
use ldctq::criterion::{QualityCriterion, Reduction};
use ldctq::data::{load_frame, Dataset};
use ldctq::metrics::{hu_plus_1024, psnr, ssim, vif, VIF_NOISE_VARIANCE};
use ldctq::{Placement, QualityModel, Space, Window};
use plotters::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[derive(Parser, Debug)]
struct Args {
    /// The quality model folder (the frozen criterion).
    #[arg(long)]
    model: PathBuf,
    /// Training pairs (`ldctq simulate` output).
    #[arg(long)]
    train: PathBuf,
    /// Held-out pairs (`ldctq simulate` output).
    #[arg(long)]
    test: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Weights of the score term; the MSE-only variant (lambda 0) is always trained first.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "0.0001,0.001,0.01")]
    lambdas: Vec<f64>,
    #[arg(long, default_value_t = 200)]
    steps: usize,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Peak learning rate of Adam (cosine decay to zero).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Channels of the CNN's hidden layers.
    #[arg(long, default_value_t = 16)]
    width: i64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Window of PSNR and SSIM (the held-out slices are thorax, abdomen and head: soft tissue).
const METRIC_WINDOW: Window = Window::ABDOMEN;
/// Pixels above this HU are the body (as `ldctq::degrade` measures noise).
const BODY_HU: f64 = -800.0;

/// A residual CNN on [0, 1] LDCTIQA images: `denoised = x - net(z) / 14` with `z = (x - u0) * 14` the
/// image in units of 100 HU about water (`u0` is 0 HU); five 3 x 3 convolutions with ReLU between
/// them. The last convolution starts at zero, so every variant starts as the identity.
fn denoiser(p: &nn::Path, width: i64) -> impl Module {
    let conv = |i: usize, c_in, c_out, ws_init| {
        nn::conv2d(
            p / format!("c{i}"),
            c_in,
            c_out,
            3,
            nn::ConvConfig { padding: 1, ws_init, ..Default::default() },
        )
    };
    let default = nn::ConvConfig::default().ws_init;
    let mut net = nn::seq();
    for (i, c_in) in [1, width, width, width].into_iter().enumerate() {
        net = net.add(conv(i, c_in, width, default)).add_fn(|x| x.relu());
    }
    let net = net.add(conv(4, width, 1, nn::Init::Const(0.0)));
    let (u0, scale) = (Window::LDCTIQA.unit_value(0.0), Window::LDCTIQA.width / 100.0);
    nn::func(move |x| x - net.forward(&((x - u0) * scale)) / scale)
}

/// A set's images and references as (N, 1, H, W) [0, 1] tensors (LDCTIQA window), with each
/// image's file name and dose.
struct Pairs {
    images: Tensor,
    references: Tensor,
    files: Vec<String>,
    doses: Vec<f64>,
    sources: Vec<String>,
}

fn load_pairs(root: &Path) -> anyhow::Result<Pairs> {
    let set = Dataset::open(root)?;
    let meta: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(root.join("meta.json"))?)
            .with_context(|| format!("{}/meta.json", root.display()))?;
    let (mut images, mut references, mut files, mut doses, mut sources) =
        (vec![], vec![], vec![], vec![], vec![]);
    for s in &set.samples {
        let reference =
            s.reference.as_ref().with_context(|| format!("{}: no reference", s.path.display()))?;
        let file = s.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let m =
            meta.iter().find(|m| m["file"] == file.as_str()).with_context(|| format!("{file}: no meta"))?;
        let frame = |p: &Path| load_frame(p, 0, None, Space::Unit, Window::LDCTIQA);
        images.push(frame(&s.path)?);
        references.push(frame(reference)?);
        doses.push(m["dose"].as_f64().unwrap_or(f64::NAN));
        sources.push(m["source"].as_str().unwrap_or_default().to_string());
        files.push(file);
    }
    anyhow::ensure!(!files.is_empty(), "{}: no images", root.display());
    let stack = |v: Vec<Tensor>| Tensor::stack(&v, 0).unsqueeze(1).to_kind(Kind::Float);
    Ok(Pairs { images: stack(images), references: stack(references), files, doses, sources })
}

/// Trains one variant; returns its (frozen) denoiser and the loss log.
fn train(
    args: &Args,
    criterion: &QualityModel,
    data: &Pairs,
    lambda: f64,
) -> anyhow::Result<(nn::VarStore, impl Module, Vec<serde_json::Value>)> {
    tch::manual_seed(args.seed as i64);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = denoiser(&vs.root(), args.width);
    let mut opt = nn::Adam::default().build(&vs, args.lr)?;
    let mut rng = ldctq::rng::Rng::new(args.seed);
    let n = data.files.len() as u64;
    let mut log = Vec::new();
    let start = std::time::Instant::now();
    for step in 1..=args.steps {
        opt.set_lr(
            args.lr * 0.5 * (1.0 + (std::f64::consts::PI * (step - 1) as f64 / args.steps as f64).cos()),
        );
        let idx: Vec<i64> = (0..args.batch).map(|_| rng.below(n) as i64).collect();
        let idx = Tensor::from_slice(&idx);
        let (x, y) = (data.images.index_select(0, &idx), data.references.index_select(0, &idx));
        let out = net.forward(&x);
        let mse = (&out - &y).square().mean(Kind::Float);
        let quality = if lambda > 0.0 {
            criterion.loss(&out, Reduction::Mean)? // 4 - mean score
        } else {
            criterion.loss(&out.detach(), Reduction::Mean)? // logged only
        };
        let loss = &mse + &quality * lambda;
        opt.backward_step(&loss);
        if step % 25 == 0 || step == args.steps {
            let (mse, score) = (mse.double_value(&[]), 4.0 - quality.double_value(&[]));
            eprintln!(
                "lambda {lambda}: step {step:>4}  mse {mse:.3e}  score {score:.3}  ({:.0} s)",
                start.elapsed().as_secs_f64()
            );
            log.push(json!({"step": step, "mse": mse, "score": score}));
        }
    }
    vs.freeze();
    Ok((vs, net, log))
}

/// Per-image metrics of denoised `out` against the references, and the edge sigma of `f`.
fn evaluate(
    criterion: &QualityModel,
    data: &Pairs,
    out: &Tensor,
    f: &dyn Fn(&Tensor) -> ldctq::Result<Tensor>,
) -> anyhow::Result<serde_json::Value> {
    let to_vec = |t: Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double));
    let w = |t: &Tensor| METRIC_WINDOW.from_ldctiqa(t);
    let refs = &data.references;
    let psnr = to_vec(psnr(&w(out)?, &w(refs)?))?;
    let ssim = to_vec(ssim(&w(out)?, &w(refs)?))?;
    let vif =
        to_vec(vif(&hu_plus_1024(out), &hu_plus_1024(refs), VIF_NOISE_VARIANCE).context("VIF: too small")?)?;
    let score = to_vec(criterion.score(out)?)?;
    let (out_hu, ref_hu, in_hu) =
        (Window::LDCTIQA.to_hu(out)?, Window::LDCTIQA.to_hu(refs)?, Window::LDCTIQA.to_hu(&data.images)?);
    let (mut bias, mut rms, mut centroid, mut edge) = (vec![], vec![], vec![], vec![]);
    for i in 0..data.files.len() as i64 {
        let (o, r) = (out_hu.get(i).get(0), ref_hu.get(i).get(0));
        let residual = &o - &r;
        let body = r.gt(BODY_HU).to_kind(Kind::Double);
        let area = body.sum(Kind::Double).clamp_min(1.0);
        let body_mean =
            |t: Tensor| ((t.to_kind(Kind::Double) * &body).sum(Kind::Double) / &area).double_value(&[]);
        bias.push(body_mean(residual.shallow_clone()));
        rms.push(body_mean(residual.square()).sqrt());
        centroid.push(ldctq::degrade::nps_centroid(&residual)?.unwrap_or(0.0));
        // The edge through the denoiser with this scan's own noise (input minus reference).
        edge.push(ldctq::degrade::edge_sigma_of(f, &(in_hu.get(i).get(0) - &r))?);
    }
    Ok(json!({"psnr": psnr, "ssim": ssim, "vif": vif, "score": score,
              "residual_mean_hu": bias, "residual_rms_hu": rms, "nps_centroid": centroid, "edge_sigma": edge}))
}

fn mean(v: &serde_json::Value, key: &str, keep: &dyn Fn(usize) -> bool) -> f64 {
    let xs: Vec<f64> = v[key]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .filter_map(|(_, x)| x.as_f64())
        .collect();
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let criterion = QualityModel::load(&args.model, Placement::default())?;
    anyhow::ensure!(
        criterion.config.input == Space::Unit && criterion.config.window() == Window::LDCTIQA,
        "the study expects a model of [0, 1] images in the LDCTIQA window"
    );
    let (train_set, test) = (load_pairs(&args.train)?, load_pairs(&args.test)?);
    eprintln!("{} training pairs, {} held-out pairs", train_set.files.len(), test.files.len());

    // Variants: name, lambda, outputs on the held-out set, per-image metrics, training log.
    #[allow(clippy::type_complexity)] // (name, lambda, outputs, summary, per-image rows)
    let mut rows: Vec<(String, Option<f64>, Tensor, serde_json::Value, Vec<serde_json::Value>)> = vec![];
    let unit_to_hu = |t: &Tensor| Window::LDCTIQA.to_hu(t).map_err(ldctq::Error::from);
    let hu_to_unit = |t: &Tensor| Window::LDCTIQA.to_unit(t).map_err(ldctq::Error::from);
    let identity = |t: &Tensor| Ok(t.shallow_clone());
    rows.push((
        "input (low dose)".into(),
        None,
        test.images.shallow_clone(),
        evaluate(&criterion, &test, &test.images, &identity)?,
        vec![],
    ));
    let gauss = |t: &Tensor| ldctq::filters::gaussian(t, 1.0);
    let g = unit_to_hu(&test.images).and_then(|t| gauss(&t)).and_then(|t| hu_to_unit(&t))?;
    rows.push((
        "Gaussian sigma 1 (no training)".into(),
        None,
        g.shallow_clone(),
        evaluate(&criterion, &test, &g, &gauss)?,
        vec![],
    ));
    for lambda in std::iter::once(0.0).chain(args.lambdas.iter().copied()) {
        let (_vs, net, log) = train(&args, &criterion, &train_set, lambda)?;
        let out = tch::no_grad(|| net.forward(&test.images));
        // On HU images (the edge measure): through the [0, 1] window the net was trained in.
        let f = |hu: &Tensor| {
            let x = hu_to_unit(hu)?;
            unit_to_hu(&tch::no_grad(|| net.forward(&x)))
        };
        let metrics = evaluate(&criterion, &test, &out, &f)?;
        let name = if lambda == 0.0 { "CNN, MSE".into() } else { format!("CNN, MSE + {lambda} (4 - score)") };
        rows.push((name, Some(lambda), out, metrics, log));
    }
    let reference = evaluate(&criterion, &test, &test.references, &identity)?;

    // The table (means over the held-out set) and the JSON.
    let all = |_: usize| true;
    let mut md = String::from(
        "| variant | PSNR dB | SSIM | VIF | score | residual mean HU | residual rms HU | residual NPS centroid cyc/px | edge sigma px |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, _, _, m, _) in &rows {
        md += &format!(
            "| {name} | {:.2} | {:.4} | {:.3} | {:.2} | {:+.1} | {:.1} | {:.3} | {:.2} |\n",
            mean(m, "psnr", &all),
            mean(m, "ssim", &all),
            mean(m, "vif", &all),
            mean(m, "score", &all),
            mean(m, "residual_mean_hu", &all),
            mean(m, "residual_rms_hu", &all),
            mean(m, "nps_centroid", &all),
            mean(m, "edge_sigma", &all),
        );
    }
    md += &format!(
        "| reference (full dose, noise-free) | | | | {:.2} | | | | |\n",
        mean(&reference, "score", &all)
    );
    let mut doses = test.doses.clone();
    doses.sort_by(f64::total_cmp);
    doses.dedup();
    md += &format!(
        "\nBy dose, score / PSNR dB ({} held-out images per dose):\n\n| variant |",
        test.doses.iter().filter(|&&d| d == doses[0]).count()
    );
    md += &doses.iter().map(|d| format!(" {d} |")).collect::<String>();
    md += &format!("\n|---|{}\n", "---|".repeat(doses.len()));
    for (name, _, _, m, _) in &rows {
        md += &format!("| {name} |");
        for &d in &doses {
            let at = |i: usize| test.doses[i] == d;
            md += &format!(" {:.2} / {:.2} |", mean(m, "score", &at), mean(m, "psnr", &at));
        }
        md += "\n";
    }
    std::fs::write(args.out.join("results.md"), &md)?;
    let variants: Vec<_> = rows
        .iter()
        .map(|(name, lambda, _, m, log)| json!({"name": name, "lambda": lambda, "per_image": m, "train_log": log}))
        .collect();
    let results = json!({
        "model": args.model, "train": args.train, "test": args.test, "steps": args.steps, "batch": args.batch,
        "lr": args.lr, "width": args.width, "seed": args.seed, "files": test.files, "doses": test.doses,
        "sources": test.sources, "metric_window": METRIC_WINDOW, "variants": variants, "reference": reference,
    });
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&results)?)?;

    // Example crops: the first two held-out slices at the lowest dose, every variant but the Gaussian.
    let mut picks: Vec<usize> = vec![];
    for (i, s) in test.sources.iter().enumerate() {
        if test.doses[i] == doses[0] && picks.iter().all(|&j| &test.sources[j] != s) && picks.len() < 2 {
            picks.push(i);
        }
    }
    let mut columns: Vec<(String, &Tensor)> = vec![("input".into(), &test.images)];
    for (_, lambda, out, _, _) in &rows {
        if let Some(l) = lambda {
            columns.push((if *l == 0.0 { "MSE".into() } else { format!("MSE+{l}(4-s)") }, out));
        }
    }
    columns.push(("reference".into(), &test.references));
    crops_png(&args.out.join("crops.png"), &columns, &test.references, &picks)?;
    print!("{md}");
    Ok(())
}

/// A grid of centre crops (64 x 64 pixels shown at 2x), one column per labelled set of (N, 1, H, W)
/// [0, 1] images, two rows per picked image: the image (abdomen window 50/400) and its difference
/// from `reference` (-100 HU black to +100 HU white); an 8-bit gray PNG.
fn crops_png(
    path: &Path,
    columns: &[(String, &Tensor)],
    reference: &Tensor,
    picks: &[usize],
) -> anyhow::Result<()> {
    const CROP: i64 = 64;
    const ZOOM: usize = 2;
    const LABEL: usize = 20;
    let tile = CROP as usize * ZOOM;
    let rows: Vec<(usize, bool)> = picks.iter().flat_map(|&i| [(i, false), (i, true)]).collect();
    let (w, h) = (columns.len() * (tile + 4), rows.len() * (tile + 4) + 4 + LABEL);
    let mut rgb = vec![255u8; w * h * 3];
    let centre = |t: &Tensor| {
        let (ih, iw) = (t.size()[0], t.size()[1]);
        t.narrow(0, (ih - CROP) / 2, CROP).narrow(1, (iw - CROP) / 2, CROP)
    };
    for (r, &(i, difference)) in rows.iter().enumerate() {
        for (c, (_, images)) in columns.iter().enumerate() {
            let crop = centre(&images.get(i as i64).get(0));
            let shown = if difference {
                let d = (crop - centre(&reference.get(i as i64).get(0))) * Window::LDCTIQA.width;
                (d / 200.0 + 0.5).clamp(0.0, 1.0)
            } else {
                Window::ABDOMEN.from_ldctiqa(&crop)?
            };
            let shown = Vec::<f32>::try_from(shown.contiguous().view(-1))?;
            let (x0, y0) = (c * (tile + 4) + 2, LABEL + 4 + r * (tile + 4));
            for (k, v) in shown.iter().enumerate() {
                let g = (v * 255.0).round() as u8;
                let (y, x) = (k / CROP as usize, k % CROP as usize);
                for dy in 0..ZOOM {
                    for dx in 0..ZOOM {
                        let at = ((y0 + y * ZOOM + dy) * w + x0 + x * ZOOM + dx) * 3;
                        rgb[at..at + 3].fill(g);
                    }
                }
            }
        }
    }
    if ldctq::plots::font_available() {
        let root = BitMapBackend::with_buffer(&mut rgb, (w as u32, h as u32)).into_drawing_area();
        for (c, (label, _)) in columns.iter().enumerate() {
            let style = ("sans-serif", 14).into_font().color(&BLACK);
            root.draw(&Text::new(label.clone(), ((c * (tile + 4) + 4) as i32, 4), style))?;
        }
        root.present()?;
    }
    let gray: Vec<u8> = rgb.chunks(3).map(|p| p[0]).collect();
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(&gray)?;
    }
    std::fs::write(path, bytes)?;
    Ok(())
}
