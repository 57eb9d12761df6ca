//! Built-in denoisers on tch (any device), each a filter of [`crate::filters`] with a JSON config:
//! `identity`, `gaussian` (`{"sigma": 1.0}`), `median` (`{"size": 3}`), `box` (`{"size": 3}`),
//! `bilateral` (`{"sigma_space": 1.5, "sigma_range": 0.05}`, range in [0, 1] units) and `tv`
//! (`{"weight": 0.05, "iters": 50}`). Borders are mirrored (`reflect`: ... 2 1 | 0 1 2 ... |
//! n-2 n-3 ...), as in the C example plugins, so `gaussian`/`median` and
//! `examples/plugins/{gaussian,median}.c` agree.
use super::{DenoiseError, Denoiser, DenoiserInfo, ErrorKind};
use crate::filters;
use serde_json::{Map, Value};
use tch::Tensor;

/// The built-ins: name, config keys and their defaults.
const BUILTINS: [(&str, &[(&str, f64)]); 6] = [
    ("identity", &[]),
    ("gaussian", &[("sigma", 1.0)]),
    ("median", &[("size", 3.0)]),
    ("box", &[("size", 3.0)]),
    ("bilateral", &[("sigma_space", 1.5), ("sigma_range", 0.05)]),
    ("tv", &[("weight", 0.05), ("iters", 50.0)]),
];

/// The built-ins' names.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}

/// The built-in `name` with an optional JSON object `config`.
pub fn from_name(name: &str, config: Option<&str>) -> Result<Box<dyn Denoiser>, DenoiseError> {
    let who = format!("builtin {name}");
    let bad = |msg: String| DenoiseError::new(who.clone(), ErrorKind::Config, msg);
    let cfg: Map<String, Value> = match config {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(m)) => m,
            _ => return Err(bad(format!("config {text:?} is not a JSON object"))),
        },
    };
    let Some((name, keys)) = BUILTINS.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = names().collect();
        return Err(DenoiseError::new(
            who,
            ErrorKind::Spec,
            format!("unknown built-in {name:?} (known: {})", known.join(", ")),
        ));
    };
    if let Some(k) = cfg.keys().find(|k| !keys.iter().any(|(key, _)| key == k)) {
        let known: Vec<&str> = keys.iter().map(|(key, _)| *key).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        return Err(bad(format!("unknown key {k:?} (known: {known})")));
    }
    let mut params = Vec::new();
    for &(key, default) in keys.iter() {
        let value = match cfg.get(key) {
            None => default,
            Some(v) => v.as_f64().ok_or_else(|| bad(format!("{key} must be a number, got {v}")))?,
        };
        params.push(value);
    }
    let filter = Filter { name, keys, params };
    // Checks the parameters on a tiny image, so that a bad config fails at load, not at the first batch.
    let _checked =
        filter.apply(&Tensor::zeros([1, 1, 4, 4], (tch::Kind::Float, tch::Device::Cpu))).map_err(bad)?;
    Ok(Box::new(filter))
}

/// A built-in: one of [`BUILTINS`] with its parameters in the order of its keys.
#[derive(Debug, Clone)]
struct Filter {
    name: &'static str,
    keys: &'static [(&'static str, f64)],
    params: Vec<f64>,
}

impl Filter {
    fn apply(&self, images: &Tensor) -> Result<Tensor, String> {
        let integer = |i: usize| -> Result<i64, String> {
            let v = self.params[i];
            if v.fract() != 0.0 || !v.is_finite() {
                return Err(format!("{} must be an integer, got {v}", self.keys[i].0));
            }
            Ok(v as i64)
        };
        let p = &self.params;
        let out = tch::no_grad(|| match self.name {
            "identity" => Ok(images.copy()),
            "gaussian" if !(p[0] > 0.0 && p[0] <= 20.0) => {
                Err(format!("sigma must be in (0, 20], got {}", p[0]))
            }
            "gaussian" => filters::gaussian(images, p[0]).map_err(|e| e.to_string()),
            "median" => filters::median(images, integer(0)?).map_err(|e| e.to_string()),
            "box" => filters::box_mean(images, integer(0)?).map_err(|e| e.to_string()),
            "bilateral" => filters::bilateral(images, p[0], p[1]).map_err(|e| e.to_string()),
            "tv" => {
                let iters = integer(1)?;
                if !(1..=1000).contains(&iters) {
                    return Err(format!("iters must be in 1 ..= 1000, got {iters}"));
                }
                filters::total_variation(images, p[0], iters as usize).map_err(|e| e.to_string())
            }
            other => Err(format!("unknown built-in {other:?}")),
        })?;
        Ok(out)
    }
}

impl Denoiser for Filter {
    fn info(&self) -> DenoiserInfo {
        let config = (!self.keys.is_empty()).then(|| {
            let fields: Vec<String> =
                self.keys.iter().zip(&self.params).map(|((k, _), v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", fields.join(","))
        });
        DenoiserInfo { kind: "builtin".into(), config, ..DenoiserInfo::rust(self.name) }
    }
    fn denoise(&mut self, images: &Tensor) -> Result<Tensor, DenoiseError> {
        self.apply(images).map_err(|e| DenoiseError::new(self.info().label(), ErrorKind::Torch, e))
    }
}
