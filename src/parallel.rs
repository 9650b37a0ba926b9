//! Data-parallel loops that give identical results for any thread count:
//! every output element is computed by exactly one closure call, in a fixed
//! order within it, and chunk boundaries never depend on the thread count.
//!
//! This is the only module that names the `rayon` feature: without it every
//! loop here runs on the calling thread, in the same order.
//!
//! Hot loops work on flat, contiguous slices: iterating `IxDyn` arrays
//! element by element costs an index computation per element.

#[cfg(feature = "rayon")]
use rayon::prelude::*;

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
    for_each_sized_chunk(out, CHUNK, out.len() >= min_len, |i, chunk| f(i * CHUNK, chunk));
}

/// Calls `f(index, chunk)` on consecutive `size`-element chunks of `data`
/// (the last may be shorter), in parallel when `parallel` is set (and the
/// `rayon` feature is on).
pub(crate) fn for_each_sized_chunk<T: Send>(
    data: &mut [T],
    size: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    #[cfg(feature = "rayon")]
    if parallel {
        data.par_chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
        return;
    }
    let _ = parallel;
    data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
}

/// [`for_each_sized_chunk`] with a scratch value per worker, made by
/// `init`; which chunks share a scratch value depends on the scheduling,
/// so `f`'s result must not depend on what the scratch held.
pub(crate) fn for_each_sized_chunk_init<T: Send, S>(
    data: &mut [T],
    size: usize,
    parallel: bool,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) {
    #[cfg(feature = "rayon")]
    if parallel {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each_init(&init, |state, (i, c)| f(state, i, c));
        return;
    }
    let _ = parallel;
    let mut state = init();
    data.chunks_mut(size).enumerate().for_each(|(i, c)| f(&mut state, i, c));
}

/// Whether `pred` holds for every `CHUNK`-element chunk of `values`;
/// checked in parallel (stopping early) from [`PARALLEL_MIN`] elements on.
pub(crate) fn all_chunks<T: Sync>(values: &[T], pred: impl Fn(&[T]) -> bool + Sync + Send) -> bool {
    #[cfg(feature = "rayon")]
    if values.len() >= PARALLEL_MIN {
        return values.par_chunks(CHUNK).all(pred);
    }
    values.chunks(CHUNK).all(pred)
}

/// `f(item)` for every item, in parallel with the `rayon` feature; the
/// results in item order. Items are typically zipped chunks of several
/// slices (`a.chunks_mut(n).zip(b.chunks_mut(n)).enumerate()`), so that one
/// call owns the matching pieces of each.
pub(crate) fn map_items<T: Send, R: Send>(
    items: impl IntoIterator<Item = T>,
    f: impl Fn(T) -> R + Sync + Send,
) -> Vec<R> {
    let items: Vec<T> = items.into_iter().collect();
    #[cfg(feature = "rayon")]
    {
        items.into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "rayon"))]
    {
        items.into_iter().map(f).collect()
    }
}

/// Calls `f(state, several, item)` for every item, the items dealt out to
/// one group per thread of the pool (item `k` to group `k % groups`, so that
/// items whose cost grows along the slice are shared evenly), each group
/// with its own state from `states` (kept there for the next call; made by
/// `init` where missing); `several` says whether there is more than one
/// group (then the groups are the parallelism and work inside one should
/// stay on its thread). The grouping depends on the thread count, so `f`'s
/// result must not depend on what the state held.
pub(crate) fn for_each_grouped<T: Send, S: Send>(
    items: &mut [T],
    states: &mut Vec<S>,
    init: impl Fn() -> S,
    f: impl Fn(&mut S, bool, &mut T) + Sync + Send,
) {
    if items.is_empty() {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        let groups = items.len().min(rayon::current_num_threads().max(1));
        let several = groups > 1;
        while states.len() < groups {
            states.push(init());
        }
        let mut dealt: Vec<Vec<&mut T>> = (0..groups).map(|_| Vec::new()).collect();
        for (k, item) in items.iter_mut().enumerate() {
            dealt[k % groups].push(item);
        }
        dealt
            .into_par_iter()
            .zip(states[..groups].par_iter_mut())
            .for_each(|(group, state)| group.into_iter().for_each(|item| f(state, several, item)));
    }
    #[cfg(not(feature = "rayon"))]
    {
        if states.is_empty() {
            states.push(init());
        }
        let state = &mut states[0];
        items.iter_mut().for_each(|item| f(state, false, item));
    }
}

/// Runs `a` and `b`, in parallel with the `rayon` feature.
// Only the PIC metric (feature `metrics`) joins two jobs.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn join<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    #[cfg(feature = "rayon")]
    {
        rayon::join(a, b)
    }
    #[cfg(not(feature = "rayon"))]
    {
        (a(), b())
    }
}

/// Runs `background` (on the thread pool, with `rayon`) while `foreground`
/// runs on this thread, and returns both results. Without `rayon` they run
/// one after the other. `background`'s result is always there; it is an
/// `Option` only because the pool's scope does not prove it.
pub(crate) fn alongside<A: Send, B>(
    background: impl FnOnce() -> A + Send,
    foreground: impl FnOnce() -> B,
) -> (Option<A>, B) {
    #[cfg(feature = "rayon")]
    {
        let mut done: Option<A> = None;
        let b = rayon::in_place_scope(|scope| {
            scope.spawn(|_| done = Some(background()));
            foreground()
        });
        (done, b)
    }
    #[cfg(not(feature = "rayon"))]
    {
        let a = background();
        (Some(a), foreground())
    }
}

/// Runs `f` on a pool of `threads` threads (with the `rayon` feature; on
/// this thread without), for tests of thread-count independence.
#[cfg(test)]
pub(crate) fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "rayon")]
    {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool")
            .install(f)
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = threads;
        f()
    }
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
    /// The scratch buffers this thread used last (see [`scratch`]).
    static SCRATCH: std::cell::Cell<Vec<Box<dyn std::any::Any>>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The most scratch buffers a thread keeps: a method's batch of path points
/// and `input - baseline`, with room for a nested call.
const SCRATCH_KEPT: usize = 3;

/// A buffer of `len` elements with unspecified contents, taken from the
/// calling thread's kept buffers when one is large enough, and given back to
/// them when dropped; `None` (instead of an abort) when `len` elements
/// cannot be allocated.
///
/// Batches of path points are tens of megabytes; allocating them afresh for
/// every call (SmoothGrad calls a method dozens of times, XRAI runs
/// Integrated Gradients from two baselines) made the kernel zero new pages
/// each time, which cost more than the arithmetic. A buffer is taken out
/// while in use, so buffers alive at the same time are distinct.
pub(crate) fn scratch<T: Copy + Default + 'static>(len: usize) -> Option<Scratch<T>> {
    let mut kept = SCRATCH.with(|cell| cell.take());
    // The smallest buffer of this type that is large enough, else the
    // largest one (replaced below, so its memory is freed first).
    let mut pick: Option<(usize, usize)> = None;
    for (i, b) in kept.iter().enumerate() {
        if let Some(v) = b.downcast_ref::<Vec<T>>() {
            let better = match pick {
                None => true,
                Some((_, best)) if best >= len => v.len() >= len && v.len() < best,
                Some((_, best)) => v.len() > best,
            };
            if better {
                pick = Some((i, v.len()));
            }
        }
    }
    let taken = pick.and_then(|(i, _)| kept.swap_remove(i).downcast::<Vec<T>>().ok());
    SCRATCH.with(|cell| cell.set(kept));
    let mut buffer = taken.map(|b| *b).unwrap_or_default();
    if buffer.len() < len {
        buffer = Vec::new();
        buffer.try_reserve_exact(len).ok()?;
        buffer.resize(len, T::default());
    }
    Some(Scratch { buffer, len })
}

/// A scratch buffer from [`scratch`]; dereferences to its `len` elements.
pub(crate) struct Scratch<T: 'static> {
    buffer: Vec<T>,
    len: usize,
}

impl<T: 'static> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.buffer.get(..self.len).unwrap_or_default()
    }
}

impl<T: 'static> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let len = self.len.min(self.buffer.len());
        &mut self.buffer[..len]
    }
}

impl<T: 'static> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        // During the thread's teardown there is nothing to give back to.
        let _ = SCRATCH.try_with(|cell| {
            let mut kept = cell.take();
            kept.push(Box::new(buffer));
            if kept.len() > SCRATCH_KEPT {
                kept.remove(0);
            }
            cell.set(kept);
        });
    }
}

/// Runs `f` on a [`scratch`] buffer of `len` elements; `None` when it
/// cannot be allocated.
pub(crate) fn with_scratch<T: Copy + Default + 'static, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> Option<R> {
    scratch(len).map(|mut buffer| f(&mut buffer))
}
