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
pub use sum::{mean, sum};
pub use trapz::{pairwise_sum, trapz};
