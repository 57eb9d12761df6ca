//! The pre-LN transformer encoder shared by both towers.
//!
//! Port of transformers `modeling_siglip.py` (`SiglipAttention`, `SiglipMLP`, `SiglipEncoderLayer`,
//! `SiglipEncoder`). Field names are the checkpoint keys.
use crate::config::EncoderConfig;
use crate::error::Result;
use tch::{nn, Tensor};

/// Linear layers are always overwritten by a checkpoint: zero-init is cheaper than Kaiming on 0.9 B weights.
pub(crate) fn linear(vs: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let cfg =
        nn::LinearConfig { ws_init: nn::Init::Const(0.), bs_init: Some(nn::Init::Const(0.)), bias: true };
    nn::linear(vs, in_dim, out_dim, cfg)
}

pub(crate) fn layer_norm(vs: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(vs, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

/// `SiglipMLP`: fc1, GELU, fc2.
#[derive(Debug)]
pub(crate) struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
    gelu_tanh: bool,
}

impl Mlp {
    pub fn new(vs: nn::Path, cfg: &EncoderConfig) -> Result<Self> {
        Ok(Self {
            fc1: linear(&vs / "fc1", cfg.hidden_size, cfg.intermediate_size),
            fc2: linear(&vs / "fc2", cfg.intermediate_size, cfg.hidden_size),
            gelu_tanh: cfg.gelu_tanh,
        })
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let approximate = if self.gelu_tanh { "tanh" } else { "none" };
        xs.apply(&self.fc1).gelu(approximate).apply(&self.fc2)
    }
}

/// `SiglipAttention`: bidirectional multi-head self-attention, no mask.
#[derive(Debug)]
struct Attention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    num_heads: i64,
}

impl Attention {
    fn new(vs: nn::Path, cfg: &EncoderConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            q_proj: linear(&vs / "q_proj", d, d),
            k_proj: linear(&vs / "k_proj", d, d),
            v_proj: linear(&vs / "v_proj", d, d),
            out_proj: linear(&vs / "out_proj", d, d),
            num_heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, n, d) = xs.size3().expect("encoder input is (B, N, D)");
        let (h, hd) = (self.num_heads, d / self.num_heads);
        let heads = |t: Tensor| t.view([b, n, h, hd]).transpose(1, 2); // (B, heads, N, head_dim)
        let q = heads(xs.apply(&self.q_proj));
        let k = heads(xs.apply(&self.k_proj));
        let v = heads(xs.apply(&self.v_proj));
        let scale = (hd as f64).powf(-0.5);
        let o = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, scale, false);
        o.transpose(1, 2).reshape([b, n, d]).apply(&self.out_proj) // (B, N, D)
    }
}

/// `SiglipEncoderLayer`: pre-LN attention and MLP blocks with residuals.
#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: nn::LayerNorm,
    self_attn: Attention,
    layer_norm2: nn::LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    fn new(vs: nn::Path, cfg: &EncoderConfig) -> Result<Self> {
        Ok(Self {
            layer_norm1: layer_norm(&vs / "layer_norm1", cfg.hidden_size, cfg.layer_norm_eps),
            self_attn: Attention::new(&vs / "self_attn", cfg)?,
            layer_norm2: layer_norm(&vs / "layer_norm2", cfg.hidden_size, cfg.layer_norm_eps),
            mlp: Mlp::new(&vs / "mlp", cfg)?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let residual = xs;
        let xs = residual + self.self_attn.forward(&xs.apply(&self.layer_norm1));
        let residual = &xs;
        residual + self.mlp.forward(&xs.apply(&self.layer_norm2))
    }
}

/// `SiglipEncoder`: `num_hidden_layers` encoder layers.
#[derive(Debug)]
pub(crate) struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn new(vs: nn::Path, cfg: &EncoderConfig) -> Result<Self> {
        let vs = &vs / "layers";
        let layers =
            (0..cfg.num_hidden_layers).map(|i| EncoderLayer::new(&vs / i, cfg)).collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// Runs all layers; with `states`, pushes each layer's output (HF `hidden_states[1..]`).
    pub fn forward(&self, xs: &Tensor, mut states: Option<&mut Vec<Tensor>>) -> Tensor {
        let mut xs = xs.shallow_clone();
        for layer in &self.layers {
            xs = layer.forward(&xs);
            if let Some(states) = states.as_deref_mut() {
                states.push(xs.shallow_clone());
            }
        }
        xs
    }
}
