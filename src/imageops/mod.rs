//! Numeric kernels shared by the methods. Each reproduces one NumPy, SciPy or
//! scikit-image function, named after it, and is tested against it.

pub mod felzenszwalb;
pub mod gaussian;
pub mod interp;
pub mod morphology;
pub mod quantile;
pub mod resize;
pub mod sum;
pub mod trapz;

pub use felzenszwalb::{FelzenszwalbGraph, felzenszwalb};
pub use gaussian::{BoundaryMode, gaussian_filter};
pub use interp::interp;
pub use morphology::{binary_dilation, disk};
pub use quantile::{percentile, quantile, quantile_lower};
pub use resize::{ResizeMode, ResizeOptions, resize};
pub use sum::{mean, pairwise_sum, sum};
pub use trapz::trapz;

/// The values of `a` in row-major order as `f64`, through a flat slice when
/// `a` is in standard layout (iterating an `IxDyn` view element by element
/// costs an index computation per element).
pub(crate) fn to_f64_vec<F: crate::Float>(a: &ndarray::ArrayViewD<'_, F>) -> Vec<f64> {
    match a.as_slice() {
        Some(s) => s.iter().map(|v| v.as_f64()).collect(),
        None => a.iter().map(|v| v.as_f64()).collect(),
    }
}
