//! `ldctq._ldctq`: the Python extension over the ldctq library. The public API is the `ldctq` Python
//! package (`ldctq/__init__.py`), which wraps these functions; this layer only translates.
//!
//! Tensors cross as torch tensors through tch's Python bridge (`pyo3-tch`): a `torch.Tensor` argument
//! is the same storage seen as a `tch::Tensor` (no copy), and returned tensors are new torch tensors.
//! Library errors become the exception classes of `ldctq.errors`, chosen by the error's kind; the GIL
//! is released while the library works.
use ldctq::data::Dataset;
use ldctq::ensemble::Ensemble;
use ldctq::placement::{device_name, parse_device, parse_kind};
use ldctq::{io, metrics, MapMethod, Placement, QualityCriterion, Scorer, Space, Window};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use pyo3_tch::PyTensor;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tch::{Kind, Tensor};

/// A library error on its way to Python.
struct Error(ldctq::Error);

impl From<ldctq::Error> for Error {
    fn from(e: ldctq::Error) -> Self {
        Self(e)
    }
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Self(e.into())
    }
}

impl From<ldctq::window::InvalidWindow> for Error {
    fn from(e: ldctq::window::InvalidWindow) -> Self {
        Self(e.into())
    }
}

impl From<metrics::MetricError> for Error {
    fn from(e: metrics::MetricError) -> Self {
        Self(e.into())
    }
}

/// The name of an error's kind: the key of `ldctq.errors.BY_KIND`.
fn kind_of(e: &ldctq::Error) -> &'static str {
    use ldctq::Error as E;
    match e {
        E::Config { .. } => "Config",
        E::Checkpoint { .. } => "Checkpoint",
        E::NotFound(_) => "NotFound",
        E::Tokenizer { .. } => "Tokenizer",
        E::InvalidInput(_) => "InvalidInput",
        E::Unsupported(_) => "Unsupported",
        E::Read(_) => "Read",
        E::Metric(_) => "Metric",
        E::Interrupted(_) => "Interrupted",
        E::Io { .. } => "Io",
        E::OutOfMemory(_) => "OutOfMemory",
        E::Torch(_) => "Torch",
    }
}

impl From<Error> for PyErr {
    fn from(Error(e): Error) -> Self {
        let message = e.to_string();
        Python::with_gil(|py| {
            let class = py
                .import("ldctq.errors")
                .and_then(|m| m.getattr("BY_KIND"))
                .and_then(|by_kind| Ok(by_kind.get_item(kind_of(&e))?.downcast_into::<PyType>()?));
            match class {
                Ok(class) => PyErr::from_type(class, message),
                Err(err) => {
                    PyRuntimeError::new_err(format!("{message} (and ldctq.errors is unusable: {err})"))
                }
            }
        })
    }
}

type Result<T> = std::result::Result<T, Error>;

/// `float32`, `float64`, `bfloat16`, `float16` (torch's names) or the CLI's `f32`, `bf16`, `f16`.
fn kind_of_name(name: &str) -> Result<Kind> {
    match name {
        "float64" | "f64" | "double" => Ok(Kind::Double),
        other => Ok(parse_kind(other)?),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Double => "float64",
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "float32",
    }
}

fn space_of_name(name: &str) -> Result<Space> {
    name.parse::<Space>().map_err(|e| Error(ldctq::Error::InvalidInput(e.to_string())))
}

fn window_of(window: Option<(f64, f64)>) -> Result<Window> {
    Ok(match window {
        Some((center, width)) => Window::new(center, width)?,
        None => Window::LDCTIQA,
    })
}

/// A loaded model folder or ensemble folder (`ldctq.QualityModel` wraps it). Calls are serialized.
#[pyclass(module = "ldctq._ldctq", frozen)]
struct Model {
    scorer: Mutex<Scorer>,
    path: PathBuf,
}

impl Model {
    /// The scorer; a panic in an earlier call (already raised as an exception) poisons the mutex, and
    /// the scorer's state is only written after its fallible work succeeds, so it is reused.
    fn lock(&self) -> MutexGuard<'_, Scorer> {
        self.scorer.lock().unwrap_or_else(|poisoned| {
            self.scorer.clear_poison();
            poisoned.into_inner()
        })
    }
}

#[pymethods]
impl Model {
    #[new]
    fn new(py: Python<'_>, path: PathBuf, device: &str, dtype: &str) -> PyResult<Self> {
        let at = Placement { device: parse_device(device).map_err(Error)?, kind: kind_of_name(dtype)? };
        let scorer = py.allow_threads(|| Scorer::load(&path, at)).map_err(Error)?;
        Ok(Self { scorer: Mutex::new(scorer), path })
    }

    /// Scores (N) of images (N, H, W) or (N, 1, H, W), without a graph.
    fn score(&self, py: Python<'_>, images: PyTensor) -> PyResult<PyTensor> {
        let images = images.0;
        let scores = py.allow_threads(move || tch::no_grad(|| self.lock().score(&images))).map_err(Error)?;
        Ok(PyTensor(scores))
    }

    /// Scores (N) and the vector-Jacobian product with `upstream` (N) (ones when None): a tensor of
    /// the images' shape, dtype and device.
    #[pyo3(signature = (images, upstream=None))]
    fn score_and_grad(
        &self,
        py: Python<'_>,
        images: PyTensor,
        upstream: Option<PyTensor>,
    ) -> PyResult<(PyTensor, PyTensor)> {
        let (images, upstream) = (images.0, upstream.map(|u| u.0));
        let (scores, grad) = py
            .allow_threads(move || tch::with_grad(|| self.lock().score_and_grad(&images, upstream.as_ref())))
            .map_err(Error)?;
        Ok((PyTensor(scores), PyTensor(grad)))
    }

    /// Quality maps (N, H, W) of the images, high where quality is lost: `method` "intrinsic" (4 - the
    /// patch scores, upsampled), "gradient" (smoothed |d score / d image|), "occlusion" (the score
    /// gained if the 3 x 3 patches around each patch looked like their surroundings) or "smoothing"
    /// (the first-order score gained by smoothing each neighbourhood); docs/quality-maps.md.
    fn quality_map(&self, py: Python<'_>, images: PyTensor, method: &str) -> PyResult<PyTensor> {
        let method: MapMethod = method.parse().map_err(Error)?;
        let images = images.0;
        let maps = py
            .allow_threads(move || tch::with_grad(|| self.lock().quality_map(&images, method)))
            .map_err(Error)?;
        Ok(PyTensor(maps))
    }

    /// What the model computes and expects.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let scorer = self.lock();
        let (info, config, at) = (scorer.info(), scorer.config(), scorer.placement());
        let d = PyDict::new(py);
        d.set_item("name", info.name)?;
        d.set_item("path", &self.path)?;
        d.set_item(
            "members",
            match &*scorer {
                Scorer::Single(_) => 1,
                Scorer::Ensemble(e) => e.members.len(),
            },
        )?;
        d.set_item("higher_is_better", info.higher_is_better)?;
        d.set_item("score_range", info.score_range)?;
        d.set_item("input", info.input.to_string())?;
        d.set_item("window", (info.window.center, info.window.width))?;
        d.set_item("image_size", info.image_size)?;
        d.set_item("device", device_name(at.device))?;
        d.set_item("dtype", kind_name(at.kind))?;
        d.set_item("prompt", &config.prompt)?;
        d.set_item("film_strength", config.film_strength)?;
        let mode = match config.prompt_mode {
            ldctq::model::PromptMode::Text => "text",
            ldctq::model::PromptMode::Learned => "learned",
        };
        d.set_item("prompt_mode", mode)?;
        d.set_item("anatomies", &config.anatomies)?;
        d.set_item("anatomy", scorer.anatomy())?;
        Ok(d)
    }

    fn set_prompt(&self, py: Python<'_>, prompt: &str) -> PyResult<()> {
        Ok(py.allow_threads(|| self.lock().set_prompt(prompt)).map_err(Error)?)
    }

    #[pyo3(signature = (anatomy=None))]
    fn set_anatomy(&self, anatomy: Option<&str>) -> PyResult<()> {
        Ok(self.lock().set_anatomy(anatomy).map_err(Error)?)
    }

    fn set_film_strength(&self, s: f64) -> PyResult<()> {
        Ok(self.lock().set_film_strength(s).map_err(Error)?)
    }

    /// Encoder layers per activation-checkpointing segment of `score_and_grad` (0: off).
    fn set_activation_checkpointing(&self, layers_per_segment: usize) {
        self.lock().set_activation_checkpointing(layers_per_segment)
    }
}

/// The frames of an image file, (F, H, W) float32, and the name of their space: in `space` ("unit" or
/// "hu", HU and [0, 1] related by `window`) when given, else as stored (the file's space, or
/// `raw_as` for npy and integer TIFF, else None).
#[pyfunction]
#[pyo3(signature = (path, space=None, raw_as=None, window=None))]
fn read_image(
    py: Python<'_>,
    path: PathBuf,
    space: Option<&str>,
    raw_as: Option<&str>,
    window: Option<(f64, f64)>,
) -> PyResult<(PyTensor, Option<String>)> {
    let raw_as = raw_as.map(space_of_name).transpose()?;
    let space = space.map(space_of_name).transpose()?;
    let window = window_of(window)?;
    let read = || -> Result<(Tensor, Option<Space>)> {
        let slices = io::read_image(&path).map_err(ldctq::Error::from)?;
        match space {
            Some(to) => Ok((ldctq::data::frames(&slices, raw_as, to, window)?, Some(to))),
            None => {
                let stored = slices.space.or(raw_as);
                let to = stored.unwrap_or(Space::Unit); // no conversion when the space is unknown
                Ok((ldctq::data::frames(&slices, Some(to), to, window)?, stored))
            }
        }
    };
    let (frames, space) = py.allow_threads(read)?;
    Ok((PyTensor(frames), space.map(|s| s.to_string())))
}

/// Frame `frame` of an image file as (H, W) float32 in `space` (what `ldctq bench` reads).
#[pyfunction]
#[pyo3(signature = (path, frame, space, raw_as=None, window=None))]
fn load_frame(
    py: Python<'_>,
    path: PathBuf,
    frame: usize,
    space: &str,
    raw_as: Option<&str>,
    window: Option<(f64, f64)>,
) -> PyResult<PyTensor> {
    let (space, raw_as, window) =
        (space_of_name(space)?, raw_as.map(space_of_name).transpose()?, window_of(window)?);
    let x =
        py.allow_threads(|| ldctq::data::load_frame(&path, frame, raw_as, space, window)).map_err(Error)?;
    Ok(PyTensor(x))
}

/// Values of space `source` in space `target` (HU and [0, 1] related by `window`).
#[pyfunction]
#[pyo3(signature = (x, source, target, window=None))]
fn convert(x: PyTensor, source: &str, target: &str, window: Option<(f64, f64)>) -> PyResult<PyTensor> {
    let (from, to) = (space_of_name(source)?, space_of_name(target)?);
    Ok(PyTensor(window_of(window)?.convert(&x.0, from, to).map_err(Error::from)?))
}

/// The image files of a file or folder, sorted.
#[pyfunction]
fn list_images(path: PathBuf) -> PyResult<Vec<PathBuf>> {
    Ok(io::list_images(&path).map_err(|e| Error(e.into()))?)
}

/// A data set (LDCTIQA2023 layout, CSV manifest or image folder): its root and its images, each
/// (path, frame, label or None, reference or None).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn open_dataset(path: PathBuf) -> PyResult<(PathBuf, Vec<(PathBuf, usize, Option<f64>, Option<PathBuf>)>)> {
    let data = Dataset::open(&path).map_err(Error)?;
    let samples = data.samples.into_iter().map(|s| (s.path, s.frame, s.label, s.reference)).collect();
    Ok((data.root, samples))
}

/// Writes `dir/ensemble.json` naming the member model folders.
#[pyfunction]
fn write_ensemble(dir: PathBuf, members: Vec<PathBuf>) -> PyResult<()> {
    Ok(Ensemble::write(&dir, &members).map_err(Error)?)
}

#[pyfunction]
fn plcc(pred: Vec<f64>, label: Vec<f64>) -> PyResult<f64> {
    Ok(metrics::plcc(&pred, &label).map_err(Error::from)?)
}

#[pyfunction]
fn srocc(pred: Vec<f64>, label: Vec<f64>) -> PyResult<f64> {
    Ok(metrics::srocc(&pred, &label).map_err(Error::from)?)
}

#[pyfunction]
fn krocc(pred: Vec<f64>, label: Vec<f64>) -> PyResult<f64> {
    Ok(metrics::krocc(&pred, &label).map_err(Error::from)?)
}

/// Every metric of `ldctq eval`: plcc, srocc, krocc, overall, mae, rmse, n.
#[pyfunction]
fn evaluate<'py>(py: Python<'py>, pred: Vec<f64>, label: Vec<f64>) -> PyResult<Bound<'py, PyDict>> {
    let r = metrics::evaluate(&pred, &label).map_err(Error::from)?;
    let d = PyDict::new(py);
    for (k, v) in [
        ("plcc", r.plcc),
        ("srocc", r.srocc),
        ("krocc", r.krocc),
        ("overall", r.overall),
        ("mae", r.mae),
        ("rmse", r.rmse),
    ] {
        d.set_item(k, v)?;
    }
    d.set_item("n", r.n)?;
    Ok(d)
}

#[pymodule]
fn _ldctq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(read_image, m)?)?;
    m.add_function(wrap_pyfunction!(load_frame, m)?)?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add_function(wrap_pyfunction!(list_images, m)?)?;
    m.add_function(wrap_pyfunction!(open_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(write_ensemble, m)?)?;
    m.add_function(wrap_pyfunction!(plcc, m)?)?;
    m.add_function(wrap_pyfunction!(srocc, m)?)?;
    m.add_function(wrap_pyfunction!(krocc, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    Ok(())
}
