//! The differentiable quality criterion: the score as a perceptual loss or reward.
//!
//! Scores are per image, in [0, 4], higher is better. The gradient with respect to the images is a
//! vector-Jacobian product: `grad = d(sum_i u_i * score_i) / d images` for an upstream vector `u`
//! (ones by default), so a trainer can fold a loss weight and sign into `u`. Model parameters are
//! frozen in criterion use: no weight gradients are computed.
//!
//! Quality maps ([`QualityCriterion::quality_map`]) say where in an image quality is lost.
use crate::error::{Error, Result};
use crate::filters;
use crate::model::{upstream_vector, QualityModel};
use crate::preprocess::Preprocess;
use crate::window::{Space, Window};
use tch::{Kind, Tensor};

/// What a criterion computes and expects.
#[derive(Debug, Clone, PartialEq)]
pub struct CriterionInfo {
    pub name: String,
    /// Always true for ldctq's quality score.
    pub higher_is_better: bool,
    /// (min, max) of the score.
    pub score_range: (f64, f64),
    /// What the pixel values given to the criterion must mean.
    pub input: Space,
    /// The HU window: applied to HU images, or the one [0, 1] images are expected to be made with.
    pub window: Window,
    /// Images are resized (differentiably) to this size.
    pub image_size: i64,
    /// The anatomy words its prompt can be conditioned on, image by image
    /// ([`QualityCriterion::score_anatomies`]); empty without anatomy prompts.
    pub anatomies: Vec<String>,
}

/// How per-image losses are reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    None,
    Mean,
    Sum,
}

/// How [`QualityCriterion::quality_map`] locates quality loss. Every map is (N, H, W) at the images'
/// own size, f32 (f64 for an f64 model), and higher where quality is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapMethod {
    /// Model-intrinsic: `4 - score` of each patch ([`QualityModel::patch_scores`]: the patch's
    /// FiLM-modulated token through the local and texture heads, fused with the slice's global head),
    /// upsampled bilinearly to the image ([`QualityModel::intrinsic_map`]). Same scale as `4 - score`.
    Intrinsic,
    /// Sensitivity: `|d score / d image|` (the gradient's magnitude, not gradient x input), smoothed by
    /// a Gaussian of [`gradient_sigma`] pixels; in score units per unit of pixel value.
    Gradient,
    /// Occlusion: what the score would gain if the 3 x 3 patches around each patch were replaced by
    /// the mean of the ring around them, in token space ([`QualityModel::occlusion_gains`] with
    /// [`crate::model::OCCLUSION_BLOCK`]), upsampled bilinearly ([`QualityModel::occlusion_map`]). In
    /// score units.
    Occlusion,
    /// Smoothing gain (gradient x input): the first-order score gained by smoothing each
    /// neighbourhood, `G_w * (-(d score / d x) . (x - G_s x))` (elementwise product) with `s` a
    /// quarter of [`gradient_sigma`] (1 px at 256 x 256, at least 0.5) and `w` three times it (12 px;
    /// [`smoothing_sigmas`]). High where the model's gradient asks to remove detail: residual noise
    /// and streaks; negative where smoothing would cost score. Score units per pixel.
    Smoothing,
}

impl MapMethod {
    pub const ALL: [MapMethod; 4] =
        [MapMethod::Intrinsic, MapMethod::Gradient, MapMethod::Occlusion, MapMethod::Smoothing];

    pub fn name(self) -> &'static str {
        match self {
            Self::Intrinsic => "intrinsic",
            Self::Gradient => "gradient",
            Self::Occlusion => "occlusion",
            Self::Smoothing => "smoothing",
        }
    }

    /// What the map's values are, for a colour bar.
    pub fn quantity(self) -> &'static str {
        match self {
            Self::Intrinsic => "4 - patch score",
            Self::Gradient => "|d score / d x|",
            Self::Occlusion => "repair gain",
            Self::Smoothing => "smoothing gain",
        }
    }

    /// Whether the map comes from the score's input gradient alone (any criterion has it).
    pub fn from_gradient(self) -> bool {
        matches!(self, Self::Gradient | Self::Smoothing)
    }
}

impl std::str::FromStr for MapMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            Error::InvalidInput(format!(
                "map method {s:?}: expected intrinsic, gradient, occlusion or smoothing"
            ))
        })
    }
}

/// The smoothing of gradient maps: sigma = (H + W) / 128 pixels (4 px for 256 x 256; about half a patch
/// of MedSigLIP-448's 32 x 32 grid), at most 50.
pub fn gradient_sigma(h: i64, w: i64) -> f64 {
    ((h + w) as f64 / 128.0).min(50.0)
}

/// The two Gaussians of [`MapMethod::Smoothing`]: the detail `x - G_s x` and the window `w` of the
/// gain, (s, w) = (1/4, 3) [`gradient_sigma`] pixels ((1, 12) for 256 x 256), s at least half a
/// pixel (a narrower Gaussian leaves no detail), w at most 50.
pub fn smoothing_sigmas(h: i64, w: i64) -> (f64, f64) {
    let s = gradient_sigma(h, w);
    ((s / 4.0).max(0.5), (3.0 * s).min(50.0))
}

/// A map from the score's input gradient ([`MapMethod::from_gradient`]) of any criterion, from the
/// vector-Jacobian product with ones.
pub fn gradient_map<C: QualityCriterion + ?Sized>(
    criterion: &C,
    images: &Tensor,
    method: MapMethod,
) -> Result<Tensor> {
    Preprocess::check(images)?;
    map_of_gradient(method, images, criterion.score_and_grad(images, None)?)
}

/// [`gradient_map`] of images each conditioned on its own anatomy
/// ([`QualityCriterion::score_anatomies`]).
pub fn gradient_map_anatomies<C: QualityCriterion + ?Sized>(
    criterion: &C,
    images: &Tensor,
    anatomies: &[Option<String>],
    method: MapMethod,
) -> Result<Tensor> {
    Preprocess::check(images)?;
    let scores_and_grad = score_and_grad_of(images, None, |x| criterion.score_anatomies(x, anatomies))?;
    map_of_gradient(method, images, scores_and_grad)
}

/// The map of (scores, gradient) of `images`, (N, H, W) in the scores' dtype: the gradient's magnitude
/// smoothed by [`gradient_sigma`], or the smoothing gain ([`MapMethod::Smoothing`]).
fn map_of_gradient(method: MapMethod, images: &Tensor, (scores, grad): (Tensor, Tensor)) -> Result<Tensor> {
    let size = grad.size();
    let (n, h, w) = (size[0], size[size.len() - 2], size[size.len() - 1]);
    tch::no_grad(|| {
        let g = grad.f_to_kind(scores.kind())?.f_reshape([n, 1, h, w])?;
        let map = match method {
            MapMethod::Smoothing => {
                let (s, window) = smoothing_sigmas(h, w);
                let x = images
                    .f_detach()?
                    .f_to_device(g.device())?
                    .f_to_kind(g.kind())?
                    .f_reshape([n, 1, h, w])?;
                let detail = x.f_sub(&filters::gaussian(&x, s)?)?; // x - G_s x
                filters::gaussian(&g.f_mul(&detail)?.f_neg()?, window)?
            }
            MapMethod::Gradient => filters::gaussian(&g.f_abs()?, gradient_sigma(h, w))?,
            other => return Err(Error::InvalidInput(format!("{} is not a gradient map", other.name()))),
        };
        Ok(map.f_reshape([n, h, w])?)
    })
}

/// A differentiable no-reference quality criterion.
///
/// Images are (N, H, W) or (N, 1, H, W), any size, float, on any device (moved to the model's).
pub trait QualityCriterion {
    fn info(&self) -> CriterionInfo;

    /// Scores (N), f32 (f64 for an f64 model). Differentiable with respect to `images` when they
    /// require grad, so the score can enter a larger graph (e.g. a denoiser's loss); otherwise computed
    /// without a graph.
    fn score(&self, images: &Tensor) -> Result<Tensor>;

    /// Scores (N) of images each conditioned on its own anatomy: `anatomies` has N entries, each one
    /// of `info().anatomies` or `None` (the prompt alone). Differentiable as [`Self::score`]. The
    /// default serves criteria without anatomy prompts: [`Self::score`], refusing any anatomy.
    fn score_anatomies(&self, images: &Tensor, anatomies: &[Option<String>]) -> Result<Tensor> {
        match anatomies.iter().flatten().next() {
            None => self.score(images),
            Some(a) => {
                Err(Error::Unsupported(format!("{}: no anatomy prompts (got {a:?})", self.info().name)))
            }
        }
    }

    /// Scores (N) and the vector-Jacobian product with `upstream` (N) (ones when `None`): a tensor of
    /// the images' shape, dtype and device. `images` need not require grad, and gradient mode need not
    /// be on (it is switched on for the call: it works under `tch::no_grad`).
    fn score_and_grad(&self, images: &Tensor, upstream: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        score_and_grad_by_autograd(self, images, upstream)
    }

    /// A quality map of each image, (N, H, W), high where quality is lost (see [`MapMethod`]). The
    /// default computes the maps of the score's gradient ([`MapMethod::from_gradient`]) and refuses
    /// [`MapMethod::Intrinsic`] and [`MapMethod::Occlusion`], which need the model's patch tokens.
    fn quality_map(&self, images: &Tensor, method: MapMethod) -> Result<Tensor> {
        if method.from_gradient() {
            return gradient_map(self, images, method);
        }
        Err(Error::Unsupported(format!("{}: no {} quality map", self.info().name, method.name())))
    }

    /// [`Self::quality_map`] of images each conditioned on its own anatomy, as
    /// [`Self::score_anatomies`] takes them. The default: [`Self::quality_map`] when no image names an
    /// anatomy, the gradient maps of [`Self::score_anatomies`] otherwise, other methods refused.
    fn quality_map_anatomies(
        &self,
        images: &Tensor,
        method: MapMethod,
        anatomies: &[Option<String>],
    ) -> Result<Tensor> {
        match (anatomies.iter().flatten().next(), method) {
            (None, _) => self.quality_map(images, method),
            (Some(_), m) if m.from_gradient() => gradient_map_anatomies(self, images, anatomies, m),
            (Some(a), _) => Err(Error::Unsupported(format!(
                "{}: no {} quality map conditioned on an anatomy (got {a:?})",
                self.info().name,
                method.name()
            ))),
        }
    }

    /// A loss to minimise: `4 - score` (the distance to the best score), reduced; f32 (f64 for f64
    /// scores).
    fn loss(&self, images: &Tensor, reduction: Reduction) -> Result<Tensor> {
        let per_image = self.score(images)?.f_neg()?.f_add_scalar(self.info().score_range.1)?;
        let kind = if per_image.kind() == Kind::Double { Kind::Double } else { Kind::Float };
        Ok(match reduction {
            Reduction::None => per_image,
            Reduction::Mean => per_image.f_mean(kind)?,
            Reduction::Sum => per_image.f_sum(kind)?,
        })
    }
}

/// The vector-Jacobian product through one autograd graph of `score`.
fn score_and_grad_by_autograd<C: QualityCriterion + ?Sized>(
    criterion: &C,
    images: &Tensor,
    upstream: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    score_and_grad_of(images, upstream, |x| criterion.score(x))
}

/// Scores by `score` and their vector-Jacobian product with `upstream`, through one autograd graph.
/// The whole graph, the weighted sum included, is built with gradient mode on, so callers may hold a
/// `tch::no_grad` guard.
fn score_and_grad_of(
    images: &Tensor,
    upstream: Option<&Tensor>,
    score: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Tensor)> {
    tch::with_grad(|| {
        let x = images.f_detach()?.f_set_requires_grad(true)?;
        let scores = score(&x)?;
        let u = upstream_vector(&scores, upstream)?;
        let total = scores.f_mul(&u)?.f_sum(scores.kind())?;
        let grad = Tensor::f_run_backward(&[&total], &[&x], false, false)?.remove(0);
        Ok((scores.f_detach()?, grad))
    })
}

/// `f` with a graph when `images` require grad (the score enters a larger graph), else without.
fn graph_if_grad<T>(images: &Tensor, f: impl FnOnce() -> T) -> T {
    if images.requires_grad() {
        f()
    } else {
        tch::no_grad(f)
    }
}

impl QualityCriterion for QualityModel {
    fn info(&self) -> CriterionInfo {
        CriterionInfo {
            name: "ldctq-film".into(),
            higher_is_better: true,
            score_range: (0.0, 4.0),
            input: self.config.input,
            window: self.config.window(),
            image_size: self.config.image_size,
            anatomies: self.config.anatomies.clone(),
        }
    }

    fn quality_map(&self, images: &Tensor, method: MapMethod) -> Result<Tensor> {
        match method {
            MapMethod::Intrinsic => self.intrinsic_map(images, None),
            MapMethod::Occlusion => self.occlusion_map(images, None),
            MapMethod::Gradient | MapMethod::Smoothing => gradient_map(self, images, method),
        }
    }

    fn quality_map_anatomies(
        &self,
        images: &Tensor,
        method: MapMethod,
        anatomies: &[Option<String>],
    ) -> Result<Tensor> {
        match method {
            MapMethod::Intrinsic => self.intrinsic_map(images, Some(anatomies)),
            MapMethod::Occlusion => self.occlusion_map(images, Some(anatomies)),
            MapMethod::Gradient | MapMethod::Smoothing => {
                gradient_map_anatomies(self, images, anatomies, method)
            }
        }
    }

    fn score(&self, images: &Tensor) -> Result<Tensor> {
        graph_if_grad(images, || self.score_images(images))
    }

    fn score_anatomies(&self, images: &Tensor, anatomies: &[Option<String>]) -> Result<Tensor> {
        graph_if_grad(images, || self.score_images_for(images, Some(anatomies)))
    }

    /// With activation checkpointing on ([`QualityModel::set_activation_checkpointing`]), the encoder
    /// keeps one tensor per segment and recomputes each segment during the backward pass.
    fn score_and_grad(&self, images: &Tensor, upstream: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        match self.activation_checkpointing() {
            0 => score_and_grad_by_autograd(self, images, upstream),
            every => tch::with_grad(|| self.score_and_grad_checkpointed(images, upstream, every)),
        }
    }
}
