//! The candle adapter on tiny models whose gradients are known by hand:
//! a linear layer, a ReLU network with hand-set weights, and convolution
//! models in both channel orders.
#![cfg(feature = "candle")]

mod common;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use common::assert_close;
use ndarray::{Array1, Array2, Array4, ArrayD, ArrayViewD, Axis, Ix4, array};
use saliency::adapters::candle::{CandleAdapterError, CandleModel, ForwardContext, ReluMode, Target, guided_relu};
use saliency::methods::guided_backprop::guided_relu_backward;
use saliency::{
    ActivationLayout, GradCam, GuidedBackprop, IntegratedGradients, ModelOutputs, OutputKey, Saliency, SaliencyError,
    VanillaGradients,
};

/// The tolerance of most f64 comparisons, which measure 0 to 4.6e-16 (the
/// others say what they measure). Sites measuring 0 allow it too: candle
/// picks its CPU kernels at run time (with fused multiply-add or not), which
/// moves the last bits.
const ROUNDING: f64 = 5e-15;

const ALL_PLAIN: [OutputKey; 4] = [
    OutputKey::InputOutputGradients,
    OutputKey::ConvolutionLayerValues,
    OutputKey::ConvolutionOutputGradients,
    OutputKey::OutputLayerValues,
];

fn to_nd(t: &Tensor) -> ArrayD<f64> {
    let v = t
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    ArrayD::from_shape_vec(t.dims().to_vec(), v).unwrap()
}

fn tensor(a: ArrayViewD<'_, f64>) -> Tensor {
    let a = a.as_standard_layout();
    Tensor::from_slice(a.as_slice().unwrap(), a.shape(), &Device::Cpu).unwrap()
}

fn get(out: &ModelOutputs<f64>, key: OutputKey) -> ArrayD<f64> {
    out.get(key).unwrap_or_else(|| panic!("{key} missing")).clone()
}

fn get32(out: &ModelOutputs<f32>, key: OutputKey) -> ArrayD<f64> {
    out.get(key).unwrap_or_else(|| panic!("{key} missing")).mapv(f64::from)
}

// ---------------------------------------------------------------------------
// A linear layer: logits = flatten(x) W + b, so d logit_c / d x = W[:, c].

fn linear_weights() -> (Array2<f64>, Array1<f64>) {
    let w = Array2::from_shape_fn((12, 3), |(i, c)| ((i * 5 + c * 3) % 11) as f64 / 4.0 - 1.2);
    let b = array![0.5, -0.25, 1.0];
    (w, b)
}

fn linear_batch() -> Array4<f64> {
    Array4::from_shape_fn((3, 2, 2, 3), |(n, i, j, c)| {
        (n as f64 - 1.0) * 0.7 + (i * 6 + j * 3 + c) as f64 / 10.0
    })
}

#[test]
fn linear_layer_gradients_and_values_f32_and_f64() {
    let (w, b) = linear_weights();
    let batch = linear_batch();
    let class = 2;
    let expected_grad = w.column(class).to_owned().into_shape_with_order((2, 2, 3)).unwrap();
    let expected_grads = ndarray::stack(Axis(0), &[expected_grad.view(); 3]).unwrap().into_dyn();
    let flat = batch.clone().into_shape_with_order((3, 12)).unwrap();
    let expected_values = (flat.dot(&w.column(class)) + b[class]).into_dyn();

    let (wt, bt) = (tensor(w.view().into_dyn()), tensor(b.view().into_dyn()));
    let keys = [OutputKey::InputOutputGradients, OutputKey::OutputLayerValues];

    let mut model64 = CandleModel::<f64, _>::new(
        |x: &Tensor, _: &ForwardContext| x.flatten_from(1)?.matmul(&wt)?.broadcast_add(&bt),
        Target::class(class),
    );
    let out = model64.call(batch.view().into_dyn(), &keys).unwrap();
    assert_close(
        "candle linear f64 input gradients",
        get(&out, keys[0]).view(),
        expected_grads.view(),
        ROUNDING,
    );
    assert_close(
        "candle linear f64 output values",
        get(&out, keys[1]).view(),
        expected_values.view(),
        ROUNDING,
    );

    let (wt32, bt32) = (wt.to_dtype(DType::F32).unwrap(), bt.to_dtype(DType::F32).unwrap());
    let mut model32 = CandleModel::<f32, _>::new(
        |x: &Tensor, _: &ForwardContext| x.flatten_from(1)?.matmul(&wt32)?.broadcast_add(&bt32),
        Target::class(class),
    );
    let batch32 = batch.mapv(|v| v as f32);
    let out = model32.call(batch32.view().into_dyn(), &keys).unwrap();
    // Measured 3.7e-8.
    assert_close(
        "candle linear f32 input gradients",
        get32(&out, keys[0]).view(),
        expected_grads.view(),
        5e-7,
    );
    // Measured 8.7e-8.
    assert_close(
        "candle linear f32 output values",
        get32(&out, keys[1]).view(),
        expected_values.view(),
        1e-6,
    );

    // f64 inputs to a model computing in f32.
    let mut mixed = CandleModel::<f64, _>::new(
        |x: &Tensor, _: &ForwardContext| x.flatten_from(1)?.matmul(&wt32)?.broadcast_add(&bt32),
        Target::class(class),
    )
    .dtype(DType::F32);
    let out = mixed.call(batch.view().into_dyn(), &keys).unwrap();
    // Measured 3.7e-8.
    assert_close(
        "candle linear f32 model, f64 gradients",
        get(&out, keys[0]).view(),
        expected_grads.view(),
        5e-7,
    );
}

#[test]
fn methods_through_the_adapter_on_a_linear_layer() {
    let (w, b) = linear_weights();
    let (wt, bt) = (tensor(w.view().into_dyn()), tensor(b.view().into_dyn()));
    let mut model = CandleModel::<f64, _>::new(
        |x: &Tensor, _: &ForwardContext| x.flatten_from(1)?.matmul(&wt)?.broadcast_add(&bt),
        Target::class(0),
    );
    let x = linear_batch().index_axis(Axis(0), 2).to_owned().into_dyn();
    let gradient = w
        .column(0)
        .to_owned()
        .into_shape_with_order((2, 2, 3))
        .unwrap()
        .into_dyn();

    let vanilla = VanillaGradients::new().get_mask(x.view(), &mut model.as_fn()).unwrap();
    assert_close("candle linear vanilla", vanilla.view(), gradient.view(), ROUNDING);
    // Integrated gradients of a linear model from a zero baseline: x * W[:, c].
    let ig = IntegratedGradients::new()
        .steps(7)
        .batch_size(3)
        .get_mask(x.view(), &mut model.as_fn())
        .unwrap();
    assert_close(
        "candle linear integrated gradients",
        ig.view(),
        (&x * &gradient).view(),
        ROUNDING,
    );
    // No ReLU: the guided rule applies nowhere, which is refused rather
    // than returned as plain gradients.
    let err = GuidedBackprop::new()
        .get_mask(x.view(), &mut model.as_fn())
        .unwrap_err();
    assert!(matches!(
        source_of::<CandleAdapterError>(&err),
        CandleAdapterError::NoGuidedRelu
    ));
}

// ---------------------------------------------------------------------------
// A ReLU network with hand-set weights: logits = relu(x W^T + b) V.

struct ReluNet {
    w: Array2<f64>,
    b: Array1<f64>,
    v: Array2<f64>,
}

impl ReluNet {
    fn new() -> Self {
        ReluNet {
            w: array![[1.0, -2.0, 0.5], [0.5, 1.0, 1.0], [-1.0, 0.0, 2.0], [2.0, 1.0, -1.0]],
            b: array![0.0, -1.0, 0.25, 0.25],
            v: array![[2.0, -1.0], [-1.0, 1.0], [3.0, 0.5], [0.5, 2.0]],
        }
    }

    fn forward(&self) -> impl FnMut(&Tensor, &ForwardContext) -> candle_core::Result<Tensor> + use<> {
        let (w, b, v) = (
            tensor(self.w.t().into_dyn()),
            tensor(self.b.view().into_dyn()),
            tensor(self.v.view().into_dyn()),
        );
        move |x, ctx| ctx.relu(&x.matmul(&w)?.broadcast_add(&b)?)?.matmul(&v)
    }

    /// Plain and guided input gradients of logit `class`, computed on arrays
    /// (the guided ones with the crate's array helper).
    fn gradients(&self, x: &Array2<f64>, class: usize) -> (Array2<f64>, Array2<f64>) {
        let mut plain = Array2::zeros(x.raw_dim());
        let mut guided = Array2::zeros(x.raw_dim());
        let incoming = self.v.column(class);
        for (n, xb) in x.outer_iter().enumerate() {
            let pre = self.w.dot(&xb) + &self.b;
            let relu_grad = pre.mapv(|p| if p > 0.0 { 1.0 } else { 0.0 }) * incoming;
            plain.row_mut(n).assign(&self.w.t().dot(&relu_grad));
            let g = guided_relu_backward(pre.view(), incoming).unwrap();
            guided.row_mut(n).assign(&self.w.t().dot(&g));
        }
        (plain, guided)
    }
}

#[test]
fn relu_network_gradients_match_hand_computation() {
    let net = ReluNet::new();
    let x = array![[1.0, 0.5, 0.25], [-1.0, 1.0, 1.0], [0.5, -0.5, 2.0]];
    // By hand, for logit 0 (incoming gradient v[:, 0] = (2, -1, 3, 0.5)):
    // example a = (1, 0.5, 0.25): W x + b = (0.125, 0.25, -0.25, 2.5), units 0, 1, 3 active;
    //   plain  = W^T (2, -1, 0, 0.5) = (2.5, -4.5, -0.5)
    //   guided = W^T (2,  0, 0, 0.5) = (3, -3.5, 0.5);  logit = 0.25 - 0.25 + 1.25 = 1.25
    // example b = (-1, 1, 1): W x + b = (-2.5, 0.5, 3.25, -1.75), units 1, 2 active;
    //   plain  = W^T (0, -1, 3, 0) = (-3.5, -1, 5)
    //   guided = W^T (0,  0, 3, 0) = (-3, 0, 6);         logit = -0.5 + 9.75 = 9.25
    // example c = (0.5, -0.5, 2): W x + b = (2.5, 0.75, 3.75, -1.25), units 0, 1, 2 active;
    //   plain  = W^T (2, -1, 3, 0) = (-1.5, -5, 6)
    //   guided = W^T (2,  0, 3, 0) = (-1, -4, 7);        logit = 5 - 0.75 + 11.25 = 15.5
    let hand_plain = array![[2.5, -4.5, -0.5], [-3.5, -1.0, 5.0], [-1.5, -5.0, 6.0]].into_dyn();
    let hand_guided = array![[3.0, -3.5, 0.5], [-3.0, 0.0, 6.0], [-1.0, -4.0, 7.0]].into_dyn();
    let hand_logits = array![1.25, 9.25, 15.5].into_dyn();

    let keys = [
        OutputKey::InputOutputGradients,
        OutputKey::GuidedInputOutputGradients,
        OutputKey::OutputLayerValues,
    ];
    let mut model = CandleModel::<f64, _>::new(net.forward(), Target::class(0));
    let out = model.call(x.view().into_dyn(), &keys).unwrap();
    assert_close(
        "candle relu net input gradients (hand)",
        get(&out, keys[0]).view(),
        hand_plain.view(),
        ROUNDING,
    );
    assert_close(
        "candle relu net guided gradients (hand)",
        get(&out, keys[1]).view(),
        hand_guided.view(),
        ROUNDING,
    );
    assert_close(
        "candle relu net output values (hand)",
        get(&out, keys[2]).view(),
        hand_logits.view(),
        ROUNDING,
    );

    // Every example has its own gradient.
    let g = get(&out, keys[1]);
    assert_ne!(g.index_axis(Axis(0), 0), g.index_axis(Axis(0), 1));
    assert_ne!(g.index_axis(Axis(0), 1), g.index_axis(Axis(0), 2));

    // Against the array helper, for both classes, in f32.
    for class in 0..2 {
        let (plain, guided) = net.gradients(&x, class);
        let mut model32 = CandleModel::<f32, _>::new(net.forward(), Target::class(class)).dtype(DType::F64);
        let out = model32.call(x.mapv(|v| v as f32).view().into_dyn(), &keys).unwrap();
        // Measured 0 for both: one rounding to float32 allowed (epsilon 1.19e-7).
        assert_close(
            "candle relu net input gradients (arrays)",
            get32(&out, keys[0]).view(),
            plain.view().into_dyn(),
            1.2e-7,
        );
        assert_close(
            "candle relu net guided gradients (helper)",
            get32(&out, keys[1]).view(),
            guided.view().into_dyn(),
            1.2e-7,
        );
    }
}

#[test]
fn guided_relu_op_forward_and_backward() {
    let x = Var::from_slice(&[2.0_f32, 2.0, -2.0, -2.0, 0.5, 3.0], 6, &Device::Cpu).unwrap();
    let y = guided_relu(x.as_tensor()).unwrap();
    assert_eq!(y.to_vec1::<f32>().unwrap(), [2.0, 2.0, 0.0, 0.0, 0.5, 3.0]);
    // Target sum(c * y): the incoming gradient is c.
    let c = Tensor::new(&[0.5_f32, -0.5, 0.5, -0.5, 0.0, 4.0], &Device::Cpu).unwrap();
    let grads = (y * &c).unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let helper = guided_relu_backward(
        array![2.0_f32, 2.0, -2.0, -2.0, 0.5, 3.0].view(),
        array![0.5_f32, -0.5, 0.5, -0.5, 0.0, 4.0].view(),
    )
    .unwrap();
    assert_eq!(g, [0.5, 0.0, 0.0, 0.0, 0.0, 4.0]);
    assert_eq!(g, helper.to_vec());

    // Strided input (a transposed view) goes through the layout correctly.
    let m = Tensor::new(&[[1.0_f64, -1.0, 2.0], [-3.0, 4.0, -5.0]], &Device::Cpu).unwrap();
    let out = guided_relu(&m.t().unwrap()).unwrap();
    assert_eq!(out.to_vec2::<f64>().unwrap(), [[1.0, 0.0], [0.0, 4.0], [2.0, 0.0]]);
}

#[test]
fn a_custom_target_and_forward_pass_counts() {
    let net = ReluNet::new();
    let x = array![[1.0, 0.5, 0.25], [-1.0, 1.0, 1.0]];
    let (plain0, _) = net.gradients(&x, 0);
    let (plain1, _) = net.gradients(&x, 1);
    // The difference of the two logits: its gradient is the difference of theirs.
    let target = Target::select(|logits| logits.i((.., 1))? - logits.i((.., 0))?);
    let mut model = CandleModel::<f64, _>::new(net.forward(), target);
    let out = model
        .call(x.view().into_dyn(), &[OutputKey::InputOutputGradients])
        .unwrap();
    assert_close(
        "candle custom target gradients",
        get(&out, OutputKey::InputOutputGradients).view(),
        (&plain1 - &plain0).view().into_dyn(),
        ROUNDING,
    );

    // Guided keys cost a second forward pass, and only then.
    let mut modes = Vec::new();
    let mut forward = net.forward();
    let mut model = CandleModel::<f64, _>::new(
        |x: &Tensor, ctx: &ForwardContext| {
            modes.push(ctx.relu_mode());
            forward(x, ctx)
        },
        Target::class(0),
    );
    let xv = x.view().into_dyn();
    model.call(xv.view(), &[OutputKey::OutputLayerValues]).unwrap();
    model.call(xv.view(), &[OutputKey::GuidedInputOutputGradients]).unwrap();
    model
        .call(
            xv.view(),
            &[OutputKey::InputOutputGradients, OutputKey::GuidedInputOutputGradients],
        )
        .unwrap();
    drop(model);
    use ReluMode::{Guided, Standard};
    assert_eq!(modes, [Standard, Guided, Standard, Guided]);
}

// ---------------------------------------------------------------------------
// Convolution models. Both end in relu -> global mean -> linear, so
// d logit_c / d conv[k, h, w] = V[k, c] / (H W) where conv >= 0 (candle's
// ReLU passes the gradient at exactly 0), and 0 elsewhere.

const H: usize = 5;
const W: usize = 4;
const C: usize = 2;
const K: usize = 3;

fn image_batch() -> Array4<f64> {
    Array4::from_shape_fn((2, H, W, C), |(n, i, j, c)| {
        // The sine keeps convolution values away from exact zeros (ReLU kinks).
        (((n * 7 + i * 5 + j * 3 + c * 2) % 9) as f64 - 4.0) / 3.0
            + 0.1 * n as f64
            + 0.013 * ((n * 31 + i * 17 + j * 7 + c * 3) as f64).sin()
    })
}

fn head() -> Array2<f64> {
    array![[1.0, -0.5], [-2.0, 0.75], [0.5, 1.5]]
}

/// d logit_c / d conv for the layer values `conv` laid out with channels at
/// `channel_axis`.
fn conv_gradients(conv: &ArrayD<f64>, channel_axis: usize, class: usize) -> ArrayD<f64> {
    let v = head();
    let mut g = conv.clone();
    for (idx, value) in g.indexed_iter_mut() {
        let k = idx[channel_axis];
        *value = if *value >= 0.0 {
            v[[k, class]] / (H * W) as f64
        } else {
            0.0
        };
    }
    g
}

/// Grad-CAM by hand: channel weights are the spatial means of the
/// gradients, the map is relu(sum_k weight_k * values_k); [B, H, W].
fn grad_cam_by_hand(values: &ArrayD<f64>, grads: &ArrayD<f64>, channels_first: bool) -> ArrayD<f64> {
    let (values, grads) = if channels_first {
        (values.clone(), grads.clone())
    } else {
        (
            values.clone().permuted_axes(vec![0, 3, 1, 2]),
            grads.clone().permuted_axes(vec![0, 3, 1, 2]),
        )
    };
    let values = values.into_dimensionality::<Ix4>().unwrap();
    let grads = grads.into_dimensionality::<Ix4>().unwrap();
    let (b, k, h, w) = values.dim();
    let mut cam = ArrayD::<f64>::zeros(vec![b, h, w]);
    for n in 0..b {
        for c in 0..k {
            let weight = grads.index_axis(Axis(0), n).index_axis(Axis(0), c).mean().unwrap();
            let mut slot = cam.index_axis_mut(Axis(0), n);
            slot.scaled_add(weight, &values.index_axis(Axis(0), n).index_axis(Axis(0), c).into_dyn());
        }
    }
    cam.mapv_inplace(|v| v.max(0.0));
    cam
}

fn conv_kernel() -> Array4<f64> {
    Array4::from_shape_fn((K, C, 3, 3), |(k, c, i, j)| {
        (((k * 11 + c * 7 + i * 3 + j) % 7) as f64 - 3.0) / 4.0
    })
}

#[test]
fn channels_first_convolution_values_gradients_and_grad_cam() {
    let kernel = tensor(conv_kernel().view().into_dyn());
    let bias = Tensor::new(&[0.1_f64, -0.2, 0.3], &Device::Cpu)
        .unwrap()
        .reshape((1, K, 1, 1))
        .unwrap();
    let v = tensor(head().view().into_dyn());
    let forward = |x: &Tensor, ctx: &ForwardContext| {
        assert_eq!(x.dims(), [2, C, H, W], "the model sees channels-first input");
        let conv = ctx.layer(&x.conv2d(&kernel, 1, 1, 1, 1)?.broadcast_add(&bias)?)?;
        ctx.relu(&conv)?.mean((2, 3))?.matmul(&v)
    };
    let class = 1;
    let mut model = CandleModel::<f64, _>::new(forward, Target::class(class)).channels_first(true);
    let batch = image_batch();
    let out = model.call(batch.view().into_dyn(), &ALL_PLAIN).unwrap();

    // The layer computed directly with candle, channels-first.
    let x_cf = tensor(batch.view().into_dyn()).permute((0, 3, 1, 2)).unwrap();
    let direct = to_nd(&x_cf.conv2d(&kernel, 1, 1, 1, 1).unwrap().broadcast_add(&bias).unwrap());
    assert_eq!(direct.shape(), [2, K, H, W]);
    let values = get(&out, OutputKey::ConvolutionLayerValues);
    let grads = get(&out, OutputKey::ConvolutionOutputGradients);
    assert_close(
        "candle channels-first conv values",
        values.view(),
        direct.view(),
        ROUNDING,
    );
    let hand_grads = conv_gradients(&direct, 1, class);
    assert_close(
        "candle channels-first conv gradients",
        grads.view(),
        hand_grads.view(),
        ROUNDING,
    );
    let cam = grad_cam_by_hand(&values, &grads, true);
    let hand_cam = grad_cam_by_hand(&direct, &hand_grads, true);
    assert!(cam.iter().any(|&v| v > 0.0));
    assert_close("candle channels-first grad-cam", cam.view(), hand_cam.view(), ROUNDING);

    // Input gradients come back channels-last, equal to candle's own
    // gradient on the channels-first tensor, permuted back.
    let input = get(&out, OutputKey::InputOutputGradients);
    assert_eq!(input.shape(), batch.shape());
    let var = Var::from_tensor(&x_cf.contiguous().unwrap()).unwrap();
    let conv = var
        .as_tensor()
        .conv2d(&kernel, 1, 1, 1, 1)
        .unwrap()
        .broadcast_add(&bias)
        .unwrap();
    let logits = conv.relu().unwrap().mean((2, 3)).unwrap().matmul(&v).unwrap();
    let grads = logits.i((.., class)).unwrap().sum_all().unwrap().backward().unwrap();
    let direct_input = to_nd(&grads.get(var.as_tensor()).unwrap().permute((0, 2, 3, 1)).unwrap());
    assert_close(
        "candle channels-first input gradients",
        input.view(),
        direct_input.view(),
        ROUNDING,
    );

    // And the output values are the logits.
    let expected_logits = to_nd(&logits.i((.., class)).unwrap());
    assert_close(
        "candle channels-first output values",
        get(&out, OutputKey::OutputLayerValues).view(),
        expected_logits.view(),
        ROUNDING,
    );
}

#[test]
fn channels_last_convolution_and_both_layouts_agree() {
    // A 1x1 convolution written both ways: on channels-last input as a
    // matmul over the channel axis, on channels-first input as conv2d.
    let weights = Array2::from_shape_fn((C, K), |(c, k)| ((c * 3 + k) as f64 - 2.5) / 2.0);
    let bias = array![0.2, -0.1, 0.05];
    let v = tensor(head().view().into_dyn());
    let wt = tensor(weights.view().into_dyn());
    let bt = tensor(bias.view().into_dyn());
    let last = |x: &Tensor, ctx: &ForwardContext| {
        assert_eq!(x.dims(), [2, H, W, C], "the model sees channels-last input");
        let conv = ctx.layer(&x.broadcast_matmul(&wt)?.broadcast_add(&bt)?)?;
        ctx.relu(&conv)?.mean((1, 2))?.matmul(&v)
    };
    let kernel = tensor(
        Array4::from_shape_fn((K, C, 1, 1), |(k, c, _, _)| weights[[c, k]])
            .view()
            .into_dyn(),
    );
    let bias_cf = bt.reshape((1, K, 1, 1)).unwrap();
    let first = |x: &Tensor, ctx: &ForwardContext| {
        let conv = ctx.layer(&x.conv2d(&kernel, 0, 1, 1, 1)?.broadcast_add(&bias_cf)?)?;
        ctx.relu(&conv)?.mean((2, 3))?.matmul(&v)
    };
    let class = 0;
    let batch = image_batch();
    let mut model_last = CandleModel::<f64, _>::new(last, Target::class(class));
    let mut model_first = CandleModel::<f64, _>::new(first, Target::class(class)).channels_first(true);
    let out_last = model_last.call(batch.view().into_dyn(), &ALL_PLAIN).unwrap();
    let out_first = model_first.call(batch.view().into_dyn(), &ALL_PLAIN).unwrap();

    // Channels-last values by hand: x[b, h, w, :] . weights + bias.
    let hand = batch
        .clone()
        .into_shape_with_order((2 * H * W, C))
        .unwrap()
        .dot(&weights)
        + &bias;
    let hand = hand.into_shape_with_order(vec![2, H, W, K]).unwrap();
    let values = get(&out_last, OutputKey::ConvolutionLayerValues);
    let grads = get(&out_last, OutputKey::ConvolutionOutputGradients);
    assert_eq!(values.shape(), [2, H, W, K]);
    assert_close("candle channels-last conv values", values.view(), hand.view(), ROUNDING);
    let hand_grads = conv_gradients(&hand, 3, class);
    assert_close(
        "candle channels-last conv gradients",
        grads.view(),
        hand_grads.view(),
        ROUNDING,
    );
    let cam_last = grad_cam_by_hand(&values, &grads, false);
    assert_close(
        "candle channels-last grad-cam",
        cam_last.view(),
        grad_cam_by_hand(&hand, &hand_grads, false).view(),
        ROUNDING,
    );

    // The channels-first model is the same function: its layer is the
    // channels-last one transposed, and every key agrees.
    let values_first = get(&out_first, OutputKey::ConvolutionLayerValues);
    assert_eq!(values_first.shape(), [2, K, H, W]);
    let transposed = values.clone().permuted_axes(vec![0, 3, 1, 2]);
    assert_close(
        "candle layouts agree: conv values",
        values_first.view(),
        transposed.view(),
        ROUNDING,
    );
    let cam_first = grad_cam_by_hand(
        &values_first,
        &get(&out_first, OutputKey::ConvolutionOutputGradients),
        true,
    );
    // Measured 6.9e-16.
    assert_close(
        "candle layouts agree: grad-cam",
        cam_first.view(),
        cam_last.view(),
        1e-14,
    );
    for key in [OutputKey::InputOutputGradients, OutputKey::OutputLayerValues] {
        assert_close(
            "candle layouts agree: input gradients / values",
            get(&out_first, key).view(),
            get(&out_last, key).view(),
            ROUNDING,
        );
    }
}

#[test]
fn grad_cam_through_the_adapter_equals_grad_cam_by_hand() {
    // The crate's Grad-CAM (no resize) on the adapter, for a channels-first
    // 3x3 convolution and a channels-last 1x1 one, against the formula
    // applied to the layer computed directly with candle and its gradient
    // computed by hand.
    let kernel = tensor(conv_kernel().view().into_dyn());
    let bias = Tensor::new(&[0.1_f64, -0.2, 0.3], &Device::Cpu)
        .unwrap()
        .reshape((1, K, 1, 1))
        .unwrap();
    let v = tensor(head().view().into_dyn());
    let first = |x: &Tensor, ctx: &ForwardContext| {
        let conv = ctx.layer(&x.conv2d(&kernel, 1, 1, 1, 1)?.broadcast_add(&bias)?)?;
        ctx.relu(&conv)?.mean((2, 3))?.matmul(&v)
    };
    let weights = Array2::from_shape_fn((C, K), |(c, k)| ((c * 3 + k) as f64 - 2.5) / 2.0);
    let wt = tensor(weights.view().into_dyn());
    let last = |x: &Tensor, ctx: &ForwardContext| {
        let conv = ctx.layer(&x.broadcast_matmul(&wt)?)?;
        ctx.relu(&conv)?.mean((1, 2))?.matmul(&v)
    };
    let batch = image_batch();
    for n in 0..2 {
        let image = batch.index_axis(Axis(0), n).to_owned().into_dyn();
        let one = image.view().insert_axis(Axis(0)).to_owned();
        let class = n;
        let cam = GradCam::new().should_resize(false).three_dims(false);

        let mut model = CandleModel::<f64, _>::new(first, Target::class(class)).channels_first(true);
        let mask = cam
            .layout(ActivationLayout::ChannelsFirst)
            .get_mask(image.view(), &mut model.as_fn())
            .unwrap();
        let x_cf = tensor(one.view()).permute((0, 3, 1, 2)).unwrap();
        let direct = to_nd(&x_cf.conv2d(&kernel, 1, 1, 1, 1).unwrap().broadcast_add(&bias).unwrap());
        let hand = grad_cam_by_hand(&direct, &conv_gradients(&direct, 1, class), true).index_axis_move(Axis(0), 0);
        assert!(hand.iter().any(|&v| v > 0.0));
        assert_close(
            "candle GradCam channels-first vs by hand",
            mask.view(),
            hand.view(),
            ROUNDING,
        );

        let mut model = CandleModel::<f64, _>::new(last, Target::class(class));
        let mask = cam
            .layout(ActivationLayout::ChannelsLast)
            .get_mask(image.view(), &mut model.as_fn())
            .unwrap();
        let direct = one
            .clone()
            .into_shape_with_order((H * W, C))
            .unwrap()
            .dot(&weights)
            .into_shape_with_order(vec![1, H, W, K])
            .unwrap();
        let hand = grad_cam_by_hand(&direct, &conv_gradients(&direct, 3, class), false).index_axis_move(Axis(0), 0);
        assert!(hand.iter().any(|&v| v > 0.0));
        // Measured 1.1e-15.
        assert_close(
            "candle GradCam channels-last vs by hand",
            mask.view(),
            hand.view(),
            2e-14,
        );
    }
}

#[test]
fn input_gradients_match_finite_differences() {
    // An independent check of the whole chain (conv, ReLU, mean, linear):
    // central differences in f64, away from ReLU kinks.
    let kernel = tensor(conv_kernel().view().into_dyn());
    let v = tensor(head().view().into_dyn());
    let mut forward = |x: &Tensor, ctx: &ForwardContext| {
        let conv = ctx.layer(&x.conv2d(&kernel, 1, 1, 1, 1)?)?;
        ctx.relu(&conv)?.mean((2, 3))?.matmul(&v)
    };
    let batch = image_batch().index_axis(Axis(0), 0).insert_axis(Axis(0)).to_owned();
    let mut model = CandleModel::<f64, _>::new(&mut forward, Target::class(1)).channels_first(true);
    let out = model
        .call(batch.view().into_dyn(), &[OutputKey::InputOutputGradients])
        .unwrap();
    let grads = get(&out, OutputKey::InputOutputGradients);
    let eps = 1e-6;
    let mut numeric = ArrayD::<f64>::zeros(batch.shape());
    for (idx, slot) in numeric.indexed_iter_mut() {
        let mut value_at = |delta: f64| {
            let mut x = batch.clone().into_dyn();
            x[idx.clone()] += delta;
            let out = model.call(x.view(), &[OutputKey::OutputLayerValues]).unwrap();
            get(&out, OutputKey::OutputLayerValues)[[0]]
        };
        *slot = (value_at(eps) - value_at(-eps)) / (2.0 * eps);
    }
    // Measured 5.6e-10.
    assert_close(
        "candle input gradients vs finite differences",
        grads.view(),
        numeric.view(),
        1e-8,
    );
}

// ---------------------------------------------------------------------------
// Errors.

fn source_of<T: std::error::Error + 'static>(err: &SaliencyError) -> &T {
    assert!(matches!(err, SaliencyError::Model(_)), "{err}");
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<T>())
        .unwrap_or_else(|| panic!("unexpected source: {err}"))
}

#[test]
fn adapter_errors_are_model_errors_that_say_what_is_wrong() {
    let net = ReluNet::new();
    let x = array![1.0, 0.5, 0.25].into_dyn();

    let mut model = CandleModel::<f64, _>::new(net.forward(), Target::class(5));
    let err = VanillaGradients::new()
        .get_mask(x.view(), &mut model.as_fn())
        .unwrap_err();
    assert!(matches!(
        source_of::<CandleAdapterError>(&err),
        CandleAdapterError::ClassOutOfRange { class: 5, classes: 2 }
    ));

    let mut model = CandleModel::<f64, _>::new(net.forward(), Target::select(|logits| logits.sum_all()));
    let err = VanillaGradients::new()
        .get_mask(x.view(), &mut model.as_fn())
        .unwrap_err();
    assert!(matches!(
        source_of::<CandleAdapterError>(&err),
        CandleAdapterError::TargetShape { batch: 1, .. }
    ));

    // No layer marked, but Grad-CAM keys asked for.
    let mut model = CandleModel::<f64, _>::new(net.forward(), Target::class(0));
    let err = model
        .call(x.view().insert_axis(Axis(0)), &[OutputKey::ConvolutionLayerValues])
        .unwrap_err();
    assert!(err.to_string().contains("marked no layer"), "{err}");

    // Two layers marked.
    let mut twice = CandleModel::<f64, _>::new(
        |x: &Tensor, ctx: &ForwardContext| {
            let h = ctx.layer(x)?;
            ctx.layer(&h)?.sum_keepdim(1)
        },
        Target::class(0),
    );
    let err = twice
        .call(x.view().insert_axis(Axis(0)), &[OutputKey::ConvolutionLayerValues])
        .unwrap_err();
    assert!(
        matches!(err, CandleAdapterError::SeveralLayersMarked { marks: 2 }),
        "{err}"
    );

    // candle's own errors (here a shape mismatch in the forward pass) pass through.
    let wrong = Tensor::zeros((4, 2), DType::F64, &Device::Cpu).unwrap();
    let mut model = CandleModel::<f64, _>::new(|x: &Tensor, _: &ForwardContext| x.matmul(&wrong), Target::class(0));
    let err = VanillaGradients::new()
        .get_mask(x.view(), &mut model.as_fn())
        .unwrap_err();
    let _: &candle_core::Error = source_of(&err);

    // Channels-first needs a channel axis.
    let mut model = CandleModel::<f64, _>::new(net.forward(), Target::class(0)).channels_first(true);
    let err = VanillaGradients::new()
        .get_mask(x.view(), &mut model.as_fn())
        .unwrap_err();
    assert!(matches!(
        source_of::<CandleAdapterError>(&err),
        CandleAdapterError::ChannelsFirstRank { .. }
    ));
}

#[test]
fn forward_context_for_training_uses_ordinary_relus() {
    let ctx = ForwardContext::standard();
    assert_eq!(ctx.relu_mode(), ReluMode::Standard);
    let t = Tensor::new(&[-1.0_f32, 2.0], &Device::Cpu).unwrap();
    assert_eq!(ctx.relu(&t).unwrap().to_vec1::<f32>().unwrap(), [0.0, 2.0]);
    // Marking a layer outside the adapter changes nothing.
    assert_eq!(ctx.layer(&t).unwrap().to_vec1::<f32>().unwrap(), [-1.0, 2.0]);
}

#[test]
fn a_model_that_ignores_the_input_gets_zero_gradients() {
    let x = array![[1.0_f32, 2.0]].into_dyn();
    let mut model = CandleModel::<f32, _>::new(
        |x: &Tensor, ctx: &ForwardContext| {
            // A ReLU on a constant: the target does not depend on the input.
            ctx.relu(&Tensor::ones((x.dims()[0], 1), DType::F32, x.device())?)
        },
        Target::class(0),
    );
    let out = model
        .call(
            x.view(),
            &[OutputKey::InputOutputGradients, OutputKey::GuidedInputOutputGradients],
        )
        .unwrap();
    for key in [OutputKey::InputOutputGradients, OutputKey::GuidedInputOutputGradients] {
        assert_eq!(out.get(key).unwrap(), &ArrayD::<f32>::zeros(vec![1, 2]));
    }
}

// ---------------------------------------------------------------------------
// Tensor <-> array helpers, and the adapter's error with `?`.

#[test]
fn tensor_array_round_trips_in_both_layouts() {
    use saliency::adapters::candle::{array_to_tensor, tensor_to_array};
    let device = Device::Cpu;
    // Channel c, row i, column j: 100 c + 10 i + j, so every axis is visible.
    let hwc = ndarray::Array3::<f32>::from_shape_fn((2, 3, 4), |(i, j, c)| (100 * c + 10 * i + j) as f32);
    let bhwc = ndarray::stack(Axis(0), &[hwc.view(), hwc.mapv(|v| -v).view()]).unwrap();

    // Channels-first: [H, W, C] <-> [C, H, W], [B, H, W, C] <-> [B, C, H, W].
    let chw = array_to_tensor(hwc.view(), ActivationLayout::ChannelsFirst, &device).unwrap();
    assert_eq!(chw.dims(), [4, 2, 3]);
    assert_eq!(chw.dtype(), DType::F32);
    assert_eq!(chw.i((3, 1, 2)).unwrap().to_scalar::<f32>().unwrap(), 312.0);
    let back = tensor_to_array::<f32>(&chw, ActivationLayout::ChannelsFirst).unwrap();
    assert_eq!(back, hwc.clone().into_dyn());

    let bchw = array_to_tensor(bhwc.view(), ActivationLayout::ChannelsFirst, &device).unwrap();
    assert_eq!(bchw.dims(), [2, 4, 2, 3]);
    assert_eq!(bchw.i((1, 3, 1, 2)).unwrap().to_scalar::<f32>().unwrap(), -312.0);
    let back = tensor_to_array::<f32>(&bchw, ActivationLayout::ChannelsFirst).unwrap();
    assert_eq!(back, bhwc.clone().into_dyn());

    // Channels-last: copied as is, any rank; and a non-standard memory order.
    let same = array_to_tensor(bhwc.view(), ActivationLayout::ChannelsLast, &device).unwrap();
    assert_eq!(same.dims(), [2, 2, 3, 4]);
    assert_eq!(
        tensor_to_array::<f32>(&same, ActivationLayout::ChannelsLast).unwrap(),
        bhwc.clone().into_dyn()
    );
    let transposed = hwc.index_axis(Axis(2), 1).reversed_axes();
    let t = array_to_tensor(transposed.view(), ActivationLayout::ChannelsLast, &device).unwrap();
    assert_eq!(t.dims(), [3, 2]);
    assert_eq!(t.to_vec2::<f32>().unwrap()[2], [102.0, 112.0]);

    // Converting the dtype on the way out; a strided tensor on the way in.
    let as_f64 = tensor_to_array::<f64>(&chw, ActivationLayout::ChannelsFirst).unwrap();
    assert_eq!(as_f64, hwc.mapv(f64::from).into_dyn());
    let strided = bchw.permute((0, 1, 3, 2)).unwrap();
    let back = tensor_to_array::<f32>(&strided, ActivationLayout::ChannelsFirst).unwrap();
    assert_eq!(back.shape(), [2, 3, 2, 4]);
    assert_eq!(back[[1, 2, 1, 3]], -312.0);

    // The array a channels-first model's input gradient is compared with.
    let batch = image_batch();
    let t = array_to_tensor(batch.view(), ActivationLayout::ChannelsFirst, &device).unwrap();
    let by_hand = tensor(batch.view().into_dyn()).permute((0, 3, 1, 2)).unwrap();
    assert_eq!(to_nd(&t), to_nd(&by_hand));
}

#[test]
fn tensor_array_helpers_refuse_other_ranks_for_channels_first() {
    use saliency::adapters::candle::{array_to_tensor, tensor_to_array};
    let device = Device::Cpu;
    for shape in [vec![5], vec![2, 3], vec![1, 2, 3, 4, 5]] {
        let t = Tensor::zeros(shape.as_slice(), DType::F32, &device).unwrap();
        let err = tensor_to_array::<f32>(&t, ActivationLayout::ChannelsFirst).unwrap_err();
        assert!(
            matches!(&err, CandleAdapterError::ConversionRank { shape: s, .. } if s == &shape),
            "{err}"
        );
        assert!(err.to_string().contains("[C, H, W] or [B, C, H, W]"), "{err}");
        // Channels-last takes any rank.
        assert_eq!(
            tensor_to_array::<f32>(&t, ActivationLayout::ChannelsLast)
                .unwrap()
                .shape(),
            shape.as_slice()
        );

        let a = ArrayD::<f32>::zeros(shape.clone());
        let err = array_to_tensor(a.view(), ActivationLayout::ChannelsFirst, &device).unwrap_err();
        assert!(
            matches!(&err, CandleAdapterError::ConversionRank { shape: s, .. } if s == &shape),
            "{err}"
        );
        assert_eq!(
            array_to_tensor(a.view(), ActivationLayout::ChannelsLast, &device)
                .unwrap()
                .dims(),
            shape.as_slice()
        );
    }
}

/// The adapter's errors (and the helpers') go into `Box<dyn Error>` with `?`.
fn logits_of(model_class: usize) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    use saliency::adapters::candle::{array_to_tensor, tensor_to_array};
    let net = ReluNet::new();
    let mut model = CandleModel::<f64, _>::new(net.forward(), Target::class(model_class));
    let x = array![[1.0, 0.5, 0.25], [-1.0, 1.0, 1.0]];
    let t = array_to_tensor(x.view(), ActivationLayout::ChannelsLast, &Device::Cpu)?;
    let x = tensor_to_array::<f64>(&t, ActivationLayout::ChannelsLast)?;
    let out = model.call(x.view(), &[OutputKey::OutputLayerValues])?;
    Ok(out
        .get(OutputKey::OutputLayerValues)
        .ok_or("no values")?
        .iter()
        .copied()
        .collect())
}

#[test]
fn adapter_errors_convert_into_box_dyn_error() {
    assert_eq!(logits_of(0).unwrap(), [1.25, 9.25]);
    let err = logits_of(7).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<CandleAdapterError>(),
        Some(CandleAdapterError::ClassOutOfRange { class: 7, classes: 2 })
    ));
    // And into the model function's BoxError, for a closure around `call`.
    let net = ReluNet::new();
    let mut model = CandleModel::<f64, _>::new(net.forward(), Target::class(0));
    let mut calls = 0;
    let mut counted = |batch: ArrayViewD<'_, f64>, keys: &saliency::ModelRequest<'_>| {
        calls += 1;
        Ok(model.call(batch, keys)?)
    };
    let x = array![1.0, 0.5, 0.25].into_dyn();
    let mask = VanillaGradients::new().get_mask(x.view(), &mut counted).unwrap();
    assert_eq!(mask, array![2.5, -4.5, -0.5].into_dyn());
    assert_eq!(calls, 1);
}

#[test]
fn settings_read_back_through_the_getters() {
    let model = CandleModel::<f32, _>::new(|x: &Tensor, _: &ForwardContext| Ok(x.clone()), Target::class(0));
    assert_eq!(
        (model.get_dtype(), model.get_channels_first(), model.get_layer_layout()),
        (DType::F32, false, None)
    );
    assert!(model.get_device().is_cpu());
    let model = model
        .dtype(DType::F64)
        .channels_first(true)
        .layer_layout(saliency::ActivationLayout::ChannelsLast);
    assert_eq!(
        (model.get_dtype(), model.get_channels_first(), model.get_layer_layout()),
        (DType::F64, true, Some(saliency::ActivationLayout::ChannelsLast))
    );
}
