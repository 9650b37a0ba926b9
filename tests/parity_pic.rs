//! Parity of the PIC metrics with `saliency.metrics.pic` (fixtures from
//! tests/reference/gen_pic.py; see its docstring for how the masks were
//! chosen and what "trusted" pixels are).
#![cfg(feature = "metrics")]

mod common;

use common::{assert_close, fixture};
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, Ix2};
use saliency::BoxError;
use saliency::imageops::pairwise_sum;
use saliency::metrics::{
    Aggregation, Interpolation, PicMetric, PicMetricResult, aggregate_individual_pic_results, create_blurred_image,
    estimate_image_entropy,
};

const TOPIC: &str = "pic";
const MASKS: [&str; 6] = ["sparse_a", "sparse_b", "sparse_c", "medium", "dense_random", "grid2"];

fn mask(name: &str) -> Array2<bool> {
    fixture::<bool>(TOPIC, name)
        .into_dimensionality::<Ix2>()
        .expect("a 2-D mask")
}

/// The 64 x 64 PIC case: image, saliency map and random mask.
fn pic64_inputs() -> (ArrayD<u8>, Array2<f64>, Array2<bool>) {
    let saliency = fixture::<f64>(TOPIC, "pic64_saliency")
        .into_dimensionality::<Ix2>()
        .expect("a 2-D saliency map");
    (fixture::<u8>(TOPIC, "pic64_image"), saliency, mask("pic64_random_mask"))
}

/// The values of `a` at the pixels where `keep` is true (all channels).
fn at_pixels<T: Copy>(a: &ArrayD<T>, keep: &Array2<bool>) -> Vec<T> {
    let channels = a.len() / keep.len();
    a.iter()
        .zip(keep.iter().flat_map(|&k| std::iter::repeat_n(k, channels)))
        .filter(|&(_, k)| k)
        .map(|(&v, _)| v)
        .collect()
}

fn view1(v: &[f64]) -> ArrayViewD<'_, f64> {
    ArrayViewD::from_shape(ndarray::IxDyn(&[v.len()]), v).expect("1-D view")
}

/// Differences between two u8 images: (values that differ, max |difference|).
fn u8_diff(a: &[u8], b: &[u8]) -> (usize, u8) {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .fold((0, 0), |(n, m), (x, y)| (n + 1, m.max(x.abs_diff(*y))))
}

#[test]
fn blurred_u8_matches_reference_on_trusted_pixels() {
    let image = fixture::<u8>(TOPIC, "blur_image_u8");
    for name in MASKS {
        let m = mask(&format!("mask_{name}"));
        let trusted = mask(&format!("trusted_{name}"));
        let expected = fixture::<u8>(TOPIC, &format!("blur_{name}_u8"));
        let actual = create_blurred_image(image.view(), m.view(), Interpolation::Linear).unwrap();
        assert_eq!(actual.shape(), expected.shape());
        let (n, max) = u8_diff(&at_pixels(&actual, &trusted), &at_pixels(&expected, &trusted));
        let untrusted = trusted.mapv(|t| !t);
        let (n_other, max_other) = u8_diff(&at_pixels(&actual, &untrusted), &at_pixels(&expected, &untrusted));
        let total = expected.len();
        println!(
            "parity blur u8 {name}: trusted pixels: {n} values differ (max {max}); other pixels: \
             {n_other} of {} values differ (max {max_other}); whole image: {:.2}% of values differ",
            at_pixels(&actual, &untrusted).len(),
            100.0 * (n + n_other) as f64 / total as f64
        );
        // Measured 0; a value at .5 may round either way after a last-bit
        // difference, so one level is allowed.
        assert!(max <= 1, "{name}: trusted u8 pixels differ by {max}");
    }
}

#[test]
fn blurred_float_matches_reference_on_trusted_pixels() {
    let image = fixture::<f32>(TOPIC, "blur_image_f64_as_f32").mapv(f64::from);
    let grey = fixture::<f32>(TOPIC, "blur_image_grey_f32");
    for name in MASKS {
        let m = mask(&format!("mask_{name}"));
        let trusted = mask(&format!("trusted_{name}"));
        if !matches!(name, "dense_random" | "grid2") {
            let expected = fixture::<f64>(TOPIC, &format!("blur_{name}_f64"));
            let actual = create_blurred_image(image.view(), m.view(), Interpolation::Linear).unwrap();
            let (a, e) = (at_pixels(&actual, &trusted), at_pixels(&expected, &trusted));
            // Measured 1.8e-16 to 4.9e-16.
            assert_close(
                &format!("blur f64 {name} (trusted pixels)"),
                view1(&a),
                view1(&e),
                5e-15,
            );
            let all = common::rel_err(actual.view(), expected.view());
            println!("parity blur f64 {name} (whole image): relative error {all:.3e}");
        }
        let expected = fixture::<f32>(TOPIC, &format!("blur_{name}_grey_f32"));
        let actual = create_blurred_image(grey.view(), m.view(), Interpolation::Linear).unwrap();
        let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
        let (a, e) = (
            widen(at_pixels(&actual, &trusted)),
            widen(at_pixels(&expected, &trusted)),
        );
        // Measured 0 to 5.1e-8 (float32 roundings).
        assert_close(
            &format!("blur grey f32 {name} (trusted pixels)"),
            view1(&a),
            view1(&e),
            1e-6,
        );
        let all = common::rel_err_f32(actual.view(), expected.mapv(f64::from).view());
        println!("parity blur grey f32 {name} (whole image): relative error {all:.3e}");
    }
}

#[test]
fn nearest_matches_reference_where_there_is_no_tie() {
    let image = fixture::<u8>(TOPIC, "blur_image_u8");
    for name in MASKS {
        let m = mask(&format!("mask_{name}"));
        let no_tie = mask(&format!("nearest_ties_{name}")).mapv(|t| !t);
        let expected = fixture::<u8>(TOPIC, &format!("nearest_{name}_u8"));
        let actual = create_blurred_image(image.view(), m.view(), Interpolation::Nearest).unwrap();
        let (n, max) = u8_diff(&at_pixels(&actual, &no_tie), &at_pixels(&expected, &no_tie));
        let (n_all, _) = u8_diff(actual.as_slice().unwrap(), expected.as_slice().unwrap());
        println!(
            "parity nearest u8 {name}: pixels without ties: {n} values differ; whole image: {n_all} of {} differ",
            expected.len()
        );
        assert_eq!(
            (n, max),
            (0, 0),
            "{name}: nearest differs where the nearest pixel is unique"
        );
    }
}

/// The fixtures' prediction function: 1 - mean|image - original| / 255.
fn predictor(original: &ArrayD<u8>) -> impl FnMut(ArrayViewD<'_, u8>) -> Result<Vec<f64>, BoxError> + use<> {
    let original = original.mapv(f64::from);
    move |batch| {
        Ok(batch
            .outer_iter()
            .map(|img| {
                let diffs: Vec<f64> = img
                    .iter()
                    .zip(original.iter())
                    .map(|(&v, &o)| (f64::from(v) - o).abs())
                    .collect();
                1.0 - pairwise_sum(&diffs) / diffs.len() as f64 / 255.0
            })
            .collect())
    }
}

fn thresholds() -> Vec<f64> {
    vec![
        0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75,
    ]
}

/// Tolerances for the area under the curve, at about 10x the measured
/// differences (the DESIGN target is 0.02). The WebP sizes are the
/// reference's to the byte (`webp_sizes_match_pillow`); what is left are the
/// blurred images where the Delaunay triangulation is ambiguous, the same on
/// every run. Measured: pic64 2.4e-4 (monotonous or not), with the
/// reference's sizes 2.6e-4.
const AUC_TOLERANCE_PIC64: f64 = 2e-3;
/// Measured 1.4e-3.
const AUC_TOLERANCE_GREY: f64 = 1e-2;
/// Measured 3.0e-3; 10x would pass the DESIGN target, which stays the bound.
const AUC_TOLERANCE_PIC224: f64 = 1e-2;
/// pic224 with the reference's sizes: measured 9.4e-5.
const AUC_TOLERANCE_PIC224_SIZES: f64 = 1e-3;

fn check_auc(label: &str, result: &PicMetricResult, name: &str, tol: f64) {
    let expected = fixture::<f64>(TOPIC, &format!("{name}_auc"))[[0]];
    let diff = (result.auc - expected).abs();
    println!(
        "parity {label}: AUC {:.6} vs reference {expected:.6}, difference {diff:.2e} (tolerance {tol:.0e})",
        result.auc
    );
    assert!(diff <= tol, "{label}: AUC differs by {diff}");
    assert_eq!(result.curve_x.len(), 1001);
}

/// Runs the PIC metric with the reference's sizes in place of this crate's: each of our images gets the size the reference measured for the
/// image at the same position (ours differ from the reference's only where
/// the triangulation is ambiguous).
fn with_reference_sizes(
    metric: &PicMetric,
    image: &ArrayD<u8>,
    saliency: &Array2<f64>,
    random: &Array2<bool>,
    name: &str,
) -> PicMetricResult {
    let ours = metric
        .compute(image.view(), saliency.view(), random.view(), predictor(image))
        .unwrap()
        .blurred_images;
    let sizes: Vec<usize> = fixture::<i64>(TOPIC, &format!("{name}_entropies"))
        .iter()
        .map(|&e| e as usize)
        .collect();
    let lookup = |img: ArrayViewD<'_, u8>| -> Result<usize, BoxError> {
        let k = ours.iter().position(|o| o.view() == img).ok_or("unknown image")?;
        Ok(sizes[k])
    };
    metric
        .compute_with_entropy(image.view(), saliency.view(), random.view(), predictor(image), lookup)
        .unwrap()
}

#[test]
fn same_curve_with_the_reference_webp_sizes() {
    let (image, saliency, random) = pic64_inputs();
    let metric = PicMetric::new().thresholds(thresholds());
    let result = with_reference_sizes(&metric, &image, &saliency, &random, "pic64");
    check_auc(
        "pic64 SIC with the reference sizes",
        &result,
        "pic64",
        AUC_TOLERANCE_PIC64,
    );
    let curve = fixture::<f64>(TOPIC, "pic64_curve_y");
    let max_dy = common::max_abs_diff(&result.curve_y, curve.iter());
    println!("parity pic64 curve_y with the reference sizes: max |difference| {max_dy:.3e}");

    let image = fixture::<u8>(TOPIC, "pic224_image");
    let saliency = hashed_saliency(224, 224);
    let random = hashed_random_mask(224, 224);
    let result = with_reference_sizes(&metric, &image, &saliency, &random, "pic224");
    check_auc(
        "pic224 SIC with the reference sizes",
        &result,
        "pic224",
        AUC_TOLERANCE_PIC224_SIZES,
    );
}

/// An alpha channel with fully transparent pixels, as gen_pic.py's `alpha_channel`.
fn alpha_channel(h: usize, w: usize) -> Array2<u8> {
    Array2::from_shape_fn((h, w), |(i, j)| {
        if (i + j) % 5 == 0 {
            0
        } else {
            ((i * 37 + j * 11) % 256) as u8
        }
    })
}

/// `image` with `alpha` as one more channel (an [H, W] image becomes [H, W, 2]).
fn with_alpha(image: &ArrayD<u8>, alpha: &Array2<u8>) -> ArrayD<u8> {
    let (h, w) = alpha.dim();
    let planes = image.len() / (h * w);
    let flat = image.to_shape((h, w, planes)).unwrap();
    ndarray::concatenate(Axis(2), &[flat.view(), alpha.view().insert_axis(Axis(2))])
        .unwrap()
        .into_dyn()
}

/// The encoder alone: lossless WebP sizes of the same images, byte for byte
/// (RGB, grey, grey + alpha and RGBA images, and the reference's own blurred
/// images of the 64 x 64 curve).
#[test]
fn webp_sizes_match_pillow() {
    let mut names = vec!["blur_image_u8".to_string()];
    names.extend(MASKS.iter().map(|m| format!("blur_{m}_u8")));
    names.extend(MASKS.iter().map(|m| format!("nearest_{m}_u8")));
    names.extend(["pic64_image", "pic64_grey_image", "pic224_image"].map(String::from));
    let mut images: Vec<(String, ArrayD<u8>)> = names.iter().map(|n| (n.clone(), fixture::<u8>(TOPIC, n))).collect();
    let grey = fixture::<u8>(TOPIC, "pic64_grey_image");
    let rgb = fixture::<u8>(TOPIC, "pic64_image");
    let alpha = alpha_channel(grey.shape()[0], grey.shape()[1]);
    images.push(("pic64_grey_image + alpha".into(), with_alpha(&grey, &alpha)));
    images.push(("pic64_image + alpha".into(), with_alpha(&rgb, &alpha)));
    let blurred = fixture::<u8>(TOPIC, "pic64_blurred");
    for (k, b) in blurred.outer_iter().enumerate() {
        images.push((format!("pic64_blurred[{k}]"), b.to_owned()));
    }
    let mut expected: Vec<i64> = fixture::<i64>(TOPIC, "webp_sizes").iter().copied().collect();
    expected.extend(fixture::<i64>(TOPIC, "pic64_entropies").iter().copied());
    assert_eq!(images.len(), expected.len());
    let mut max_diff = 0;
    for ((name, image), &theirs) in images.iter().zip(&expected) {
        let ours = estimate_image_entropy(image.view()).unwrap() as i64;
        println!(
            "parity WebP size {name} {:?}: {ours} vs reference {theirs} bytes",
            image.shape()
        );
        max_diff = max_diff.max((ours - theirs).abs());
    }
    println!(
        "parity WebP sizes: {} images, max |difference| {max_diff} bytes",
        images.len()
    );
    assert_eq!(max_diff, 0, "WebP sizes differ from the reference's");
}

/// Normalized entropies of the threshold images, from a list of sizes
/// (fully blurred first, original last).
fn normalized(entropies: &[f64]) -> Vec<f64> {
    let (first, last) = (entropies[0], entropies[entropies.len() - 1]);
    entropies
        .iter()
        .map(|e| ((e - first) / (last - first)).clamp(0.0, 1.0))
        .collect()
}

#[test]
fn pic64_matches_reference() {
    let (image, saliency, random) = pic64_inputs();
    let result = PicMetric::new()
        .thresholds(thresholds())
        .compute(image.view(), saliency.view(), random.view(), predictor(&image))
        .unwrap();

    let curve = fixture::<f64>(TOPIC, "pic64_curve_y");
    let max_dy = common::max_abs_diff(&result.curve_y, curve.iter());
    println!("parity pic64 curve_y: max |difference| {max_dy:.3e}");

    // Where the differences come from: the blurred images (triangulation)...
    let blurred = fixture::<u8>(TOPIC, "pic64_blurred");
    for (k, (ours, theirs)) in result.blurred_images.iter().zip(blurred.axis_iter(Axis(0))).enumerate() {
        let (n, max) = u8_diff(
            ours.as_slice().unwrap(),
            theirs.as_standard_layout().as_slice().unwrap(),
        );
        println!(
            "parity pic64 blurred image {k} (threshold {}): {n} of {} values differ, max {max}",
            result.thresholds[k],
            theirs.len()
        );
    }
    let preds = fixture::<f64>(TOPIC, "pic64_predictions");
    let pred_err = common::rel_err(view1(&result.predictions), preds.view());
    println!("parity pic64 predictions: relative error {pred_err:.3e}");
    // ...and the WebP encoder (sizes relative to the fully blurred and original image).
    let ours: Vec<f64> = result
        .blurred_images
        .iter()
        .map(|b| estimate_image_entropy(b.view()).unwrap() as f64)
        .collect();
    let theirs: Vec<f64> = fixture::<i64>(TOPIC, "pic64_entropies")
        .iter()
        .map(|&e| e as f64)
        .collect();
    let (n_ours, n_theirs) = (normalized(&ours), normalized(&theirs));
    let max_de = common::max_abs_diff(&n_ours, &n_theirs);
    println!(
        "parity pic64 WebP sizes: original {} vs reference {} bytes, fully blurred {} vs {}; \
         normalized entropy max |difference| {max_de:.3}",
        ours[ours.len() - 1],
        theirs[theirs.len() - 1],
        ours[0],
        theirs[0]
    );
    println!("pic64 normalized entropies ours   {n_ours:.3?}\npic64 normalized entropies theirs {n_theirs:.3?}");
    println!(
        "pic64 predictions ours {:.4?}\npic64 predictions theirs {:.4?}",
        result.predictions, preds
    );
    check_auc("pic64 SIC", &result, "pic64", AUC_TOLERANCE_PIC64);
}

#[test]
fn pic64_variants_match_reference() {
    let (image, saliency, random) = pic64_inputs();
    let result = PicMetric::new()
        .thresholds(thresholds())
        .keep_monotonous(false)
        .compute(image.view(), saliency.view(), random.view(), predictor(&image))
        .unwrap();
    check_auc(
        "pic64 SIC not monotonous",
        &result,
        "pic64_nonmono",
        AUC_TOLERANCE_PIC64,
    );

    let grey = fixture::<u8>(TOPIC, "pic64_grey_image");
    let result = PicMetric::new()
        .thresholds(vec![0.01, 0.02, 0.1, 0.5])
        .compute(grey.view(), saliency.view(), random.view(), predictor(&grey))
        .unwrap();
    check_auc("pic64 SIC greyscale", &result, "pic64_grey", AUC_TOLERANCE_GREY);
}

/// ((i * 7919 + j * 104729) * 2654435761) mod 2^32, as gen_pic.py.
fn hashed_saliency(h: usize, w: usize) -> Array2<f64> {
    Array2::from_shape_fn((h, w), |(i, j)| {
        (((i as u64 * 7919 + j as u64 * 104_729) * 2_654_435_761) % (1 << 32)) as f64
    })
}

/// ((i * 92821 + j * 68917) * 2246822519) mod 2^32 mod 100 == 0, as gen_pic.py.
fn hashed_random_mask(h: usize, w: usize) -> Array2<bool> {
    Array2::from_shape_fn((h, w), |(i, j)| {
        (((i as u64 * 92_821 + j as u64 * 68_917) * 2_246_822_519) % (1 << 32)).is_multiple_of(100)
    })
}

#[test]
fn pic224_matches_reference() {
    let image = fixture::<u8>(TOPIC, "pic224_image");
    let saliency = hashed_saliency(224, 224);
    let random = hashed_random_mask(224, 224);
    let result = PicMetric::new()
        .thresholds(thresholds())
        .compute(image.view(), saliency.view(), random.view(), predictor(&image))
        .unwrap();
    let preds = fixture::<f64>(TOPIC, "pic224_predictions");
    let pred_err = common::rel_err(view1(&result.predictions), preds.view());
    println!("parity pic224 predictions: relative error {pred_err:.3e}");
    let theirs: Vec<f64> = fixture::<i64>(TOPIC, "pic224_entropies")
        .iter()
        .map(|&e| e as f64)
        .collect();
    let ours: Vec<f64> = result
        .blurred_images
        .iter()
        .map(|b| estimate_image_entropy(b.view()).unwrap() as f64)
        .collect();
    let max_de = common::max_abs_diff(&normalized(&ours), &normalized(&theirs));
    println!(
        "parity pic224 WebP sizes: original {} vs reference {} bytes, fully blurred {} vs {}; \
         normalized entropy max |difference| {max_de:.3}",
        ours[ours.len() - 1],
        theirs[theirs.len() - 1],
        ours[0],
        theirs[0]
    );
    check_auc("pic224 SIC", &result, "pic224", AUC_TOLERANCE_PIC224);
}

#[test]
fn aggregation_is_exact() {
    for name in ["agg_small", "agg_random", "agg_random4"] {
        let x: Vec<f64> = fixture::<f64>(TOPIC, &format!("{name}_x")).iter().copied().collect();
        let ys = fixture::<f64>(TOPIC, &format!("{name}_ys"));
        let results: Vec<PicMetricResult> = ys
            .outer_iter()
            .map(|y| PicMetricResult {
                curve_x: x.clone(),
                curve_y: y.iter().copied().collect(),
                ..Default::default()
            })
            .collect();
        for (method, label) in [(Aggregation::Mean, "mean"), (Aggregation::Median, "median")] {
            let r = aggregate_individual_pic_results(&results, method).unwrap();
            let y = fixture::<f64>(TOPIC, &format!("{name}_{label}_y"));
            let auc = fixture::<f64>(TOPIC, &format!("{name}_{label}_auc"))[[0]];
            assert_close(
                &format!("aggregate {name} {label} curve"),
                view1(&r.curve_y),
                y.view(),
                0.0,
            );
            println!("parity aggregate {name} {label} AUC: {:.17} vs {auc:.17}", r.auc);
            assert_eq!(r.auc, auc, "{name} {label}: AUC not bit-identical");
            assert_eq!(r.curve_x, x);
        }
    }
}

/// The opt-in fast entropy estimate is not the reference's measure: the AUC
/// shift it causes on the fixtures, printed for the README and bounded.
#[test]
fn fast_entropy_auc_shift_on_the_fixtures() {
    let (image, saliency, random) = pic64_inputs();
    let grey = fixture::<u8>(TOPIC, "pic64_grey_image");
    let image224 = fixture::<u8>(TOPIC, "pic224_image");
    let (saliency224, random224) = (hashed_saliency(224, 224), hashed_random_mask(224, 224));
    type Case<'a> = (
        &'a str,
        &'a ArrayD<u8>,
        &'a Array2<f64>,
        &'a Array2<bool>,
        Vec<f64>,
        f64,
    );
    let cases: [Case<'_>; 3] = [
        // Measured shifts +0.0252 (pic64), +0.0054 (greyscale), -0.0075
        // (pic224); bounds at about twice.
        ("pic64", &image, &saliency, &random, thresholds(), 0.05),
        (
            "pic64_grey",
            &grey,
            &saliency,
            &random,
            vec![0.01, 0.02, 0.1, 0.5],
            0.015,
        ),
        ("pic224", &image224, &saliency224, &random224, thresholds(), 0.015),
    ];
    for (name, img, sal, rnd, th, bound) in cases {
        let fast = PicMetric::new()
            .thresholds(th)
            .fast_entropy(true)
            .compute(img.view(), sal.view(), rnd.view(), predictor(img))
            .unwrap();
        let expected = fixture::<f64>(TOPIC, &format!("{name}_auc"))[[0]];
        let shift = fast.auc - expected;
        println!(
            "PIC fast entropy {name}: AUC {:.4} vs reference {expected:.4}, shift {shift:+.4}",
            fast.auc
        );
        assert!(shift.abs() <= bound, "{name}: shift {shift}");
    }
}
