//! Built-in denoisers on tch (any device): `identity`, `gaussian` (`{"sigma": 1.0}`) and `median`
//! (`{"size": 3}`). Borders are mirrored (`reflect`: ... 2 1 | 0 1 2 ... | n-2 n-3 ...), as in the C
//! example plugins, so `gaussian`/`median` and `examples/plugins/{gaussian,median}.c` agree.
use super::{DenoiseError, Denoiser, DenoiserInfo, ErrorKind};
use serde_json::{Map, Value};
use tch::{Kind, Tensor};

/// The built-in `name` with an optional JSON object `config`.
pub fn from_name(name: &str, config: Option<&str>) -> Result<Box<dyn Denoiser>, DenoiseError> {
    let who = format!("builtin {name}");
    let cfg: Map<String, Value> = match config {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(DenoiseError::new(
                    who,
                    ErrorKind::Config,
                    format!("config {text:?} is not a JSON object"),
                ))
            }
        },
    };
    let allowed: &[&str] = match name {
        "identity" => &[],
        "gaussian" => &["sigma"],
        "median" => &["size"],
        _ => return Err(DenoiseError::new(who, ErrorKind::Spec, format!("unknown built-in {name:?}"))),
    };
    if let Some(k) = cfg.keys().find(|k| !allowed.contains(&k.as_str())) {
        let known = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
        return Err(DenoiseError::new(who, ErrorKind::Config, format!("unknown key {k:?} (known: {known})")));
    }
    let number = |key: &str, default: f64| -> Result<f64, DenoiseError> {
        match cfg.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| {
                DenoiseError::new(who.clone(), ErrorKind::Config, format!("{key} must be a number, got {v}"))
            }),
        }
    };
    Ok(match name {
        "identity" => Box::new(Identity),
        "gaussian" => Box::new(Gaussian::new(number("sigma", 1.0)?)?),
        _ => {
            let size = number("size", 3.0)?;
            if size.fract() != 0.0 {
                return Err(DenoiseError::new(
                    who,
                    ErrorKind::Config,
                    format!("size must be an integer, got {size}"),
                ));
            }
            Box::new(Median::new(size as i64)?)
        }
    })
}

/// Returns its input (a copy): the control that must score exactly like the input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Denoiser for Identity {
    fn info(&self) -> DenoiserInfo {
        DenoiserInfo { kind: "builtin".into(), ..DenoiserInfo::rust("identity") }
    }
    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError> {
        Ok(images.copy())
    }
}

/// Pads the last two dims by `r` with mirrored borders (`replicate` where an image is too small to mirror).
fn pad_mirror(x: &Tensor, r: i64) -> Result<Tensor, tch::TchError> {
    let (h, w) = (x.size()[2], x.size()[3]);
    let mode = if r < h && r < w { "reflect" } else { "replicate" };
    x.f_pad([r, r, r, r], mode, None)
}

/// Separable Gaussian smoothing with a kernel of radius `ceil(3 sigma)` (normalised to sum 1).
#[derive(Debug, Clone)]
pub struct Gaussian {
    pub sigma: f64,
}

impl Gaussian {
    pub fn new(sigma: f64) -> Result<Self, DenoiseError> {
        if !(sigma > 0.0 && sigma <= 20.0) {
            return Err(DenoiseError::new(
                "builtin gaussian",
                ErrorKind::Config,
                format!("sigma must be in (0, 20], got {sigma}"),
            ));
        }
        Ok(Self { sigma })
    }

    fn kernel(&self) -> Vec<f32> {
        let r = (3.0 * self.sigma).ceil() as i64;
        let taps: Vec<f64> =
            (-r..=r).map(|i| (-0.5 * (i * i) as f64 / (self.sigma * self.sigma)).exp()).collect();
        let sum: f64 = taps.iter().sum();
        taps.iter().map(|t| (t / sum) as f32).collect()
    }
}

impl Denoiser for Gaussian {
    fn info(&self) -> DenoiserInfo {
        DenoiserInfo {
            kind: "builtin".into(),
            config: Some(format!("{{\"sigma\":{}}}", self.sigma)),
            ..DenoiserInfo::rust("gaussian")
        }
    }
    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError> {
        let taps = self.kernel();
        let k = taps.len() as i64;
        let run = || -> Result<Tensor, tch::TchError> {
            let kernel = Tensor::from_slice(&taps).to_device(images.device());
            let x = pad_mirror(images, k / 2)?;
            let x = x.f_conv2d(&kernel.view([1, 1, 1, k]), None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)?;
            x.f_conv2d(&kernel.view([1, 1, k, 1]), None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
        };
        tch::no_grad(run).map_err(|e| DenoiseError::new(self.info().label(), ErrorKind::Torch, e.to_string()))
    }
}

/// Median over a `size x size` window (odd size, 1 ..= 9).
#[derive(Debug, Clone)]
pub struct Median {
    pub size: i64,
}

impl Median {
    pub fn new(size: i64) -> Result<Self, DenoiseError> {
        if !(1..=9).contains(&size) || size % 2 == 0 {
            return Err(DenoiseError::new(
                "builtin median",
                ErrorKind::Config,
                format!("size must be an odd integer in 1 ..= 9, got {size}"),
            ));
        }
        Ok(Self { size })
    }
}

impl Denoiser for Median {
    fn info(&self) -> DenoiserInfo {
        DenoiserInfo {
            kind: "builtin".into(),
            config: Some(format!("{{\"size\":{}}}", self.size)),
            ..DenoiserInfo::rust("median")
        }
    }
    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError> {
        let k = self.size;
        let run = || -> Result<Tensor, tch::TchError> {
            let size = images.size();
            let x = pad_mirror(&images.to_kind(Kind::Float), k / 2)?;
            let windows = x.f_unfold(2, k, 1)?.f_unfold(3, k, 1)?; // (N, 1, H, W, k, k)
            let flat = windows.f_reshape([size[0], size[1], size[2], size[3], k * k])?;
            Ok(flat.f_median_dim(-1, false)?.0)
        };
        tch::no_grad(run).map_err(|e| DenoiseError::new(self.info().label(), ErrorKind::Torch, e.to_string()))
    }
}
