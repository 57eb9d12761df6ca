//! Multi-scale pooling, the three regression heads and their fusion (paper, section III-D, eq. 4-5).
use crate::error::{Error, Result};
use crate::layers::TryApply;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// How the local branch pools the tokens into 4 regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LocalMode {
    /// The paper's: 4 contiguous runs of the token sequence (`adaptive_avg_pool1d(V, 4)`), i.e. 4
    /// horizontal bands of the patch grid.
    #[default]
    Sequence,
    /// A 2 x 2 spatial grid of the patch grid (`adaptive_avg_pool2d`, quadrants).
    Grid,
}

impl std::str::FromStr for LocalMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sequence" => Ok(Self::Sequence),
            "grid" => Ok(Self::Grid),
            _ => Err(format!("{s:?}: expected sequence or grid")),
        }
    }
}

/// The three pooled summaries of eq. 4, each flattened channel-major (index c*k + j).
///
/// # Shapes
/// `tokens`: (B, P, d) -> (h_g (B, d), h_l (B, 4d), h_tex (B, 2d)).
pub fn pool(tokens: &Tensor, local: LocalMode) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, p, d) = tokens.size3()?;
    let v = tokens.f_transpose(1, 2)?; // (B, d, P)
    let h_g = v.f_adaptive_avg_pool1d([1])?.f_flatten(1, -1)?; // (B, d)
    let h_l = match local {
        LocalMode::Sequence => v.f_adaptive_avg_pool1d([4])?,
        LocalMode::Grid => {
            let side = (p as f64).sqrt().round() as i64;
            if side * side != p {
                return Err(Error::Unsupported(format!(
                    "local_mode grid needs a square patch grid, got {p} tokens"
                )));
            }
            v.f_reshape([b, d, side, side])?.f_adaptive_avg_pool2d([2, 2])? // (B, d, 2, 2), quadrants row-major
        }
    }
    .f_flatten(1, -1)?; // (B, 4d)
    let h_tex = v.f_adaptive_max_pool1d([2])?.0.f_flatten(1, -1)?; // (B, 2d)
    Ok((h_g, h_l, h_tex))
}

/// Adaptive pooling's windows: window i of n over a length l is [floor(i l / n), ceil((i + 1) l / n)).
fn windows(l: i64, n: i64) -> Vec<(i64, i64)> {
    (0..n).map(|i| (i * l / n, ((i + 1) * l + n - 1) / n)).collect()
}

/// Which of the 4 local regions of [`pool`] each of `p` tokens falls in: a (4, P) boolean mask.
fn regions_of(p: i64, local: LocalMode) -> Result<Tensor> {
    let inside = |(a, b): (i64, i64), i: i64| a <= i && i < b;
    let mask: Vec<bool> = match local {
        LocalMode::Sequence => {
            windows(p, 4).into_iter().flat_map(|w| (0..p).map(move |i| inside(w, i))).collect()
        }
        LocalMode::Grid => {
            let side = (p as f64).sqrt().round() as i64; // pool checked that the grid is square
            let w = windows(side, 2);
            let (w, inside) = (&w, &inside);
            (0..4usize)
                .flat_map(|r| (0..p).map(move |i| inside(w[r / 2], i / side) && inside(w[r % 2], i % side)))
                .collect()
        }
    };
    Ok(Tensor::f_from_slice(&mask)?.f_view([4, p])?)
}

/// Each patch's pooled inputs for the local and texture heads.
///
/// - Local (mean pooling, linear): the slice's `h_l` with every region that contains patch p replaced
///   by p's token. Averaged over a region's patches the replaced region is the region's mean again, so
///   for any linear function of `h_l` (the local head's first layer) the mean over the patches equals
///   the slice's value exactly when the regions are disjoint and of equal size (P divisible by 4, or
///   a grid of even side).
/// - Texture (max pooling, no per-patch share): p's token in both bins, as if it were the image's
///   most textured token in every channel.
///
/// # Shapes
/// `tokens`: (B, P, d) -> (h_l (B, P, 4d), h_tex (B, P, 2d)), flattened channel-major as [`pool`].
pub fn pool_per_patch(tokens: &Tensor, local: LocalMode) -> Result<(Tensor, Tensor)> {
    let (b, p, d) = tokens.size3()?;
    let (_, h_l, _) = pool(tokens, local)?; // (B, 4d)
    let in_region = regions_of(p, local)?.f_transpose(0, 1)?.f_reshape([1, p, 1, 4])?; // (1, P, 1, 4)
    let t = tokens.f_unsqueeze(3)?; // (B, P, d, 1)
    let h_l = t.f_where_self(&in_region.f_to_device(tokens.device())?, &h_l.f_view([b, 1, d, 4])?)?; // (B, P, d, 4)
    let h_tex = t.f_expand([b, p, d, 2], false)?; // (B, P, d, 2)
    Ok((h_l.f_reshape([b, p, 4 * d])?, h_tex.f_reshape([b, p, 2 * d])?))
}

/// A regression head (`head_global`, `head_local`, `head_texture`): fc1, exact GELU, dropout, fc2 -> 1.
#[derive(Debug)]
pub struct Head {
    fc1: nn::Linear,
    fc2: nn::Linear,
    dropout: f64,
}

impl Head {
    pub fn new(vs: nn::Path, in_dim: i64, hidden: i64, dropout: f64) -> Result<Self> {
        Ok(Self {
            fc1: nn::linear(&vs / "fc1", in_dim, hidden, Default::default()),
            fc2: nn::linear(&vs / "fc2", hidden, 1, Default::default()),
            dropout,
        })
    }
}

impl Head {
    /// (B, in) -> (B, 1); dropout is applied when a generator is given (training).
    pub fn forward(&self, xs: &Tensor, dropout: Option<&mut Rng>) -> Result<Tensor> {
        let hidden = xs.try_apply(&self.fc1)?.f_gelu("none")?;
        let hidden = match dropout {
            Some(rng) if self.dropout > 0.0 => hidden.f_mul(&dropout_mask(&hidden, self.dropout, rng)?)?,
            _ => hidden,
        };
        hidden.try_apply(&self.fc2)
    }
}

/// An inverted-dropout mask like `xs`, drawn from `rng` (not libtorch's global generator, so training
/// is reproducible whatever else runs in the process).
fn dropout_mask(xs: &Tensor, p: f64, rng: &mut Rng) -> Result<Tensor> {
    let keep: Vec<f32> =
        (0..xs.numel()).map(|_| if rng.uniform() < p { 0.0 } else { (1.0 / (1.0 - p)) as f32 }).collect();
    let mask = Tensor::f_from_slice(&keep)?.f_view(xs.size().as_slice())?;
    Ok(mask.f_to_kind(xs.kind())?.f_to_device(xs.device())?)
}

/// Widths of [`Heads`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadsConfig {
    /// d: width of the vision tokens.
    pub dim: i64,
    /// h: hidden width of each branch head.
    pub hidden: i64,
    /// h_phi: hidden width of the fusion MLP.
    pub fusion_hidden: i64,
    pub dropout: f64,
}

/// The three branch heads and the fusion MLP `phi` (`fusion.fc1` 3 -> h_phi, GELU, `fusion.fc2` -> 1).
#[derive(Debug)]
pub struct Heads {
    head_global: Head,
    head_local: Head,
    head_texture: Head,
    fusion_fc1: nn::Linear,
    fusion_fc2: nn::Linear,
}

impl Heads {
    pub fn new(vs: nn::Path, cfg: &HeadsConfig) -> Result<Self> {
        let (d, h) = (cfg.dim, cfg.hidden);
        let fusion = &vs / "fusion";
        Ok(Self {
            head_global: Head::new(&vs / "head_global", d, h, cfg.dropout)?,
            head_local: Head::new(&vs / "head_local", 4 * d, h, cfg.dropout)?,
            head_texture: Head::new(&vs / "head_texture", 2 * d, h, cfg.dropout)?,
            fusion_fc1: nn::linear(&fusion / "fc1", 3, cfg.fusion_hidden, Default::default()),
            fusion_fc2: nn::linear(&fusion / "fc2", cfg.fusion_hidden, 1, Default::default()),
        })
    }

    /// The sub-scores [y_g || y_l || y_tex].
    ///
    /// # Shapes
    /// (h_g (B, d), h_l (B, 4d), h_tex (B, 2d)) -> (B, 3)
    pub fn sub_scores(
        &self,
        h_g: &Tensor,
        h_l: &Tensor,
        h_tex: &Tensor,
        mut dropout: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let y_g = self.head_global.forward(h_g, dropout.as_deref_mut())?; // (B, 1)
        let y_l = self.head_local.forward(h_l, dropout.as_deref_mut())?;
        let y_tex = self.head_texture.forward(h_tex, dropout)?;
        Ok(Tensor::f_cat(&[y_g, y_l, y_tex], 1)?) // (B, 3)
    }

    /// Eq. 5 up to the logit: phi([y_g || y_l || y_tex]), (B, 3) -> (B).
    pub fn fuse(&self, ys: &Tensor) -> Result<Tensor> {
        let hidden = ys.try_apply(&self.fusion_fc1)?.f_gelu("none")?;
        Ok(hidden.try_apply(&self.fusion_fc2)?.f_squeeze_dim(1)?)
    }
}
