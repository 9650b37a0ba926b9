//! The reference's PIC tests (saliency/metrics/pic_test.py), ported, and the
//! typed errors on bad input.
#![cfg(feature = "metrics")]

mod common;

use common::fixture;
use ndarray::{Array2, Array3, ArrayD, ArrayViewD, array};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saliency::metrics::{
    Aggregation, Interpolation, PicMetric, PicMetricResult, aggregate_individual_pic_results, compute_pic_metric,
    create_blurred_image, estimate_image_entropy, generate_random_mask,
};
use saliency::{BoxError, OutputKey, SaliencyError};

/// The reference tests' image is doberman.png (not shipped); this is the
/// generated 64 x 64 x 3 image of the parity fixtures.
fn image() -> ArrayD<u8> {
    fixture::<u8>("pic", "pic64_image")
}

/// The reference tests' prediction: the image's entropy estimate.
fn entropy_prediction(batch: ArrayViewD<'_, u8>) -> Result<Vec<f64>, BoxError> {
    batch
        .outer_iter()
        .map(|img| Ok(estimate_image_entropy(img)? as f64))
        .collect()
}

fn random_saliency(h: usize, w: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((h, w), |_| rng.random::<f64>())
}

#[test]
fn full_mask_returns_the_image() {
    let img = image();
    let mask = Array2::from_elem((64, 64), true);
    let blurred = create_blurred_image(img.view(), mask.view(), Interpolation::Linear).unwrap();
    assert_eq!(blurred, img);
}

#[test]
fn empty_mask_uses_the_corners() {
    // The reference's test: (1, 0) and the corners are known.
    let img = array![[0.0, 0.0, 0.0], [1.0, 8.0, 1.0], [0.0, 0.0, 0.0]];
    let mask = array![[false, false, false], [true, false, false], [false, false, false]];
    let blurred = create_blurred_image(img.view().into_dyn(), mask.view(), Interpolation::Linear).unwrap();
    let expected = array![[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.0]].into_dyn();
    assert_eq!(blurred, expected);
}

#[test]
fn corners_only_give_their_common_value() {
    let img = array![[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]];
    let mask = Array2::from_elem((3, 3), false);
    let blurred = create_blurred_image(img.view().into_dyn(), mask.view(), Interpolation::Linear).unwrap();
    assert_eq!(blurred, Array2::from_elem((3, 3), 1.0).into_dyn());
    let nearest = create_blurred_image(img.view().into_dyn(), mask.view(), Interpolation::Nearest).unwrap();
    assert_eq!(nearest, Array2::from_elem((3, 3), 1.0).into_dyn());
}

#[test]
fn entropy_grows_with_the_fraction_of_kept_pixels() {
    let img = image();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut previous = 0;
    for fraction in [0.0, 0.01, 0.02, 0.1, 1.0] {
        let mask = generate_random_mask(64, 64, fraction, &mut rng).unwrap();
        let blurred = create_blurred_image(img.view(), mask.view(), Interpolation::Linear).unwrap();
        let entropy = estimate_image_entropy(blurred.view()).unwrap();
        assert!(entropy > previous, "fraction {fraction}: {entropy} <= {previous}");
        previous = entropy;
    }
}

#[test]
fn random_mask_has_the_requested_count_and_is_seeded() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mask = generate_random_mask(100, 100, 0.2, &mut rng).unwrap();
    assert_eq!(mask.iter().filter(|&&m| m).count(), 2000);
    let again = generate_random_mask(100, 100, 0.2, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
    assert_eq!(mask, again);
    let other = generate_random_mask(100, 100, 0.2, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
    assert_ne!(mask, other);
    // int(7 * 3 * 0.5) = 10
    let small = generate_random_mask(7, 3, 0.5, &mut rng).unwrap();
    assert_eq!(small.iter().filter(|&&m| m).count(), 10);
    assert!(generate_random_mask(5, 5, 1.0, &mut rng).unwrap().iter().all(|&m| m));
    assert!(!generate_random_mask(5, 5, 0.0, &mut rng).unwrap().iter().any(|&m| m));
}

#[test]
fn pic_curve() {
    let img = image();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mask = generate_random_mask(64, 64, 0.01, &mut rng).unwrap();
    let saliency = random_saliency(64, 64, 6);
    let thresholds = [0.01, 0.02, 0.03, 0.05];
    let result = PicMetric::new()
        .thresholds(thresholds)
        .num_data_points(2000)
        .compute(img.view(), saliency.view(), mask.view(), entropy_prediction)
        .unwrap();
    assert_eq!(result.curve_x.len(), 2001);
    assert_eq!(result.curve_y.len(), 2001);
    assert!(result.auc > 0.0 && result.auc < 1.0, "AUC {}", result.auc);
    assert_eq!(result.predictions.len(), thresholds.len() + 2);
    assert_eq!(result.blurred_images.len(), thresholds.len() + 2);
    assert_eq!(result.thresholds, [0.0, 0.01, 0.02, 0.03, 0.05, 1.0]);
    assert_eq!(result.blurred_images.last(), Some(&img));
    assert_eq!(result.curve_x[1], 1.0 / 2000.0);
    assert_eq!((result.curve_x[2000], result.curve_y[2000]), (1.0, 1.0));
    // The curve is kept monotonous.
    assert!(result.curve_y.windows(2).all(|p| p[0] <= p[1]));
}

#[test]
fn greyscale_image() {
    let img = image();
    // np.mean(img, axis=2).astype(np.uint8): the mean truncated.
    let grey = Array2::from_shape_fn((64, 64), |(i, j)| {
        ((0..3).map(|c| f64::from(img[[i, j, c]])).sum::<f64>() / 3.0) as u8
    })
    .into_dyn();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mask = generate_random_mask(64, 64, 0.1, &mut rng).unwrap();
    let saliency = random_saliency(64, 64, 9);
    let result = PicMetric::new()
        .thresholds([0.01, 0.02])
        .num_data_points(50)
        .compute(grey.view(), saliency.view(), mask.view(), entropy_prediction)
        .unwrap();
    assert_eq!(result.curve_x.len(), 51);
    assert_eq!(result.curve_y.len(), 51);
    assert!(result.auc > 0.0 && result.auc < 1.0);
    assert_eq!(result.predictions.len(), 4);
    assert_eq!(result.blurred_images.len(), 4);
    assert_eq!(result.blurred_images[0].shape(), &[64, 64]);
}

#[test]
fn prediction_too_low_is_a_skip_error() {
    let img = image();
    let mask = generate_random_mask(64, 64, 0.1, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
    let saliency = random_saliency(64, 64, 2);
    let err = PicMetric::new()
        .thresholds([0.1, 0.2])
        .min_pred_value(0.95)
        .compute(img.view(), saliency.view(), mask.view(), |b: ArrayViewD<'_, u8>| {
            Ok(vec![0.9; b.shape()[0]])
        })
        .unwrap_err();
    assert!(matches!(
        err,
        SaliencyError::PicPredictionTooLow { min_pred_value, prediction } if min_pred_value == 0.95 && prediction == 0.9
    ));
    assert!(err.is_pic_skip());
    let message = err.to_string();
    assert!(message.contains("min_pred_value") && message.contains("0.95") && message.contains("0.9"));
}

#[test]
fn the_other_skip_conditions() {
    let img = image();
    let mask = Array2::from_elem((64, 64), false);
    let saliency = random_saliency(64, 64, 2);
    // A constant prediction: the blurred image scores as high as the original.
    let err = compute_pic_metric(
        img.view(),
        saliency.view(),
        mask.view(),
        |b: ArrayViewD<'_, u8>| Ok(vec![0.9; b.shape()[0]]),
        &[0.1],
    )
    .unwrap_err();
    assert!(
        matches!(err, SaliencyError::PicBlurredPredictionNotLower { blurred, original } if blurred == 0.9 && original == 0.9),
        "{err}"
    );
    assert!(err.is_pic_skip());
    // A flat image: blurring changes nothing, so the entropy does not drop.
    let flat = Array3::<u8>::from_elem((16, 16, 3), 77).into_dyn();
    let err = compute_pic_metric(
        flat.view(),
        random_saliency(16, 16, 1).view(),
        Array2::from_elem((16, 16), false).view(),
        |b: ArrayViewD<'_, u8>| Ok(vec![1.0; b.shape()[0]]),
        &[0.1],
    )
    .unwrap_err();
    assert!(
        matches!(err, SaliencyError::PicBlurredEntropyNotLower { blurred, original } if blurred == original),
        "{err}"
    );
    assert!(err.to_string().contains("entropy"));
    let other = generate_random_mask(2, 2, 2.0, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
    assert!(!other.is_pic_skip());
}

#[test]
fn aggregate_individual_image_results() {
    let curve_x = vec![0.0, 0.25, 0.5, 0.75, 1.0];
    let r1 = PicMetricResult {
        curve_x: curve_x.clone(),
        curve_y: vec![0.0, 0.2, 0.4, 0.6, 1.0],
        auc: 0.4,
        ..Default::default()
    };
    let r2 = PicMetricResult {
        curve_x: curve_x.clone(),
        curve_y: vec![0.0, 0.4, 0.4, 0.4, 1.0],
        auc: 0.2,
        ..Default::default()
    };
    let r = aggregate_individual_pic_results(&[r1.clone(), r2.clone()], Aggregation::Mean).unwrap();
    assert_eq!(r.curve_x, curve_x);
    // [0, 0.3, 0.4, 0.5, 1], as NumPy's mean computes it: exact.
    let expected: Vec<f64> = r1.curve_y.iter().zip(&r2.curve_y).map(|(a, b)| (a + b) / 2.0).collect();
    assert_eq!(r.curve_y, expected);
    // The reference's exact expression.
    assert_eq!(
        r.auc,
        (0.0 + 0.3) / 8.0 + (0.3 + 0.4) / 8.0 + (0.4 + 0.5) / 8.0 + (0.5 + 1.0) / 8.0
    );
    assert!(r.auc > 0.0 && r.auc < 1.0);
    // The median of two curves is their mean.
    let m = aggregate_individual_pic_results(&[r1, r2], Aggregation::Median).unwrap();
    assert_eq!(m.curve_y, r.curve_y);
}

#[test]
fn batch_size_does_not_change_the_result() {
    let img = image();
    let mask = generate_random_mask(64, 64, 0.01, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
    let saliency = random_saliency(64, 64, 6);
    let mut batches = Vec::new();
    let all = PicMetric::new()
        .compute(img.view(), saliency.view(), mask.view(), |b: ArrayViewD<'_, u8>| {
            batches.push(b.shape().to_vec());
            entropy_prediction(b)
        })
        .unwrap();
    // The original and the fully blurred image, then the 13 thresholds.
    assert_eq!(batches, [vec![2, 64, 64, 3], vec![13, 64, 64, 3]]);
    let mut calls = 0;
    let one = PicMetric::new()
        .batch_size(1)
        .compute(img.view(), saliency.view(), mask.view(), |b: ArrayViewD<'_, u8>| {
            calls += 1;
            entropy_prediction(b)
        })
        .unwrap();
    assert_eq!(calls, 15);
    assert_eq!(all, one);
}

#[test]
fn bad_input_is_a_typed_error() {
    let img = image();
    let mask = Array2::from_elem((64, 64), false);
    let saliency = random_saliency(64, 64, 1);
    let ok = |b: ArrayViewD<'_, u8>| entropy_prediction(b);
    let run = |metric: PicMetric, sal: &Array2<f64>, m: &Array2<bool>| {
        metric.compute(img.view(), sal.view(), m.view(), ok).unwrap_err()
    };

    // Mismatched shapes.
    let e = run(PicMetric::new(), &random_saliency(64, 63, 1), &mask);
    assert!(
        matches!(
            e,
            SaliencyError::ShapeMismatch {
                what: "saliency_map",
                ..
            }
        ),
        "{e}"
    );
    let e = run(PicMetric::new(), &saliency, &Array2::from_elem((63, 64), false));
    assert!(
        matches!(
            e,
            SaliencyError::ShapeMismatch {
                what: "random_mask",
                ..
            }
        ),
        "{e}"
    );
    let e = create_blurred_image(
        img.view(),
        Array2::from_elem((64, 65), true).view(),
        Interpolation::Linear,
    );
    assert!(matches!(
        e,
        Err(SaliencyError::ShapeMismatch { what: "pixel_mask", .. })
    ));

    // Thresholds outside [0, 1] or not ascending; other settings.
    for t in [vec![0.1, 0.05], vec![-0.1], vec![1.5], vec![f64::NAN]] {
        let e = run(PicMetric::new().thresholds(t.clone()), &saliency, &mask);
        assert!(
            matches!(e, SaliencyError::InvalidParameter { name: "thresholds", .. }),
            "{t:?}: {e}"
        );
    }
    let e = run(PicMetric::new().num_data_points(0), &saliency, &mask);
    assert!(matches!(
        e,
        SaliencyError::InvalidParameter {
            name: "num_data_points",
            ..
        }
    ));
    let e = run(PicMetric::new().batch_size(0), &saliency, &mask);
    assert!(matches!(e, SaliencyError::InvalidParameter { name: "batch_size", .. }));
    let e = run(PicMetric::new().min_pred_value(f64::NAN), &saliency, &mask);
    assert!(matches!(
        e,
        SaliencyError::InvalidParameter {
            name: "min_pred_value",
            ..
        }
    ));

    // A non-finite saliency map.
    let mut nan = saliency.clone();
    nan[[3, 4]] = f64::NAN;
    let e = run(PicMetric::new(), &nan, &mask);
    assert!(matches!(
        e,
        SaliencyError::NonFiniteInput {
            what: "saliency_map",
            count: 1,
            first_index: 196
        }
    ));

    // Fractions outside [0, 1].
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for f in [-0.01, 1.01, f64::NAN] {
        let e = generate_random_mask(10, 10, f, &mut rng).unwrap_err();
        assert!(matches!(e, SaliencyError::InvalidParameter { name: "fraction", .. }));
    }

    // A prediction function that fails, miscounts or returns NaN.
    let e = PicMetric::new()
        .compute(img.view(), saliency.view(), mask.view(), |_: ArrayViewD<'_, u8>| {
            Err::<Vec<f64>, BoxError>("model crashed".into())
        })
        .unwrap_err();
    assert!(
        matches!(e, SaliencyError::Model(_))
            && std::error::Error::source(&e).is_some_and(|s| s.to_string() == "model crashed"),
        "{e}"
    );
    let e = PicMetric::new()
        .compute(img.view(), saliency.view(), mask.view(), |_: ArrayViewD<'_, u8>| {
            Ok(vec![1.0])
        })
        .unwrap_err();
    assert!(matches!(
        e,
        SaliencyError::OutputBatchMismatch {
            key: OutputKey::OutputLayerValues,
            expected_batch: 2,
            ..
        }
    ));
    let e = PicMetric::new()
        .compute(img.view(), saliency.view(), mask.view(), |b: ArrayViewD<'_, u8>| {
            Ok(vec![f64::NAN; b.shape()[0]])
        })
        .unwrap_err();
    assert!(matches!(e, SaliencyError::NonFiniteOutput { count: 2, .. }));

    // Images: wrong rank, empty, non-finite, too small, bad channel count.
    let rank4 = ArrayD::<u8>::zeros(ndarray::IxDyn(&[2, 4, 4, 3]));
    assert!(matches!(
        estimate_image_entropy(rank4.view()),
        Err(SaliencyError::InvalidRank { actual: 4, .. })
    ));
    let e = create_blurred_image(
        rank4.view(),
        Array2::from_elem((2, 4), false).view(),
        Interpolation::Linear,
    );
    assert!(matches!(e, Err(SaliencyError::InvalidRank { .. })));
    let empty = ArrayD::<u8>::zeros(ndarray::IxDyn(&[0, 4]));
    assert!(matches!(
        estimate_image_entropy(empty.view()),
        Err(SaliencyError::EmptyInput { .. })
    ));
    let inf = array![[1.0, f64::INFINITY], [0.0, 2.0]].into_dyn();
    let e = create_blurred_image(
        inf.view(),
        Array2::from_elem((2, 2), true).view(),
        Interpolation::Linear,
    );
    assert!(matches!(e, Err(SaliencyError::NonFiniteInput { what: "image", .. })));
    let row = Array2::<f64>::zeros((1, 5)).into_dyn();
    let e = create_blurred_image(
        row.view(),
        Array2::from_elem((1, 5), false).view(),
        Interpolation::Linear,
    );
    assert!(
        matches!(e, Err(SaliencyError::InvalidParameter { name: "pixel_mask", .. })),
        "{e:?}"
    );
    let five = ArrayD::<u8>::zeros(ndarray::IxDyn(&[4, 4, 5]));
    assert!(matches!(
        estimate_image_entropy(five.view()),
        Err(SaliencyError::InvalidParameter { name: "channels", .. })
    ));
    let wide = ArrayD::<u8>::zeros(ndarray::IxDyn(&[1, 20_000]));
    assert!(matches!(
        estimate_image_entropy(wide.view()),
        Err(SaliencyError::ImageEncoding { .. })
    ));

    // Aggregation: no results, different lengths, different or repeated x.
    assert!(matches!(
        aggregate_individual_pic_results(&[], Aggregation::Median),
        Err(SaliencyError::EmptyInput { what: "results", .. })
    ));
    let r = |x: Vec<f64>, y: Vec<f64>| PicMetricResult {
        curve_x: x,
        curve_y: y,
        ..Default::default()
    };
    let a = r(vec![0.0, 0.5, 1.0], vec![0.0, 0.5, 1.0]);
    let e = aggregate_individual_pic_results(&[a.clone(), r(vec![0.0, 1.0], vec![0.0, 1.0])], Aggregation::Mean);
    assert!(matches!(e, Err(SaliencyError::ShapeMismatch { .. })));
    let e = aggregate_individual_pic_results(
        &[a.clone(), r(vec![0.0, 0.4, 1.0], vec![0.0, 0.5, 1.0])],
        Aggregation::Mean,
    );
    assert!(matches!(
        e,
        Err(SaliencyError::InvalidParameter { name: "results", .. })
    ));
    let e = aggregate_individual_pic_results(&[r(vec![0.0, 0.0, 1.0], vec![0.0, 0.5, 1.0])], Aggregation::Mean);
    assert!(matches!(
        e,
        Err(SaliencyError::InvalidParameter { name: "results", .. })
    ));
    let e = aggregate_individual_pic_results(
        &[a, r(vec![0.0, 0.5, 1.0], vec![0.0, f64::NAN, 1.0])],
        Aggregation::Mean,
    );
    assert!(matches!(e, Err(SaliencyError::NonFiniteInput { .. })));
}

#[test]
fn custom_entropy_estimate_and_its_errors() {
    let img = image();
    let mask = generate_random_mask(64, 64, 0.01, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
    let saliency = random_saliency(64, 64, 6);
    // The same estimator passed explicitly gives the same result.
    let own = |i: ArrayViewD<'_, u8>| -> Result<usize, BoxError> { Ok(estimate_image_entropy(i)?) };
    let a = PicMetric::new()
        .compute(img.view(), saliency.view(), mask.view(), entropy_prediction)
        .unwrap();
    let b = PicMetric::new()
        .compute_with_entropy(img.view(), saliency.view(), mask.view(), entropy_prediction, own)
        .unwrap();
    assert_eq!(a, b);
    let e = PicMetric::new()
        .compute_with_entropy(img.view(), saliency.view(), mask.view(), entropy_prediction, |_| {
            Err::<usize, BoxError>("no encoder".into())
        })
        .unwrap_err();
    assert!(matches!(e, SaliencyError::ImageEncoding { .. }), "{e}");
    // The cause is the source, not part of the message.
    let source = std::error::Error::source(&e).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("no encoder"), "{e}");
    assert!(!e.to_string().contains("no encoder"), "{e}");
}

#[test]
fn u8_rounding_is_half_to_even_after_float32() {
    // Only the corners are known; the middle column lies on the edges
    // between them: 0.5 rounds to 0 (half to even), 1.5 to 2.
    let img = Array2::from_shape_vec((2, 3), vec![0u8, 9, 1, 1, 9, 2])
        .unwrap()
        .into_dyn();
    let mask = Array2::from_elem((2, 3), false);
    let blurred = create_blurred_image(img.view(), mask.view(), Interpolation::Linear).unwrap();
    let flat: Vec<u8> = blurred.iter().copied().collect();
    assert_eq!(flat, [0, 0, 1, 1, 2, 2]);
}

#[cfg(feature = "rayon")]
#[test]
fn result_does_not_depend_on_the_thread_count() {
    let img = image();
    let mask = generate_random_mask(64, 64, 0.01, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
    let saliency = random_saliency(64, 64, 6);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            PicMetric::new()
                .compute(img.view(), saliency.view(), mask.view(), entropy_prediction)
                .unwrap()
        })
    };
    let one = run(1);
    assert_eq!(one, run(3));
    assert_eq!(one, run(8));
}
