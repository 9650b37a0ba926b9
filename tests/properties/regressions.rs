//! Concrete inputs that once panicked, aborted, hung or returned a mask of
//! NaN / infinities, one test each.

use ndarray::{Array2, Array3, ArrayD, ArrayViewD, IxDyn, array};
use saliency::imageops::{self, BoundaryMode, ResizeOptions};
use saliency::{
    BlurIg, BoxError, GradCam, GuidedIg, IntegratedGradients, MAX_STEPS, ModelOutputs, ModelRequest, OutputKey,
    Saliency, SaliencyError, SmoothGrad, SmoothGradParams, VanillaGradients, Xrai, XraiParameters, visualize,
};

use crate::arb::{self, Fault, ModelSpec};

fn sound() -> ModelSpec {
    ModelSpec {
        fault: Fault::None,
        after: 0,
        conv: vec![1, 1, 1],
    }
}

fn image2x2() -> ArrayD<f64> {
    array![[0.1, -0.5], [0.7, 0.2]].into_dyn()
}

fn assert_param(result: saliency::Result<ArrayD<f64>>, name: &str) {
    match result {
        Err(SaliencyError::InvalidParameter { name: n, .. }) if n == name => {}
        other => panic!("expected an invalid {name}, got {other:?}"),
    }
}

#[test]
fn integrated_gradients_with_usize_max_steps_fails_fast() {
    // Collected usize::MAX path points: capacity overflow panic.
    let ig = IntegratedGradients::new().steps(usize::MAX).batch_size(usize::MAX);
    assert_param(ig.get_mask(image2x2().view(), &mut arb::model(sound())), "steps");
    let ig = IntegratedGradients::new().steps(MAX_STEPS + 1);
    assert_param(ig.get_mask(image2x2().view(), &mut arb::model(sound())), "steps");
}

#[test]
fn smoothgrad_with_usize_max_samples_fails_fast() {
    // Called the model usize::MAX times.
    let params = SmoothGradParams::new().nsamples(usize::MAX).seed(0);
    let sg = SmoothGrad::new(VanillaGradients::new(), params.clone());
    assert_param(sg.get_mask(image2x2().view(), &mut arb::model(sound())), "nsamples");
    let smoothed = VanillaGradients::new().get_smoothed_mask(image2x2().view(), &mut arb::model(sound()), &params);
    assert_param(smoothed, "nsamples");
}

#[test]
fn guided_ig_with_usize_max_steps_fails_fast() {
    // Called the model usize::MAX times.
    let gig = GuidedIg::new().steps(usize::MAX);
    assert_param(gig.get_mask(image2x2().view(), &mut arb::model(sound())), "steps");
}

#[test]
fn blur_ig_with_usize_max_steps_fails_fast() {
    let blur = BlurIg::new().steps(usize::MAX).max_sigma(1.0);
    assert_param(blur.get_mask(image2x2().view(), &mut arb::model(sound())), "steps");
}

#[test]
fn xrai_with_usize_max_steps_fails_fast() {
    // steps * baselines overflowed (a panic in debug builds).
    let xrai = Xrai::new()
        .parameters(XraiParameters::new().steps(usize::MAX))
        .segments(vec![Array2::from_elem((2, 2), true)]);
    assert_param(
        xrai.get_mask(image2x2().view(), &mut arb::model(sound()))
            .map(|m| m.into_dyn()),
        "steps",
    );
}

#[test]
fn blur_ig_with_huge_max_sigma_is_rejected() {
    // The kernel radius saturated to usize::MAX: an out-of-bounds panic.
    let blur = BlurIg::new().steps(2).max_sigma(1e300);
    assert_param(blur.get_mask(image2x2().view(), &mut arb::model(sound())), "max_sigma");
}

#[test]
fn blur_ig_with_a_grad_step_zero_in_f32_is_rejected() {
    // 5e-324 is zero in f32: slopes divided by zero.
    let x = image2x2().mapv(|v| v as f32);
    let result = BlurIg::new()
        .steps(2)
        .max_sigma(1.0)
        .grad_step(5e-324)
        .get_mask(x.view(), &mut arb::model(sound()));
    assert!(
        matches!(result, Err(SaliencyError::InvalidParameter { name: "grad_step", .. })),
        "{result:?}"
    );
}

#[test]
fn gaussian_filter_with_huge_sigma_is_rejected() {
    let x = image2x2();
    let result = imageops::gaussian_filter(x.view(), &[1e300, 0.0], BoundaryMode::Reflect, 4.0);
    assert_param(result, "sigma");
    let result = imageops::felzenszwalb(x.view(), 100.0, 1e300, 1);
    assert!(
        matches!(result, Err(SaliencyError::InvalidParameter { name: "sigma", .. })),
        "{result:?}"
    );
}

#[test]
fn felzenszwalb_segments_of_a_vector_is_an_error() {
    // Read shape()[1] of a rank-1 input before checking its rank.
    let x = ArrayD::from_shape_vec(IxDyn(&[3]), vec![0.0, 1.0, 2.0]).unwrap();
    let err = saliency::get_segments_felzenszwalb(x.view()).unwrap_err();
    assert!(matches!(err, SaliencyError::InvalidRank { actual: 1, .. }), "{err}");
    let scalar = ArrayD::from_elem(IxDyn(&[]), 1.0);
    let err = saliency::get_segments_felzenszwalb(scalar.view()).unwrap_err();
    assert!(matches!(err, SaliencyError::InvalidRank { actual: 0, .. }), "{err}");
}

#[test]
fn resize_to_a_huge_shape_is_an_error() {
    // Allocated the output (or its taps) regardless: capacity overflow.
    let x = image2x2();
    for shape in [[usize::MAX, 1], [1 << 40, 1 << 40], [2, 1 << 62]] {
        let result = imageops::resize(x.view(), &shape, &ResizeOptions::default());
        assert_param(result, "output_shape");
    }
}

#[test]
fn disk_with_huge_radius_is_an_error() {
    // 2 * radius + 1 overflowed; 2^40 tried to allocate 2^82 bytes.
    for radius in [usize::MAX, 1 << 40] {
        assert!(matches!(
            imageops::disk(radius),
            Err(SaliencyError::InvalidParameter { name: "radius", .. })
        ));
    }
    assert_eq!(imageops::disk(0).unwrap().dim(), (1, 1));
}

#[test]
fn draw_text_with_huge_scale_and_offsets_returns() {
    // Looped scale^2 times per font pixel (and overflowed positions).
    let mut canvas = Array3::<u8>::zeros((6, 9, 3));
    visualize::draw_text(&mut canvas, "B", 0, 0, usize::MAX, [1, 2, 3]);
    assert!(canvas.iter().any(|&v| v != 0));
    visualize::draw_text(&mut canvas, "AB", usize::MAX, usize::MAX, 1 << 40, [1, 2, 3]);
}

#[test]
fn integrated_gradients_of_far_apart_input_and_baseline_is_a_typed_error() {
    // input - baseline overflowed: the model was handed infinities and the
    // mask came back NaN.
    let x = array![1e308, 0.5].into_dyn();
    let ig = IntegratedGradients::new().steps(2).baseline(array![-1e308, 0.0]);
    let err = ig.get_mask(x.view(), &mut arb::model(sound())).unwrap_err();
    assert!(
        matches!(
            err,
            SaliencyError::NonFiniteResult {
                what: "input - baseline",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn smoothgrad_of_huge_values_is_a_typed_error() {
    // Squaring a Blur IG mask of a 1e300 pixel gave an infinite mask.
    let x = array![[1e300]].into_dyn();
    let params = SmoothGradParams::new().nsamples(1).stdev_spread(0.0).seed(0);
    let blur = BlurIg::new().steps(3).max_sigma(2.0);
    let result = blur.get_smoothed_mask(x.view(), &mut arb::model(sound()), &params);
    assert!(
        matches!(result, Err(SaliencyError::NonFiniteResult { .. })),
        "{result:?}"
    );
}

#[cfg(feature = "metrics")]
#[test]
fn random_mask_too_large_to_allocate_is_an_error() {
    // vec![false; 2^40] aborted the process.
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let result = saliency::metrics::generate_random_mask(1 << 20, 1 << 20, 0.0, &mut rng);
    assert!(
        matches!(result, Err(SaliencyError::InvalidParameter { .. })),
        "{result:?}"
    );
}

#[cfg(feature = "metrics")]
#[test]
fn pic_with_usize_max_data_points_fails_fast() {
    // Collected usize::MAX curve points after all the model calls.
    let image = ArrayD::<u8>::zeros(IxDyn(&[4, 4, 3]));
    let map = Array2::<f64>::zeros((4, 4));
    let mask = Array2::from_elem((4, 4), false);
    let result =
        saliency::PicMetric::new()
            .num_data_points(usize::MAX)
            .compute(image.view(), map.view(), mask.view(), |b| Ok(vec![1.0; b.shape()[0]]));
    assert!(
        matches!(
            result,
            Err(SaliencyError::InvalidParameter {
                name: "num_data_points",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn guided_ig_with_a_huge_baseline_returns() {
    // A baseline at 1e300 and f64::MAX: the path never reached its target
    // and the exact-path loop never ended.
    let x = array![[0.7124577261468895, 2.8120526546690665]].into_dyn();
    let gig = GuidedIg::new()
        .steps(3)
        .fraction(0.586003014871165)
        .max_dist(0.5991074788996171)
        .baseline(array![[1e300, f64::MAX]]);
    let result = gig.get_mask(x.view(), &mut arb::model(sound()));
    assert!(
        matches!(result, Err(SaliencyError::NonFiniteResult { .. })),
        "{result:?}"
    );
}

#[test]
fn guided_ig_whose_path_length_overflows_is_a_typed_error() {
    // Without a baseline |x| sums to infinity: the step targets were NaN
    // and the mask came back as meaningless finite numbers.
    let x = array![[1e308, 1e308], [-1e308, 0.5]].into_dyn();
    for fraction in [0.0, 0.25, 1.0] {
        let gig = GuidedIg::new().steps(3).fraction(fraction);
        let result = gig.get_mask(x.view(), &mut arb::model(sound()));
        assert!(
            matches!(result, Err(SaliencyError::NonFiniteResult { .. })),
            "{result:?}"
        );
    }
}

/// A Grad-CAM model whose layer is `[1, 1, 1, channels]` (channels-last) of
/// `values`, with gradients `grads`.
fn grad_cam_model(
    values: Vec<f64>,
    grads: Vec<f64>,
) -> impl FnMut(ArrayViewD<'_, f64>, &ModelRequest<'_>) -> Result<ModelOutputs<f64>, BoxError> {
    move |_batch, _keys| {
        let shape = IxDyn(&[1, 1, 1, values.len()]);
        Ok(ModelOutputs::new()
            .with(
                OutputKey::ConvolutionLayerValues,
                ArrayD::from_shape_vec(shape.clone(), values.clone())?,
            )
            .with(
                OutputKey::ConvolutionOutputGradients,
                ArrayD::from_shape_vec(shape, grads.clone())?,
            ))
    }
}

#[test]
fn grad_cam_of_an_overflowing_map_names_the_map() {
    // With resizing the infinite map reached the resize, which reported a
    // non-finite input "image"; a map of inf - inf (NaN) went through the
    // ReLU as 0 and came back as a plausible zero map.
    let x = array![[0.0]].into_dyn();
    let cases = [(vec![1e300], vec![1e300]), (vec![1e300, -1e300], vec![1e300, 1e300])];
    for (values, grads) in cases {
        for (resize, three_dims) in [(true, true), (true, false), (false, true), (false, false)] {
            let cam = GradCam::new().should_resize(resize).three_dims(three_dims);
            let result = cam.get_mask(x.view(), &mut grad_cam_model(values.clone(), grads.clone()));
            assert!(
                matches!(
                    result,
                    Err(SaliencyError::NonFiniteResult {
                        what: "Grad-CAM map",
                        ..
                    })
                ),
                "{values:?} x {grads:?}, resize {resize}, three_dims {three_dims}: {result:?}"
            );
        }
    }
    // A hugely negative map is rightly zero after the ReLU, as in the
    // reference (numpy.maximum(-inf, 0) is 0).
    let cam = GradCam::new().three_dims(false);
    let mask = cam
        .get_mask(x.view(), &mut grad_cam_model(vec![-1e300], vec![1e300]))
        .unwrap();
    assert_eq!(mask, array![[0.0]].into_dyn());
}

/// Runs Blur IG on `x` with a model that records whether it was ever handed
/// a non-finite value.
fn blur_ig_seeing(x: &ArrayD<f64>, steps: usize, max_sigma: f64) -> (saliency::Result<ArrayD<f64>>, usize, bool) {
    let (mut calls, mut saw_non_finite) = (0, false);
    let result = BlurIg::new().steps(steps).max_sigma(max_sigma).get_mask(
        x.view(),
        &mut |batch: ArrayViewD<'_, f64>, _: &ModelRequest<'_>| {
            calls += 1;
            saw_non_finite |= batch.iter().any(|v| !v.is_finite());
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| v.sin() + 0.5)))
        },
    );
    (result, calls, saw_non_finite)
}

#[test]
fn blur_ig_never_hands_the_model_an_overflowed_blur() {
    // Blurring values near f64::MAX overflowed (SciPy's symmetric kernel adds
    // the two neighbours before weighting them): the model was handed
    // [[1.11e308, inf, 1.11e308]], answered NaN and was blamed for it.
    let x = array![[f64::MAX, 1e300, f64::MAX]].into_dyn();
    let (result, calls, saw_non_finite) = blur_ig_seeing(&x, 2, 1.0);
    assert!(!saw_non_finite, "the model was handed a non-finite value; {result:?}");
    assert!(
        matches!(
            result,
            Err(SaliencyError::NonFiniteResult {
                what: "blurred input",
                count: 1,
                first_index: 1,
            })
        ),
        "{result:?}"
    );
    // Only the unblurred first point (sigma 0) was sent.
    assert_eq!(calls, 1);

    // Finite blurs whose difference per unit of sigma overflows (at sigma
    // 0.5): the mask would be non-finite whatever the model answers.
    let a = 0.85e308;
    let x = array![[a, -a, a, -a, a]].into_dyn();
    let (result, calls, saw_non_finite) = blur_ig_seeing(&x, 2, 1.0);
    assert!(!saw_non_finite, "the model was handed a non-finite value; {result:?}");
    assert!(
        matches!(
            result,
            Err(SaliencyError::NonFiniteResult {
                what: "blurred input's finite difference",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(calls, 1);
}

#[test]
fn grayscale_and_diverging_of_an_overflowing_channel_sum_are_typed_errors() {
    // f64::MAX + 1e300 summed to infinity, which the percentile then
    // reported as a non-finite input "values" the caller never passed.
    let mask = array![[[f64::MAX, 1e300], [0.5, 0.25]]].into_dyn();
    for result in [
        visualize::grayscale(mask.view(), 99.0),
        visualize::diverging(mask.view(), 99.0),
    ] {
        assert!(
            matches!(
                result,
                Err(SaliencyError::NonFiniteResult {
                    what: "mask's channel sum",
                    count: 1,
                    first_index: 0,
                })
            ),
            "{result:?}"
        );
    }
}

#[test]
fn top_percent_mask_of_a_non_finite_map_names_the_map() {
    // The error named the percentile's "values".
    let result = visualize::top_percent_mask(array![[0.5, f64::NAN]].view(), 10.0);
    assert!(
        matches!(
            result,
            Err(SaliencyError::NonFiniteInput {
                what: "map",
                count: 1,
                first_index: 1,
            })
        ),
        "{result:?}"
    );
}

#[test]
fn felzenszwalb_whose_smoothing_overflows_is_a_typed_error() {
    // The smoothed image of a finite one overflowed (the symmetric kernel
    // adds two neighbours before weighting them) and was reported as a
    // non-finite input "image".
    let x = array![[[f64::MAX]]].into_dyn();
    let result = imageops::felzenszwalb(x.view(), 100.0, 2.0, 10);
    assert!(
        matches!(
            result,
            Err(SaliencyError::NonFiniteResult {
                what: "smoothed image",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn felzenszwalb_segments_of_an_image_whose_range_overflows() {
    // max - min overflowed: the image rescaled to [-1, 1] was NaN and the
    // resize reported a non-finite input "image".
    let x = array![[0.0, 1e300, -1e300], [f64::MAX, 0.5, -f64::MAX]].into_dyn();
    let labels = saliency::get_segment_labels_felzenszwalb(x.view()).unwrap();
    assert_eq!(labels.len(), 6);
    assert!(labels.iter().all(|l| l.dim() == (2, 3)));
    // The same segments as for the image scaled down (the rescaling divides
    // by the range either way).
    let scaled = saliency::get_segment_labels_felzenszwalb(x.mapv(|v| v / 4.0).view()).unwrap();
    assert_eq!(labels, scaled);
}

#[cfg(feature = "metrics")]
#[test]
fn random_mask_with_an_empty_side_and_a_huge_one_is_an_error() {
    // height * width is 0, but no array can have a side above isize::MAX:
    // an internal error.
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for (h, w) in [(usize::MAX, 0), (0, 1 << 63)] {
        let result = saliency::metrics::generate_random_mask(h, w, 0.5, &mut rng);
        assert!(
            matches!(
                result,
                Err(SaliencyError::InvalidParameter {
                    name: "height * width",
                    ..
                })
            ),
            "{h} x {w}: {result:?}"
        );
    }
    // Empty masks of any ordinary size are fine.
    let mask = saliency::metrics::generate_random_mask(1 << 40, 0, 0.5, &mut rng).unwrap();
    assert_eq!(mask.dim(), (1 << 40, 0));
}
