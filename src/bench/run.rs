//! The benchmark run: every candidate on every image, scored, with full-reference metrics.
use super::{BenchMaps, BenchOptions, BenchRun, Event, ImageRecord, MethodKind, MethodRun, Timing};
use crate::criterion::QualityCriterion;
use crate::data::{load_frame, read_meta, Dataset, ImageMeta, Sample};
use crate::denoise::{denoise_checked, Candidate, Denoiser};
use crate::error::{Error, Result};
use crate::io;
use crate::metrics::{hu_plus_1024, psnr, ssim, vif, VIF_NOISE_VARIANCE};
use crate::window::{Space, Window};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn to_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu).contiguous().view(-1))?)
}

/// The frame of `path` as an (H, W) f32 tensor in [0, 1] (LDCTIQA window for HU files).
fn read_unit(path: &Path, frame: usize, raw_as: Option<Space>) -> Result<Tensor> {
    load_frame(path, frame, raw_as, Space::Unit, Window::LDCTIQA)
}

/// The records of the benchmarked samples, each with the window of its PSNR and SSIM.
fn records(data: &Dataset, samples: &[Sample], opts: &BenchOptions) -> Result<Vec<ImageRecord>> {
    let meta = read_meta(&data.root)?;
    samples
        .iter()
        .map(|s| {
            let name = s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let ImageMeta { dose, views, anatomy } = meta.get(&name).cloned().unwrap_or_default();
            let anatomy = s.anatomy.clone().or(anatomy); // a manifest's column, else meta.json
            let file = s.path.strip_prefix(&data.root).unwrap_or(&s.path).display().to_string();
            let window = match (&anatomy, opts.anatomy_windows) {
                (Some(a), true) => Window::for_anatomy(a).ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "anatomy {a:?} of {file} has no window (known: {})",
                        Window::anatomy_names()
                    ))
                })?,
                _ => opts.window,
            };
            Ok(ImageRecord {
                file,
                frame: s.frame,
                label: s.label,
                dose,
                views,
                anatomy,
                window,
                has_reference: s.reference.is_some(),
            })
        })
        .collect()
}

/// Runs every candidate on every image of `data` (the first `opts.limit`, of them `opts.shard`'s part)
/// and scores everything with `criterion`. Images and denoisers run on `device`. A denoiser that fails
/// (to load, on a batch, with a bad output) is recorded with its error and dropped; the others go on.
/// `on_event` sees the progress.
pub fn run(
    criterion: &dyn QualityCriterion,
    data: &Dataset,
    candidates: Vec<Candidate>,
    opts: &BenchOptions,
    device: Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<BenchRun> {
    if opts.batch == 0 {
        return Err(Error::InvalidInput("batch must be at least 1".into()));
    }
    Window::new(opts.window.center, opts.window.width)?;
    let start = Instant::now();
    tch::manual_seed(opts.seed as i64);
    let _guard = tch::no_grad_guard();
    let samples: &[Sample] = &data.samples[..opts.limit.unwrap_or(usize::MAX).min(data.samples.len())];
    if samples.is_empty() {
        return Err(Error::InvalidInput(format!("{}: no images", data.root.display())));
    }
    let samples = match opts.shard {
        Some(shard) => &samples[shard.range(samples.len(), opts.batch)],
        None => samples,
    };
    if samples.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: shard {} has no images ({} images in batches of {})",
            data.root.display(),
            opts.shard.map(|s| s.to_string()).unwrap_or_default(),
            data.samples.len().min(opts.limit.unwrap_or(usize::MAX)),
            opts.batch
        )));
    }
    let images = records(data, samples, opts)?;
    let n = samples.len();
    let has_refs = samples.iter().any(|s| s.reference.is_some());
    let mut methods = vec![MethodRun::new("input", MethodKind::Input, n)];
    if has_refs {
        methods.push(MethodRun::new("reference", MethodKind::Reference, n));
    }
    let first_denoiser = methods.len();
    let mut active: Vec<Option<Box<dyn Denoiser>>> = Vec::new();
    for c in candidates {
        let mut m = MethodRun::new(&c.name, MethodKind::Denoiser, n);
        m.spec = Some(c.spec);
        match c.denoiser {
            Ok(d) => {
                m.info = Some(d.info());
                active.push(Some(d));
            }
            Err(e) => {
                on_event(Event::Skipped { method: &m.name, error: &e });
                m.error = Some(e);
                m.failed_at = Some(0);
                active.push(None);
            }
        }
        methods.push(m);
    }
    let info = criterion.info();
    let anatomies = prompt_anatomies(&images, &info.anatomies, opts.anatomy_prompts)?;
    // The anatomy prompts of the images `rows` (indices into `images`), if so conditioned.
    let prompts_of = |rows: &[usize]| -> Option<Vec<Option<String>>> {
        anatomies.as_ref().map(|each| rows.iter().map(|&i| each[i].clone()).collect())
    };
    // Scores of the images `rows`, each on its anatomy prompt if so conditioned.
    let score = |y: &Tensor, rows: &[usize]| -> Result<Vec<f64>> {
        to_vec(&match prompts_of(rows) {
            Some(each) => criterion.score_anatomies(y, &each)?,
            None => criterion.score(y)?,
        })
    };
    // Images in the model's input space, from the LDCTIQA [0, 1] space denoisers work in.
    let to_model_space = |x: &Tensor| Window::LDCTIQA.convert(x, Space::Unit, info.input);
    let mut timing = Timing { images: n, ..Timing::default() };
    let mut maps = opts.maps.then(|| BenchMaps::new(info.image_size));
    // The maps of a method's images `y` (the images `rows`), each on its anatomy prompt if so conditioned.
    let add_maps = |maps: &mut BenchMaps, method: &str, y: &Tensor, rows: &[usize]| -> Result<()> {
        maps.add(criterion, method, y, &to_model_space(y)?, rows, prompts_of(rows).as_deref())
    };
    let mut i0 = 0;
    while i0 < n {
        // A batch: consecutive images of one size.
        let t = Instant::now();
        let mut frames = vec![read_unit(&samples[i0].path, samples[i0].frame, opts.raw_as)?];
        while i0 + frames.len() < n && frames.len() < opts.batch {
            let s = &samples[i0 + frames.len()];
            let next = read_unit(&s.path, s.frame, opts.raw_as)?;
            if next.size() != frames[0].size() {
                break;
            }
            frames.push(next);
        }
        let count = frames.len();
        let batch = &samples[i0..i0 + count];
        let mut refs: Vec<(usize, Tensor)> = Vec::new();
        for (j, s) in batch.iter().enumerate() {
            if let Some(rp) = &s.reference {
                let r = read_unit(rp, s.frame, opts.raw_as)
                    .or_else(|_| read_unit(rp, 0, opts.raw_as))
                    .map_err(|e| Error::InvalidInput(format!("reference of {}: {e}", s.path.display())))?;
                if r.size() != frames[j].size() {
                    return Err(Error::InvalidInput(format!(
                        "{}: reference {} is {:?}, the image {:?}",
                        s.path.display(),
                        rp.display(),
                        r.size(),
                        frames[j].size()
                    )));
                }
                refs.push((j, r));
            }
        }
        let x = Tensor::stack(&frames, 0).unsqueeze(1).to_kind(Kind::Float).contiguous().to_device(device);
        let ref_idx: Vec<usize> = refs.iter().map(|(j, _)| *j).collect();
        let ref_t = (!refs.is_empty()).then(|| {
            let list: Vec<&Tensor> = refs.iter().map(|(_, r)| r).collect();
            Tensor::stack(&list, 0).unsqueeze(1).to_kind(Kind::Float).to_device(device)
        });
        let ref_sel =
            Tensor::from_slice(&ref_idx.iter().map(|&j| j as i64).collect::<Vec<_>>()).to_device(device);
        // Each reference image's window (one call when they share it).
        let ref_windows: Vec<Window> = ref_idx.iter().map(|&j| images[i0 + j].window).collect();
        let window_each = |t: &Tensor| -> Result<Tensor> {
            Ok(match ref_windows.first() {
                Some(w0) if ref_windows.iter().all(|w| w == w0) => w0.from_ldctiqa(t)?,
                _ => {
                    let each = ref_windows
                        .iter()
                        .enumerate()
                        .map(|(k, w)| w.from_ldctiqa(&t.narrow(0, k as i64, 1)));
                    Tensor::cat(&each.collect::<std::result::Result<Vec<_>, _>>()?, 0)
                }
            })
        };
        let ref_windowed = ref_t.as_ref().map(window_each).transpose()?;
        let ref_hu = ref_t.as_ref().map(hu_plus_1024);
        let all: Vec<usize> = (i0..i0 + count).collect();
        let ref_rows: Vec<usize> = ref_idx.iter().map(|j| i0 + j).collect();
        timing.load_seconds += t.elapsed().as_secs_f64();

        // Scores and full-reference metrics of one batch of images (of the method `m`).
        let evaluate = |m: &mut MethodRun, y: &Tensor, timing: &mut Timing| -> Result<()> {
            let t = Instant::now();
            let scores = score(&to_model_space(y)?, &all)?;
            timing.score_seconds += t.elapsed().as_secs_f64();
            for (j, s) in scores.into_iter().enumerate() {
                m.scores[i0 + j] = Some(s);
            }
            if let Some(r) = &ref_windowed {
                let t = Instant::now();
                let y_sel = y.index_select(0, &ref_sel);
                let y = window_each(&y_sel)?;
                let (p, q) = (to_vec(&psnr(&y, r))?, to_vec(&ssim(&y, r))?);
                let v = match ref_hu.as_ref().and_then(|r| vif(&hu_plus_1024(&y_sel), r, VIF_NOISE_VARIANCE))
                {
                    Some(v) => to_vec(&v)?.into_iter().map(|x| x.is_finite().then_some(x)).collect(),
                    None => vec![None; p.len()],
                };
                for (k, &j) in ref_idx.iter().enumerate() {
                    m.psnr[i0 + j] = Some(p[k]);
                    m.ssim[i0 + j] = Some(q[k]);
                    m.vif[i0 + j] = v[k];
                }
                timing.metrics_seconds += t.elapsed().as_secs_f64();
            }
            Ok(())
        };
        on_event(Event::Method { method: "input" });
        evaluate(&mut methods[0], &x, &mut timing)?;
        if let Some(maps) = maps.as_mut() {
            add_maps(maps, "input", &x, &all)?;
        }
        if let Some(r) = &ref_t {
            if let Some(maps) = maps.as_mut() {
                add_maps(maps, "reference", r, &ref_rows)?;
            }
            let t = Instant::now();
            let scores = score(&to_model_space(r)?, &ref_rows)?;
            timing.score_seconds += t.elapsed().as_secs_f64();
            for (k, &j) in ref_idx.iter().enumerate() {
                methods[1].scores[i0 + j] = Some(scores[k]);
            }
        }
        for (k, slot) in active.iter_mut().enumerate() {
            let Some(denoiser) = slot.as_mut() else { continue };
            let m = &mut methods[first_denoiser + k];
            on_event(Event::Method { method: &m.name });
            let t = Instant::now();
            let out = denoise_checked(denoiser.as_mut(), &x);
            let dt = t.elapsed().as_secs_f64();
            m.denoise_seconds += dt;
            timing.denoise_seconds += dt;
            match out {
                Ok(y) => {
                    evaluate(m, &y, &mut timing)?;
                    if let Some(maps) = maps.as_mut() {
                        add_maps(maps, &m.name, &y, &all)?;
                    }
                    if let Some(dir) = &opts.save_images {
                        save_batch(&dir.join(&m.name), &y, &images[i0..i0 + count])?;
                    }
                }
                Err(e) => {
                    on_event(Event::Failed { method: &m.name, first: i0, end: i0 + count, error: &e });
                    m.error = Some(e);
                    m.failed_at = Some(i0);
                    *slot = None; // destroys the state; a plugin's library stays loaded
                }
            }
        }
        i0 += count;
        on_event(Event::Progress { done: i0, total: n });
    }
    timing.total_seconds = start.elapsed().as_secs_f64();
    timing.images_per_second = n as f64 / timing.total_seconds.max(1e-9);
    timing.score_share = timing.score_seconds / timing.total_seconds.max(1e-9);
    let anatomy_prompts = if anatomies.is_some() { info.anatomies } else { Vec::new() };
    Ok(BenchRun { images, methods, timing, window: opts.window, anatomy_prompts, maps })
}

/// Each image's anatomy prompt (`None`: the prompt alone) when `wanted` and the criterion has anatomy
/// prompts (`known`); an image's anatomy that is not one of them is an error naming it.
fn prompt_anatomies(
    images: &[ImageRecord],
    known: &[String],
    wanted: bool,
) -> Result<Option<Vec<Option<String>>>> {
    if !wanted || known.is_empty() {
        return Ok(None);
    }
    let each = images
        .iter()
        .map(|r| {
            // Records carry lower-case anatomies (`data::read_meta`, manifest columns).
            let Some(a) = &r.anatomy else { return Ok(None) };
            if known.contains(a) {
                Ok(Some(a.clone()))
            } else {
                Err(Error::InvalidInput(format!(
                    "anatomy {a:?} of {}: the model's anatomy prompts are {} (score every image with one \
                     anatomy, or none, to benchmark it anyway)",
                    r.file,
                    known.join(", ")
                )))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(each))
}

fn save_batch(dir: &Path, y: &Tensor, images: &[ImageRecord]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let y = y.to_device(Device::Cpu).to_kind(Kind::Float);
    let (h, w) = (y.size()[2] as usize, y.size()[3] as usize);
    for (j, rec) in images.iter().enumerate() {
        let values = Vec::<f32>::try_from(y.get(j as i64).contiguous().view(-1))?;
        let stem =
            Path::new(&rec.file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = if rec.frame > 0 { format!("{stem}_{}.tif", rec.frame) } else { format!("{stem}.tif") };
        let image = ndarray::Array2::from_shape_vec((h, w), values)
            .map_err(|e| Error::InvalidInput(format!("saving {name}: {e}")))?;
        io::write_tiff_f32(&dir.join(name), &image.view())?;
    }
    Ok(())
}
