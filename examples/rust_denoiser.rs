//! A denoiser written in Rust, benchmarked next to the built-ins.
//!
//! `AdaptiveWiener` implements [`ldctq::denoise::Denoiser`] in plain Rust (no tch ops): the local
//! Wiener (Lee) filter `mean + max(var - noise, 0) / var * (x - mean)` over a 5 x 5 window, with the
//! noise variance estimated per image as the median of the local variances. It smooths flat regions
//! and keeps edges.
//!
//! cargo run --example rust_denoiser -- MODEL_DIR DATA_DIR OUT_DIR
//! (e.g. after `ldctq simulate --out /tmp/sim --count 24 --size 128`)
use ldctq::bench::{self, BenchOptions};
use ldctq::data::Dataset;
use ldctq::denoise::{self, Candidate, DenoiseError, Denoiser, DenoiserInfo, ErrorKind};
use ldctq::{Placement, Scorer};
use tch::{Device, Kind, Tensor};

/// The adaptive Wiener filter (see the file's docs).
struct AdaptiveWiener {
    radius: usize,
}

impl AdaptiveWiener {
    fn filter(&self, img: &[f32], h: usize, w: usize) -> Vec<f32> {
        let r = self.radius as isize;
        let at = |y: isize, x: isize| {
            let (y, x) = (y.clamp(0, h as isize - 1) as usize, x.clamp(0, w as isize - 1) as usize);
            img[y * w + x] as f64
        };
        let (mut mean, mut var) = (vec![0.0; h * w], vec![0.0; h * w]);
        let count = ((2 * r + 1) * (2 * r + 1)) as f64;
        for y in 0..h as isize {
            for x in 0..w as isize {
                let (mut s, mut s2) = (0.0, 0.0);
                for dy in -r..=r {
                    for dx in -r..=r {
                        let v = at(y + dy, x + dx);
                        s += v;
                        s2 += v * v;
                    }
                }
                let m = s / count;
                mean[y as usize * w + x as usize] = m;
                var[y as usize * w + x as usize] = (s2 / count - m * m).max(0.0);
            }
        }
        let mut sorted = var.clone();
        sorted.sort_by(f64::total_cmp);
        let noise = sorted[sorted.len() / 2];
        (0..h * w)
            .map(|i| {
                let gain = if var[i] > 0.0 { ((var[i] - noise).max(0.0) / var[i]).min(1.0) } else { 0.0 };
                (mean[i] + gain * (img[i] as f64 - mean[i])) as f32
            })
            .collect()
    }
}

impl Denoiser for AdaptiveWiener {
    fn info(&self) -> DenoiserInfo {
        DenoiserInfo {
            config: Some(format!("{{\"radius\":{}}}", self.radius)),
            ..DenoiserInfo::rust("wiener")
        }
    }

    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError> {
        let size = images.size(); // N x 1 x H x W
        let (n, h, w) = (size[0], size[2] as usize, size[3] as usize);
        let flat =
            Vec::<f32>::try_from(images.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view(-1))
                .map_err(|e| DenoiseError::new("rust wiener", ErrorKind::Torch, e.to_string()))?;
        let mut out = Vec::with_capacity(flat.len());
        for img in flat.chunks(h * w) {
            out.extend(self.filter(img, h, w));
        }
        Ok(Tensor::from_slice(&out).view([n, 1, h as i64, w as i64]))
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, out] = args.as_slice() else {
        eprintln!("usage: cargo run --example rust_denoiser -- MODEL_DIR DATA_DIR OUT_DIR");
        std::process::exit(2);
    };
    let scorer = Scorer::load(model.as_ref(), Placement::default())?;
    let data = Dataset::open(data.as_ref())?;
    // Built-ins by spec, plus the Rust denoiser made in code.
    let mut candidates =
        denoise::load_all(&["identity".into(), "gaussian".into()], Device::Cpu, &Default::default());
    candidates.push(Candidate::new(Box::new(AdaptiveWiener { radius: 2 })));
    denoise::unique_names(&mut candidates);
    let opts = BenchOptions::default();
    let run = bench::run(&scorer, &data, candidates, &opts, Device::Cpu, &mut |_| {})?;
    let summary = bench::summarize(&run, &opts);
    let specs = ["identity".into(), "gaussian".into(), "rust:wiener".into()];
    let prov = bench::Provenance::new(model.as_ref(), "ldctq", &data, &specs, &opts, Placement::default())?;
    bench::write_reports(out.as_ref(), &run, &summary, &prov)?;
    print!("{}", bench::summary_markdown(&run, &summary, &prov));
    Ok(())
}
