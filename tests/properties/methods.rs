//! Every saliency method, on any input, with any parameters and any model:
//! the mask (of the documented shape, with finite values) whenever the input,
//! the parameters and the model's answers are in order, and otherwise the
//! error that names what is wrong (see `expect`).

use ndarray::{Array2, ArrayD, IxDyn};
use proptest::prelude::*;
use saliency::{
    ActivationLayout, BlurIg, CallModelFunction, CoreSaliency, Float, GradCam, GuidedBackprop, GuidedIg,
    IntegratedGradients, Occlusion, OutputKey, Saliency, SaliencyError, SmoothGrad, SmoothGradParams, VanillaGradients,
    Xrai, XraiAlgorithm, XraiOutput, XraiParameters, XraiSegments,
};

use crate::arb::{self, Call, ModelSpec};
use crate::expect::{self, Expected, Want, moderate};

/// Runs `f` with the model of `spec`; returns its result and the calls the
/// model received.
fn run<F: Float, T>(spec: &ModelSpec, f: impl FnOnce(&mut dyn CallModelFunction<F>) -> T) -> (T, Vec<Call>) {
    let trace = arb::Trace::default();
    let mut model = arb::traced_model::<F>(spec.clone(), std::rc::Rc::clone(&trace));
    let out = f(&mut model);
    let calls = trace.borrow().clone();
    (out, calls)
}

/// `method`'s mask of `x`, with progress reports that never pass their total.
fn mask_of<F: Float, M: CoreSaliency<F> + ?Sized>(
    method: &M,
    x: &ArrayD<F>,
    spec: &ModelSpec,
) -> (saliency::Result<ArrayD<F>>, Vec<Call>) {
    run(spec, |model| {
        method.get_mask_with_progress(x.view(), model, &mut |p| {
            assert!(p.done <= p.total, "progress {} of {}", p.done, p.total);
        })
    })
}

/// Every call asked for `keys` exactly.
fn asked_for(trace: &[Call], keys: &[OutputKey]) -> Result<(), TestCaseError> {
    for call in trace {
        prop_assert_eq!(&call.keys[..], keys);
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
struct GradCamSpec {
    should_resize: bool,
    three_dims: bool,
    /// `None`: no layout set (the model states none either).
    layout: Option<ActivationLayout>,
}

impl GradCamSpec {
    fn method(&self) -> GradCam {
        let cam = GradCam::new()
            .should_resize(self.should_resize)
            .three_dims(self.three_dims);
        match self.layout {
            Some(layout) => cam.layout(layout),
            None => cam,
        }
    }
}

fn grad_cam_spec() -> impl Strategy<Value = GradCamSpec> {
    let layout = prop_oneof![
        Just(None),
        Just(Some(ActivationLayout::ChannelsLast)),
        Just(Some(ActivationLayout::ChannelsFirst)),
    ];
    (any::<bool>(), any::<bool>(), layout).prop_map(|(should_resize, three_dims, layout)| GradCamSpec {
        should_resize,
        three_dims,
        layout,
    })
}

/// What an XRAI run is given besides the input.
struct XraiArgs<'a, F> {
    params: &'a XraiParameters,
    batch_size: usize,
    segments: Option<&'a [Array2<bool>]>,
    base_attribution: Option<&'a ArrayD<F>>,
    baselines: Option<&'a [ArrayD<F>]>,
}

impl<F: Float> XraiArgs<'_, F> {
    fn method(&self) -> Xrai<F> {
        let mut method = Xrai::new().parameters(self.params.clone()).batch_size(self.batch_size);
        if let Some(s) = self.segments {
            method = method.segments(s.to_vec());
        }
        if let Some(a) = self.base_attribution {
            method = method.base_attribution(a.clone());
        }
        if let Some(b) = self.baselines {
            method = method.baselines(b.to_vec());
        }
        method
    }

    /// Integrated-gradients runs: one per baseline, none with a base
    /// attribution.
    fn runs(&self) -> usize {
        match (self.base_attribution, self.baselines) {
            (Some(_), _) => 0,
            (None, Some(b)) => b.len(),
            (None, None) => 2,
        }
    }
}

/// XRAI's details besides the map, for a run that returned a map.
fn check_xrai_details<F: Float>(
    out: &XraiOutput<F>,
    x: &ArrayD<F>,
    args: &XraiArgs<'_, F>,
) -> Result<(), TestCaseError> {
    let p = args.params;
    let hw = (x.shape()[0], x.shape()[1]);
    match &out.segments {
        Some(XraiSegments::Ranks(r)) => {
            prop_assert!(p.get_return_xrai_segments() && p.get_flatten_xrai_segments());
            prop_assert_eq!(r.dim(), hw);
        }
        Some(XraiSegments::Masks(m)) => {
            prop_assert!(p.get_return_xrai_segments() && !p.get_flatten_xrai_segments());
            prop_assert!(m.iter().all(|m| m.dim() == hw));
        }
        None => prop_assert!(!p.get_return_xrai_segments()),
    }
    let runs = if args.base_attribution.is_some() {
        1
    } else {
        args.runs()
    };
    match &out.ig_attribution {
        Some(a) => {
            prop_assert!(p.get_return_ig_attributions());
            prop_assert_eq!(a.len(), runs);
            prop_assert!(a.iter().all(|a| a.shape() == x.shape()));
        }
        None => prop_assert!(!p.get_return_ig_attributions()),
    }
    prop_assert_eq!(
        out.baselines.as_ref().map(Vec::len),
        args.base_attribution.is_none().then(|| args.runs())
    );
    Ok(())
}

/// XRAI's map of `x` with its details checked.
fn check_xrai<F: Float>(x: &ArrayD<F>, spec: &ModelSpec, args: &XraiArgs<'_, F>) -> Result<(), TestCaseError> {
    let method = args.method();
    let (result, trace) = run(spec, |model| method.get_mask_with_details(x.view(), model, &mut |_| {}));
    let result = match result {
        Ok(out) => {
            check_xrai_details(&out, x, args)?;
            Ok(out.attribution_mask.into_dyn())
        }
        Err(e) => Err(e),
    };
    asked_for(&trace, &[OutputKey::InputOutputGradients])?;
    expect::verify(&result, &trace, &expected::xrai(x, args))
}

/// Any array, though mostly one with no empty axis, so that runs get past
/// the input checks as often as they stop at them.
fn input(max_dim: usize) -> impl Strategy<Value = ArrayD<f64>> {
    prop_oneof![2 => arb::image(max_dim), 1 => arb::any_array(max_dim)]
}

/// A count, mostly in range (`arb::count` adds zero and absurd ones).
fn count(small: usize) -> impl Strategy<Value = usize> {
    prop_oneof![2 => 1..=small, 1 => arb::count(small)]
}

/// A float parameter, mostly in range (`arb::param` adds the rest).
fn param(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![2 => lo..=hi, 1 => arb::param(lo, hi)]
}

#[derive(Clone, Debug)]
struct SmoothSpec {
    nsamples: usize,
    stdev_spread: f64,
    magnitude: bool,
    seed: u64,
}

fn smooth_spec() -> impl Strategy<Value = SmoothSpec> {
    (count(3), param(0.0, 1.0), any::<bool>(), any::<u64>()).prop_map(|(nsamples, stdev_spread, magnitude, seed)| {
        SmoothSpec {
            nsamples,
            stdev_spread,
            magnitude,
            seed,
        }
    })
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

/// One segment covering the whole image (or a 1 x 1 one for an input
/// without height and width, which fails anyway).
fn whole_image<F: Float>(x: &ArrayD<F>) -> Vec<Array2<bool>> {
    let (h, w) = match x.shape() {
        [h, w, ..] => (*h, *w),
        _ => (1, 1),
    };
    vec![Array2::from_elem((h, w), true)]
}

/// What each method must return (see `expect::Expected`).
mod expected {
    use super::*;

    /// Vanilla Gradients and Guided Backprop: one call; the model's gradients
    /// are bounded for any finite input, so no input overflows them.
    pub(super) fn gradient<F: Float>(x: &ArrayD<F>) -> Expected {
        Expected {
            invalid: expect::input("input", x, 1, usize::MAX),
            calls: 1,
            shape: x.shape().to_vec(),
            ..Expected::default()
        }
    }

    pub(super) fn integrated_gradients<F: Float>(
        x: &ArrayD<F>,
        baseline: Option<&ArrayD<F>>,
        steps: usize,
        batch_size: usize,
    ) -> Expected {
        let mut invalid = expect::input("input", x, 1, usize::MAX);
        invalid.extend(expect::steps("steps", steps));
        invalid.extend(expect::positive("batch_size", batch_size));
        if let Some(b) = baseline {
            invalid.extend(expect::same_shape("baseline", b, x.shape()));
        }
        let extreme = !moderate(x) || baseline.is_some_and(|b| !moderate(b));
        Expected {
            invalid,
            calls: steps.div_ceil(batch_size.max(1)),
            shape: x.shape().to_vec(),
            // Values near f64::MAX: input - baseline, or the gradient sum times
            // it, overflows.
            overflow: if extreme { vec![Want::NonFiniteResult] } else { vec![] },
            ..Expected::default()
        }
    }

    /// Occlusion: one call for the input, then one per batch of windows. The
    /// scores are bounded for any finite input (and 1e300 times that still sums
    /// without overflow over the few windows of a tiny image).
    pub(super) fn occlusion<F: Float>(
        x: &ArrayD<F>,
        size: usize,
        stride: usize,
        batch_size: usize,
        value: F,
    ) -> Expected {
        let mut invalid = expect::input("input", x, 2, 3);
        invalid.extend(expect::positive("size", size));
        invalid.extend(expect::positive("stride", stride));
        invalid.extend(expect::positive("batch_size", batch_size));
        if !value.is_finite() {
            invalid.push(Want::Param("value"));
        }
        let mut windows = 0;
        if (2..=3).contains(&x.ndim()) && size > 0 && stride > 0 {
            let (h, w) = (x.shape()[0], x.shape()[1]);
            if size > h || size > w {
                invalid.push(Want::Param("size"));
            } else {
                windows = ((h - size) / stride + 1) * ((w - size) / stride + 1);
            }
        }
        Expected {
            invalid,
            calls: 1 + windows.div_ceil(batch_size.max(1)),
            shape: x.shape().to_vec(),
            ..Expected::default()
        }
    }

    /// Grad-CAM, after the run: the mask's shape follows the layer the model
    /// returned when the map is not resized.
    pub(super) fn grad_cam<F: Float>(x: &ArrayD<F>, trace: &[Call], method: &GradCamSpec) -> Expected {
        let layer = trace
            .last()
            .and_then(|c| c.returned(OutputKey::ConvolutionLayerValues))
            .unwrap_or_default();
        let mut shape = match (method.should_resize, method.layout, layer) {
            (true, _, _) => x.shape().get(..2).unwrap_or_default().to_vec(),
            (false, Some(ActivationLayout::ChannelsLast) | None, [_, h, w, _]) => vec![*h, *w],
            (false, Some(ActivationLayout::ChannelsFirst), [_, _, h, w]) => vec![*h, *w],
            _ => vec![],
        };
        if method.three_dims {
            shape.push(3);
        }
        Expected {
            invalid: expect::input("input", x, 2, usize::MAX),
            calls: 1,
            shape,
            // Mean gradients of 1e300 times activations of 1e300, with or
            // without the resize.
            huge: vec![Want::NonFiniteResult],
            layer: Some(method.layout),
            ..Expected::default()
        }
    }

    pub(super) fn blur_ig<F: Float>(
        x: &ArrayD<F>,
        steps: usize,
        batch_size: usize,
        max_sigma: f64,
        grad_step: f64,
    ) -> Expected {
        let mut invalid = expect::steps("steps", steps);
        invalid.extend(expect::positive("batch_size", batch_size));
        if !(max_sigma.is_finite() && max_sigma >= 0.0) {
            invalid.push(Want::Param("max_sigma"));
        }
        if !(grad_step.is_finite() && grad_step > 0.0) {
            invalid.push(Want::Param("grad_step"));
        } else if F::from_f64_lossy(grad_step) == F::zero() {
            // 5e-324 in f32.
            invalid.push(Want::Param("grad_step"));
        }
        // The blur at max_sigma + grad_step needs a kernel radius (4 sigma) of at
        // most 2^24; the check names max_sigma even when grad_step is the huge one.
        if 4.0 * (max_sigma + grad_step) + 0.5 > (1_u64 << 24) as f64 {
            invalid.push(Want::Param("max_sigma"));
        }
        invalid.extend(expect::input("input", x, 2, 3));
        Expected {
            invalid,
            calls: steps.div_ceil(batch_size.max(1)),
            shape: x.shape().to_vec(),
            // Values near f64::MAX: the blur (SciPy's symmetric kernel adds
            // the two neighbours before weighting them), the blurred
            // differences or the mask overflow; never a point handed to the
            // model.
            overflow: if moderate(x) {
                vec![]
            } else {
                vec![Want::NonFiniteResult]
            },
            ..Expected::default()
        }
    }

    pub(super) fn guided_ig<F: Float>(
        x: &ArrayD<F>,
        baseline: Option<&ArrayD<F>>,
        steps: usize,
        fraction: f64,
        max_dist: f64,
    ) -> Expected {
        let mut invalid = expect::input("input", x, 1, usize::MAX);
        invalid.extend(expect::steps("steps", steps));
        invalid.extend(expect::unit("fraction", fraction));
        invalid.extend(expect::unit("max_dist", max_dist));
        if let Some(b) = baseline {
            invalid.extend(expect::same_shape("baseline", b, x.shape()));
        }
        // No path from a baseline equal to the input: a zero mask, no call.
        let at_baseline = match baseline {
            Some(b) => b.shape() == x.shape() && x.iter().zip(b).all(|(v, b)| v.as_f64() == b.as_f64()),
            None => x.iter().all(|v| v.as_f64() == 0.0),
        };
        let extreme = !moderate(x) || baseline.is_some_and(|b| !moderate(b));
        Expected {
            invalid,
            calls: if at_baseline { 0 } else { steps },
            shape: x.shape().to_vec(),
            // Values near f64::MAX: the path length |input - baseline| or the
            // attribution overflows.
            overflow: if extreme { vec![Want::NonFiniteResult] } else { vec![] },
            ..Expected::default()
        }
    }

    pub(super) fn xrai<F: Float>(x: &ArrayD<F>, args: &XraiArgs<'_, F>) -> Expected {
        let p = args.params;
        let mut invalid = expect::input("input", x, 2, 3);
        invalid.extend(expect::steps("steps", p.get_steps()));
        invalid.extend(expect::positive("batch_size", args.batch_size));
        if p.get_area_threshold().is_nan() {
            invalid.push(Want::Param("area_threshold"));
        }
        if let Some(a) = args.base_attribution {
            invalid.extend(expect::same_shape("base attribution", a, x.shape()));
        }
        if let Some(baselines) = args.baselines {
            if baselines.is_empty() {
                invalid.push(Want::Empty("baselines"));
            }
            for b in baselines {
                invalid.extend(expect::same_shape("baseline", b, x.shape()));
            }
        }
        let hw = x.shape().get(..2).map(|s| (s[0], s[1]));
        if let (Some(segments), Some(hw)) = (args.segments, hw) {
            if segments.is_empty() {
                invalid.push(Want::Empty("segments"));
            }
            if segments.iter().any(|s| s.dim() != hw) {
                invalid.push(Want::Shape("segment"));
            }
        }
        let extreme = match args.base_attribution {
            Some(a) => !moderate(a),
            None => !moderate(x) || args.baselines.is_some_and(|b| b.iter().any(|b| !moderate(b))),
        };
        Expected {
            invalid,
            calls: args
                .runs()
                .saturating_mul(p.get_steps().div_ceil(args.batch_size.max(1))),
            shape: hw.map_or(vec![], |(h, w)| vec![h, w]),
            // Values near f64::MAX: integrated gradients' input - baseline, or
            // the region means of the attribution, overflow.
            overflow: if extreme { vec![Want::NonFiniteResult] } else { vec![] },
            ..Expected::default()
        }
    }

    /// SmoothGrad around a method whose run on `x` is `inner`.
    pub(super) fn smoothed<F: Float>(inner: Expected, x: &ArrayD<F>, smooth: &SmoothSpec) -> Expected {
        let mut invalid = expect::steps("nsamples", smooth.nsamples);
        let spread = smooth.stdev_spread;
        if !(spread.is_finite() && spread >= 0.0) {
            invalid.push(Want::Param("stdev_spread"));
        }
        invalid.extend(expect::input("input", x, 1, usize::MAX));
        // The noise's deviation as SmoothGrad computes it: infinite (or NaN) for
        // a huge spread or range.
        let (lo, hi) = x.iter().fold((F::infinity(), F::neg_infinity()), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
        let stdev = spread * (hi.as_f64() - lo.as_f64());
        if invalid.is_empty() && !stdev.is_finite() {
            invalid.push(Want::Param("stdev_spread"));
        }
        // Ordinary values and a spread up to 1 give a deviation up to 8. Beyond
        // that the noisy copy can overflow F (the method then sees a non-finite
        // input, which it may report before its own objection to the input),
        // and squares and sums of its masks can overflow.
        let noisy_overflows = !moderate(x) || stdev > 8.0;
        if noisy_overflows && !inner.invalid.is_empty() {
            invalid.push(Want::NonFiniteInput("input"));
        }
        invalid.extend(inner.invalid);
        let mut overflow = inner.overflow;
        if noisy_overflows {
            overflow.extend([Want::NonFiniteResult, Want::NonFiniteInput("input")]);
        }
        Expected {
            invalid,
            calls: inner.calls.saturating_mul(smooth.nsamples),
            shape: inner.shape,
            overflow,
            huge: if smooth.magnitude && !inner.huge.contains(&Want::NonFiniteResult) {
                // Squares of masks of 1e300.
                [inner.huge, vec![Want::NonFiniteResult]].concat()
            } else {
                inner.huge
            },
            layer: inner.layer,
        }
    }
}

proptest! {
    #![proptest_config(arb::cases(64))]

    #[test]
    fn vanilla_and_guided_backprop(x in input(4), spec in arb::model_spec()) {
        let (result, trace) = mask_of(&VanillaGradients::new(), &x, &spec);
        asked_for(&trace, &[OutputKey::InputOutputGradients])?;
        expect::verify(&result, &trace, &expected::gradient(&x))?;
        let (result, trace) = mask_of(&GuidedBackprop::new(), &x, &spec);
        asked_for(&trace, &[OutputKey::GuidedInputOutputGradients])?;
        expect::verify(&result, &trace, &expected::gradient(&x))?;
    }

    #[test]
    fn guided_relu_backward(
        (a, b) in arb::any_array(3).prop_flat_map(|a| {
            let same = arb::array_of(a.shape().to_vec());
            (Just(a), prop_oneof![3 => same, 1 => arb::any_array(3)])
        }),
    ) {
        use saliency::methods::guided_backprop::guided_relu_backward;
        // The rule, element by element: the incoming gradient where both it
        // and the ReLU's input are positive, else zero (NaN compares false).
        let rule = |x: &ArrayD<f64>, g: &ArrayD<f64>| {
            ndarray::Zip::from(x).and(g).map_collect(|&x, &g| if x > 0.0 && g > 0.0 { g } else { 0.0 })
        };
        match guided_relu_backward(a.view(), b.view()) {
            Ok(out) => {
                prop_assert_eq!(a.shape(), b.shape());
                prop_assert_eq!(out, rule(&a, &b));
            }
            Err(e) => {
                prop_assert!(a.shape() != b.shape(), "{:?}", e);
                prop_assert!(matches!(e, SaliencyError::ShapeMismatch { what: "the incoming gradient", .. }), "{:?}", e);
            }
        }
        // Transposed (not contiguous) views of the same shape.
        let (ta, tb) = (a.t(), if b.shape() == a.shape() { b.t() } else { a.t() });
        let out = guided_relu_backward(ta.view(), tb.view());
        prop_assert!(out.is_ok(), "{:?}", out);
        prop_assert_eq!(out.ok(), Some(rule(&ta.to_owned(), &tb.to_owned())));
    }

    #[test]
    fn smoothgrad_wrapper_and_smoothed_mask(
        x in input(3),
        spec in arb::model_spec(),
        smooth in smooth_spec(),
    ) {
        let expected = expected::smoothed(expected::gradient(&x), &x, &smooth);
        let wrapped = SmoothGrad::new(VanillaGradients::new(), smooth.params());
        let (result, trace) = mask_of(&wrapped, &x, &spec);
        asked_for(&trace, &[OutputKey::InputOutputGradients])?;
        expect::verify(&result, &trace, &expected)?;
        let (result, trace) = run(&spec, |model| GuidedBackprop::new().get_smoothed_mask(x.view(), model, &smooth.params()));
        asked_for(&trace, &[OutputKey::GuidedInputOutputGradients])?;
        expect::verify(&result, &trace, &expected)?;
    }

    #[test]
    fn smoothed_mask_of_every_method(
        x in arb::image(4),
        spec in arb::model_spec(),
        smooth in smooth_spec(),
        which in 0..6_usize,
    ) {
        let xrai_params = XraiParameters::new().steps(2);
        let segments = whole_image(&x);
        let xrai_args = XraiArgs {
            params: &xrai_params,
            batch_size: 1,
            segments: Some(&segments),
            base_attribution: None,
            baselines: None,
        };
        let cam = GradCamSpec { should_resize: true, three_dims: true, layout: Some(ActivationLayout::ChannelsLast) };
        let methods: [Box<dyn CoreSaliency<f64>>; 6] = [
            Box::new(IntegratedGradients::new().steps(3).batch_size(2)),
            Box::new(Occlusion::new().size(1).batch_size(3)),
            Box::new(cam.method()),
            Box::new(BlurIg::new().steps(3).max_sigma(2.0)),
            Box::new(GuidedIg::new().steps(3)),
            Box::new(xrai_args.method()),
        ];
        let (result, trace) = run(&spec, |model| methods[which].get_smoothed_mask(x.view(), model, &smooth.params()));
        let inner = match which {
            0 => expected::integrated_gradients(&x, None, 3, 2),
            1 => expected::occlusion(&x, 1, 1, 3, 0.0),
            2 => expected::grad_cam(&x, &trace, &cam),
            3 => expected::blur_ig(&x, 3, 1, 2.0, 0.01),
            4 => expected::guided_ig(&x, None, 3, 0.25, 0.02),
            _ => expected::xrai(&x, &xrai_args),
        };
        expect::verify(&result, &trace, &expected::smoothed(inner, &x, &smooth))?;
    }

    #[test]
    fn integrated_gradients(
        (x, baseline) in input(3).prop_flat_map(|x| { let b = baseline_for(&x); (Just(x), b) }),
        spec in arb::model_spec(),
        steps in count(6),
        batch_size in count(6),
    ) {
        let mut ig = IntegratedGradients::new().steps(steps).batch_size(batch_size);
        if let Some(b) = baseline.clone() {
            ig = ig.baseline(b);
        }
        let (result, trace) = mask_of(&ig, &x, &spec);
        asked_for(&trace, &[OutputKey::InputOutputGradients])?;
        expect::verify(&result, &trace, &expected::integrated_gradients(&x, baseline.as_ref(), steps, batch_size))?;
    }

    #[test]
    fn occlusion(
        x in arb::image(6),
        spec in arb::model_spec(),
        size in count(3),
        stride in count(3),
        batch_size in count(5),
        value in arb::value(),
    ) {
        let method = Occlusion::new().size(size).stride(stride).batch_size(batch_size).value(value);
        let (result, trace) = mask_of(&method, &x, &spec);
        asked_for(&trace, &[OutputKey::OutputLayerValues])?;
        expect::verify(&result, &trace, &expected::occlusion(&x, size, stride, batch_size, value))?;
    }

    #[test]
    fn grad_cam(x in arb::image(6), spec in arb::model_spec(), cam in grad_cam_spec()) {
        let (result, trace) = mask_of(&cam.method(), &x, &spec);
        asked_for(&trace, &[OutputKey::ConvolutionLayerValues, OutputKey::ConvolutionOutputGradients])?;
        expect::verify(&result, &trace, &expected::grad_cam(&x, &trace, &cam))?;
    }

    #[test]
    fn blur_ig(
        x in arb::image(5),
        spec in arb::model_spec(),
        steps in count(5),
        batch_size in count(5),
        max_sigma in param(0.0, 6.0),
        grad_step in param(0.0, 0.5),
        sqrt in any::<bool>(),
    ) {
        let method = BlurIg::new()
            .steps(steps)
            .batch_size(batch_size)
            .max_sigma(max_sigma)
            .grad_step(grad_step)
            .sqrt(sqrt);
        let (result, trace) = mask_of(&method, &x, &spec);
        asked_for(&trace, &[OutputKey::InputOutputGradients])?;
        expect::verify(&result, &trace, &expected::blur_ig(&x, steps, batch_size, max_sigma, grad_step))?;
    }

    #[test]
    fn guided_ig(
        (x, baseline) in input(3).prop_flat_map(|x| { let b = baseline_for(&x); (Just(x), b) }),
        spec in arb::model_spec(),
        steps in count(6),
        fraction in param(0.0, 1.0),
        max_dist in param(0.0, 1.0),
    ) {
        let mut method = GuidedIg::new().steps(steps).fraction(fraction).max_dist(max_dist);
        if let Some(b) = baseline.clone() {
            method = method.baseline(b);
        }
        let (result, trace) = mask_of(&method, &x, &spec);
        asked_for(&trace, &[OutputKey::InputOutputGradients])?;
        expect::verify(&result, &trace, &expected::guided_ig(&x, baseline.as_ref(), steps, fraction, max_dist))?;
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
            3 => Just(None),
            2 => arb::array_of(same.clone()).prop_map(Some),
            1 => arb::any_array(3).prop_map(Some),
        ];
        let baselines = prop_oneof![
            3 => Just(None),
            3 => prop::collection::vec(arb::array_of(same), 1..3).prop_map(Some),
            1 => Just(Some(vec![])),
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
        count(3),
        param(0.0, 1.0),
        any::<[bool; 3]>(),
        any::<bool>(),
        arb::count(4),
        count(3),
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

proptest! {
    #![proptest_config(arb::cases(64))]

    #[test]
    fn xrai_with_given_segments(case in xrai_case(), spec in arb::model_spec(), (params, batch_size) in xrai_parameters()) {
        let args = XraiArgs {
            params: &params,
            batch_size,
            segments: Some(&case.segments),
            base_attribution: case.base_attribution.as_ref(),
            baselines: case.baselines.as_deref(),
        };
        check_xrai(&case.x, &spec, &args)?;
    }
}

proptest! {
    // Segmenting resizes every image to 224 x 224 and segments it at six
    // scales: a few cases keep the property cheap.
    #![proptest_config(arb::cases(6))]

    #[test]
    fn xrai_with_felzenszwalb_segments(x in arb::image(5), spec in arb::model_spec(), fast in any::<bool>()) {
        let algorithm = if fast { XraiAlgorithm::Fast } else { XraiAlgorithm::Full };
        let params = XraiParameters::new().steps(2).algorithm(algorithm);
        let args = XraiArgs { params: &params, batch_size: 1, segments: None, base_attribution: None, baselines: None };
        check_xrai(&x, &spec, &args)?;
    }
}

proptest! {
    // Large step counts on a 2 x 2 image: refused at once beyond MAX_STEPS,
    // else a mask after exactly the calls the count asks for.
    #![proptest_config(arb::cases(8))]

    #[test]
    fn many_steps_on_a_tiny_image(
        steps in prop_oneof![1000..=3000_usize, Just(usize::MAX), Just(1_usize << 40)],
        batch_size in prop_oneof![1..=3000_usize, Just(usize::MAX)],
        which in 0..5_usize,
    ) {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0.1, -0.5, 0.7, 0.2]).expect("4 values");
        let spec = ModelSpec { fault: arb::Fault::None, after: 0, conv: vec![1, 1, 1] };
        let smooth = SmoothSpec { nsamples: steps, stdev_spread: 0.15, magnitude: true, seed: 1 };
        let xrai_params = XraiParameters::new().steps(steps);
        let segments = whole_image(&x);
        let xrai_args = XraiArgs {
            params: &xrai_params,
            batch_size,
            segments: Some(&segments),
            base_attribution: None,
            baselines: None,
        };
        let methods: [Box<dyn CoreSaliency<f64>>; 5] = [
            Box::new(IntegratedGradients::new().steps(steps).batch_size(batch_size)),
            Box::new(BlurIg::new().steps(steps).batch_size(batch_size).max_sigma(1.0)),
            Box::new(GuidedIg::new().steps(steps)),
            Box::new(xrai_args.method()),
            Box::new(SmoothGrad::new(VanillaGradients::new(), smooth.params())),
        ];
        let expected = match which {
            0 => expected::integrated_gradients(&x, None, steps, batch_size),
            1 => expected::blur_ig(&x, steps, batch_size, 1.0, 0.01),
            2 => expected::guided_ig(&x, None, steps, 0.25, 0.02),
            3 => expected::xrai(&x, &xrai_args),
            _ => expected::smoothed(expected::gradient(&x), &x, &smooth),
        };
        // Absurd counts are refused, not attempted.
        prop_assert_eq!(!expected.invalid.is_empty(), steps > saliency::MAX_STEPS);
        let (result, trace) = mask_of(methods[which].as_ref(), &x, &spec);
        expect::verify(&result, &trace, &expected)?;
    }
}

proptest! {
    #![proptest_config(arb::cases(24))]

    /// The same surface in single precision, where 1e300 becomes infinite
    /// and f32::MAX sits at the edge.
    #[test]
    fn single_precision(x in arb::image(4), spec in arb::model_spec(), which in 0..8_usize) {
        let x = x.mapv(|v| v as f32);
        let xrai_params = XraiParameters::new().steps(2);
        let segments = whole_image(&x);
        let xrai_args = XraiArgs {
            params: &xrai_params,
            batch_size: 1,
            segments: Some(&segments),
            base_attribution: None,
            baselines: None,
        };
        let cam = GradCamSpec { should_resize: true, three_dims: true, layout: Some(ActivationLayout::ChannelsLast) };
        let smooth = SmoothSpec { nsamples: 2, stdev_spread: 0.15, magnitude: true, seed: 3 };
        let methods: [Box<dyn CoreSaliency<f32>>; 8] = [
            Box::new(VanillaGradients::new()),
            Box::new(IntegratedGradients::new().steps(3).batch_size(2)),
            Box::new(Occlusion::new().size(1).batch_size(2)),
            Box::new(cam.method()),
            Box::new(BlurIg::new().steps(3).max_sigma(2.0)),
            Box::new(GuidedIg::new().steps(3)),
            Box::new(xrai_args.method()),
            Box::new(SmoothGrad::new(GuidedBackprop::new(), smooth.params())),
        ];
        let (result, trace) = mask_of(methods[which].as_ref(), &x, &spec);
        let expected = match which {
            0 => expected::gradient(&x),
            1 => expected::integrated_gradients(&x, None, 3, 2),
            2 => expected::occlusion(&x, 1, 1, 2, 0.0),
            3 => expected::grad_cam(&x, &trace, &cam),
            4 => expected::blur_ig(&x, 3, 1, 2.0, 0.01),
            5 => expected::guided_ig(&x, None, 3, 0.25, 0.02),
            6 => expected::xrai(&x, &xrai_args),
            _ => expected::smoothed(expected::gradient(&x), &x, &smooth),
        };
        expect::verify(&result, &trace, &expected)?;
    }
}
