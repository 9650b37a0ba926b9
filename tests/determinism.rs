//! Seeded and parallel computations give bit-identical results from run to
//! run and for any number of threads.
//!
//! `same_bits_for_one_two_and_three_threads` runs this test executable twice
//! more, with `RAYON_NUM_THREADS=1` and `=2`, selecting the test
//! `child_writes_outputs` through an environment variable; each child
//! computes every output and writes its exact bytes (the f64 bit patterns,
//! labels or mask bits) to a directory. Meanwhile the parent computes every
//! output twice on one thread of a pool of three (the second run reuses the
//! per-thread scratch buffers of the first), then compares all four to the
//! byte.
//!
//! The inputs are large enough for the parallel paths to split their work:
//! 300 x 300 x 3 = 270 000 values exceed the 2^18 values from which the
//! element-wise loops go parallel, and every image has several 2^14-value
//! chunks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ndarray::{Array2, Array3, Array4, ArrayD, ArrayViewD};
use saliency::imageops::{BoundaryMode, ResizeOptions, felzenszwalb, gaussian_filter, resize};
use saliency::{
    BlurIg, GradCam, GuidedIg, IntegratedGradients, ModelOutputs, Occlusion, OutputKey, Saliency, SmoothGrad,
    SmoothGradParams, VanillaGradients, Xrai, XraiAlgorithm, XraiParameters, XraiSegments,
};

/// Set (to an output directory) in the children this test spawns.
const CHILD_ENV: &str = "SALIENCY_DETERMINISM_CHILD_DIR";

type Outputs = BTreeMap<String, Vec<u8>>;

/// A deterministic, non-trivial image of values in [0, 1).
fn image(h: usize, w: usize, c: usize) -> Array3<f64> {
    Array3::from_shape_fn((h, w, c), |(i, j, k)| {
        let v = ((i * 37 + j * 101 + k * 59) % 256) as f64 / 256.0;
        0.5 * v + 0.5 * (0.05 * i as f64 + 0.03 * j as f64 + k as f64).sin().abs()
    })
}

/// Gradient of f(x) = sum(sin(3 x)) / 3 + sum(x^2) / 4: element-wise, so a
/// batch of any size gives the same rows.
fn grads(batch: ArrayViewD<'_, f64>) -> ArrayD<f64> {
    batch.mapv(|v| (3.0 * v).cos() + 0.5 * v)
}

fn bits_f64<'a>(values: impl IntoIterator<Item = &'a f64>) -> Vec<u8> {
    values.into_iter().flat_map(|v| v.to_bits().to_le_bytes()).collect()
}

fn bits_usize<'a>(values: impl IntoIterator<Item = &'a usize>) -> Vec<u8> {
    values.into_iter().flat_map(|v| (*v as u64).to_le_bytes()).collect()
}

#[cfg(feature = "metrics")]
fn bits_bool<'a>(values: impl IntoIterator<Item = &'a bool>) -> Vec<u8> {
    values.into_iter().map(|&b| u8::from(b)).collect()
}

/// Every output this test checks, by name.
fn compute_outputs() -> Outputs {
    let mut out = Outputs::new();
    let mut put = |name: &str, bytes: Vec<u8>| {
        assert!(!bytes.is_empty(), "{name} is empty");
        out.insert(name.to_string(), bytes);
    };
    let big = image(300, 300, 3).into_dyn();
    let mut model = |b: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads(b)))
    };

    // Seeded: SmoothGrad as a type and through `get_smoothed_mask`.
    let params = SmoothGradParams::new().nsamples(2).seed(42);
    // 120 x 120 x 3: three blocks of noise, each from its own stream.
    let noise_input = image(120, 120, 3).into_dyn();
    let smooth = SmoothGrad::new(VanillaGradients::new(), params.clone().magnitude(false));
    put(
        "smoothgrad_vanilla",
        bits_f64(&smooth.get_mask(noise_input.view(), &mut model).unwrap()),
    );
    let ig_small = IntegratedGradients::new().steps(2).batch_size(2);
    let smoothed = ig_small.get_smoothed_mask(big.view(), &mut model, &params).unwrap();
    put("smoothed_ig", bits_f64(&smoothed));

    // Parallel methods.
    let ig = IntegratedGradients::new().steps(8).batch_size(4);
    put("ig", bits_f64(&ig.get_mask(big.view(), &mut model).unwrap()));
    let ig_baseline = IntegratedGradients::new()
        .steps(2)
        .batch_size(2)
        .baseline(big.mapv(|v| 1.0 - v));
    put(
        "ig_baseline",
        bits_f64(&ig_baseline.get_mask(big.view(), &mut model).unwrap()),
    );

    let blur_input = image(64, 64, 3).into_dyn();
    let blur = BlurIg::new().max_sigma(12.0).steps(6).batch_size(3);
    put(
        "blur_ig",
        bits_f64(&blur.get_mask(blur_input.view(), &mut model).unwrap()),
    );
    let blur_sqrt = BlurIg::new().max_sigma(12.0).steps(6).batch_size(6).sqrt(true);
    put(
        "blur_ig_sqrt",
        bits_f64(&blur_sqrt.get_mask(blur_input.view(), &mut model).unwrap()),
    );

    // Five chunks of 2^14 values: enough for a sum over chunks grouped by
    // thread to differ from one in chunk order.
    let gig_input = image(150, 150, 3).into_dyn();
    let gig = GuidedIg::new().steps(6).fraction(0.25).max_dist(0.1);
    put(
        "guided_ig",
        bits_f64(&gig.get_mask(gig_input.view(), &mut model).unwrap()),
    );

    let occ_input = image(24, 24, 3).into_dyn();
    let weights = image(24, 24, 3).mapv(|v| v - 0.4).into_dyn();
    let mut score = |b: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
        let scores: Vec<f64> = b
            .outer_iter()
            .map(|row| row.iter().zip(&weights).map(|(x, w)| (x * w).tanh()).sum())
            .collect();
        Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, ndarray::Array1::from(scores).into_dyn()))
    };
    let occlusion = Occlusion::new().size(5).stride(2).batch_size(7);
    put(
        "occlusion",
        bits_f64(&occlusion.get_mask(occ_input.view(), &mut score).unwrap()),
    );

    // Grad-CAM: a 10 x 10 x 16 layer resized to 300 x 300 x 3 (more than 2^20
    // multiplications, so the resize runs in parallel).
    let values = Array4::from_shape_fn((1, 10, 10, 16), |(_, i, j, c)| {
        ((i * 3 + j * 7 + c * 5) % 13) as f64 / 13.0
    });
    let layer_grads = Array4::from_shape_fn((1, 10, 10, 16), |(_, i, j, c)| {
        ((i * 11 + j * 5 + c * 3) % 17) as f64 / 17.0 - 0.3
    });
    let mut layer = |_: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
        Ok(ModelOutputs::new()
            .with(OutputKey::ConvolutionLayerValues, values.clone().into_dyn())
            .with(OutputKey::ConvolutionOutputGradients, layer_grads.clone().into_dyn()))
    };
    put(
        "grad_cam",
        bits_f64(&GradCam::new().get_mask(big.view(), &mut layer).unwrap()),
    );

    // XRAI: full with its own Felzenszwalb segments (computed on the pool
    // while integrated gradients runs), fast with given segments (16 x 16
    // blocks and 8-pixel bands, overlapping).
    let xrai_input = image(64, 64, 3).into_dyn();
    let mut segments: Vec<Array2<bool>> = (0..16)
        .map(|s| Array2::from_shape_fn((64, 64), |(i, j)| (i / 16) * 4 + j / 16 == s))
        .collect();
    segments.extend((0..8).map(|s| Array2::from_shape_fn((64, 64), |(i, j)| (i + j) / 16 == s)));
    for (name, algorithm) in [("full", XraiAlgorithm::Full), ("fast", XraiAlgorithm::Fast)] {
        let parameters = XraiParameters::new()
            .steps(4)
            .algorithm(algorithm)
            .return_xrai_segments(true);
        let mut xrai = Xrai::new().parameters(parameters).batch_size(2);
        if algorithm == XraiAlgorithm::Fast {
            xrai = xrai.segments(segments.clone());
        }
        let details = xrai
            .get_mask_with_details(xrai_input.view(), &mut model, &mut |_| {})
            .unwrap();
        put(&format!("xrai_{name}"), bits_f64(&details.attribution_mask));
        let Some(XraiSegments::Ranks(ranks)) = details.segments else {
            panic!("XRAI returned no ranks");
        };
        put(&format!("xrai_{name}_ranks"), bits_usize(&ranks));
    }

    // Image operations.
    // The filters split their work by rows and lanes at any size; 20 is
    // the radius from which the banded-matrix form is used.
    let medium = image(160, 160, 3).into_dyn();
    for (name, sigma) in [("gaussian_small", 2.0), ("gaussian_large", 20.0)] {
        let y = gaussian_filter(medium.view(), &[sigma, sigma, 0.0], BoundaryMode::Reflect, 4.0).unwrap();
        put(name, bits_f64(&y));
    }
    let y = gaussian_filter(medium.view(), &[3.0, 3.0, 0.0], BoundaryMode::Constant(0.0), 4.0).unwrap();
    put("gaussian_constant", bits_f64(&y));
    // Cubic up-sampling to 300 x 300 x 3 makes about 2^20 multiplications
    // per pass (the parallel threshold); down-sampling filters first.
    let small = image(100, 100, 3).into_dyn();
    let cubic = ResizeOptions::default().order(3);
    put(
        "resize_up_cubic",
        bits_f64(&resize(small.view(), &[300, 300], &cubic).unwrap()),
    );
    let down = resize(medium.view(), &[61, 47], &ResizeOptions::default()).unwrap();
    put("resize_down", bits_f64(&down));
    let labels = felzenszwalb(medium.view(), 100.0, 0.8, 50).unwrap();
    put("felzenszwalb", bits_usize(&labels));

    #[cfg(feature = "metrics")]
    {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
        let mask = saliency::metrics::generate_random_mask(300, 300, 0.3, &mut rng).unwrap();
        put("random_mask", bits_bool(&mask));
        let again = saliency::metrics::generate_random_mask(300, 300, 0.01, &mut rng).unwrap();
        put("random_mask_second_draw", bits_bool(&again));
    }
    out
}

fn write_outputs(dir: &Path, outputs: &Outputs) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in outputs {
        std::fs::write(dir.join(format!("{name}.bin")), bytes).unwrap();
    }
}

fn read_outputs(dir: &Path) -> Outputs {
    let mut out = Outputs::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        out.insert(name, std::fs::read(&path).unwrap());
    }
    out
}

/// Names of the outputs that differ (or exist in only one of the two).
fn differences(a: &Outputs, b: &Outputs) -> Vec<String> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| {
            let first_diff = match (a.get(n), b.get(n)) {
                (Some(x), Some(y)) => x
                    .iter()
                    .zip(y)
                    .position(|(p, q)| p != q)
                    .map_or(format!("lengths {} and {}", x.len(), y.len()), |i| format!("byte {i}")),
                _ => "missing on one side".to_string(),
            };
            format!("{n} ({first_diff})")
        })
        .collect()
}

/// Only does something when started by `same_bits_for_one_two_and_three_threads`.
#[test]
fn child_writes_outputs() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        write_outputs(Path::new(&dir), &compute_outputs());
    }
}

#[test]
fn same_bits_for_one_two_and_three_threads() {
    let exe = std::env::current_exe().unwrap();
    let root: PathBuf = [
        env!("CARGO_TARGET_TMPDIR"),
        &format!("determinism-{}", std::process::id()),
    ]
    .iter()
    .collect();
    // The children run while this process computes its own outputs.
    let children: Vec<_> = [1, 2]
        .into_iter()
        .map(|threads| {
            let dir = root.join(format!("threads{threads}"));
            let _ = std::fs::remove_dir_all(&dir);
            let child = Command::new(&exe)
                .args(["--exact", "child_writes_outputs", "--test-threads=1", "--nocapture"])
                .env("RAYON_NUM_THREADS", threads.to_string())
                .env(CHILD_ENV, &dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (threads, dir, child)
        })
        .collect();
    // Two runs on one thread of a pool of three, the second reusing the
    // first's per-thread scratch buffers.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let (three, again) = pool.install(|| (compute_outputs(), compute_outputs()));
    let mut runs = Vec::new();
    for (threads, dir, child) in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "child with {threads} thread(s) failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        runs.push((format!("{threads} thread(s)"), read_outputs(&dir)));
    }
    let _ = std::fs::remove_dir_all(&root);
    runs.push(("3 threads".to_string(), three));
    runs.push(("a second run on 3 threads".to_string(), again));

    let (_, one) = &runs[0];
    let expected = if cfg!(feature = "metrics") { 21 } else { 19 };
    assert_eq!(one.len(), expected, "outputs: {:?}", one.keys().collect::<Vec<_>>());
    for (label, other) in &runs[1..] {
        let diff = differences(one, other);
        assert!(diff.is_empty(), "1 thread and {label} differ: {diff:?}");
    }
}
