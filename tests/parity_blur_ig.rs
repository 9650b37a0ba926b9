//! Blur IG against PAIR saliency 0.2.1's `BlurIG`
//! (tests/reference/gen_blur_ig.py), and the reference's own tests ported.

mod common;

use common::{TanhNet, assert_close, fixture, rel_err, rel_err_f32};
use ndarray::{Array3, ArrayD, ArrayViewD, Axis, IxDyn};
use saliency::imageops::{BoundaryMode, gaussian_filter};
use saliency::{BlurIg, ModelOutputs, OutputKey, Progress, Saliency, SaliencyError};

const TOPIC: &str = "blur_ig";

impl TanhNet {
    fn model(
        &self,
    ) -> impl FnMut(ArrayViewD<'_, f64>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, saliency::BoxError>
    {
        |b, _| Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, self.grads(b)))
    }
}

/// The cases of gen_blur_ig.py: name, max_sigma, steps, grad_step, sqrt,
/// batch_size, and the tolerance (measured relative errors: 2.7e-15, 2.4e-14,
/// 1.4e-15, 7.4e-16; the Gaussian filters round differently).
const CASES: &[(&str, f64, usize, f64, bool, usize, f64)] = &[
    ("small_sigma", 5.0, 20, 0.01, false, 1, 5e-14),
    ("large_sigma", 50.0, 30, 0.01, false, 1, 5e-13),
    ("sqrt_batch1", 8.0, 25, 0.01, true, 1, 2e-14),
    ("linear_batch7", 8.0, 20, 0.05, false, 7, 1e-14),
];

fn method(max_sigma: f64, steps: usize, grad_step: f64, sqrt: bool, batch_size: usize) -> BlurIg {
    BlurIg::new()
        .max_sigma(max_sigma)
        .steps(steps)
        .grad_step(grad_step)
        .sqrt(sqrt)
        .batch_size(batch_size)
}

#[test]
fn blur_ig_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "x");
    for &(name, max_sigma, steps, grad_step, sqrt, batch_size, tol) in CASES {
        let expected = fixture::<f64>(TOPIC, name);
        let mask = method(max_sigma, steps, grad_step, sqrt, batch_size)
            .get_mask(x.view(), &mut net.model())
            .unwrap();
        assert_close(&format!("blur_ig {name}"), mask.view(), expected.view(), tol);
    }
}

/// With sqrt spacing the reference multiplies each batch by the sigma step
/// of its last point; the crate gives every point its own step, so any
/// batch size reproduces the reference's batch-size-1 result, while the
/// reference's own batch-size-5 result is far from it.
#[test]
fn sqrt_spacing_does_not_depend_on_batch_size() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "x");
    let batch1 = fixture::<f64>(TOPIC, "sqrt_batch1");
    let defect = fixture::<f64>(TOPIC, "sqrt_batch5_reference_defect");
    assert!(rel_err(defect.view(), batch1.view()) > 0.1);
    for batch_size in [2, 5, 25, 100] {
        let mask = method(8.0, 25, 0.01, true, batch_size)
            .get_mask(x.view(), &mut net.model())
            .unwrap();
        // Measured 1.4e-15 to 1.5e-15.
        assert_close(
            &format!("blur_ig sqrt batch {batch_size} vs reference batch 1"),
            mask.view(),
            batch1.view(),
            2e-14,
        );
    }
}

#[test]
fn blur_ig_f32_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "x").mapv(|v| v as f32);
    let expected = fixture::<f32>(TOPIC, "f32_batch4").mapv(f64::from);
    let mask = method(6.0, 20, 0.01, false, 4)
        .get_mask(
            x.view(),
            &mut |b: ArrayViewD<'_, f32>, _: &saliency::ModelRequest<'_>| {
                let g = net.grads(b.mapv(f64::from).view()).mapv(|v| v as f32);
                Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
            },
        )
        .unwrap();
    let err = rel_err_f32(mask.view(), expected.view());
    // Measured 0: the same float32 operations in the same order. Their inputs
    // (tanh and the Gaussian weights, computed in f64) may differ in the last
    // bit, which can flip a float32 rounding and carry through 20 summed
    // steps: allow 1e-6, about 8 float32 epsilons.
    println!("parity blur_ig f32_batch4: relative error {err:.3e} (tolerance 1e-6)");
    assert!(err <= 1e-6, "{err}");
}

/// The reference tests' input: black except two pixels near the centre.
fn reference_input() -> Array3<f64> {
    let mut x = Array3::<f64>::zeros((5, 5, 1));
    x[[1, 1, 0]] = 0.7;
    x[[2, 2, 0]] = 1.0;
    x
}

/// The reference tests' model, f(x) = sum(sin(x)), counting its calls.
fn sin_model(
    calls: &mut usize,
) -> impl FnMut(ArrayViewD<'_, f64>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, saliency::BoxError> + '_
{
    move |batch, keys| {
        assert_eq!(keys, [OutputKey::InputOutputGradients]);
        *calls += 1;
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(f64::cos)))
    }
}

/// The reference's completeness tests (testBlurIGGetMask, ...Batched,
/// ...SingleBatch): on f(x) = sum(sin(x)) every pixel is independent, so the
/// mask is sin(x) - sin(blur(x, max_sigma)) per pixel (to 2 decimals), no
/// pixel is exactly zero, and the model is called ceil(steps / batch) times.
#[test]
fn reference_tests_completeness_and_call_counts() {
    let x = reference_input();
    let baseline = gaussian_filter(
        x.view().into_dyn(),
        &[10.0, 10.0, 0.0],
        BoundaryMode::Constant(0.0),
        4.0,
    )
    .unwrap();
    let expected = x.mapv(f64::sin).into_dyn() - baseline.mapv(f64::sin);
    for (steps, batch_size, expected_calls) in [(4000, 1, 4000), (2001, 100, 21), (499, 500, 1)] {
        let mut calls = 0;
        let mask = method(10.0, steps, 0.01, false, batch_size)
            .get_mask(x.view().into_dyn(), &mut sin_model(&mut calls))
            .unwrap();
        assert_eq!(calls, expected_calls, "steps {steps} batch {batch_size}");
        assert!(mask.iter().all(|v| *v != 0.0));
        // numpy's assert_almost_equal(decimal=2): |actual - desired| < 1.5e-2,
        // about 4x the 3.6e-3 measured (the path's discretisation).
        let diff = common::max_abs_diff(mask.iter(), expected.iter());
        println!("blur_ig completeness, steps {steps} batch {batch_size}: max |difference| {diff:.3e}");
        assert!(diff < 1.5e-2, "steps {steps}: {diff}");
    }
}

/// The reference's testBlurIGCallModelArgs: one call per step with batch
/// size 1, each asking for the input gradients only.
#[test]
fn reference_test_calls_per_step() {
    let x = reference_input();
    let mut calls = 0;
    let mut progress = Vec::new();
    method(10.0, 50, 0.01, false, 1)
        .get_mask_with_progress(x.view().into_dyn(), &mut sin_model(&mut calls), &mut |p: Progress| {
            progress.push(p.done)
        })
        .unwrap();
    assert_eq!(calls, 50);
    assert_eq!(progress, (1..=50).collect::<Vec<_>>());
}

/// The reference's testBlurIGGetMaskError: gradients without the batch axis.
#[test]
fn reference_test_wrong_gradient_shape() {
    let x = reference_input();
    let mut bad = |batch: ArrayViewD<'_, f64>, _keys: &saliency::ModelRequest<'_>| {
        let g = batch.mapv(f64::cos).index_axis(Axis(0), 0).to_owned();
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
    };
    let err = method(10.0, 2001, 0.01, false, 100)
        .get_mask(x.view().into_dyn(), &mut bad)
        .unwrap_err();
    match err {
        SaliencyError::OutputBatchMismatch {
            expected_batch,
            expected,
            actual,
            ..
        } => {
            assert_eq!(expected_batch, 100);
            assert_eq!(expected, vec![100, 5, 5, 1]);
            assert_eq!(actual, vec![5, 5, 1]);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn rank_two_input_equals_one_channel() {
    let x = reference_input();
    let m = method(4.0, 30, 0.01, true, 7);
    let mut c1 = 0;
    let three = m.get_mask(x.view().into_dyn(), &mut sin_model(&mut c1)).unwrap();
    let mut c2 = 0;
    let two = m
        .get_mask(x.index_axis(Axis(2), 0).into_dyn(), &mut sin_model(&mut c2))
        .unwrap();
    assert_eq!(two, three.index_axis(Axis(2), 0).to_owned().into_dyn());
}

#[test]
fn bad_inputs_are_errors() {
    let x = reference_input().into_dyn();
    let mut calls = 0;
    let mut model = sin_model(&mut calls);
    let cases: Vec<(BlurIg, &str)> = vec![
        (BlurIg::new().steps(0), "steps"),
        (BlurIg::new().batch_size(0), "batch_size"),
        (BlurIg::new().max_sigma(-1.0), "max_sigma"),
        (BlurIg::new().max_sigma(f64::INFINITY), "max_sigma"),
        (BlurIg::new().grad_step(0.0), "grad_step"),
        (BlurIg::new().grad_step(f64::NAN), "grad_step"),
    ];
    for (m, param) in cases {
        match m.get_mask(x.view(), &mut model) {
            Err(SaliencyError::InvalidParameter { name, .. }) => assert_eq!(name, param),
            other => panic!("{param}: {other:?}"),
        }
    }
    let rank1 = ArrayD::<f64>::zeros(IxDyn(&[5]));
    assert!(matches!(
        BlurIg::new().get_mask(rank1.view(), &mut model),
        Err(SaliencyError::InvalidRank { .. })
    ));
    let rank4 = ArrayD::<f64>::zeros(IxDyn(&[2, 5, 5, 1]));
    assert!(matches!(
        BlurIg::new().get_mask(rank4.view(), &mut model),
        Err(SaliencyError::InvalidRank { actual: 4, .. })
    ));
    let empty = ArrayD::<f64>::zeros(IxDyn(&[0, 5, 1]));
    assert!(matches!(
        BlurIg::new().get_mask(empty.view(), &mut model),
        Err(SaliencyError::EmptyInput { .. })
    ));
    let mut nan = x.clone();
    nan[[0, 0, 0]] = f64::NAN;
    assert!(matches!(
        BlurIg::new().get_mask(nan.view(), &mut model),
        Err(SaliencyError::NonFiniteInput { .. })
    ));
    // A model answering with the wrong key.
    let mut wrong_key = |b: ArrayViewD<'_, f64>, _k: &saliency::ModelRequest<'_>| {
        Ok(ModelOutputs::new().with(OutputKey::GuidedInputOutputGradients, b.to_owned()))
    };
    assert!(matches!(
        BlurIg::new().steps(3).get_mask(x.view(), &mut wrong_key),
        Err(SaliencyError::MissingOutput {
            key: OutputKey::InputOutputGradients
        })
    ));
    // A model answering with the wrong shape.
    let mut wrong_shape = |b: ArrayViewD<'_, f64>, _k: &saliency::ModelRequest<'_>| {
        let s = b.shape();
        Ok(ModelOutputs::new().with(
            OutputKey::InputOutputGradients,
            ArrayD::<f64>::zeros(IxDyn(&[s[0], s[1], s[2] + 1, s[3]])),
        ))
    };
    assert!(matches!(
        BlurIg::new().steps(3).get_mask(x.view(), &mut wrong_shape),
        Err(SaliencyError::OutputShapeMismatch { .. })
    ));
}

/// `f(x) = sum(x^3 / 3)`: the gradient `x * x`, exact in both languages.
fn cube_grads<F: saliency::Float>(
    b: ArrayViewD<'_, F>,
    _: &saliency::ModelRequest<'_>,
) -> Result<ModelOutputs<F>, saliency::BoxError> {
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.mapv(|v| v * v)))
}

/// Images with both sides at least 128, so that the wide kernels (radius 24
/// and up) blur through the FFT, with the first pass's spectra shared by all
/// the blurs of a call; the small sigmas of the same paths take the other
/// filters. Float32 (three channels), float64, and one channel of odd height
/// (given as rank 2).
#[test]
fn fft_sized_images_match_reference() {
    let x32 = fixture::<f32>(TOPIC, "fft_x");
    let mask = method(50.0, 10, 0.01, false, 4)
        .get_mask(x32.view(), &mut cube_grads)
        .unwrap();
    let err = rel_err_f32(mask.view(), fixture::<f32>(TOPIC, "fft_f32").mapv(f64::from).view());
    // Measured 0 (as the small f32 case): every float32 blur rounds as
    // SciPy's; a tie flipped by the FFT's 1e-16 would show as one step's
    // slope, about 1e-6 of the mask.
    println!("parity blur_ig fft_f32: relative error {err:.3e} (tolerance 1e-6)");
    assert!(err <= 1e-6, "{err}");

    let x64 = x32.mapv(f64::from);
    let mask = method(40.0, 8, 0.01, false, 3)
        .get_mask(x64.view(), &mut cube_grads)
        .unwrap();
    assert_close(
        "blur_ig fft_f64",
        mask.view(),
        fixture::<f64>(TOPIC, "fft_f64").view(),
        1e-12,
    );

    let x2 = x64.slice(ndarray::s![..135, ..129, 0]).to_owned();
    let mask = method(30.0, 6, 0.01, false, 1)
        .get_mask(x2.view(), &mut cube_grads)
        .unwrap();
    assert_close(
        "blur_ig fft_one_channel",
        mask.into_dyn().view(),
        fixture::<f64>(TOPIC, "fft_one_channel").view(),
        1e-12,
    );
}
