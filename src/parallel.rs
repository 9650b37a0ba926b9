//! Data-parallel loops that give identical results for any thread count:
//! every output element is computed by exactly one closure call, in a fixed
//! order within it, and chunk boundaries never depend on the thread count.
//!
//! Hot loops work on flat, contiguous slices: iterating `IxDyn` arrays
//! element by element costs an index computation per element.

/// Elements per task; large enough that scheduling costs nothing next to the
/// arithmetic.
pub(crate) const CHUNK: usize = 1 << 14;

/// Below this many elements waking the thread pool costs more than it saves.
pub(crate) const PARALLEL_MIN: usize = 1 << 18;

/// Calls `f(offset, chunk)` over consecutive `CHUNK`-sized pieces of `out`,
/// where `offset` is the index of the piece's first element; in parallel when
/// the `rayon` feature is on and `out` is long enough to pay for it.
pub(crate) fn for_each_chunk_mut<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync + Send) {
    for_each_chunk_mut_from(PARALLEL_MIN, out, f);
}

/// [`for_each_chunk_mut`] for work that is costly per element (such as
/// drawing random numbers), which pays off in parallel from `min_len`
/// elements on.
pub(crate) fn for_each_chunk_mut_from<T: Send>(
    min_len: usize,
    out: &mut [T],
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    #[cfg(feature = "rayon")]
    if out.len() >= min_len {
        use rayon::prelude::*;
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| f(i * CHUNK, chunk));
        return;
    }
    let _ = min_len;
    out.chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| f(i * CHUNK, chunk));
}

/// The elements of `a` as one contiguous slice in row-major order: borrowed
/// when `a` is already in standard layout, copied otherwise.
pub(crate) fn flat<'a, F: Clone, D: ndarray::Dimension>(
    a: &'a ndarray::ArrayView<'_, F, D>,
) -> std::borrow::Cow<'a, [F]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

thread_local! {
    /// The last scratch buffer this thread used (see [`with_scratch`]).
    static SCRATCH: std::cell::Cell<Option<Box<dyn std::any::Any>>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` on a buffer of `len` elements with unspecified contents, reusing
/// the calling thread's previous buffer when it is large enough; `None`
/// (instead of an abort) when `len` elements cannot be allocated.
///
/// Batches of path points are tens of megabytes; allocating them afresh for
/// every call (SmoothGrad calls a method dozens of times) made the kernel
/// zero new pages each time, which cost more than the arithmetic. The buffer
/// is taken out while `f` runs, so a nested call simply allocates its own.
pub(crate) fn with_scratch<T: Copy + Default + 'static, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> Option<R> {
    let mut buffer: Vec<T> = SCRATCH
        .with(|cell| cell.take())
        .and_then(|b| b.downcast::<Vec<T>>().ok())
        .map(|b| *b)
        .unwrap_or_default();
    if buffer.len() < len {
        buffer = Vec::new();
        buffer.try_reserve_exact(len).ok()?;
        buffer.resize(len, T::default());
    }
    let result = f(buffer.get_mut(..len)?);
    SCRATCH.with(|cell| cell.set(Some(Box::new(buffer))));
    Some(result)
}
