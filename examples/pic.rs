//! Which of two saliency maps explains a model better? The Softmax
//! Information Curve (SIC) of the XRAI paper answers it: reveal the most
//! salient pixels of a blurred image step by step and watch the model's
//! score come back. The larger the area under the curve (AUC), the better.
//!
//! ```text
//! cargo run --release --features metrics --example pic
//! ```
//!
//! The "model" here looks only at a bright blob: its score is
//! exp(-mean |image - original| over the blob / 8). One saliency map points at
//! the blob, the other at the opposite corner.

use ndarray::{Array2, Array3, ArrayViewD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saliency::BoxError;
use saliency::metrics::{Aggregation, PicMetric, aggregate_individual_pic_results, generate_random_mask};

const SIZE: usize = 96;

/// A textured image with a bright blob centred at (cy, cx).
fn image(cy: f64, cx: f64, seed: f64) -> Array3<u8> {
    Array3::from_shape_fn((SIZE, SIZE, 3), |(i, j, c)| {
        let (y, x, c) = (i as f64, j as f64, c as f64);
        let texture = 60.0 * (0.31 * y + seed).sin() * (0.23 * x + 0.7 * c).cos() + 40.0 * (0.05 * (x + y)).sin();
        let blob = 120.0 * (-((y - cy).powi(2) + (x - cx).powi(2)) / (2.0 * 8.0 * 8.0)).exp();
        (110.0 + texture + blob).clamp(0.0, 255.0).round() as u8
    })
}

/// A saliency map peaking at (cy, cx), with a little texture to break ties.
fn saliency_at(cy: f64, cx: f64) -> Array2<f64> {
    Array2::from_shape_fn((SIZE, SIZE), |(i, j)| {
        let d2 = (i as f64 - cy).powi(2) + (j as f64 - cx).powi(2);
        (-d2 / (2.0 * 12.0 * 12.0)).exp() + 1e-3 * ((i * 31 + j * 17) % 97) as f64 / 97.0
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metric = PicMetric::new(); // the paper's 13 thresholds, 1000 curve points
    let mut rng = ChaCha8Rng::seed_from_u64(2019);
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    println!("image  SIC AUC (map on the blob)  SIC AUC (map on the far corner)");
    for (k, &(cy, cx)) in [(30.0, 34.0), (60.0, 64.0), (40.0, 70.0)].iter().enumerate() {
        let img = image(cy, cx, k as f64);
        let original = img.mapv(f64::from);
        let predict = |batch: ArrayViewD<'_, u8>| -> Result<Vec<f64>, BoxError> {
            Ok(batch
                .outer_iter()
                .map(|b| {
                    let (mut sum, mut n) = (0.0_f64, 0.0_f64);
                    for ((idx, &v), &o) in b.indexed_iter().zip(original.iter()) {
                        let (i, j) = (idx[0] as f64, idx[1] as f64);
                        if (i - cy).powi(2) + (j - cx).powi(2) <= 100.0 {
                            sum += (f64::from(v) - o).abs();
                            n += 1.0;
                        }
                    }
                    (-sum / n.max(1.0) / 8.0).exp()
                })
                .collect())
        };
        // One random mask per image, shared by both maps (a fair comparison).
        let random_mask = generate_random_mask(SIZE, SIZE, 0.01, &mut rng)?;
        let on_blob = metric.compute(&img, saliency_at(cy, cx).view(), random_mask.view(), predict)?;
        let far = (SIZE as f64 - 1.0 - cy, SIZE as f64 - 1.0 - cx);
        let off_blob = metric.compute(&img, saliency_at(far.0, far.1).view(), random_mask.view(), predict)?;
        println!("{k:>5}  {:>25.3}  {:>31.3}", on_blob.auc, off_blob.auc);
        good.push(on_blob);
        bad.push(off_blob);
    }
    let good = aggregate_individual_pic_results(&good, Aggregation::Median)?;
    let bad = aggregate_individual_pic_results(&bad, Aggregation::Median)?;
    println!("median {:>24.3}  {:>31.3}", good.auc, bad.auc);
    println!(
        "the map on the blob is {} by SIC AUC",
        if good.auc > bad.auc { "better" } else { "not better" }
    );
    Ok(())
}
