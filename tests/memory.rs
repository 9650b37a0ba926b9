//! Integrated Gradients, Blur IG and XRAI's integrated-gradients stage never
//! hold more than `batch_size` path points: their peak memory does not grow
//! with the number of steps, and stays below a bound computed from the image
//! size and the batch size.
//!
//! This is its own test binary because it installs a counting global
//! allocator; all measurements run inside one test, one at a time, since the
//! counter is global. Every measurement runs on a fresh thread so that no
//! per-thread scratch buffer is left over from an earlier one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array2, Array3, ArrayD, ArrayViewD};
use saliency::{BlurIg, IntegratedGradients, ModelOutputs, OutputKey, Saliency, Xrai, XraiParameters};

/// Wraps the system allocator, counting the bytes currently allocated and
/// the most ever allocated at once.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

fn shrink(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as holding both blocks for a moment (a moving realloc
            // does), which can only overstate the peak.
            grow(new_size);
            shrink(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` on a fresh thread, on a rayon pool of `threads` threads of which
/// the fresh thread is one, and returns its peak allocation above what was
/// allocated when it started, in bytes, with `f`'s own result.
///
/// A pool of its own means no per-thread scratch buffer of an earlier
/// measurement is reused; a pool that includes the calling thread is never
/// torn down (rayon leaks it), so no thread frees memory during a later
/// measurement.
fn peak_of<R: Send + 'static>(threads: usize, f: impl FnOnce(&dyn Fn() -> usize) -> R + Send + 'static) -> (usize, R) {
    std::thread::spawn(move || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .use_current_thread()
            .build()
            .unwrap();
        // Let the other workers start (and make their first allocations).
        pool.broadcast(|_| ());
        let base = CURRENT.load(Ordering::SeqCst);
        PEAK.store(base, Ordering::SeqCst);
        let peak_so_far = move || PEAK.load(Ordering::SeqCst).saturating_sub(base);
        let result = pool.install(|| f(&peak_so_far));
        (peak_so_far(), result)
    })
    .join()
    .unwrap()
}

/// Threads of the pools the measurements run on (XRAI's runs on one).
const THREADS: usize = 2;

const F64: usize = std::mem::size_of::<f64>();

/// Bookkeeping beside the arrays: shapes, output slots, the result's
/// header, rayon's job records, the thread's first allocations. Far below
/// one image of the sizes used here (13.8 KB and 55 KB).
const SMALL: usize = 4 * 1024;

fn image(h: usize, w: usize) -> Array3<f64> {
    Array3::from_shape_fn((h, w, 3), |(i, j, k)| ((i * 7 + j * 13 + k * 5) % 17) as f64 / 17.0)
}

/// The model: the gradient of sum(sin(3 x)) / 3, a fresh `B x H x W x C`
/// array per call (the only allocation the model makes).
fn model(batch: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, saliency::BoxError> {
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| (3.0 * v).cos())))
}

struct Row {
    method: &'static str,
    batch: usize,
    steps: usize,
    peak: usize,
    bound: usize,
}

fn check_rows(rows: &[Row], image_bytes: usize, per_step: usize) {
    for r in rows {
        println!(
            "memory {}: batch {} steps {}: peak {} bytes ({:.2} images; bound {} bytes)",
            r.method,
            r.batch,
            r.steps,
            r.peak,
            r.peak as f64 / image_bytes as f64,
            r.bound
        );
        assert!(
            r.peak <= r.bound,
            "{} batch {} steps {}: peak {} bytes exceeds the bound {} bytes",
            r.method,
            r.batch,
            r.steps,
            r.peak,
            r.bound
        );
        // The model's output alone is `batch` images: a peak below that
        // would mean the counter missed allocations.
        assert!(
            r.peak >= r.batch * image_bytes,
            "{}: peak {} is implausibly low",
            r.method,
            r.peak
        );
    }
    for few in rows.iter().filter(|r| r.steps == 10) {
        for many in rows.iter().filter(|r| r.batch == few.batch && r.steps > 10) {
            // Beyond the path points, the methods keep a scalar or two per
            // step (IG's point and weight, Blur IG's sigma): `per_step`
            // bytes a step, plus the counter's slack.
            let allowed = per_step * (many.steps - few.steps) + SMALL;
            let grown = many.peak.saturating_sub(few.peak);
            assert!(
                grown <= allowed,
                "{} batch {}: {} steps peak {} bytes, {} steps peak {} bytes (grew {grown}, allowed {allowed})",
                few.method,
                few.batch,
                few.steps,
                few.peak,
                many.steps,
                many.peak
            );
        }
    }
}

/// Integrated Gradients on an image of `L` values (8 bytes each) with a
/// batch of `B = min(batch_size, steps)` points holds at most: the zero
/// baseline, `input - baseline`, the running total (which becomes the
/// result) and one partial sum of the batch (`4 L`); the path-point buffer
/// (`B L`); the model's output for the batch (`B L`); and the integration
/// rule's `steps` points and weights (16 bytes a step). Bound:
/// `8 L (4 + 2 B) + 16 steps + SMALL`.
/// Materialising all steps would need `8 L steps` instead.
fn integrated_gradients_rows(x: &ArrayD<f64>) -> Vec<Row> {
    let len = x.len();
    let mut rows = Vec::new();
    for batch in [1, 4] {
        for steps in [10, 1000] {
            let x = x.clone();
            let (peak, ()) = peak_of(THREADS, move |_| {
                let ig = IntegratedGradients::new().steps(steps).batch_size(batch);
                ig.get_mask(x.view(), &mut model).unwrap();
            });
            let b = batch.min(steps);
            let bound = F64 * len * (4 + 2 * b) + 2 * F64 * steps + SMALL;
            rows.push(Row {
                method: "Integrated Gradients",
                batch,
                steps,
                peak,
                bound,
            });
        }
    }
    rows
}

/// Blur IG on `L` values with `B = min(batch_size, steps)` points per batch
/// and `T` threads holds at most: the input as f64 and the running total
/// (negated in place into the result) (`2 L`); the batch's path points and
/// their finite differences (`2 B L`); two filter buffers per group of
/// points, at most `min(B, T)` groups, kept for the whole call so that no
/// batch faults in fresh ones (`2 min(B, T) L`); the model's output (`B L`)
/// and one partial sum (`L`). With `max_sigma` 2.5 every kernel has a radius
/// below 12, so the banded-matrix form (two more buffers) is not used. Plus
/// the `steps + 1` sigmas.
/// Bound: `8 L (3 + 3 B + 2 min(B, T)) + 8 (steps + 1) + SMALL`.
fn blur_ig_rows(x: &ArrayD<f64>) -> Vec<Row> {
    let len = x.len();
    let threads = THREADS;
    let mut rows = Vec::new();
    for batch in [1, 4] {
        for steps in [10, 1000] {
            let x = x.clone();
            let (peak, ()) = peak_of(THREADS, move |_| {
                let blur = BlurIg::new().max_sigma(2.5).steps(steps).batch_size(batch);
                blur.get_mask(x.view(), &mut model).unwrap();
            });
            let b = batch.min(steps);
            let bound = F64 * len * (3 + 3 * b + 2 * b.min(threads)) + F64 * (steps + 1) + SMALL;
            rows.push(Row {
                method: "Blur IG",
                batch,
                steps,
                peak,
                bound,
            });
        }
    }
    rows
}

/// XRAI's integrated-gradients stage (the peak when the last path step has
/// been reported) on `L` values: the two default baselines and the first
/// baseline's finished attribution (`3 L`), and integrated gradients from
/// the second baseline, as above but without a zero baseline of its own
/// (`8 L (3 + 2 B) + 16 steps`). The given segments are turned into pixel
/// lists after this stage on a single thread. Bound:
/// `8 L (6 + 2 B) + 16 steps + SMALL`.
fn xrai_rows(x: &ArrayD<f64>) -> Vec<Row> {
    let (h, w) = (x.shape()[0], x.shape()[1]);
    let len = x.len();
    // Four quadrants and four horizontal bands.
    let mut segments: Vec<Array2<bool>> = (0..4)
        .map(|q| Array2::from_shape_fn((h, w), |(i, j)| (i < h / 2) == (q < 2) && (j < w / 2) == (q % 2 == 0)))
        .collect();
    segments.extend((0..4).map(|band| Array2::from_shape_fn((h, w), |(i, _)| i * 4 / h == band)));
    let mut rows = Vec::new();
    for batch in [1, 4] {
        for steps in [10, 1000] {
            let (x, segments) = (x.clone(), segments.clone());
            // One thread: the segments, which XRAI prepares on another
            // thread while integrated gradients runs, then come afterwards,
            // and the stage is measured alone.
            let (_, ig_peak) = peak_of(1, move |peak_so_far| {
                let xrai = Xrai::new()
                    .parameters(XraiParameters::new().steps(steps).min_pixel_diff(1))
                    .segments(segments)
                    .batch_size(batch);
                let mut at_end_of_ig = None;
                xrai.get_mask_with_progress(x.view(), &mut model, &mut |p| {
                    if p.stage == saliency::Stage::IntegratedGradientsSteps && p.done == p.total {
                        at_end_of_ig = Some(peak_so_far());
                    }
                })
                .unwrap();
                at_end_of_ig.expect("integrated gradients reported its last step")
            });
            let b = batch.min(steps);
            let bound = F64 * len * (6 + 2 * b) + 2 * F64 * steps + SMALL;
            rows.push(Row {
                method: "XRAI integrated gradients",
                batch,
                steps,
                peak: ig_peak,
                bound,
            });
        }
    }
    rows
}

/// Integrated Gradients on `N` images of `L` values at once, in calls of
/// `B` rows, each image's own requests of `Bt = min(B, steps)` points. At
/// most `k = ceil(B / Bt) + 1` images are under way at a time (one more is
/// started only while fewer than `B` rows wait). Each holds what one image
/// alone holds (`8 L (4 + 2 Bt)`, as above) and its queued request and the
/// outputs returned to it (`2 Bt L`); the packed call holds its batch and
/// the model's output (`2 B L`); the result holds the `N` masks (`N L`).
/// Bound: `8 L (N + k (4 + 4 Bt) + 2 B) + 16 k steps + SMALL` per image
/// under way. Materialising every image's steps would need `8 L N steps`.
fn multi_image_rows(x: &ArrayD<f64>) -> Vec<Row> {
    let images = 6;
    let len = x.len();
    let stacked = ndarray::stack(ndarray::Axis(0), &vec![x.view(); images]).unwrap();
    let mut rows = Vec::new();
    for batch in [1, 4] {
        for steps in [10, 1000] {
            let stacked = stacked.clone();
            let (peak, ()) = peak_of(THREADS, move |_| {
                let ig = IntegratedGradients::new().steps(steps).batch_size(batch);
                ig.get_masks(stacked.view(), &mut model).unwrap();
            });
            let bt = batch.min(steps);
            let k = batch.div_ceil(bt) + 1;
            let bound = F64 * len * (images + k * (4 + 4 * bt) + 2 * batch) + k * (2 * F64 * steps + SMALL);
            rows.push(Row {
                method: "Integrated Gradients, 6 images in one call",
                batch,
                steps,
                peak,
                bound,
            });
        }
    }
    rows
}

#[test]
fn peak_memory_does_not_grow_with_steps() {
    let ig_image = image(48, 48).into_dyn();
    let blur_image = image(24, 24).into_dyn();
    check_rows(&integrated_gradients_rows(&ig_image), F64 * ig_image.len(), 2 * F64);
    check_rows(&blur_ig_rows(&blur_image), F64 * blur_image.len(), F64);
    check_rows(&xrai_rows(&ig_image), F64 * ig_image.len(), 2 * F64);
    // Each image under way keeps its own points and weights: at most k = 3.
    check_rows(&multi_image_rows(&ig_image), F64 * ig_image.len(), 3 * 2 * F64);
}
