//! The pre-LN transformer encoder shared by both towers.
//!
//! Port of transformers `modeling_siglip.py` (`SiglipAttention`, `SiglipMLP`, `SiglipEncoderLayer`,
//! `SiglipEncoder`). Field names are the checkpoint keys.
use crate::config::EncoderConfig;
use crate::error::Result;
use crate::layers::TryApply;
use tch::{nn, Kind, Tensor};

/// Linear layers are always overwritten by a checkpoint: zero-init is cheaper than Kaiming on 0.9 B weights.
pub(crate) fn linear(vs: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let cfg =
        nn::LinearConfig { ws_init: nn::Init::Const(0.), bs_init: Some(nn::Init::Const(0.)), bias: true };
    nn::linear(vs, in_dim, out_dim, cfg)
}

pub(crate) fn layer_norm(vs: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(vs, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

/// Layer norm in the input's precision: an f32 residual stream of a bf16 tower is normalized in f32
/// (the weights cast up), a bf16 or f32 stream with weights of its own dtype as usual.
pub(crate) fn norm(ln: &nn::LayerNorm, eps: f64, xs: &Tensor) -> Result<Tensor> {
    let kind = xs.kind();
    let ws = ln.ws.as_ref().map(|w| w.f_to_kind(kind)).transpose()?;
    let bs = ln.bs.as_ref().map(|b| b.f_to_kind(kind)).transpose()?;
    Ok(xs.f_layer_norm(ln.normalized_shape.as_slice(), ws.as_ref(), bs.as_ref(), eps, false)?)
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

    /// The weights' dtype.
    pub fn kind(&self) -> Kind {
        self.fc1.ws.kind()
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let approximate = if self.gelu_tanh { "tanh" } else { "none" };
        xs.try_apply(&self.fc1)?.f_gelu(approximate)?.try_apply(&self.fc2)
    }
}

/// `SiglipAttention`: bidirectional multi-head self-attention, no mask.
///
/// With frozen weights the three input projections run as one matrix product: `fuse_qkv` lays the
/// q, k and v weights out in one (3D, D) tensor and points the checkpoint variables at its rows, so
/// the fused weight is the variables' own storage (no copy, never stale after `copy_` or optimizer
/// steps). A trainable layer uses the three projections, so autograd reaches each variable.
#[derive(Debug)]
struct Attention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    num_heads: i64,
    /// (W_qkv (3D, D), b_qkv (3D)): the storage of q_proj, k_proj and v_proj, in that order.
    qkv: Option<(Tensor, Tensor)>,
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
            qkv: None,
        })
    }

    fn projections(&mut self) -> [&mut nn::Linear; 3] {
        [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj]
    }

    /// Moves the q, k, v variables into one (3D, D) weight and (3D) bias; call after any change of
    /// the store's dtype or device (`VarStore::set_kind` replaces the storage and undoes the fusion,
    /// which `fused` then detects).
    fn fuse_qkv(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let d = self.q_proj.ws.size()[0];
        let [q, k, v] = self.projections();
        let w = Tensor::f_cat(&[&q.ws, &k.ws, &v.ws], 0)?;
        let b = Tensor::f_cat(&[bias(q), bias(k), bias(v)], 0)?;
        for (i, lin) in self.projections().into_iter().enumerate() {
            lin.ws.f_set_data(&w.f_narrow(0, i as i64 * d, d)?)?;
            let lin_bias = lin.bs.as_mut().expect("SigLIP projections have biases");
            lin_bias.f_set_data(&b.f_narrow(0, i as i64 * d, d)?)?;
        }
        self.qkv = Some((w, b));
        Ok(())
    }

    /// The fused weight and bias when they still are the variables' storage and no variable is trainable.
    fn fused(&self) -> Option<(&Tensor, &Tensor)> {
        let (w, b) = self.qkv.as_ref()?;
        let lins = [&self.q_proj, &self.k_proj, &self.v_proj];
        let d = w.size()[1];
        let elt = w.kind().elt_size_in_bytes();
        let shares = |t: &Tensor, base: &Tensor, i: usize, row: i64| {
            t.data_ptr() as usize == base.data_ptr() as usize + i * (row as usize) * elt
                && t.kind() == base.kind()
        };
        let ok = lins.iter().enumerate().all(|(i, l)| {
            !l.ws.requires_grad()
                && !bias(l).requires_grad()
                && shares(&l.ws, w, i, d * d)
                && shares(bias(l), b, i, d)
        });
        ok.then_some((w, b))
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, n, d) = xs.size3()?;
        let (h, hd) = (self.num_heads, d / self.num_heads);
        // (B, N, D) -> (B, heads, N, head_dim)
        let heads = |t: Tensor| -> Result<Tensor> { Ok(t.f_view([b, n, h, hd])?.f_transpose(1, 2)?) };
        // bf16 on CPU: the explicit form (two batched matrix products and a softmax accumulated in
        // f32) is 2.5x faster than libtorch's flash kernel once freed blocks are reused
        // (`runtime::tune_allocator`; docs/performance.md). In f32 both run at the same speed.
        let explicit = crate::runtime::second_order()
            || (!xs.device().is_cuda()
                && xs.kind() == Kind::BFloat16
                && crate::runtime::explicit_cpu_attention());
        let (q, k, v) = match self.fused() {
            Some((w, bias)) => {
                let (w, bias) = (w.f_to_kind(xs.kind())?, bias.f_to_kind(xs.kind())?); // see `product_kind`
                let qkv = xs.f_linear(&w, Some(&bias))?.f_view([b, n, 3, h, hd])?;
                let qkv = qkv.f_permute([2, 0, 3, 1, 4])?; // (3, B, heads, N, hd)
                (qkv.f_select(0, 0)?, qkv.f_select(0, 1)?, qkv.f_select(0, 2)?)
            }
            None => (
                heads(xs.try_apply(&self.q_proj)?)?,
                heads(xs.try_apply(&self.k_proj)?)?,
                heads(xs.try_apply(&self.v_proj)?)?,
            ),
        };
        let scale = (hd as f64).powf(-0.5);
        let o = if explicit {
            let scores = q.f_mul_scalar(scale)?.f_matmul(&k.f_transpose(-1, -2)?)?; // (B, heads, N, N)
            scores.f_softmax(-1, None::<Kind>)?.f_matmul(&v)? // (B, heads, N, hd)
        } else {
            Tensor::f_scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, scale, false)?
        };
        o.f_transpose(1, 2)?.f_reshape([b, n, d])?.try_apply(&self.out_proj) // (B, N, D)
    }
}

fn bias(l: &nn::Linear) -> &Tensor {
    l.bs.as_ref().expect("SigLIP projections have biases")
}

/// `SiglipEncoderLayer`: pre-LN attention and MLP blocks with residuals.
///
/// The residual stream keeps the dtype it comes in: a bf16 vision tower gets an f32 stream from its
/// patch embedding, so each block's small update is added in f32 rather than rounded into a bf16
/// sum 27 times over; layer norms run in the stream's dtype and the matrix products in the weights'
/// (or in f32 on a CPU without fast bf16 products, `runtime::product_kind`).
#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: nn::LayerNorm,
    self_attn: Attention,
    layer_norm2: nn::LayerNorm,
    mlp: Mlp,
    eps: f64,
}

impl EncoderLayer {
    fn new(vs: nn::Path, cfg: &EncoderConfig) -> Result<Self> {
        Ok(Self {
            layer_norm1: layer_norm(&vs / "layer_norm1", cfg.hidden_size, cfg.layer_norm_eps),
            self_attn: Attention::new(&vs / "self_attn", cfg)?,
            layer_norm2: layer_norm(&vs / "layer_norm2", cfg.hidden_size, cfg.layer_norm_eps),
            mlp: Mlp::new(&vs / "mlp", cfg)?,
            eps: cfg.layer_norm_eps,
        })
    }

    fn fuse_qkv(&mut self) -> Result<()> {
        self.self_attn.fuse_qkv()
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        // The products' dtype (the weights', or f32 where the CPU multiplies them slowly), the stream's.
        let (kind, stream) = (crate::runtime::product_kind(self.mlp.kind(), xs.device()), xs.kind());
        let residual = xs;
        let xs = self.self_attn.forward(&norm(&self.layer_norm1, self.eps, xs)?.f_to_kind(kind)?)?;
        let xs = residual.f_add(&xs.f_to_kind(stream)?)?;
        let residual = &xs;
        let xs = self.mlp.forward(&norm(&self.layer_norm2, self.eps, &xs)?.f_to_kind(kind)?)?;
        Ok(residual.f_add(&xs.f_to_kind(stream)?)?)
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

    /// Fuses each layer's q, k, v projections (see `Attention`); call once the store has its final
    /// dtype and device.
    pub fn fuse_qkv(&mut self) -> Result<()> {
        self.layers.iter_mut().try_for_each(EncoderLayer::fuse_qkv)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Runs layers `range` only (activation checkpointing recomputes one segment at a time).
    pub fn forward_layers(&self, xs: &Tensor, range: std::ops::Range<usize>) -> Result<Tensor> {
        self.layers[range].iter().try_fold(xs.shallow_clone(), |xs, layer| layer.forward(&xs))
    }

    /// Runs all layers; with `states`, pushes each layer's output (HF `hidden_states[1..]`).
    pub fn forward(&self, xs: &Tensor, mut states: Option<&mut Vec<Tensor>>) -> Result<Tensor> {
        let mut xs = xs.shallow_clone();
        for layer in &self.layers {
            xs = layer.forward(&xs)?;
            if let Some(states) = states.as_deref_mut() {
                states.push(xs.shallow_clone());
            }
        }
        Ok(xs)
    }
}
