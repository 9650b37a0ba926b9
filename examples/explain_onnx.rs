//! Explain an image classifier trained elsewhere: load its ONNX file, predict
//! one image's class, explain it with all nine methods and write a PNG panel.
//!
//! ```text
//! cargo run --release --features onnx,image --example explain_onnx -- --model model.onnx --image picture.jpg
//! cargo run --release --features onnx,image --example explain_onnx -- --model model.onnx --list-layers
//! cargo run --release --features onnx,image --example explain_onnx -- --model model.onnx --image picture.jpg \
//!     --layer NAME --class 3 --out panel.png --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
//! ```
//!
//! - The input layout (NCHW or NHWC) and size come from the graph: the image
//!   (JPEG or PNG) is resized to the model's input size (anti-aliased; kept
//!   as it is when the graph leaves the size free), scaled to [0, 1], and
//!   normalised per channel with `--mean`/`--std` when given (for a graph
//!   that does not normalise its input itself). A one-channel model gets the
//!   mean of R, G and B.
//! - The output is read as logits (softmax gives the probability printed)
//!   unless it already is a probability vector (non-negative, summing to 1).
//! - The explained class is the predicted one unless `--class K`.
//! - Grad-CAM explains `--layer NAME` (a node's or a tensor's name), else
//!   the last 4-D tensor the graph computes with more than one position
//!   (a 1 x 1 map after global pooling would say nothing about where);
//!   `--list-layers` prints the candidates and their shapes.
//! - Guided Backprop needs `Relu` nodes; a graph without one gets a note and
//!   a blank cell instead.
//! - The panel goes to `--out PATH`, by default
//!   `target/explain_onnx/<model>-<image>.png`: the image, then each
//!   method's saliency (sum of |values| over channels, scaled to its 99th
//!   percentile) in inferno over the image.
//!
//! The step and sample counts are small (16 IG steps, 10 SmoothGrad
//! samples, ...) so a small model is explained in seconds; for a full-size
//! network raise them as the methods' docs suggest (IG and Guided IG take
//! 50 to 200 steps, SmoothGrad 25 to 50 samples), at a proportional cost.
//!
//! Any problem (a missing or unreadable file, bytes that are no ONNX model,
//! an operator the evaluator lacks, an unknown layer, a class out of range)
//! is one line on stderr and exit status 1.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use ndarray::{Array2, Array3, ArrayD, Axis, Ix2, Ix3};
use saliency::adapters::candle::Target;
use saliency::adapters::onnx::{InputLayout, LayerInfo, OnnxGraph, OnnxModel};
use saliency::imageops::resize::{AntiAliasing, ResizeOptions, resize};
use saliency::visualize::{self, ColorMap};
use saliency::{
    BlurIg, CoreSaliency, GradCam, GuidedBackprop, GuidedIg, IntegratedGradients, Occlusion, Saliency, SmoothGrad,
    SmoothGradParams, VanillaGradients, Xrai, XraiParameters,
};

/// What to explain, from the command line.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// The picture (JPEG or PNG); not needed with `list_layers`.
    pub image: Option<PathBuf>,
    /// Grad-CAM's layer (a node's or a tensor's name).
    pub layer: Option<String>,
    /// The class to explain (default: the predicted one).
    pub class: Option<usize>,
    /// Where the panel goes.
    pub out: Option<PathBuf>,
    /// Per-channel normalisation, `(x - mean) / std`.
    pub mean: Option<Vec<f32>>,
    /// See `mean`.
    pub std: Option<Vec<f32>>,
    /// Only list the candidate Grad-CAM layers.
    pub list_layers: bool,
}

/// One method's outcome.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Explained in this many seconds.
    Done(f64),
    /// Not run, and why.
    Skipped(String),
}

/// What [`explain`] did.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The predicted class and its probability.
    pub predicted: (usize, f32),
    /// The explained class.
    pub class: usize,
    /// Grad-CAM's layer (a tensor name) and its shape.
    pub layer: (String, Vec<usize>),
    /// Each method's name and outcome, in panel order.
    pub methods: Vec<(&'static str, Outcome)>,
    /// The panel written.
    pub panel: PathBuf,
}

/// An error as one line: the example's messages must fit one line on stderr.
fn one_line(message: impl std::fmt::Display) -> String {
    message.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes, as one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    one_line(message)
}

/// Reads the command line (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut args = args.into_iter();
    let mut opts = Options::default();
    let mut model = None;
    let floats = |flag: &str, value: &str| -> Result<Vec<f32>, String> {
        value
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{flag} needs numbers separated by commas, not {value:?}"))
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--model" => model = Some(PathBuf::from(value("--model")?)),
            "--image" => opts.image = Some(value("--image")?.into()),
            "--layer" => opts.layer = Some(value("--layer")?),
            "--out" => opts.out = Some(value("--out")?.into()),
            "--class" => {
                let v = value("--class")?;
                opts.class = Some(
                    v.parse()
                        .map_err(|_| format!("--class needs a class index, not {v:?}"))?,
                );
            }
            "--mean" => opts.mean = Some(floats("--mean", &value("--mean")?)?),
            "--std" => opts.std = Some(floats("--std", &value("--std")?)?),
            "--list-layers" => opts.list_layers = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --model PATH, --image PATH, --layer NAME, --class K, \
                     --out PATH, --mean M,M,M, --std S,S,S or --list-layers)"
                ));
            }
        }
    }
    opts.model = model.ok_or("--model PATH is required")?;
    if opts.image.is_none() && !opts.list_layers {
        return Err("--image PATH is required (or --list-layers)".into());
    }
    if opts.mean.is_some() != opts.std.is_some() {
        return Err("--mean and --std go together".into());
    }
    Ok(opts)
}

/// The model's image size `(height, width, channels)`, `None` where the
/// graph leaves it free.
fn input_size(model: &OnnxModel<f32>) -> (Option<usize>, Option<usize>, Option<usize>) {
    let dims = &model.graph().input().dims;
    let at = |k: usize| dims.get(k).copied().flatten();
    match model.get_input_layout() {
        InputLayout::Nchw => (at(2), at(3), at(1)),
        InputLayout::Nhwc => (at(1), at(2), at(3)),
    }
}

/// A layer's height times width, in the model's layout.
fn positions(layer: &LayerInfo, layout: InputLayout) -> usize {
    match (layout, layer.shape.as_slice()) {
        (InputLayout::Nchw, [_, _, h, w]) | (InputLayout::Nhwc, [_, h, w, _]) => h * w,
        _ => 0,
    }
}

/// The picture in `path` resized to `(h, w)` (its own size where `None`),
/// scaled to [0, 1], with `channels` channels.
fn load_image(path: &Path, h: Option<usize>, w: Option<usize>, channels: usize) -> Result<Array3<f32>, String> {
    let rgb = visualize::read_image(path).map_err(|e| with_causes(&e))?;
    let (ih, iw, _) = rgb.dim();
    let (h, w) = (h.unwrap_or(ih), w.unwrap_or(iw));
    let float = rgb.mapv(|v| f64::from(v) / 255.0);
    let options = ResizeOptions::default().anti_aliasing(AntiAliasing::On);
    let small = resize(float.view(), &[h, w, 3], &options)
        .map_err(|e| one_line(format!("cannot resize {}: {e}", path.display())))?
        .into_dimensionality::<Ix3>()
        .map_err(one_line)?
        .mapv(|v| v as f32);
    match channels {
        3 => Ok(small),
        1 => Ok(small.mean_axis(Axis(2)).ok_or("empty image")?.insert_axis(Axis(2))),
        c => Err(format!("the model takes {c} channels; this example feeds 1 or 3")),
    }
}

/// The model's output for one image as probabilities.
fn predict(model: &OnnxModel<f32>, image: &Array3<f32>, opts: &Options) -> Result<Vec<f32>, String> {
    let mut x = image.clone();
    if let (Some(mean), Some(std)) = (&opts.mean, &opts.std) {
        for (mut channel, (m, s)) in x.axis_iter_mut(Axis(2)).zip(mean.iter().zip(std)) {
            channel.mapv_inplace(|v| (v - m) / s);
        }
    }
    let (h, w, c) = x.dim();
    let data: Vec<f32> = x.iter().copied().collect();
    let tensor = Tensor::from_vec(data, (1, h, w, c), &Device::Cpu).map_err(one_line)?;
    let tensor = match model.get_input_layout() {
        InputLayout::Nchw => tensor.permute((0, 3, 1, 2)).and_then(|t| t.contiguous()),
        InputLayout::Nhwc => Ok(tensor),
    }
    .map_err(one_line)?;
    let output = model.graph().forward(&tensor).map_err(one_line)?;
    let values = output
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(one_line)?;
    if values.is_empty() {
        return Err("the model's output is empty".into());
    }
    let sum: f32 = values.iter().sum();
    if values.iter().all(|v| (0.0..=1.0).contains(v)) && (sum - 1.0).abs() < 1e-3 {
        return Ok(values);
    }
    let top = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = values.iter().map(|v| (v - top).exp()).collect();
    let total: f32 = exp.iter().sum();
    Ok(exp.iter().map(|e| e / total).collect())
}

/// The nine methods, with step counts for small models (see the module docs).
fn methods(side: usize) -> Vec<(&'static str, Box<dyn CoreSaliency<f32>>)> {
    let window = (side / 8).max(2);
    vec![
        ("Vanilla", Box::new(VanillaGradients::new())),
        (
            "SmoothGrad",
            Box::new(SmoothGrad::new(
                VanillaGradients::new(),
                SmoothGradParams::new().nsamples(10).seed(7).batch_size(10),
            )),
        ),
        ("IG", Box::new(IntegratedGradients::new().steps(16).batch_size(16))),
        ("Guided Backprop", Box::new(GuidedBackprop::new())),
        (
            "Occlusion",
            Box::new(Occlusion::new().size(window).stride(window / 2).batch_size(64)),
        ),
        ("Grad-CAM", Box::new(GradCam::new().three_dims(false))),
        (
            "Blur IG",
            Box::new(BlurIg::new().max_sigma(side as f64 / 4.0).steps(16).batch_size(16)),
        ),
        ("Guided IG", Box::new(GuidedIg::new().steps(16))),
        (
            "XRAI",
            Box::new(Xrai::new().parameters(XraiParameters::new().steps(16)).batch_size(16)),
        ),
    ]
}

/// Saliency mass per pixel: the sum of absolute values over channels.
fn energy(mask: &ArrayD<f32>) -> Result<Array2<f32>, String> {
    Ok(match mask.ndim() {
        3 => mask
            .view()
            .into_dimensionality::<Ix3>()
            .map_err(one_line)?
            .map_axis(Axis(2), |px| px.iter().map(|v| v.abs()).sum()),
        _ => mask
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(one_line)?
            .mapv(f32::abs),
    })
}

/// Nearest-neighbour enlargement, so small images are visible in the panel.
fn enlarge(img: &Array3<u8>, k: usize) -> Array3<u8> {
    let (h, w, c) = img.dim();
    Array3::from_shape_fn((h * k, w * k, c), |(i, j, ch)| img[[i / k, j / k, ch]])
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into())
}

/// Loads the model in `opts.model` and checks the settings that need it.
fn load(opts: &Options) -> Result<OnnxModel<f32>, String> {
    let graph = OnnxGraph::from_file(&opts.model).map_err(|e| match e {
        // Its message already names the file.
        saliency::adapters::onnx::OnnxError::Io { .. } => one_line(e),
        _ => one_line(format!("{}: {e}", opts.model.display())),
    })?;
    let mut model = OnnxModel::<f32>::new(graph, Target::class(0))
        .map_err(|e| one_line(format!("{}: {e}", opts.model.display())))?;
    if let (Some(mean), Some(std)) = (&opts.mean, &opts.std) {
        model = model.normalize(mean, std).map_err(one_line)?;
    }
    Ok(model)
}

/// Prints the candidate Grad-CAM layers (for `--list-layers`).
pub fn list_layers(opts: &Options) -> Result<Vec<LayerInfo>, String> {
    let model = load(opts)?;
    let (h, w, c) = input_size(&model);
    let shape = match (h, w, c, &opts.image) {
        (Some(h), Some(w), Some(c), _) => [h, w, c],
        (_, _, c, Some(path)) => load_image(path, h, w, c.unwrap_or(3))?
            .shape()
            .try_into()
            .map_err(one_line)?,
        _ => return Err("the model's input size is free: give --image so the layers' shapes are known".into()),
    };
    let layers = model.layers_for(&shape).map_err(one_line)?;
    println!("{:<20} {:<20} tensor (node)", "shape", "op");
    for l in &layers {
        let shape = format!("{:?}", l.shape);
        println!("{shape:<20} {:<20} {} ({})", l.op_type, l.tensor, l.node);
    }
    Ok(layers)
}

/// Explains `opts.image` with `opts.model`: prints the prediction and each
/// method's time, writes the panel, returns what it did.
pub fn explain(opts: &Options) -> Result<Explanation, String> {
    let image_path = opts.image.as_ref().ok_or("--image PATH is required")?;
    let mut model = load(opts)?;
    let (h, w, c) = input_size(&model);
    let image = load_image(image_path, h, w, c.unwrap_or(3))?;
    let (h, w, _) = image.dim();

    let layers = model.layers_for(image.shape()).map_err(one_line)?;
    let layer = match &opts.layer {
        Some(name) => {
            model = model.layer(name).map_err(one_line)?;
            let tensor = model.get_layer().unwrap_or_else(|| name.clone());
            let shape = layers
                .iter()
                .find(|l| l.tensor == tensor)
                .map(|l| l.shape.clone())
                .unwrap_or_default();
            (tensor, shape)
        }
        None => {
            let layout = model.get_input_layout();
            let last = layers
                .iter()
                .rev()
                .find(|l| positions(l, layout) > 1)
                .ok_or("the graph computes no 4-D tensor with more than one position: Grad-CAM has no layer")?;
            model = model.layer(&last.tensor).map_err(one_line)?;
            (last.tensor.clone(), last.shape.clone())
        }
    };

    let probs = predict(&model, &image, opts)?;
    let (best, &p) = probs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .ok_or("the model's output is empty")?;
    println!("predicted class {best} (probability {p:.3}, {} classes)", probs.len());
    let class = opts.class.unwrap_or(best);
    if class >= probs.len() {
        return Err(format!(
            "--class {class} is out of range: the model has {} outputs",
            probs.len()
        ));
    }
    println!(
        "explaining class {class} (probability {:.3}); Grad-CAM layer {} {:?}",
        probs[class], layer.0, layer.1
    );
    model.set_target(Target::class(class));

    let zoom = (192 / h.max(w).max(1)).max(1);
    let rgb = visualize::to_rgb8(&image, 0.0, 1.0).map_err(one_line)?;
    let mut cells: Vec<(String, Array3<u8>)> = vec![(format!("class {class}"), enlarge(&rgb, zoom))];
    let mut outcomes = Vec::new();
    let has_relu = model.graph().relu_count() > 0;
    for (name, method) in methods(h.min(w)) {
        if name == "Guided Backprop" && !has_relu {
            let why = "the graph has no Relu node, whose backward rule guided backprop changes".to_string();
            println!("  {name:<16} skipped: {why}");
            cells.push((format!("{name}: no Relu"), Array3::from_elem(rgb.dim(), 128)));
            outcomes.push((name, Outcome::Skipped(why)));
            continue;
        }
        let started = Instant::now();
        let mask = method
            .get_mask(&image, &mut model.as_fn())
            .map_err(|e| one_line(format!("{name}: {e}")))?;
        let seconds = started.elapsed().as_secs_f64();
        println!("  {name:<16} {:>7.2} s", seconds);
        let gray = visualize::grayscale(&energy(&mask)?, 99.0).map_err(one_line)?;
        let colored = visualize::apply_colormap(gray.view(), ColorMap::Inferno).map_err(one_line)?;
        let blended = visualize::overlay(rgb.view(), colored.view(), 0.65).map_err(one_line)?;
        cells.push((name.to_string(), enlarge(&blended, zoom)));
        outcomes.push((name, Outcome::Done(seconds)));
    }

    let path = match &opts.out {
        Some(path) => path.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("explain_onnx")
            .join(format!("{}-{}.png", stem(&opts.model), stem(image_path))),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| one_line(format!("cannot create {}: {e}", dir.display())))?;
    }
    let refs: Vec<(&str, ndarray::ArrayView3<u8>)> = cells.iter().map(|(l, a)| (l.as_str(), a.view())).collect();
    let grid = visualize::panel(&refs, 5).map_err(one_line)?;
    visualize::save_png(grid.view(), &path).map_err(one_line)?;
    println!("panel written to {}", path.display());
    Ok(Explanation {
        predicted: (best, p),
        class,
        layer,
        methods: outcomes,
        panel: path,
    })
}

#[allow(dead_code)]
fn main() {
    let result = parse_args(std::env::args().skip(1)).and_then(|opts| {
        if opts.list_layers {
            list_layers(&opts).map(|_| ())
        } else {
            explain(&opts).map(|_| ())
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
