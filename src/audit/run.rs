//! The audit of a data set: ascent, blur curve and noise curve of every image.
use super::ascent::{ascend, to_vec};
use super::curves::{blur_curve, image_seed, noise_curve};
use super::Result;
use super::{AuditError, AuditOptions, AuditRun, Event, ImageAudit};
use crate::criterion::QualityCriterion;
use crate::data::{load_frame, read_meta, Dataset, Sample};
use crate::error::Error;
use crate::metrics::{hu_plus_1024, psnr, ssim, vif, VIF_NOISE_VARIANCE};
use crate::train::gradient_cosine;
use crate::window::{Space, Window};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The frame of a sample and of its reference, as (H, W) f32 in [0, 1] (LDCTIQA window for HU files).
fn load_pair(s: &Sample, raw_as: Option<Space>) -> Result<(Tensor, Tensor)> {
    let read = |p: &std::path::Path, frame| load_frame(p, frame, raw_as, Space::Unit, Window::LDCTIQA);
    let x = read(&s.path, s.frame)?;
    let rp = s.reference.as_ref().expect("checked by run");
    let r = read(rp, s.frame)
        .or_else(|_| read(rp, 0))
        .map_err(|e| Error::InvalidInput(format!("reference of {}: {e}", s.path.display())))?;
    if r.size() != x.size() {
        return Err(Error::InvalidInput(format!(
            "{}: reference {} is {:?}, the image {:?}",
            s.path.display(),
            rp.display(),
            r.size(),
            x.size()
        ))
        .into());
    }
    Ok((x, r))
}

/// PSNR, SSIM (in `window`) and VIF (HU + 1024) of `x` against `reference`, all `(N, 1, H, W)` in
/// [0, 1] (LDCTIQA), per image.
type FullReference = (Vec<f64>, Vec<f64>, Vec<Option<f64>>);

fn full_reference(x: &Tensor, reference: &Tensor, window: Window) -> Result<FullReference> {
    let (xw, rw) = (window.from_ldctiqa(x)?, window.from_ldctiqa(reference)?);
    let v = match vif(&hu_plus_1024(x), &hu_plus_1024(reference), VIF_NOISE_VARIANCE) {
        Some(v) => to_vec(&v)?.into_iter().map(|v| v.is_finite().then_some(v)).collect(),
        None => vec![None; x.size()[0] as usize],
    };
    Ok((to_vec(&psnr(&xw, &rw))?, to_vec(&ssim(&xw, &rw))?, v))
}

/// Audits every image of `data` (the first `opts.limit`) with `criterion` (see the module docs).
/// Every image needs a full-dose reference. Images run on `device`; `on_event` sees the progress.
pub fn run(
    criterion: &dyn QualityCriterion,
    data: &Dataset,
    opts: &AuditOptions,
    device: Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<AuditRun> {
    opts.validate()?;
    let ascent = opts.ascent()?;
    Window::new(opts.window.center, opts.window.width)?;
    let start = Instant::now();
    let samples: &[Sample] = &data.samples[..opts.limit.unwrap_or(usize::MAX).min(data.samples.len())];
    if samples.is_empty() {
        return Err(AuditError::NoImages(data.root.clone()));
    }
    let relative = |s: &Sample| s.path.strip_prefix(&data.root).unwrap_or(&s.path).display().to_string();
    let missing: Vec<&Sample> = samples.iter().filter(|s| s.reference.is_none()).collect();
    if let Some(first) = missing.first() {
        return Err(AuditError::MissingReference { file: relative(first), missing: missing.len() });
    }
    let meta = read_meta(&data.root)?;
    let n = samples.len();
    let mut images = Vec::with_capacity(n);
    let mut i0 = 0;
    while i0 < n {
        // A batch: consecutive images of one size.
        let mut pairs = vec![load_pair(&samples[i0], opts.raw_as)?];
        while i0 + pairs.len() < n && pairs.len() < opts.batch {
            let next = load_pair(&samples[i0 + pairs.len()], opts.raw_as)?;
            if next.0.size() != pairs[0].0.size() {
                break;
            }
            pairs.push(next);
        }
        let count = pairs.len();
        let stack = |f: &dyn Fn(&(Tensor, Tensor)) -> &Tensor| -> Result<Tensor> {
            let list: Vec<&Tensor> = pairs.iter().map(f).collect();
            Ok(Tensor::f_stack(&list, 0)?.f_unsqueeze(1)?.f_to_kind(Kind::Float)?.f_to_device(device)?)
        };
        let (x, r) = (stack(&|p| &p.0)?, stack(&|p| &p.1)?);
        let rw = opts.window.from_ldctiqa(&r)?;

        let mut score_by_step = vec![Vec::with_capacity(ascent.steps + 1); count];
        let mut psnr_by_step = vec![Vec::with_capacity(ascent.steps + 1); count];
        let mut on_step = |k: usize, xk: &Tensor, scores: &[f64]| -> Result<()> {
            let p = to_vec(&psnr(&opts.window.from_ldctiqa(xk)?, &rw))?;
            for j in 0..count {
                score_by_step[j].push(scores[j]);
                psnr_by_step[j].push(p[j]);
            }
            if k > 0 {
                on_event(Event::Step { step: k, steps: ascent.steps });
            }
            Ok(())
        };
        let out = ascend(criterion, &x, &ascent, &mut on_step)?;
        // Does the ascent's first direction point at the reference? cos(d score / d x, r - x).
        let cosine = to_vec(&gradient_cosine(&out.start_grad, &r.f_sub(&x)?))?;
        let linf = to_vec(&(&out.images - &x).abs().amax([1i64, 2, 3].as_slice(), false))?;
        let lo = x.f_sub_scalar(ascent.epsilon)?.f_clamp_min(0.0)?;
        let hi = x.f_add_scalar(ascent.epsilon)?.f_clamp_max(1.0)?;
        let nearest = r.f_clamp_tensor(Some(&lo), Some(&hi))?;
        let ceiling = to_vec(&psnr(&opts.window.from_ldctiqa(&nearest)?, &rw))?;
        let (p0, s0, v0) = full_reference(&x, &r, opts.window)?;
        let (p1, s1, v1) = full_reference(&out.images, &r, opts.window)?;
        let score_ref = super::ascent::score_unit(criterion, &r)?;
        let blur = blur_curve(criterion, &r, &opts.sigmas)?;
        let seeds: Vec<u64> = (i0..i0 + count).map(|i| image_seed(opts.seed, i)).collect();
        let noise = noise_curve(criterion, &x, &r, &opts.noise_levels, &seeds)?;

        for j in 0..count {
            let s = &samples[i0 + j];
            let name = s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            images.push(ImageAudit {
                file: relative(s),
                frame: s.frame,
                dose: meta.get(&name).and_then(|m| m.dose),
                score_input: out.start_scores[j],
                score_reference: score_ref[j],
                score_ascent: out.scores[j],
                psnr_input: p0[j],
                psnr_ascent: p1[j],
                psnr_ceiling: ceiling[j],
                ssim_input: s0[j],
                ssim_ascent: s1[j],
                vif_input: v0[j],
                vif_ascent: v1[j],
                linf: linf[j],
                gradient_cosine: cosine[j],
                score_by_step: std::mem::take(&mut score_by_step[j]),
                psnr_by_step: std::mem::take(&mut psnr_by_step[j]),
                blur_scores: blur[j].clone(),
                noise_scores: noise.scores[j].clone(),
                noise_hu: noise.noise_hu[j],
            });
        }
        i0 += count;
        on_event(Event::Progress { done: i0, total: n });
    }
    Ok(AuditRun {
        images,
        options: opts.clone(),
        step_size: ascent.step_size,
        criterion: criterion.info().name,
        seconds: start.elapsed().as_secs_f64(),
    })
}
