//! Image files as tensors in a chosen [`Space`]: what the trainer, the benchmark and the CLI read.
use crate::error::{Error, Result};
use crate::io::{self, Slices};
use crate::window::{Space, Window};
use ndarray::{ArrayView, Axis, Dimension};
use std::path::Path;
use tch::Tensor;

/// What the values of `slices` mean: the file's own space, else `raw_as` (npy, integer TIFF), else an
/// error asking which.
fn space_of(slices: &Slices, raw_as: Option<Space>) -> Result<Space> {
    slices.space.or(raw_as).ok_or_else(|| {
        Error::InvalidInput(format!(
            "{}: the meaning of its values is unknown; say whether they are HU or in [0, 1]",
            slices.source.display()
        ))
    })
}

fn tensor<D: Dimension>(values: ArrayView<f32, D>) -> Tensor {
    let shape: Vec<i64> = values.shape().iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&values.iter().copied().collect::<Vec<f32>>()).view(shape.as_slice())
}

/// The frames of `slices` as an (F, H, W) f32 tensor in `space`, HU and [0, 1] related by `window`
/// (see [`Window::convert`]). Files whose values have no known meaning (npy, integer TIFF) are read as
/// `raw_as`; without it they are an error.
pub fn frames(slices: &Slices, raw_as: Option<Space>, space: Space, window: Window) -> Result<Tensor> {
    let from = space_of(slices, raw_as)?;
    Ok(window.convert(&tensor(slices.pixels.view()), from, space)?)
}

/// Frame `frame` of the image file `path` as an (H, W) f32 tensor in `space` (see [`frames`]).
pub fn load_frame(
    path: &Path,
    frame: usize,
    raw_as: Option<Space>,
    space: Space,
    window: Window,
) -> Result<Tensor> {
    let slices = io::read_image(path)?;
    let from = space_of(&slices, raw_as)?;
    let count = slices.pixels.dim().0;
    if frame >= count {
        return Err(Error::InvalidInput(format!("{}: frame {frame} of {count}", path.display())));
    }
    Ok(window.convert(&tensor(slices.pixels.index_axis(Axis(0), frame)), from, space)?)
}
