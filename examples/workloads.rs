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

use ndarray::{Array3, Array4, ArrayD, ArrayViewD};
use saliency::{
    BlurIg, CoreSaliency, GradCam, IntegratedGradients, ModelOutputs, OutputKey, SmoothGradParams, VanillaGradients,
    Xrai, XraiAlgorithm, XraiParameters,
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
fn cam_layer() -> (Array4<f32>, Array4<f32>) {
    let a = |(b, i, j, k): (usize, usize, usize, usize)| (((b * 14 + i) * 14 + j) * 512 + k) as f64;
    let values = Array4::from_shape_fn((1, 14, 14, 512), |idx| (0.001 * a(idx)).sin().abs() as f32);
    let gradients = Array4::from_shape_fn((1, 14, 14, 512), |idx| (0.0007 * a(idx)).cos() as f32 * 0.01);
    (values, gradients)
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
        "blur_ig" => Some(Box::new(move || {
            BlurIg::new()
                .max_sigma(50.0)
                .steps(100)
                .grad_step(0.01)
                .batch_size(25)
                .get_mask(x.view().into_dyn(), &mut grads)
        })),
        "grad_cam" => {
            let (values, gradients) = cam_layer();
            Some(Box::new(move || {
                GradCam::new().should_resize(true).three_dims(true).get_mask(
                    x.view().into_dyn(),
                    &mut |_batch, _keys| {
                        Ok(ModelOutputs::new()
                            .with(OutputKey::ConvolutionLayerValues, values.clone())
                            .with(OutputKey::ConvolutionOutputGradients, gradients.clone()))
                    },
                )
            }))
        }
        "segments" => Some(Box::new(move || {
            let masks = saliency::get_segments_felzenszwalb(x.view().into_dyn())?;
            Ok(ArrayD::from_elem(ndarray::IxDyn(&[1]), masks.len() as f32))
        })),
        "xrai_full" => Some(Box::new(move || {
            Xrai::new().batch_size(25).get_mask(x.view().into_dyn(), &mut grads)
        })),
        "xrai_fast" => Some(Box::new(move || {
            Xrai::new()
                .parameters(XraiParameters::new().algorithm(XraiAlgorithm::Fast))
                .batch_size(25)
                .get_mask(x.view().into_dyn(), &mut grads)
        })),
        "guided_ig" | "occlusion64" => None,
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
