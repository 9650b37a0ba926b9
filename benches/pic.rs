//! Criterion benches of the PIC metrics (feature `metrics`).

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{Array2, Array3, ArrayViewD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saliency::BoxError;
use saliency::metrics::{Interpolation, PicMetric, create_blurred_image, estimate_image_entropy, generate_random_mask};

fn image(h: usize, w: usize) -> Array3<u8> {
    Array3::from_shape_fn((h, w, 3), |(i, j, c)| {
        let v =
            128.0 + 60.0 * (0.21 * i as f64 + c as f64).sin() * (0.17 * j as f64).cos() + 30.0 * (0.9 * i as f64).sin();
        v.round() as u8
    })
}

fn pic(c: &mut Criterion) {
    let mut group = c.benchmark_group("pic");
    group.sample_size(10);
    let img = image(224, 224);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for fraction in [0.01, 0.5] {
        let mask = generate_random_mask(224, 224, fraction, &mut rng).unwrap();
        group.bench_function(format!("create_blurred_image 224 fraction {fraction}"), |b| {
            b.iter(|| create_blurred_image(img.view(), mask.view(), Interpolation::Linear).unwrap())
        });
    }
    group.bench_function("estimate_image_entropy 224", |b| {
        b.iter(|| estimate_image_entropy(img.view()).unwrap())
    });
    let saliency = Array2::from_shape_fn((224, 224), |(i, j)| ((i * 7919 + j * 104_729) % 65_521) as f64);
    let random_mask = generate_random_mask(224, 224, 0.01, &mut rng).unwrap();
    let original = img.mapv(f64::from);
    let predict = |batch: ArrayViewD<'_, u8>| -> Result<Vec<f64>, BoxError> {
        Ok(batch
            .outer_iter()
            .map(|b| {
                1.0 - b
                    .iter()
                    .zip(&original)
                    .map(|(&v, &o)| (f64::from(v) - o).abs())
                    .sum::<f64>()
                    / 1e7
            })
            .collect())
    };
    group.bench_function("compute 224 13 thresholds", |b| {
        b.iter(|| {
            PicMetric::new()
                .compute(img.view(), saliency.view(), random_mask.view(), predict)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, pic);
criterion_main!(benches);
