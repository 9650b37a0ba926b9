//! `--throughput`: the trained grader explaining the held-out embryos with
//! IG, SmoothGrad over Vanilla and XRAI, all images in one call against one
//! image at a time; model calls and wall time for both.

use std::time::Instant;

use candle_core::Tensor;
use ndarray::{Array4, Axis};
use saliency::OutputKey;
use saliency::adapters::candle::{CandleModel, ForwardContext, Target};
use saliency::{
    CoreSaliency, IntegratedGradients, Saliency, SmoothGrad, SmoothGradParams, VanillaGradients, Xrai, XraiParameters,
};

use super::{BoxResult, Embryo};

/// One method at one batch size: its name and the method.
type Setting = (&'static str, Box<dyn CoreSaliency<f32>>);

fn settings(batch_size: usize, steps: usize) -> Vec<Setting> {
    let smooth = SmoothGradParams::new().nsamples(25).seed(7);
    // Batch size 1: the samples one after another, as the reference.
    let smooth = if batch_size > 1 {
        smooth.batch_size(batch_size)
    } else {
        smooth
    };
    vec![
        (
            "IG (25 steps)",
            Box::new(IntegratedGradients::new().steps(25).batch_size(batch_size)),
        ),
        (
            "SmoothGrad (Vanilla, 25)",
            Box::new(SmoothGrad::new(VanillaGradients::new(), smooth)),
        ),
        (
            "XRAI",
            Box::new(
                Xrai::new()
                    .parameters(XraiParameters::new().steps(steps))
                    .batch_size(batch_size),
            ),
        ),
    ]
}

/// Explains `embryos` (each for its true grade) with each method, batched
/// and one at a time, each with the batch size that serves it best, and
/// prints the table.
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
        "{:<26} {:>30} {:>30} {:>8}",
        "method", "one image at a time", "all images in one call", "speed-up"
    );
    // (seconds, model calls, batch size) of the fastest batch size.
    type Best = Option<(f64, usize, usize)>;
    let keep = |best: &mut Best, t: f64, calls: usize, batch_size: usize| {
        if best.is_none_or(|(bt, _, _)| t < bt) {
            *best = Some((t, calls, batch_size));
        }
    };
    for k in 0..settings(1, xrai_steps).len() {
        let name = settings(1, xrai_steps)[k].0;
        // One image at a time: one row per call, or every row of an image
        // in one call (IG: its 25 steps; SmoothGrad: its 25 samples; XRAI:
        // one baseline's steps).
        let mut best_single: Best = None;
        for batch_size in [1, 25] {
            let method = &settings(batch_size, xrai_steps)[k].1;
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
            keep(&mut best_single, start.elapsed().as_secs_f64(), calls, batch_size);
        }
        let mut best_batched: Best = None;
        for batch_size in [25, 50, 100, 200, 400] {
            let method = &settings(batch_size, xrai_steps)[k].1;
            let mut model = CandleModel::<f32, _>::new(forward, Target::classes(targets.clone())).channels_first(true);
            let mut model = model.as_fn();
            let mut calls = 0;
            let start = Instant::now();
            method.get_masks(&images, &mut |b, r| {
                calls += 1;
                model(b, r)
            })?;
            keep(&mut best_batched, start.elapsed().as_secs_f64(), calls, batch_size);
        }
        if let (Some((one, one_calls, one_batch)), Some((all, all_calls, all_batch))) = (best_single, best_batched) {
            println!(
                "{name:<26} {one:>7.2} s {one_calls:>6} calls (batch {one_batch:>3}) {all:>7.2} s {all_calls:>6} calls (batch {all_batch:>3}) {:>7.2}x",
                one / all
            );
        }
    }
    // What the model alone gains from bigger calls: the same 5000 rows
    // (25 per embryo) as calls of 25 rows and as calls of 50 to 400. No
    // packing can make a method faster than this ratio.
    println!("\nThe model alone (gradients of 5000 rows, the embryos repeated):");
    let rows = 25 * embryos.len();
    let alone = |per_call: usize| -> BoxResult<f64> {
        let mut model = CandleModel::<f32, _>::new(forward, Target::class(0)).channels_first(true);
        let start = Instant::now();
        let mut done = 0;
        while done < rows {
            let n = per_call.min(rows - done);
            let picks: Vec<usize> = (done..done + n).map(|r| r % embryos.len()).collect();
            let batch = images.select(Axis(0), &picks);
            model.call(&batch, &[OutputKey::InputOutputGradients])?;
            done += n;
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let base = alone(25)?;
    println!("{:>6} rows per call {:>8.2} s", 25, base);
    for per_call in [50, 100, 200, 400] {
        let t = alone(per_call)?;
        println!("{per_call:>6} rows per call {t:>8.2} s   {:.2}x", base / t);
    }
    Ok(())
}
