//! Prompt-conditioned FiLM (paper, section III-C, eq. 2-3).
//!
//! A two-layer MLP `g` maps the L2-normalized prompt embedding z_t (d_t) to per-channel
//! (gamma, beta) (d each); the patch tokens are modulated as H~ = H * (1 + s tanh(gamma)) + s beta.
use crate::error::Result;
use crate::layers::TryApply;
use tch::{nn, Tensor};

/// FiLM generator `g` (checkpoint prefix `film`): `fc1` d_t -> h_f, exact GELU, `fc2` h_f -> 2d.
#[derive(Debug)]
pub struct Film {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

/// Widths of [`Film`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilmConfig {
    /// d_t: width of the text features.
    pub text_dim: i64,
    /// h_f: hidden width.
    pub hidden: i64,
    /// d: width of the vision tokens.
    pub vision_dim: i64,
}

impl Film {
    pub fn new(vs: nn::Path, cfg: &FilmConfig) -> Result<Self> {
        Ok(Self {
            fc1: nn::linear(&vs / "fc1", cfg.text_dim, cfg.hidden, Default::default()),
            fc2: nn::linear(&vs / "fc2", cfg.hidden, 2 * cfg.vision_dim, Default::default()),
        })
    }

    /// The FiLM parameters of T prompts: `z_t` (T, d_t) -> (gamma, beta), each (T, d).
    pub fn params(&self, z_t: &Tensor) -> Result<(Tensor, Tensor)> {
        let hidden = z_t.try_apply(&self.fc1)?.f_gelu("none")?;
        let out = hidden.try_apply(&self.fc2)?; // (T, 2d)
        let d = out.size()[1] / 2;
        Ok((out.f_narrow(1, 0, d)?, out.f_narrow(1, d, d)?))
    }
}

/// Eq. 3: H~ = H * (1 + s tanh(gamma)) + s beta, broadcast over tokens (and batch).
///
/// # Shapes
/// `tokens`: (B, P, d); `gamma`, `beta`: (d), or (B, d) for a prompt per image. With s = 0 the
/// tokens are returned unchanged.
pub fn modulate(tokens: &Tensor, gamma: &Tensor, beta: &Tensor, strength: f64) -> Result<Tensor> {
    if strength == 0.0 {
        return Ok(tokens.shallow_clone());
    }
    if gamma.dim() == 2 {
        let (gamma, beta) = (gamma.f_unsqueeze(1)?, beta.f_unsqueeze(1)?); // (B, 1, d)
        return modulate(tokens, &gamma, &beta, strength);
    }
    let kind = tokens.kind();
    let scale = gamma.f_tanh()?.f_mul_scalar(strength)?.f_add_scalar(1.0)?.f_to_kind(kind)?; // (d)
    let shift = beta.f_mul_scalar(strength)?.f_to_kind(kind)?; // (d)
    Ok(tokens.f_mul(&scale)?.f_add(&shift)?)
}
