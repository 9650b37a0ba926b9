//! The main job: explain a blastocyst grading model end to end.
//!
//! ```text
//! cargo run --release --features candle,image,metrics --example blastocyst
//! cargo run --release --features candle,image,metrics --example blastocyst -- --image micrograph.jpg
//! cargo run --release --features candle,image,metrics --example blastocyst -- --seed 7
//! cargo run --release --features candle,image,metrics --example blastocyst -- --throughput
//! cargo run --release --features onnx,image,metrics --example blastocyst -- --model grader.onnx [--layer NAME]
//! ```
//!
//! 1. Generates blastocyst micrographs with known anatomy (see `phantom.rs`):
//!    the grade (good or poor) depends only on the inner cell mass (ICM).
//! 2. Trains a small CNN (candle) to grade them and reports held-out accuracy.
//! 3. Explains one good and one poor embryo with nine saliency methods through
//!    the candle adapter, writes one PNG panel per embryo under
//!    `target/blastocyst/`, and judges the maps with `saliency::metrics`:
//!    per method, the share of saliency mass inside the ICM against the ICM's
//!    share of the image (an energy-based pointing game; a method that finds
//!    the ICM scores well above 1x), and the region scores of the ICM, the
//!    trophectoderm and the zona averaged over 16 embryos per grade, with a
//!    count of those under 2x, since one embryo is an anecdote; the deletion
//!    and insertion AUCs (RISE) of each map; the agreement matrix between the
//!    methods (Spearman rank correlation and top-10 % overlap).
//!    With the `metrics` feature it also prints each map's SIC AUC.
//! 4. With `--image PATH` (JPEG or PNG) it also explains a real micrograph
//!    with the trained model.
//!
//! With `--model grader.onnx` (feature `onnx`) it trains nothing: the
//! given ONNX grader grades and is explained instead, on the same held-out
//! embryos (the random stream is drawn as if training), and the same
//! pointing-game table comes out for it. The grader must take what the
//! trained one takes: embryos of 48 x 48 x 3 (H x W x C) values as generated,
//! within [-1, 1] (median about -0.12, 98% of values between -0.45 and
//! 0.48; no further normalisation), which the model receives in the layout
//! its graph declares (NCHW `[B, 3, 48, 48]` as PyTorch exports, or NHWC);
//! and give two outputs, the logits (or probabilities) of good (0) and poor
//! (1). Grad-CAM explains `--layer NAME`, else the last 4-D tensor with more
//! than one position. `tests/fixtures/onnx/grader/model.onnx` is such a
//! grader, trained briefly on a transcription of `phantom.rs` by
//! `tests/reference/onnx/generate.py`.
//!
//! With `--throughput` it instead times explaining the 200 held-out embryos
//! with IG, SmoothGrad and XRAI, all in one call against one at a time
//! (`throughput.rs`).

mod phantom;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Module, Optimizer, VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayViewD, Axis, Ix3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saliency::adapters::candle::{CandleModel, ForwardContext, Target};
// candle 0.11's own max-pool backward scales each gradient by 1 / (kernel
// area); the crate's gives the true gradient (IG's completeness holds).
use saliency::adapters::candle_ops::max_pool2d;
#[cfg(feature = "onnx")]
use saliency::adapters::onnx::{InputLayout, OnnxModel};
use saliency::imageops::resize::{AntiAliasing, ResizeOptions, resize};
use saliency::metrics::{
    Agreement, CurveBaseline, Energy, PerturbationCurve, RegionScore, RegionScoring, RegionSummary, agreement_matrix,
    saliency_energy, summarize_regions,
};
use saliency::visualize::{self, ColorMap};
use saliency::{
    BlurIg, BoxError, CallModelFunction, CoreSaliency, GradCam, GuidedBackprop, GuidedIg, IntegratedGradients,
    ModelOutputs, ModelRequest, Occlusion, OutputKey, Progress, Saliency, SmoothGrad, SmoothGradParams,
    VanillaGradients, Xrai, XraiParameters,
};

use phantom::{Embryo, Grade};

const SIZE: usize = 48;
/// Embryos per grade the pointing game averages over.
const POINTING_EMBRYOS: usize = 16;
/// A map that finds the ICM puts at least this many times the ICM's share of
/// the image inside it.
const FINDS_ICM: f64 = 2.0;

/// One explained grade.
struct Row {
    grade: Grade,
    /// The explained embryo's ICM share of the image.
    icm_share: f64,
    results: Vec<Explained>,
    image: Array3<f32>,
    /// Per region-scored embryo (the explained one first), per method, the
    /// scores of ICM, TE and zona.
    scores: Vec<Vec<Vec<RegionScore>>>,
}

impl Row {
    /// Method `m`'s region scores averaged over the embryos, with the count
    /// of embryos whose ratio is under [`FINDS_ICM`].
    fn summary(&self, m: usize) -> BoxResult<Vec<RegionSummary>> {
        let per_embryo: Vec<Vec<RegionScore>> = self.scores.iter().filter_map(|e| e.get(m).cloned()).collect();
        Ok(summarize_regions(&per_embryo, FINDS_ICM)?)
    }
}

/// The regions the maps are scored against: ICM, trophectoderm, zona.
fn regions(embryo: &Embryo) -> [(&'static str, ArrayView2<'_, bool>); 3] {
    [
        ("ICM", embryo.icm.view()),
        ("TE", embryo.te.view()),
        ("zona", embryo.zona.view()),
    ]
}

/// The k of the top-k % overlaps.
const TOP_PERCENT: f64 = 10.0;

const TRAIN: usize = 960;
const TEST: usize = 200;
const EPOCHS: usize = 26;
const BATCH: usize = 32;
/// AdamW's initial learning rate (1e-2 can kill every ReLU of this small net).
const LR: f64 = 4e-3;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A small CNN: three 3x3 convolutions with ReLU (the first two followed by
/// 2x2 max pooling), global average pooling, a linear layer to two logits
/// (good, poor). Input [B, 3, SIZE, SIZE]; the last convolution (SIZE / 4
/// on a side) is the layer Grad-CAM explains.
struct Grader {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    head: Linear,
}

impl Grader {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Grader {
            conv1: candle_nn::conv2d(3, 8, 3, cfg, vb.pp("conv1"))?,
            conv2: candle_nn::conv2d(8, 16, 3, cfg, vb.pp("conv2"))?,
            conv3: candle_nn::conv2d(16, 32, 3, cfg, vb.pp("conv3"))?,
            head: candle_nn::linear(32, 2, vb.pp("head"))?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardContext) -> candle_core::Result<Tensor> {
        let x = max_pool2d(&ctx.relu(&self.conv1.forward(x)?)?, 2, 2, [0; 4], false)?;
        let x = max_pool2d(&ctx.relu(&self.conv2.forward(&x)?)?, 2, 2, [0; 4], false)?;
        let x = ctx.layer(&ctx.relu(&self.conv3.forward(&x)?)?)?;
        self.head.forward(&x.mean(3)?.mean(2)?)
    }
}

/// The grader the embryos are explained with: the one trained here, or one
/// loaded from an ONNX file (`--model`).
enum Classifier {
    Trained(Grader),
    #[cfg(feature = "onnx")]
    Onnx(Box<OnnxModel<f32>>),
}

impl Classifier {
    /// The logits (good, poor) of a [B, 3, H, W] batch.
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Classifier::Trained(grader) => grader.forward(x, &ForwardContext::standard()),
            #[cfg(feature = "onnx")]
            Classifier::Onnx(model) => {
                let x = match model.get_input_layout() {
                    InputLayout::Nchw => x.clone(),
                    InputLayout::Nhwc => x.permute((0, 2, 3, 1))?.contiguous()?,
                };
                model
                    .graph()
                    .forward(&x)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
            }
        }
    }

    /// Runs `f` with this grader as a model explaining `grade`'s score.
    fn with_model<R>(&mut self, grade: Grade, f: impl FnOnce(&mut dyn CallModelFunction<f32>) -> R) -> R {
        match self {
            Classifier::Trained(grader) => {
                let forward = |x: &Tensor, ctx: &ForwardContext| grader.forward(x, ctx);
                let mut model = CandleModel::new(forward, grade_score(grade)).channels_first(true);
                f(&mut model.as_fn())
            }
            #[cfg(feature = "onnx")]
            Classifier::Onnx(model) => {
                model.set_target(grade_score(grade));
                f(&mut model.as_fn())
            }
        }
    }
}

/// Loads the ONNX grader in `path`, checks it takes the generated embryos
/// and chooses its Grad-CAM layer (`layer`, else the last 4-D tensor with
/// more than one position).
#[cfg(feature = "onnx")]
fn load_grader(path: &Path, layer: Option<&str>) -> BoxResult<(OnnxModel<f32>, String)> {
    let model = OnnxModel::<f32>::from_file(path, grade_score(Grade::Good))
        .map_err(|e| format!("cannot use {}: {e}", path.display()))?;
    let layout = model.get_input_layout();
    let layers = model
        .layers_for(&[SIZE, SIZE, 3])
        .map_err(|e| format!("{} does not take {SIZE} x {SIZE} x 3 embryos: {e}", path.display()))?;
    let tensor = match layer {
        Some(name) => name.to_string(),
        None => layers
            .iter()
            .rev()
            .find(|l| match (layout, l.shape.as_slice()) {
                (InputLayout::Nchw, [_, _, h, w]) | (InputLayout::Nhwc, [_, h, w, _]) => h * w > 1,
                _ => false,
            })
            .map(|l| l.tensor.clone())
            .ok_or_else(|| format!("{}: no 4-D layer for Grad-CAM", path.display()))?,
    };
    let model = model.layer(&tensor).map_err(|e| format!("{}: {e}", path.display()))?;
    let description = format!("{layout:?} input, Grad-CAM layer {tensor}");
    Ok((model, description))
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("  {msg:<28} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// A batch of embryos as a [B, 3, H, W] tensor.
fn to_tensor(embryos: &[Embryo], device: &Device) -> candle_core::Result<Tensor> {
    let views: Vec<_> = embryos.iter().map(|e| e.image.view()).collect();
    let stacked = ndarray::stack(Axis(0), &views).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let data: Vec<f32> = stacked.iter().copied().collect();
    Tensor::from_vec(data, (embryos.len(), SIZE, SIZE, 3), device)?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

/// Redraws the initial weights from the example's seeded generator: candle
/// draws them on the CPU from an unseeded one, which made every run train a
/// different model. Weights: Kaiming normal, N(0, 2 / fan_in); biases:
/// uniform in +-1 / sqrt(fan_in), fan_in being the layer's inputs per output.
fn seed_weights(varmap: &VarMap, device: &Device, rng: &mut ChaCha8Rng) -> BoxResult<()> {
    use rand::RngExt;
    use rand_distr::{Distribution, Normal};
    let vars = varmap.data().lock().map_err(|_| "the variable map is poisoned")?;
    // In name order: the map's own order changes from run to run.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let layer = name.rsplit_once('.').map_or(name.as_str(), |(layer, _)| layer);
        let weight = vars.get(&format!("{layer}.weight")).unwrap_or(var);
        let fan_in = weight.dims().iter().skip(1).product::<usize>().max(1) as f64;
        let n = var.elem_count();
        let values: Vec<f32> = if name.ends_with(".weight") {
            let normal = Normal::new(0.0, (2.0 / fan_in).sqrt())?;
            (0..n).map(|_| normal.sample(rng) as f32).collect()
        } else {
            let bound = 1.0 / fan_in.sqrt();
            (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect()
        };
        var.set(&Tensor::from_vec(values, var.dims(), device)?)?;
    }
    Ok(())
}

/// The untrained grader and the training embryos: every random draw
/// training makes.
fn draw_training(device: &Device, rng: &mut ChaCha8Rng) -> BoxResult<(Grader, VarMap, Vec<Embryo>)> {
    let varmap = VarMap::new();
    let model = Grader::new(VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    seed_weights(&varmap, device, rng)?;
    let grade = |k: usize| if k.is_multiple_of(2) { Grade::Good } else { Grade::Poor };
    let train: Vec<Embryo> = (0..TRAIN).map(|k| phantom::embryo(SIZE, grade(k), rng)).collect();
    Ok((model, varmap, train))
}

fn train(device: &Device, rng: &mut ChaCha8Rng) -> BoxResult<(Grader, VarMap)> {
    let (model, varmap, train) = draw_training(device, rng)?;
    let mut opt = candle_nn::AdamW::new(
        varmap.all_vars(),
        candle_nn::ParamsAdamW {
            lr: LR,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;
    let batches = TRAIN / BATCH;
    let pb = bar(EPOCHS * batches, "training the grader");
    let ctx = ForwardContext::standard();
    for epoch in 0..EPOCHS {
        // Linear decay to a tenth: a high rate early, a steady finish.
        opt.set_learning_rate(LR * (1.0 - 0.9 * epoch as f64 / EPOCHS as f64));
        // A fixed reshuffle per epoch: the order rotates by a prime stride.
        let order: Vec<usize> = (0..TRAIN).map(|k| (k * 389 + epoch * 17) % TRAIN).collect();
        for b in 0..batches {
            let idx = &order[b * BATCH..(b + 1) * BATCH];
            let batch: Vec<Embryo> = idx
                .iter()
                .map(|&k| Embryo {
                    image: train[k].image.clone(),
                    icm: Array2::default((0, 0)),
                    te: Array2::default((0, 0)),
                    zona: Array2::default((0, 0)),
                    grade: train[k].grade,
                    degenerating: train[k].degenerating,
                })
                .collect();
            let x = to_tensor(&batch, device)?;
            let y = Tensor::from_vec(
                batch.iter().map(|e| e.grade.label() as u32).collect::<Vec<_>>(),
                BATCH,
                device,
            )?;
            let loss = candle_nn::loss::cross_entropy(&model.forward(&x, &ctx)?, &y)?;
            opt.backward_step(&loss)?;
            pb.inc(1);
        }
    }
    pb.finish();
    Ok((model, varmap))
}

/// The grader's probabilities (good, poor) for each embryo.
fn predict(model: &Classifier, embryos: &[Embryo], device: &Device) -> BoxResult<Vec<[f32; 2]>> {
    let logits = model.logits(&to_tensor(embryos, device)?)?;
    if logits.dims() != [embryos.len(), 2] {
        return Err(format!(
            "the grader gives outputs of shape {:?}; two per embryo are needed",
            logits.dims()
        )
        .into());
    }
    let probs = candle_nn::ops::softmax(&logits, 1)?.to_vec2::<f32>()?;
    Ok(probs.into_iter().map(|p| [p[0], p[1]]).collect())
}

/// The grade with the larger probability.
fn verdict(probs: &[f32; 2]) -> usize {
    usize::from(probs[1] > probs[0])
}

/// The nine methods, configured for `SIZE x SIZE` inputs.
///
/// `field` is the baseline of the path methods and the occlusion value: a
/// flat field at the image's median brightness, i.e. the microscope's empty
/// background (the all-zero image is mid-grey here, brighter than the
/// blastocoel). XRAI uses it too instead of its black and white pair: on a
/// micrograph, "no embryo" is the empty field, not a black or white frame.
fn methods(field: &Array3<f32>) -> Vec<(&'static str, Box<dyn CoreSaliency<f32>>)> {
    let level = field.first().copied().unwrap_or(0.0);
    vec![
        ("Vanilla", Box::new(VanillaGradients::new())),
        (
            "SmoothGrad",
            Box::new(SmoothGrad::new(
                VanillaGradients::new(),
                SmoothGradParams::new().nsamples(25).seed(7),
            )),
        ),
        (
            "IG (integrated)",
            Box::new(
                IntegratedGradients::new()
                    .steps(50)
                    .batch_size(25)
                    .baseline(field.clone()),
            ),
        ),
        ("Guided Backprop", Box::new(GuidedBackprop::new())),
        // A window about the size of a good ICM's half, every other pixel.
        (
            "Occlusion",
            Box::new(
                Occlusion::new()
                    .size(SIZE / 6)
                    .stride(2)
                    .value(f64::from(level))
                    .batch_size(128),
            ),
        ),
        ("Grad-CAM", Box::new(GradCam::new().three_dims(false))),
        // The reference's max_sigma of 50 is for 224-pixel images.
        (
            "Blur IG",
            Box::new(BlurIg::new().max_sigma(SIZE as f64 / 4.0).steps(50).batch_size(25)),
        ),
        ("Guided IG", Box::new(GuidedIg::new().steps(50).baseline(field.clone()))),
        (
            "XRAI",
            Box::new(
                Xrai::new()
                    .parameters(XraiParameters::new().steps(50))
                    .batch_size(25)
                    .baselines([field.clone()]),
            ),
        ),
    ]
}

/// A flat image at the median brightness of `image`.
fn empty_field(image: &Array3<f32>) -> Array3<f32> {
    let mut values: Vec<f32> = image.iter().copied().collect();
    values.sort_by(f32::total_cmp);
    let median = values.get(values.len() / 2).copied().unwrap_or(0.0);
    Array3::from_elem(image.raw_dim(), median)
}

/// Draws the outline of `mask` (enlarged `k` times) into `picture`.
fn outline(picture: &mut Array3<u8>, mask: &Array2<bool>, k: usize, color: [u8; 3]) {
    let (h, w) = mask.dim();
    let at =
        |i: isize, j: isize| i >= 0 && j >= 0 && (i as usize) < h && (j as usize) < w && mask[[i as usize, j as usize]];
    for i in 0..h as isize {
        for j in 0..w as isize {
            if !at(i, j) {
                continue;
            }
            // Sides of the pixel that face the outside, drawn one pixel thick.
            let sides = [(-1, 0), (1, 0), (0, -1), (0, 1)];
            for (di, dj) in sides {
                if at(i + di, j + dj) {
                    continue;
                }
                for t in 0..k {
                    let (y, x) = match (di, dj) {
                        (-1, _) => (i as usize * k, j as usize * k + t),
                        (1, _) => (i as usize * k + k - 1, j as usize * k + t),
                        (_, -1) => (i as usize * k + t, j as usize * k),
                        _ => (i as usize * k + t, j as usize * k + k - 1),
                    };
                    for (c, v) in color.iter().enumerate() {
                        if let Some(p) = picture.get_mut([y, x, c]) {
                            *p = *v;
                        }
                    }
                }
            }
        }
    }
}

/// Each method's region scores on `embryo` (ICM, TE, zona), and the time
/// spent scoring (the maps aside).
fn method_scores(embryo: &Embryo, model: &mut dyn CallModelFunction<f32>) -> BoxResult<(Vec<Vec<RegionScore>>, f64)> {
    let scoring = RegionScoring::new().top_percent(TOP_PERCENT);
    let mut judging = 0.0;
    let scores = methods(&empty_field(&embryo.image))
        .into_iter()
        .map(|(_, method)| {
            let mask = method.get_mask(&embryo.image, &mut *model)?;
            let started = Instant::now();
            let scores = scoring.score(&mask, &regions(embryo))?;
            judging += started.elapsed().as_secs_f64();
            Ok(scores)
        })
        .collect::<BoxResult<_>>()?;
    Ok((scores, judging))
}

/// Each method's deletion and insertion AUCs (RISE) on `image`, with the
/// grader's probability of `grade` as the score: 48 steps of 48 pixels, one
/// model call per curve. Deletion fills removed pixels with the image's
/// mean (near the empty field); insertion starts from the image blurred
/// with sigma 5, as RISE.
fn curve_aucs(
    grader: &Classifier,
    device: &Device,
    image: &Array3<f32>,
    grade: Grade,
    results: &[Explained],
) -> BoxResult<Vec<(f64, f64)>> {
    let mut model = |batch: ArrayViewD<'_, f32>, _: &ModelRequest<'_>| -> Result<ModelOutputs<f32>, BoxError> {
        let n = batch.shape().first().copied().unwrap_or(0);
        let data: Vec<f32> = batch.iter().copied().collect();
        let x = Tensor::from_vec(data, (n, SIZE, SIZE, 3), device)?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let probs = candle_nn::ops::softmax(&grader.logits(&x)?, 1)?
            .narrow(1, grade.label(), 1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array1::from(probs)))
    };
    let deletion = PerturbationCurve::deletion()
        .baseline(CurveBaseline::Mean)
        .steps(SIZE)
        .batch_size(SIZE + 1);
    let insertion = PerturbationCurve::insertion().steps(SIZE).batch_size(SIZE + 1);
    results
        .iter()
        .map(|r| {
            let d = deletion.compute(image, r.heat.view(), &mut model)?.auc;
            let i = insertion.compute(image, r.heat.view(), &mut model)?.auc;
            Ok((d, i))
        })
        .collect()
}

/// A short label per method for the agreement matrix.
fn short(name: &str) -> &'static str {
    match name {
        "Vanilla" => "Van",
        "SmoothGrad" => "SG",
        "IG (integrated)" => "IG",
        "Guided Backprop" => "GBP",
        "Occlusion" => "Occ",
        "Grad-CAM" => "GCAM",
        "Blur IG" => "BlurIG",
        "Guided IG" => "GIG",
        "XRAI" => "XRAI",
        _ => "?",
    }
}

/// Nearest-neighbour enlargement, so small images are visible in the panel.
fn enlarge(img: &Array3<u8>, k: usize) -> Array3<u8> {
    let (h, w, c) = img.dim();
    Array3::from_shape_fn((h * k, w * k, c), |(i, j, ch)| img[[i / k, j / k, ch]])
}

/// How many times the panels enlarge the images.
const ZOOM: usize = 4;
/// The ICM outline's colour in the panels.
const ICM_COLOR: [u8; 3] = [0, 230, 120];

struct Explained {
    name: &'static str,
    seconds: f64,
    /// Saliency mass per pixel.
    heat: Array2<f64>,
}

/// Runs every method on one image, writes its panel, returns the ICM shares.
fn explain(
    label: &str,
    image: &Array3<f32>,
    icm: Option<&Array2<bool>>,
    model: &mut dyn CallModelFunction<f32>,
    out: &Path,
) -> BoxResult<Vec<Explained>> {
    let rgb = visualize::to_rgb8(image, -0.6, 0.8)?;
    let with_outline = |picture: &Array3<u8>| {
        let mut big = enlarge(picture, ZOOM);
        if let Some(icm) = icm {
            outline(&mut big, icm, ZOOM, ICM_COLOR);
        }
        big
    };
    let mut cells: Vec<(String, Array3<u8>)> = vec![("image".into(), enlarge(&rgb, ZOOM))];
    if icm.is_some() {
        cells.push(("ICM (truth)".into(), with_outline(&rgb)));
    }
    let mut results = Vec::new();
    for (name, method) in methods(&empty_field(image)) {
        let pb = bar(1, name);
        let started = Instant::now();
        let mut report = |p: Progress| {
            pb.set_length(p.total as u64);
            pb.set_position(p.done as u64);
        };
        let mask = method.get_mask_with_progress(image, &mut *model, &mut report)?;
        let seconds = started.elapsed().as_secs_f64();
        pb.finish_with_message(format!("{name} ({seconds:.1} s)"));
        let heat = saliency_energy(&mask, Energy::AbsSum)?;
        let gray = visualize::grayscale(&heat, 99.0)?;
        let colored = visualize::apply_colormap(gray.view(), ColorMap::Inferno)?;
        cells.push((
            name.into(),
            with_outline(&visualize::overlay(rgb.view(), colored.view(), 0.65)?),
        ));
        if name == "XRAI" {
            let top = visualize::top_percent_mask(heat.view(), 30.0)?;
            cells.push((
                "XRAI top 30%".into(),
                with_outline(&visualize::masked_image(rgb.view(), top.view(), [0, 0, 0])?),
            ));
        }
        results.push(Explained { name, seconds, heat });
    }
    let refs: Vec<(&str, ndarray::ArrayView3<u8>)> = cells.iter().map(|(l, a)| (l.as_str(), a.view())).collect();
    let grid = visualize::panel(&refs, 4)?;
    let path = out.join(format!("{label}.png"));
    visualize::save_png(grid.view(), &path)?;
    println!("  panel written to {}", path.display());
    Ok(results)
}

/// A real micrograph, resized to the model's input and matched to the
/// generated images' brightness statistics.
fn load_micrograph(path: &Path) -> BoxResult<Array3<f32>> {
    let rgb = visualize::read_image(path)?;
    let float = rgb.mapv(|v| f64::from(v) / 255.0);
    let options = ResizeOptions::default().anti_aliasing(AntiAliasing::On);
    let small = resize(float.view(), &[SIZE, SIZE, 3], &options)?;
    let n = small.len() as f64;
    let mean = small.sum() / n;
    let std = (small.mapv(|v| (v - mean).powi(2)).sum() / n).sqrt().max(1e-6);
    Ok(small
        .mapv(|v| ((v - mean) / std * 0.2 - 0.05) as f32)
        .into_dimensionality::<Ix3>()?)
}

/// The SIC AUC (Softmax Information Curve of the XRAI paper, through
/// `saliency::metrics`) of each map: reveal the most salient pixels of a
/// blurred copy step by step and watch the grader's probability of `grade`
/// come back; a larger area means a more faithful map. One random mask for
/// all methods, as the metric asks. A map the metric cannot score (the
/// reference's skip conditions, e.g. a probability below 0.8) gives its
/// reason instead.
#[cfg(feature = "metrics")]
fn sic_aucs(
    grader: &Classifier,
    device: &Device,
    image: &Array3<f32>,
    grade: Grade,
    results: &[Explained],
    rng: &mut ChaCha8Rng,
) -> BoxResult<Vec<Result<f64, String>>> {
    use saliency::BoxError;
    use saliency::metrics::{PicMetric, generate_random_mask};
    // The generated images span about [-1, 1]; PIC works on 8-bit images.
    let pixels = image.mapv(|v| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8);
    let random_mask = generate_random_mask(SIZE, SIZE, 0.01, rng)?;
    let predict = |batch: ndarray::ArrayViewD<'_, u8>| -> Result<Vec<f64>, BoxError> {
        let n = batch.shape().first().copied().unwrap_or(0);
        let data: Vec<f32> = batch.iter().map(|&v| f32::from(v) / 127.5 - 1.0).collect();
        let x = Tensor::from_vec(data, (n, SIZE, SIZE, 3), device)?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let logits = grader.logits(&x)?;
        let probs = candle_nn::ops::softmax(&logits, 1)?.narrow(1, grade.label(), 1)?;
        Ok(probs
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect())
    };
    let metric = PicMetric::new();
    Ok(results
        .iter()
        .map(|r| {
            metric
                .compute(&pixels, r.heat.view(), random_mask.view(), predict)
                .map(|result| result.auc)
                .map_err(|e| e.to_string())
        })
        .collect())
}

/// The score every method explains: the logit of `grade` minus the other
/// logit, i.e. "what makes this embryo `grade` rather than the other grade",
/// asked of each embryo for the grade the grader gave it.
fn grade_score(grade: Grade) -> Target {
    let (this, other) = match grade {
        Grade::Good => (0, 1),
        Grade::Poor => (1, 0),
    };
    Target::select(move |logits: &Tensor| logits.narrow(1, this, 1)?.sub(&logits.narrow(1, other, 1)?))
}

/// The grader in `path` (`--model`), with the onnx feature.
#[cfg(feature = "onnx")]
fn onnx_classifier(path: &Path, layer: Option<&str>) -> BoxResult<Classifier> {
    let (model, description) = load_grader(path, layer)?;
    println!("1. Grading with {} ({description}).", path.display());
    Ok(Classifier::Onnx(Box::new(model)))
}

#[cfg(not(feature = "onnx"))]
fn onnx_classifier(_path: &Path, _layer: Option<&str>) -> BoxResult<Classifier> {
    Err("--model needs the onnx feature: cargo run --release --features onnx,image --example blastocyst -- --model PATH".into())
}

fn main() {
    if let Err(e) = run() {
        // Each cause once: an error's message does not repeat its source.
        eprintln!("error: {e}");
        let mut source = e.source();
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
        std::process::exit(1);
    }
}

fn run() -> BoxResult<()> {
    let mut args = std::env::args().skip(1);
    let mut user_image: Option<PathBuf> = None;
    // Everything random (embryos, initial weights, masks) comes from this seed.
    let mut seed = 2026;
    let mut throughput_only = false;
    let mut onnx_grader: Option<PathBuf> = None;
    let mut layer: Option<String> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--throughput" => throughput_only = true,
            "--image" => user_image = Some(args.next().ok_or("--image needs a path")?.into()),
            "--model" => onnx_grader = Some(args.next().ok_or("--model needs a path")?.into()),
            "--layer" => layer = Some(args.next().ok_or("--layer needs a name")?),
            "--seed" => {
                let value = args.next().ok_or("--seed needs a number")?;
                seed = value
                    .parse()
                    .map_err(|_| format!("--seed needs a number, not {value:?}"))?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --image PATH, --seed N, --model PATH, --layer NAME or --throughput)"
                )
                .into());
            }
        }
    }
    if layer.is_some() && onnx_grader.is_none() {
        return Err("--layer names a layer of the grader given with --model".into());
    }
    if throughput_only && onnx_grader.is_some() {
        return Err("--throughput times the grader trained here; it does not take --model".into());
    }
    // Fail early on a missing file, before minutes of training.
    if let Some(path) = &user_image {
        load_micrograph(path).map_err(|e| format!("cannot use {}: {e}", path.display()))?;
    }
    let started = Instant::now();
    let device = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let (mut grader, _varmap) = match &onnx_grader {
        None => {
            println!("1. Training a grader on {TRAIN} generated blastocysts ({SIZE} x {SIZE}).");
            let (grader, varmap) = train(&device, &mut rng)?;
            println!("   trained in {:.0} s", started.elapsed().as_secs_f64());
            (Classifier::Trained(grader), Some(varmap))
        }
        Some(path) => {
            // The held-out embryos come after training's draws in the
            // random stream: draw them alike, so both graders meet the
            // same embryos.
            draw_training(&device, &mut rng)?;
            (onnx_classifier(path, layer.as_deref())?, None)
        }
    };
    let test: Vec<Embryo> = (0..TEST)
        .map(|k| {
            phantom::embryo(
                SIZE,
                if k.is_multiple_of(2) { Grade::Good } else { Grade::Poor },
                &mut rng,
            )
        })
        .collect();
    let predicted = predict(&grader, &test, &device)?;
    let correct = predicted
        .iter()
        .zip(&test)
        .filter(|(p, e)| verdict(p) == e.grade.label())
        .count();
    println!(
        "   held-out accuracy: {correct}/{TEST} = {:.1}%\n",
        100.0 * correct as f64 / TEST as f64
    );

    if throughput_only && let Classifier::Trained(trained) = &grader {
        let forward = |x: &Tensor, ctx: &ForwardContext| trained.forward(x, ctx);
        return throughput::run(&forward, &test);
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("blastocyst");
    std::fs::create_dir_all(&out)?;

    println!("2. Explaining one good and one poor held-out embryo (graded right, probability >= 0.8); every method");
    println!("   explains the score of the grade it was given: its logit minus the other grade's.");
    let mut table: Vec<Row> = Vec::new();
    // Seconds spent judging the maps (region scores, agreement, deletion and
    // insertion), the maps themselves aside.
    let mut judging = 0.0;
    for grade in [Grade::Good, Grade::Poor] {
        // The held-out embryos of this grade that the grader grades right
        // with a probability of at least 0.8 (what the SIC metric asks of an
        // image), in test order; the first gets a panel, the first few the
        // pointing game.
        let chosen: Vec<usize> = (0..TEST)
            .filter(|&k| test[k].grade == grade && predicted[k][grade.label()] >= 0.8)
            .take(POINTING_EMBRYOS)
            .collect();
        let &k = chosen.first().ok_or_else(|| {
            format!(
                "the grader grades no held-out {} embryo right with probability 0.8 or more \
                 (for a grader given with --model: does it take the input the docs describe?)",
                grade.name()
            )
        })?;
        let embryo = &test[k];
        let icm_share = embryo.icm.iter().filter(|&&m| m).count() as f64 / embryo.icm.len().max(1) as f64;
        let kind = match (grade, embryo.degenerating) {
            (Grade::Good, _) => "",
            (Grade::Poor, true) => ", dark cells in a packed mass",
            (Grade::Poor, false) => ", loose cells",
        };
        println!(
            " {} embryo (test #{k}{kind}), ICM = {:.1}% of the image",
            grade.name(),
            100.0 * icm_share
        );
        let (results, scores) = grader.with_model(grade, |model| -> BoxResult<_> {
            let results = explain(grade.name(), &embryo.image, Some(&embryo.icm), model, &out)?;
            let started = Instant::now();
            let scoring = RegionScoring::new().top_percent(TOP_PERCENT);
            let first = results
                .iter()
                .map(|r| scoring.score_energy(r.heat.view(), &regions(embryo)))
                .collect::<Result<Vec<_>, _>>()?;
            judging += started.elapsed().as_secs_f64();
            let mut scores = vec![first];
            let pb = bar(chosen.len().saturating_sub(1), "region scores on more embryos");
            for &other in chosen.iter().skip(1) {
                let (more, seconds) = method_scores(&test[other], model)?;
                scores.push(more);
                judging += seconds;
                pb.inc(1);
            }
            pb.finish_and_clear();
            Ok((results, scores))
        })?;
        table.push(Row {
            grade,
            icm_share,
            results,
            image: embryo.image.clone(),
            scores,
        });
    }

    let pointed = table.iter().map(|t| t.scores.len()).min().unwrap_or(0);
    println!("\n3. Pointing game: the share of each map's saliency mass (sum of |values| over channels)");
    println!("   that falls inside the true ICM, and in brackets that share divided by the ICM's share of");
    println!("   the image. 1.0x is what a map spread evenly over the image scores; a method that finds");
    println!("   the ICM scores well above it ({FINDS_ICM}x or more). 'mean': that ratio averaged over the first");
    println!("   {pointed} embryos of the grade graded right (the explained one included, both kinds of poor");
    println!("   embryo); '<{FINDS_ICM}x': how many of them score under {FINDS_ICM}x.");
    #[cfg(feature = "metrics")]
    let sic: Vec<Vec<Result<f64, String>>> = {
        println!("   SIC: the area under the Softmax Information Curve of each map (higher is more faithful;");
        println!("   '-' where the metric cannot score the map, reasons below).");
        table
            .iter()
            .map(|t| sic_aucs(&grader, &device, &t.image, t.grade, &t.results, &mut rng))
            .collect::<BoxResult<_>>()?
    };
    println!();
    print!(
        "   {:<16} {:>25} {:>25}",
        "method", "good embryo    mean <2x", "poor embryo    mean <2x"
    );
    #[cfg(feature = "metrics")]
    print!(" {:>9} {:>9}", "SIC good", "SIC poor");
    println!(" {:>8}", "time");
    for m in 0..table[0].results.len() {
        let cell = |t: &Row| -> BoxResult<String> {
            // The explained embryo's ICM score, then the mean over embryos.
            let icm = t
                .scores
                .first()
                .and_then(|e| e.get(m))
                .and_then(|r| r.first())
                .ok_or("no ICM score")?;
            let summary = t.summary(m)?;
            let icm_summary = summary.first().ok_or("no ICM summary")?;
            Ok(format!(
                "{:>5.1}% ({:>4.1}x) {:>5.1}x {:>3}",
                100.0 * icm.mass_share,
                icm.ratio,
                icm_summary.mean_ratio,
                icm_summary.under_threshold
            ))
        };
        let seconds = table[0].results[m].seconds + table[1].results[m].seconds;
        print!(
            "   {:<16} {:>25} {:>25}",
            table[0].results[m].name,
            cell(&table[0])?,
            cell(&table[1])?
        );
        #[cfg(feature = "metrics")]
        for per_embryo in &sic {
            match per_embryo.get(m) {
                Some(Ok(auc)) => print!(" {auc:>9.3}"),
                _ => print!(" {:>9}", "-"),
            }
        }
        println!(" {seconds:>6.1} s");
    }
    println!(
        "   {:<16} {:>25} {:>25}",
        "(ICM share)",
        format!("{:.1}%", 100.0 * table[0].icm_share),
        format!("{:.1}%", 100.0 * table[1].icm_share)
    );
    #[cfg(feature = "metrics")]
    for (t, per_embryo) in table.iter().zip(&sic) {
        let mut reasons: Vec<&String> = per_embryo.iter().filter_map(|r| r.as_ref().err()).collect();
        reasons.dedup();
        for reason in reasons {
            println!("   SIC {} embryo not scored: {reason}", t.grade.name());
        }
    }

    let judge_started = Instant::now();
    let curves: Vec<Vec<(f64, f64)>> = table
        .iter()
        .map(|t| curve_aucs(&grader, &device, &t.image, t.grade, &t.results))
        .collect::<BoxResult<_>>()?;
    // A constant map (which ranks nothing) has no rank correlation: its
    // embryo's matrix then gives the reason instead.
    let agreements: Vec<Result<Agreement, String>> = table
        .iter()
        .map(|t| {
            let views: Vec<ArrayView2<'_, f64>> = t.results.iter().map(|r| r.heat.view()).collect();
            agreement_matrix(&views, TOP_PERCENT).map_err(|e| e.to_string())
        })
        .collect();
    judging += judge_started.elapsed().as_secs_f64();

    println!("\n4. Region scores (saliency::metrics::RegionScoring), averaged over the {pointed} embryos per grade:");
    println!("   'x': a region's share of the map's mass over its share of the image (1.0x: spread evenly)");
    println!("   for the ICM, the trophectoderm (TE) and the zona; 'hit': how often the map's maximum lies in");
    println!("   the ICM (pointing game); 'IoU': the ICM against the map's top {TOP_PERCENT}% of pixels.");
    println!();
    println!(
        "   {:<16} {:>33}   {:>33}",
        "method", "good: ICM    TE  zona  hit  IoU", "poor: ICM    TE  zona  hit  IoU"
    );
    for m in 0..table[0].results.len() {
        print!("   {:<16}", table[0].results[m].name);
        for t in &table {
            let summary = t.summary(m)?;
            let ratio = |r: usize| summary.get(r).map_or(f64::NAN, |s| s.mean_ratio);
            let icm = summary.first().ok_or("no ICM summary")?;
            print!(
                " {:>10.1}x {:>4.1}x {:>4.1}x {:>4.0}% {:>4.2}  ",
                ratio(0),
                ratio(1),
                ratio(2),
                100.0 * icm.hit_rate,
                icm.mean_top_iou
            );
        }
        println!();
    }
    let area = |t: &Row, r: usize| {
        let shares: Vec<f64> = t
            .scores
            .iter()
            .filter_map(|e| e.first()?.get(r))
            .map(|s| s.area_share)
            .collect();
        100.0 * shares.iter().sum::<f64>() / shares.len().max(1) as f64
    };
    println!(
        "   {:<16} {:>10.1}% {:>4.1}% {:>4.1}%                 {:>5.1}% {:>4.1}% {:>4.1}%",
        "(mean area)",
        area(&table[0], 0),
        area(&table[0], 1),
        area(&table[0], 2),
        area(&table[1], 0),
        area(&table[1], 1),
        area(&table[1], 2)
    );

    println!("\n5. Deletion and insertion (RISE, saliency::metrics::PerturbationCurve) on the explained embryos:");
    println!("   the grader's probability of the grade as the map's pixels are removed (filled with the image's");
    println!("   mean) or inserted (into the image blurred with sigma 5), most salient first, 48 steps; the area");
    println!("   under each curve over the fraction of pixels. Deletion: lower is more faithful; insertion: higher.");
    println!();
    println!(
        "   {:<16} {:>10} {:>10} {:>10} {:>10}",
        "method", "del good", "ins good", "del poor", "ins poor"
    );
    for m in 0..table[0].results.len() {
        print!("   {:<16}", table[0].results[m].name);
        for per_grade in &curves {
            let (d, i) = per_grade.get(m).copied().unwrap_or((f64::NAN, f64::NAN));
            print!(" {d:>10.3} {i:>10.3}");
        }
        println!();
    }

    println!("\n6. Agreement between methods on the explained embryos (saliency::metrics::agreement_matrix):");
    println!("   below the diagonal the Spearman rank correlation of the maps' mass, above it the overlap (IoU)");
    println!("   of their top {TOP_PERCENT}% of pixels.");
    let names: Vec<&str> = table[0].results.iter().map(|r| short(r.name)).collect();
    for (t, agreement) in table.iter().zip(&agreements) {
        println!("\n   {} embryo", t.grade.name());
        let agreement = match agreement {
            Ok(agreement) => agreement,
            Err(reason) => {
                println!("   no matrix: {reason}");
                continue;
            }
        };
        print!("   {:<7}", "");
        for name in &names {
            print!(" {name:>6}");
        }
        println!();
        for (i, name) in names.iter().enumerate() {
            print!("   {name:<7}");
            for j in 0..names.len() {
                if i == j {
                    print!(" {:>6}", "-");
                } else if i > j {
                    print!(" {:>6.2}", agreement.spearman[[i, j]]);
                } else {
                    print!(" {:>6.2}", agreement.top_iou[[i, j]]);
                }
            }
            println!();
        }
    }
    println!(
        "\n   Judging the maps (region scores on every embryo, agreement, deletion and insertion) took {judging:.2} s."
    );

    if let Some(path) = user_image {
        println!("\n7. Explaining {}", path.display());
        let image = load_micrograph(&path)?;
        let input = to_tensor(
            &[Embryo {
                image: image.clone(),
                icm: Array2::default((0, 0)),
                te: Array2::default((0, 0)),
                zona: Array2::default((0, 0)),
                grade: Grade::Good,
                degenerating: false,
            }],
            &device,
        )?;
        let class = grader.logits(&input)?.argmax(1)?.to_vec1::<u32>()?[0] as usize;
        let grade = if class == 0 { Grade::Good } else { Grade::Poor };
        println!("   the grader calls it {}", grade.name());
        println!("   (a grader trained on generated embryos: its verdict on a real micrograph is no grade,");
        println!("   the maps show what this model looks at)");
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        grader.with_model(grade, |model| {
            explain(&format!("user-{stem}"), &image, None, model, &out)
        })?;
    }
    println!("\nPanels: the image, the true ICM outlined in green (on every map too), then each method's");
    println!("saliency (sum of |values| over channels, scaled to its 99th percentile) in inferno over the");
    println!("image: black = none, yellow = most; last, the 30% of the image XRAI ranks first.");
    println!(
        "\nDone in {:.0} s. Panels are in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
