//! Differentiable preprocessing from CT slices to SigLIP `pixel_values`.
//!
//! Steps, each a tensor op so gradients flow back to the input image:
//! 1. input space: HU images are windowed to [0, 1] ([`Window::to_unit`]: outside the window the
//!    display saturates, so the gradient is zero there); `[0,1]` images (the LDCTIQA2023 TIFFs) pass
//!    through unchanged (not clamped).
//! 2. resize to the model size with bicubic interpolation using PIL's kernel (a = -0.5) and its
//!    antialiasing support when downsampling (`aten::_upsample_bicubic2d_aa`, what torchvision's
//!    `antialias=True` uses); skipped when the size already matches.
//! 3. replicate the gray channel to 3 channels (as `Image.convert("RGB")`).
//! 4. normalize with mean 0.5 and std 0.5 to [-1, 1].
//!
//! Versus the HF `SiglipImageProcessor` (PIL path): PIL resizes 8-bit images, so it quantizes to 1/255
//! before and after resizing and clips to [0, 255]; here everything stays in floating point. The
//! measured difference is reported in the README (and checked by `tests/preprocess.rs`).
use crate::error::{Error, Result};
use crate::window::{Space, Window};
use tch::{Kind, Tensor};

/// Image to `pixel_values` for a model of a given input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// What the images' values mean.
    pub input: Space,
    /// The HU window applied to HU images (unused for [0, 1] images).
    pub window: Window,
    /// Model input size (448 for MedSigLIP-448).
    pub image_size: i64,
}

impl Preprocess {
    /// Checks an image batch: float, finite, (N, H, W) or (N, 1, H, W) with N, H, W > 0.
    pub fn check(images: &Tensor) -> Result<()> {
        let size = images.size();
        let ok = match size.as_slice() {
            [n, h, w] | [n, 1, h, w] => *n > 0 && *h > 0 && *w > 0,
            _ => false,
        };
        if !ok {
            return Err(Error::InvalidInput(format!(
                "images must be (N, H, W) or (N, 1, H, W), got {size:?}"
            )));
        }
        if !matches!(images.kind(), Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half) {
            return Err(Error::InvalidInput(format!(
                "images must be floating point, got {:?}",
                images.kind()
            )));
        }
        let finite = tch::no_grad(|| images.f_isfinite()?.f_all()?.f_int64_value(&[]))?;
        if finite == 0 {
            return Err(Error::InvalidInput("images contain NaN or infinite values".into()));
        }
        Ok(())
    }

    /// # Shapes
    /// `images`: (N, H, W) or (N, 1, H, W), any float dtype and device -> (N, 3, S, S) of the same
    /// dtype, S = `image_size`.
    pub fn pixel_values(&self, images: &Tensor) -> Result<Tensor> {
        Self::check(images)?;
        let size = images.size();
        let (n, h, w) = (size[0], size[size.len() - 2], size[size.len() - 1]);
        let xs = images.f_reshape([n, 1, h, w])?;
        let xs = match self.input {
            Space::Unit => xs,
            Space::Hu => Window::new(self.window.center, self.window.width)?.to_unit(&xs)?,
        };
        let s = self.image_size;
        let xs = if (h, w) == (s, s) { xs } else { resize_bicubic(&xs, s, s)? };
        let xs = xs.f_expand([n, 3, s, s], false)?; // (N, 3, S, S)
        Ok(xs.f_sub_scalar(0.5)?.f_div_scalar(0.5)?)
    }
}

/// PIL-style bicubic resize (antialiased when downsampling) of (N, C, H, W) to (N, C, h, w).
pub fn resize_bicubic(xs: &Tensor, h: i64, w: i64) -> Result<Tensor> {
    // The aa kernel has no bf16/f16 CPU implementation: compute in f32 and cast back.
    let kind = xs.kind();
    let compute = if kind == Kind::Double { kind } else { Kind::Float };
    let resized = xs.f_to_kind(compute)?.f_internal_upsample_bicubic2d_aa([h, w], false, None, None)?;
    Ok(resized.f_to_kind(kind)?)
}
