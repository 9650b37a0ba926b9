//! Criterion benches, one group per method, on the workloads of
//! `bench/WORKLOADS.md` with near-free models (the crate's own cost).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{Array2, Array3, ArrayViewD};
use saliency::{BoxError, CoreSaliency, GuidedIg, ModelOutputs, Occlusion, OutputKey};

/// The workload image of `bench/WORKLOADS.md`, `h x w x 3`.
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
fn square_grads(batch: ArrayViewD<'_, f32>, _keys: &[OutputKey]) -> Result<ModelOutputs<f32>, BoxError> {
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
}

fn guided_ig(c: &mut Criterion) {
    let x = workload_image(224, 224);
    let mut group = c.benchmark_group("guided_ig");
    group.sample_size(10);
    group.bench_function("224x224x3 200 steps", |b| {
        b.iter(|| {
            black_box(
                GuidedIg::new()
                    .get_mask(x.view().into_dyn(), &mut square_grads)
                    .unwrap(),
            )
        })
    });
    group.finish();
}

fn occlusion(c: &mut Criterion) {
    let x = workload_image(224, 224);
    let x64 = x
        .slice_each_axis(|ax| ndarray::Slice::from(..if ax.axis.index() < 2 { 64 } else { 3 }))
        .to_owned();
    let w: Vec<f32> = (0..64 * 64 * 3).map(|k| (0.1 * k as f64).cos() as f32).collect();
    // f(x) = sum(x * w) per batch element, shape [B, 1].
    let mut scores = |batch: ArrayViewD<'_, f32>, _keys: &[OutputKey]| -> Result<ModelOutputs<f32>, BoxError> {
        let flat = batch.as_slice().ok_or("batch not contiguous")?;
        let s: Vec<f32> = flat
            .chunks_exact(w.len())
            .map(|img| {
                let mut acc = [0.0_f32; 32];
                for (xs, ws) in img.chunks_exact(32).zip(w.chunks_exact(32)) {
                    for ((a, &xv), &wv) in acc.iter_mut().zip(xs).zip(ws) {
                        *a += xv * wv;
                    }
                }
                acc.iter().sum()
            })
            .collect();
        let n = s.len();
        Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array2::from_shape_vec((n, 1), s)?))
    };
    let mut group = c.benchmark_group("occlusion");
    group.sample_size(10);
    for batch_size in [1, 16] {
        group.bench_function(format!("64x64x3 window 15 batch {batch_size}"), |b| {
            b.iter(|| {
                let occ = Occlusion::new().size(15).batch_size(batch_size);
                black_box(occ.get_mask(x64.view().into_dyn(), &mut scores).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(methods, guided_ig, occlusion);
criterion_main!(methods);
