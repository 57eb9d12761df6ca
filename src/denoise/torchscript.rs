//! TorchScript denoisers: a `.pt` file saved by `torch.jit.save` (of `torch.jit.script` or
//! `torch.jit.trace`), whose `forward(x)` maps `(N, 1, H, W)` float32 in [0, 1] to the same shape.
//! See `scripts/export_torchscript_denoiser.py`.
use super::{sha256_file, DenoiseError, Denoiser, DenoiserInfo, ErrorKind};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, Kind, Tensor};

/// A TorchScript module on a device, in eval mode, run without gradients.
#[derive(Debug)]
pub struct TorchScriptDenoiser {
    module: CModule,
    path: PathBuf,
    device: Device,
    sha256: String,
}

impl TorchScriptDenoiser {
    pub fn load(path: &Path, device: Device) -> Result<Self, DenoiseError> {
        let who = format!("torchscript {}", path.display());
        let err = |msg: String| DenoiseError::new(who.clone(), ErrorKind::Load, msg);
        if !path.is_file() {
            return Err(err("no such file".into()));
        }
        let sha256 = sha256_file(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut module = CModule::load_on_device(path, device)
            .map_err(|e| err(format!("cannot load TorchScript module: {}", without_backtrace(&e))))?;
        module.set_eval();
        Ok(Self { module, path: path.to_path_buf(), device, sha256 })
    }
}

impl Denoiser for TorchScriptDenoiser {
    fn info(&self) -> DenoiserInfo {
        DenoiserInfo {
            name: self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            kind: "torchscript".into(),
            version: None,
            path: Some(self.path.clone()),
            config: None,
            sha256: Some(self.sha256.clone()),
        }
    }

    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError> {
        let x = images.to_device(self.device).to_kind(Kind::Float);
        tch::no_grad(|| self.module.forward_ts(&[x])).map_err(|e| {
            DenoiseError::new(
                self.info().label(),
                ErrorKind::Torch,
                format!("forward failed: {}", without_backtrace(&e)),
            )
        })
    }
}

/// libtorch's message without the C++ backtrace it appends ("Exception raised from ...", frame
/// addresses): what the user needs, and the same in every process.
fn without_backtrace(e: &tch::TchError) -> String {
    let text = e.to_string();
    let cut = ["\nException raised from", "\nframe #"].iter().filter_map(|m| text.find(m)).min();
    text[..cut.unwrap_or(text.len())].trim_end().to_string()
}
