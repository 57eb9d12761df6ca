//! `ldctq simulate`: a synthetic low-dose CT quality data set in the LDCTIQA2023 layout.
//!
//! Writes `OUT/image/0000.tif ...` (the low-dose FBP), `OUT/reference/0000.tif ...` (the noise-free
//! full-view FBP of the same slice), both f32 in [0, 1] through the window -300/1400 (i.e.
//! [-1000, 400] HU), `OUT/train.json` or `OUT/test.json` (`{"0000.tif": 2.8, ...}`) and
//! `OUT/meta.json` (per image: source, dose, views, seed, labels, pixel size, augmentation).
//!
//! Image `i` takes source `i mod n` of the sources in command-line order (each frame of each real
//! file is one source; `phantom` is one source that makes a new phantom each time) and a dose/view
//! combination from the grid `--doses x --views`, visited in a fresh random order in every block of
//! `doses x views` images (balanced, and not tied to the source cycle). Real slices get a random
//! flip, quarter turns and square crop (`--min-crop` .. 1 of the shorter side) before resampling to
//! `--size`, so every image is a distinct slice. Everything is derived from `--seed` and `--split`
//! (train and test draw different phantoms, augmentations and noise from one seed); real files are
//! shared, so hold out files yourself for a test split.
//!
//! Families (`--families`, cycled over the images): besides the plain scans (`scan`), degraded
//! versions whose order is known without a reader: `blur` (the full-dose scan blurred), `oversmooth`
//! (the low-dose scan through a Gaussian, box, median, bilateral or TV filter) and `texture` (its
//! noise replaced by white or blotchy noise of the same order of magnitude), labelled by the
//! perceptual label model of [`ldctq::degrade`]; `meta.json` records the family, the degradation and
//! the measured factors (noise ratio, edge sigma, texture shift). With `--series`, every source is
//! simulated at every dose/view combination with one augmentation, a dose series per slice.
//!
//! With `--localized`, every image is a full-dose scan (full views, dose 1) with one degradation
//! confined to a random ellipse in the body ([`ldctq::degrade::localize`]), kinds cycled over the
//! images: `noise` (the scan at dose 0.03-0.15 inside), `streaks` (the noise-free streaks of 1/6,
//! 1/8 or 1/12 of the views added inside), `blur` (Gaussian, sigma 1.5-3 px, inside). The mask edge
//! is hard: `reference/` holds the full-dose scan itself, and the image equals it bit for bit
//! outside `mask/NAME.png` (16-bit, 1 inside). The label is image-level, area-weighted:
//! `4 - f (4 - L)`, with `L` the label model's value for the whole scan so degraded
//! ([`ldctq::degrade::Local::full_label`]) and `f` the share of the body (`> -800 HU` in the
//! source) inside the region. `meta.json` records `localized`: kind, strength (`dose`, `views` or
//! `sigma`), region (centre row/col, semi-axes, angle in pixels and radians), mask file, body
//! fraction and `L`.
//!
//! Anatomy (`meta.json`'s `anatomy`, for anatomy prompts and per-anatomy metrics): `abdomen` for
//! phantoms; for a real source the word after `@` in its spec (`scan.dcm@head`), else its DICOM
//! BodyPartExamined when that names a head, chest or abdomen part; none otherwise.
//!
//! Physical size: phantoms and sources without a pixel spacing span `--fov-mm`; DICOM sources use
//! their PixelSpacing, scaled by the crop and resampling. The noise is per detector bin of one
//! (output) pixel, so at the same dose a smaller `--size` gives less noise in HU (noise std goes
//! as 1 / pixel size at fixed photons per bin).
use anyhow::Context;
use clap::ValueEnum;
use ldctq::degrade::{self, Degradation, Local, Measured, Region};
use ldctq::io;
use ldctq::phantom::{self, Augmentation};
use ldctq::rng::Rng;
use ldctq::simulate::{self, Filter, ScanParams};
use ldctq::{Space, Window};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Split {
    Train,
    Test,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum FilterArg {
    Hann,
    RamLak,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder (image/, reference/, train.json or test.json, meta.json).
    #[arg(long)]
    out: PathBuf,
    /// `phantom` (procedural abdomen phantoms) and/or image files or folders (DICOM in HU; [0, 1]
    /// TIFF/PNG taken as the -300/1400 window), each optionally followed by @ANATOMY (`a.dcm@head`).
    #[arg(long, value_delimiter = ',', default_value = "phantom")]
    sources: Vec<String>,
    /// Dose fractions in (0, 1].
    #[arg(long, value_delimiter = ',', default_value = "1,0.5,0.25,0.1,0.05")]
    doses: Vec<f64>,
    /// Views over 180 degrees.
    #[arg(long, value_delimiter = ',', default_value = "720,360,180")]
    views: Vec<i64>,
    /// Views of the full scan (reference, and label 4).
    #[arg(long, default_value_t = simulate::FULL_VIEWS)]
    full_views: i64,
    /// Number of images.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Output size in pixels (square).
    #[arg(long, default_value_t = 256)]
    size: i64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, value_enum, default_value = "train")]
    split: Split,
    /// Full-dose photons per detector bin and view.
    #[arg(long, default_value_t = 1e5)]
    i0: f64,
    /// Electronic noise std in photons.
    #[arg(long, default_value_t = 5.0)]
    electronic_sigma: f64,
    #[arg(long, value_enum, default_value = "hann")]
    filter: FilterArg,
    /// Field of view in mm of phantoms and of sources without a pixel spacing.
    #[arg(long, default_value_t = 358.4)]
    fov_mm: f64,
    /// Smallest crop of real slices, as a fraction of the shorter side.
    #[arg(long, default_value_t = 0.6)]
    min_crop: f64,
    /// Write into an --out whose image/ folder is not empty (files beyond --count stay).
    #[arg(long)]
    overwrite: bool,
    /// Image families, cycled over the images: `scan` (the low-dose reconstruction: noise and
    /// streaks), `blur` (the full-dose scan blurred, sigma 0.5-3 px), `oversmooth` (the low-dose scan
    /// through a random Gaussian, box, median, bilateral or TV filter), `texture` (the noise replaced
    /// by white or blotchy noise). Labels of the last three come from the perceptual label model
    /// (`ldctq::degrade`), which meta.json records factor by factor.
    #[arg(long, value_delimiter = ',', default_value = "scan")]
    families: Vec<Family>,
    /// Series: every source at every dose/view combination (in grid order) with one augmentation
    /// per source and repeat, so that `meta.json`'s `source` groups a slice's dose series; --count
    /// is then the number of series per source.
    #[arg(long)]
    series: bool,
    /// One degradation (noise, streaks, blur, cycled) confined to a random region of each
    /// full-dose scan, with its mask in mask/ (see the module docs). Replaces the dose/view grid and
    /// the families.
    #[arg(long, conflicts_with_all = ["series", "families", "doses", "views"])]
    localized: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Scan,
    Blur,
    Oversmooth,
    Texture,
}

/// Where a slice comes from.
enum Source {
    Phantom,
    /// A frame of a real file in HU, with its pixel size in mm.
    Real {
        path: PathBuf,
        frame: usize,
        hu: Tensor,
        pixel_mm: f64,
        anatomy: Option<String>,
    },
}

/// One line of `meta.json`.
#[derive(Serialize, Debug)]
struct Entry {
    file: String,
    /// `phantom:<seed>` or `<path>#<frame>`.
    source: String,
    dose: f64,
    views: i64,
    /// The image's seed (phantom, augmentation, noise and label streams derive from it).
    seed: u64,
    /// The reader-like label written to the labels json.
    label: f64,
    /// The noise-free label ([`simulate::quality_label`], or [`degrade::perceptual_label`] for a
    /// degraded scan).
    clean_label: f64,
    pixel_mm: f64,
    /// `abdomen` for phantoms; a real source's given or DICOM anatomy.
    #[serde(skip_serializing_if = "Option::is_none")]
    anatomy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    augmentation: Option<Augmentation>,
    /// The series of the image, with --series.
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<usize>,
    /// The family, degradation and measured factors of a degraded scan (absent for plain scans).
    #[serde(skip_serializing_if = "Option::is_none")]
    family: Option<Family>,
    #[serde(skip_serializing_if = "Option::is_none")]
    degradation: Option<Degradation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measured: Option<Measured>,
    /// The confined degradation, with --localized.
    #[serde(skip_serializing_if = "Option::is_none")]
    localized: Option<Localized>,
}

/// `meta.json`'s record of a localized degradation.
#[derive(Serialize, Debug)]
struct Localized {
    /// `kind` and its strength: `dose`, `views` or `sigma`.
    #[serde(flatten)]
    degradation: Local,
    region: Region,
    /// The mask file, relative to the output folder.
    mask: String,
    /// Share of the body's pixels inside the region.
    body_fraction: f64,
    /// The label of the whole scan so degraded.
    full_label: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.count > 0 && args.count <= 10_000, "--count must be in 1 ..= 10000");
    anyhow::ensure!(args.size >= 16, "--size must be at least 16");
    anyhow::ensure!(args.fov_mm > 0.0 && args.fov_mm.is_finite(), "--fov-mm must be > 0");
    anyhow::ensure!(
        !args.doses.is_empty() && !args.views.is_empty() && !args.families.is_empty(),
        "--doses, --views and --families must not be empty"
    );
    let device = ldctq::placement::parse_device(&args.device)?;
    let base = ScanParams {
        full_views: args.full_views,
        i0: args.i0,
        electronic_sigma: args.electronic_sigma,
        filter: match args.filter {
            FilterArg::Hann => Filter::Hann,
            FilterArg::RamLak => Filter::RamLak,
        },
        ..ScanParams::default()
    };
    let combos: Vec<(f64, i64)> =
        args.doses.iter().flat_map(|&d| args.views.iter().map(move |&v| (d, v))).collect();
    for &(dose, views) in &combos {
        ScanParams { dose, views, ..base.clone() }.validate()?;
    }
    let sources = load_sources(&args.sources, args.fov_mm, device)?;
    let (image_dir, reference_dir) = (args.out.join("image"), args.out.join("reference"));
    let mask_dir = args.out.join("mask");
    if !args.overwrite && std::fs::read_dir(&image_dir).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!("{} is not empty (pass --overwrite to write into it)", image_dir.display());
    }
    for dir in [&image_dir, &reference_dir].into_iter().chain(args.localized.then_some(&mask_dir)) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let stream = ldctq::rng::derive_seed(args.seed, if args.split == Split::Train { 1 } else { 2 });
    let count = if args.series { args.count * sources.len() * combos.len() } else { args.count };
    anyhow::ensure!(count <= 100_000, "--series: {count} images are too many");
    let bar = indicatif::ProgressBar::new(count as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let _guard = tch::no_grad_guard();
    let (mut labels, mut meta) = (BTreeMap::new(), Vec::new());
    let mut order = Vec::new();
    for i in 0..count {
        if i % combos.len() == 0 && !args.series {
            order =
                shuffled(combos.len(), ldctq::rng::derive_seed(stream, 1 << 32 | (i / combos.len()) as u64));
        }
        let (mut dose, mut views) =
            combos[if args.series { i % combos.len() } else { order[i % combos.len()] }];
        let family = args.families[i % args.families.len()];
        if family == Family::Blur || args.localized {
            (dose, views) = (1.0, args.full_views);
        }
        // 53 bits, so that JSON readers that parse numbers as doubles keep them exact.
        let seed = ldctq::rng::derive_seed(stream, i as u64) >> 11;
        let file = format!("{i:04}.tif");
        // A series shares its slice (phantom seed, augmentation) across the combinations.
        let (source_index, slice_seed) = if args.series {
            let series = i / combos.len();
            (series % sources.len(), ldctq::rng::derive_seed(stream, 1 << 40 | series as u64) >> 11)
        } else {
            (i % sources.len(), seed)
        };
        let anatomy = match &sources[source_index] {
            Source::Phantom => Some("abdomen".to_string()),
            Source::Real { anatomy, .. } => anatomy.clone(),
        };
        let (hu, source, pixel_mm, augmentation) = match &sources[source_index] {
            Source::Phantom => {
                let phantom_seed = ldctq::rng::derive_seed(slice_seed, 1) >> 11;
                let hu = phantom::phantom(phantom_seed, args.size).to_device(device);
                (hu, format!("phantom:{phantom_seed}"), args.fov_mm / args.size as f64, None)
            }
            Source::Real { path, frame, hu, pixel_mm, .. } => {
                let mut rng = Rng::new(ldctq::rng::derive_seed(slice_seed, 1));
                let aug = Augmentation::random(&mut rng, (hu.size()[0], hu.size()[1]), args.min_crop);
                let out = phantom::augment(hu, &aug, args.size)?;
                let mm = pixel_mm * aug.crop.2 as f64 / args.size as f64;
                (out, format!("{}#{frame}", path.display()), mm, Some(aug))
            }
        };
        let params = ScanParams {
            dose,
            views,
            pixel_mm,
            seed: Some(ldctq::rng::derive_seed(seed, 2)),
            ..base.clone()
        };
        let mut localized = None;
        let (image, reference, clean_label, degraded) = if args.localized {
            let mut rng = Rng::new(ldctq::rng::derive_seed(seed, 6));
            let local = Local::random(i, &mut rng, args.full_views);
            let body = hu.gt(-800.0);
            let region = Region::random(&mut rng, &body)?;
            let mask = region.mask(args.size, args.size, device)?;
            let (image, full) = degrade::localize(&local, &hu, &params, &mask)
                .with_context(|| format!("simulating {file} from {source}"))?;
            let mask_file = format!("mask/{i:04}.png");
            let unit = mask.to_kind(Kind::Float).to_device(Device::Cpu);
            let (h, w) = (args.size as usize, args.size as usize);
            let unit = ndarray::Array2::from_shape_vec((h, w), Vec::<f32>::try_from(unit.view(-1))?)?;
            io::write_png_u16(&args.out.join(&mask_file), &unit.view())?;
            let body_fraction = (mask.logical_and(&body).sum(Kind::Double)
                / body.sum(Kind::Double).clamp_min(1.0))
            .double_value(&[]);
            let full_label = local.full_label(args.full_views);
            let label = 4.0 - body_fraction * (4.0 - full_label);
            localized =
                Some(Localized { degradation: local, region, mask: mask_file, body_fraction, full_label });
            (image, full, label, None)
        } else {
            let (low, reference) = simulate::simulate_pair(&hu, &params)
                .with_context(|| format!("simulating {file} from {source}"))?;
            let (image, clean_label, degraded) =
                scan_or_family(family, args.full_views, (dose, views), seed, low, &reference)?;
            (image, reference, clean_label, degraded)
        };
        write_unit(&image_dir.join(&file), &image)?;
        write_unit(&reference_dir.join(&file), &reference)?;
        let label = simulate::reader_label(clean_label, ldctq::rng::derive_seed(seed, 3));
        labels.insert(file.clone(), label);
        let (degradation, measured) = degraded.unzip();
        let family = (family != Family::Scan).then_some(family);
        meta.push(Entry {
            file,
            source,
            dose,
            views,
            seed,
            label,
            clean_label,
            pixel_mm,
            anatomy,
            augmentation,
            series: args.series.then_some(i / combos.len()),
            family,
            degradation,
            measured,
            localized,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let labels_name = if args.split == Split::Train { "train.json" } else { "test.json" };
    ldctq::io::write_atomic(&args.out.join(labels_name), serde_json::to_string_pretty(&labels)?.as_bytes())?;
    ldctq::io::write_atomic(&args.out.join("meta.json"), serde_json::to_string_pretty(&meta)?.as_bytes())?;
    eprintln!(
        "wrote {} images ({} sources, {}) to {} in {:.1} s",
        count,
        sources.len(),
        if args.localized {
            "localized".to_string()
        } else {
            format!("{} dose/view combinations", combos.len())
        },
        args.out.display(),
        bar.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A degraded family's degradation and its measured factors.
type Degraded = (Degradation, Measured);

/// The low-dose scan `low` of a slice with reference `reference` as the image of `family`: the image,
/// its noise-free label and, for a degraded family, the degradation and its measured factors.
fn scan_or_family(
    family: Family,
    full_views: i64,
    (dose, views): (f64, i64),
    seed: u64,
    low: Tensor,
    reference: &Tensor,
) -> anyhow::Result<(Tensor, f64, Option<Degraded>)> {
    if family == Family::Scan {
        return Ok((low, simulate::quality_label(dose, views, full_views), None));
    }
    let mut rng = Rng::new(ldctq::rng::derive_seed(seed, 4));
    let degradation = match family {
        Family::Blur => Degradation::Gaussian { sigma: 0.5 + 2.5 * rng.uniform() },
        Family::Oversmooth => {
            let noise_hu = (&low - reference).square().mean(Kind::Double).sqrt().double_value(&[]);
            Degradation::random_smoothing(&mut rng, noise_hu)
        }
        _ => Degradation::random_texture(&mut rng),
    };
    let x = degrade::apply(&degradation, &low, reference, ldctq::rng::derive_seed(seed, 5))?;
    let measured = degrade::measure(&degradation, &x, &low, reference)?;
    let label = degrade::perceptual_label(dose, views, full_views, &measured);
    Ok((x, label, Some((degradation, measured))))
}

/// The sources in order: `phantom`, or every frame of every image file at a path.
fn load_sources(specs: &[String], fov_mm: f64, device: Device) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if spec.eq_ignore_ascii_case("phantom") {
            sources.push(Source::Phantom);
            continue;
        }
        // `PATH@anatomy`: a trailing word after the last @.
        let (spec, given) = match spec.rsplit_once('@') {
            Some((p, a)) if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic()) => {
                (p, Some(a.to_ascii_lowercase()))
            }
            _ => (spec, None),
        };
        let files = io::list_images(Path::new(spec))?;
        anyhow::ensure!(!files.is_empty(), "{spec}: no supported image files");
        for path in files {
            let slices = io::read_image(&path)?;
            let (_, h, w) = slices.pixels.dim();
            // [0, 1] files are taken as made with the LDCTIQA window; npy and integer TIFF as HU.
            let hu = ldctq::data::frames(&slices, Some(Space::Hu), Space::Hu, Window::LDCTIQA)?;
            anyhow::ensure!(h >= 2 && w >= 2, "{}: {h} x {w} is too small", path.display());
            let pixel_mm = dicom_pixel_mm(&path).unwrap_or(fov_mm / w.max(h) as f64);
            for (frame, hu) in hu.unbind(0).into_iter().enumerate() {
                if hu.min().double_value(&[]) > -500.0 {
                    eprintln!("warning: {}#{frame} has no air (min > -500 HU): is it in HU?", path.display());
                }
                let hu = hu.to_kind(Kind::Float).to_device(device);
                let anatomy = given.clone().or_else(|| dicom_anatomy(&path));
                sources.push(Source::Real { path: path.clone(), frame, hu, pixel_mm, anatomy });
            }
        }
    }
    anyhow::ensure!(!sources.is_empty(), "--sources: nothing to simulate from");
    Ok(sources)
}

/// The anatomy of a DICOM file's BodyPartExamined: head, chest or abdomen, if it names one of their parts.
fn dicom_anatomy(path: &Path) -> Option<String> {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .open_file(path)
        .ok()?;
    let part = obj.element_opt(dicom_dictionary_std::tags::BODY_PART_EXAMINED).ok()??.to_str().ok()?;
    let part = part.trim().to_ascii_uppercase();
    let of = |words: &[&str]| words.iter().any(|w| part.contains(w));
    let anatomy = if of(&["HEAD", "BRAIN", "SKULL", "NECK"]) {
        "head"
    } else if of(&["CHEST", "THORAX", "LUNG", "HEART"]) {
        "chest"
    } else if of(&["ABDOMEN", "PANCREAS", "LIVER", "KIDNEY", "PELVIS"]) {
        "abdomen"
    } else {
        return None;
    };
    Some(anatomy.to_string())
}

/// PixelSpacing (row spacing, mm) of a DICOM file, if it has one.
fn dicom_pixel_mm(path: &Path) -> Option<f64> {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .open_file(path)
        .ok()?;
    let spacing =
        obj.element_opt(dicom_dictionary_std::tags::PIXEL_SPACING).ok()??.to_multi_float64().ok()?;
    spacing.first().copied().filter(|s| *s > 0.0 && s.is_finite())
}

/// A permutation of `0..n`.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    order
}

/// Writes an HU image as an f32 TIFF in [0, 1] through the LDCTIQA window.
fn write_unit(path: &Path, hu: &Tensor) -> anyhow::Result<()> {
    let unit = Window::LDCTIQA.to_unit(hu)?.to_kind(Kind::Float).to_device(Device::Cpu);
    let (h, w) = (unit.size()[0] as usize, unit.size()[1] as usize);
    let values = Vec::<f32>::try_from(unit.contiguous().view(-1))?;
    let image = ndarray::Array2::from_shape_vec((h, w), values)?;
    io::write_tiff_f32(path, &image.view())?;
    Ok(())
}
