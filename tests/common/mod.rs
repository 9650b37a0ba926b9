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
    let diff = max_abs_diff(actual.iter(), expected.iter());
    if scale == 0.0 { diff } else { diff / scale }
}

/// The largest `|a - e|` over paired values; infinite if either side has a
/// NaN (`f64::max` would silently skip it, and a NaN result must fail).
pub fn max_abs_diff<'a>(actual: impl IntoIterator<Item = &'a f64>, expected: impl IntoIterator<Item = &'a f64>) -> f64 {
    actual.into_iter().zip(expected).fold(0.0_f64, |m, (a, e)| {
        if a.is_nan() || e.is_nan() {
            f64::INFINITY
        } else {
            m.max((a - e).abs())
        }
    })
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

/// The small nonlinear model the fixture generators use
/// (tests/reference/compat.py `tanh_net`): f(x) = v . tanh(W x + b) on the
/// flattened input, with W, b, v saved as fixtures of the topic.
pub struct TanhNet {
    pub w: ndarray::Array2<f64>,
    pub b: ndarray::Array1<f64>,
    pub v: ndarray::Array1<f64>,
}

impl TanhNet {
    /// Reads `W`, `b` and `v` of `topic`.
    pub fn load(topic: &str) -> Self {
        let f = |n| fixture::<f64>(topic, n);
        TanhNet {
            w: f("W").into_dimensionality().expect("W is 2-D"),
            b: f("b").into_dimensionality().expect("b is 1-D"),
            v: f("v").into_dimensionality().expect("v is 1-D"),
        }
    }

    fn flat<'a>(&self, batch: &'a ArrayViewD<'_, f64>) -> ndarray::CowArray<'a, f64, ndarray::Ix2> {
        let n = batch.shape()[0];
        batch.to_shape((n, self.w.ncols())).expect("the batch matches W")
    }

    /// Gradients of a batch: W^T (v * (1 - tanh(W x + b)^2)), the batch's shape.
    pub fn grads(&self, batch: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        let pre = self.flat(&batch).dot(&self.w.t()) + &self.b;
        let outer = pre.mapv(|p| 1.0 - p.tanh().powi(2)) * &self.v;
        outer
            .dot(&self.w)
            .into_shape_with_order(batch.raw_dim())
            .expect("same element count")
    }

    /// Scores of a batch, shape [B, 1].
    pub fn scores(&self, batch: ArrayViewD<'_, f64>) -> ndarray::Array2<f64> {
        let hidden = (self.flat(&batch).dot(&self.w.t()) + &self.b).mapv(f64::tanh);
        hidden.dot(&self.v).insert_axis(ndarray::Axis(1))
    }
}
