//! AdamW (decoupled weight decay, as `torch.optim.AdamW`) with state we can save and restore, so a
//! resumed run continues exactly where it stopped.
//!
//! Moments are f32. Parameters held in bf16 or f16 get an f32 master copy: the update is applied to
//! the master and the parameter is its rounding, so steps smaller than the parameter's resolution (a
//! bf16 weight near 1 moves in steps of 2^-7) add up instead of being rounded away.
use crate::error::Result;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// One trainable tensor, its moment estimates (f32) and, for a reduced-precision tensor, its f32
/// master copy.
struct Slot {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    master: Option<Tensor>,
}

/// AdamW over named parameters.
pub struct AdamW {
    slots: Vec<Slot>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Number of steps taken.
    pub step: i64,
}

impl AdamW {
    /// `params`: the trainable variables (those with `requires_grad`), by name.
    pub fn new(mut params: Vec<(String, Tensor)>, weight_decay: f64) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                let m = param.zeros_like().to_kind(Kind::Float);
                let reduced = matches!(param.kind(), Kind::BFloat16 | Kind::Half);
                let master = reduced.then(|| tch::no_grad(|| param.to_kind(Kind::Float)));
                Slot { name, v: m.zeros_like(), m, param, master }
            })
            .collect();
        Self { slots, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, step: 0 }
    }

    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                let p = match &s.master {
                    Some(w) => w * (1.0 - lr * self.weight_decay),
                    None => s.param.to_kind(Kind::Float) * (1.0 - lr * self.weight_decay),
                };
                s.m.copy_(&(&s.m * self.beta1 + &g * (1.0 - self.beta1)));
                s.v.copy_(&(&s.v * self.beta2 + g.square() * (1.0 - self.beta2)));
                let update = (&s.m / c1) / ((&s.v / c2).sqrt() + self.eps);
                let p = p - update * lr;
                if let Some(w) = &mut s.master {
                    w.copy_(&p);
                }
                s.param.copy_(&p); // rounds to the parameter's kind
            }
        });
    }

    /// The moment estimates and master weights, named `m.<param>`, `v.<param>` and `w.<param>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                let master = s.master.as_ref().map(|w| (format!("w.{}", s.name), w.shallow_clone()));
                [
                    Some((format!("m.{}", s.name), s.m.shallow_clone())),
                    Some((format!("v.{}", s.name), s.v.shallow_clone())),
                    master,
                ]
            })
            .flatten()
            .collect()
    }

    /// Restores moments (and master weights) saved by [`AdamW::state`] and the step count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: i64) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for s in &mut self.slots {
                for (key, dst) in [(format!("m.{}", s.name), &mut s.m), (format!("v.{}", s.name), &mut s.v)] {
                    let src = state.get(&key).ok_or_else(|| crate::Error::Checkpoint {
                        path: "optimizer.safetensors".into(),
                        problems: vec![format!("missing optimizer state {key}")],
                    })?;
                    dst.f_copy_(src)?;
                }
                // A checkpoint without master weights (written before they existed) starts them from
                // the parameter.
                if let Some(w) = &mut s.master {
                    match state.get(&format!("w.{}", s.name)) {
                        Some(src) => w.f_copy_(src)?,
                        None => w.f_copy_(&s.param)?,
                    };
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}
