//! The one float bound used throughout the crate.

use ndarray::NdFloat;
use num_traits::FromPrimitive;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// `f32` or `f64`: the element type of inputs, model outputs and masks.
///
/// Sealed: the methods' parity guarantees are stated for these two types only.
pub trait Float: NdFloat + FromPrimitive + Default + std::iter::Sum + sealed::Sealed {
    /// Converts an `f64` constant, rounding to nearest for `f32`.
    fn from_f64_lossy(v: f64) -> Self;
    /// Widens (or keeps) the value as an `f64`.
    fn as_f64(self) -> f64;
}

impl Float for f32 {
    #[inline]
    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    #[inline]
    fn from_f64_lossy(v: f64) -> Self {
        v
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self
    }
}
