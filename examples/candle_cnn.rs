//! A small convolutional network built with candle-nn, trained for a few
//! seconds on generated images, then explained through the candle adapter.
//!
//! ```text
//! cargo run --release --example candle_cnn --features candle
//! ```
//!
//! The images are 24 x 24 RGB noise with one bar: horizontal bars are
//! class 0, vertical bars class 1. A network that learned the task should
//! look at the bar, so the summary reports, for every method, the share of
//! the attribution that falls on the bar (the bar covers about 5% of the
//! image), and draws three of the maps.

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Optimizer, VarBuilder, VarMap};
use ndarray::{Array2, Array4, ArrayD, ArrayViewD, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use saliency::adapters::candle::{CandleModel, ForwardContext, Target};
use saliency::adapters::candle_ops;
use saliency::{
    BlurIg, CoreSaliency, GradCam, GuidedBackprop, IntegratedGradients, ModelOutputs, Occlusion, OutputKey, Saliency,
    SmoothGrad, SmoothGradParams, VanillaGradients, visualize,
};

#[path = "common/bars.rs"]
mod bars;

use bars::{CHANNELS, sample};

type BoxResult<T> = Result<T, saliency::BoxError>;

/// The network: conv 3->8, ReLU, max-pool, conv 8->16 (the layer Grad-CAM
/// would explain), ReLU, global mean, linear 16->2. Channels-first, as
/// candle-nn's convolutions want. Every ReLU goes through the context, so
/// the same definition gives ordinary and guided gradients.
struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc: Linear,
}

impl Cnn {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Cnn {
            conv1: candle_nn::conv2d(CHANNELS, 8, 3, cfg, vb.pp("conv1"))?,
            conv2: candle_nn::conv2d(8, 16, 3, cfg, vb.pp("conv2"))?,
            fc: candle_nn::linear(16, 2, vb.pp("fc"))?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardContext) -> candle_core::Result<Tensor> {
        // candle 0.11's own max-pool backward scales each gradient by 1 / (kernel
        // area); the crate's gives the true gradient.
        let h = candle_ops::max_pool2d(&ctx.relu(&self.conv1.forward(x)?)?, 2, 2, [0; 4], false)?;
        let h = ctx.layer(&self.conv2.forward(&h)?)?;
        self.fc.forward(&ctx.relu(&h)?.mean((2, 3))?)
    }
}

/// Replaces candle's initial weights (drawn from an unseeded generator) by
/// seeded ones, so every run trains the same network.
fn seed_weights(varmap: &VarMap, seed: u64) -> BoxResult<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = varmap
        .data()
        .lock()
        .map_err(|_| "the variable map's lock is poisoned")?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
        let std = if dims.len() > 1 {
            (2.0 / fan_in as f64).sqrt()
        } else {
            0.01
        };
        let normal = Normal::new(0.0, std)?;
        let values: Vec<f32> = (0..var.elem_count()).map(|_| normal.sample(&mut rng) as f32).collect();
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

fn to_tensor(batch: &Array4<f32>, device: &Device) -> candle_core::Result<Tensor> {
    let standard = batch.as_standard_layout();
    let data = standard.as_slice().unwrap_or_default();
    Tensor::from_slice(data, batch.shape(), device)?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

fn main() -> BoxResult<()> {
    let device = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(7);

    // Generated data.
    let n_train = 512;
    let samples: Vec<_> = (0..n_train).map(|_| sample(&mut rng)).collect();
    let views: Vec<_> = samples.iter().map(|s| s.0.view()).collect();
    let images = ndarray::concatenate(Axis(0), &views)?;
    let labels: Vec<u32> = samples.iter().map(|s| s.1 as u32).collect();
    let x_train = to_tensor(&images, &device)?;
    let y_train = Tensor::new(labels.as_slice(), &device)?;

    // Training.
    let varmap = VarMap::new();
    let cnn = Cnn::new(VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    seed_weights(&varmap, 1)?;
    let mut optimizer = candle_nn::AdamW::new_lr(varmap.all_vars(), 0.01)?;
    let ctx = ForwardContext::standard();
    let start = Instant::now();
    let batch = 64;
    let epochs = 12;
    for _ in 0..epochs {
        for first in (0..n_train).step_by(batch) {
            let xb = x_train.narrow(0, first, batch)?;
            let yb = y_train.narrow(0, first, batch)?;
            let loss = candle_nn::loss::cross_entropy(&cnn.forward(&xb, &ctx)?, &yb)?;
            optimizer.backward_step(&loss)?;
        }
    }
    let train_time = start.elapsed();
    let accuracy = |x: &Tensor, y: &Tensor| -> candle_core::Result<f32> {
        let predicted = cnn.forward(x, &ctx)?.argmax(1)?;
        predicted.eq(y)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()
    };
    let test: Vec<_> = (0..256).map(|_| sample(&mut rng)).collect();
    let test_views: Vec<_> = test.iter().map(|s| s.0.view()).collect();
    let x_test = to_tensor(&ndarray::concatenate(Axis(0), &test_views)?, &device)?;
    let y_test = Tensor::new(test.iter().map(|s| s.1 as u32).collect::<Vec<_>>().as_slice(), &device)?;
    println!(
        "trained {epochs} epochs on {n_train} images in {:.1} s: train accuracy {:.1}%, test accuracy {:.1}%",
        train_time.as_secs_f64(),
        100.0 * accuracy(&x_train, &y_train)?,
        100.0 * accuracy(&x_test, &y_test)?,
    );

    // One new image to explain: a vertical bar, class 1.
    let (image, class, bar) = loop {
        let s = sample(&mut rng);
        if s.1 == 1 {
            break s;
        }
    };
    let image = image.index_axis_move(Axis(0), 0);

    // The adapter: the model is channels-first, the target is the logit of
    // the image's class.
    let mut model = CandleModel::<f32, _>::new(
        |x: &Tensor, ctx: &ForwardContext| cnn.forward(x, ctx),
        Target::class(class),
    )
    .channels_first(true);
    let calls = std::cell::Cell::new(0_usize);
    let mut counted = |batch: ArrayViewD<'_, f32>, keys: &saliency::ModelRequest<'_>| {
        calls.set(calls.get() + 1);
        Ok(model.call(batch, keys)?)
    };

    let smooth_params = SmoothGradParams::new().nsamples(25).seed(3);
    let methods: Vec<(&str, Box<dyn CoreSaliency<f32>>)> = vec![
        ("Vanilla Gradients", Box::new(VanillaGradients::new())),
        (
            "SmoothGrad (Vanilla)",
            Box::new(SmoothGrad::new(VanillaGradients::new(), smooth_params.clone())),
        ),
        (
            "Integrated Gradients",
            Box::new(IntegratedGradients::new().steps(50).batch_size(25)),
        ),
        ("Guided Backprop", Box::new(GuidedBackprop::new())),
        (
            "SmoothGrad (Guided Backprop)",
            Box::new(SmoothGrad::new(GuidedBackprop::new(), smooth_params)),
        ),
        // The adapter states its layer's layout (channels-first) and
        // Grad-CAM follows it.
        ("Grad-CAM", Box::new(GradCam::new())),
        (
            "Occlusion (4 x 4 windows)",
            Box::new(Occlusion::new().size(4).batch_size(64)),
        ),
        ("Blur IG", Box::new(BlurIg::new().steps(50).batch_size(25))),
    ];
    println!();
    println!(
        "{:<30} {:>10} {:>12} {:>14}",
        "method", "time (ms)", "model calls", "mass on bar"
    );
    let mut drawn = Vec::new();
    for (name, method) in &methods {
        let before = calls.get();
        let start = Instant::now();
        let mask = method.get_mask(image.view(), &mut counted)?;
        let elapsed = start.elapsed();
        println!(
            "{name:<30} {:>10.1} {:>12} {:>13.1}%",
            elapsed.as_secs_f64() * 1e3,
            calls.get() - before,
            100.0 * share_on_bar(&mask, bar),
        );
        if matches!(*name, "Integrated Gradients" | "Guided Backprop" | "Grad-CAM") {
            drawn.push((*name, visualize::grayscale(mask.view(), 99.0)?));
        }
    }

    // What the adapter hands Grad-CAM: the second convolution's values and
    // gradients, channels-first (Grad-CAM above was told so).
    let outputs: ModelOutputs<f32> = model.call(
        image.view().insert_axis(Axis(0)),
        &[OutputKey::ConvolutionLayerValues, OutputKey::ConvolutionOutputGradients],
    )?;
    if let (Some(values), Some(grads)) = (
        outputs.get(OutputKey::ConvolutionLayerValues),
        outputs.get(OutputKey::ConvolutionOutputGradients),
    ) {
        println!(
            "\nexplained convolution layer: values {:?}, gradients {:?} (batch, channels, height, width)",
            values.shape(),
            grads.shape()
        );
    }

    println!(
        "\nthe image (class {class}, bar at rows {}..{}, columns {}..{}):",
        bar.0,
        bar.0 + bar.2,
        bar.1,
        bar.1 + bar.3
    );
    let brightness = image.mean_axis(Axis(2)).ok_or("empty image")?;
    let lo = brightness.iter().cloned().fold(f32::INFINITY, f32::min);
    let hi = brightness.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let picture = brightness.mapv(|v| (v - lo) / (hi - lo).max(f32::EPSILON));
    draw(&picture.into_dimensionality()?);
    for (name, picture) in &drawn {
        println!("\n{name} (grayscale, 99th percentile):");
        draw(picture);
    }
    Ok(())
}

/// The share of the mask's absolute mass (summed over channels) that lies on
/// the bar.
fn share_on_bar(mask: &ArrayD<f32>, (top, left, h, w): (usize, usize, usize, usize)) -> f64 {
    let mut on = 0.0;
    let mut total = 0.0;
    for (idx, v) in mask.indexed_iter() {
        let (i, j) = (idx[0], idx[1]);
        let a = f64::from(v.abs());
        total += a;
        if (top..top + h).contains(&i) && (left..left + w).contains(&j) {
            on += a;
        }
    }
    if total > 0.0 { on / total } else { 0.0 }
}

/// Draws a [0, 1] picture with characters, two per pixel.
fn draw(picture: &Array2<f32>) {
    const RAMP: &[u8] = b" .:-=+*#%@";
    for row in picture.outer_iter() {
        let line: String = row
            .iter()
            .map(|&v| {
                let k = ((v.clamp(0.0, 1.0) * (RAMP.len() - 1) as f32).round() as usize).min(RAMP.len() - 1);
                let c = char::from(RAMP.get(k).copied().unwrap_or(b' '));
                format!("{c}{c}")
            })
            .collect();
        println!("  {line}");
    }
}
