//! `--throughput`: the trained grader explaining the held-out embryos with
//! IG, SmoothGrad over Vanilla and XRAI, all images in one call against one
//! image at a time; model calls and wall time for both.

use std::time::Instant;

use candle_core::Tensor;
use ndarray::{Array4, Axis};
use saliency::adapters::candle::{CandleModel, ForwardContext, Target};
use saliency::{
    CoreSaliency, IntegratedGradients, Saliency, SmoothGrad, SmoothGradParams, VanillaGradients, Xrai, XraiParameters,
};

use super::{BoxResult, Embryo};

/// One method at one batch size: its name, the method, the batch size.
type Setting = (&'static str, Box<dyn CoreSaliency<f32>>, usize);

fn settings(batch_size: usize, steps: usize) -> Vec<Setting> {
    vec![
        (
            "IG (25 steps)",
            Box::new(IntegratedGradients::new().steps(25).batch_size(batch_size)),
            batch_size,
        ),
        (
            "SmoothGrad (Vanilla, 25)",
            Box::new(SmoothGrad::new(
                VanillaGradients::new(),
                SmoothGradParams::new().nsamples(25).seed(7).batch_size(batch_size),
            )),
            batch_size,
        ),
        (
            "XRAI",
            Box::new(
                Xrai::new()
                    .parameters(XraiParameters::new().steps(steps))
                    .batch_size(batch_size),
            ),
            batch_size,
        ),
    ]
}

/// Explains `embryos` (each for its true grade) with each method, batched
/// and one at a time, and prints the table.
pub fn run(
    forward: &dyn Fn(&Tensor, &ForwardContext) -> candle_core::Result<Tensor>,
    embryos: &[Embryo],
) -> BoxResult<()> {
    let views: Vec<_> = embryos.iter().map(|e| e.image.view()).collect();
    let images: Array4<f32> = ndarray::stack(Axis(0), &views)?;
    let targets: Vec<usize> = embryos.iter().map(|e| e.grade.label()).collect();
    let xrai_steps = 25;
    println!(
        "\nThroughput: {} held-out embryos, each explained for its true grade (XRAI with {xrai_steps} steps per baseline).",
        embryos.len()
    );
    println!(
        "{:<26} {:>22} {:>22} {:>8}",
        "method", "one image at a time", "all images in one call", "speed-up"
    );
    // One image at a time, every row of an image in one call (IG: its 25
    // steps; SmoothGrad: its 25 samples; XRAI: one baseline's steps).
    let single = settings(25, xrai_steps);
    for (k, (name, method, _)) in single.iter().enumerate() {
        let mut best_batched: Option<(f64, usize, usize)> = None;
        let (one_time, one_calls) = {
            let mut calls = 0;
            let start = Instant::now();
            for (i, &target) in targets.iter().enumerate() {
                let mut model = CandleModel::<f32, _>::new(forward, Target::class(target)).channels_first(true);
                let mut model = model.as_fn();
                method.get_mask(images.index_axis(Axis(0), i), &mut |b, r| {
                    calls += 1;
                    model(b, r)
                })?;
            }
            (start.elapsed().as_secs_f64(), calls)
        };
        for batch_size in [50, 100, 200, 400] {
            let batched = settings(batch_size, xrai_steps);
            let method = &batched[k].1;
            let mut model = CandleModel::<f32, _>::new(forward, Target::classes(targets.clone())).channels_first(true);
            let mut model = model.as_fn();
            let mut calls = 0;
            let start = Instant::now();
            method.get_masks(&images, &mut |b, r| {
                calls += 1;
                model(b, r)
            })?;
            let t = start.elapsed().as_secs_f64();
            if best_batched.is_none_or(|(bt, _, _)| t < bt) {
                best_batched = Some((t, calls, batch_size));
            }
        }
        if let Some((t, calls, batch_size)) = best_batched {
            println!(
                "{:<26} {:>9.2} s {:>6} calls {:>9.2} s {:>6} calls {:>7.1}x   (best batch_size {batch_size})",
                name,
                one_time,
                one_calls,
                t,
                calls,
                one_time / t
            );
        }
    }
    Ok(())
}
