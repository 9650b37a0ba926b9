//! Deletion and insertion curves against NumPy/SciPy
//! (tests/reference/gen_judge.py), the batching, and every error.

mod common;

use std::cell::Cell;

use common::fixture;
use ndarray::{Array1, Array2, Array3, ArrayD, ArrayViewD, Ix2, Ix3, array};
use saliency::metrics::{CurveBaseline, CurveKind, PerturbationCurve};
use saliency::{BoxError, ModelOutputs, ModelRequest, OutputKey, SaliencyError};

/// The generator's model: sigmoid(sum(w * x)) per image of the batch.
fn sigmoid_model(
    weights: Array3<f64>,
    calls: &Cell<usize>,
) -> impl FnMut(ArrayViewD<'_, f64>, &ModelRequest<'_>) -> Result<ModelOutputs<f64>, BoxError> + '_ {
    move |batch, request| {
        assert_eq!(request.keys(), [OutputKey::OutputLayerValues]);
        calls.set(calls.get() + 1);
        let scores: Array1<f64> = batch
            .outer_iter()
            .map(|x| {
                let z: f64 = x.iter().zip(weights.iter()).map(|(a, b)| a * b).sum();
                1.0 / (1.0 + (-z).exp())
            })
            .collect();
        Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, scores))
    }
}

fn inputs() -> (Array3<f64>, Array3<f64>, Array2<f64>) {
    let image = fixture::<f64>("judge", "curve_image")
        .into_dimensionality::<Ix3>()
        .unwrap();
    let weights = fixture::<f64>("judge", "curve_weights")
        .into_dimensionality::<Ix3>()
        .unwrap();
    let map = fixture::<f64>("judge", "curve_map")
        .into_dimensionality::<Ix2>()
        .unwrap();
    (image, weights, map)
}

#[test]
fn curves_match_numpy() {
    let (image, weights, map) = inputs();
    let calls = Cell::new(0);
    let mut model = sigmoid_model(weights, &calls);
    let mut worst = 0.0_f64;
    for steps in [5, 8] {
        for (name, baseline) in [
            ("black", CurveBaseline::Black),
            ("blur", CurveBaseline::Blur { sigma: 1.5 }),
            ("mean", CurveBaseline::Mean),
        ] {
            for (kind, curve) in [
                ("deletion", PerturbationCurve::deletion()),
                ("insertion", PerturbationCurve::insertion()),
            ] {
                let expected = fixture::<f64>("judge", &format!("curve_{kind}_{name}_{steps}"));
                let got = curve
                    .steps(steps)
                    .baseline(baseline)
                    .batch_size(4)
                    .compute(&image, map.view(), &mut model)
                    .unwrap();
                assert_eq!(got.scores.len(), steps + 1);
                assert_eq!(got.fractions.first(), Some(&0.0));
                assert_eq!(got.fractions.last(), Some(&1.0));
                for (a, e) in got.scores.iter().chain([&got.auc]).zip(expected.iter()) {
                    worst = worst.max((a - e).abs());
                }
            }
        }
    }
    // Measured: 3.3e-16 (the blur and the sums in another order).
    println!("deletion/insertion: max |difference| from numpy {worst:.1e}");
    assert!(worst <= 1e-13, "{worst}");
}

#[test]
fn auc_is_on_the_fraction_axis_with_uneven_steps() {
    // 3 x 1 pixels, 2 steps: floor(k * 3 / 2) = 0, 1, 3 pixels deleted, so
    // the fractions are 0, 1/3, 1 (not evenly spaced). The model's score is
    // the image's sum; the map deletes pixel 0 (value 1) first, then pixels 1
    // and 2 (values 2, 3). Scores 6, 5, 0; trapezoid over the fractions:
    // (1/3) * (6 + 5) / 2 + (2/3) * (5 + 0) / 2 = 11/6 + 5/3 = 3.5.
    // On evenly spaced points (RISE's formula) it would be
    // (6/2 + 5 + 0/2) / 2 = 4.
    let image = array![[[1.0]], [[2.0]], [[3.0]]];
    let map = array![[3.0], [2.0], [2.0]];
    let mut model = |batch: ArrayViewD<'_, f64>, _: &ModelRequest<'_>| {
        let s: Array1<f64> = batch.outer_iter().map(|x| x.sum()).collect();
        Ok::<_, BoxError>(ModelOutputs::new().with(OutputKey::OutputLayerValues, s))
    };
    let c = PerturbationCurve::deletion()
        .steps(2)
        .compute(&image, map.view(), &mut model)
        .unwrap();
    assert_eq!(c.scores, [6.0, 5.0, 0.0]);
    assert_eq!(c.fractions, [0.0, 1.0 / 3.0, 1.0]);
    assert!((c.auc - 3.5).abs() < 1e-15, "{}", c.auc);
}

#[test]
fn ties_go_in_row_major_order() {
    // All pixels tie: deletion removes them in row-major order, so with one
    // pixel per step the score (the sum of pixel index * value) drops by the
    // pixels in order 0, 1, 2, 3.
    let image = Array3::from_shape_vec((2, 2, 1), vec![1.0, 10.0, 100.0, 1000.0]).unwrap();
    let map = Array2::<f64>::zeros((2, 2));
    let mut model = |batch: ArrayViewD<'_, f64>, _: &ModelRequest<'_>| {
        let s: Array1<f64> = batch.outer_iter().map(|x| x.sum()).collect();
        Ok::<_, BoxError>(ModelOutputs::new().with(OutputKey::OutputLayerValues, s))
    };
    let c = PerturbationCurve::deletion()
        .steps(4)
        .compute(&image, map.view(), &mut model)
        .unwrap();
    assert_eq!(c.scores, [1111.0, 1110.0, 1100.0, 1000.0, 0.0]);
    let c = PerturbationCurve::insertion()
        .baseline(CurveBaseline::Black)
        .steps(4)
        .compute(&image, map.view(), &mut model)
        .unwrap();
    assert_eq!(c.scores, [0.0, 1.0, 11.0, 111.0, 1111.0]);
    assert_eq!(c.auc, 0.25 * (1.0 + 11.0 + 111.0) + 0.25 * 1111.0 / 2.0);
}

#[test]
fn results_do_not_depend_on_the_batch_size() {
    let (image, weights, map) = inputs();
    let calls = Cell::new(0);
    let mut model = sigmoid_model(weights, &calls);
    let curve = PerturbationCurve::insertion().steps(8).baseline(CurveBaseline::Mean);
    let one = curve.batch_size(1).compute(&image, map.view(), &mut model).unwrap();
    assert_eq!(calls.replace(0), 9);
    let four = curve.batch_size(4).compute(&image, map.view(), &mut model).unwrap();
    assert_eq!(calls.replace(0), 3); // 4 + 4 + 1 images
    let all = curve.batch_size(100).compute(&image, map.view(), &mut model).unwrap();
    assert_eq!(calls.replace(0), 1);
    assert_eq!(one, four);
    assert_eq!(one, all);
}

#[test]
fn batches_have_the_image_shape() {
    let image = Array2::<f32>::from_shape_fn((3, 5), |(i, j)| (i + j) as f32);
    let map = image.mapv(f64::from);
    let mut shapes = Vec::new();
    let mut model = |batch: ArrayViewD<'_, f32>, _: &ModelRequest<'_>| {
        shapes.push(batch.shape().to_vec());
        let n = batch.shape()[0];
        Ok::<_, BoxError>(ModelOutputs::new().with(OutputKey::OutputLayerValues, ArrayD::<f32>::zeros(vec![n, 1])))
    };
    PerturbationCurve::deletion()
        .steps(3)
        .batch_size(3)
        .compute(&image, map.view(), &mut model)
        .unwrap();
    assert_eq!(shapes, [vec![3, 3, 5], vec![1, 3, 5]]);
}

#[test]
fn bad_input_is_an_error_before_any_model_call() {
    let image = Array3::<f64>::ones((4, 5, 3));
    let map = Array2::<f64>::ones((4, 5));
    let calls = Cell::new(0);
    let mut model = sigmoid_model(Array3::ones((4, 5, 3)), &calls);
    let curve = PerturbationCurve::deletion();
    let cases: Vec<(&str, Result<_, SaliencyError>)> = vec![
        ("steps 0", curve.steps(0).compute(&image, map.view(), &mut model)),
        (
            "steps huge",
            curve.steps(usize::MAX).compute(&image, map.view(), &mut model),
        ),
        ("batch 0", curve.batch_size(0).compute(&image, map.view(), &mut model)),
        (
            "sigma 0",
            curve
                .baseline(CurveBaseline::Blur { sigma: 0.0 })
                .compute(&image, map.view(), &mut model),
        ),
        (
            "sigma NaN",
            curve
                .baseline(CurveBaseline::Blur { sigma: f64::NAN })
                .compute(&image, map.view(), &mut model),
        ),
        (
            "map shape",
            curve.compute(&image, Array2::<f64>::ones((5, 4)).view(), &mut model),
        ),
        (
            "map NaN",
            curve.compute(&image, map.mapv(|_| f64::NAN).view(), &mut model),
        ),
        (
            "image NaN",
            curve.compute(&image.mapv(|_| f64::INFINITY), map.view(), &mut model),
        ),
        (
            "image rank",
            curve.compute(&Array1::<f64>::ones(5), map.view(), &mut model),
        ),
        (
            "channels first",
            curve.compute(
                &Array3::<f64>::ones((3, 8, 8)),
                Array2::<f64>::ones((3, 8)).view(),
                &mut model,
            ),
        ),
        (
            "empty",
            curve.compute(
                &Array3::<f64>::ones((0, 5, 3)),
                Array2::<f64>::ones((0, 5)).view(),
                &mut model,
            ),
        ),
    ];
    for (what, result) in cases {
        let err = result.expect_err(what);
        println!("{what}: {err}");
    }
    assert_eq!(calls.get(), 0, "no model call on bad input");
    let err = curve.steps(0).compute(&image, map.view(), &mut model).unwrap_err();
    assert!(matches!(err, SaliencyError::InvalidParameter { name: "steps", .. }));
    let err = curve
        .compute(&image, Array2::<f64>::ones((5, 4)).view(), &mut model)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SaliencyError::ShapeMismatch {
                what: "saliency map",
                ..
            }
        ),
        "{err}"
    );

    // A model answering with one score too few, or a NaN.
    let mut short = |batch: ArrayViewD<'_, f64>, _: &ModelRequest<'_>| {
        let n = batch.shape()[0];
        Ok::<_, BoxError>(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array1::<f64>::zeros(n - 1)))
    };
    let err = curve.compute(&image, map.view(), &mut short).unwrap_err();
    assert!(matches!(err, SaliencyError::OutputBatchMismatch { .. }), "{err}");
    let mut nan = |batch: ArrayViewD<'_, f64>, _: &ModelRequest<'_>| {
        let n = batch.shape()[0];
        Ok::<_, BoxError>(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array1::<f64>::from_elem(n, f64::NAN)))
    };
    let err = curve.compute(&image, map.view(), &mut nan).unwrap_err();
    assert!(matches!(err, SaliencyError::NonFiniteOutput { .. }), "{err}");
    let _ = CurveKind::Deletion;
}
