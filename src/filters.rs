//! Image filters on `(N, 1, H, W)` float tensors, computed in the images' dtype and device with
//! mirrored borders: the smoothing that denoisers do and that degrades images (ordered degradations,
//! the built-in denoisers, the trainer's order pairs).
//!
//! Each is differentiable where its operation is (Gaussian, box, bilateral and TV by autograd;
//! the median only through the selected pixel).
use crate::error::{Error, Result};
use tch::Tensor;

/// Checks `(N, 1, H, W)` floating-point images.
fn check(images: &Tensor, what: &str) -> Result<()> {
    let size = images.size();
    if size.len() != 4 || size[1] != 1 || size[2] < 1 || size[3] < 1 {
        return Err(Error::InvalidInput(format!("{what}: expected (N, 1, H, W) images, got shape {size:?}")));
    }
    if !images.is_floating_point() {
        return Err(Error::InvalidInput(format!("{what}: expected float images, got {:?}", images.kind())));
    }
    Ok(())
}

/// Pads the last two dims by `r` with mirrored borders (`replicate` where an image is too small to
/// mirror).
pub fn pad_mirror(x: &Tensor, r: i64) -> Result<Tensor> {
    let (h, w) = (x.size()[2], x.size()[3]);
    let mode = if r < h && r < w { "reflect" } else { "replicate" };
    Ok(x.f_pad([r, r, r, r], mode, None)?)
}

/// Filters with a separable kernel: `taps` along x, then along y.
fn separable(images: &Tensor, taps: &[f64]) -> Result<Tensor> {
    let k = taps.len() as i64;
    let kernel = Tensor::from_slice(taps).to_kind(images.kind()).to_device(images.device());
    let x = pad_mirror(images, k / 2)?;
    let x = x.f_conv2d(&kernel.f_view([1, 1, 1, k])?, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)?;
    Ok(x.f_conv2d(&kernel.f_view([1, 1, k, 1])?, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)?)
}

/// The normalised Gaussian of `sigma` pixels sampled at the integers `-r ..= r`, `r = ceil(3 sigma)`.
pub fn gaussian_taps(sigma: f64) -> Vec<f64> {
    let r = (3.0 * sigma).ceil() as i64;
    let taps: Vec<f64> = (-r..=r).map(|i| (-0.5 * (i * i) as f64 / (sigma * sigma)).exp()).collect();
    let sum: f64 = taps.iter().sum();
    taps.iter().map(|t| t / sum).collect()
}

/// Gaussian blur of `sigma` pixels (separable, radius `ceil(3 sigma)`); `sigma = 0` is the identity.
pub fn gaussian(images: &Tensor, sigma: f64) -> Result<Tensor> {
    check(images, "gaussian")?;
    if !(0.0..=50.0).contains(&sigma) {
        return Err(Error::InvalidInput(format!("gaussian: sigma must be in [0, 50], got {sigma}")));
    }
    if sigma == 0.0 {
        return Ok(images.shallow_clone());
    }
    separable(images, &gaussian_taps(sigma))
}

/// Mean over a `size x size` window (odd `size` >= 1).
pub fn box_mean(images: &Tensor, size: i64) -> Result<Tensor> {
    check(images, "box")?;
    odd_size(size, "box")?;
    separable(images, &vec![1.0 / size as f64; size as usize])
}

/// Median over a `size x size` window (odd `size` in 1 ..= 9).
pub fn median(images: &Tensor, size: i64) -> Result<Tensor> {
    check(images, "median")?;
    odd_size(size, "median")?;
    let s = images.size();
    let x = pad_mirror(images, size / 2)?;
    let windows = x.f_unfold(2, size, 1)?.f_unfold(3, size, 1)?; // (N, 1, H, W, k, k)
    Ok(windows.f_reshape([s[0], s[1], s[2], s[3], size * size])?.f_median_dim(-1, false)?.0)
}

/// Bilateral filter over a `(2 r + 1)^2` window, `r = ceil(2 sigma_space)`: weights
/// `exp(-d^2 / 2 sigma_space^2 - (I_q - I_p)^2 / 2 sigma_range^2)`, `sigma_range` in image units.
pub fn bilateral(images: &Tensor, sigma_space: f64, sigma_range: f64) -> Result<Tensor> {
    check(images, "bilateral")?;
    if !(sigma_space > 0.0 && sigma_space <= 5.0 && sigma_range > 0.0 && sigma_range.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "bilateral: sigma_space must be in (0, 5] and sigma_range > 0, got {sigma_space}, {sigma_range}"
        )));
    }
    let r = (2.0 * sigma_space).ceil() as i64;
    let k = 2 * r + 1;
    let s = images.size();
    let x = pad_mirror(images, r)?;
    let windows = x.f_unfold(2, k, 1)?.f_unfold(3, k, 1)?.f_reshape([s[0], 1, s[2], s[3], k * k])?;
    let space: Vec<f64> = (-r..=r)
        .flat_map(|i| (-r..=r).map(move |j| -((i * i + j * j) as f64) / (2.0 * sigma_space * sigma_space)))
        .collect();
    let space = Tensor::from_slice(&space).to_kind(images.kind()).to_device(images.device());
    let diff = windows.f_sub(&images.f_unsqueeze(-1)?)?;
    let logw = diff.f_square()?.f_mul_scalar(-1.0 / (2.0 * sigma_range * sigma_range))?.f_add(&space)?;
    let w = logw.f_softmax(-1, images.kind())?;
    Ok(windows.f_mul(&w)?.f_sum_dim_intlist(-1, false, images.kind())?)
}

/// Total-variation (ROF) denoising, `argmin_u |u - x|^2 / 2 + weight * TV(u)`, by `iters` steps of
/// Chambolle's projection algorithm (step 1/8, Neumann borders).
pub fn total_variation(images: &Tensor, weight: f64, iters: usize) -> Result<Tensor> {
    check(images, "total_variation")?;
    if !(weight > 0.0 && weight.is_finite()) || iters == 0 {
        return Err(Error::InvalidInput(format!(
            "total_variation: weight must be > 0 and iters >= 1, got {weight}, {iters}"
        )));
    }
    let grad = |u: &Tensor| -> Result<(Tensor, Tensor)> {
        // Forward differences, zero across the last row / column.
        let gx =
            u.f_diff(1, -1, None::<Tensor>, None::<Tensor>)?.f_pad([0, 1, 0, 0], "constant", Some(0.0))?;
        let gy =
            u.f_diff(1, -2, None::<Tensor>, None::<Tensor>)?.f_pad([0, 0, 0, 1], "constant", Some(0.0))?;
        Ok((gx, gy))
    };
    // The negative adjoint of `grad`: backward differences.
    let div = |px: &Tensor, py: &Tensor| -> Result<Tensor> {
        let w = px.size()[3];
        let h = py.size()[2];
        let dx =
            px.f_pad([1, 0, 0, 0], "constant", Some(0.0))?.f_diff(1, -1, None::<Tensor>, None::<Tensor>)?;
        let dy =
            py.f_pad([0, 0, 1, 0], "constant", Some(0.0))?.f_diff(1, -2, None::<Tensor>, None::<Tensor>)?;
        // The last column / row of p is zero by construction of `grad`; keep sizes (h, w).
        Ok(dx.f_narrow(3, 0, w)?.f_add(&dy.f_narrow(2, 0, h)?)?)
    };
    let tau = 0.125;
    let mut px = images.f_zeros_like()?;
    let mut py = images.f_zeros_like()?;
    for _ in 0..iters {
        let (gx, gy) = grad(&div(&px, &py)?.f_sub(&images.f_div_scalar(weight)?)?)?;
        let norm = gx.f_square()?.f_add(&gy.f_square()?)?.f_sqrt()?.f_mul_scalar(tau)?.f_add_scalar(1.0)?;
        px = px.f_add(&gx.f_mul_scalar(tau)?)?.f_div(&norm)?;
        py = py.f_add(&gy.f_mul_scalar(tau)?)?.f_div(&norm)?;
    }
    Ok(images.f_sub(&div(&px, &py)?.f_mul_scalar(weight)?)?)
}

fn odd_size(size: i64, what: &str) -> Result<()> {
    if !(1..=9).contains(&size) || size % 2 == 0 {
        return Err(Error::InvalidInput(format!(
            "{what}: size must be an odd integer in 1 ..= 9, got {size}"
        )));
    }
    Ok(())
}

/// Images as `(N, 1, H, W)` from `(H, W)`, `(N, H, W)` or `(N, 1, H, W)`, with the rank to restore.
pub fn as_nchw(images: &Tensor) -> Result<(Tensor, usize)> {
    let rank = images.dim();
    let x = match rank {
        2 => images.f_unsqueeze(0)?.f_unsqueeze(0)?,
        3 => images.f_unsqueeze(1)?,
        4 => images.shallow_clone(),
        _ => return Err(Error::InvalidInput(format!("expected 2-4 dims, got shape {:?}", images.size()))),
    };
    Ok((x, rank))
}

/// Undoes [`as_nchw`].
pub fn from_nchw(x: &Tensor, rank: usize) -> Result<Tensor> {
    Ok(match rank {
        2 => x.f_squeeze_dim(0)?.f_squeeze_dim(0)?,
        3 => x.f_squeeze_dim(1)?,
        _ => x.shallow_clone(),
    })
}
