//! How many integration steps each rule of Integrated Gradients needs:
//! the convergence delta `sum(mask) - (f(x) - f(baseline))` of every rule at
//! several step counts, relative to `f(x) - f(baseline)`, on the blastocyst
//! grader (tests/fixtures/onnx/grader/model.onnx, ONNX) explaining generated
//! embryos (the blastocyst example's generator) for the class it predicts,
//! from the all-zero baseline.
//!
//! ```text
//! cargo run --release --example ig_convergence --features onnx
//! ```
//!
//! Prints a Markdown table: for each rule and step count, the mean and the
//! largest relative delta over the embryos, then the fewest steps of those
//! tried with every embryo's delta under 1%.

#[allow(dead_code)]
#[path = "blastocyst/phantom.rs"]
mod phantom;

use ndarray::{Array3, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saliency::adapters::candle::Target;
use saliency::adapters::onnx::OnnxModel;
use saliency::{IntegratedGradients, IntegrationRule, OutputKey};

use phantom::Grade;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const SIZE: usize = 48;
const EMBRYOS: usize = 8;
const STEPS: [usize; 9] = [2, 4, 8, 16, 32, 64, 128, 256, 512];

fn main() -> BoxResult<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/grader/model.onnx");
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let embryos: Vec<Array3<f32>> = (0..EMBRYOS)
        .map(|k| {
            let grade = if k % 2 == 0 { Grade::Good } else { Grade::Poor };
            phantom::embryo(SIZE, grade, &mut rng).image
        })
        .collect();

    // Each embryo is explained for the class the grader predicts.
    let mut probe = OnnxModel::<f32>::from_file(&path, Target::class(0))?;
    let mut classes = Vec::new();
    for image in &embryos {
        let mut logits = [0.0_f32; 2];
        for (class, logit) in logits.iter_mut().enumerate() {
            probe.set_target(Target::class(class));
            let out = probe.call(image.view().insert_axis(Axis(0)), &[OutputKey::OutputLayerValues])?;
            *logit = out
                .get(OutputKey::OutputLayerValues)
                .and_then(|v| v.iter().next().copied())
                .unwrap_or(0.0);
        }
        classes.push(usize::from(logits[1] > logits[0]));
    }

    println!(
        "Relative convergence delta |sum(IG) - (f(x) - f(0))| / |f(x) - f(0)| of the predicted class's logit, \
         blastocyst grader, {EMBRYOS} generated embryos: mean / largest, in %.\n"
    );
    let header: Vec<String> = STEPS.iter().map(|s| format!("{s} steps")).collect();
    println!("| rule | {} | steps for < 1% |", header.join(" | "));
    println!("| --- |{} --- |", " --- |".repeat(STEPS.len()));
    for rule in IntegrationRule::ALL {
        let mut cells = Vec::new();
        let mut enough = None;
        for &steps in &STEPS {
            let ig = IntegratedGradients::new().rule(rule).steps(steps).batch_size(64);
            let mut rel = Vec::new();
            for (image, &class) in embryos.iter().zip(&classes) {
                let mut model = OnnxModel::<f32>::from_file(&path, Target::class(class))?;
                let out = ig.get_mask_with_delta(image, &mut model.as_fn())?;
                rel.push(out.relative_delta());
            }
            let mean = rel.iter().sum::<f64>() / rel.len() as f64;
            let max = rel.iter().copied().fold(0.0, f64::max);
            if enough.is_none() && max < 0.01 {
                enough = Some(steps);
            }
            cells.push(format!("{:.2} / {:.2}", 100.0 * mean, 100.0 * max));
        }
        let name = match rule.captum_name() {
            Some(name) => format!("`{name}`"),
            None => "evenly spaced (reference)".to_string(),
        };
        let enough = enough.map_or(format!("> {}", STEPS[STEPS.len() - 1]), |s| s.to_string());
        println!("| {name} | {} | {enough} |", cells.join(" | "));
    }
    Ok(())
}
