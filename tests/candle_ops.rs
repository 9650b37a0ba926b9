//! The candle operations of `adapters::candle_ops`: values against candle's
//! own operations or hand computation, input gradients against candle's
//! backward where candle has one and central differences elsewhere.
#![cfg(feature = "candle")]

use candle_core::{D, DType, Device, Tensor, Var};
use saliency::adapters::candle_ops::{avg_pool2d, conv2d, max_pool2d, relu};

/// f64 comparisons against candle's convolution: the two sum the same
/// products in another order (measured up to 8.0e-15, the 7 x 7 case).
const ROUNDING: f64 = 1e-13;

/// Central differences with step 1e-6 of operations that are linear
/// (convolution) or linear between ties (pooling; no window of these inputs
/// has its two largest values within the step, or its test would fail):
/// the only error is rounding, measured up to 3.7e-9 (a 7 x 7 convolution)
/// and 3.7e-10 (pooling).
const DIFFERENCES: f64 = 1e-8;

/// Pseudo-random values in (-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = ((i as u64 + 1) * 2654435761 + seed * 40503) as f64;
            ((t * 12.9898).sin() * 43758.5453).fract()
        })
        .collect()
}

fn tensor(dims: &[usize], seed: u64) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(values(n, seed), dims, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    flat(a).iter().zip(flat(b)).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// The value and the input gradient of `sum(f(x) * weights)`, with fixed
/// pseudo-random weights so that each output's gradient differs.
fn value_and_gradient(x: &Tensor, f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>) -> (Tensor, Tensor) {
    let var = Var::from_tensor(x).unwrap();
    let y = f(var.as_tensor()).unwrap();
    let weights = tensor(y.dims(), 99).to_dtype(y.dtype()).unwrap();
    let grads = y.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads.get(var.as_tensor()).expect("a gradient for the input").clone();
    (y, g)
}

/// Central differences of `sum(f(x) * weights)` with the weights of
/// [`value_and_gradient`].
fn finite_differences(x: &Tensor, f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>) -> Tensor {
    let step = 1e-6;
    let base = flat(x);
    let y = f(x).unwrap();
    let weights = tensor(y.dims(), 99);
    let loss = |v: &[f64]| {
        let t = Tensor::from_vec(v.to_vec(), x.dims(), &Device::Cpu).unwrap();
        f(&t)
            .unwrap()
            .mul(&weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let grad: Vec<f64> = (0..base.len())
        .map(|i| {
            let mut v = base.clone();
            v[i] += step;
            let up = loss(&v);
            v[i] -= 2.0 * step;
            (up - loss(&v)) / (2.0 * step)
        })
        .collect();
    Tensor::from_vec(grad, x.dims(), &Device::Cpu).unwrap()
}

/// candle's convolution with explicit padding, the reference.
#[allow(clippy::too_many_arguments)]
fn candle_conv(
    x: &Tensor,
    k: &Tensor,
    stride: usize,
    [pt, pl, pb, pr]: [usize; 4],
    dilation: usize,
    groups: usize,
) -> candle_core::Result<Tensor> {
    x.pad_with_zeros(2, pt, pb)?
        .pad_with_zeros(3, pl, pr)?
        .conv2d(k, 0, stride, dilation, groups)
}

/// One convolution case (candle 0.11.1's backward pads the gradient of a
/// strided convolution by the rows' remainder on both axes, so the strided
/// cases compared with it have square inputs; non-square ones are checked
/// by central differences): input dims, kernel dims, stride, padding, dilation,
/// groups.
type ConvCase = ([usize; 4], [usize; 4], usize, [usize; 4], usize, usize);

const CONV_CASES: [ConvCase; 10] = [
    // 3 x 3, stride 1, same padding (ResNet's body).
    ([2, 3, 7, 6], [4, 3, 3, 3], 1, [1, 1, 1, 1], 1, 1),
    // 3 x 3, stride 2 (ResNet's downsampling convolutions).
    ([2, 3, 8, 8], [5, 3, 3, 3], 2, [1, 1, 1, 1], 1, 1),
    // 7 x 7, stride 2, padding 3 (ResNet's stem).
    ([1, 3, 11, 11], [4, 3, 7, 7], 2, [3, 3, 3, 3], 1, 1),
    // 1 x 1 at stride 1 (the unfolding skipped) and at stride 2.
    ([2, 4, 5, 6], [3, 4, 1, 1], 1, [0, 0, 0, 0], 1, 1),
    ([2, 4, 5, 5], [3, 4, 1, 1], 2, [0, 0, 0, 0], 1, 1),
    // Dilated.
    ([1, 2, 9, 8], [3, 2, 3, 3], 1, [2, 2, 2, 2], 2, 1),
    // Grouped and depthwise.
    ([2, 4, 6, 6], [6, 2, 3, 3], 1, [1, 1, 1, 1], 1, 2),
    ([1, 3, 7, 7], [3, 1, 3, 3], 2, [1, 1, 1, 1], 1, 3),
    // Asymmetric padding ("same" padding of an even kernel, TensorFlow's
    // stride-2 padding), and a stride whose windows leave input unread.
    ([1, 2, 6, 6], [3, 2, 4, 4], 1, [1, 2, 2, 1], 1, 1),
    ([1, 2, 9, 9], [3, 2, 3, 3], 3, [0, 1, 1, 0], 1, 1),
];

#[test]
fn conv2d_values_and_input_gradients_equal_candles() {
    for (case, (xd, kd, stride, padding, dilation, groups)) in CONV_CASES.into_iter().enumerate() {
        let x = tensor(&xd, case as u64);
        let k = tensor(&kd, 100 + case as u64);
        let bias = tensor(&[kd[0]], 200 + case as u64);
        let ours = |x: &Tensor| conv2d(x, &k, Some(&bias), stride, padding, dilation, groups);
        let theirs = |x: &Tensor| {
            candle_conv(x, &k, stride, padding, dilation, groups)?.broadcast_add(&bias.reshape((1, kd[0], 1, 1))?)
        };
        let (y, g) = value_and_gradient(&x, &ours);
        let (y_ref, g_ref) = value_and_gradient(&x, &theirs);
        assert!(
            max_diff(&y, &y_ref) < ROUNDING,
            "case {case}: values differ by {}",
            max_diff(&y, &y_ref)
        );
        assert!(
            max_diff(&g, &g_ref) < ROUNDING,
            "case {case}: gradients differ by {}",
            max_diff(&g, &g_ref)
        );
    }
}

#[test]
fn conv2d_strided_on_non_square_inputs_matches_central_differences() {
    let x = tensor(&[1, 2, 11, 8], 11);
    let k = tensor(&[3, 2, 7, 7], 12);
    let f = |x: &Tensor| conv2d(x, &k, None, 2, [3, 3, 3, 3], 1, 1);
    let (y, g) = value_and_gradient(&x, &f);
    assert!(max_diff(&y, &candle_conv(&x, &k, 2, [3; 4], 1, 1).unwrap()) < ROUNDING);
    let fd = finite_differences(&x, &f);
    assert!(max_diff(&g, &fd) < DIFFERENCES, "{}", max_diff(&g, &fd));
}

#[test]
fn conv2d_unequal_strides_match_central_differences() {
    let x = tensor(&[1, 2, 7, 8], 1);
    let k = tensor(&[3, 2, 3, 2], 2);
    let f = |x: &Tensor| conv2d(x, &k, None, (2, 3), [1, 0, 1, 1], 1, 1);
    let (y, g) = value_and_gradient(&x, &f);
    // Rows: (7 + 2 - 3) / 2 + 1 = 4; columns: (8 + 1 - 2) / 3 + 1 = 3.
    assert_eq!(y.dims(), [1, 3, 4, 3]);
    // Every third column of the stride-(2, 1) convolution.
    let dense = conv2d(&x, &k, None, (2, 1), [1, 0, 1, 1], 1, 1).unwrap();
    let kept = dense
        .index_select(&Tensor::new(&[0u32, 3, 6], &Device::Cpu).unwrap(), 3)
        .unwrap();
    assert!(max_diff(&y, &kept) < ROUNDING);
    let fd = finite_differences(&x, &f);
    assert!(max_diff(&g, &fd) < DIFFERENCES, "{}", max_diff(&g, &fd));
}

#[test]
fn conv2d_in_f32_is_candles_within_rounding() {
    let (xd, kd, stride, padding, dilation, groups) = CONV_CASES[1];
    let x = tensor(&xd, 5).to_dtype(DType::F32).unwrap();
    let k = tensor(&kd, 6).to_dtype(DType::F32).unwrap();
    let (y, g) = value_and_gradient(&x, &|x| conv2d(x, &k, None, stride, padding, dilation, groups));
    let (y_ref, g_ref) = value_and_gradient(&x, &|x| candle_conv(x, &k, stride, padding, dilation, groups));
    assert_eq!(y.dtype(), DType::F32);
    // 27 products of values below 1 summed in another order: measured 7.2e-7.
    assert!(max_diff(&y, &y_ref) < 1e-5);
    assert!(max_diff(&g, &g_ref) < 1e-5);
}

#[test]
fn conv2d_refuses_mismatched_shapes_with_an_error() {
    let x = tensor(&[1, 3, 5, 5], 1);
    assert!(conv2d(&x, &tensor(&[2, 2, 3, 3], 2), None, 1, [0; 4], 1, 1).is_err());
    assert!(conv2d(&x, &tensor(&[2, 1, 3, 3], 2), None, 1, [0; 4], 1, 2).is_err());
    assert!(conv2d(&x, &tensor(&[2, 3, 7, 7], 2), None, 1, [0; 4], 1, 1).is_err());
    assert!(conv2d(&x, &tensor(&[2, 3, 3, 3], 2), None, 0, [0; 4], 1, 1).is_err());
    assert!(conv2d(&x, &tensor(&[2, 3, 3, 3], 2), None, 1, [0; 4], (1, 2), 1).is_err());
    assert!(conv2d(&tensor(&[3, 5, 5], 1), &tensor(&[2, 3, 3, 3], 2), None, 1, [0; 4], 1, 1).is_err());
}

#[test]
fn max_pool2d_with_kernel_equal_to_stride_is_candles() {
    let x = tensor(&[2, 3, 6, 8], 3);
    let f = |x: &Tensor| max_pool2d(x, 2, 2, [0; 4], false);
    let (y, g) = value_and_gradient(&x, &f);
    assert_eq!(max_diff(&y, &x.max_pool2d(2).unwrap()), 0.0);
    // candle 0.11.1's own backward gives a quarter of this gradient (it
    // multiplies by the window's share of maxima, 1/4, where it should
    // divide), so the reference is central differences.
    let fd = finite_differences(&x, &f);
    assert!(max_diff(&g, &fd) < DIFFERENCES, "{}", max_diff(&g, &fd));
}

/// Max-pooling by hand: -inf padding, windows in row-major order.
fn max_pool_by_hand(
    x: &[f64],
    (h, w): (usize, usize),
    k: usize,
    s: usize,
    pad: usize,
    out: (usize, usize),
) -> Vec<f64> {
    let mut y = Vec::new();
    for oi in 0..out.0 {
        for oj in 0..out.1 {
            let mut m = f64::NEG_INFINITY;
            for r in (oi * s) as isize - pad as isize..(oi * s + k) as isize - pad as isize {
                for c in (oj * s) as isize - pad as isize..(oj * s + k) as isize - pad as isize {
                    if r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < w {
                        m = m.max(x[r as usize * w + c as usize]);
                    }
                }
            }
            y.push(m);
        }
    }
    y
}

#[test]
fn max_pool2d_three_by_three_stride_two_matches_hand_and_differences() {
    // ResNet's pool, which candle cannot differentiate. Negative values show
    // the padding is -inf, not 0.
    let x = (tensor(&[1, 2, 7, 6], 4) - 2.0).unwrap();
    let f = |x: &Tensor| max_pool2d(x, (3, 3), (2, 2), [1, 1, 1, 1], false);
    let (y, g) = value_and_gradient(&x, &f);
    assert_eq!(y.dims(), [1, 2, 4, 3]);
    let xs = flat(&x);
    let mut expected = max_pool_by_hand(&xs[..42], (7, 6), 3, 2, 1, (4, 3));
    expected.extend(max_pool_by_hand(&xs[42..], (7, 6), 3, 2, 1, (4, 3)));
    assert_eq!(flat(&y), expected);
    let fd = finite_differences(&x, &f);
    assert!(max_diff(&g, &fd) < DIFFERENCES, "{}", max_diff(&g, &fd));
}

#[test]
fn max_pool2d_ties_go_to_the_first_element_of_each_window() {
    // A constant image, as Integrated Gradients' first path point: each of
    // the four windows of a 3 x 3, stride 2, padding 1 pool on 4 x 4 takes
    // its first input element.
    let x = Tensor::full(0.5f64, (1, 1, 4, 4), &Device::Cpu).unwrap();
    let var = Var::from_tensor(&x).unwrap();
    let y = max_pool2d(var.as_tensor(), 3, 2, [1, 1, 1, 1], false).unwrap();
    assert_eq!(y.dims(), [1, 1, 2, 2]);
    let g = y.sum_all().unwrap().backward().unwrap();
    let g = flat(g.get(var.as_tensor()).unwrap());
    #[rustfmt::skip]
    let expected = [
        1.0, 1.0, 0.0, 0.0,
        1.0, 1.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(g, expected);

    // Overlapping windows sharing their maximum sum their gradients there.
    let x = Var::from_tensor(&Tensor::new(&[[[[1.0f64, 5.0, 2.0, 0.0]]]], &Device::Cpu).unwrap()).unwrap();
    let y = max_pool2d(x.as_tensor(), (1, 3), 1, [0; 4], false).unwrap();
    let weights = Tensor::new(&[[[[2.0f64, 3.0]]]], &Device::Cpu).unwrap();
    let g = y.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(flat(g.get(x.as_tensor()).unwrap()), [0.0, 5.0, 0.0, 0.0]);
}

#[test]
fn max_pool2d_ceil_mode_keeps_the_partial_last_window() {
    let x = tensor(&[1, 1, 5, 5], 7);
    let y = max_pool2d(&x, 2, 2, [0; 4], true).unwrap();
    assert_eq!(y.dims(), [1, 1, 3, 3]);
    let xs = flat(&x);
    // The last window of each axis holds row (column) 4 alone.
    assert_eq!(flat(&y)[8], xs[24]);
    assert_eq!(flat(&y)[2], xs[4].max(xs[9]));
    assert_eq!(max_pool2d(&x, 2, 2, [0; 4], false).unwrap().dims(), [1, 1, 2, 2]);
}

#[test]
fn avg_pool2d_with_kernel_equal_to_stride_is_candles() {
    let x = tensor(&[2, 3, 6, 8], 8);
    let (y, g) = value_and_gradient(&x, &|x| avg_pool2d(x, 2, 2, [0; 4], false, true));
    let (y_ref, g_ref) = value_and_gradient(&x, &|x| x.avg_pool2d(2));
    assert!(max_diff(&y, &y_ref) < ROUNDING);
    assert!(max_diff(&g, &g_ref) < ROUNDING);
}

#[test]
fn avg_pool2d_padding_counts_as_asked() {
    // 1 .. 9 in a 3 x 3 image; 2 x 2 windows at stride 2 with one pixel of
    // padding on top and left: the corner window holds 1 alone.
    let x = Tensor::arange(1.0f64, 10.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 3, 3))
        .unwrap();
    let with_pad = avg_pool2d(&x, 2, 2, [1, 1, 0, 0], false, true).unwrap();
    let without = avg_pool2d(&x, 2, 2, [1, 1, 0, 0], false, false).unwrap();
    assert_eq!(
        flat(&with_pad),
        [
            1.0 / 4.0,
            (2.0 + 3.0) / 4.0,
            (4.0 + 7.0) / 4.0,
            (5.0 + 6.0 + 8.0 + 9.0) / 4.0
        ]
    );
    assert_eq!(
        flat(&without),
        [1.0, (2.0 + 3.0) / 2.0, (4.0 + 7.0) / 2.0, (5.0 + 6.0 + 8.0 + 9.0) / 4.0]
    );

    // Overlapping windows with padding on every side: the gradient against
    // central differences, both divisors.
    let x = tensor(&[1, 2, 6, 5], 9);
    for count_include_pad in [true, false] {
        let f = |x: &Tensor| avg_pool2d(x, 3, (2, 1), [1, 1, 1, 1], true, count_include_pad);
        let (_, g) = value_and_gradient(&x, &f);
        let fd = finite_differences(&x, &f);
        assert!(max_diff(&g, &fd) < DIFFERENCES, "{}", max_diff(&g, &fd));
    }
}

#[test]
fn global_average_is_candles_mean() {
    let x = tensor(&[2, 3, 4, 5], 10);
    let (y, g) = value_and_gradient(&x, &|x| avg_pool2d(x, (4, 5), 1, [0; 4], false, true));
    let (y_ref, g_ref) = value_and_gradient(&x, &|x| x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2));
    assert!(max_diff(&y, &y_ref) < ROUNDING);
    assert!(max_diff(&g, &g_ref) < ROUNDING);
}

#[test]
fn pools_refuse_bad_windows_with_an_error() {
    let x = tensor(&[1, 1, 4, 4], 1);
    assert!(max_pool2d(&x, 5, 1, [0; 4], false).is_err());
    assert!(max_pool2d(&x, 2, 0, [0; 4], false).is_err());
    assert!(avg_pool2d(&x, 0, 1, [0; 4], false, true).is_err());
    assert!(max_pool2d(&tensor(&[4, 4], 1), 2, 2, [0; 4], false).is_err());
    let ints = Tensor::zeros((1, 1, 4, 4), DType::U32, &Device::Cpu).unwrap();
    assert!(max_pool2d(&ints, 2, 2, [0; 4], false).is_err());
}

#[test]
fn relu_is_candles_except_for_no_gradient_at_zero() {
    let x = Tensor::new(&[[-1.5f64, 0.0, 2.0], [3.0, -0.0, 0.25]], &Device::Cpu).unwrap();
    let (y, g) = value_and_gradient(&x, &relu);
    let (y_ref, g_ref) = value_and_gradient(&x, &|x| x.relu());
    assert_eq!(flat(&y), flat(&y_ref));
    let weights = flat(&tensor(&[2, 3], 99));
    // PyTorch's rule: the gradient passes where x > 0 only.
    let expected: Vec<f64> = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0]
        .iter()
        .zip(&weights)
        .map(|(m, w)| m * w)
        .collect();
    assert_eq!(flat(&g), expected);
    // candle's passes it at 0 as well.
    assert_eq!(flat(&g_ref)[1], weights[1]);
    let f32s = relu(&x.to_dtype(DType::F32).unwrap()).unwrap();
    assert_eq!(f32s.dtype(), DType::F32);
}

#[test]
fn conv2d_batches_unfolded_in_several_chunks_equal_candles() {
    // 16 channels x 9 taps x 64 x 64 positions x 8 bytes = 4.7 MB of
    // columns per image, over the 8 MiB unfolded at a time: three chunks of
    // one image each. A smaller convolution runs first so that the
    // reused column buffer holds stale values where this one pads.
    let small = tensor(&[1, 2, 5, 5], 40);
    let small_k = tensor(&[2, 2, 3, 3], 41);
    conv2d(&small, &small_k, None, 1, [0; 4], 1, 1).unwrap();
    let x = tensor(&[3, 16, 64, 64], 42);
    let k = tensor(&[4, 16, 3, 3], 43);
    let bias = tensor(&[4], 44);
    let ours = |x: &Tensor| conv2d(x, &k, Some(&bias), 1, [1, 1, 1, 1], 1, 1);
    let theirs = |x: &Tensor| candle_conv(x, &k, 1, [1; 4], 1, 1)?.broadcast_add(&bias.reshape((1, 4, 1, 1))?);
    let (y, g) = value_and_gradient(&x, &ours);
    let (y_ref, g_ref) = value_and_gradient(&x, &theirs);
    assert!(
        max_diff(&y, &y_ref) < ROUNDING,
        "values differ by {}",
        max_diff(&y, &y_ref)
    );
    assert!(
        max_diff(&g, &g_ref) < ROUNDING,
        "gradients differ by {}",
        max_diff(&g, &g_ref)
    );
}
