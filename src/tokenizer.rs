//! The SigLIP tokenizer: `tokenizer.json` through the `tokenizers` crate, with the padding and
//! truncation that SigLIP was trained with (`padding="max_length", max_length=64, truncation=True`):
//! ids = pieces[..63] + `[</s>]`, right-padded with `</s>` (id 1) to 64. The normalizer (lowercase,
//! punctuation removal, whitespace collapsing) is the one in `tokenizer.json`, as in the HF fast tokenizer.
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use tch::Tensor;
use tokenizers::{PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// A `tokenizer.json` set up for SigLIP's fixed-length encoding.
#[derive(Clone)]
pub struct SiglipTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    max_len: usize,
}

impl std::fmt::Debug for SiglipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SiglipTokenizer({}, max_len {})", self.path.display(), self.max_len)
    }
}

impl SiglipTokenizer {
    /// `tokenizer.json` of a model folder.
    pub fn from_dir(dir: &Path, max_len: i64) -> Result<Self> {
        Self::from_file(&dir.join("tokenizer.json"), max_len as usize)
    }

    /// Loads `path`, padding and truncating every text to `max_len` ids (64 for SigLIP).
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        let err = |msg: String| Error::Tokenizer { path: path.to_path_buf(), msg };
        if !path.is_file() {
            return Err(err("file not found".into()));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        let eos = "</s>";
        let eos_id =
            inner.token_to_id(eos).ok_or_else(|| err(format!("no {eos} token in the vocabulary")))?;
        let truncation = TruncationParams { max_length: max_len, ..Default::default() };
        inner.with_truncation(Some(truncation)).map_err(|e| err(e.to_string()))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_len),
            direction: PaddingDirection::Right,
            pad_id: eos_id,
            pad_token: eos.into(),
            ..Default::default()
        }));
        Ok(Self { inner, path: path.to_path_buf(), max_len })
    }

    /// Ids of one text, exactly `max_len` long.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer { path: self.path.clone(), msg: format!("{text:?}: {e}") })?;
        Ok(enc.get_ids().iter().map(|&id| id as i64).collect())
    }

    /// Ids of several texts as a (B, max_len) int64 tensor.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Tensor> {
        if texts.is_empty() {
            return Err(Error::InvalidInput("no text to encode".into()));
        }
        let ids = texts.iter().map(|t| self.encode(t)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::f_from_slice(&ids.concat())?.f_view([texts.len() as i64, self.max_len as i64])?)
    }
}
