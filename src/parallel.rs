//! Data-parallel loops that give identical results for any thread count:
//! every output element is computed by exactly one closure call, in a fixed
//! order within it, and chunk boundaries never depend on the thread count.
//!
//! Hot loops work on flat, contiguous slices: iterating `IxDyn` arrays
//! element by element costs an index computation per element.

/// Elements per task; large enough that scheduling costs nothing next to the
/// arithmetic.
pub(crate) const CHUNK: usize = 1 << 14;

/// Calls `f(offset, chunk)` over consecutive `CHUNK`-sized pieces of `out`,
/// where `offset` is the index of the piece's first element; in parallel when
/// the `rayon` feature is on.
pub(crate) fn for_each_chunk_mut<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync + Send) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| f(i * CHUNK, chunk));
    }
    #[cfg(not(feature = "rayon"))]
    {
        out.chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| f(i * CHUNK, chunk));
    }
}

/// Runs an `ndarray::Zip`'s `for_each`, in parallel when the `rayon` feature
/// is on. Prefer [`for_each_chunk_mut`] on contiguous data in hot loops.
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
