//! The burn adapter: input gradients against finite differences, the same
//! small CNN built in candle and in burn giving the same masks for all nine
//! methods, guided gradients on a branching network against candle's guided
//! ReLU, per-image targets, and every misuse an error.
#![cfg(feature = "burn")]

mod common;

use std::cell::Cell;

use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{DType, Device, Tensor, TensorCreationOptions, TensorData};
use common::assert_close;
use ndarray::{Array1, Array3, Array4, ArrayD, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use saliency::adapters::burn::{BurnAdapterError, BurnModel, ForwardContext, ReluMode, Target};
use saliency::{
    ActivationLayout, BlurIg, CoreSaliency, GradCam, GuidedBackprop, GuidedIg, IntegratedGradients, ModelOutputs,
    Occlusion, OutputKey, Saliency, SaliencyError, SmoothGrad, SmoothGradParams, VanillaGradients, Xrai,
    XraiParameters,
};

const SIDE: usize = 16;
const CLASSES: usize = 3;

/// The weights of the test CNN: conv 3->4 (3x3, padding 1), ReLU, 2x2
/// max-pool, conv 4->6 (the explained layer), ReLU, global mean,
/// linear 6->3. Drawn once, used by both frameworks.
struct Weights {
    c1: (Vec<f64>, [usize; 4]),
    b1: Vec<f64>,
    c2: (Vec<f64>, [usize; 4]),
    b2: Vec<f64>,
    fc: (Vec<f64>, [usize; 2]),
    fcb: Vec<f64>,
}

impl Weights {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |n: usize, std: f64| -> Vec<f64> {
            let normal = Normal::new(0.0, std).unwrap();
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        Weights {
            c1: (draw(4 * 3 * 9, 0.4), [4, 3, 3, 3]),
            b1: draw(4, 0.1),
            c2: (draw(6 * 4 * 9, 0.3), [6, 4, 3, 3]),
            b2: draw(6, 0.1),
            fc: (draw(6 * CLASSES, 0.8), [6, CLASSES]),
            fcb: draw(CLASSES, 0.1),
        }
    }
}

fn options(dtype: DType) -> TensorCreationOptions {
    TensorCreationOptions::new(Device::flex()).with_dtype(dtype)
}

fn bt<const D: usize>(values: &[f64], shape: [usize; D], dtype: DType) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), options(dtype))
}

/// The CNN as a burn forward closure (channels-first input).
fn burn_cnn(w: &Weights, dtype: DType) -> impl FnMut(Tensor<4>, &ForwardContext) -> Tensor<2> + use<> {
    let c1 = bt(&w.c1.0, w.c1.1, dtype);
    let b1 = bt(&w.b1, [4], dtype);
    let c2 = bt(&w.c2.0, w.c2.1, dtype);
    let b2 = bt(&w.b2, [6], dtype);
    let fc = bt(&w.fc.0, w.fc.1, dtype);
    let fcb = bt(&w.fcb, [1, CLASSES], dtype);
    move |x: Tensor<4>, ctx: &ForwardContext| {
        let same = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let h = ctx.relu(conv2d(x, c1.clone(), Some(b1.clone()), same.clone()));
        let h = max_pool2d(h, MaxPoolOptions::new([2, 2]));
        let h = ctx.layer(conv2d(h, c2.clone(), Some(b2.clone()), same));
        let pooled = ctx.relu(h).mean_dim(3).mean_dim(2).flatten::<2>(1, 3);
        pooled.matmul(fc.clone()) + fcb.clone()
    }
}

fn image(seed: u64) -> Array3<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let u = Uniform::new(0.0, 1.0).unwrap();
    Array3::from_shape_fn((SIDE, SIDE, 3), |_| u.sample(&mut rng))
}

fn get(out: &ModelOutputs<f64>, key: OutputKey) -> ArrayD<f64> {
    out.get(key).unwrap_or_else(|| panic!("{key} missing")).clone()
}

fn source_of<T: std::error::Error + 'static>(err: &SaliencyError) -> &T {
    assert!(matches!(err, SaliencyError::Model(_)), "{err}");
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<T>())
        .unwrap_or_else(|| panic!("unexpected source: {err}"))
}

// ---------------------------------------------------------------------------
// Gradients against central finite differences, in f64.

#[test]
fn input_gradients_match_finite_differences() {
    let w = Weights::new(1);
    let mut model = BurnModel::<f64, _, 4>::new(burn_cnn(&w, DType::F64), Target::class(1)).channels_first(true);
    let batch = image(2).insert_axis(Axis(0)).into_dyn();
    let out = model.call(&batch, &[OutputKey::InputOutputGradients]).unwrap();
    let grads = get(&out, OutputKey::InputOutputGradients);
    assert_eq!(grads.shape(), [1, SIDE, SIDE, 3]);
    // Central differences: truncation error ~ eps^2 |f'''| (~1e-12 here),
    // rounding ~ 1e-16 |f| / eps (~1e-10); a ReLU or max-pool kink inside
    // [x - eps, x + eps] would break it, and none is crossed at this eps.
    let eps = 1e-6;
    let mut numeric = ArrayD::<f64>::zeros(batch.shape());
    for (idx, slot) in numeric.indexed_iter_mut() {
        let mut value_at = |delta: f64| {
            let mut x = batch.clone();
            x[idx.clone()] += delta;
            let out = model.call(&x, &[OutputKey::OutputLayerValues]).unwrap();
            get(&out, OutputKey::OutputLayerValues)[[0]]
        };
        *slot = (value_at(eps) - value_at(-eps)) / (2.0 * eps);
    }
    // Measured 7.0e-9.
    assert_close(
        "burn input gradients vs finite differences",
        grads.view(),
        numeric.view(),
        3e-8,
    );
}

#[test]
fn layer_gradients_match_finite_differences_through_the_probe() {
    // The layer's gradient, checked by perturbing the layer's output inside
    // the forward pass (a fixed offset added after the marked layer).
    let w = Weights::new(3);
    let batch = image(4).insert_axis(Axis(0)).into_dyn();
    let keys = [OutputKey::ConvolutionLayerValues, OutputKey::ConvolutionOutputGradients];
    let mut model = BurnModel::<f64, _, 4>::new(burn_cnn(&w, DType::F64), Target::class(2)).channels_first(true);
    let out = model.call(&batch, &keys).unwrap();
    assert_eq!(out.layout(), Some(ActivationLayout::ChannelsFirst));
    let values = get(&out, keys[0]);
    let grads = get(&out, keys[1]);
    assert_eq!(values.shape(), [1, 6, SIDE / 2, SIDE / 2]);
    assert_eq!(grads.shape(), values.shape());
    // d target / d layer = relu'(layer) * fc[:, 2] / (H W) for this head.
    let cells = ((SIDE / 2) * (SIDE / 2)) as f64;
    let expected = ArrayD::from_shape_fn(values.shape(), |idx| {
        let active = if values[idx.clone()] > 0.0 { 1.0 } else { 0.0 };
        active * w.fc.0[idx[1] * CLASSES + 2] / cells
    });
    // Measured 0 to 1.4e-17.
    assert_close("burn layer gradients by hand", grads.view(), expected.view(), 1e-15);
}

// ---------------------------------------------------------------------------
// The same CNN in candle and in burn: the same masks for every method.

#[cfg(feature = "candle")]
mod candle_side {
    use super::*;
    use candle_core::{Device as CDevice, Tensor as CTensor};
    use saliency::adapters::candle::{CandleModel, ForwardContext as CContext, Target as CTarget};
    use saliency::adapters::candle_ops::max_pool2d;

    fn ct(values: &[f64], shape: &[usize]) -> CTensor {
        let v: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        CTensor::from_vec(v, shape, &CDevice::Cpu).unwrap()
    }

    pub fn candle_cnn(w: &Weights) -> impl FnMut(&CTensor, &CContext) -> candle_core::Result<CTensor> + use<> {
        let c1 = ct(&w.c1.0, &w.c1.1);
        let b1 = ct(&w.b1, &[1, 4, 1, 1]);
        let c2 = ct(&w.c2.0, &w.c2.1);
        let b2 = ct(&w.b2, &[1, 6, 1, 1]);
        let fc = ct(&w.fc.0, &w.fc.1);
        let fcb = ct(&w.fcb, &[1, CLASSES]);
        move |x: &CTensor, ctx: &CContext| {
            // candle_ops' max-pool: candle's own backward scales the
            // gradient by 1 / (kernel area), PyTorch's and burn's do not.
            let h = ctx.relu(&x.conv2d(&c1, 1, 1, 1, 1)?.broadcast_add(&b1)?)?;
            let h = max_pool2d(&h, (2, 2), (2, 2), [0, 0, 0, 0], false)?;
            let h = ctx.layer(&h.conv2d(&c2, 1, 1, 1, 1)?.broadcast_add(&b2)?)?;
            ctx.relu(&h)?.mean((2, 3))?.matmul(&fc)?.broadcast_add(&fcb)
        }
    }

    pub fn candle_model(
        w: &Weights,
        target: CTarget,
    ) -> impl FnMut(ndarray::ArrayViewD<'_, f32>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f32>, saliency::BoxError>
    {
        let mut model = CandleModel::<f32, _>::new(candle_cnn(w), target).channels_first(true);
        move |batch, request| Ok(model.call_request(batch, request)?)
    }
}

/// The nine methods with small settings.
fn nine_methods() -> Vec<(&'static str, Box<dyn CoreSaliency<f32>>)> {
    vec![
        ("Vanilla", Box::new(VanillaGradients::new())),
        (
            "SmoothGrad",
            Box::new(SmoothGrad::new(
                VanillaGradients::new(),
                SmoothGradParams::new().nsamples(6).seed(5).batch_size(6),
            )),
        ),
        ("IG", Box::new(IntegratedGradients::new().steps(12).batch_size(12))),
        ("Guided Backprop", Box::new(GuidedBackprop::new())),
        ("Occlusion", Box::new(Occlusion::new().size(4).stride(2).batch_size(64))),
        ("Grad-CAM", Box::new(GradCam::new())),
        (
            "Blur IG",
            Box::new(BlurIg::new().max_sigma(4.0).steps(12).batch_size(12)),
        ),
        ("Guided IG", Box::new(GuidedIg::new().steps(12))),
        (
            "XRAI",
            Box::new(Xrai::new().parameters(XraiParameters::new().steps(12)).batch_size(12)),
        ),
    ]
}

#[cfg(feature = "candle")]
#[test]
fn candle_and_burn_give_the_same_masks_for_all_nine_methods() {
    use saliency::adapters::candle::Target as CTarget;
    let w = Weights::new(11);
    let x = image(12).mapv(|v| v as f32);
    // Class 1: for class 0 every channel the head weighs positively is
    // dead after the second ReLU, so both guided masks are zero.
    let mut burn_model = BurnModel::<f32, _, 4>::new(burn_cnn(&w, DType::F32), Target::class(1)).channels_first(true);
    let mut candle_model = candle_side::candle_model(&w, CTarget::class(1));
    // Measured (f32 kernels of two frameworks, relative to the largest
    // value), for classes 1 / 2: Vanilla 1.5e-7 / 1.0e-7, SmoothGrad
    // 1.0e-7 / 9.9e-8, IG 1.7e-7 / 1.8e-7, Guided Backprop 9.2e-8 / 1.2e-7,
    // Grad-CAM 2.3e-7 / 6.4e-7, Blur IG 1.2e-7 / 1.5e-7, Guided IG
    // 1.1e-7 / 7.3e-8, XRAI 0 / 6.7e-8; Occlusion 3.7e-6 / 2.8e-6, whose
    // masks are differences of two logits (the cancellation leaves the
    // logits' f32 rounding relatively larger).
    let tolerance_of = |name: &str| if name == "Occlusion" { 2e-5 } else { 2e-6 };
    let mut failures = Vec::new();
    for (name, method) in nine_methods() {
        let from_burn = method.get_mask(x.view(), &mut burn_model.as_fn()).unwrap();
        let from_candle = method.get_mask(x.view(), &mut candle_model).unwrap();
        assert_eq!(from_burn.shape(), from_candle.shape(), "{name}");
        let mass = |m: &ArrayD<f32>| m.iter().map(|v| f64::from(v.abs())).sum::<f64>();
        let err = common::rel_err(from_burn.mapv(f64::from).view(), from_candle.mapv(f64::from).view());
        let tolerance = tolerance_of(name);
        println!(
            "parity burn vs candle {name}: relative error {err:.3e} (tolerance {tolerance:.0e}), mass {:.4e} / {:.4e}",
            mass(&from_burn),
            mass(&from_candle)
        );
        if !(err <= tolerance && mass(&from_candle) > 0.0) {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "differ or all zero: {failures:?}");
}

/// A network whose ReLUs share inputs with other branches: a ReLU output
/// used twice, and a tensor used both by a ReLU and past it. The guided
/// rule must see the sum of every path's gradient at each ReLU.
#[cfg(feature = "candle")]
#[test]
fn guided_gradients_on_a_branching_network_match_candles_guided_relu() {
    use candle_core::{Device as CDevice, Tensor as CTensor};
    use saliency::adapters::candle::{CandleModel, ForwardContext as CContext, Target as CTarget};
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let normal = Normal::new(0.0, 0.7).unwrap();
    let mut draw = |n: usize| -> Vec<f64> { (0..n).map(|_| normal.sample(&mut rng)).collect() };
    let (w1, w2, w3) = (draw(12 * 8), draw(8 * 8), draw(8 * 2));
    let b = |v: &[f64], s: [usize; 2]| bt(v, s, DType::F64);
    let (bw1, bw2, bw3) = (b(&w1, [12, 8]), b(&w2, [8, 8]), b(&w3, [8, 2]));
    let burn_forward = move |x: Tensor<4>, ctx: &ForwardContext| {
        let t = x.flatten::<2>(1, 3).matmul(bw1.clone());
        let y1 = ctx.relu(t.clone());
        let u = y1.clone().matmul(bw2.clone()) + y1 - t.clone();
        let y2 = ctx.relu(u.clone());
        (y2 + u * 0.5 + t).matmul(bw3.clone())
    };
    let c = |v: &[f64], s: (usize, usize)| CTensor::from_vec(v.to_vec(), s, &CDevice::Cpu).unwrap();
    let (cw1, cw2, cw3) = (c(&w1, (12, 8)), c(&w2, (8, 8)), c(&w3, (8, 2)));
    let candle_forward = move |x: &CTensor, ctx: &CContext| {
        let t = x.flatten_from(1)?.matmul(&cw1)?;
        let y1 = ctx.relu(&t)?;
        let u = ((y1.matmul(&cw2)? + &y1)? - &t)?;
        let y2 = ctx.relu(&u)?;
        ((y2 + (&u * 0.5)?)? + &t)?.matmul(&cw3)
    };
    let batch = Array4::from_shape_fn((3, 2, 2, 3), |(n, i, j, c)| {
        ((n * 7 + i * 5 + j * 3 + c) % 11) as f64 / 5.0 - 1.0
    });
    let key = [OutputKey::GuidedInputOutputGradients];
    let mut burn_model = BurnModel::<f64, _, 4>::new(burn_forward, Target::class(1));
    let mut candle_model = CandleModel::<f64, _>::new(candle_forward, CTarget::class(1));
    let from_burn = get(&burn_model.call(&batch, &key).unwrap(), key[0]);
    let from_candle = get(&candle_model.call(&batch, &key).unwrap(), key[0]);
    assert!(from_candle.iter().any(|v| *v != 0.0));
    // Measured 1.1e-16 (f64, summation order).
    assert_close(
        "burn staged guided gradients vs candle guided ReLU",
        from_burn.view(),
        from_candle.view(),
        1e-14,
    );
}

// ---------------------------------------------------------------------------
// Per-image targets.

#[test]
fn per_image_targets_in_one_multi_image_call() {
    let w = Weights::new(5);
    let images = ndarray::stack(Axis(0), &[image(6).view(), image(7).view(), image(8).view()])
        .unwrap()
        .mapv(|v| v as f32);
    let classes = vec![2, 0, 1];
    let methods: Vec<(&str, Box<dyn CoreSaliency<f32>>)> = vec![
        ("IG", Box::new(IntegratedGradients::new().steps(6).batch_size(12))),
        ("Guided Backprop", Box::new(GuidedBackprop::new())),
        ("Grad-CAM", Box::new(GradCam::new())),
    ];
    for (name, method) in methods {
        let mut all = BurnModel::<f32, _, 4>::new(burn_cnn(&w, DType::F32), Target::classes(classes.clone()))
            .channels_first(true);
        let masks = method.get_masks(images.view(), &mut all.as_fn()).unwrap();
        for (i, &class) in classes.iter().enumerate() {
            let mut one =
                BurnModel::<f32, _, 4>::new(burn_cnn(&w, DType::F32), Target::class(class)).channels_first(true);
            let alone = method
                .get_mask(images.index_axis(Axis(0), i), &mut one.as_fn())
                .unwrap();
            // Measured 0 to 6e-8 (rows batched differently).
            assert_close(
                &format!("burn per-image target {name} image {i}"),
                masks.index_axis(Axis(0), i).mapv(f64::from).view().into_dyn(),
                alone.mapv(f64::from).view().into_dyn(),
                1e-6,
            );
        }
        // The classes differ, so a wrong target per image would show.
        let mut first_class =
            BurnModel::<f32, _, 4>::new(burn_cnn(&w, DType::F32), Target::class(classes[0])).channels_first(true);
        let wrong = method
            .get_mask(images.index_axis(Axis(0), 1), &mut first_class.as_fn())
            .unwrap();
        assert!(
            common::rel_err(
                masks.index_axis(Axis(0), 1).mapv(f64::from).view().into_dyn(),
                wrong.mapv(f64::from).view().into_dyn()
            ) > 1e-2,
            "{name}: image 1 explained for image 0's class"
        );
    }
}

#[test]
fn a_select_target_and_a_model_that_ignores_the_input() {
    // A target summing two logits: its gradient is the sum of theirs.
    let w = Weights::new(9);
    let batch = image(10).insert_axis(Axis(0)).into_dyn();
    let key = [OutputKey::InputOutputGradients];
    let grad_of = |target: Target| {
        let mut m = BurnModel::<f64, _, 4>::new(burn_cnn(&w, DType::F64), target).channels_first(true);
        get(&m.call(&batch, &key).unwrap(), key[0])
    };
    let both = grad_of(Target::select(|out: Tensor<2>| {
        out.narrow(1, 0, 2).sum_dim(1).flatten::<1>(0, 1)
    }));
    let sum = grad_of(Target::class(0)) + grad_of(Target::class(1));
    // Measured 1.2e-16.
    assert_close("burn select target", both.view(), sum.view(), 1e-14);

    // A constant model: zero gradients, no burn panic on the backward pass.
    let constant = bt(&[1.0, 2.0], [1, 2], DType::F64);
    let mut model = BurnModel::<f64, _, 2>::new(
        move |x: Tensor<2>, _: &ForwardContext| constant.clone() + x.sum_dim(1) * 0.0,
        Target::class(1),
    );
    let x = ndarray::array![[1.0, 2.0, 3.0]].into_dyn();
    let out = model
        .call(&x, &[OutputKey::InputOutputGradients, OutputKey::OutputLayerValues])
        .unwrap();
    assert_eq!(
        get(&out, OutputKey::InputOutputGradients),
        ndarray::array![[0.0, 0.0, 0.0]].into_dyn()
    );
    assert_eq!(get(&out, OutputKey::OutputLayerValues), ndarray::array![2.0].into_dyn());
}

#[test]
fn forward_context_for_training_uses_ordinary_relus() {
    let ctx = ForwardContext::standard();
    assert_eq!(ctx.relu_mode(), ReluMode::Standard);
    let x = bt(&[-1.0, 0.0, 2.0], [3], DType::F64);
    let y = ctx.relu(x).into_data().try_to_vec::<f64>().unwrap();
    assert_eq!(y, [0.0, 0.0, 2.0]);
}

// ---------------------------------------------------------------------------
// Misuse.

fn linear_model() -> impl FnMut(Tensor<2>, &ForwardContext) -> Tensor<2> + use<> {
    let w = bt(&[1.0, -1.0, 0.5, 2.0, 0.0, 1.0], [3, 2], DType::F64);
    move |x: Tensor<2>, _: &ForwardContext| x.matmul(w.clone())
}

fn call_err<M: FnMut(Tensor<D>, &ForwardContext) -> Tensor<2>, const D: usize>(
    model: &mut BurnModel<f64, M, D>,
    batch: &ArrayD<f64>,
    keys: &[OutputKey],
) -> BurnAdapterError {
    model.call(batch, keys).unwrap_err()
}

#[test]
fn every_misuse_is_an_error_that_names_the_fix() {
    let x1 = Array1::from(vec![1.0, 0.5, -0.25]);
    let row = x1.clone().insert_axis(Axis(0)).into_dyn();

    // The layer's values or gradients without a marked layer.
    let mut model = BurnModel::<f64, _, 2>::new(linear_model(), Target::class(0));
    let e = call_err(&mut model, &row, &[OutputKey::ConvolutionOutputGradients]);
    assert!(
        matches!(
            e,
            BurnAdapterError::NoLayerMarked {
                key: OutputKey::ConvolutionOutputGradients
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("ForwardContext::layer"), "{e}");

    // A guided pass through a model that routes no ReLU.
    let err = GuidedBackprop::new()
        .get_mask(x1.view(), &mut model.as_fn())
        .unwrap_err();
    let e = source_of::<BurnAdapterError>(&err);
    assert!(matches!(e, BurnAdapterError::NoGuidedRelu), "{e}");
    assert!(e.to_string().contains("ForwardContext::relu"), "{e}");

    // Wrong input rank: a rank-2 model given an image (batch of rank 4).
    let err = VanillaGradients::new()
        .get_mask(Array3::<f64>::zeros((2, 2, 3)).view(), &mut model.as_fn())
        .unwrap_err();
    let e = source_of::<BurnAdapterError>(&err);
    assert!(matches!(e, BurnAdapterError::InputRank { expected: 2, .. }), "{e}");
    assert!(e.to_string().contains("Tensor<2>"), "{e}");

    // Target class out of range.
    let mut model = BurnModel::<f64, _, 2>::new(linear_model(), Target::class(5));
    let err = VanillaGradients::new()
        .get_mask(x1.view(), &mut model.as_fn())
        .unwrap_err();
    let e = source_of::<BurnAdapterError>(&err);
    assert!(
        matches!(e, BurnAdapterError::ClassOutOfRange { class: 5, classes: 2 }),
        "{e}"
    );

    // Fewer per-image classes than images.
    let mut model = BurnModel::<f64, _, 2>::new(linear_model(), Target::classes(vec![0]));
    let two = ndarray::array![[1.0, 0.5, -0.25], [0.0, 1.0, 2.0]];
    let err = VanillaGradients::new()
        .get_masks(two.view(), &mut model.as_fn())
        .unwrap_err();
    let e = source_of::<BurnAdapterError>(&err);
    assert!(
        matches!(e, BurnAdapterError::NoTargetForImage { image: 1, images: 1 }),
        "{e}"
    );

    // An output that is not one row per example.
    let w = bt(&[1.0, -1.0, 0.5, 2.0, 0.0, 1.0], [3, 2], DType::F64);
    let mut model = BurnModel::<f64, _, 2>::new(
        move |x: Tensor<2>, _: &ForwardContext| x.matmul(w.clone()).sum_dim(0),
        Target::class(0),
    );
    let e = call_err(&mut model, &two.clone().into_dyn(), &[OutputKey::OutputLayerValues]);
    assert!(matches!(e, BurnAdapterError::OutputShape { batch: 2, .. }), "{e}");

    // A selector returning the wrong number of values.
    let mut model =
        BurnModel::<f64, _, 2>::new(linear_model(), Target::select(|out: Tensor<2>| out.flatten::<1>(0, 1)));
    let e = call_err(&mut model, &row, &[OutputKey::OutputLayerValues]);
    assert!(matches!(e, BurnAdapterError::TargetShape { batch: 1, .. }), "{e}");

    // Two layers marked.
    let mut model = BurnModel::<f64, _, 2>::new(
        |x: Tensor<2>, ctx: &ForwardContext| {
            let x = ctx.layer(x);
            ctx.layer(x).narrow(1, 0, 2)
        },
        Target::class(0),
    );
    let e = call_err(&mut model, &row, &[OutputKey::ConvolutionLayerValues]);
    assert!(matches!(e, BurnAdapterError::SeveralLayersMarked { marks: 2 }), "{e}");

    // Channels-first without a channel axis, and images already channels-first.
    let mut model = BurnModel::<f64, _, 3>::new(
        |x: Tensor<3>, _: &ForwardContext| x.sum_dim(2).flatten::<2>(1, 2),
        Target::class(0),
    )
    .channels_first(true);
    let e = call_err(
        &mut model,
        &ArrayD::zeros(vec![1, 4, 4]),
        &[OutputKey::OutputLayerValues],
    );
    assert!(matches!(e, BurnAdapterError::ChannelsFirstRank { .. }), "{e}");
    let w = Weights::new(1);
    let mut model = BurnModel::<f64, _, 4>::new(burn_cnn(&w, DType::F64), Target::class(0)).channels_first(true);
    let e = call_err(
        &mut model,
        &ArrayD::zeros(vec![1, 3, 8, 8]),
        &[OutputKey::OutputLayerValues],
    );
    assert!(matches!(e, BurnAdapterError::ChannelsFirstInput { .. }), "{e}");

    // burn's own panic (mismatched matmul shapes) comes back as an error.
    let w = bt(&[1.0, 2.0], [2, 1], DType::F64);
    let mut model = BurnModel::<f64, _, 2>::new(
        move |x: Tensor<2>, _: &ForwardContext| x.matmul(w.clone()),
        Target::class(0),
    );
    let e = call_err(&mut model, &row, &[OutputKey::InputOutputGradients]);
    assert!(matches!(e, BurnAdapterError::Burn { .. }), "{e}");

    // A forward pass that routes another number of ReLUs each time.
    let calls = Cell::new(0_usize);
    let mut model = BurnModel::<f64, _, 2>::new(
        |x: Tensor<2>, ctx: &ForwardContext| {
            calls.set(calls.get() + 1);
            let mut h = x.narrow(1, 0, 2);
            for _ in 0..calls.get() {
                h = ctx.relu(h);
            }
            h
        },
        Target::class(0),
    );
    let e = call_err(&mut model, &row, &[OutputKey::GuidedInputOutputGradients]);
    assert!(
        matches!(e, BurnAdapterError::ReluCountChanged { first: 1, now: 2 }),
        "{e}"
    );
}

#[test]
fn adapter_errors_convert_into_box_dyn_error() {
    fn logits() -> Result<Vec<f64>, Box<dyn std::error::Error>> {
        let mut model = BurnModel::<f64, _, 2>::new(linear_model(), Target::class(9));
        let x = ndarray::array![[1.0, 2.0, 3.0]];
        let out = model.call(&x, &[OutputKey::OutputLayerValues])?;
        Ok(out
            .get(OutputKey::OutputLayerValues)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default())
    }
    let err = logits().unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}

#[test]
fn settings_read_back_through_the_getters() {
    let model = BurnModel::<f32, _, 2>::new(linear_model(), Target::class(0))
        .dtype(DType::F64)
        .channels_first(true)
        .layer_layout(ActivationLayout::ChannelsLast)
        .device(&Device::flex());
    assert_eq!(model.get_dtype(), DType::F64);
    assert!(model.get_channels_first());
    assert_eq!(model.get_layer_layout(), Some(ActivationLayout::ChannelsLast));
    assert_eq!(model.get_device(), &Device::flex());
    let default = BurnModel::<f32, _, 2>::new(linear_model(), Target::class(0));
    assert_eq!(default.get_dtype(), DType::F32);
    assert!(!default.get_channels_first());
    assert_eq!(default.get_layer_layout(), None);
}
