//! tch's layers applied fallibly: a libtorch error (out of memory, a device fault, a shape the kernel
//! refuses) comes back as [`Error::Torch`](crate::Error::Torch) instead of a panic, so every public
//! scoring path returns typed errors (tch's `apply` unwraps).
use crate::error::Result;
use tch::{nn, Tensor};

/// A layer applied to a tensor, returning libtorch's error.
pub(crate) trait Layer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor>;
}

impl Layer for nn::Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_linear(&self.ws, self.bs.as_ref())?)
    }
}

impl Layer for nn::Embedding {
    /// A plain lookup (no padding index, no gradient scaling), as `nn::embedding` builds it.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(Tensor::f_embedding(&self.ws, xs, -1, false, false)?)
    }
}

/// `xs.try_apply(&layer)`: [`Layer::forward`] in a chain.
pub(crate) trait TryApply {
    fn try_apply(&self, layer: &impl Layer) -> Result<Tensor>;
}

impl TryApply for Tensor {
    fn try_apply(&self, layer: &impl Layer) -> Result<Tensor> {
        layer.forward(self)
    }
}
