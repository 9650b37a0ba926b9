//! The benchmark workloads' inputs and near-free models (bench/WORKLOADS.md),
//! shared by `examples/workloads.rs` and `benches/methods.rs`.
#![allow(dead_code)]

use ndarray::{Array2, Array3, Array4, ArrayViewD};
use saliency::{BoxError, ModelOutputs, OutputKey};

/// The workload image's formula (bench/WORKLOADS.md) at coordinates (u, v)
/// of channel c, the ring centred on `centre` with radius `radius`, the blob
/// centred on `blob`; built in f64 and cast.
fn pattern(u: f64, v: f64, c: f64, centre: (f64, f64), radius: f64, blob: (f64, f64)) -> f32 {
    let r = ((u - centre.0).powi(2) + (v - centre.1).powi(2)).sqrt();
    let ring = 0.8 * (-((r - radius) / 6.0).powi(2)).exp();
    let blob = 0.6 * (-((u - blob.0).powi(2) + (v - blob.1).powi(2)) / (2.0 * 25.0 * 25.0)).exp();
    let tex = 0.15 * (0.35 * u + 0.9 * c).sin() * (0.29 * v - 0.5 * c).cos();
    let cells = 0.35 * (0.9 * u + 2.0 * (0.13 * v).sin()).sin() * (0.7 * v + 2.0 * (0.11 * u).cos() + 0.6 * c).sin();
    (ring + blob + tex + cells - 0.15 * c) as f32
}

/// The workload image at h x w x 3 in pixel units: ring and blob placed
/// relative to h and w, every width and frequency fixed in pixels (so a
/// larger image has more, smaller-looking features). At 224 x 224 it is the
/// image of WORKLOADS.md.
pub fn workload_image(h: usize, w: usize) -> Array3<f32> {
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let (hf, wf) = (h as f64, w as f64);
    Array3::from_shape_fn((h, w, 3), |(i, j, c)| {
        pattern(i as f64, j as f64, c as f64, (cy, cx), 0.4 * hf, (0.62 * hf, 0.4 * wf))
    })
}

/// The 224 x 224 workload image drawn at `size` x `size` x 3: the formula at
/// pixel centres mapped onto the 224 grid, u = (i + 0.5) 224 / size - 0.5,
/// so ring width, blob sigma, texture and cell frequencies all scale with
/// the size and every size shows the same picture (XRAI, which segments at
/// 224, finds about the same segments at every size). At 224 the
/// coordinates are exact integers and the image is bit-identical to
/// `workload_image(224, 224)`.
pub fn scaled_workload_image(size: usize) -> Array3<f32> {
    let step = 224.0 / size as f64;
    let at = |i: usize| (i as f64 + 0.5) * step - 0.5;
    let centre = (224.0 - 1.0) / 2.0;
    Array3::from_shape_fn((size, size, 3), |(i, j, c)| {
        pattern(
            at(i),
            at(j),
            c as f64,
            (centre, centre),
            0.4 * 224.0,
            (0.62 * 224.0, 0.4 * 224.0),
        )
    })
}

/// f(x) = sum(x^2): the gradient is 2x.
pub fn grads(batch: ArrayViewD<'_, f32>, _keys: &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f32>, BoxError> {
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
}

/// Grad-CAM's fixed layer: values |sin(0.001 a)|, gradients 0.01 cos(0.0007 a)
/// over a = 0, 1, 2, ... in row-major order of [1, 14, 14, 512].
pub fn cam_layer() -> (Array4<f32>, Array4<f32>) {
    let a = |(b, i, j, k): (usize, usize, usize, usize)| (((b * 14 + i) * 14 + j) * 512 + k) as f64;
    let values = Array4::from_shape_fn((1, 14, 14, 512), |idx| (0.001 * a(idx)).sin().abs() as f32);
    let gradients = Array4::from_shape_fn((1, 14, 14, 512), |idx| (0.0007 * a(idx)).cos() as f32 * 0.01);
    (values, gradients)
}

/// Occlusion's weights: w = cos(0.1 k) over [64, 64, 3] in row-major order.
pub fn occlusion_weights() -> Vec<f32> {
    weights_of_len(64 * 64 * 3)
}

/// w = cos(0.1 k) for k = 0 .. len: the weights of a model over any image,
/// in row-major order.
pub fn weights_of_len(len: usize) -> Vec<f32> {
    (0..len).map(|k| (0.1 * k as f64).cos() as f32).collect()
}

/// f(x) = sum(x * w) per batch element, shape [B, 1]; 32 partial sums so
/// that the compiler vectorises it, as NumPy does.
pub fn weighted_sums(batch: ArrayViewD<'_, f32>, w: &[f32]) -> Result<ModelOutputs<f32>, BoxError> {
    let flat = batch.as_slice().ok_or("batch not contiguous")?;
    let scores: Vec<f32> = flat
        .chunks_exact(w.len())
        .map(|x| {
            let mut acc = [0.0_f32; 32];
            for (xs, ws) in x.chunks_exact(32).zip(w.chunks_exact(32)) {
                for ((a, &xv), &wv) in acc.iter_mut().zip(xs).zip(ws) {
                    *a += xv * wv;
                }
            }
            let tail: f32 = x
                .chunks_exact(32)
                .remainder()
                .iter()
                .zip(w.chunks_exact(32).remainder())
                .map(|(a, b)| a * b)
                .sum();
            acc.iter().sum::<f32>() + tail
        })
        .collect();
    let n = scores.len();
    Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array2::from_shape_vec((n, 1), scores)?))
}
