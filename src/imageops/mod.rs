//! Numeric kernels shared by the methods. Each reproduces one NumPy, SciPy or
//! scikit-image function, named after it, and is tested against it.

pub mod gaussian;
pub mod quantile;
pub mod resize;

pub use gaussian::{BoundaryMode, gaussian_filter};
pub use quantile::{percentile, quantile_lower};
pub use resize::{ResizeMode, ResizeOptions, resize};
