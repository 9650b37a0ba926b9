//! The benchmark workloads of `bench/WORKLOADS.md`, timed in-process, in the
//! format of the Python reference's timing script: one line per workload,
//! `NAME<TAB>median seconds`.
//!
//! ```text
//! cargo run --release --example workloads -- [--repeat N] [NAME ...]
//! ```
//!
//! The models are near-free, so the figures are the crate's own cost.

use std::time::Instant;

use ndarray::{Array2, Array3, Array4, ArrayD, ArrayViewD};
use saliency::{
    CoreSaliency, GuidedIg, IntegratedGradients, ModelOutputs, Occlusion, OutputKey, SmoothGradParams, VanillaGradients,
};

/// The 224 x 224 x 3 workload image (f32), built in f64 and cast.
fn workload_image(h: usize, w: usize) -> Array3<f32> {
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    Array3::from_shape_fn((h, w, 3), |(i, j, c)| {
        let (i, j, c) = (i as f64, j as f64, c as f64);
        let r = ((i - cy).powi(2) + (j - cx).powi(2)).sqrt();
        let ring = 0.8 * (-((r - 0.4 * h as f64) / 6.0).powi(2)).exp();
        let blob = 0.6 * (-((i - 0.62 * h as f64).powi(2) + (j - 0.4 * w as f64).powi(2)) / (2.0 * 25.0 * 25.0)).exp();
        let tex = 0.15 * (0.35 * i + 0.9 * c).sin() * (0.29 * j - 0.5 * c).cos();
        let cells =
            0.35 * (0.9 * i + 2.0 * (0.13 * j).sin()).sin() * (0.7 * j + 2.0 * (0.11 * i).cos() + 0.6 * c).sin();
        (ring + blob + tex + cells - 0.15 * c) as f32
    })
}

/// f(x) = sum(x^2): the gradient is 2x.
fn grads(batch: ArrayViewD<'_, f32>, _keys: &[OutputKey]) -> Result<ModelOutputs<f32>, saliency::BoxError> {
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
}

/// Grad-CAM's fixed layer: values |sin(0.001 a)|, gradients 0.01 cos(0.0007 a)
/// over a = 0, 1, 2, ... in row-major order of [1, 14, 14, 512].
#[allow(dead_code)]
fn cam_layer() -> (Array4<f32>, Array4<f32>) {
    let a = |(b, i, j, k): (usize, usize, usize, usize)| (((b * 14 + i) * 14 + j) * 512 + k) as f64;
    let values = Array4::from_shape_fn((1, 14, 14, 512), |idx| (0.001 * a(idx)).sin().abs() as f32);
    let gradients = Array4::from_shape_fn((1, 14, 14, 512), |idx| (0.0007 * a(idx)).cos() as f32 * 0.01);
    (values, gradients)
}

/// Occlusion's weights: w = cos(0.1 k) over [64, 64, 3] in row-major order.
fn occlusion_weights() -> Vec<f32> {
    (0..64 * 64 * 3).map(|k| (0.1 * k as f64).cos() as f32).collect()
}

/// f(x) = sum(x * w) per batch element, shape [B, 1]; 32 partial sums so
/// that the compiler vectorises it, as NumPy does.
fn weighted_sums(batch: ArrayViewD<'_, f32>, w: &[f32]) -> Result<ModelOutputs<f32>, saliency::BoxError> {
    let flat = batch.as_slice().ok_or("batch not contiguous")?;
    let scores: Vec<f32> = flat
        .chunks_exact(w.len())
        .map(|x| {
            let mut acc = [0.0_f32; 32];
            for (xs, ws) in x.chunks_exact(32).zip(w.chunks_exact(32)) {
                for ((a, &xv), &wv) in acc.iter_mut().zip(xs).zip(ws) {
                    *a += xv * wv;
                }
            }
            let tail: f32 = x
                .chunks_exact(32)
                .remainder()
                .iter()
                .zip(w.chunks_exact(32).remainder())
                .map(|(a, b)| a * b)
                .sum();
            acc.iter().sum::<f32>() + tail
        })
        .collect();
    let n = scores.len();
    Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array2::from_shape_vec((n, 1), scores)?))
}

/// A workload: runs once per call; `None` when its method is not built yet.
type Workload = Box<dyn FnMut() -> saliency::Result<ArrayD<f32>>>;

fn workload(name: &str) -> Option<Workload> {
    let x = workload_image(224, 224);
    match name {
        "vanilla" => Some(Box::new(move || {
            VanillaGradients::new().get_mask(x.view().into_dyn(), &mut grads)
        })),
        "ig" => Some(Box::new(move || {
            IntegratedGradients::new()
                .steps(25)
                .batch_size(25)
                .get_mask(x.view().into_dyn(), &mut grads)
        })),
        "smoothgrad_ig" => Some(Box::new(move || {
            let params = SmoothGradParams::new()
                .stdev_spread(0.15)
                .nsamples(25)
                .magnitude(true)
                .seed(0);
            IntegratedGradients::new().steps(25).batch_size(25).get_smoothed_mask(
                x.view().into_dyn(),
                &mut grads,
                &params,
            )
        })),
        "guided_ig" => Some(Box::new(move || {
            GuidedIg::new()
                .steps(200)
                .fraction(0.25)
                .max_dist(0.02)
                .get_mask(x.view().into_dyn(), &mut grads)
        })),
        "occlusion64" => {
            // X64 is the top-left 64 x 64 crop; windows go to the model 16 at a time
            // (a 768 KB batch that stays in cache).
            let x64 = x
                .slice_each_axis(|ax| ndarray::Slice::from(..if ax.axis.index() < 2 { 64 } else { 3 }))
                .to_owned();
            let w = occlusion_weights();
            Some(Box::new(move || {
                Occlusion::new()
                    .size(15)
                    .value(0.0)
                    .batch_size(16)
                    .get_mask(x64.view().into_dyn(), &mut |b, _| weighted_sums(b, &w))
            }))
        }
        "blur_ig" | "grad_cam" | "segments" | "xrai_full" | "xrai_fast" => None,
        _ => None,
    }
}

const NAMES: [&str; 10] = [
    "vanilla",
    "ig",
    "smoothgrad_ig",
    "blur_ig",
    "guided_ig",
    "grad_cam",
    "occlusion64",
    "segments",
    "xrai_full",
    "xrai_fast",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut repeat = 3usize;
    let mut names = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--repeat" {
            repeat = args.next().ok_or("--repeat needs a number")?.parse()?;
            if repeat == 0 {
                return Err("--repeat must be at least 1".into());
            }
        } else if NAMES.contains(&arg.as_str()) {
            names.push(arg);
        } else {
            return Err(format!("unknown workload {arg:?}; known: {}", NAMES.join(", ")).into());
        }
    }
    if names.is_empty() {
        names = NAMES.iter().map(|s| s.to_string()).collect();
    }
    for name in names {
        let Some(mut run) = workload(&name) else {
            println!("{name}\tnot built yet");
            continue;
        };
        let mut times = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let start = Instant::now();
            let mask = run()?;
            times.push(start.elapsed().as_secs_f64());
            std::hint::black_box(mask);
        }
        times.sort_by(f64::total_cmp);
        println!("{name}\t{:.6}", times[times.len() / 2]);
    }
    Ok(())
}
