//! Parsing of `--device` and `--dtype` values.
use crate::error::{Error, Result};
use tch::{Device, Kind};

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

/// `f32`, `bf16` or `f16` (aliases `float32`, `bfloat16`, `float16`).
pub fn parse_kind(s: &str) -> Result<Kind> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" | "float" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "f16" | "float16" | "half" => Ok(Kind::Half),
        _ => Err(Error::InvalidInput(format!("dtype {s:?}: expected f32, bf16 or f16"))),
    }
}
