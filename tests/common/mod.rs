//! Helpers shared by the integration tests: fixture loading and error
//! measures.
#![allow(dead_code)]

use std::path::PathBuf;

use ndarray::{ArrayD, ArrayViewD};
use ndarray_npy::{ReadableElement, read_npy};

/// Reads `tests/fixtures/<topic>/<name>.npy`, written by
/// `tests/reference/generate.py` from the Python reference.
pub fn fixture<T: ReadableElement>(topic: &str, name: &str) -> ArrayD<T> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        topic,
        &format!("{name}.npy"),
    ]
    .iter()
    .collect();
    read_npy(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// The largest absolute difference, relative to the largest absolute
/// reference value: `max |a - e| / max |e|`. This is the "relative error" of
/// the parity tables. Shapes must agree.
pub fn rel_err(actual: ArrayViewD<'_, f64>, expected: ArrayViewD<'_, f64>) -> f64 {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    let scale = expected.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let diff = actual.iter().zip(expected.iter()).fold(0.0_f64, |m, (a, e)| {
        if a.is_nan() || e.is_nan() {
            f64::INFINITY
        } else {
            m.max((a - e).abs())
        }
    });
    if scale == 0.0 { diff } else { diff / scale }
}

/// [`rel_err`] for `f32` results against `f64` (or `f32`) references.
pub fn rel_err_f32(actual: ArrayViewD<'_, f32>, expected: ArrayViewD<'_, f64>) -> f64 {
    rel_err(actual.mapv(f64::from).view(), expected)
}

/// Asserts `rel_err <= tol` and prints the figure (the README's parity table
/// quotes these lines, `cargo test -- --nocapture` shows them).
pub fn assert_close(label: &str, actual: ArrayViewD<'_, f64>, expected: ArrayViewD<'_, f64>, tol: f64) {
    let err = rel_err(actual, expected);
    println!("parity {label}: relative error {err:.3e} (tolerance {tol:.0e})");
    assert!(err <= tol, "{label}: relative error {err:e} exceeds {tol:e}");
}
