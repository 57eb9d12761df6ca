//! `ldctq map`: quality maps of CT images (where quality is lost), as `.npy` arrays and PNG overlays on
//! the windowed slice.
use super::{image_files, Runtime};
use anyhow::Context;
use ldctq::criterion::{MapMethod, QualityCriterion};
use ldctq::{io, plots, Space};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model folder (ldctq.json, head.safetensors) or ensemble folder.
    #[arg(long)]
    model: PathBuf,
    /// Output folder: NAME.METHOD.npy (float32, H x W) and NAME.METHOD.png per image.
    #[arg(long)]
    out: PathBuf,
    /// intrinsic (4 - each patch's score, upsampled), gradient (smoothed |d score / d image|),
    /// occlusion (the score gained by replacing the 3 x 3 patches around each patch by their
    /// surroundings), smoothing (the first-order score gained by smoothing each neighbourhood) or all.
    #[arg(long, default_value = "all")]
    method: String,
    #[command(flatten)]
    prompt: super::PromptArgs,
    /// What the values of npy / integer TIFF files are: unit or hu.
    #[arg(long)]
    input: Option<Space>,
    #[command(flatten)]
    runtime: Runtime,
    /// Image files or folders (DICOM series, TIFF, npy, PNG); NAME is the file name without its
    /// extension, with `-FRAME` added for files of several frames.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// The methods of `--method`.
pub fn methods(arg: &str) -> anyhow::Result<Vec<MapMethod>> {
    Ok(if arg == "all" { MapMethod::ALL.to_vec() } else { vec![arg.parse().context("--method")?] })
}

fn to_vec(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view(-1))?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let methods = methods(&args.method)?;
    let files = image_files(&args.paths)?;
    let model = args.runtime.load(&args.model, &args.prompt)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let (space, window) = (model.config().input, model.config().window());
    let (mut names, mut failed) = (HashSet::new(), 0);
    for file in &files {
        let frames = io::read_image(file)
            .map_err(ldctq::Error::from)
            .and_then(|s| ldctq::data::frames(&s, args.input, space, window));
        let frames = match frames {
            Ok(f) => f,
            Err(e) => {
                eprintln!("skipping {}: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        let count = frames.size()[0];
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for (i, frame) in frames.unbind(0).into_iter().enumerate() {
            let name = if count > 1 { format!("{stem}-{i}") } else { stem.clone() };
            anyhow::ensure!(names.insert(name.clone()), "{}: a second image named {name}", file.display());
            let image = frame.unsqueeze(0); // (1, H, W) in the model's space
            let score = tch::no_grad(|| model.score(&image))?.double_value(&[0]);
            let gray = to_vec(&window.convert(&image, space, Space::Unit)?)?;
            for &method in &methods {
                let map = model.quality_map(&image, method)?.squeeze_dim(0); // (H, W)
                write_map(&args.out, &name, method, &map, &gray, score)?;
            }
            println!("{}\t{i}\t{score:.6}\t{}", file.display(), args.out.join(&name).display());
        }
    }
    anyhow::ensure!(failed == 0, "{failed} file(s) could not be read");
    Ok(())
}

/// Writes `DIR/NAME.METHOD.npy` and the overlay `DIR/NAME.METHOD.png` (colour scale: the map's range).
fn write_map(
    dir: &Path,
    name: &str,
    method: MapMethod,
    map: &Tensor,
    gray: &[f32],
    score: f64,
) -> anyhow::Result<()> {
    let (h, w) = (map.size()[0] as usize, map.size()[1] as usize);
    let values = to_vec(map)?;
    let array = ndarray::ArrayD::from_shape_vec(vec![h, w], values.clone())?;
    io::write_npy_f32(&dir.join(format!("{name}.{}.npy", method.name())), &array.view())?;
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let panel =
        plots::MapPanel { title: format!("{} map", method.name()), gray: gray.to_vec(), map: values, h, w };
    let png = dir.join(format!("{name}.{}.png", method.name()));
    plots::map_grid(&png, &format!("{name}: score {score:.3}"), &[panel], 1, 512, (lo, hi), method.quantity())
        .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))
}
