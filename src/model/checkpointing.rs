//! Activation checkpointing of the criterion's vector-Jacobian product (frozen weights): the
//! encoder keeps one tensor per segment of layers and recomputes each segment in the backward pass.
use super::QualityModel;
use crate::error::{Error, Result};
use crate::preprocess::Preprocess;
use tch::{Kind, Tensor};

/// The upstream vector u of a vector-Jacobian product with `scores` (N): ones when `None`, else `upstream`
/// checked for shape (N) or (N, 1) and finiteness, on the scores' device and dtype.
pub(crate) fn upstream_vector(scores: &Tensor, upstream: Option<&Tensor>) -> Result<Tensor> {
    let n = scores.size().first().copied().unwrap_or(0);
    match upstream {
        None => Ok(scores.f_ones_like()?),
        Some(u) if u.size() == [n] || u.size() == [n, 1] => {
            let u = u.f_to_device(scores.device())?.f_to_kind(scores.kind())?.f_reshape([n])?;
            if tch::no_grad(|| u.f_isfinite()?.f_all()?.f_int64_value(&[]))? == 0 {
                return Err(Error::InvalidInput("upstream gradient contains NaN or infinite values".into()));
            }
            Ok(u)
        }
        Some(u) => {
            Err(Error::InvalidInput(format!("upstream must have {n} values, got shape {:?}", u.size())))
        }
    }
}

impl QualityModel {
    /// Activation checkpointing for `score_and_grad` (criterion use, frozen weights): the encoder runs
    /// without a graph, keeping the input of every `layers_per_segment`-th layer, and each segment is
    /// recomputed during the backward pass. Peak memory then holds one segment's activations instead
    /// of all layers' (docs/performance.md), for about one extra forward pass. 0 turns it off.
    pub fn set_activation_checkpointing(&mut self, layers_per_segment: usize) {
        self.checkpoint_every = layers_per_segment;
    }

    /// Encoder layers per checkpointing segment (0: off).
    pub fn activation_checkpointing(&self) -> usize {
        self.checkpoint_every
    }

    /// `score_and_grad` with activation checkpointing every `every` layers (see
    /// [`Self::set_activation_checkpointing`]). Gradient mode must be on.
    pub(crate) fn score_and_grad_checkpointed(
        &self,
        images: &Tensor,
        upstream: Option<&Tensor>,
        every: usize,
    ) -> Result<(Tensor, Tensor)> {
        Preprocess::check(images)?;
        let vjp = |out: &Tensor, g: &Tensor, input: &Tensor| -> Result<Tensor> {
            let total = out.f_mul(g)?.f_sum(Kind::Float)?; // d total / d out = g
            Ok(Tensor::f_run_backward(&[total], &[input], false, false)?.remove(0))
        };
        let vm = &self.vision.vision_model;
        let x = images.f_detach()?.f_set_requires_grad(true)?;
        let pixel_values = self.config.preprocess().pixel_values(&x.f_to_kind(self.output_kind())?)?;
        let pixel_values = pixel_values.f_to_device(self.placement.device)?;
        let h0 = vm.embed(&pixel_values)?; // (B, N, D), graph back to x kept (small)

        // Forward without a graph, keeping each segment's input.
        let starts: Vec<usize> = (0..vm.num_layers()).step_by(every).collect();
        let end = |start: usize| (start + every).min(vm.num_layers());
        let mut inputs = Vec::with_capacity(starts.len());
        let h_last = tch::no_grad(|| {
            starts.iter().try_fold(h0.f_detach()?, |h, &start| {
                let out = vm.layers(&h, start..end(start))?;
                inputs.push(h);
                Ok::<_, crate::Error>(out)
            })
        })?;
        // Heads with a graph from the last hidden state.
        let h_last = h_last.f_set_requires_grad(true)?;
        let tokens = vm.post_layernorm(&h_last)?;
        let scores = self.stages_from_tokens(pixel_values.shallow_clone(), tokens, None)?.score;
        let u = upstream_vector(&scores, upstream)?;
        let mut g = vjp(&scores, &u, &h_last)?;
        // Segments in reverse: recompute with a graph, pull the gradient through, drop the graph.
        for (&start, input) in starts.iter().zip(inputs).rev() {
            let input = input.f_set_requires_grad(true)?;
            g = vjp(&vm.layers(&input, start..end(start))?, &g, &input)?;
        }
        Ok((scores.f_detach()?, vjp(&h0, &g, &x)?))
    }
}
