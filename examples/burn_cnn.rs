//! A small convolutional network written with burn's tensor operations,
//! trained for a few seconds on generated images, then explained with all
//! nine methods through the burn adapter; the maps go to a PNG panel.
//!
//! ```text
//! cargo run --release --example burn_cnn --features burn,image
//! ```
//!
//! The images are 24 x 24 RGB noise with one bar: horizontal bars are
//! class 0, vertical bars class 1. A network that learned the task should
//! look at the bar, so the summary reports, for every method, the share of
//! the attribution that falls on the bar (the bar covers about 5% of the
//! image). The panel is written to `target/burn_cnn/panel.png`, or to the
//! path given as the first argument.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array2, Array3, Array4, ArrayD, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use saliency::adapters::burn::{BurnModel, ForwardContext, Target};
use saliency::visualize::{self, ColorMap};
use saliency::{
    BlurIg, CoreSaliency, GradCam, GuidedBackprop, GuidedIg, IntegratedGradients, Occlusion, Saliency, SmoothGrad,
    SmoothGradParams, VanillaGradients, Xrai, XraiParameters,
};

#[path = "common/bars.rs"]
mod bars;

use bars::{CHANNELS, sample};

type BoxResult<T> = Result<T, saliency::BoxError>;

/// The network: conv 3->8, ReLU, max-pool, conv 8->16 (the layer Grad-CAM
/// explains), ReLU, global mean, linear 16->2. Channels-first, as burn's
/// `conv2d` wants. Every ReLU goes through the context, so the same
/// definition gives ordinary and guided gradients.
#[derive(Clone)]
struct Cnn {
    params: Vec<Tensor<4>>,
}

impl Cnn {
    /// Shapes of conv1, its bias, conv2, its bias, the head and its bias,
    /// each stored as a rank-4 tensor so one list holds them all.
    const SHAPES: [[usize; 4]; 6] = [
        [8, CHANNELS, 3, 3],
        [1, 1, 1, 8],
        [16, 8, 3, 3],
        [1, 1, 1, 16],
        [1, 1, 16, 2],
        [1, 1, 1, 2],
    ];

    /// He-initialised weights from a seeded generator, so every run trains
    /// the same network.
    fn new(seed: u64, device: &Device) -> BoxResult<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = Vec::new();
        for (k, shape) in Self::SHAPES.iter().enumerate() {
            let n: usize = shape.iter().product();
            let std = if k % 2 == 0 {
                (2.0 / (n / shape[0].max(shape[3]).max(1)) as f64).sqrt()
            } else {
                0.01
            };
            let normal = Normal::new(0.0, std)?;
            let values: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng) as f32).collect();
            params.push(Tensor::from_data(TensorData::new(values, *shape), device));
        }
        Ok(Cnn { params })
    }

    fn forward(&self, x: Tensor<4>, ctx: &ForwardContext) -> Tensor<2> {
        let p = &self.params;
        let same = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let h = conv2d(x, p[0].clone(), Some(p[1].clone().flatten::<1>(0, 3)), same.clone());
        let h = max_pool2d(ctx.relu(h), MaxPoolOptions::new([2, 2]));
        let h = ctx.layer(conv2d(h, p[2].clone(), Some(p[3].clone().flatten::<1>(0, 3)), same));
        let pooled = ctx.relu(h).mean_dim(3).mean_dim(2).flatten::<2>(1, 3);
        pooled.matmul(p[4].clone().flatten::<2>(0, 2)) + p[5].clone().flatten::<2>(0, 2)
    }
}

/// Channels-last images to the channels-first tensor the network takes.
fn to_tensor(batch: &Array4<f32>, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = batch.iter().copied().collect();
    Tensor::<4>::from_data(TensorData::new(values, batch.shape().to_vec()), device).permute([0, 3, 1, 2])
}

/// Adam on plain tensors: burn's optimisers live in a crate this example
/// does not pull in, and a few lines do the same for six tensors.
fn train(cnn: &mut Cnn, images: &Array4<f32>, labels: &[usize], device: &Device) -> BoxResult<()> {
    let autodiff = device.clone().autodiff();
    let (lr, beta1, beta2, eps) = (0.01_f32, 0.9_f32, 0.999_f32, 1e-8_f32);
    let mut m: Vec<Tensor<4>> = cnn.params.iter().map(Tensor::zeros_like).collect();
    let mut v: Vec<Tensor<4>> = m.clone();
    let ctx = ForwardContext::standard();
    let batch = 64;
    let mut step = 0;
    for _epoch in 0..12 {
        for first in (0..labels.len()).step_by(batch) {
            step += 1;
            let last = (first + batch).min(labels.len());
            let xb = to_tensor(
                &images.slice(ndarray::s![first..last, .., .., ..]).to_owned(),
                &autodiff,
            );
            let mut onehot = vec![0.0_f32; (last - first) * 2];
            for (r, &c) in labels[first..last].iter().enumerate() {
                onehot[r * 2 + c] = 1.0;
            }
            let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [last - first, 2]), &autodiff);
            let leaves: Vec<Tensor<4>> = cnn.params.iter().map(|p| p.clone().autodiff().require_grad()).collect();
            let model = Cnn { params: leaves.clone() };
            let logits = model.forward(xb, &ctx);
            let loss = (log_softmax(logits, 1) * onehot).sum().neg() / (last - first) as f32;
            let grads = loss.backward();
            let (c1, c2) = (1.0 - beta1.powi(step), 1.0 - beta2.powi(step));
            for (k, leaf) in leaves.iter().enumerate() {
                let Some(g) = leaf.grad(&grads) else { continue };
                m[k] = m[k].clone() * beta1 + g.clone() * (1.0 - beta1);
                v[k] = v[k].clone() * beta2 + g.clone() * g * (1.0 - beta2);
                let update = (m[k].clone() / c1) / ((v[k].clone() / c2).sqrt() + eps) * lr;
                cnn.params[k] = cnn.params[k].clone() - update;
            }
        }
    }
    Ok(())
}

fn accuracy(cnn: &Cnn, images: &Array4<f32>, labels: &[usize], device: &Device) -> BoxResult<f64> {
    let logits = cnn.forward(to_tensor(images, device), &ForwardContext::standard());
    let predicted = logits
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| format!("{e:?}"))?;
    let right = predicted
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p as usize == **l)
        .count();
    Ok(right as f64 / labels.len() as f64)
}

/// The nine methods, with step counts for a small model.
fn methods() -> Vec<(&'static str, Box<dyn CoreSaliency<f32>>)> {
    vec![
        ("Vanilla", Box::new(VanillaGradients::new())),
        (
            "SmoothGrad",
            Box::new(SmoothGrad::new(
                VanillaGradients::new(),
                SmoothGradParams::new().nsamples(25).seed(3).batch_size(25),
            )),
        ),
        ("IG", Box::new(IntegratedGradients::new().steps(50).batch_size(25))),
        ("Guided Backprop", Box::new(GuidedBackprop::new())),
        ("Occlusion", Box::new(Occlusion::new().size(4).stride(2).batch_size(64))),
        ("Grad-CAM", Box::new(GradCam::new().three_dims(false))),
        (
            "Blur IG",
            Box::new(BlurIg::new().max_sigma(6.0).steps(50).batch_size(25)),
        ),
        ("Guided IG", Box::new(GuidedIg::new().steps(50))),
        (
            "XRAI",
            Box::new(Xrai::new().parameters(XraiParameters::new().steps(25)).batch_size(25)),
        ),
    ]
}

fn main() -> BoxResult<()> {
    let device = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(7);

    let n_train = 512;
    let samples: Vec<_> = (0..n_train).map(|_| sample(&mut rng)).collect();
    let views: Vec<_> = samples.iter().map(|s| s.0.view()).collect();
    let images = ndarray::concatenate(Axis(0), &views)?;
    let labels: Vec<usize> = samples.iter().map(|s| s.1).collect();

    let mut cnn = Cnn::new(1, &device)?;
    let start = Instant::now();
    train(&mut cnn, &images, &labels, &device)?;
    let train_time = start.elapsed();
    let test: Vec<_> = (0..256).map(|_| sample(&mut rng)).collect();
    let test_views: Vec<_> = test.iter().map(|s| s.0.view()).collect();
    let test_images = ndarray::concatenate(Axis(0), &test_views)?;
    let test_labels: Vec<usize> = test.iter().map(|s| s.1).collect();
    println!(
        "trained 12 epochs on {n_train} images in {:.1} s: train accuracy {:.1}%, test accuracy {:.1}%",
        train_time.as_secs_f64(),
        100.0 * accuracy(&cnn, &images, &labels, &device)?,
        100.0 * accuracy(&cnn, &test_images, &test_labels, &device)?,
    );

    // One new image to explain: a vertical bar, class 1.
    let (image, class, bar) = loop {
        let s = sample(&mut rng);
        if s.1 == 1 {
            break s;
        }
    };
    let image = image.index_axis_move(Axis(0), 0);

    // The adapter: batches of H x W x C images are rank 4, the network is
    // channels-first, the target is the logit of the image's class.
    let mut model = BurnModel::<f32, _, 4>::new(
        |x: Tensor<4>, ctx: &ForwardContext| cnn.forward(x, ctx),
        Target::class(class),
    )
    .channels_first(true);

    let zoom = 8;
    let rgb = visualize::to_rgb8(&image, 0.0, 1.0)?;
    let mut cells: Vec<(String, Array3<u8>)> = vec![(format!("class {class}"), enlarge(&rgb, zoom))];
    println!("\n{:<16} {:>10} {:>12}", "method", "time (ms)", "mass on bar");
    for (name, method) in methods() {
        let start = Instant::now();
        let mask = method.get_mask(image.view(), &mut model.as_fn())?;
        let elapsed = start.elapsed();
        let energy = energy(&mask)?;
        println!(
            "{name:<16} {:>10.1} {:>11.1}%",
            elapsed.as_secs_f64() * 1e3,
            100.0 * share_on_bar(&energy, bar)
        );
        let gray = visualize::grayscale(&energy, 99.0)?;
        let colored = visualize::apply_colormap(gray.view(), ColorMap::Inferno)?;
        let blended = visualize::overlay(rgb.view(), colored.view(), 0.65)?;
        cells.push((name.to_string(), enlarge(&blended, zoom)));
    }

    let path = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        [env!("CARGO_MANIFEST_DIR"), "target", "burn_cnn", "panel.png"]
            .iter()
            .collect()
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let refs: Vec<(&str, ndarray::ArrayView3<u8>)> = cells.iter().map(|(l, a)| (l.as_str(), a.view())).collect();
    let grid = visualize::panel(&refs, 5)?;
    visualize::save_png(grid.view(), &path)?;
    println!("\npanel written to {}", path.display());
    Ok(())
}

/// Saliency mass per pixel: the sum of absolute values over channels.
fn energy(mask: &ArrayD<f32>) -> BoxResult<Array2<f32>> {
    Ok(match mask.ndim() {
        3 => mask
            .view()
            .into_dimensionality::<ndarray::Ix3>()?
            .map_axis(Axis(2), |px| px.iter().map(|v| v.abs()).sum()),
        _ => mask.view().into_dimensionality::<ndarray::Ix2>()?.mapv(f32::abs),
    })
}

/// The share of the mass that lies on the bar.
fn share_on_bar(energy: &Array2<f32>, (top, left, h, w): (usize, usize, usize, usize)) -> f64 {
    let total: f64 = energy.iter().map(|v| f64::from(*v)).sum();
    let on: f64 = energy
        .slice(ndarray::s![top..top + h, left..left + w])
        .iter()
        .map(|v| f64::from(*v))
        .sum();
    if total > 0.0 { on / total } else { 0.0 }
}

/// Nearest-neighbour enlargement, so small images are visible in the panel.
fn enlarge(img: &Array3<u8>, k: usize) -> Array3<u8> {
    let (h, w, c) = img.dim();
    Array3::from_shape_fn((h * k, w * k, c), |(i, j, ch)| img[[i / k, j / k, ch]])
}
