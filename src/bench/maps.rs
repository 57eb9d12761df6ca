//! Quality maps of a benchmark ([`BenchOptions::maps`](super::BenchOptions::maps)): where each method
//! (the input, the reference, each denoiser) loses quality, by every [`MapMethod`]. Drawn as
//! `maps_METHOD.png` (the first [`PANEL_IMAGES`] images, one column per benchmarked method) and
//! `mean_map_METHOD.png` (the mean map of each benchmarked method over all images, resized to the
//! model's size, over the mean input image).
use crate::criterion::{MapMethod, QualityCriterion};
use crate::error::Result;
use tch::{Device, Kind, Tensor};

/// Images drawn in the map panels.
pub const PANEL_IMAGES: usize = 4;

/// The mean map of one benchmarked method by one map method.
#[derive(Debug, Clone)]
pub struct MeanMap {
    pub method: String,
    pub map: MapMethod,
    /// Sum of the maps resized to `size` x `size`, row-major.
    pub sum: Vec<f64>,
    pub count: usize,
}

/// One image's map, at the image's size.
#[derive(Debug, Clone)]
pub struct ImageMap {
    /// Index in [`BenchRun::images`](super::BenchRun::images).
    pub image: usize,
    pub method: String,
    pub map: MapMethod,
    pub h: usize,
    pub w: usize,
    /// The image in [0, 1] and its map, row-major.
    pub gray: Vec<f32>,
    pub values: Vec<f32>,
}

/// The maps a benchmark collects.
#[derive(Debug, Clone, Default)]
pub struct BenchMaps {
    /// Side of the mean maps (the model's image size).
    pub size: i64,
    pub means: Vec<MeanMap>,
    /// Sum of the input images resized to `size` x `size` (the mean maps' underlay), and their count.
    pub input_sum: Vec<f64>,
    pub input_count: usize,
    /// The maps of the first [`PANEL_IMAGES`] images.
    pub panels: Vec<ImageMap>,
}

fn to_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(
        t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_contiguous()?.f_view(-1)?,
    )?)
}

fn to_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(to_vec(t)?.into_iter().map(|v| v as f32).collect())
}

impl BenchMaps {
    pub fn new(size: i64) -> Self {
        Self { size, ..Self::default() }
    }

    /// Adds the maps of `method`'s images `y` ((k, 1, H, W) in [0, 1]; `model_space` is how the
    /// criterion sees them), which are the images `indices` of the run, each conditioned on its
    /// anatomy prompt when `anatomies` (k entries) are given.
    pub fn add(
        &mut self,
        criterion: &dyn QualityCriterion,
        method: &str,
        y: &Tensor,
        model_space: &Tensor,
        indices: &[usize],
        anatomies: Option<&[Option<String>]>,
    ) -> Result<()> {
        let s = self.size;
        let resize = |t: &Tensor| -> Result<Vec<f64>> {
            let mean = t
                .f_to_kind(Kind::Double)?
                .f_upsample_bilinear2d([s, s], false, None, None)?
                .f_sum_dim_intlist(0, false, Kind::Double)?;
            to_vec(&mean)
        };
        let add_into = |sum: &mut Vec<f64>, values: Vec<f64>| {
            sum.resize(values.len(), 0.0);
            sum.iter_mut().zip(values).for_each(|(a, b)| *a += b);
        };
        if method == "input" {
            add_into(&mut self.input_sum, resize(y)?);
            self.input_count += indices.len();
        }
        let (h, w) = (y.size()[2], y.size()[3]);
        for map in MapMethod::ALL {
            let maps = match anatomies {
                Some(each) => criterion.quality_map_anatomies(model_space, map, each)?,
                None => criterion.quality_map(model_space, map)?,
            }
            .f_unsqueeze(1)?; // (k, 1, H, W)
            let at = match self.means.iter().position(|m| m.method == method && m.map == map) {
                Some(i) => i,
                None => {
                    self.means.push(MeanMap { method: method.into(), map, sum: Vec::new(), count: 0 });
                    self.means.len() - 1
                }
            };
            add_into(&mut self.means[at].sum, resize(&maps)?);
            self.means[at].count += indices.len();
            for (j, &image) in indices.iter().enumerate().filter(|(_, &i)| i < PANEL_IMAGES) {
                self.panels.push(ImageMap {
                    image,
                    method: method.into(),
                    map,
                    h: h as usize,
                    w: w as usize,
                    gray: to_f32(&y.get(j as i64))?,
                    values: to_f32(&maps.get(j as i64))?,
                });
            }
        }
        Ok(())
    }

    /// Draws `maps_METHOD.png` and `mean_map_METHOD.png` for every map method into `dir`; `names` are
    /// the run's image names.
    #[cfg(feature = "plots")]
    pub fn draw(
        &self,
        dir: &std::path::Path,
        names: &[String],
    ) -> crate::plots::PlotResult<Vec<std::path::PathBuf>> {
        use crate::plots::{map_grid, MapPanel};
        let mut files = Vec::new();
        let label = MapMethod::quantity;
        // One colour scale per figure: the range of all its maps.
        let mut draw = |stem: String, title: String, panels: &[MapPanel], cols: usize, map: MapMethod| {
            let range = panels
                .iter()
                .flat_map(|p| p.map.iter().map(|&v| v as f64))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let path = dir.join(format!("{stem}_{}.png", map.name()));
            map_grid(&path, &title, panels, cols, 256, range, label(map))?;
            files.push(path);
            crate::plots::PlotResult::Ok(())
        };
        for map in MapMethod::ALL {
            let mut cells: Vec<&ImageMap> = self.panels.iter().filter(|p| p.map == map).collect();
            let methods: Vec<&str> =
                self.means.iter().filter(|m| m.map == map).map(|m| m.method.as_str()).collect();
            if cells.is_empty() || methods.is_empty() {
                continue;
            }
            cells.sort_by_key(|p| (p.image, methods.iter().position(|&m| m == p.method)));
            let panels: Vec<MapPanel> = cells
                .iter()
                .map(|p| MapPanel {
                    title: format!("{} | {}", names.get(p.image).map_or("", |s| s.as_str()), p.method),
                    gray: p.gray.clone(),
                    map: p.values.clone(),
                    h: p.h,
                    w: p.w,
                })
                .collect();
            let title = format!("{} quality maps of the first images (high: quality lost)", map.name());
            draw("maps".into(), title, &panels, methods.len(), map)?;

            let n = self.input_count.max(1) as f64;
            let gray: Vec<f32> = self.input_sum.iter().map(|v| (v / n) as f32).collect();
            let s = self.size as usize;
            let panels: Vec<MapPanel> = self
                .means
                .iter()
                .filter(|m| m.map == map)
                .map(|m| MapPanel {
                    title: format!("{} ({} images)", m.method, m.count),
                    gray: if gray.len() == s * s { gray.clone() } else { vec![0.0; s * s] },
                    map: m.sum.iter().map(|v| (v / m.count.max(1) as f64) as f32).collect(),
                    h: s,
                    w: s,
                })
                .collect();
            let title = format!("Mean {} map per method (high: quality lost)", map.name());
            draw("mean_map".into(), title, &panels, panels.len(), map)?;
        }
        Ok(files)
    }
}
