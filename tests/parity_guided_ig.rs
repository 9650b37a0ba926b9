//! Guided IG against fixtures written by PAIR saliency 0.2.1
//! (tests/reference/gen_guided_ig.py), the reference's own tests, and bad
//! input.

mod common;

use common::{TanhNet, assert_close, fixture, rel_err_f32};
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, array};
use saliency::{BoxError, GuidedIg, ModelOutputs, OutputKey, Saliency, SaliencyError};

const TOPIC: &str = "guided_ig";

impl TanhNet {
    fn model(
        &self,
    ) -> impl FnMut(ArrayViewD<'_, f64>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, BoxError> + '_ {
        move |b, keys| {
            assert_eq!(keys, [OutputKey::InputOutputGradients]);
            assert_eq!(b.shape()[0], 1);
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, self.grads(b)))
        }
    }
}

#[test]
fn guided_ig_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "x");
    let baseline = fixture::<f64>(TOPIC, "baseline");
    let partial = fixture::<f64>(TOPIC, "partial");
    let cases = [
        ("default_f64", GuidedIg::new(), 200),
        (
            "baseline_steps50_f64",
            GuidedIg::new().baseline(baseline).steps(50).fraction(0.1).max_dist(0.1),
            50,
        ),
        (
            "unbounded_steps30_f64",
            GuidedIg::new().steps(30).fraction(0.5).max_dist(1.0),
            30,
        ),
        (
            "straight_steps20_f64",
            GuidedIg::new().steps(20).fraction(0.25).max_dist(0.0),
            20,
        ),
        (
            "partial_baseline_f64",
            GuidedIg::new().baseline(partial).steps(40).fraction(0.3).max_dist(0.05),
            40,
        ),
    ];
    for (name, gig, steps) in cases {
        let mut calls = 0;
        let mut model = net.model();
        let mask = gig
            .get_mask(x.view(), &mut |b, k| {
                calls += 1;
                model(b, k)
            })
            .unwrap();
        assert_eq!(calls, steps, "{name}: one model call per step");
        // Measured 1.8e-16 to 1.2e-15 (baseline_steps50).
        assert_close(
            &format!("guided_ig {name}"),
            mask.view(),
            fixture::<f64>(TOPIC, name).view(),
            2e-14,
        );
    }
}

/// Input and baseline near 1e11, 1/64 apart at most: x_max rounds coarsely
/// and can fall behind alpha_min, so steps run iteration by iteration.
#[test]
fn guided_ig_far_from_zero_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "far_x");
    let gig = GuidedIg::new()
        .baseline(fixture::<f64>(TOPIC, "far_baseline"))
        .steps(30)
        .fraction(0.25)
        .max_dist(0.05);
    let mask = gig
        .get_mask(x.view(), &mut |b, _| {
            let shifted = b.mapv(|v| v - 1e11);
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, net.grads(shifted.view())))
        })
        .unwrap();
    // Measured 1.9e-16.
    assert_close(
        "guided_ig far_steps30_f64",
        mask.view(),
        fixture::<f64>(TOPIC, "far_steps30_f64").view(),
        2e-15,
    );
}

#[test]
fn guided_ig_f32_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "x").mapv(|v| v as f32);
    let mask = GuidedIg::new()
        .get_mask(x.view(), &mut |b, _| {
            let g = net.grads(b.mapv(f64::from).view()).mapv(|v| v as f32);
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
        })
        .unwrap();
    let err = rel_err_f32(mask.view(), fixture::<f64>(TOPIC, "default_f32").view());
    // Measured 2.1e-8.
    println!("parity guided_ig default_f32: relative error {err:.3e} (tolerance 5e-7)");
    assert!(err <= 5e-7, "{err}");
}

/// A model with a constant gradient `g` (a linear function).
fn linear(
    g: [f64; 2],
) -> impl FnMut(ArrayViewD<'_, f64>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, BoxError> {
    move |_b, keys| {
        assert_eq!(keys, [OutputKey::InputOutputGradients]);
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, array![[g[0], g[1]]]))
    }
}

/// Gradient of 2 x1^2 + x2^2 (independent partials).
fn quadratic_indep(b: ArrayViewD<'_, f64>, _k: &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, BoxError> {
    let g = array![[4.0 * b[[0, 0]], 2.0 * b[[0, 1]]]];
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
}

/// Gradient of (2 x1 + x2)^2 (dependent partials).
fn quadratic_dep(b: ArrayViewD<'_, f64>, _k: &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, BoxError> {
    let (x1, x2) = (b[[0, 0]], b[[0, 1]]);
    let g = array![[8.0 * x1 + 4.0 * x2, 4.0 * x1 + 2.0 * x2]];
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
}

fn assert_rtol(label: &str, actual: &ArrayD<f64>, expected: [f64; 2], rtol: f64) {
    let worst = actual
        .iter()
        .zip(expected)
        .fold(0.0_f64, |m, (a, e)| m.max((a - e).abs() / e.abs()));
    println!("guided_ig {label}: largest relative difference {worst:.3e} (tolerance {rtol:.0e})");
    assert!(worst <= rtol, "{label}: {actual} vs {expected:?}");
}

// The reference's guided_ig_test.py, ported. Expected values are its own
// (Integrated Gradients of the linear and quadratic functions, and the
// unbounded path for the dependent quadratic), and so are the 1% tolerances
// on the quadratics: 1000 steps leave 1e-3 to 2e-3 (measured), 5-10x below.
// On the linear function the path sums exact multiples (measured 0): a few
// roundings allowed instead of the reference's 1e-7.

#[test]
fn reference_linear_with_baseline() {
    let gig = GuidedIg::new()
        .baseline(array![-1.0, -3.0])
        .steps(10)
        .fraction(0.1)
        .max_dist(0.5);
    let mask = gig
        .get_mask(array![10.0, 5.0].into_dyn().view(), &mut linear([2.0, 1.0]))
        .unwrap();
    assert_rtol("linear with baseline", &mask, [22.0, 8.0], 1e-15);
}

#[test]
fn reference_linear_without_baseline() {
    let gig = GuidedIg::new().steps(10).fraction(0.1).max_dist(0.5);
    let mask = gig
        .get_mask(array![10.0, 5.0].into_dyn().view(), &mut linear([2.0, 1.0]))
        .unwrap();
    assert_rtol("linear without baseline", &mask, [20.0, 5.0], 1e-15);
}

#[test]
fn reference_independent_quadratic() {
    let gig = GuidedIg::new().steps(1000).fraction(0.1).max_dist(0.4);
    let mask = gig
        .get_mask(array![3.0, 3.0].into_dyn().view(), &mut quadratic_indep)
        .unwrap();
    assert_rtol("independent quadratic", &mask, [18.0, 9.0], 0.01);
    // Input below the baseline.
    let gig = gig.baseline(array![3.0, 3.0]);
    let mask = gig
        .get_mask(array![0.0, 0.0].into_dyn().view(), &mut quadratic_indep)
        .unwrap();
    assert_rtol("independent quadratic below the baseline", &mask, [-18.0, -9.0], 0.01);
}

#[test]
fn reference_dependent_quadratic() {
    let x = array![3.0, 3.0].into_dyn();
    // max_dist 0 or fraction 1 reduce Guided IG to Integrated Gradients.
    for gig in [
        GuidedIg::new().steps(1000).fraction(0.1).max_dist(0.0),
        GuidedIg::new().steps(1000).fraction(1.0).max_dist(0.5),
    ] {
        let mask = gig.get_mask(x.view(), &mut quadratic_dep).unwrap();
        assert_rtol("dependent quadratic as IG", &mask, [54.0, 27.0], 0.01);
    }
    // Unbounded.
    let gig = GuidedIg::new().steps(1000).fraction(0.1).max_dist(1.0);
    let mask = gig.get_mask(x.view(), &mut quadratic_dep).unwrap();
    assert_rtol("dependent quadratic unbounded", &mask, [72.0, 9.0], 0.01);
    // Bounded: complete (f(3, 3) - f(0, 0) = 81) and between the two.
    let gig = GuidedIg::new().steps(1000).fraction(0.1).max_dist(0.2);
    let mask = gig.get_mask(x.view(), &mut quadratic_dep).unwrap();
    // Measured 80.9154: the reference's 0.1 is already tight.
    println!(
        "guided_ig dependent quadratic bounded: sum {:.6} (81 expected)",
        mask.sum()
    );
    assert!((mask.sum() - 81.0).abs() <= 0.1, "{mask}");
    assert!(55.0 < mask[[0]] && mask[[0]] < 71.0, "{mask}");
    assert!(10.0 < mask[[1]] && mask[[1]] < 26.0, "{mask}");
}

#[test]
fn input_equal_to_baseline_gives_zeros_without_calling_the_model() {
    let x = array![1.0, 2.0].into_dyn();
    let mask = GuidedIg::new()
        .baseline(x.clone())
        .get_mask(x.view(), &mut |_b, _k| Err("not called".into()))
        .unwrap();
    assert_eq!(mask, ArrayD::<f64>::zeros(vec![2]));
}

#[test]
fn progress_is_reported_per_step() {
    let mut reports = Vec::new();
    GuidedIg::new()
        .steps(5)
        .get_mask_with_progress(array![1.0, 2.0].into_dyn().view(), &mut linear([1.0, 1.0]), &mut |p| {
            reports.push(p.done)
        })
        .unwrap();
    assert_eq!(reports, vec![1, 2, 3, 4, 5]);
}

#[test]
fn bad_input_is_an_error() {
    let x = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
    let ok_model = |b: ArrayViewD<'_, f64>, _k: &saliency::ModelRequest<'_>| {
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.to_owned()))
    };
    let run = |gig: GuidedIg<f64>, x: ArrayViewD<'_, f64>| gig.get_mask(x, &mut ok_model.clone());

    // Zero steps, fraction and max_dist outside 0..=1.
    for gig in [
        GuidedIg::new().steps(0),
        GuidedIg::new().fraction(1.5),
        GuidedIg::new().fraction(f64::NAN),
        GuidedIg::new().max_dist(-0.1),
    ] {
        assert!(matches!(
            run(gig, x.view()),
            Err(SaliencyError::InvalidParameter { .. })
        ));
    }
    // Mismatched or non-finite baseline.
    let err = run(GuidedIg::new().baseline(array![1.0, 2.0]), x.view()).unwrap_err();
    assert!(
        matches!(err, SaliencyError::ShapeMismatch { what: "baseline", .. }),
        "{err}"
    );
    let err = run(
        GuidedIg::new().baseline(array![[1.0, f64::INFINITY], [0.0, 0.0]]),
        x.view(),
    )
    .unwrap_err();
    assert!(
        matches!(err, SaliencyError::NonFiniteInput { what: "baseline", .. }),
        "{err}"
    );
    // NaN, empty and rank-0 input.
    let nan = array![[1.0, f64::NAN], [3.0, 4.0]].into_dyn();
    assert!(matches!(
        run(GuidedIg::new(), nan.view()),
        Err(SaliencyError::NonFiniteInput { .. })
    ));
    let empty = ArrayD::<f64>::zeros(vec![0]);
    assert!(matches!(
        run(GuidedIg::new(), empty.view()),
        Err(SaliencyError::EmptyInput { .. })
    ));
    let scalar = ArrayD::<f64>::zeros(vec![]);
    assert!(matches!(
        run(GuidedIg::new(), scalar.view()),
        Err(SaliencyError::InvalidRank { .. })
    ));

    // Model returning the wrong key, the wrong shape, NaN, or an error.
    let gig = GuidedIg::new().steps(3);
    let wrong_key = gig.get_mask(x.view(), &mut |b, _| {
        Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array1::<f64>::zeros(b.shape()[0])))
    });
    assert!(matches!(
        wrong_key,
        Err(SaliencyError::MissingOutput {
            key: OutputKey::InputOutputGradients
        })
    ));
    let wrong_shape = gig.get_mask(x.view(), &mut |_b, _| {
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, Array2::<f64>::zeros((1, 4))))
    });
    assert!(matches!(wrong_shape, Err(SaliencyError::OutputShapeMismatch { .. })));
    let nan_grads = gig.get_mask(x.view(), &mut |b, _| {
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.mapv(|_| f64::NAN)))
    });
    assert!(matches!(nan_grads, Err(SaliencyError::NonFiniteOutput { .. })));
    let failing = gig.get_mask(x.view(), &mut |_b, _| Err("model down".into()));
    assert!(matches!(failing, Err(SaliencyError::Model(_))));
}
