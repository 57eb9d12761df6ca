//! The vision tower (`SiglipVisionTransformer`): patch embedding, position table, encoder, post-LN,
//! and the multi-head attention pooling (MAP) head.
use super::encoder::{layer_norm, linear, norm, Encoder, Mlp};
use crate::config::{EncoderConfig, SiglipVisionConfig};
use crate::error::{Error, Result};
use crate::layers::TryApply;
use tch::{nn, Kind, Tensor};

/// `SiglipVisionEmbeddings`: a stride-`patch_size` convolution plus a learned position table.
#[derive(Debug)]
struct VisionEmbeddings {
    patch_embedding: nn::Conv2D,
    position_embedding: nn::Embedding,
    grid: i64,
    patch: i64,
}

impl VisionEmbeddings {
    fn new(vs: nn::Path, cfg: &SiglipVisionConfig) -> Result<Self> {
        let conv = nn::ConvConfig {
            stride: cfg.patch_size,
            ws_init: nn::Init::Const(0.),
            bs_init: nn::Init::Const(0.),
            ..Default::default()
        };
        let grid = cfg.grid();
        let emb = nn::EmbeddingConfig { ws_init: nn::Init::Const(0.), ..Default::default() };
        Ok(Self {
            patch_embedding: nn::conv2d(
                &vs / "patch_embedding",
                cfg.num_channels,
                cfg.hidden_size,
                cfg.patch_size,
                conv,
            ),
            position_embedding: nn::embedding(&vs / "position_embedding", grid * grid, cfg.hidden_size, emb),
            grid,
            patch: cfg.patch_size,
        })
    }

    /// The position table for a `rows x cols` patch grid, bicubically interpolated (as HF's
    /// `interpolate_pos_encoding`) when it differs from the trained grid. Shape (1, rows*cols, D).
    fn positions(&self, rows: i64, cols: i64) -> Result<Tensor> {
        let table = &self.position_embedding.ws; // (grid*grid, D)
        let d = table.size()[1];
        if (rows, cols) == (self.grid, self.grid) {
            return Ok(table.f_unsqueeze(0)?);
        }
        Ok(table
            .f_reshape([1, self.grid, self.grid, d])?
            .f_permute([0, 3, 1, 2])? // (1, D, grid, grid)
            .f_upsample_bicubic2d([rows, cols], false, None, None)? // (1, D, rows, cols)
            .f_permute([0, 2, 3, 1])?
            .f_reshape([1, rows * cols, d])?)
    }

    /// With bf16 or f16 weights and f32 (or f64) pixels, the embedding runs in f32 and starts an f32
    /// residual stream (see `EncoderLayer`): rounding the pixels themselves to bf16 (8-bit mantissa)
    /// would erase image noise of a few HU, the very signal a low-dose CT quality score measures.
    fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let kind = self.patch_embedding.ws.kind();
        let reduced = matches!(kind, Kind::BFloat16 | Kind::Half) && pixel_values.kind() != kind;
        let compute = if reduced { Kind::Float } else { kind };
        let conv = &self.patch_embedding;
        let xs = pixel_values.f_to_kind(compute)?.f_conv2d(
            &conv.ws.f_to_kind(compute)?,
            conv.bs.as_ref().map(|b| b.f_to_kind(compute)).transpose()?,
            [self.patch, self.patch],
            [0, 0],
            [1, 1],
            1,
        )?; // (B, D, rows, cols)
        let (_, _, rows, cols) = xs.size4()?;
        // (B, N, D), patch index = row*cols + col; contiguous, or every later elementwise op and
        // layer norm would keep (and copy for) the conv's channels-first layout.
        let xs = xs.f_flatten(2, -1)?.f_transpose(1, 2)?.f_contiguous()?;
        Ok(xs.f_add(&self.positions(rows, cols)?.f_to_kind(compute)?)?)
    }
}

/// `torch.nn.MultiheadAttention` with a packed `in_proj_weight` (rows q | k | v), one query.
#[derive(Debug)]
struct MultiheadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    num_heads: i64,
}

impl MultiheadAttention {
    fn new(vs: nn::Path, cfg: &EncoderConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            in_proj_weight: vs.zeros("in_proj_weight", &[3 * d, d]),
            in_proj_bias: vs.zeros("in_proj_bias", &[3 * d]),
            out_proj: linear(&vs / "out_proj", d, d),
            num_heads: cfg.num_attention_heads,
        })
    }

    /// `query` (B, L, D) attends to `xs` (B, N, D). Mirrors `F.multi_head_attention_forward`: q is
    /// scaled by 1/sqrt(head_dim) *before* the product, and k, v come from one fused projection.
    fn forward(&self, query: &Tensor, xs: &Tensor) -> Result<Tensor> {
        let (b, l, d) = query.size3()?;
        let n = xs.size()[1];
        let (h, hd) = (self.num_heads, d / self.num_heads);
        let (w, bias) =
            (&self.in_proj_weight.f_to_kind(xs.kind())?, &self.in_proj_bias.f_to_kind(xs.kind())?);
        let q = query.f_linear(&w.f_narrow(0, 0, d)?, Some(&bias.f_narrow(0, 0, d)?))?;
        let kv = xs.f_linear(&w.f_narrow(0, d, 2 * d)?, Some(&bias.f_narrow(0, d, 2 * d)?))?;
        // (B, len, D) -> (B, heads, len, hd)
        let heads =
            |t: &Tensor, len: i64| -> Result<Tensor> { Ok(t.f_reshape([b, len, h, hd])?.f_transpose(1, 2)?) };
        let q = heads(&q, l)?.f_mul_scalar((1.0 / hd as f64).sqrt())?;
        let k = heads(&kv.f_narrow(2, 0, d)?, n)?;
        let v = heads(&kv.f_narrow(2, d, d)?, n)?;
        let attn = q.f_matmul(&k.f_transpose(-2, -1)?)?.f_softmax(-1, q.kind())?; // (B, heads, L, N)
        attn.f_matmul(&v)?.f_transpose(1, 2)?.f_reshape([b, l, d])?.try_apply(&self.out_proj)
        // (B, L, D)
    }
}

/// `SiglipMultiheadAttentionPoolingHead`: a learned probe attends over the tokens, then LN + MLP.
#[derive(Debug)]
struct PoolingHead {
    probe: Tensor,
    attention: MultiheadAttention,
    layernorm: nn::LayerNorm,
    mlp: Mlp,
    eps: f64,
}

impl PoolingHead {
    fn new(vs: nn::Path, cfg: &EncoderConfig) -> Result<Self> {
        Ok(Self {
            probe: vs.zeros("probe", &[1, 1, cfg.hidden_size]),
            attention: MultiheadAttention::new(&vs / "attention", cfg)?,
            layernorm: layer_norm(&vs / "layernorm", cfg.hidden_size, cfg.layer_norm_eps),
            mlp: Mlp::new(&vs / "mlp", cfg)?,
            eps: cfg.layer_norm_eps,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, _, d) = xs.size3()?;
        let probe = self.probe.f_to_kind(xs.kind())?.f_expand([b, 1, d], false)?; // (B, 1, D)
        let xs = self.attention.forward(&probe, xs)?;
        let residual = &xs;
        let xs = residual.f_add(&self.mlp.forward(&norm(&self.layernorm, self.eps, &xs)?)?)?;
        Ok(xs.f_select(1, 0)?) // (B, D)
    }
}

/// Outputs of the vision tower.
#[derive(Debug)]
pub struct VisionOutput {
    /// Post-LN patch tokens, (B, N, D).
    pub last_hidden_state: Tensor,
    /// MAP-head output (`get_image_features`, unnormalized), (B, D); `None` without a head.
    pub pooler_output: Option<Tensor>,
    /// With `output_hidden_states`: the embeddings, then each layer's output (pre post-LN).
    pub hidden_states: Vec<Tensor>,
}

/// `SiglipVisionTransformer` (checkpoint prefix `vision_model`).
#[derive(Debug)]
pub struct VisionTransformer {
    embeddings: VisionEmbeddings,
    encoder: Encoder,
    post_layernorm: nn::LayerNorm,
    head: Option<PoolingHead>,
    cfg: SiglipVisionConfig,
}

impl VisionTransformer {
    pub fn new(vs: nn::Path, cfg: &SiglipVisionConfig) -> Result<Self> {
        let enc = cfg.encoder().map_err(Error::InvalidInput)?;
        Ok(Self {
            embeddings: VisionEmbeddings::new(&vs / "embeddings", cfg)?,
            encoder: Encoder::new(&vs / "encoder", &enc)?,
            post_layernorm: layer_norm(&vs / "post_layernorm", cfg.hidden_size, cfg.layer_norm_eps),
            head: cfg.vision_use_head.then(|| PoolingHead::new(&vs / "head", &enc)).transpose()?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &SiglipVisionConfig {
        &self.cfg
    }

    /// See `Encoder::fuse_qkv`.
    pub(crate) fn fuse_qkv(&mut self) -> Result<()> {
        self.encoder.fuse_qkv()
    }

    /// The forward pass in pieces, for activation checkpointing: patch + position embeddings (B, N, D).
    pub(crate) fn embed(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.check_input(pixel_values)?;
        self.embeddings.forward(pixel_values)
    }

    pub(crate) fn num_layers(&self) -> usize {
        self.encoder.num_layers()
    }

    /// Encoder layers `range`, (B, N, D) -> (B, N, D).
    pub(crate) fn layers(&self, xs: &Tensor, range: std::ops::Range<usize>) -> Result<Tensor> {
        self.encoder.forward_layers(xs, range)
    }

    /// The final layer norm (in the residual stream's dtype): `last_hidden_state`.
    pub(crate) fn post_layernorm(&self, xs: &Tensor) -> Result<Tensor> {
        norm(&self.post_layernorm, self.cfg.layer_norm_eps, xs)
    }

    /// Checks that `pixel_values` is a float (B, C, H, W) tensor with H, W multiples of the patch size.
    pub fn check_input(&self, pixel_values: &Tensor) -> Result<()> {
        let size = pixel_values.size();
        let p = self.cfg.patch_size;
        let ok = size.len() == 4
            && size[0] > 0
            && size[1] == self.cfg.num_channels
            && size[2] >= p
            && size[3] >= p
            && size[2] % p == 0
            && size[3] % p == 0;
        if !ok {
            return Err(Error::InvalidInput(format!(
                "pixel_values must be (B, {}, H, W) with H and W positive multiples of the patch size {p}, got {size:?}",
                self.cfg.num_channels
            )));
        }
        if !pixel_values.is_floating_point() {
            return Err(Error::InvalidInput(format!(
                "pixel_values must be floating point, got {:?}",
                pixel_values.kind()
            )));
        }
        Ok(())
    }

    /// # Shapes
    /// `pixel_values`: (B, C, H, W), H and W multiples of `patch_size` (the position table is
    /// interpolated when H or W differ from `image_size`).
    pub fn forward(
        &self,
        pixel_values: &Tensor,
        output_hidden_states: bool,
        pool: bool,
    ) -> Result<VisionOutput> {
        self.check_input(pixel_values)?;
        let mut hidden_states = Vec::new();
        let xs = self.embeddings.forward(pixel_values)?; // (B, N, D)
        if output_hidden_states {
            hidden_states.push(xs.shallow_clone());
        }
        let xs = self.encoder.forward(&xs, output_hidden_states.then_some(&mut hidden_states))?;
        let last_hidden_state = self.post_layernorm(&xs)?; // (B, N, D)
        let pooler_output = match (&self.head, pool) {
            (Some(head), true) => {
                // Products in `product_kind`; the features in the weights' dtype.
                let kind = crate::runtime::product_kind(head.mlp.kind(), last_hidden_state.device());
                Some(head.forward(&last_hidden_state.f_to_kind(kind)?)?.f_to_kind(head.mlp.kind())?)
            }
            _ => None,
        };
        Ok(VisionOutput { last_hidden_state, pooler_output, hidden_states })
    }
}
