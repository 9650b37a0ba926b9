//! The ONNX fixture networks (tests/fixtures/onnx, written by
//! tests/reference/onnx/generate.py; its README says what each file is)
//! against onnxruntime, PyTorch and Captum: logits, input gradients, Vanilla,
//! Guided Backprop, Grad-CAM, Occlusion, and Integrated Gradients with the
//! reference's rule.
//!
//! Each comparison is the largest absolute difference divided by the largest
//! reference magnitude. Every tolerance is about ten times the error
//! measured (float32 throughout), never above the 1e-4 of the acceptance.
//!
//! The per-image methods run as one multi-image call on the fixtures' 2-image
//! batch, each image with its own class, and that call must equal one-image
//! calls with each image's class.
#![cfg(feature = "onnx")]

#[path = "common/cam_net.rs"]
mod cam_net;

use cam_net::{Net, json_field, json_string, nhwc_to_nchw, number, numbers};
use candle_core::{Device, Tensor};
use ndarray::ArrayD;
use saliency::adapters::candle::Target;
use saliency::adapters::onnx::{OnnxError, OnnxGraph};
use saliency::{GradCam, GuidedBackprop, IntegratedGradients, Occlusion, Saliency, SaliencyError, VanillaGradients};

fn logits(net: &str, file: &str, tol: f64) {
    let net = Net::load_from(net, "onnx");
    let graph = OnnxGraph::from_file(net.onnx.join("model.onnx")).unwrap();
    let x = Tensor::from_slice(net.input.as_slice().unwrap(), net.input.shape(), &Device::Cpu).unwrap();
    let y = graph.forward(&x).unwrap();
    let y = ArrayD::from_shape_vec(y.dims(), y.flatten_all().unwrap().to_vec1::<f32>().unwrap()).unwrap();
    net.check(&format!("logits vs {file}"), y.view(), net.reference(file).view(), tol);
}

/// VanillaGradients (two images per model call, so one call holds both
/// classes) against `file`: `grad_input.npy` (PyTorch's input gradient of
/// each image's class) or `saliency.npy` (Captum's Saliency with
/// `abs=False`, the same quantity).
fn vanilla(net: &str, file: &str, tol: f64) {
    let net = Net::load_from(net, "onnx");
    let masks = net.masks(&VanillaGradients::new().batch_size(2));
    net.check(
        &format!("VanillaGradients vs {file}"),
        nhwc_to_nchw(masks.view()).view(),
        net.reference(file).view(),
        tol,
    );
}

/// Guided Backprop against Captum's GuidedBackprop (which overrides every
/// `nn.ReLU`; the generator checked they are the graph's Relu nodes); a net
/// without a Relu node must be refused with the crate's error.
fn guided(net: &str, tol: Option<f64>) {
    let net = Net::load_from(net, "onnx");
    let relus = number(json_field(&net.meta, "relu_nodes"));
    let has_reference = net.has_reference("guided_backprop.npy");
    assert_eq!(
        has_reference,
        relus > 0.0,
        "{}: a reference exactly for nets with a Relu",
        net.name
    );
    assert_eq!(
        has_reference,
        tol.is_some(),
        "{}: a tolerance exactly for nets with a Relu",
        net.name
    );
    let method = GuidedBackprop::new().batch_size(2);
    match tol {
        Some(tol) => {
            let masks = net.masks(&method);
            net.check(
                "GuidedBackprop vs guided_backprop.npy",
                nhwc_to_nchw(masks.view()).view(),
                net.reference("guided_backprop.npy").view(),
                tol,
            );
        }
        None => {
            let mut model = net.model(Target::classes(net.classes.clone()));
            let err = method.get_masks(net.images.view(), &mut model.as_fn()).unwrap_err();
            let SaliencyError::Model(source) = &err else {
                panic!("{}: expected the model's error, got {err}", net.name);
            };
            assert!(
                matches!(source.downcast_ref::<OnnxError>(), Some(OnnxError::NoRelu)),
                "{}: expected NoRelu, got {source}",
                net.name
            );
        }
    }
}

/// Grad-CAM against Captum's LayerGradCam on the same layer. Captum's map is
/// raw (`relu_attributions=False`, no resize, no normalisation); the crate's
/// Grad-CAM always applies the ReLU and, by default, normalises to a maximum
/// of 1, resizes to the input and repeats into 3 channels. So ours runs with
/// `should_resize(false)` (no normalisation, no resize) and
/// `three_dims(false)`, and is compared with `max(Captum's map, 0)`. Both
/// weight each channel by its gradient's mean over the layer's height and
/// width and sum over channels.
fn grad_cam(net: &str, tol: f64) {
    let net = Net::load_from(net, "onnx");
    let lgc = json_field(&net.meta, "LayerGradCam");
    assert!(json_field(lgc, "relu_attributions").starts_with("false"));
    assert!(json_field(lgc, "attribute_to_layer_input").starts_with("false"));
    let method = GradCam::new().should_resize(false).three_dims(false).batch_size(2);
    let masks = net.masks(&method);
    let captum = net.reference("gradcam.npy");
    let (n, h, w) = (captum.shape()[0], captum.shape()[2], captum.shape()[3]);
    assert_eq!(captum.shape()[1], 1);
    let expected = captum
        .mapv(|v| v.max(0.0))
        .into_shape_with_order(vec![n, h, w])
        .unwrap();
    net.check("GradCam vs max(gradcam.npy, 0)", masks.view(), expected.view(), tol);
}

/// How many of the windows starting at `0, stride, ...` up to `extent - size`
/// cover each position along one axis.
fn coverage(extent: usize, size: usize, stride: usize) -> Vec<usize> {
    let mut count = vec![0; extent];
    for start in (0..=extent - size).step_by(stride) {
        count[start..start + size].iter_mut().for_each(|c| *c += 1);
    }
    count
}

/// Occlusion against Captum's Occlusion.
///
/// Captum's arguments map to ours: `sliding_window_shapes=(C, k, k)` (the
/// window spans all channels, as ours does) is `size(k)`; `strides=(C, s, s)`
/// (one position along the channels) is `stride(s)`; `baselines=b` is
/// `value(b)`. Both place windows at `0, s, 2s, ...` up to `side - k`
/// (Captum's `floor((side - k) / s) + 1` positions) and take
/// `f(x) - f(x occluded)` for the image's own class. Where they differ: the
/// reference (and the crate) sums that difference over the windows covering
/// a pixel, Captum averages it. So ours divided by the number of covering
/// windows (rows times columns) is compared with Captum's. That reconciles
/// every pixel some window covers; a pixel no window covers is 0 in ours and
/// undefined (0 / 0) in Captum's. The fixtures' sides are covered exactly,
/// which is asserted, so every pixel is compared.
fn occlusion(net: &str, tol: f64) {
    let net = Net::load_from(net, "onnx");
    let occ = json_field(&net.meta, "Occlusion");
    let window: Vec<usize> = numbers(json_field(occ, "sliding_window_shapes"));
    let strides: Vec<usize> = numbers(json_field(occ, "strides"));
    let value = number(json_field(occ, "baselines"));
    let (c, h, w) = (net.input.shape()[1], net.input.shape()[2], net.input.shape()[3]);
    assert!(
        window[0] == c && strides[0] >= c,
        "one window position along the channels"
    );
    assert!(
        window[1] == window[2] && strides[1] == strides[2],
        "square windows, equal strides"
    );
    let (size, stride) = (window[1], strides[1]);
    let method = Occlusion::new().size(size).stride(stride).value(value).batch_size(64);
    let masks = net.masks(&method);
    let (rows, cols) = (coverage(h, size, stride), coverage(w, size, stride));
    assert!(
        rows.iter().chain(&cols).all(|&n| n > 0),
        "{}: every pixel is covered",
        net.name
    );
    let mut averaged = nhwc_to_nchw(masks.view());
    for ((_, _, r, q), v) in averaged
        .view_mut()
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap()
        .indexed_iter_mut()
    {
        *v /= (rows[r] * cols[q]) as f32;
    }
    net.check(
        "Occlusion / covering windows vs occlusion.npy",
        averaged.view(),
        net.reference("occlusion.npy").view(),
        tol,
    );
}

/// Integrated Gradients with the reference's rule (zero baseline, the
/// fixture's step count, path points `alpha * x`) against the generator's own
/// computation of that rule from PyTorch gradients.
fn integrated_gradients(net: &str, tol: f64) {
    let net = Net::load_from(net, "onnx");
    let ig = json_field(&net.meta, "ig_pair_rule");
    let steps = number(json_field(ig, "steps")) as usize;
    assert_eq!(json_string(json_field(ig, "baseline")), "zeros");
    let method = IntegratedGradients::new().steps(steps).batch_size(2 * steps);
    let masks = net.masks(&method);
    net.check(
        "IntegratedGradients vs ig_pair_rule.npy",
        nhwc_to_nchw(masks.view()).view(),
        net.reference("ig_pair_rule.npy").view(),
        tol,
    );
}

/// Tolerances of one net (`guided`: `None` for a net without a Relu node).
struct Tol {
    logits_ort: f64,
    logits_torch: f64,
    grad_input: f64,
    saliency: f64,
    guided: Option<f64>,
    grad_cam: f64,
    occlusion: f64,
    ig: f64,
}

/// mobilenet_v3 and its opset-13 export: the same network, with the same
/// errors measured.
const MOBILENET_V3: Tol = Tol {
    logits_ort: 4e-6,   // measured 3.8e-7
    logits_torch: 4e-6, // measured 3.5e-7
    grad_input: 8e-6,   // measured 8.0e-7
    saliency: 8e-6,     // measured 8.0e-7
    guided: Some(2e-5), // measured 1.1e-6
    grad_cam: 5e-6,     // measured 4.3e-7
    occlusion: 6e-5,    // measured 5.7e-6
    ig: 8e-6,           // measured 7.3e-7
};

macro_rules! parity {
    ($($net:ident: $tol:expr;)*) => {$(
        mod $net {
            use super::*;

            const TOL: Tol = $tol;

            #[test]
            fn logits_match_onnxruntime() {
                logits(stringify!($net), "logits_ort.npy", TOL.logits_ort);
            }

            #[test]
            fn logits_match_pytorch() {
                logits(stringify!($net), "logits_torch.npy", TOL.logits_torch);
            }

            #[test]
            fn input_gradients_match_pytorch() {
                vanilla(stringify!($net), "grad_input.npy", TOL.grad_input);
            }

            #[test]
            fn vanilla_matches_captum_saliency() {
                vanilla(stringify!($net), "saliency.npy", TOL.saliency);
            }

            #[test]
            fn guided_backprop_matches_captum_or_needs_a_relu() {
                guided(stringify!($net), TOL.guided);
            }

            #[test]
            fn grad_cam_matches_captum() {
                grad_cam(stringify!($net), TOL.grad_cam);
            }

            #[test]
            fn occlusion_matches_captum_averaged() {
                occlusion(stringify!($net), TOL.occlusion);
            }

            #[test]
            fn integrated_gradients_match_the_reference_rule() {
                integrated_gradients(stringify!($net), TOL.ig);
            }
        }
    )*};
}

parity! {
    resnet: Tol {
        logits_ort: 4e-6, // measured 3.2e-7
        logits_torch: 2e-6, // measured 1.9e-7
        grad_input: 4e-6, // measured 3.7e-7
        saliency: 4e-6, // measured 3.7e-7
        guided: Some(2e-6), // measured 1.6e-7
        grad_cam: 2e-6, // measured 1.9e-7
        occlusion: 3e-5, // measured 3.0e-6
        ig: 3e-6, // measured 2.1e-7
    };
    vgg: Tol {
        logits_ort: 5e-6, // measured 4.6e-7
        logits_torch: 4e-6, // measured 3.4e-7
        grad_input: 5e-6, // measured 4.9e-7
        saliency: 5e-6, // measured 4.9e-7
        guided: Some(2e-6), // measured 1.8e-7
        grad_cam: 4e-6, // measured 3.8e-7
        occlusion: 2e-5, // measured 1.6e-6
        ig: 2e-6, // measured 1.1e-7
    };
    mobilenet_v2: Tol {
        logits_ort: 2e-6, // measured 1.4e-7
        logits_torch: 3e-6, // measured 2.1e-7
        grad_input: 4e-6, // measured 3.2e-7
        saliency: 4e-6, // measured 3.2e-7
        guided: None, // no Relu node
        grad_cam: 2e-5, // measured 1.1e-6
        occlusion: 1e-4, // measured 9.7e-6
        ig: 3e-6, // measured 2.5e-7
    };
    mobilenet_v3: MOBILENET_V3;
    mobilenet_v3_opset13: MOBILENET_V3;
    efficientnet: Tol {
        logits_ort: 4e-6, // measured 3.2e-7
        logits_torch: 4e-6, // measured 3.5e-7
        grad_input: 8e-6, // measured 7.2e-7
        saliency: 8e-6, // measured 7.2e-7
        guided: None, // no Relu node
        grad_cam: 2e-5, // measured 1.2e-6
        // Measured 1.5e-5; the ceiling, 7x: the window differences are 1/25 of
        // the logits, so the logits' float32 rounding (3e-7) weighs 25 times more.
        occlusion: 1e-4,
        ig: 4e-6, // measured 4.0e-7
    };
    densenet: Tol {
        logits_ort: 3e-6, // measured 2.1e-7
        logits_torch: 3e-6, // measured 2.6e-7
        grad_input: 3e-6, // measured 2.5e-7
        saliency: 3e-6, // measured 2.5e-7
        guided: Some(3e-6), // measured 2.9e-7
        grad_cam: 3e-6, // measured 2.4e-7
        occlusion: 3e-5, // measured 2.3e-6
        ig: 3e-6, // measured 2.5e-7
    };
    conv_attention: Tol {
        logits_ort: 2e-6, // measured 1.8e-7
        logits_torch: 3e-6, // measured 2.7e-7
        grad_input: 6e-6, // measured 5.2e-7
        saliency: 6e-6, // measured 5.2e-7
        guided: None, // no Relu node
        grad_cam: 4e-6, // measured 4.0e-7
        occlusion: 3e-5, // measured 3.0e-6
        ig: 9e-6, // measured 8.1e-7
    };
}
