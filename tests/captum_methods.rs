//! Input x Gradient, GradientSHAP and Guided Grad-CAM against Captum 0.9 on
//! the ONNX fixture networks (references in tests/fixtures/cam, written by
//! tests/reference/cam/generate.py). Errors are the largest absolute
//! difference over the largest reference magnitude, float32 throughout;
//! tolerances about ten times the error measured, never above 1e-4.
#![cfg(feature = "onnx")]

#[path = "common/cam_net.rs"]
mod cam_net;

use cam_net::{Net, json_field, nchw_to_nhwc, nested_numbers, nhwc_to_nchw};
use ndarray::Axis;
use saliency::adapters::candle::Target;
use saliency::{GradientShap, GuidedGradCam, InputXGradient, Interpolation, Saliency};

fn input_x_gradient(net: &str, tol: f64) {
    let net = Net::load(net);
    let masks = net.masks(&InputXGradient::new().batch_size(2));
    let expected = net.reference("input_x_gradient.npy");
    net.check(
        "InputXGradient",
        nhwc_to_nchw(masks.view()).view(),
        expected.view(),
        tol,
    );
}

fn guided_grad_cam(net: &str, interpolation: Interpolation, file: &str, tol: f64) {
    let net = Net::load(net);
    let method = GuidedGradCam::new().interpolation(interpolation).batch_size(2);
    let masks = net.masks(&method);
    let expected = net.reference(file);
    net.check(file, nhwc_to_nchw(masks.view()).view(), expected.view(), tol);
}

/// The draws Captum made for image `i` (recorded by the generator).
fn draws(net: &Net, image: usize) -> Vec<(usize, f64)> {
    let shap = json_field(&net.meta, "GradientShap");
    let all = nested_numbers(json_field(shap, "draws"));
    let per_image = all.len() / 2 / net.classes.len();
    all.chunks(2)
        .skip(image * per_image)
        .take(per_image)
        .map(|p| (p[0] as usize, p[1]))
        .collect()
}

/// GradientSHAP with Captum's own draws: the same result up to float32.
fn gradient_shap_exact(net: &str, tol: f64) {
    let net = Net::load(net);
    let baselines = nchw_to_nhwc(net.reference("shap_baselines.npy").view());
    let expected = net.reference("gradient_shap.npy");
    for (i, &class) in net.classes.iter().enumerate() {
        let d = draws(&net, i);
        let method = GradientShap::new()
            .baselines(baselines.clone())
            .samples(d.len())
            .draws(d)
            .batch_size(8);
        let mut model = net.model(Target::class(class));
        let mask = method
            .get_mask(net.images.index_axis(Axis(0), i), &mut model.as_fn())
            .unwrap()
            .insert_axis(Axis(0));
        let ours = nhwc_to_nchw(mask.view());
        net.check(
            &format!("GradientShap (Captum's draws), image {i}"),
            ours.index_axis(Axis(0), 0),
            expected.index_axis(Axis(0), i),
            tol,
        );
    }
}

/// GradientSHAP with its own seeded draws against the expectation over the
/// draws (the generator's mean of 4000 samples, with each element's
/// one-sample deviation `sd`). Each element's difference in units of its
/// standard error `sd * sqrt(1 / n + 1 / 4000)` is `z`; the bound is on the
/// largest `|z|` over the elements. Measured with seed 2024 and n = 64:
/// 5.33 (vgg, 6 144 elements) and 4.66 (resnet, 13 824). The tails are
/// heavier than normal (each sample is one of 3 baselines at a uniform
/// alpha, so the mean of 64 is still skewed), hence a bound of 8 rather
/// than the 5 a normal union bound would give; a wrong estimator (a
/// missing `x - b` factor, `alpha` applied to the baseline) is off by
/// tens of standard errors.
fn gradient_shap_statistical(net: &str, samples: usize, z_max: f64) {
    let net = Net::load(net);
    let baselines = nchw_to_nhwc(net.reference("shap_baselines.npy").view());
    let method = GradientShap::new()
        .baselines(baselines)
        .samples(samples)
        .seed(2024)
        .batch_size(32);
    let masks = net.masks(&method);
    let ours = nhwc_to_nchw(masks.view());
    let (mean, sd) = (
        net.reference("gradient_shap_mean.npy"),
        net.reference("gradient_shap_sd.npy"),
    );
    let scale = (1.0 / samples as f64 + 1.0 / 4000.0).sqrt();
    let z: Vec<f64> = ours
        .iter()
        .zip(mean.iter())
        .zip(sd.iter())
        .map(|((&o, &m), &s)| {
            let d = (f64::from(o) - f64::from(m)).abs();
            if s > 0.0 { d / (f64::from(s) * scale) } else { d * 1e6 }
        })
        .collect();
    let worst = z.iter().copied().fold(0.0_f64, f64::max);
    println!(
        "{} GradientShap ({samples} seeded samples): largest |z| {worst:.2} (bound {z_max})",
        net.name
    );
    assert!(worst <= z_max, "{}: largest |z| {worst:.2} over {z_max}", net.name);
}

#[test]
fn input_x_gradient_matches_captum_vgg() {
    input_x_gradient("vgg", 4e-6);
}

#[test]
fn input_x_gradient_matches_captum_resnet() {
    input_x_gradient("resnet", 4e-6);
}

#[test]
fn guided_grad_cam_matches_captum_vgg() {
    guided_grad_cam("vgg", Interpolation::Nearest, "guided_grad_cam.npy", 1e-5);
    guided_grad_cam("vgg", Interpolation::Bilinear, "guided_grad_cam_bilinear.npy", 1e-5);
}

#[test]
fn guided_grad_cam_matches_captum_resnet() {
    guided_grad_cam("resnet", Interpolation::Nearest, "guided_grad_cam.npy", 1e-5);
    guided_grad_cam("resnet", Interpolation::Bilinear, "guided_grad_cam_bilinear.npy", 1e-5);
}

#[test]
fn gradient_shap_with_captums_draws_matches_captum_vgg() {
    gradient_shap_exact("vgg", 1e-5);
}

#[test]
fn gradient_shap_with_captums_draws_matches_captum_resnet() {
    gradient_shap_exact("resnet", 1e-5);
}

#[test]
fn gradient_shap_seeded_is_within_its_standard_error_vgg() {
    gradient_shap_statistical("vgg", 64, 8.0);
}

#[test]
fn gradient_shap_seeded_is_within_its_standard_error_resnet() {
    gradient_shap_statistical("resnet", 64, 8.0);
}
