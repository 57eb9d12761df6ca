//! Weights of a new model's FiLM generator and heads, and the widths of a saved one.
use super::Widths;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{nn, Tensor};

/// PyTorch's default `Linear` initialisation (uniform in +-1/sqrt(fan_in) for weight and bias), drawn from
/// a seeded [`Rng`] rather than libtorch's global generator, so a seed gives the same heads everywhere.
pub(super) fn init_linear_layers(vs: &nn::VarStore, seed: u64) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let fan_in: HashMap<String, i64> = vars
        .iter()
        .filter_map(|(n, t)| Some((n.strip_suffix(".weight")?.to_string(), *t.size().last()?)))
        .collect();
    let mut rng = Rng::new(seed);
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in vars {
            let layer = name.rsplit_once('.').map(|(l, _)| l).unwrap_or(&name);
            let bound = 1.0 / (fan_in.get(layer).copied().unwrap_or(1) as f64).sqrt();
            let values: Vec<f32> =
                (0..t.numel()).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
            t.f_copy_(&Tensor::from_slice(&values).view(t.size().as_slice()))?;
        }
        Ok(())
    })
}

/// Reads the hidden widths from the shapes in `head.safetensors`.
pub(super) fn widths_of(ckpt: &Checkpoint) -> Result<Widths> {
    let rows = |name: &str| -> Result<i64> {
        ckpt.shape(name).filter(|s| s.len() == 2).map(|s| s[0]).ok_or_else(|| Error::Checkpoint {
            path: PathBuf::from("head.safetensors"),
            problems: vec![format!("missing tensor {name} (2-D)")],
        })
    };
    Ok(Widths {
        film_hidden: rows("film.fc1.weight")?,
        head_hidden: rows("head_global.fc1.weight")?,
        fusion_hidden: rows("fusion.fc1.weight")?,
    })
}
