//! tch's layers applied fallibly: a libtorch error (out of memory, a device fault, a shape the kernel
//! refuses) comes back as [`Error::Torch`](crate::Error::Torch) instead of a panic, so every public
//! scoring path returns typed errors (tch's `apply` unwraps).
use crate::error::Result;
use tch::{nn, Kind, Tensor};

/// A layer applied to a tensor, returning libtorch's error.
pub(crate) trait Layer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor>;
}

impl Layer for nn::Linear {
    /// bf16 or f16 weights given an f32 input multiply in f32 on the weights cast up at use
    /// ([`crate::runtime::product_kind`]); otherwise the dtypes must agree.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(match (self.ws.kind(), xs.kind()) {
            (Kind::BFloat16 | Kind::Half, Kind::Float) => {
                let bs = self.bs.as_ref().map(|b| b.f_to_kind(Kind::Float)).transpose()?;
                xs.f_linear(&self.ws.f_to_kind(Kind::Float)?, bs.as_ref())?
            }
            _ => xs.f_linear(&self.ws, self.bs.as_ref())?,
        })
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
