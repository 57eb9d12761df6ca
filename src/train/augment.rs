//! Training augmentation (paper, section IV-B): horizontal flip (p = 0.5), rotation within +-10
//! degrees, mild brightness/contrast jitter. Parameters come from the run's seeded [`Rng`], so a
//! resumed run sees the same augmentations.
use crate::rng::Rng;
use tch::{Kind, Tensor};

/// Augmentation strengths.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    pub flip_p: f64,
    pub max_rotation_deg: f64,
    /// Contrast factor drawn from [1 - c, 1 + c].
    pub contrast: f64,
    /// Brightness shift drawn from [-b, b] times `value_range`.
    pub brightness: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Self { flip_p: 0.5, max_rotation_deg: 10.0, contrast: 0.1, brightness: 0.05 }
    }
}

impl Augment {
    /// Augments a batch (B, 1, H, W) of images in the model's input space; `value_range` is 1 for
    /// [0, 1] images and the window width for HU images.
    pub fn apply(&self, xs: &Tensor, value_range: f64, rng: &mut Rng) -> Tensor {
        let b = xs.size()[0];
        let mut theta = Vec::with_capacity(6 * b as usize);
        let (mut scale, mut shift) = (Vec::new(), Vec::new());
        for _ in 0..b {
            let flip = if rng.uniform() < self.flip_p { -1.0 } else { 1.0 };
            let a = (rng.uniform() * 2.0 - 1.0) * self.max_rotation_deg.to_radians();
            // Output (x, y) samples input (flip * (cos a x - sin a y), sin a x + cos a y).
            theta.extend_from_slice(&[flip * a.cos(), -flip * a.sin(), 0.0, a.sin(), a.cos(), 0.0]);
            scale.push(1.0 + (rng.uniform() * 2.0 - 1.0) * self.contrast);
            shift.push((rng.uniform() * 2.0 - 1.0) * self.brightness * value_range);
        }
        let kind = xs.kind();
        let theta = Tensor::from_slice(&theta).view([b, 2, 3]).to_kind(kind).to_device(xs.device());
        let grid = Tensor::affine_grid_generator(&theta, xs.size(), false);
        let xs = xs.grid_sampler(&grid, 0, 1, false); // bilinear, border padding
        let per =
            |v: Vec<f64>| Tensor::from_slice(&v).view([b, 1, 1, 1]).to_kind(kind).to_device(xs.device());
        let mean = xs.mean_dim([1, 2, 3].as_slice(), true, Kind::Float).to_kind(kind);
        (&xs - &mean) * per(scale) + &mean + per(shift)
    }
}
