//! Three saliency methods on an analytic "model", with an ASCII picture of
//! each mask. No downloads, no extra dependencies:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! The model scores an image by how much bright structure it sees inside a
//! round region of interest: score = sum(w * tanh(x)^2), where w is a soft
//! disk. A faithful saliency method should light up the part of the image
//! that lies inside the disk and ignore the rest.

use ndarray::{Array3, ArrayD, ArrayViewD};
use saliency::{
    BoxError, CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey, Saliency, SmoothGradParams, VanillaGradients,
    visualize,
};

const H: usize = 32;
const W: usize = 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The image: two bright squares; only the first lies inside the region.
    let image = Array3::<f64>::from_shape_fn((H, W, 3), |(i, j, c)| {
        let square = |i0: usize, j0: usize| (i0..i0 + 8).contains(&i) && (j0..j0 + 8).contains(&j);
        let level = if square(6, 6) || square(18, 20) { 0.9 } else { 0.1 };
        level - 0.05 * c as f64
    });
    // The model's weight: a soft disk around (10, 10).
    let weight = Array3::<f64>::from_shape_fn((H, W, 3), |(i, j, _)| {
        let d2 = (i as f64 - 10.0).powi(2) + (j as f64 - 10.0).powi(2);
        1.0 / (1.0 + (0.25 * (d2.sqrt() - 7.0)).exp())
    });

    // The model function every method calls: gradient of sum(w * tanh(x)^2),
    // which is 2 w tanh(x) (1 - tanh(x)^2), for a batch [B, H, W, 3].
    let calls = std::cell::Cell::new(0);
    let mut model =
        |batch: ArrayViewD<'_, f64>, _keys: &saliency::ModelRequest<'_>| -> Result<ModelOutputs<f64>, BoxError> {
            calls.set(calls.get() + 1);
            let t = batch.mapv(f64::tanh);
            let grads: ArrayD<f64> = &t * &t.mapv(|t| 1.0 - t * t) * &weight * 2.0;
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
        };

    let smooth = SmoothGradParams::new().nsamples(20).seed(42);
    let methods: Vec<(&str, Box<dyn CoreSaliency<f64>>, bool)> = vec![
        ("Vanilla Gradients", Box::new(VanillaGradients::new()), false),
        (
            "Integrated Gradients (50 steps)",
            Box::new(IntegratedGradients::new().steps(50).batch_size(10)),
            false,
        ),
        ("SmoothGrad over Vanilla", Box::new(VanillaGradients::new()), true),
    ];

    println!("A 32 x 32 image with two bright squares; the model only looks inside a disk around (10, 10).\n");
    for (label, method, smoothed) in &methods {
        let before = calls.get();
        let mask = if *smoothed {
            method.get_smoothed_mask(&image, &mut model, &smooth)?
        } else {
            method.get_mask(&image, &mut model)?
        };
        let picture = visualize::grayscale(mask.view(), 99.0)?;
        let inside: f64 = picture
            .indexed_iter()
            .filter(|((i, j), _)| weight[[*i, *j, 0]] > 0.5)
            .map(|(_, v)| v)
            .sum();
        let share = inside / picture.sum().max(f64::MIN_POSITIVE);
        println!(
            "{label}: {} model call(s), {:.0}% of the map's mass inside the disk",
            calls.get() - before,
            100.0 * share
        );
        for row in picture.rows().into_iter().step_by(2) {
            let line: String = row
                .iter()
                .map(|&v| [' ', '.', ':', 'o', '@'][((v * 4.0).round() as usize).min(4)])
                .collect();
            println!("  |{line}|");
        }
        println!();
    }
    Ok(())
}
