//! Times `PicMetric::compute` on the 224 x 224 x 3 PIC fixture image with
//! the 13 default thresholds, in the format of the reference's timing
//! scripts (`pic<TAB>median seconds`); tests/reference/pic_timing.py times the
//! reference on the same input.
//!
//! ```text
//! cargo run --release --features metrics --example pic_timing -- [--repeat N] [--threads N] [--fast]
//! ```
//!
//! Also prints the share of the time spent outside the WebP encoder: the
//! encoder calls are timed one by one (through `compute_with_entropy`), and
//! with `--threads 1` their sum over the total is the encoder's share of the
//! work. `--fast` times the opt-in fast entropy estimate instead.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayD, ArrayViewD};
use ndarray_npy::read_npy;
use saliency::BoxError;
use saliency::imageops::pairwise_sum;
use saliency::metrics::{PicMetric, estimate_image_entropy};

/// ((i * 7919 + j * 104729) * 2654435761) mod 2^32, as gen_pic.py.
fn hashed_saliency(h: usize, w: usize) -> Array2<f64> {
    Array2::from_shape_fn((h, w), |(i, j)| {
        (((i as u64 * 7919 + j as u64 * 104_729) * 2_654_435_761) % (1 << 32)) as f64
    })
}

/// About 1% of the pixels, as gen_pic.py.
fn hashed_random_mask(h: usize, w: usize) -> Array2<bool> {
    Array2::from_shape_fn((h, w), |(i, j)| {
        (((i as u64 * 92_821 + j as u64 * 68_917) * 2_246_822_519) % (1 << 32)).is_multiple_of(100)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut repeat = 5usize;
    let mut threads = 0usize;
    let mut fast = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => repeat = args.next().ok_or("--repeat needs a number")?.parse()?,
            "--threads" => threads = args.next().ok_or("--threads needs a number")?.parse()?,
            "--fast" => fast = true,
            _ => return Err(format!("unknown argument {arg:?}").into()),
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pic/pic224_image.npy");
    let image: ArrayD<u8> = read_npy(path)?;
    let saliency = hashed_saliency(224, 224);
    let random_mask = hashed_random_mask(224, 224);
    let original = image.mapv(f64::from);
    // 1 - mean|image - original| / 255 (near-free next to the metric).
    let predict = |batch: ArrayViewD<'_, u8>| -> Result<Vec<f64>, BoxError> {
        Ok(batch
            .outer_iter()
            .map(|img| {
                let diffs: Vec<f64> = img
                    .iter()
                    .zip(&original)
                    .map(|(&v, &o)| (f64::from(v) - o).abs())
                    .collect();
                1.0 - pairwise_sum(&diffs) / diffs.len() as f64 / 255.0
            })
            .collect())
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let metric = PicMetric::new().fast_entropy(fast);
    let mut times = Vec::with_capacity(repeat.max(1));
    let mut encoder_times = Vec::with_capacity(repeat.max(1));
    for _ in 0..repeat.max(1) {
        let encoder = Mutex::new(Duration::ZERO);
        let timed = |img: ArrayViewD<'_, u8>| -> Result<usize, BoxError> {
            let start = Instant::now();
            let size = if fast {
                saliency::metrics::estimate_image_entropy_fast(img)?
            } else {
                estimate_image_entropy(img)?
            };
            if let Ok(mut total) = encoder.lock() {
                *total += start.elapsed();
            }
            Ok(size)
        };
        let start = Instant::now();
        let result = pool.install(|| {
            metric.compute_with_entropy(image.view(), saliency.view(), random_mask.view(), predict, timed)
        })?;
        times.push(start.elapsed().as_secs_f64());
        encoder_times.push(encoder.into_inner().map_err(|_| "timer poisoned")?.as_secs_f64());
        std::hint::black_box(result);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let total = median(&mut times.clone());
    // Per run: the work outside the entropy estimate, as a share of the
    // work (encoder seconds summed over threads, total seconds times the
    // threads used).
    let used = pool.current_num_threads() as f64;
    let mut shares: Vec<f64> = times
        .iter()
        .zip(&encoder_times)
        .map(|(t, e)| 1.0 - e / (t * used))
        .collect();
    let share = median(&mut shares);
    println!("pic\t{total:.6}");
    println!(
        "entropy estimate ({}): {:.6} s summed over {used} thread(s); outside it: {:.1}% of the work",
        if fast { "fast" } else { "WebP" },
        median(&mut encoder_times.clone()),
        100.0 * share
    );
    Ok(())
}
