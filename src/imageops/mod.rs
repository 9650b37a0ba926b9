//! Numeric kernels shared by the methods. Each reproduces one NumPy, SciPy or
//! scikit-image function, named after it, and is tested against it.

pub mod interp;
pub mod quantile;
pub mod trapz;

pub use interp::interp;
pub use quantile::{percentile, quantile, quantile_lower};
pub use trapz::{pairwise_sum, trapz};
