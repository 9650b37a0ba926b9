//! Criterion benchmarks, one group per method, on the inputs of the
//! benchmark workloads (bench/WORKLOADS.md) with near-free models, so that
//! the figures are the crate's own cost.
//!
//! ```text
//! cargo bench --bench methods
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use saliency::{
    BlurIg, GradCam, GuidedBackprop, GuidedIg, IntegratedGradients, ModelOutputs, Occlusion, OutputKey, Saliency,
    SmoothGradParams, VanillaGradients, Xrai, XraiAlgorithm, XraiParameters, get_segments_felzenszwalb, visualize,
};

#[path = "../examples/common/mod.rs"]
mod common;

use common::{cam_layer, grads, occlusion_weights, weighted_sums, workload_image};

fn vanilla(c: &mut Criterion) {
    let x = workload_image(224, 224);
    c.benchmark_group("vanilla").bench_function("224x224x3", |b| {
        b.iter(|| VanillaGradients::new().get_mask(x.view(), &mut grads))
    });
}

fn integrated_gradients(c: &mut Criterion) {
    let x = workload_image(224, 224);
    let mut group = c.benchmark_group("integrated_gradients");
    for batch_size in [1, 25] {
        let ig = IntegratedGradients::new().steps(25).batch_size(batch_size);
        group.bench_function(format!("224x224x3 steps 25 batch {batch_size}"), |b| {
            b.iter(|| ig.get_mask(x.view(), &mut grads))
        });
    }
}

fn smoothgrad(c: &mut Criterion) {
    let x = workload_image(224, 224);
    let ig = IntegratedGradients::new().steps(25).batch_size(25);
    let params = SmoothGradParams::new().nsamples(25).seed(0);
    c.benchmark_group("smoothgrad")
        .bench_function("ig 224x224x3 25 samples", |b| {
            b.iter(|| ig.get_smoothed_mask(x.view(), &mut grads, &params))
        });
}

fn visualization(c: &mut Criterion) {
    let mask = workload_image(224, 224);
    let mut group = c.benchmark_group("visualize");
    group.bench_function("grayscale 224x224x3", |b| {
        b.iter(|| visualize::grayscale(mask.view(), 99.0))
    });
    group.bench_function("diverging 224x224x3", |b| {
        b.iter(|| visualize::diverging(mask.view(), 99.0))
    });
}

fn blur_ig(c: &mut Criterion) {
    let x = workload_image(112, 112);
    let method = BlurIg::new().max_sigma(25.0).steps(20).batch_size(10);
    c.benchmark_group("blur_ig")
        .bench_function("112x112x3 max_sigma 25, 20 steps, batch 10", |b| {
            b.iter(|| method.get_mask(x.view(), &mut grads))
        });
}

fn grad_cam(c: &mut Criterion) {
    let x = workload_image(224, 224);
    let (values, gradients) = cam_layer();
    c.benchmark_group("grad_cam")
        .bench_function("14x14x512 layer to 224x224x3", |b| {
            b.iter(|| {
                GradCam::new().get_mask(x.view(), &mut |_batch, _keys| {
                    Ok(ModelOutputs::new()
                        .with(OutputKey::ConvolutionLayerValues, values.clone())
                        .with(OutputKey::ConvolutionOutputGradients, gradients.clone()))
                })
            })
        });
}

fn guided_backprop(c: &mut Criterion) {
    let x = workload_image(224, 224);
    // f(x) = sum(x^2) has no ReLU: the guided gradient is 2x.
    let mut guided = |batch: ndarray::ArrayViewD<'_, f32>, _keys: &saliency::ModelRequest<'_>| {
        Ok(ModelOutputs::new().with(OutputKey::GuidedInputOutputGradients, batch.mapv(|v| 2.0 * v)))
    };
    c.benchmark_group("guided_backprop").bench_function("224x224x3", |b| {
        b.iter(|| GuidedBackprop::new().get_mask(x.view(), &mut guided))
    });
}

fn segments(c: &mut Criterion) {
    let x = workload_image(224, 224);
    c.benchmark_group("segments")
        .bench_function("224x224x3 Felzenszwalb, 6 scales, dilated masks", |b| {
            b.iter(|| get_segments_felzenszwalb(x.view()))
        });
}

fn xrai(c: &mut Criterion) {
    let x = workload_image(224, 224);
    let segments = get_segments_felzenszwalb(x.view()).unwrap_or_default();
    let mut group = c.benchmark_group("xrai");
    for (name, algorithm) in [("full", XraiAlgorithm::Full), ("fast", XraiAlgorithm::Fast)] {
        let method = Xrai::new()
            .parameters(XraiParameters::new().algorithm(algorithm))
            .batch_size(25);
        group.bench_function(format!("224x224x3 {name}, 100 steps, batch 25"), |b| {
            b.iter(|| method.get_mask(x.view(), &mut grads))
        });
        // The ranking alone: given segments and base attribution.
        let ranking = method
            .clone()
            .segments(segments.clone())
            .base_attribution(x.mapv(|v| v * v - 0.3));
        group.bench_function(
            format!("224x224x3 {name} ranking, given segments and attribution"),
            |b| b.iter(|| ranking.get_mask(x.view(), &mut grads)),
        );
    }
}

fn guided_ig(c: &mut Criterion) {
    let x = workload_image(224, 224);
    c.benchmark_group("guided_ig")
        .bench_function("224x224x3 200 steps", |b| {
            b.iter(|| GuidedIg::new().get_mask(x.view(), &mut grads))
        });
}

fn occlusion(c: &mut Criterion) {
    let x = workload_image(64, 64);
    let w = occlusion_weights();
    let mut group = c.benchmark_group("occlusion");
    for batch_size in [1, 16] {
        let occ = Occlusion::new().size(15).batch_size(batch_size);
        group.bench_function(format!("64x64x3 window 15 batch {batch_size}"), |b| {
            b.iter(|| occ.get_mask(x.view(), &mut |batch, _| weighted_sums(batch, &w)))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = vanilla, integrated_gradients, smoothgrad, visualization, blur_ig, grad_cam, guided_backprop, guided_ig, occlusion, segments, xrai
}
criterion_main!(benches);
