//! Data-parallel loops that give identical results for any thread count:
//! every output element is computed by exactly one closure call, in a fixed
//! order within it.

/// Runs an `ndarray::Zip`'s `for_each`, in parallel when the `rayon` feature
/// is on.
macro_rules! par_for_each {
    ($zip:expr, $f:expr) => {{
        #[cfg(feature = "rayon")]
        {
            $zip.par_for_each($f)
        }
        #[cfg(not(feature = "rayon"))]
        {
            $zip.for_each($f)
        }
    }};
}

pub(crate) use par_for_each;
