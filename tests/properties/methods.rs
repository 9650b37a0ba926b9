//! Every saliency method, on any input, with any parameters and any model:
//! a mask of the input's shape with finite values, or a typed error.

use ndarray::{Array2, ArrayD, IxDyn};
use proptest::prelude::*;
use saliency::{
    ActivationLayout, BlurIg, CoreSaliency, GradCam, GuidedBackprop, GuidedIg, IntegratedGradients, Occlusion,
    OutputKey, SaliencyError, SmoothGrad, SmoothGradParams, VanillaGradients, Xrai, XraiAlgorithm, XraiParameters,
    XraiSegments,
};

use crate::arb::{self, ModelSpec};

/// Runs `method` on `x` with the model of `spec` and checks the outcome:
/// an error is fine (it is typed by construction); a mask must have
/// `expected` shape and finite values.
fn check_mask<M: CoreSaliency<f64> + ?Sized>(
    method: &M,
    x: &ArrayD<f64>,
    spec: &ModelSpec,
    expected: Option<&[usize]>,
) -> Result<(), TestCaseError> {
    let mut model = arb::model::<f64>(spec.clone());
    let mut reports = 0_usize;
    let result = method.get_mask_with_progress(x.view(), &mut model, &mut |p| {
        reports += 1;
        assert!(p.done <= p.total, "progress {} of {}", p.done, p.total);
    });
    check_result(result, x, expected)
}

fn check_result(
    result: saliency::Result<ArrayD<f64>>,
    x: &ArrayD<f64>,
    expected: Option<&[usize]>,
) -> Result<(), TestCaseError> {
    match result {
        Ok(mask) => {
            prop_assert_eq!(mask.shape(), expected.unwrap_or(x.shape()));
            prop_assert!(arb::all_finite(&mask), "non-finite mask {:?} for input {:?}", mask, x);
        }
        Err(e) => {
            prop_assert!(arb::is_method_error(&e), "{}", e);
            // Every error formats (Display and Debug) without panicking.
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct SmoothSpec {
    nsamples: usize,
    stdev_spread: f64,
    magnitude: bool,
    seed: u64,
}

fn smooth_spec() -> impl Strategy<Value = SmoothSpec> {
    (arb::count(3), arb::param(0.0, 1.0), any::<bool>(), any::<u64>()).prop_map(
        |(nsamples, stdev_spread, magnitude, seed)| SmoothSpec {
            nsamples,
            stdev_spread,
            magnitude,
            seed,
        },
    )
}

impl SmoothSpec {
    fn params(&self) -> SmoothGradParams {
        SmoothGradParams::new()
            .nsamples(self.nsamples)
            .stdev_spread(self.stdev_spread)
            .magnitude(self.magnitude)
            .seed(self.seed)
    }
}

/// A baseline: mostly of the input's shape, sometimes of another.
fn baseline_for(x: &ArrayD<f64>) -> impl Strategy<Value = Option<ArrayD<f64>>> + use<> {
    let same = x.shape().to_vec();
    prop_oneof![
        2 => Just(None),
        3 => arb::array_of(same).prop_map(Some),
        1 => arb::any_array(3).prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(arb::cases(64))]

    #[test]
    fn vanilla_and_guided_backprop(x in arb::any_array(4), spec in arb::model_spec()) {
        check_mask(&VanillaGradients::new(), &x, &spec, None)?;
        check_mask(&GuidedBackprop::new(), &x, &spec, None)?;
    }

    #[test]
    fn guided_relu_backward(a in arb::any_array(3), b in arb::any_array(3)) {
        if let Ok(out) = saliency::methods::guided_backprop::guided_relu_backward(a.view(), b.view()) {
            prop_assert_eq!(out.shape(), a.shape());
        }
        let t = b.t();
        if let Ok(out) = saliency::methods::guided_backprop::guided_relu_backward(t.view(), t.view()) {
            prop_assert_eq!(out.shape(), t.shape());
        }
    }

    #[test]
    fn smoothgrad_wrapper_and_smoothed_mask(
        x in arb::any_array(3),
        spec in arb::model_spec(),
        smooth in smooth_spec(),
    ) {
        let params = smooth.params();
        let wrapped = SmoothGrad::new(VanillaGradients::new(), params.clone());
        check_mask(&wrapped, &x, &spec, None)?;
        let mut model = arb::model::<f64>(spec.clone());
        check_result(GuidedBackprop::new().get_smoothed_mask(x.view(), &mut model, &params), &x, None)?;
    }

    #[test]
    fn smoothed_mask_of_every_method(
        x in arb::image(4),
        spec in arb::model_spec(),
        smooth in smooth_spec(),
        which in 0..6_usize,
    ) {
        let methods: [Box<dyn CoreSaliency<f64>>; 6] = [
            Box::new(IntegratedGradients::new().steps(3).batch_size(2)),
            Box::new(Occlusion::new().size(1).batch_size(3)),
            Box::new(GradCam::new()),
            Box::new(BlurIg::new().steps(3).max_sigma(2.0)),
            Box::new(GuidedIg::new().steps(3)),
            Box::new(Xrai::new().parameters(XraiParameters::new().steps(2)).segments(vec![])),
        ];
        let mut model = arb::model::<f64>(spec.clone());
        let result = methods[which].get_smoothed_mask(x.view(), &mut model, &smooth.params());
        if let Ok(mask) = result {
            prop_assert!(arb::all_finite(&mask));
        }
    }

    #[test]
    fn integrated_gradients(
        (x, baseline) in arb::any_array(3).prop_flat_map(|x| { let b = baseline_for(&x); (Just(x), b) }),
        spec in arb::model_spec(),
        steps in arb::count(6),
        batch_size in arb::count(6),
    ) {
        let mut ig = IntegratedGradients::new().steps(steps).batch_size(batch_size);
        if let Some(b) = baseline {
            ig = ig.baseline(b);
        }
        check_mask(&ig, &x, &spec, None)?;
    }

    #[test]
    fn occlusion(
        x in arb::image(6),
        spec in arb::model_spec(),
        size in arb::count(7),
        stride in arb::count(3),
        batch_size in arb::count(5),
        value in arb::value(),
    ) {
        let method = Occlusion::new().size(size).stride(stride).batch_size(batch_size).value(value);
        check_mask(&method, &x, &spec, None)?;
    }

    #[test]
    fn grad_cam(
        x in arb::image(6),
        spec in arb::model_spec(),
        should_resize in any::<bool>(),
        three_dims in any::<bool>(),
        channels_first in any::<bool>(),
    ) {
        let layout = if channels_first { ActivationLayout::ChannelsFirst } else { ActivationLayout::ChannelsLast };
        let method = GradCam::new().should_resize(should_resize).three_dims(three_dims).layout(layout);
        let mut model = arb::model::<f64>(spec.clone());
        match method.get_mask(x.view(), &mut model) {
            Ok(mask) => {
                prop_assert!(arb::all_finite(&mask));
                // The layer Grad-CAM saw: the spec's, unless a fault changed
                // its shape (a rank-3 spec plus a trailing axis is rank 4
                // too, and valid). A fresh model of the spec replays it.
                let mut replay = arb::model::<f64>(spec.clone());
                let outputs = replay(
                    x.view().insert_axis(ndarray::Axis(0)),
                    &saliency::ModelRequest::new(&[OutputKey::ConvolutionLayerValues], &[0]),
                );
                let seen = outputs.ok().and_then(|o| o.get(OutputKey::ConvolutionLayerValues).map(|a| a.shape().to_vec()));
                prop_assert!(seen.as_ref().is_some_and(|s| s.len() == 4), "{:?}", seen);
                let c = seen.unwrap_or_default();
                let (h, w) = match layout {
                    ActivationLayout::ChannelsLast => (c[1], c[2]),
                    ActivationLayout::ChannelsFirst => (c[2], c[3]),
                };
                let mut expected = if should_resize { x.shape()[..2].to_vec() } else { vec![h, w] };
                if three_dims {
                    expected.push(3);
                }
                prop_assert_eq!(mask.shape(), &expected[..]);
            }
            Err(e) => prop_assert!(arb::is_method_error(&e)),
        }
    }

    #[test]
    fn blur_ig(
        x in arb::image(5),
        spec in arb::model_spec(),
        steps in arb::count(5),
        batch_size in arb::count(5),
        max_sigma in arb::param(0.0, 6.0),
        grad_step in arb::param(0.0, 0.5),
        sqrt in any::<bool>(),
    ) {
        let method = BlurIg::new()
            .steps(steps)
            .batch_size(batch_size)
            .max_sigma(max_sigma)
            .grad_step(grad_step)
            .sqrt(sqrt);
        check_mask(&method, &x, &spec, None)?;
    }

    #[test]
    fn guided_ig(
        (x, baseline) in arb::any_array(3).prop_flat_map(|x| { let b = baseline_for(&x); (Just(x), b) }),
        spec in arb::model_spec(),
        steps in arb::count(6),
        fraction in arb::param(0.0, 1.0),
        max_dist in arb::param(0.0, 1.0),
    ) {
        let mut method = GuidedIg::new().steps(steps).fraction(fraction).max_dist(max_dist);
        if let Some(b) = baseline {
            method = method.baseline(b);
        }
        check_mask(&method, &x, &spec, None)?;
    }
}

/// Segments for an image of `h x w`: random masks of that size, sometimes
/// of another size, sometimes none at all.
fn segments_for(h: usize, w: usize) -> impl Strategy<Value = Vec<Array2<bool>>> {
    let mask = move |h: usize, w: usize| {
        prop::collection::vec(any::<bool>(), h * w)
            .prop_map(move |v| Array2::from_shape_vec((h, w), v).expect("h * w values"))
    };
    prop_oneof![
        6 => prop::collection::vec(mask(h, w), 1..6),
        1 => Just(vec![]),
        1 => (0..4_usize, 0..4_usize).prop_flat_map(move |(a, b)| prop::collection::vec(mask(a, b), 1..3)),
    ]
}

#[derive(Clone, Debug)]
struct XraiCase {
    x: ArrayD<f64>,
    segments: Vec<Array2<bool>>,
    base_attribution: Option<ArrayD<f64>>,
    baselines: Option<Vec<ArrayD<f64>>>,
}

fn xrai_case() -> impl Strategy<Value = XraiCase> {
    arb::image(6).prop_flat_map(|x| {
        let (h, w) = (
            x.shape().first().copied().unwrap_or(0),
            x.shape().get(1).copied().unwrap_or(0),
        );
        let same = x.shape().to_vec();
        let attribution = prop_oneof![
            2 => Just(None),
            2 => arb::array_of(same.clone()).prop_map(Some),
            1 => arb::any_array(3).prop_map(Some),
        ];
        let baselines = prop_oneof![
            3 => Just(None),
            2 => prop::collection::vec(arb::array_of(same), 0..3).prop_map(Some),
            1 => prop::collection::vec(arb::any_array(2), 1..2).prop_map(Some),
        ];
        (Just(x), segments_for(h, w), attribution, baselines).prop_map(|(x, segments, base_attribution, baselines)| {
            XraiCase {
                x,
                segments,
                base_attribution,
                baselines,
            }
        })
    })
}

fn xrai_parameters() -> impl Strategy<Value = (XraiParameters, usize)> {
    (
        arb::count(3),
        arb::param(0.0, 1.0),
        any::<[bool; 3]>(),
        any::<bool>(),
        arb::count(4),
        arb::count(3),
    )
        .prop_map(|(steps, area, [ig, segs, flatten], fast, min_pixel_diff, batch_size)| {
            let algorithm = if fast { XraiAlgorithm::Fast } else { XraiAlgorithm::Full };
            let p = XraiParameters::new()
                .steps(steps)
                .area_threshold(area)
                .return_ig_attributions(ig)
                .return_xrai_segments(segs)
                .flatten_xrai_segments(flatten)
                .algorithm(algorithm)
                .min_pixel_diff(min_pixel_diff);
            (p, batch_size)
        })
}

fn check_xrai(method: &Xrai<f64>, x: &ArrayD<f64>, spec: &ModelSpec) -> Result<(), TestCaseError> {
    let mut model = arb::model::<f64>(spec.clone());
    match method.get_mask_with_details(x.view(), &mut model, &mut |_| {}) {
        Ok(out) => {
            let (h, w) = (x.shape()[0], x.shape()[1]);
            prop_assert_eq!(out.attribution_mask.dim(), (h, w));
            prop_assert!(
                out.attribution_mask.iter().all(|v| v.is_finite()),
                "{:?}",
                out.attribution_mask
            );
            match out.segments {
                Some(XraiSegments::Ranks(r)) => prop_assert_eq!(r.dim(), (h, w)),
                Some(XraiSegments::Masks(m)) => prop_assert!(m.iter().all(|m| m.dim() == (h, w))),
                None => {}
            }
            for a in out.ig_attribution.iter().flatten() {
                prop_assert_eq!(a.shape(), x.shape());
            }
        }
        Err(e) => prop_assert!(arb::is_method_error(&e)),
    }
    Ok(())
}

proptest! {
    #![proptest_config(arb::cases(64))]

    #[test]
    fn xrai_with_given_segments(case in xrai_case(), spec in arb::model_spec(), (params, batch_size) in xrai_parameters()) {
        let mut method = Xrai::new().parameters(params).batch_size(batch_size).segments(case.segments.clone());
        if let Some(a) = case.base_attribution.clone() {
            method = method.base_attribution(a);
        }
        if let Some(b) = case.baselines.clone() {
            method = method.baselines(b);
        }
        check_xrai(&method, &case.x, &spec)?;
    }
}

proptest! {
    // Segmenting resizes every image to 224 x 224 and segments it at six
    // scales: a few cases keep the property cheap.
    #![proptest_config(arb::cases(6))]

    #[test]
    fn xrai_with_felzenszwalb_segments(x in arb::image(5), spec in arb::model_spec(), fast in any::<bool>()) {
        let algorithm = if fast { XraiAlgorithm::Fast } else { XraiAlgorithm::Full };
        let method = Xrai::new().parameters(XraiParameters::new().steps(2).algorithm(algorithm));
        check_xrai(&method, &x, &spec)?;
    }
}

proptest! {
    // Large step counts on a 2 x 2 image: either rejected at once or done
    // quickly.
    #![proptest_config(arb::cases(8))]

    #[test]
    fn many_steps_on_a_tiny_image(
        steps in prop_oneof![1000..=3000_usize, Just(usize::MAX), Just(1_usize << 40)],
        batch_size in prop_oneof![1..=3000_usize, Just(usize::MAX)],
        which in 0..5_usize,
    ) {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0.1, -0.5, 0.7, 0.2]).expect("4 values");
        let spec = ModelSpec { fault: arb::Fault::None, after: 0, conv: vec![1, 1, 1] };
        let smooth = SmoothGradParams::new().nsamples(steps).seed(1);
        let methods: [Box<dyn CoreSaliency<f64>>; 5] = [
            Box::new(IntegratedGradients::new().steps(steps).batch_size(batch_size)),
            Box::new(BlurIg::new().steps(steps).batch_size(batch_size).max_sigma(1.0)),
            Box::new(GuidedIg::new().steps(steps)),
            Box::new(Xrai::new()
                .parameters(XraiParameters::new().steps(steps))
                .batch_size(batch_size)
                .segments(vec![Array2::from_elem((2, 2), true)])),
            Box::new(SmoothGrad::new(VanillaGradients::new(), smooth)),
        ];
        check_mask(methods[which].as_ref(), &x, &spec, None)?;
        if steps > 1 << 30 {
            // Absurd counts must be refused, not attempted.
            let mut model = arb::model::<f64>(spec.clone());
            let err = methods[which].get_mask(x.view(), &mut model);
            prop_assert!(matches!(err, Err(SaliencyError::InvalidParameter { .. })), "{:?}", err);
        }
    }
}

proptest! {
    #![proptest_config(arb::cases(24))]

    /// The same surface in single precision, where 1e300 becomes infinite
    /// and f32::MAX sits at the edge.
    #[test]
    fn single_precision(x in arb::image(4), spec in arb::model_spec(), which in 0..8_usize) {
        let x32 = x.mapv(|v| v as f32);
        let methods: [Box<dyn CoreSaliency<f32>>; 8] = [
            Box::new(VanillaGradients::new()),
            Box::new(IntegratedGradients::new().steps(3).batch_size(2)),
            Box::new(Occlusion::new().size(1).batch_size(2)),
            Box::new(GradCam::new()),
            Box::new(BlurIg::new().steps(3).max_sigma(2.0)),
            Box::new(GuidedIg::new().steps(3)),
            Box::new(Xrai::new().parameters(XraiParameters::new().steps(2)).segments(vec![Array2::from_elem((1, 1), true)])),
            Box::new(SmoothGrad::new(GuidedBackprop::new(), SmoothGradParams::new().nsamples(2).seed(3))),
        ];
        let mut model = arb::model::<f32>(spec);
        if let Ok(mask) = methods[which].get_mask(x32.view(), &mut model) {
            prop_assert!(mask.iter().all(|v| v.is_finite()), "{:?}", mask);
        }
    }
}
