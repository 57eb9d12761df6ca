//! Model folders that average several models (the k folds of a cross-validated run), and [`Scorer`],
//! which loads either kind of folder.
//!
//! An ensemble folder holds `ensemble.json`: `{"format_version": 1, "members": ["../folds/fold-0/best", ...]}`
//! (paths relative to the folder, or absolute). Members must share input space and image size.
use crate::criterion::{gradient_map, gradient_map_anatomies, CriterionInfo, MapMethod, QualityCriterion};
use crate::error::{Error, Result};
use crate::model::{QualityConfig, QualityModel, FORMAT_VERSION};
use crate::placement::Placement;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, Serialize, Deserialize)]
struct EnsembleFile {
    format_version: u32,
    members: Vec<PathBuf>,
}

/// The mean score of several models.
#[derive(Debug)]
pub struct Ensemble {
    pub members: Vec<QualityModel>,
}

impl Ensemble {
    /// Loads `dir/ensemble.json` and every member.
    pub fn load(dir: &Path, at: Placement) -> Result<Self> {
        let path = dir.join("ensemble.json");
        let bad = |msg: String| Error::Config { path: path.clone(), msg };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let file: EnsembleFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.format_version != FORMAT_VERSION || file.members.is_empty() {
            return Err(bad(format!("need format_version {FORMAT_VERSION} and at least one member")));
        }
        let members =
            file.members.iter().map(|m| QualityModel::load(&dir.join(m), at)).collect::<Result<Vec<_>>>()?;
        let first = &members[0].config;
        if let Some(m) =
            members.iter().find(|m| (m.config.input, m.config.image_size) != (first.input, first.image_size))
        {
            return Err(bad(format!("member {:?} differs in input space or image size", m.config.backbone)));
        }
        Ok(Self { members })
    }

    /// Writes `dir/ensemble.json` naming `members` (stored relative to `dir` when given so).
    pub fn write(dir: &Path, members: &[PathBuf]) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let file = EnsembleFile { format_version: FORMAT_VERSION, members: members.to_vec() };
        let json = serde_json::to_string_pretty(&file).expect("serializes");
        Ok(crate::io::write_atomic(&dir.join("ensemble.json"), json.as_bytes())?)
    }
}

impl Ensemble {
    /// The mean over the members of `each` (scores (N) or maps (N, H, W)).
    fn member_mean(&self, each: impl Fn(&QualityModel) -> Result<Tensor>) -> Result<Tensor> {
        let values = self.members.iter().map(each).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::f_stack(&values, 0)?.f_mean_dim(0, false, values[0].kind())?)
    }
}

impl QualityCriterion for Ensemble {
    fn info(&self) -> CriterionInfo {
        CriterionInfo {
            name: format!("ldctq-film-ensemble-{}", self.members.len()),
            ..self.members[0].info()
        }
    }

    fn score(&self, images: &Tensor) -> Result<Tensor> {
        self.member_mean(|m| m.score(images))
    }

    fn score_anatomies(&self, images: &Tensor, anatomies: &[Option<String>]) -> Result<Tensor> {
        self.member_mean(|m| m.score_anatomies(images, anatomies))
    }

    /// Intrinsic and occlusion: the mean of the members' maps; gradient and smoothing: those of the
    /// mean score.
    fn quality_map(&self, images: &Tensor, method: MapMethod) -> Result<Tensor> {
        if method.from_gradient() {
            return gradient_map(self, images, method);
        }
        self.member_mean(|m| m.quality_map(images, method))
    }

    /// As [`Self::quality_map`], each member conditioning each image on its anatomy.
    fn quality_map_anatomies(
        &self,
        images: &Tensor,
        method: MapMethod,
        anatomies: &[Option<String>],
    ) -> Result<Tensor> {
        if method.from_gradient() {
            return gradient_map_anatomies(self, images, anatomies, method);
        }
        self.member_mean(|m| m.quality_map_anatomies(images, method, anatomies))
    }

    /// The mean of the members' scores and vector-Jacobian products, one member's graph at a time.
    fn score_and_grad(&self, images: &Tensor, upstream: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let m = self.members.len() as f64;
        let mut total: Option<(Tensor, Tensor)> = None;
        for member in &self.members {
            let (s, g) = member.score_and_grad(images, upstream)?;
            total = Some(match total {
                None => (s, g),
                Some((ts, tg)) => (ts.f_add(&s)?, tg.f_add(&g)?),
            });
        }
        let (s, g) = total.expect("an ensemble has members");
        Ok((s.f_div_scalar(m)?, g.f_div_scalar(m)?))
    }
}

/// A single model or an ensemble, whichever the folder holds.
#[derive(Debug)]
pub enum Scorer {
    Single(Box<QualityModel>),
    Ensemble(Ensemble),
}

impl Scorer {
    /// Loads an ensemble folder (with `ensemble.json`) or a model folder.
    pub fn load(dir: &Path, at: Placement) -> Result<Self> {
        if dir.join("ensemble.json").is_file() {
            Ok(Self::Ensemble(Ensemble::load(dir, at)?))
        } else {
            Ok(Self::Single(Box::new(QualityModel::load(dir, at)?)))
        }
    }

    fn models_mut(&mut self) -> Vec<&mut QualityModel> {
        match self {
            Self::Single(m) => vec![m],
            Self::Ensemble(e) => e.members.iter_mut().collect(),
        }
    }

    /// Device and dtype of the weights.
    pub fn placement(&self) -> Placement {
        match self {
            Self::Single(m) => m.placement(),
            Self::Ensemble(e) => e.members[0].placement(),
        }
    }

    /// The (first member's) configuration: input space, window, image size, prompt.
    pub fn config(&self) -> &QualityConfig {
        match self {
            Self::Single(m) => &m.config,
            Self::Ensemble(e) => &e.members[0].config,
        }
    }

    pub fn set_prompt(&mut self, prompt: &str) -> Result<()> {
        self.models_mut().into_iter().try_for_each(|m| m.set_prompt(prompt))
    }

    pub fn set_film_strength(&mut self, s: f64) -> Result<()> {
        self.models_mut().into_iter().try_for_each(|m| m.set_film_strength(s))
    }

    /// The anatomy set by [`Self::set_anatomy`].
    pub fn anatomy(&self) -> Option<&str> {
        match self {
            Self::Single(m) => m.anatomy(),
            Self::Ensemble(e) => e.members[0].anatomy(),
        }
    }

    /// See [`QualityModel::set_anatomy`].
    pub fn set_anatomy(&mut self, anatomy: Option<&str>) -> Result<()> {
        self.models_mut().into_iter().try_for_each(|m| m.set_anatomy(anatomy))
    }

    /// See [`QualityModel::set_activation_checkpointing`].
    pub fn set_activation_checkpointing(&mut self, layers_per_segment: usize) {
        self.models_mut().into_iter().for_each(|m| m.set_activation_checkpointing(layers_per_segment))
    }
}

/// Scores as f32, or f64 from an f64 model.
fn f32_unless_f64(s: Tensor) -> Result<Tensor> {
    Ok(if s.kind() == Kind::Double { s } else { s.f_to_kind(Kind::Float)? })
}

impl QualityCriterion for Scorer {
    fn info(&self) -> CriterionInfo {
        match self {
            Self::Single(m) => m.info(),
            Self::Ensemble(e) => e.info(),
        }
    }

    fn score(&self, images: &Tensor) -> Result<Tensor> {
        match self {
            Self::Single(m) => m.score(images),
            Self::Ensemble(e) => e.score(images),
        }
        .and_then(f32_unless_f64)
    }

    fn score_anatomies(&self, images: &Tensor, anatomies: &[Option<String>]) -> Result<Tensor> {
        match self {
            Self::Single(m) => m.score_anatomies(images, anatomies),
            Self::Ensemble(e) => e.score_anatomies(images, anatomies),
        }
        .and_then(f32_unless_f64)
    }

    fn quality_map(&self, images: &Tensor, method: MapMethod) -> Result<Tensor> {
        match self {
            Self::Single(m) => m.quality_map(images, method),
            Self::Ensemble(e) => e.quality_map(images, method),
        }
    }

    fn quality_map_anatomies(
        &self,
        images: &Tensor,
        method: MapMethod,
        anatomies: &[Option<String>],
    ) -> Result<Tensor> {
        match self {
            Self::Single(m) => m.quality_map_anatomies(images, method, anatomies),
            Self::Ensemble(e) => e.quality_map_anatomies(images, method, anatomies),
        }
    }

    fn score_and_grad(&self, images: &Tensor, upstream: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        match self {
            Self::Single(m) => m.score_and_grad(images, upstream),
            Self::Ensemble(e) => e.score_and_grad(images, upstream),
        }
    }
}
