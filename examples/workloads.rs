//! The benchmark workloads of `bench/WORKLOADS.md`, timed in-process, in the
//! format of the Python reference's timing script: one line per workload,
//! `NAME<TAB>median seconds`.
//!
//! ```text
//! cargo run --release --example workloads -- [--size S] [--repeat N] [NAME ...]
//! ```
//!
//! The models are near-free, so the figures are the crate's own cost.

use std::time::Instant;

mod common;

use common::{cam_layer, grads, occlusion_weights, weighted_sums, workload_image};
use saliency::{
    BlurIg, GradCam, GuidedIg, IntegratedGradients, ModelOutputs, Occlusion, OutputKey, Saliency, SmoothGradParams,
    VanillaGradients, Xrai, XraiAlgorithm, XraiParameters,
};

/// A workload: runs once per call and returns the size of what it computed;
/// `None` when its method is not built yet.
type Workload = Box<dyn FnMut() -> saliency::Result<usize>>;

/// The size of a computed mask, so every workload has one result type.
fn len<D: ndarray::Dimension>(mask: saliency::Result<ndarray::Array<f32, D>>) -> saliency::Result<usize> {
    mask.map(|m| m.len())
}

fn workload(name: &str, size: usize) -> Option<Workload> {
    let x = workload_image(size, size);
    match name {
        "vanilla" => Some(Box::new(move || len(VanillaGradients::new().get_mask(&x, &mut grads)))),
        "ig" => Some(Box::new(move || {
            len({
                IntegratedGradients::new()
                    .steps(25)
                    .batch_size(25)
                    .get_mask(&x, &mut grads)
            })
        })),
        "smoothgrad_ig" => Some(Box::new(move || {
            len({
                let params = SmoothGradParams::new()
                    .stdev_spread(0.15)
                    .nsamples(25)
                    .magnitude(true)
                    .seed(0);
                IntegratedGradients::new()
                    .steps(25)
                    .batch_size(25)
                    .get_smoothed_mask(&x, &mut grads, &params)
            })
        })),
        "blur_ig" => Some(Box::new(move || {
            len({
                BlurIg::new()
                    .max_sigma(50.0)
                    .steps(100)
                    .grad_step(0.01)
                    .batch_size(25)
                    .get_mask(&x, &mut grads)
            })
        })),
        "grad_cam" => {
            let (values, gradients) = cam_layer();
            Some(Box::new(move || {
                len({
                    GradCam::new()
                        .should_resize(true)
                        .three_dims(true)
                        .get_mask(&x, &mut |_batch, _keys| {
                            Ok(ModelOutputs::new()
                                .with(OutputKey::ConvolutionLayerValues, values.clone())
                                .with(OutputKey::ConvolutionOutputGradients, gradients.clone()))
                        })
                })
            }))
        }
        "guided_ig" => Some(Box::new(move || {
            len({
                GuidedIg::new()
                    .steps(200)
                    .fraction(0.25)
                    .max_dist(0.02)
                    .get_mask(&x, &mut grads)
            })
        })),
        "occlusion64" => {
            // X64 is the top-left 64 x 64 crop; windows go to the model 16 at a time.
            let x64 = x
                .slice_each_axis(|ax| ndarray::Slice::from(..if ax.axis.index() < 2 { 64 } else { 3 }))
                .to_owned();
            let w = occlusion_weights();
            Some(Box::new(move || {
                len({
                    Occlusion::new()
                        .size(15)
                        .value(0.0)
                        .batch_size(16)
                        .get_mask(&x64, &mut |b, _| weighted_sums(b, &w))
                })
            }))
        }
        "segments" => Some(Box::new(move || {
            // The masks are the output; the mask count stands in for them.
            Ok(saliency::get_segments_felzenszwalb(&x)?.len())
        })),
        "xrai_full" => Some(Box::new(move || {
            len(Xrai::new().batch_size(25).get_mask(&x, &mut grads))
        })),
        "xrai_fast" => Some(Box::new(move || {
            len({
                Xrai::new()
                    .parameters(XraiParameters::new().algorithm(XraiAlgorithm::Fast))
                    .batch_size(25)
                    .get_mask(&x, &mut grads)
            })
        })),
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
    let mut size = 224usize;
    let mut names = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--size" {
            size = args.next().ok_or("--size needs a number")?.parse()?;
            if size < 64 {
                return Err("--size must be at least 64 (occlusion64 crops 64 x 64)".into());
            }
        } else if arg == "--repeat" {
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
        let Some(mut run) = workload(&name, size) else {
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
