//! Integration rules, convergence deltas, NoiseTunnel variants and
//! several-target calls against Captum 0.9 (tests/fixtures/captum_ig,
//! written by tests/reference/captum_ig/generate.py), on the fixture's small
//! network evaluated through the `onnx` feature, float32 throughout.
//!
//! Each comparison is the largest absolute difference divided by the largest
//! reference magnitude; tolerances are about ten times the error measured
//! (given beside each), never above the acceptance's 1e-4.
#![cfg(feature = "onnx")]

#[path = "common/cam_net.rs"]
mod cam_net;

use std::path::PathBuf;

use cam_net::rel_err;
use ndarray::{Array1, ArrayD, ArrayViewD, Axis, IxDyn};
use ndarray_npy::read_npy;
use saliency::adapters::candle::Target;
use saliency::adapters::onnx::OnnxModel;
use saliency::{
    BlurIg, CoreSaliency, GuidedIg, IntegratedGradients, IntegrationRule, ModelOutputs, ModelRequest, NoiseStdev,
    NoiseTunnel, NoiseTunnelParams, NoiseTunnelType, OutputKey, Saliency, SaliencyError, SmoothGrad, SmoothGradParams,
    VanillaGradients, Xrai, XraiParameters,
};

const TARGET: usize = 1;
const STEPS: usize = 6;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/captum_ig")
}

fn load(name: &str) -> ArrayD<f32> {
    read_npy(dir().join(format!("{name}.npy"))).unwrap()
}

fn model(target: Target) -> OnnxModel<f32> {
    OnnxModel::from_file(dir().join("model.onnx"), target).unwrap()
}

/// `[N, C, H, W]` to `[N, H, W, C]`.
fn nhwc(a: ArrayViewD<'_, f32>) -> ArrayD<f32> {
    a.permuted_axes(vec![0, 2, 3, 1]).as_standard_layout().into_owned()
}

/// The input image `[12, 12, 3]`, and the baseline.
fn image(name: &str) -> ArrayD<f32> {
    nhwc(load(name).view()).index_axis_move(Axis(0), 0)
}

/// A Captum attribution `[1, 3, 12, 12]` as the crate's `[12, 12, 3]`.
fn captum(name: &str) -> ArrayD<f32> {
    nhwc(load(name).view()).index_axis_move(Axis(0), 0)
}

fn meta_number(key: &str) -> f64 {
    let meta = std::fs::read_to_string(dir().join("meta.json")).unwrap();
    let pattern = format!("\"{key}\":");
    let at = meta.find(&pattern).unwrap() + pattern.len();
    let text = meta[at..].trim_start();
    let end = text.find([',', '\n']).unwrap();
    text[..end].trim().parse().unwrap()
}

fn check(what: &str, actual: ArrayViewD<'_, f32>, expected: ArrayViewD<'_, f32>, tol: f64) {
    let err = rel_err(actual, expected);
    println!("{what}: relative error {err:.2e} (tolerance {tol:.0e})");
    assert!(err <= tol, "{what}: relative error {err:.3e} over {tol:.0e}");
}

const CAPTUM_RULES: [IntegrationRule; 5] = [
    IntegrationRule::RiemannLeft,
    IntegrationRule::RiemannRight,
    IntegrationRule::RiemannMiddle,
    IntegrationRule::RiemannTrapezoid,
    IntegrationRule::GaussLegendre,
];

fn ig(rule: IntegrationRule) -> IntegratedGradients<f32> {
    IntegratedGradients::new()
        .rule(rule)
        .steps(STEPS)
        .batch_size(4)
        .baseline(image("baseline"))
}

#[test]
fn every_captum_rule_matches_captum_with_its_convergence_delta() {
    let x = image("x");
    let mut m = model(Target::class(TARGET));
    for rule in CAPTUM_RULES {
        let name = rule.captum_name().unwrap();
        let out = ig(rule).get_mask_with_delta(&x, &mut m.as_fn()).unwrap();
        // Measured: 1.0e-7 to 2.2e-7 over the five rules.
        check(name, out.mask.view(), captum(&format!("ig_{name}")).view(), 2e-6);
        // get_mask gives the same mask as get_mask_with_delta.
        assert_eq!(ig(rule).get_mask(&x, &mut m.as_fn()).unwrap(), out.mask, "{name}");
        // Captum's delta, relative to f(x) - f(baseline) (measured: at most 1.8e-7).
        let f = load("f");
        let change = f64::from(f[[0, TARGET]] - f[[1, TARGET]]);
        let expected = meta_number(&format!("ig_{name}_delta"));
        let err = (f64::from(out.delta) - expected).abs() / change.abs();
        println!(
            "{name}: delta {} (Captum {expected}), error {err:.2e} of f(x) - f(b)",
            out.delta
        );
        assert!(err < 2e-6, "{name}: delta {} vs Captum's {expected}", out.delta);
        assert!((f64::from(out.output_at_input) - f64::from(f[[0, TARGET]])).abs() < 1e-5);
        assert!((f64::from(out.output_at_baseline) - f64::from(f[[1, TARGET]])).abs() < 1e-5);
    }
}

#[test]
fn the_rules_differ_from_one_another_well_above_the_tolerance() {
    // A test of one rule that another rule would pass would not test it:
    // every pair of Captum references differs by far more than 2e-6.
    for a in CAPTUM_RULES {
        for b in CAPTUM_RULES {
            if a != b {
                let (na, nb) = (a.captum_name().unwrap(), b.captum_name().unwrap());
                let d = rel_err(captum(&format!("ig_{na}")).view(), captum(&format!("ig_{nb}")).view());
                assert!(d > 1e-3, "{na} vs {nb}: {d:.2e}");
            }
        }
    }
}

#[test]
fn xrai_ig_stage_uses_the_rule() {
    let x = image("x");
    let mut m = model(Target::class(TARGET));
    let xrai = Xrai::new()
        .parameters(
            XraiParameters::new()
                .steps(STEPS)
                .integration_rule(IntegrationRule::GaussLegendre)
                .return_ig_attributions(true)
                .min_pixel_diff(1),
        )
        .baselines([image("baseline")])
        .batch_size(4);
    let out = xrai.get_mask_with_details(&x, &mut m.as_fn(), &mut |_| {}).unwrap();
    let attrs = out.ig_attribution.unwrap();
    // Measured: 1.6e-7.
    check(
        "XRAI IG stage (gausslegendre)",
        attrs[0].view(),
        captum("ig_gausslegendre").view(),
        2e-6,
    );
}

#[test]
fn several_targets_equal_one_target_calls_bit_for_bit_and_captum() {
    let x = image("x");
    let reference = load("ig_targets");
    for batch_size in [1, 5, 18] {
        let method = ig(IntegratedGradients::<f32>::new().get_rule())
            .rule(IntegrationRule::RiemannTrapezoid)
            .batch_size(batch_size);
        let mut m = model(Target::classes(vec![0, 1, 2]));
        let mut calls = 0;
        let mut inner = m.as_fn();
        let masks = method
            .get_masks_for_targets(&x, 3, &mut |batch: ArrayViewD<'_, f32>, request: &ModelRequest<'_>| {
                calls += 1;
                inner(batch, request)
            })
            .unwrap();
        assert_eq!(masks.shape(), [3, 12, 12, 3]);
        // 3 targets x 6 path points, in calls of up to `batch_size` rows:
        // one call for all with 18, one per point with 1; with 5, each
        // target's chunks of 5 and 1 rows are packed into 5 calls.
        let expected_calls = match batch_size {
            1 => 18,
            5 => 5,
            _ => 1,
        };
        assert_eq!(calls, expected_calls, "batch size {batch_size}");
        for t in 0..3 {
            let mut one = model(Target::class(t));
            let single = method.get_mask(&x, &mut one.as_fn()).unwrap();
            assert!(
                masks.index_axis(Axis(0), t) == single,
                "target {t}, batch size {batch_size}: the several-target mask differs from the one-target call"
            );
            let expected = captum_row(reference.view(), t);
            // Measured: 1.5e-7 to 2.2e-7.
            check(
                &format!("target {t}"),
                masks.index_axis(Axis(0), t).into_dyn(),
                expected.view(),
                2e-6,
            );
        }
    }
}

/// Row `t` of `ig_targets` (`[3, 1, 3, 12, 12]`) as `[12, 12, 3]`.
fn captum_row(all: ArrayViewD<'_, f32>, t: usize) -> ArrayD<f32> {
    nhwc(all.index_axis(Axis(0), t)).index_axis_move(Axis(0), 0)
}

#[test]
fn several_targets_through_noise_tunnel_equal_one_target_calls() {
    // A wrapped method whose own calls are packed (NoiseTunnel's samples)
    // keeps every row labelled with its target.
    let x = image("x");
    let params = NoiseTunnelParams::new().nsamples(3).seed(5).batch_size(2);
    let method = NoiseTunnel::new(VanillaGradients::new(), params);
    let mut m = model(Target::classes(vec![2, 0]));
    let masks = method.get_masks_for_targets(&x, 2, &mut m.as_fn()).unwrap();
    for (t, class) in [2, 0].into_iter().enumerate() {
        let single = method.get_mask(&x, &mut model(Target::class(class)).as_fn()).unwrap();
        assert!(masks.index_axis(Axis(0), t) == single, "target {t}");
    }
}

/// NoiseTunnel over Vanilla Gradients fed Captum's own noisy inputs: the
/// model closure replaces each noisy sample the crate draws by Captum's, so
/// the combination of the masks is compared exactly; the noise the crate
/// drew is returned for its statistics.
fn tunnel_with_captum_noise(nt_type: NoiseTunnelType, stdev: NoiseStdev) -> (ArrayD<f32>, Vec<f64>) {
    let name = nt_type.captum_name();
    let noisy = nhwc(load(&format!("nt_{name}_noisy")).view());
    let samples = noisy.shape()[0];
    let x = image("x");
    let params = NoiseTunnelParams::new()
        .nt_type(nt_type)
        .nsamples(samples)
        .stdev(stdev)
        .seed(11);
    let mut m = model(Target::class(TARGET));
    let mut inner = m.as_fn();
    let mut sample = 0;
    let mut drawn = Vec::new();
    let mask = NoiseTunnel::new(VanillaGradients::new(), params)
        .get_mask(&x, &mut |batch: ArrayViewD<'_, f32>, request: &ModelRequest<'_>| {
            assert_eq!(batch.shape()[0], 1, "one sample per call without a batch size");
            drawn.extend(batch.iter().zip(x.iter()).map(|(&b, &v)| f64::from(b) - f64::from(v)));
            let captum_sample = noisy.index_axis(Axis(0), sample).insert_axis(Axis(0)).into_dyn();
            sample += 1;
            inner(captum_sample, request)
        })
        .unwrap();
    assert_eq!(sample, samples);
    (mask, drawn)
}

#[test]
fn noise_tunnel_variants_match_captum_on_captums_noise() {
    let stdev = meta_number("nt_stdev");
    for nt_type in [
        NoiseTunnelType::SmoothGrad,
        NoiseTunnelType::SmoothGradSquared,
        NoiseTunnelType::VarGrad,
    ] {
        let name = nt_type.captum_name();
        let (mask, _) = tunnel_with_captum_noise(nt_type, NoiseStdev::Absolute(stdev));
        // Measured: 2.0e-7 (smoothgrad), 2.2e-7 (smoothgrad_sq), 6.1e-7 (vargrad,
        // a difference of two close means).
        check(name, mask.view(), captum(&format!("nt_{name}")).view(), 6e-6);
    }
}

#[test]
fn noise_tunnel_stdev_is_absolute_or_a_spread_of_the_range() {
    let x = image("x");
    let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    let range = f64::from(hi - lo);
    for (stdev, expected) in [(NoiseStdev::Absolute(0.2), 0.2), (NoiseStdev::Spread(0.3), 0.3 * range)] {
        let (_, drawn) = tunnel_with_captum_noise(NoiseTunnelType::SmoothGrad, stdev);
        let n = drawn.len() as f64;
        let mean = drawn.iter().sum::<f64>() / n;
        let sd = (drawn.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / (n - 1.0)).sqrt();
        // n = 6 samples x 432 values = 2592 draws: the sample deviation has a
        // relative standard error of 1 / sqrt(2 (n - 1)) = 1.4%; 5% is 3.5 of them.
        println!("{stdev:?}: sample stdev {sd:.4} (expected {expected:.4}), mean {mean:.4}");
        assert!((sd / expected - 1.0).abs() < 0.05, "{stdev:?}: {sd} vs {expected}");
        // The mean's standard error is expected / sqrt(n) = 2% of expected.
        assert!(mean.abs() < 4.0 * expected / n.sqrt(), "{stdev:?}: mean {mean}");
    }
}

#[test]
fn smoothgrad_is_noise_tunnel_with_the_references_names() {
    // The same seed draws the same noise: SmoothGrad with magnitude is
    // SmoothGrad-squared, without it SmoothGrad (mean), bit for bit.
    let x = image("x");
    let mut m = model(Target::class(TARGET));
    for (magnitude, nt_type) in [
        (true, NoiseTunnelType::SmoothGradSquared),
        (false, NoiseTunnelType::SmoothGrad),
    ] {
        let sg = SmoothGrad::new(
            VanillaGradients::new(),
            SmoothGradParams::new()
                .nsamples(4)
                .stdev_spread(0.1)
                .magnitude(magnitude)
                .seed(9),
        );
        let nt = NoiseTunnel::new(
            VanillaGradients::new(),
            NoiseTunnelParams::new()
                .nt_type(nt_type)
                .nsamples(4)
                .stdev(NoiseStdev::Spread(0.1))
                .seed(9),
        );
        let a = sg.get_mask(&x, &mut m.as_fn()).unwrap();
        let b = nt.get_mask(&x, &mut m.as_fn()).unwrap();
        assert_eq!(a, b, "magnitude {magnitude}");
    }
}

/// The explained output of `x` (one image), evaluated by the model itself.
fn output_of(m: &mut OnnxModel<f32>, x: ArrayViewD<'_, f32>) -> f64 {
    let batch = x.insert_axis(Axis(0));
    let out = m.call(batch, &[OutputKey::OutputLayerValues]).unwrap();
    f64::from(*out.get(OutputKey::OutputLayerValues).unwrap().iter().next().unwrap())
}

#[test]
fn blur_ig_delta_is_measured_from_the_most_blurred_image() {
    let x = image("x");
    let mut m = model(Target::class(TARGET));
    let blur = BlurIg::new().max_sigma(4.0).steps(40).batch_size(8);
    let out = blur.get_mask_with_delta(&x, &mut m.as_fn()).unwrap();
    assert_eq!(out.mask, blur.get_mask(&x, &mut m.as_fn()).unwrap());
    // f(baseline) is f of the input blurred with sigma 4 over height and width,
    // zero beyond the border (the path's own blur).
    let blurred = saliency::imageops::gaussian_filter(
        x.view(),
        &[4.0, 4.0, 0.0],
        saliency::imageops::BoundaryMode::Constant(0.0),
        4.0,
    )
    .unwrap();
    let at_baseline = output_of(&mut m, blurred.view());
    let at_input = output_of(&mut m, x.view());
    // Measured: equal to the last bit or two (1e-7).
    assert!(
        (f64::from(out.output_at_baseline) - at_baseline).abs() < 1e-5,
        "{} vs {at_baseline}",
        out.output_at_baseline
    );
    assert!((f64::from(out.output_at_input) - at_input).abs() < 1e-5);
    let sum: f64 = out.mask.iter().map(|&v| f64::from(v)).sum();
    let delta = sum - (at_input - at_baseline);
    assert!((f64::from(out.delta) - delta).abs() < 1e-5, "{} vs {delta}", out.delta);
    // Completeness along the blur path: measured 1.65e-2 at 40 steps.
    println!("Blur IG relative delta {:.2e}", out.relative_delta());
    assert!(out.relative_delta() < 0.05, "{}", out.relative_delta());
}

#[test]
fn guided_ig_delta_is_completeness_on_its_path() {
    let x = image("x");
    let baseline = image("baseline");
    let mut m = model(Target::class(TARGET));
    let gig = GuidedIg::new().steps(60).baseline(baseline.clone());
    let out = gig.get_mask_with_delta(&x, &mut m.as_fn()).unwrap();
    assert_eq!(out.mask, gig.get_mask(&x, &mut m.as_fn()).unwrap());
    let at_input = output_of(&mut m, x.view());
    let at_baseline = output_of(&mut m, baseline.view());
    let sum: f64 = out.mask.iter().map(|&v| f64::from(v)).sum();
    let delta = sum - (at_input - at_baseline);
    assert!((f64::from(out.delta) - delta).abs() < 1e-5, "{} vs {delta}", out.delta);
    // Measured: 4.5e-2 at 60 steps.
    println!("Guided IG relative delta {:.2e}", out.relative_delta());
    assert!(out.relative_delta() < 0.1, "{}", out.relative_delta());
}

/// A model that gives gradients but no output values.
fn gradients_only(
    batch: ArrayViewD<'_, f32>,
    _request: &ModelRequest<'_>,
) -> Result<ModelOutputs<f32>, saliency::BoxError> {
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.to_owned()))
}

#[test]
fn a_delta_without_output_values_is_an_error_naming_the_key() {
    let x = ArrayD::<f32>::from_elem(IxDyn(&[6, 6, 3]), 0.5);
    let errors = [
        IntegratedGradients::new()
            .get_mask_with_delta(&x, &mut gradients_only)
            .unwrap_err(),
        BlurIg::new()
            .steps(4)
            .get_mask_with_delta(&x, &mut gradients_only)
            .unwrap_err(),
        GuidedIg::new()
            .steps(4)
            .get_mask_with_delta(&x, &mut gradients_only)
            .unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, SaliencyError::ConvergenceDeltaNeedsOutputValues), "{err}");
        assert!(err.to_string().contains("OutputKey::OutputLayerValues"), "{err}");
    }
}

#[test]
fn riemann_rules_need_two_steps_as_in_captum() {
    let x = Array1::<f32>::ones(3);
    for rule in CAPTUM_RULES {
        let res = IntegratedGradients::new()
            .rule(rule)
            .steps(1)
            .get_mask(&x, &mut gradients_only);
        match rule {
            IntegrationRule::GaussLegendre => assert!(res.is_ok()),
            _ => {
                let err = res.unwrap_err();
                assert!(
                    matches!(err, SaliencyError::InvalidParameter { name: "steps", .. }),
                    "{rule}: {err}"
                );
                assert!(err.to_string().contains("at least 2"), "{err}");
            }
        }
    }
    // Checked before any model call, for XRAI too.
    let err = Xrai::<f32>::new()
        .parameters(
            XraiParameters::new()
                .steps(1)
                .integration_rule(IntegrationRule::RiemannLeft),
        )
        .get_mask(&ArrayD::<f32>::zeros(IxDyn(&[8, 8, 3])), &mut |_b: ArrayViewD<
            '_,
            f32,
        >,
                                                                  _r: &ModelRequest<
            '_,
        >| {
            panic!("the model must not be called")
        })
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "steps", .. }),
        "{err}"
    );
}

#[test]
fn noise_tunnel_refuses_a_bad_stdev_before_any_model_call() {
    let x = Array1::<f32>::ones(3);
    for (stdev, name) in [
        (NoiseStdev::Absolute(-1.0), "stdev"),
        (NoiseStdev::Spread(f64::NAN), "stdev_spread"),
    ] {
        let err = NoiseTunnel::new(VanillaGradients::new(), NoiseTunnelParams::new().stdev(stdev))
            .get_mask(&x, &mut |_b: ArrayViewD<'_, f32>, _r: &ModelRequest<'_>| {
                panic!("the model must not be called")
            })
            .unwrap_err();
        assert!(
            matches!(err, SaliencyError::InvalidParameter { name: n, .. } if n == name),
            "{err}"
        );
    }
    assert_eq!(
        CoreSaliency::<f32>::name(&NoiseTunnel::new(VanillaGradients::new(), NoiseTunnelParams::new())),
        "NoiseTunnel (SmoothGrad)"
    );
}
