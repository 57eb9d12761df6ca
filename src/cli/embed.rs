//! `ldctq embed`: SigLIP features of an image, a ready `pixel_values` array, or texts.
use super::Runtime;
use anyhow::{bail, Context};
use ldctq::io;
use ldctq::preprocess::Preprocess;
use ldctq::siglip::Pretrained;
use ldctq::{Space, Window};
use std::path::PathBuf;
use tch::{Kind, Tensor};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["image", "pixel_values", "text"])))]
pub struct Args {
    /// Model folder, Hugging Face cache folder, or a repo id present in the local HF cache.
    #[arg(long)]
    model: String,
    /// An image file (DICOM, TIFF, npy, PNG); every frame is embedded.
    #[arg(long)]
    image: Option<PathBuf>,
    /// A ready N x 3 x H x W float32 .npy array; no preprocessing.
    #[arg(long = "pixel-values")]
    pixel_values: Option<PathBuf>,
    /// A text (repeat for several).
    #[arg(long)]
    text: Vec<String>,
    /// Write the post-LN patch tokens (N x P x D) instead of the pooled image features.
    #[arg(long)]
    tokens: bool,
    /// What the image's values are, unit or hu (needed for npy and integer TIFF; overrides the
    /// file's own space).
    #[arg(long)]
    input: Option<Space>,
    /// HU window "CENTER,WIDTH" or a name (ldctiqa, abdomen, chest, neuro); default: the DICOM's
    /// window tags, else -300,1400.
    #[arg(long, allow_hyphen_values = true)]
    window: Option<Window>,
    #[command(flatten)]
    runtime: Runtime,
    /// Output .npy file (float32).
    #[arg(long)]
    out: PathBuf,
}

/// The preprocessing of an image file, from its format and the command line.
fn preprocess_of(
    slices: &io::Slices,
    input: Option<Space>,
    window: Option<Window>,
    image_size: i64,
) -> anyhow::Result<Preprocess> {
    let Some(input) = input.or(slices.space) else {
        bail!(
            "{}: the meaning of its values is unknown; pass --input unit (values in [0,1]) or --input hu",
            slices.source.display()
        )
    };
    Ok(Preprocess { input, window: window.or(slices.window).unwrap_or(Window::LDCTIQA), image_size })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let at = args.runtime.placement()?;
    let pretrained = Pretrained::open(&args.model)?;
    let _guard = tch::no_grad_guard();
    let features = if !args.text.is_empty() {
        let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
        let ids = pretrained.tokenizer()?.encode_batch(&texts)?;
        pretrained.text(at)?.text_features(&ids)?
    } else {
        let pixel_values = match (&args.image, &args.pixel_values) {
            (Some(path), _) => {
                let slices = io::read_image(path)?;
                let image_size = pretrained.config.vision_config.image_size;
                let pre = preprocess_of(&slices, args.input, args.window, image_size)?;
                pre.pixel_values(&tensor_from_array(slices.pixels.into_dyn())?)?
            }
            (None, Some(path)) => {
                let arr: ndarray::ArrayD<f32> = ndarray_npy::read_npy(path)
                    .with_context(|| format!("{}: expected a float32 N x 3 x H x W array", path.display()))?;
                tensor_from_array(arr)?
            }
            (None, None) => unreachable!("clap requires one input"),
        };
        let vision = pretrained.vision(at)?;
        let pixel_values = pixel_values.to_device(at.device).to_kind(at.kind);
        if args.tokens {
            vision.vision_model.forward(&pixel_values, false, false)?.last_hidden_state
        } else {
            vision.image_features(&pixel_values)?
        }
    };
    write_npy(&args.out, &features)?;
    eprintln!("wrote {} {:?}", args.out.display(), features.size());
    Ok(())
}

pub fn tensor_from_array(arr: ndarray::ArrayD<f32>) -> anyhow::Result<Tensor> {
    let shape: Vec<i64> = arr.shape().iter().map(|&d| d as i64).collect();
    let data: Vec<f32> = arr.iter().copied().collect();
    Ok(Tensor::from_slice(&data).view(shape.as_slice()))
}

pub fn write_npy(path: &std::path::Path, t: &Tensor) -> anyhow::Result<()> {
    let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<f32>::try_from(t.flatten(0, -1))?;
    let arr = ndarray::ArrayD::from_shape_vec(shape, data)?;
    ndarray_npy::write_npy(path, &arr).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
