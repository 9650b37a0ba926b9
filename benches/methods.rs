//! Criterion benches, one group per method, on small versions of the
//! workloads of `bench/WORKLOADS.md` (near-free models: the figures are the
//! crate's own cost). `cargo bench --bench methods [GROUP]`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{Array3, Array4, ArrayViewD};
use saliency::{
    BlurIg, CoreSaliency, GradCam, ModelOutputs, OutputKey, Xrai, XraiAlgorithm, XraiParameters,
    get_segments_felzenszwalb,
};

/// A smooth test image, height x width x 3.
fn image(h: usize, w: usize) -> Array3<f32> {
    Array3::from_shape_fn((h, w, 3), |(i, j, c)| {
        ((0.35 * i as f32 + 0.9 * c as f32).sin() * (0.29 * j as f32 - 0.5 * c as f32).cos()) * 0.5 + 0.5
    })
}

/// f(x) = sum(x^2): the gradient is 2x.
fn grads(batch: ArrayViewD<'_, f32>, _keys: &[OutputKey]) -> Result<ModelOutputs<f32>, saliency::BoxError> {
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
}

fn blur_ig(c: &mut Criterion) {
    let mut group = c.benchmark_group("blur_ig");
    group.sample_size(10);
    let x = image(112, 112);
    let method = BlurIg::new().max_sigma(25.0).steps(20).batch_size(10);
    group.bench_function("112x112x3 max_sigma 25, 20 steps, batch 10", |b| {
        b.iter(|| black_box(method.get_mask(x.view().into_dyn(), &mut grads)))
    });
    group.finish();
}

fn grad_cam(c: &mut Criterion) {
    let mut group = c.benchmark_group("grad_cam");
    group.sample_size(10);
    let x = image(224, 224);
    let a = |(b, i, j, k): (usize, usize, usize, usize)| (((b * 14 + i) * 14 + j) * 512 + k) as f64;
    let values = Array4::from_shape_fn((1, 14, 14, 512), |idx| (0.001 * a(idx)).sin().abs() as f32);
    let gradients = Array4::from_shape_fn((1, 14, 14, 512), |idx| (0.0007 * a(idx)).cos() as f32 * 0.01);
    group.bench_function("14x14x512 layer to 224x224x3", |b| {
        b.iter(|| {
            black_box(GradCam::new().get_mask(x.view().into_dyn(), &mut |_batch, _keys| {
                Ok(ModelOutputs::new()
                    .with(OutputKey::ConvolutionLayerValues, values.clone())
                    .with(OutputKey::ConvolutionOutputGradients, gradients.clone()))
            }))
        })
    });
    group.finish();
}

fn segments(c: &mut Criterion) {
    let mut group = c.benchmark_group("segments");
    group.sample_size(10);
    let x = image(224, 224);
    group.bench_function("224x224x3 Felzenszwalb, 6 scales, dilated masks", |b| {
        b.iter(|| black_box(get_segments_felzenszwalb(x.view().into_dyn())))
    });
    group.finish();
}

fn xrai(c: &mut Criterion) {
    let mut group = c.benchmark_group("xrai");
    group.sample_size(10);
    let x = image(224, 224);
    let segments = get_segments_felzenszwalb(x.view().into_dyn()).unwrap_or_default();
    for (name, algorithm) in [("full", XraiAlgorithm::Full), ("fast", XraiAlgorithm::Fast)] {
        let method = Xrai::new()
            .parameters(XraiParameters::new().algorithm(algorithm))
            .batch_size(25);
        group.bench_function(format!("224x224x3 {name}, 100 steps, batch 25"), |b| {
            b.iter(|| black_box(method.get_mask(x.view().into_dyn(), &mut grads)))
        });
        // The ranking alone: given segments and base attribution.
        let ranking = method
            .clone()
            .segments(segments.clone())
            .base_attribution(x.mapv(|v| v * v - 0.3));
        group.bench_function(
            format!("224x224x3 {name} ranking, given segments and attribution"),
            |b| b.iter(|| black_box(ranking.get_mask(x.view().into_dyn(), &mut grads))),
        );
    }
    group.finish();
}

criterion_group!(methods, blur_ig, grad_cam, segments, xrai);
criterion_main!(methods);
