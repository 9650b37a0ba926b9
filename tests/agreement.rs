//! Agreement between maps against SciPy (tests/reference/gen_judge.py):
//! `scipy.stats.spearmanr` on maps with many ties, and top-k % IoU.

mod common;

use common::fixture;
use ndarray::{Array2, Ix2, Ix3, array};
use saliency::SaliencyError;
use saliency::metrics::{agreement_matrix, spearman, top_percent_iou};

fn maps() -> Vec<Array2<f64>> {
    let all = fixture::<f64>("judge", "agree_maps")
        .into_dimensionality::<Ix3>()
        .unwrap();
    all.outer_iter().map(|m| m.to_owned()).collect()
}

#[test]
fn spearman_matches_scipy_with_ties() {
    let maps = maps();
    let expected = fixture::<f64>("judge", "agree_spearman")
        .into_dimensionality::<Ix2>()
        .unwrap();
    let mut worst = 0.0_f64;
    for (i, a) in maps.iter().enumerate() {
        for (j, b) in maps.iter().enumerate() {
            worst = worst.max((spearman(a.view(), b.view()).unwrap() - expected[[i, j]]).abs());
        }
    }
    // Measured: 2.2e-16.
    println!("spearman: max |difference| from scipy {worst:.1e}");
    assert!(worst <= 1e-13, "{worst}");
    let views: Vec<_> = maps.iter().map(|m| m.view()).collect();
    let m = agreement_matrix(&views, 10.0).unwrap();
    let diff = (&m.spearman - &expected).mapv(f64::abs).fold(0.0_f64, |a, &b| a.max(b));
    assert!(diff <= 1e-13, "matrix {diff}");
}

#[test]
fn top_iou_matches_numpy() {
    let maps = maps();
    let views: Vec<_> = maps.iter().map(|m| m.view()).collect();
    for k in [10.0, 30.0] {
        let expected = fixture::<f64>("judge", &format!("agree_iou_top{k}"))
            .into_dimensionality::<Ix2>()
            .unwrap();
        let m = agreement_matrix(&views, k).unwrap();
        for (i, a) in maps.iter().enumerate() {
            for (j, b) in maps.iter().enumerate() {
                let pair = top_percent_iou(a.view(), b.view(), k).unwrap();
                // Counts over counts: exact.
                assert_eq!(pair, expected[[i, j]], "top {k} [{i}, {j}]");
                assert_eq!(m.top_iou[[i, j]], expected[[i, j]]);
            }
        }
    }
}

#[test]
fn hand_worked_ties() {
    // a = [3, 1, 1, 0]: average ranks [4, 2.5, 2.5, 1]; b = [1, 2, 3, 4]:
    // ranks [1, 2, 3, 4]. Centred: [1.5, 0, 0, -1.5] and [-1.5, -0.5, 0.5, 1.5];
    // rho = -4.5 / sqrt(4.5 * 5) = -0.9486832980505138 (scipy agrees).
    let a = array![[3.0, 1.0], [1.0, 0.0]];
    let b = array![[1.0, 2.0], [3.0, 4.0]];
    assert!((spearman(a.view(), b.view()).unwrap() + 0.9486832980505138).abs() < 1e-15);
    // A flat top: [[2, 2], [2, 0]] at top 25 %: the percentile is 2, all three
    // 2s are in (not dropped, as `> percentile` would); against [0, 0, 0, 1]
    // (top: its 1) the IoU is 0 / 4.
    let flat = array![[2.0, 2.0], [2.0, 0.0]];
    let one = array![[0.0, 0.0], [0.0, 1.0]];
    assert_eq!(top_percent_iou(flat.view(), flat.view(), 25.0).unwrap(), 1.0);
    assert_eq!(top_percent_iou(flat.view(), one.view(), 25.0).unwrap(), 0.0);
}

#[test]
fn bad_input_is_an_error_that_names_it() {
    let a = array![[0.0, 1.0], [2.0, 3.0]];
    let constant = Array2::<f64>::from_elem((2, 2), 0.5);
    let err = spearman(a.view(), constant.view()).unwrap_err();
    assert!(err.to_string().contains("constant"), "{err}");
    let err = agreement_matrix(&[a.view(), constant.view()], 10.0).unwrap_err();
    assert!(err.to_string().contains("constant"), "{err}");
    let wide = Array2::<f64>::zeros((2, 3));
    let err = spearman(a.view(), wide.view()).unwrap_err();
    assert!(matches!(err, SaliencyError::ShapeMismatch { .. }), "{err}");
    let err = top_percent_iou(a.view(), wide.view(), 10.0).unwrap_err();
    assert!(matches!(err, SaliencyError::ShapeMismatch { .. }), "{err}");
    let mut nan = a.clone();
    nan[[0, 0]] = f64::NAN;
    assert!(matches!(
        spearman(a.view(), nan.view()),
        Err(SaliencyError::NonFiniteInput { .. })
    ));
    let empty = Array2::<f64>::zeros((0, 2));
    assert!(matches!(
        spearman(empty.view(), empty.view()),
        Err(SaliencyError::EmptyInput { .. })
    ));
    assert!(matches!(
        agreement_matrix::<f64>(&[], 10.0),
        Err(SaliencyError::EmptyInput { .. })
    ));
    for k in [0.0, 101.0, f64::NAN] {
        assert!(matches!(
            top_percent_iou(a.view(), a.view(), k),
            Err(SaliencyError::InvalidParameter {
                name: "top_percent",
                ..
            })
        ));
    }
}
