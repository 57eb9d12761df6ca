//! Multi-scale pooling, the three regression heads and their fusion (paper, section III-D, eq. 4-5).
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::ModuleT, Tensor};

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

/// The three pooled summaries of eq. 4, each flattened channel-major (index c*k + j).
///
/// # Shapes
/// `tokens`: (B, P, d) -> (h_g (B, d), h_l (B, 4d), h_tex (B, 2d)).
pub fn pool(tokens: &Tensor, local: LocalMode) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, p, d) = tokens.size3()?;
    let v = tokens.transpose(1, 2); // (B, d, P)
    let h_g = v.adaptive_avg_pool1d([1]).flatten(1, -1); // (B, d)
    let h_l = match local {
        LocalMode::Sequence => v.adaptive_avg_pool1d([4]),
        LocalMode::Grid => {
            let side = (p as f64).sqrt().round() as i64;
            if side * side != p {
                return Err(Error::Unsupported(format!(
                    "local_mode grid needs a square patch grid, got {p} tokens"
                )));
            }
            v.reshape([b, d, side, side]).adaptive_avg_pool2d([2, 2]) // (B, d, 2, 2), quadrants row-major
        }
    }
    .flatten(1, -1); // (B, 4d)
    let h_tex = v.adaptive_max_pool1d([2]).0.flatten(1, -1); // (B, 2d)
    Ok((h_g, h_l, h_tex))
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

impl ModuleT for Head {
    /// (B, in) -> (B, 1)
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.fc1).gelu("none").dropout(self.dropout, train).apply(&self.fc2)
    }
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
    pub fn sub_scores(&self, h_g: &Tensor, h_l: &Tensor, h_tex: &Tensor, train: bool) -> Tensor {
        let y_g = self.head_global.forward_t(h_g, train); // (B, 1)
        let y_l = self.head_local.forward_t(h_l, train);
        let y_tex = self.head_texture.forward_t(h_tex, train);
        Tensor::cat(&[y_g, y_l, y_tex], 1) // (B, 3)
    }

    /// Eq. 5 up to the logit: phi([y_g || y_l || y_tex]), (B, 3) -> (B).
    pub fn fuse(&self, ys: &Tensor) -> Tensor {
        ys.apply(&self.fusion_fc1).gelu("none").apply(&self.fusion_fc2).squeeze_dim(1)
    }
}
