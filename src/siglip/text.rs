//! The text tower (`SiglipTextTransformer`): token + position embeddings, encoder without mask,
//! final LN, last-position pooling, linear head.
use super::encoder::norm;
use super::encoder::{layer_norm, linear, Encoder};
use crate::config::SiglipTextConfig;
use crate::error::{Error, Result};
use crate::layers::TryApply;
use tch::{nn, Kind, Tensor};

/// `SiglipTextEmbeddings`.
#[derive(Debug)]
struct TextEmbeddings {
    token_embedding: nn::Embedding,
    position_embedding: nn::Embedding,
}

impl TextEmbeddings {
    fn new(vs: nn::Path, cfg: &SiglipTextConfig) -> Result<Self> {
        let emb = nn::EmbeddingConfig { ws_init: nn::Init::Const(0.), ..Default::default() };
        Ok(Self {
            token_embedding: nn::embedding(&vs / "token_embedding", cfg.vocab_size, cfg.hidden_size, emb),
            position_embedding: nn::embedding(
                &vs / "position_embedding",
                cfg.max_position_embeddings,
                cfg.hidden_size,
                emb,
            ),
        })
    }

    /// Token embeddings (B, L, D) plus the position embeddings of positions 0..L.
    fn forward(&self, token_embeds: &Tensor) -> Result<Tensor> {
        let l = token_embeds.size()[1];
        let positions = self.position_embedding.ws.f_narrow(0, 0, l)?.f_unsqueeze(0)?; // (1, L, D)
        Ok(token_embeds.f_add(&positions)?) // (B, L, D)
    }
}

/// Outputs of the text tower.
#[derive(Debug)]
pub struct TextOutput {
    /// After `final_layer_norm`, (B, L, D).
    pub last_hidden_state: Tensor,
    /// `head(last_hidden_state[:, -1])` (`get_text_features`, unnormalized), (B, P).
    pub pooler_output: Tensor,
    /// With `output_hidden_states`: the embeddings, then each layer's output.
    pub hidden_states: Vec<Tensor>,
}

/// `SiglipTextTransformer` (checkpoint prefix `text_model`).
#[derive(Debug)]
pub struct TextTransformer {
    embeddings: TextEmbeddings,
    encoder: Encoder,
    final_layer_norm: nn::LayerNorm,
    head: nn::Linear,
    cfg: SiglipTextConfig,
}

impl TextTransformer {
    pub fn new(vs: nn::Path, cfg: &SiglipTextConfig) -> Result<Self> {
        let enc = cfg.encoder().map_err(Error::InvalidInput)?;
        Ok(Self {
            embeddings: TextEmbeddings::new(&vs / "embeddings", cfg)?,
            encoder: Encoder::new(&vs / "encoder", &enc)?,
            final_layer_norm: layer_norm(&vs / "final_layer_norm", cfg.hidden_size, cfg.layer_norm_eps),
            head: linear(&vs / "head", cfg.hidden_size, cfg.projection_size()),
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &SiglipTextConfig {
        &self.cfg
    }

    /// See `Encoder::fuse_qkv`.
    pub(crate) fn fuse_qkv(&mut self) -> Result<()> {
        self.encoder.fuse_qkv()
    }

    /// # Shapes
    /// `input_ids`: (B, L) int64, L <= `max_position_embeddings` (64 for SigLIP: pad to it, as the
    /// model was trained; no attention mask is used, padding tokens take part).
    pub fn forward(&self, input_ids: &Tensor, output_hidden_states: bool) -> Result<TextOutput> {
        let size = input_ids.size();
        let max = self.cfg.max_position_embeddings;
        if size.len() != 2 || size[0] == 0 || size[1] == 0 || size[1] > max || input_ids.kind() != Kind::Int64
        {
            return Err(Error::InvalidInput(format!(
                "input_ids must be (B, L) int64 with 0 < L <= {max}, got {size:?} {:?}",
                input_ids.kind()
            )));
        }
        let (lo, hi) = (input_ids.f_min()?.f_int64_value(&[])?, input_ids.f_max()?.f_int64_value(&[])?);
        if lo < 0 || hi >= self.cfg.vocab_size {
            return Err(Error::InvalidInput(format!(
                "token ids must lie in [0, {}), got [{lo}, {hi}]",
                self.cfg.vocab_size
            )));
        }
        let input_ids = input_ids.f_to_device(self.head.ws.device())?;
        self.forward_embeds(&self.token_embeddings(&input_ids)?, output_hidden_states)
    }

    /// The token-embedding rows of `input_ids` (B, L) -> (B, L, D), unchecked.
    pub fn token_embeddings(&self, input_ids: &Tensor) -> Result<Tensor> {
        input_ids.try_apply(&self.embeddings.token_embedding)
    }

    /// The tower from token embeddings (`inputs_embeds` of transformers' `SiglipTextEmbeddings`):
    /// position embeddings added, encoder, final LN, last-position pooling, head. Learned prompt
    /// vectors enter here in place of token embeddings.
    ///
    /// # Shapes
    /// `token_embeds`: (B, L, D), L <= `max_position_embeddings`, in the tower's dtype and device.
    pub fn forward_embeds(&self, token_embeds: &Tensor, output_hidden_states: bool) -> Result<TextOutput> {
        let size = token_embeds.size();
        let (max, d) = (self.cfg.max_position_embeddings, self.cfg.hidden_size);
        if size.len() != 3 || size[0] == 0 || size[1] == 0 || size[1] > max || size[2] != d {
            return Err(Error::InvalidInput(format!(
                "token embeddings must be (B, L, {d}) with 0 < L <= {max}, got {size:?}"
            )));
        }
        let mut hidden_states = Vec::new();
        let xs = self.embeddings.forward(token_embeds)?;
        if output_hidden_states {
            hidden_states.push(xs.shallow_clone());
        }
        let xs = self.encoder.forward(&xs, output_hidden_states.then_some(&mut hidden_states))?;
        let last_hidden_state = norm(&self.final_layer_norm, self.cfg.layer_norm_eps, &xs)?; // (B, L, D)
        let pooler_output = last_hidden_state.f_select(1, -1)?.try_apply(&self.head)?; // (B, P)
        Ok(TextOutput { last_hidden_state, pooler_output, hidden_states })
    }
}
