//! What pixel values mean ([`Space`]) and HU display windows ([`Window`]): the one place where HU and
//! [0, 1] values are converted into each other.
//!
//! A window maps HU to display values, `(hu - (center - width / 2)) / width` clamped to [0, 1]
//! (outside the window the display saturates, so the gradient is zero there); its inverse maps
//! [0, 1] back to HU, `unit * width + (center - width / 2)`. LDCTIQA2023 made its [0, 1] TIFFs with
//! [`Window::LDCTIQA`] (-300 / 1400, i.e. [-1000, 400] HU); ldct-benchmark measures PSNR and SSIM
//! in per-anatomy windows ([`Window::ABDOMEN`], [`Window::CHEST`], [`Window::NEURO`]).
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::{TchError, Tensor};

/// What pixel values mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    /// Display values in [0, 1], a window already applied (LDCTIQA2023's TIFFs, PNG).
    Unit,
    /// Hounsfield units (DICOM after RescaleSlope / RescaleIntercept).
    Hu,
}

impl FromStr for Space {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unit" => Ok(Self::Unit),
            "hu" => Ok(Self::Hu),
            _ => Err(format!("{s:?}: expected unit (values in [0, 1]) or hu")),
        }
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unit => "unit",
            Self::Hu => "hu",
        })
    }
}

/// An HU window: `center` and `width` (> 0), both finite. Serialized as `[center, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "(f64, f64)", try_from = "(f64, f64)")]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

impl Window {
    /// LDCTIQA2023's mapping of HU to [0, 1]: [-1000, 400] HU.
    pub const LDCTIQA: Self = Self { center: -300.0, width: 1400.0 };
    /// ldct-benchmark's window of its abdomen test patients.
    pub const ABDOMEN: Self = Self { center: 50.0, width: 400.0 };
    /// ldct-benchmark's window of its chest test patients.
    pub const CHEST: Self = Self { center: -600.0, width: 1500.0 };
    /// ldct-benchmark's window of its neuro test patients.
    pub const NEURO: Self = Self { center: 40.0, width: 80.0 };
    /// Every named window; the names [`FromStr`] takes.
    pub const NAMED: [(&'static str, Self); 4] = [
        ("ldctiqa", Self::LDCTIQA),
        ("abdomen", Self::ABDOMEN),
        ("chest", Self::CHEST),
        ("neuro", Self::NEURO),
    ];

    /// A window, checked: finite center, finite width > 0.
    pub fn new(center: f64, width: f64) -> Result<Self, InvalidWindow> {
        if !(width > 0.0 && width.is_finite() && center.is_finite()) {
            return Err(InvalidWindow { center, width });
        }
        Ok(Self { center, width })
    }

    /// The window of a named anatomy (`abdomen`, `chest`, `neuro`: ldct-benchmark's per-anatomy
    /// evaluation), case-insensitive.
    pub fn for_anatomy(anatomy: &str) -> Option<Self> {
        Self::NAMED[1..].iter().find(|(n, _)| n.eq_ignore_ascii_case(anatomy.trim())).map(|(_, w)| *w)
    }

    /// The names [`Window::for_anatomy`] knows, for messages.
    pub fn anatomy_names() -> String {
        Self::NAMED[1..].iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }

    /// The HU value shown as 0.
    pub fn lower(&self) -> f64 {
        self.center - self.width / 2.0
    }

    /// HU to display values in [0, 1] (clamped), any tensor shape and float dtype; differentiable.
    pub fn to_unit(&self, hu: &Tensor) -> Result<Tensor, TchError> {
        hu.f_sub_scalar(self.lower())?.f_div_scalar(self.width)?.f_clamp(0.0, 1.0)
    }

    /// [0, 1] display values back to HU (the inverse of [`Window::to_unit`] on [0, 1]).
    pub fn to_hu(&self, unit: &Tensor) -> Result<Tensor, TchError> {
        unit.f_mul_scalar(self.width)?.f_add_scalar(self.lower())
    }

    /// [`Window::to_unit`] of one value.
    pub fn unit_value(&self, hu: f64) -> f64 {
        ((hu - self.lower()) / self.width).clamp(0.0, 1.0)
    }

    /// [`Window::to_hu`] of one value.
    pub fn hu_value(&self, unit: f64) -> f64 {
        unit * self.width + self.lower()
    }

    /// Values of space `from` in space `to`, HU and [0, 1] related by this window.
    pub fn convert(&self, xs: &Tensor, from: Space, to: Space) -> Result<Tensor, TchError> {
        match (from, to) {
            (Space::Hu, Space::Unit) => self.to_unit(xs),
            (Space::Unit, Space::Hu) => self.to_hu(xs),
            _ => Ok(xs.shallow_clone()),
        }
    }

    /// LDCTIQA [0, 1] images seen through this window, in [0, 1]: the identity (clamped) for the
    /// LDCTIQA window itself.
    pub fn from_ldctiqa(&self, unit: &Tensor) -> Result<Tensor, TchError> {
        if *self == Self::LDCTIQA {
            return unit.f_clamp(0.0, 1.0);
        }
        self.to_unit(&Self::LDCTIQA.to_hu(unit)?)
    }
}

impl Default for Window {
    fn default() -> Self {
        Self::LDCTIQA
    }
}

impl From<Window> for (f64, f64) {
    fn from(w: Window) -> Self {
        (w.center, w.width)
    }
}

impl TryFrom<(f64, f64)> for Window {
    type Error = InvalidWindow;
    fn try_from((center, width): (f64, f64)) -> Result<Self, InvalidWindow> {
        Self::new(center, width)
    }
}

/// A window whose center is not finite or whose width is not a finite number > 0.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("invalid HU window center {center}, width {width} (finite, width > 0)")]
pub struct InvalidWindow {
    pub center: f64,
    pub width: f64,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.center, self.width)
    }
}

/// `CENTER,WIDTH` or a name of [`Window::NAMED`] (case-insensitive).
impl FromStr for Window {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some((_, w)) = Self::NAMED.iter().find(|(name, _)| name.eq_ignore_ascii_case(s.trim())) {
            return Ok(*w);
        }
        let names = Self::NAMED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        match s.split(',').collect::<Vec<_>>().as_slice() {
            [c, w] => match (c.trim().parse(), w.trim().parse()) {
                (Ok(c), Ok(w)) => Self::new(c, w).map_err(|_| {
                    format!("window {s:?}: expected CENTER,WIDTH with finite values and WIDTH > 0")
                }),
                _ => Err(format!("window {s:?}: expected CENTER,WIDTH with finite values and WIDTH > 0")),
            },
            _ => Err(format!("window {s:?}: expected CENTER,WIDTH or one of {names}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_by_numbers_and_by_name() {
        let w = |c, wd| Ok(Window { center: c, width: wd });
        assert_eq!("-300,1400".parse(), w(-300.0, 1400.0));
        assert_eq!(" 40 , 400 ".parse(), w(40.0, 400.0));
        assert_eq!("Abdomen".parse(), w(50.0, 400.0));
        assert_eq!("chest".parse(), w(-600.0, 1500.0));
        assert_eq!("neuro".parse(), w(40.0, 80.0));
        assert_eq!("ldctiqa".parse(), w(-300.0, 1400.0));
        for bad in ["40,0", "40,-1", "nan,400", "40,inf", "40", "40,400,1", "lung", ""] {
            let e = bad.parse::<Window>().expect_err(bad);
            assert!(e.contains("window"), "{bad}: {e}");
        }
        assert!("lung".parse::<Window>().unwrap_err().contains("ldctiqa, abdomen, chest, neuro"));
        assert_eq!(Window::for_anatomy(" Chest"), Some(Window::CHEST));
        assert_eq!(Window::for_anatomy("ldctiqa"), None, "not an anatomy");
    }

    #[test]
    fn conversions_invert_each_other() {
        let w = Window::ABDOMEN;
        let hu = Tensor::from_slice(&[-1000.0f64, -150.0, 50.0, 250.0, 1000.0]);
        let unit = w.to_unit(&hu).unwrap();
        assert_eq!(Vec::<f64>::try_from(&unit).unwrap(), [0.0, 0.0, 0.5, 1.0, 1.0]);
        assert_eq!(
            Vec::<f64>::try_from(w.to_hu(&unit).unwrap()).unwrap(),
            [-150.0, -150.0, 50.0, 250.0, 250.0]
        );
        assert_eq!(w.unit_value(50.0), 0.5);
        assert_eq!(w.hu_value(0.25), -50.0);
        assert_eq!(Vec::<f64>::try_from(w.convert(&hu, Space::Hu, Space::Hu).unwrap()).unwrap()[0], -1000.0);
        let x = Tensor::from_slice(&[-0.5f64, 0.5, 1.5]);
        assert_eq!(Vec::<f64>::try_from(Window::LDCTIQA.from_ldctiqa(&x).unwrap()).unwrap(), [0.0, 0.5, 1.0]);
        // 0.5 in LDCTIQA is -300 HU: below the abdomen window.
        assert_eq!(Vec::<f64>::try_from(w.from_ldctiqa(&x).unwrap()).unwrap(), [0.0, 0.0, 1.0]);
        assert!(Window::new(0.0, 0.0).is_err() && Window::new(f64::NAN, 1.0).is_err());
        assert_eq!(serde_json::to_string(&Window::CHEST).unwrap(), "[-600.0,1500.0]");
        assert!(serde_json::from_str::<Window>("[0.0,-1.0]").is_err());
        assert_eq!("HU".parse::<Space>(), Ok(Space::Hu));
        assert!("raw".parse::<Space>().is_err());
    }
}
