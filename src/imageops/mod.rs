//! Numeric kernels shared by the methods. Each reproduces one NumPy, SciPy or
//! scikit-image function, named after it, and is tested against it.

pub mod bilinear;
pub mod eigen;
pub mod felzenszwalb;
mod fft_line;
pub mod gaussian;
pub(crate) mod gaussian_series;
pub mod interp;
pub mod morphology;
pub mod quadrature;
pub mod quantile;
pub mod resize;
pub mod sum;
pub mod trapz;

pub use felzenszwalb::{FelzenszwalbGraph, felzenszwalb};
pub use gaussian::{BoundaryMode, gaussian_filter};
pub use interp::interp;
pub use morphology::{binary_dilation, disk};
pub use quadrature::gauss_legendre_unit;
pub use quantile::{percentile, quantile, quantile_lower};
pub use resize::{AntiAliasing, ResizeMode, ResizeOptions, resize};
pub use sum::{mean, pairwise_sum, sum};
pub use trapz::trapz;

use crate::float::Float;

/// The values of `a` in row-major order as `f64`, through a flat slice when
/// `a` is in standard layout (iterating an `IxDyn` view element by element
/// costs an index computation per element).
pub(crate) fn to_f64_vec<F: Float>(a: &ndarray::ArrayViewD<'_, F>) -> Vec<f64> {
    match a.as_slice() {
        Some(s) => s.iter().map(|v| v.as_f64()).collect(),
        None => a.iter().map(|v| v.as_f64()).collect(),
    }
}

/// The number of elements before and after `axis` in an array of `shape`
/// (the products of the dimensions on either side).
pub(crate) fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (shape[..axis].iter().product(), shape[axis + 1..].iter().product())
}

/// The smallest and the largest of `values`, `(inf, -inf)` when there are
/// none; compared in iteration order, which decides only the sign of a zero
/// extreme.
pub(crate) fn min_max<F: Float>(values: impl IntoIterator<Item = F>) -> (F, F) {
    values
        .into_iter()
        .fold((F::infinity(), F::neg_infinity()), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// [`min_max`] of an array's values in memory order, through a flat slice
/// when they are contiguous.
pub(crate) fn min_max_of<F: Float, D: ndarray::Dimension>(a: &ndarray::ArrayView<'_, F, D>) -> (F, F) {
    match a.as_slice_memory_order() {
        Some(flat) => min_max(flat.iter().copied()),
        None => min_max(a.iter().copied()),
    }
}
