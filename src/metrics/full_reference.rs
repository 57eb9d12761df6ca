//! Full-reference metrics of a denoised image against its full-dose reference, as ldct-benchmark
//! reports them: PSNR and SSIM in an HU window, VIF on HU + 1024. Computed in f64 on any device.
use crate::window::Window;
use tch::{Device, Kind, Tensor};

/// PSNR in dB of `(N, 1, H, W)` images in [0, 1] against references (data range 1), per image. A
/// perfect match gives 200 dB (the mean squared error is floored at 1e-20).
pub fn psnr(x: &Tensor, reference: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Double);
    let r = reference.to_kind(Kind::Double);
    let mse = (x - r).square().mean_dim(&[1i64, 2, 3][..], false, Kind::Double).clamp_min(1e-20);
    mse.log10() * -10.0
}

/// SSIM (Wang et al. 2004) of `(N, 1, H, W)` images against references, per image: an 11 x 11 Gaussian
/// window of sigma 1.5 (separable), K1 0.01, K2 0.03, data range 1, population (co)variances, mean
/// over the valid region (no padding), as `skimage.metrics.structural_similarity(gaussian_weights=True,
/// use_sample_covariance=False, data_range=1)` away from the borders. Images smaller than 11 pixels use
/// the largest odd window that fits. Computed in f64.
pub fn ssim(x: &Tensor, reference: &Tensor) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let mut k = 11.min(h).min(w);
    if k % 2 == 0 {
        k -= 1;
    }
    let dev = x.device();
    let x = x.to_kind(Kind::Double);
    let y = reference.to_kind(Kind::Double).to_device(dev);
    let n = x.size()[0];
    let maps = Tensor::cat(&[&x, &y, &(&x * &x), &(&y * &y), &(&x * &y)], 0); // (5N, 1, H, W)
    let filtered = gaussian_filter(k, 1.5, dev)(&maps);
    let parts = filtered.split(n, 0);
    let (mx, my, mxx, myy, mxy) = (&parts[0], &parts[1], &parts[2], &parts[3], &parts[4]);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let (sxx, syy, sxy) = (mxx - mx * mx, myy - my * my, mxy - mx * my);
    let num = (mx * my * 2.0 + c1) * (sxy * 2.0 + c2);
    let den = (mx * mx + my * my + c1) * (sxx + syy + c2);
    (num / den).mean_dim(&[1i64, 2, 3][..], false, Kind::Double)
}

/// The visual noise variance of VIF on HU + 1024 values (ldct-benchmark's, torchmetrics' default).
pub const VIF_NOISE_VARIANCE: f64 = 2.0;

/// `[0, 1]` LDCTIQA images as HU + 1024, clipped to [0, 2924] (air 0 to bone 1900 HU), the values
/// ldct-benchmark computes VIF on.
pub fn hu_plus_1024(x: &Tensor) -> Tensor {
    // Window::to_hu with the 1024 folded into its offset: one multiply-add per pixel.
    let w = Window::LDCTIQA;
    (x.to_kind(Kind::Double) * w.width + (w.lower() + 1024.0)).clamp(0.0, 2924.0)
}

/// Smallest height and width [`vif`] takes: the coarsest scale needs 41 pixels.
pub const VIF_MIN_SIZE: i64 = 41;

/// Pixel-domain VIF (VIF-P, Sheikh and Bovik 2006) of `(N, 1, H, W)` images against references, per
/// image: four scales with Gaussian windows of 17, 9, 5 and 3 pixels (sigma = size / 5, applied as two
/// 1-D passes); before each
/// scale after the first, both images are filtered with that scale's window and decimated by 2; valid
/// convolutions; visual noise variance `sigma_n_sq`. The same definition, masks included, as
/// torchmetrics' `visual_information_fidelity`, which ldct-benchmark reports with `sigma_n_sq` 2 on
/// HU + 1024 values. `None` when H or W is below [`VIF_MIN_SIZE`]. Computed in f64.
pub fn vif(x: &Tensor, reference: &Tensor, sigma_n_sq: f64) -> Option<Tensor> {
    let [n, _, h, w] = x.size()[..] else { return None };
    if h < VIF_MIN_SIZE || w < VIF_MIN_SIZE {
        return None;
    }
    let dev = x.device();
    let opts = (Kind::Double, dev);
    let eps = 1e-10;
    let (mut d, mut r) = (x.to_kind(Kind::Double), reference.to_kind(Kind::Double).to_device(dev));
    let (mut num, mut den) = (Tensor::zeros([n], opts), Tensor::zeros([n], opts));
    for scale in 0..4 {
        let k = (1i64 << (4 - scale)) + 1; // 17, 9, 5, 3
        let filter = gaussian_filter(k, k as f64 / 5.0, dev);
        if scale > 0 {
            r = filter(&r).slice(2, 0, None, 2).slice(3, 0, None, 2);
            d = filter(&d).slice(2, 0, None, 2).slice(3, 0, None, 2);
        }
        let stats = filter(&Tensor::cat(&[&r, &d, &(&r * &r), &(&d * &d), &(&r * &d)], 0)); // (5N, 1, h', w')
        let p = stats.split(n, 0);
        let (mu_r, mu_d) = (&p[0], &p[1]);
        let mut var_r = (&p[2] - mu_r * mu_r).clamp_min(0.0);
        let var_d = (&p[3] - mu_d * mu_d).clamp_min(0.0);
        let cov = &p[4] - mu_r * mu_d;
        let zero = var_r.zeros_like();
        // Gain g and distortion variance var_v of the model d = g r + v, with the degenerate cases:
        // flat reference (no information to lose), flat distortion, negative gain.
        let mut g = &cov / (&var_r + eps);
        let mut var_v = &var_d - &g * &cov;
        let flat_r = var_r.lt(eps);
        g = zero.where_self(&flat_r, &g);
        var_v = var_d.where_self(&flat_r, &var_v);
        var_r = zero.where_self(&flat_r, &var_r);
        let flat_d = var_d.lt(eps);
        g = zero.where_self(&flat_d, &g);
        var_v = zero.where_self(&flat_d, &var_v);
        let negative = g.lt(0.0);
        var_v = var_d.where_self(&negative, &var_v);
        g = zero.where_self(&negative, &g);
        let var_v = var_v.clamp_min(eps);
        let dims = &[1i64, 2, 3][..];
        let kept = (&g * &g * &var_r / (var_v + sigma_n_sq) + 1.0).log10();
        num += kept.sum_dim_intlist(dims, false, Kind::Double);
        den += (&var_r / sigma_n_sq + 1.0).log10().sum_dim_intlist(dims, false, Kind::Double);
    }
    Some(num / den)
}

/// Valid (unpadded) filtering of `(N, 1, H, W)` f64 images with the normalised `k x k` Gaussian of
/// `sigma`, as two 1-D passes (the 2-D Gaussian is the outer product of the 1-D one).
fn gaussian_filter(k: i64, sigma: f64, dev: Device) -> impl Fn(&Tensor) -> Tensor {
    let taps: Vec<f64> =
        (0..k).map(|i| (-(i as f64 - (k - 1) as f64 / 2.0).powi(2) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f64 = taps.iter().sum();
    let g = Tensor::from_slice(&taps.iter().map(|t| t / sum).collect::<Vec<_>>()).to_device(dev);
    let (gx, gy) = (g.view([1, 1, 1, k]), g.view([1, 1, k, 1]));
    move |t: &Tensor| {
        t.conv2d(&gx, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1).conv2d(
            &gy,
            None::<Tensor>,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )
    }
}
