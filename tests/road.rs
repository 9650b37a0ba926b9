//! ROAD against pytorch-grad-cam 1.5.7 (tests/reference/road/generate.py):
//! the noiseless imputations and scores on the same inputs, and with the
//! noise on, the seeded averages against the reference's spread over 400
//! seeds of torch's generator.

mod common;

use common::fixture;
use ndarray::{Array1, Array2, Array3, ArrayD, ArrayViewD, Axis, Ix2, Ix3, Ix4};
use rand::SeedableRng;
use saliency::metrics::{Road, RoadOrder, noisy_linear_impute};
use saliency::{BoxError, ModelOutputs, ModelRequest, OutputKey, SaliencyError};

const TOPIC: &str = "road";

struct Case {
    image: Array3<f32>,
    saliency: Array2<f32>,
    w: ArrayD<f64>,
    v: ArrayD<f64>,
    /// [original score, MoRF mean, MoRF std, LeRF mean, LeRF std, runs].
    stats: Vec<f64>,
}

fn load(name: &str) -> Case {
    Case {
        image: fixture::<f32>(TOPIC, &format!("{name}_image"))
            .into_dimensionality::<Ix3>()
            .unwrap(),
        saliency: fixture::<f32>(TOPIC, &format!("{name}_saliency"))
            .into_dimensionality::<Ix2>()
            .unwrap(),
        w: fixture::<f64>(TOPIC, &format!("{name}_w")),
        v: fixture::<f64>(TOPIC, &format!("{name}_v")),
        stats: fixture::<f64>(TOPIC, &format!("{name}_stats"))
            .iter()
            .copied()
            .collect(),
    }
}

/// The generator's model, f(x) = sum(W x) + 0.5 sum(V x^2), in f64 on the
/// f32 images; the score is returned as f32, as the reference rounds it.
fn model(
    case: &Case,
) -> impl FnMut(ArrayViewD<'_, f32>, &ModelRequest<'_>) -> Result<ModelOutputs<f32>, BoxError> + '_ {
    move |batch, keys| {
        assert_eq!(keys, [OutputKey::OutputLayerValues]);
        let scores = batch.outer_iter().map(|img| {
            img.iter()
                .zip(case.w.iter().zip(case.v.iter()))
                .map(|(&x, (&w, &v))| {
                    let x = f64::from(x);
                    w * x + 0.5 * v * x * x
                })
                .sum::<f64>() as f32
        });
        Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array1::from_iter(scores)))
    }
}

/// The imputed images with the noise off: every order and percentile.
fn check_imputations(name: &str, tol: f32) {
    let case = load(name);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut worst = 0.0_f32;
    for (order, tag) in [
        (RoadOrder::MostRelevantFirst, "morf"),
        (RoadOrder::LeastRelevantFirst, "lerf"),
    ] {
        let expected = fixture::<f32>(TOPIC, &format!("{name}_{tag}_images"))
            .into_dimensionality::<Ix4>()
            .unwrap();
        for (k, &p) in saliency::metrics::ROAD_PERCENTILES.iter().enumerate() {
            let keep = Road::keep_mask(case.saliency.view(), order, p).unwrap();
            let imputed = noisy_linear_impute(&case.image, keep.view(), 0.0, &mut rng).unwrap();
            let diff = imputed
                .iter()
                .zip(expected.index_axis(Axis(0), k).iter())
                .fold(0.0_f32, |m, (a, e)| m.max((a - e).abs()));
            worst = worst.max(diff);
        }
    }
    println!("parity ROAD imputation {name}: max abs difference {worst:.3e} (tolerance {tol:.0e})");
    assert!(worst <= tol, "{name}: imputations differ by {worst:e}");
}

#[test]
fn imputation_matches_pytorch_grad_cam_fine_holes() {
    // Measured 3.0e-8 (a quarter of an f32 unit at values near 1): SuperLU
    // and CG agree far below f32's resolution. Images lie in about [0, 1].
    check_imputations("fine", 5e-7);
}

#[test]
fn imputation_matches_pytorch_grad_cam_large_holes() {
    // Measured 0 (every value identical in f32) on a 64 x 64 image with
    // holes up to 30 pixels across.
    check_imputations("smooth", 5e-7);
}

fn check_scores(name: &str, tol: f64) {
    let case = load(name);
    let result = Road::new()
        .noise(0.0)
        .compute(&case.image, case.saliency.view(), &mut model(&case))
        .unwrap();
    let morf = fixture::<f64>(TOPIC, &format!("{name}_morf_scores"));
    let lerf = fixture::<f64>(TOPIC, &format!("{name}_lerf_scores"));
    let diff = result
        .most_relevant_first
        .iter()
        .zip(morf.iter())
        .chain(result.least_relevant_first.iter().zip(lerf.iter()))
        .fold(0.0_f64, |m, (a, e)| m.max((a - e).abs()));
    let original_diff = (result.original_score - case.stats[0]).abs();
    println!(
        "parity ROAD scores {name}: max abs difference {diff:.3e}, original {original_diff:.3e} (tolerance {tol:.0e})"
    );
    assert!(diff <= tol, "{name}: scores differ by {diff:e}");
    assert!(original_diff <= tol);
}

#[test]
fn scores_match_pytorch_grad_cam_without_noise() {
    // Scores near 1, rounded to f32 by both sides: measured 3.0e-8 (fine)
    // and 0 (smooth); the original scores 1.8e-8 and 5.2e-9.
    check_scores("fine", 5e-7);
    check_scores("smooth", 5e-7);
}

/// With the noise on, the mean over seeds of the seeded averages lies within
/// 4 standard errors of the reference's mean over 400 seeds of torch's
/// generator (both sides' sampling error counted).
fn check_noisy(name: &str, runs: u64) {
    let case = load(name);
    let (mut morf, mut lerf) = (Vec::new(), Vec::new());
    for seed in 0..runs {
        let r = Road::new()
            .seed(seed)
            .compute(&case.image, case.saliency.view(), &mut model(&case))
            .unwrap();
        morf.push(r.morf_average());
        lerf.push(r.lerf_average());
    }
    let ref_runs = case.stats[5];
    for (label, ours, mean, std) in [
        ("MoRF", &morf, case.stats[1], case.stats[2]),
        ("LeRF", &lerf, case.stats[3], case.stats[4]),
    ] {
        let m = ours.iter().sum::<f64>() / runs as f64;
        let se = (std * std / runs as f64 + std * std / ref_runs).sqrt();
        let z = (m - mean) / se;
        println!("ROAD {name} {label} average with noise: {m:.5} vs {mean:.5} (z = {z:.2}, bound 4)");
        assert!(z.abs() < 4.0, "{name} {label}: {m} vs {mean}, z = {z}");
    }
}

#[test]
fn noisy_averages_match_the_reference_distribution() {
    // Fewer runs of the larger image keep the test short; the bound counts
    // the runs.
    check_noisy("fine", 40);
    check_noisy("smooth", 8);
}

#[test]
fn noise_has_the_set_deviation_on_removed_pixels_only() {
    let case = load("fine");
    let keep = Road::keep_mask(case.saliency.view(), RoadOrder::MostRelevantFirst, 50.0).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let quiet = noisy_linear_impute(&case.image, keep.view(), 0.0, &mut rng).unwrap();
    let noisy = noisy_linear_impute(&case.image, keep.view(), 0.01, &mut rng).unwrap();
    let mut residuals = Vec::new();
    for ((ix, &a), &b) in noisy.indexed_iter().zip(quiet.iter()) {
        if keep[[ix.0, ix.1]] {
            assert_eq!(a, case.image[ix], "a kept pixel changed");
        } else {
            residuals.push(f64::from(a) - f64::from(b));
        }
    }
    let n = residuals.len() as f64; // 240 pixels x 3 channels
    let mean = residuals.iter().sum::<f64>() / n;
    let var = residuals.iter().map(|r| r * r).sum::<f64>() / n;
    // Mean: within 4 standard errors (0.01 / sqrt(720)); variance: the
    // chi-square's standard deviation is 1e-4 * sqrt(2 / 720).
    assert!(mean.abs() < 4.0 * 0.01 / n.sqrt(), "mean {mean}");
    assert!((var - 1e-4).abs() < 4.0 * 1e-4 * (2.0 / n).sqrt(), "variance {var}");
}

#[test]
fn seeded_results_repeat() {
    let case = load("fine");
    let a = Road::new()
        .seed(4)
        .compute(&case.image, case.saliency.view(), &mut model(&case))
        .unwrap();
    let b = Road::new()
        .seed(4)
        .batch_size(5)
        .compute(&case.image, case.saliency.view(), &mut model(&case))
        .unwrap();
    let c = Road::new()
        .seed(5)
        .compute(&case.image, case.saliency.view(), &mut model(&case))
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn keep_mask_follows_the_reference_thresholds() {
    // Ten values 0..9: the 80th percentile is 7.2, so MoRF keeps 0..=7; the
    // 20th percentile of 1 - s (values -8..1) is -6.2, LeRF keeps s > 7.2.
    let s = Array2::from_shape_fn((2, 5), |(i, j)| (i * 5 + j) as f64);
    let morf = Road::keep_mask(s.view(), RoadOrder::MostRelevantFirst, 80.0).unwrap();
    assert_eq!(morf.iter().filter(|&&k| k).count(), 8);
    assert!(!morf[[1, 3]] && !morf[[1, 4]]);
    let lerf = Road::keep_mask(s.view(), RoadOrder::LeastRelevantFirst, 20.0).unwrap();
    assert_eq!(lerf.iter().filter(|&&k| k).count(), 2);
    assert!(lerf[[1, 3]] && lerf[[1, 4]]);
}

#[test]
fn errors_name_the_fix() {
    let case = load("fine");
    let err = Road::new()
        .compute(&case.image, Array2::<f32>::ones((24, 20)).view(), &mut model(&case))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SaliencyError::InvalidParameter {
                name: "saliency_map",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("constant"), "{err}");

    let err = Road::new()
        .compute(&case.image, Array2::<f32>::ones((20, 24)).view(), &mut model(&case))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SaliencyError::ShapeMismatch {
                what: "saliency_map",
                ..
            }
        ),
        "{err}"
    );

    for (road, name) in [
        (Road::new().percentiles(vec![]), "percentiles"),
        (Road::new().percentiles(vec![50.0, 101.0]), "percentiles"),
        (Road::new().noise(-1.0), "noise"),
        (Road::new().noise(f64::NAN), "noise"),
        (Road::new().batch_size(0), "batch_size"),
    ] {
        let err = road
            .compute(&case.image, case.saliency.view(), &mut model(&case))
            .unwrap_err();
        assert!(
            matches!(err, SaliencyError::InvalidParameter { name: n, .. } if n == name),
            "{err}"
        );
    }

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let none = Array2::from_elem((24, 20), false);
    let err = noisy_linear_impute(&case.image, none.view(), 0.0, &mut rng).unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "keep", .. }),
        "{err}"
    );
    let err = noisy_linear_impute(&case.image, none.view(), -0.5, &mut rng).unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "noise", .. }),
        "{err}"
    );

    let mut bad = case.image.clone();
    bad[[0, 0, 0]] = f32::NAN;
    let err = Road::new()
        .compute(&bad, case.saliency.view(), &mut model(&case))
        .unwrap_err();
    assert!(matches!(err, SaliencyError::NonFiniteInput { .. }), "{err}");
}
