//! Where and in which precision a model holds its weights ([`Placement`]), and the parsing of
//! `--device` and `--dtype` values.
use crate::error::{Error, Result};
use tch::{Device, Kind};

/// Where and in which precision to hold weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub device: Device,
    pub kind: Kind,
}

impl Default for Placement {
    /// CPU, f32.
    fn default() -> Self {
        Self { device: Device::Cpu, kind: Kind::Float }
    }
}

impl Placement {
    /// A placement from `--device` and `--dtype` values (see [`parse_device`], [`parse_kind`]).
    pub fn parse(device: &str, dtype: &str) -> Result<Self> {
        Ok(Self { device: parse_device(device)?, kind: parse_kind(dtype)? })
    }
}

/// `cpu`, `cuda` or `cuda:N`; CUDA only when libtorch sees that device.
pub fn parse_device(s: &str) -> Result<Device> {
    let device = match s.trim().to_ascii_lowercase().as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => Device::Cuda(0),
        d => match d.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => Device::Cuda(i),
            None => return Err(Error::InvalidInput(format!("device {s:?}: expected cpu, cuda or cuda:N"))),
        },
    };
    let count = tch::Cuda::device_count() as usize;
    match device {
        Device::Cuda(i) if i >= count => Err(Error::Unsupported(format!(
            "device {s}: libtorch sees {count} CUDA device(s){}",
            if tch::utils::has_cuda() { "" } else { " (this libtorch has no CUDA support loaded)" }
        ))),
        d => Ok(d),
    }
}

/// The `--device` value [`parse_device`] reads back as `device`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// The `--dtype` value [`parse_kind`] reads back as `kind` (`f64` for double precision).
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        Kind::Double => "f64",
        _ => "f32",
    }
}

/// `f32`, `bf16` or `f16` (aliases `float32`, `bfloat16`, `float16`).
pub fn parse_kind(s: &str) -> Result<Kind> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" | "float" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "f16" | "float16" | "half" => Ok(Kind::Half),
        _ => Err(Error::InvalidInput(format!("dtype {s:?}: expected f32, bf16 or f16"))),
    }
}
