//! The public numeric kernels and visualizations, on any input: a result of
//! the documented shape, or a typed error.

use ndarray::{Array2, Array3, ArrayD, IxDyn};
use proptest::prelude::*;
use saliency::imageops::{self, AntiAliasing, BoundaryMode, FelzenszwalbGraph, ResizeMode, ResizeOptions};
use saliency::visualize::{self, ColorMap};

use crate::arb;

fn boundary_mode() -> impl Strategy<Value = BoundaryMode> {
    prop_oneof![
        Just(BoundaryMode::Reflect),
        Just(BoundaryMode::Nearest),
        Just(BoundaryMode::Mirror),
        Just(BoundaryMode::Wrap),
        arb::value().prop_map(BoundaryMode::Constant),
    ]
}

fn resize_mode() -> impl Strategy<Value = ResizeMode> {
    prop_oneof![
        Just(ResizeMode::Constant),
        Just(ResizeMode::Edge),
        Just(ResizeMode::Symmetric),
        Just(ResizeMode::Reflect),
        Just(ResizeMode::Wrap),
    ]
}

fn resize_options() -> impl Strategy<Value = ResizeOptions> {
    (
        prop_oneof![5 => 0..=5_usize, 1 => Just(6_usize), 1 => Just(usize::MAX)],
        resize_mode(),
        arb::value(),
        any::<[bool; 2]>(),
        prop_oneof![
            Just(AntiAliasing::Auto),
            Just(AntiAliasing::On),
            Just(AntiAliasing::Off)
        ],
        prop::option::of(prop::collection::vec(arb::param(0.0, 3.0), 0..4)),
    )
        .prop_map(|(order, mode, cval, [clip, preserve], aa, aa_sigma)| {
            ResizeOptions::default()
                .order(order)
                .mode(mode)
                .cval(cval)
                .clip(clip)
                .preserve_range(preserve)
                .anti_aliasing(aa)
                .anti_aliasing_sigma(aa_sigma)
        })
}

fn bool_image(max: usize) -> impl Strategy<Value = Array2<bool>> {
    (0..=max, 0..=max).prop_flat_map(|(h, w)| {
        prop::collection::vec(any::<bool>(), h * w)
            .prop_map(move |v| Array2::from_shape_vec((h, w), v).expect("h * w values"))
    })
}

fn rgb(max: usize) -> impl Strategy<Value = Array3<u8>> {
    (0..=max, 0..=max, prop_oneof![4 => Just(3_usize), 1 => 0..=5_usize]).prop_flat_map(|(h, w, c)| {
        prop::collection::vec(any::<u8>(), h * w * c)
            .prop_map(move |v| Array3::from_shape_vec((h, w, c), v).expect("h * w * c values"))
    })
}

fn to2(a: &ArrayD<f64>) -> Option<Array2<f64>> {
    a.clone().into_dimensionality().ok()
}

proptest! {
    #![proptest_config(arb::cases(64))]

    #[test]
    fn gaussian_filter(
        x in arb::any_array(5),
        sigma in prop::collection::vec(arb::param(0.0, 4.0), 0..6),
        mode in boundary_mode(),
        truncate in arb::param(0.0, 5.0),
    ) {
        if let Ok(out) = imageops::gaussian_filter(x.view(), &sigma, mode, truncate) {
            prop_assert_eq!(out.shape(), x.shape());
            // Weights sum to one, so values (or a constant fill) near the
            // f64 limit may round past it, as they do in SciPy.
            let huge_fill = matches!(mode, BoundaryMode::Constant(k) if k.abs() > 1e300);
            prop_assert!(arb::all_finite(&out) || !arb::all_finite(&x) || huge_fill || x.iter().any(|v| v.abs() > 1e300));
        }
    }

    #[test]
    fn resize(
        x in arb::any_array(5),
        out_shape in prop::collection::vec(prop_oneof![8 => 0..=7_usize, 1 => Just(usize::MAX), 1 => Just(1_usize << 40)], 0..6),
        options in resize_options(),
    ) {
        if let Ok(out) = imageops::resize(x.view(), &out_shape, &options) {
            prop_assert_eq!(&out.shape()[..out_shape.len()], &out_shape[..]);
            prop_assert_eq!(out.ndim(), x.ndim());
        }
    }

    #[test]
    fn felzenszwalb(
        x in arb::image(8),
        scale in arb::param(0.0, 500.0),
        sigma in arb::param(0.0, 2.0),
        min_size in arb::count(10),
    ) {
        if let Ok(labels) = imageops::felzenszwalb(x.view(), scale, sigma, min_size) {
            prop_assert_eq!(labels.dim(), (x.shape()[0], x.shape()[1]));
        }
        if let Ok(x3) = x.view().into_dimensionality::<ndarray::Ix3>()
            && let Ok(graph) = FelzenszwalbGraph::new(x3)
            && let Ok(labels) = graph.segment(scale, min_size)
        {
            prop_assert_eq!(labels.dim(), (x.shape()[0], x.shape()[1]));
        }
    }

    #[test]
    fn segments_felzenszwalb(x in arb::any_array(3)) {
        // Any rank and size reaches the checks; only small images reach the
        // segmentation (it resizes to 224 x 224).
        if let Ok(segments) = saliency::get_segments_felzenszwalb(x.view()) {
            prop_assert!(segments.iter().all(|s| s.dim() == (x.shape()[0], x.shape()[1])));
        }
        let _ = saliency::get_segment_labels_felzenszwalb(x.view());
    }

    #[test]
    fn morphology(mask in bool_image(6), footprint in bool_image(5), radius in prop_oneof![0..=6_usize, Just(usize::MAX), Just(1_usize << 40)]) {
        if let Ok(out) = imageops::binary_dilation(mask.view(), footprint.view()) {
            prop_assert_eq!(out.dim(), mask.dim());
        }
        match imageops::disk(radius) {
            Ok(d) => prop_assert_eq!(d.dim(), (2 * radius + 1, 2 * radius + 1)),
            Err(e) => prop_assert!(radius > 6, "{}", e),
        }
    }

    #[test]
    fn quantiles_and_sums(values in prop::collection::vec(arb::value(), 0..20), q in arb::percentile(), x in arb::value()) {
        let mut v = values.clone();
        if let Ok(p) = imageops::percentile(&mut v, q) {
            prop_assert!(p.is_finite());
        }
        let mut v = values.clone();
        if let Ok(p) = imageops::quantile(&mut v, q / 100.0) {
            prop_assert!(p.is_finite());
        }
        let mut v = values.clone();
        if let Ok(p) = imageops::quantile_lower(&mut v, q / 100.0) {
            prop_assert!(p.is_finite());
        }
        let mut v32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let _ = imageops::percentile(&mut v32, q);
        let _ = imageops::sum(&values);
        let _ = imageops::mean(&values);
        let _ = imageops::pairwise_sum(&values);
        let half = values.len() / 2;
        let _ = imageops::trapz(&values[..half], &values[half..]);
        let _ = imageops::trapz(&values[..half], &values[half..2 * half]);
        let _ = imageops::interp(x, &values[..half], &values[half..]);
        let mut sorted: Vec<f64> = values[..half].to_vec();
        sorted.sort_by(f64::total_cmp);
        let _ = imageops::interp(x, &sorted, &values[half..2 * half]);
    }

    #[test]
    fn grayscale_and_diverging(mask in arb::any_array(5), pct in arb::percentile()) {
        for img in [visualize::grayscale(mask.view(), pct), visualize::diverging(mask.view(), pct)].into_iter().flatten() {
            prop_assert_eq!(img.dim(), (mask.shape()[0], mask.shape()[1]));
            prop_assert!(img.iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)), "{:?} from {:?}", img, mask);
        }
        let m32 = mask.mapv(|v| v as f32);
        if let Ok(img) = visualize::grayscale(m32.view(), pct) {
            prop_assert!(img.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{:?} from {:?}", img, m32);
        }
    }

    #[test]
    fn colours(map in arb::any_array(4), v in arb::value(), low in arb::value(), high in arb::value(), which in 0..3_usize) {
        let colormap = [ColorMap::Gray, ColorMap::Inferno, ColorMap::BlueWhiteRed][which];
        let _ = colormap.rgb(v);
        if let Some(map2) = to2(&map) {
            if let Ok(out) = visualize::apply_colormap(map2.view(), colormap) {
                prop_assert_eq!(out.shape(), &[map2.nrows(), map2.ncols(), 3]);
            }
            if let Ok(out) = visualize::top_percent_mask(map2.view(), v) {
                prop_assert_eq!(out.dim(), map2.dim());
            }
        }
        if let Ok(out) = visualize::to_rgb8(map.view(), low, high) {
            prop_assert_eq!(&out.shape()[..2], &map.shape()[..2]);
        }
    }

    #[test]
    fn pictures(a in rgb(5), b in rgb(5), mask in bool_image(5), alpha in arb::param(0.0, 1.0), fill in any::<[u8; 3]>()) {
        if let Ok(out) = visualize::overlay(a.view(), b.view(), alpha) {
            prop_assert_eq!(out.shape(), a.shape());
        }
        if let Ok(out) = visualize::masked_image(a.view(), mask.view(), fill) {
            prop_assert_eq!(out.shape(), a.shape());
        }
    }

    #[test]
    fn panel_and_text(
        cells in prop::collection::vec(("[ -~]{0,6}", rgb(4)), 0..4),
        columns in arb::count(4),
        text in "\\PC{0,8}",
        top in arb::count(20),
        left in arb::count(20),
        scale in prop_oneof![0..=3_usize, Just(usize::MAX), Just(1_usize << 40)],
        colour in any::<[u8; 3]>(),
    ) {
        let views: Vec<(&str, ndarray::ArrayView3<'_, u8>)> = cells.iter().map(|(l, a)| (l.as_str(), a.view())).collect();
        if let Ok(grid) = visualize::panel(&views, columns) {
            prop_assert_eq!(grid.shape()[2], 3);
        }
        let mut canvas = Array3::<u8>::zeros((6, 9, 3));
        visualize::draw_text(&mut canvas, &text, top, left, scale, colour);
    }
}

#[cfg(feature = "image")]
proptest! {
    #![proptest_config(arb::cases(16))]

    #[test]
    fn png_round_trip(picture in rgb(5), garbage in prop::collection::vec(any::<u8>(), 0..64)) {
        let dir = std::env::temp_dir().join(format!("saliency-properties-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = dir.join("picture.png");
        if visualize::save_png(picture.view(), &path).is_ok() {
            let back = visualize::read_image(&path);
            prop_assert!(back.is_ok(), "{:?}", back);
            prop_assert_eq!(back.ok(), Some(picture.clone()));
        }
        let junk = dir.join("junk.png");
        std::fs::write(&junk, &garbage).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(visualize::read_image(&junk).is_err());
        prop_assert!(visualize::read_image(dir.join("missing.png")).is_err());
        prop_assert!(visualize::save_png(picture.view(), dir.join("no/such/dir.png")).is_err());
    }
}

#[cfg(feature = "metrics")]
mod metrics {
    use super::*;
    use rand::SeedableRng;
    use saliency::metrics::{
        Aggregation, Interpolation, PicMetric, PicMetricResult, aggregate_individual_pic_results, compute_pic_metric,
        create_blurred_image, estimate_image_entropy, generate_random_mask,
    };

    fn u8_image(max: usize) -> impl Strategy<Value = ArrayD<u8>> {
        prop_oneof![
            5 => (1..=max, 1..=max, prop::option::of(1..=4_usize)).prop_map(|(h, w, c)| {
                let mut s = vec![h, w];
                s.extend(c);
                s
            }),
            1 => arb::shape(4),
        ]
        .prop_flat_map(|shape| {
            let n: usize = shape.iter().product();
            prop::collection::vec(any::<u8>(), n)
                .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).expect("n values"))
        })
    }

    /// What the prediction function does.
    #[derive(Clone, Copy, Debug)]
    enum Predict {
        /// A score falling with the image's mean distance from the first pixel.
        Good,
        Err,
        WrongCount,
        Nan,
        Constant(f64),
    }

    fn predict_kind() -> impl Strategy<Value = Predict> {
        prop_oneof![
            6 => Just(Predict::Good),
            1 => Just(Predict::Err),
            1 => Just(Predict::WrongCount),
            1 => Just(Predict::Nan),
            1 => arb::value().prop_map(Predict::Constant),
        ]
    }

    fn predict(kind: Predict) -> impl FnMut(ndarray::ArrayViewD<'_, u8>) -> Result<Vec<f64>, saliency::BoxError> {
        move |batch| {
            let b = batch.shape().first().copied().unwrap_or(0);
            let scores = (0..b).map(|i| {
                let row = batch.index_axis(ndarray::Axis(0), i);
                let n = row.len().max(1) as f64;
                let spread = row
                    .iter()
                    .map(|&v| f64::from(v))
                    .map(|v| (v - 128.0).abs())
                    .sum::<f64>()
                    / n;
                (spread / 128.0).min(1.0)
            });
            match kind {
                Predict::Good => Ok(scores.collect()),
                Predict::Err => Err("predict failed".into()),
                Predict::WrongCount => Ok(scores.chain([0.5]).collect()),
                Predict::Nan => Ok(scores.map(|_| f64::NAN).collect()),
                Predict::Constant(c) => Ok(vec![c; b]),
            }
        }
    }

    fn thresholds() -> impl Strategy<Value = Vec<f64>> {
        prop_oneof![
            3 => prop::collection::vec(0.0..=1.0_f64, 0..5).prop_map(|mut t| { t.sort_by(f64::total_cmp); t }),
            1 => prop::collection::vec(arb::param(0.0, 1.0), 0..4),
        ]
    }

    proptest! {
        #![proptest_config(arb::cases(48))]

        #[test]
        fn blurred_images_and_masks(
            image in u8_image(6),
            fimage in arb::image(5),
            mask in bool_image(6),
            h in arb::count(8),
            w in arb::count(8),
            fraction in arb::param(0.0, 1.0),
            seed in any::<u64>(),
            nearest in any::<bool>(),
        ) {
            let method = if nearest { Interpolation::Nearest } else { Interpolation::Linear };
            if let Ok(out) = create_blurred_image(image.view(), mask.view(), method) {
                prop_assert_eq!(out.shape(), image.shape());
            }
            for f in [fimage.clone(), fimage.mapv(|v| v as f32 as f64)] {
                if let Ok(out) = create_blurred_image(f.view(), mask.view(), method) {
                    prop_assert_eq!(out.shape(), f.shape());
                    prop_assert!(arb::all_finite(&out));
                }
            }
            let f32image = fimage.mapv(|v| v as f32);
            let _ = create_blurred_image(f32image.view(), mask.view(), method);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            if let Ok(m) = generate_random_mask(h, w, fraction, &mut rng) {
                prop_assert_eq!(m.dim(), (h, w));
            }
            if let Ok(size) = estimate_image_entropy(image.view()) {
                prop_assert!(size > 0);
            }
        }

        #[test]
        fn pic_metric(
            image in u8_image(6),
            saliency_map in arb::image(6),
            mask in bool_image(6),
            kind in predict_kind(),
            thresholds in thresholds(),
            min_pred in arb::param(0.0, 0.5),
            keep in any::<bool>(),
            points in arb::count(50),
            batch_size in arb::count(4),
            entropy_fails in any::<bool>(),
        ) {
            let map = if saliency_map.ndim() == 3 && saliency_map.shape()[2] > 0 {
                saliency_map.index_axis(ndarray::Axis(2), 0).to_owned()
            } else {
                saliency_map.clone()
            };
            let Some(map) = to2(&map) else { return Ok(()) };
            let metric = PicMetric::new()
                .thresholds(thresholds.clone())
                .min_pred_value(min_pred)
                .keep_monotonous(keep)
                .num_data_points(points)
                .batch_size(batch_size);
            let check = |r: saliency::Result<PicMetricResult>| -> Result<(), TestCaseError> {
                if let Ok(r) = r {
                    prop_assert_eq!(r.curve_x.len(), r.curve_y.len());
                    prop_assert!(r.auc.is_finite(), "{:?}", r.auc);
                }
                Ok(())
            };
            check(metric.compute(image.view(), map.view(), mask.view(), predict(kind)))?;
            check(metric.compute_with_entropy(image.view(), map.view(), mask.view(), predict(kind), |img| {
                if entropy_fails { Err("no estimate".into()) } else { Ok(img.iter().map(|&v| usize::from(v)).sum()) }
            }))?;
            check(compute_pic_metric(image.view(), map.view(), mask.view(), predict(kind), &thresholds))?;
        }

        #[test]
        fn aggregate(curves in prop::collection::vec((prop::collection::vec(arb::value(), 0..4), prop::collection::vec(arb::value(), 0..4)), 0..4), median in any::<bool>()) {
            let results: Vec<PicMetricResult> = curves
                .into_iter()
                .map(|(curve_x, curve_y)| PicMetricResult { curve_x, curve_y, ..PicMetricResult::default() })
                .collect();
            let method = if median { Aggregation::Median } else { Aggregation::Mean };
            if let Ok(r) = aggregate_individual_pic_results(&results, method) {
                prop_assert_eq!(r.curve_x.len(), r.curve_y.len());
            }
        }
    }
}
