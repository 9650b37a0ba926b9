//! The public numeric kernels, visualisations and metrics, on any input: the
//! result (of the documented shape, finite where the inputs are in range)
//! whenever the arguments are in order, and otherwise the error that names
//! what is wrong (see `expect::outcome`).

use ndarray::{Array2, Array3, ArrayD, IxDyn};
use proptest::prelude::*;
use saliency::imageops::{self, AntiAliasing, BoundaryMode, FelzenszwalbGraph, ResizeMode, ResizeOptions};
use saliency::visualize::{self, ColorMap};

use crate::arb;
use crate::expect::{Want, image_rank, moderate, outcome};

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
        prop_oneof![
            2 => Just(None),
            1 => prop::collection::vec(0.0..3.0_f64, 1).prop_map(Some),
            1 => prop::collection::vec(arb::param(0.0, 3.0), 0..4).prop_map(Some),
        ],
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

/// Any array, though mostly one with no empty axis, so that calls get past
/// the argument checks as often as they stop at them.
fn input(max_dim: usize) -> impl Strategy<Value = ArrayD<f64>> {
    prop_oneof![2 => arb::image(max_dim), 1 => arb::any_array(max_dim)]
}

/// A float parameter, mostly in range (`arb::param` adds the rest).
fn param(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![2 => lo..=hi, 1 => arb::param(lo, hi)]
}

/// A count, mostly in range (`arb::count` adds zero and absurd ones).
fn count(small: usize) -> impl Strategy<Value = usize> {
    prop_oneof![2 => 1..=small, 1 => arb::count(small)]
}

/// Height and width of an array of this shape (zeros when it has none).
fn hw(shape: &[usize]) -> (usize, usize) {
    (shape.first().copied().unwrap_or(0), shape.get(1).copied().unwrap_or(0))
}

/// A boolean image of `h x w` most of the time, of any size otherwise.
fn bool_image_like((h, w): (usize, usize), max: usize) -> impl Strategy<Value = Array2<bool>> {
    prop_oneof![
        3 => prop::collection::vec(prop::bool::weighted(0.2), h * w)
            .prop_map(move |v| Array2::from_shape_vec((h, w), v).expect("h * w values")),
        1 => bool_image(max),
    ]
}

fn all_finite<F: saliency::Float>(values: &[F]) -> bool {
    values.iter().all(|v| v.is_finite())
}

/// The largest kernel radius the Gaussian filters accept.
const MAX_RADIUS: f64 = (1_u64 << 24) as f64;

/// A sigma the filters accept with this `truncate`.
fn sigma_ok(sigma: f64, truncate: f64) -> bool {
    sigma.is_finite() && sigma >= 0.0 && truncate * sigma + 0.5 <= MAX_RADIUS
}

/// An array of `F` must hold finite values (`what`) and not be empty.
fn filled<F: saliency::Float>(what: &'static str, a: &ArrayD<F>) -> Vec<Want> {
    let mut wants = Vec::new();
    if a.is_empty() {
        wants.push(Want::Empty(what));
    }
    if !arb::all_finite(a) {
        wants.push(Want::NonFiniteInput(what));
    }
    wants
}

/// `percentile`, `quantile` and `quantile_lower`: a fraction of `scale` and
/// finite values, at least one.
fn order_statistic<F: saliency::Float>(
    name: &'static str,
    values: &[F],
    q: f64,
    scale: f64,
    result: saliency::Result<F>,
) -> Result<(), TestCaseError> {
    let mut invalid = Vec::new();
    if !(q.is_finite() && (0.0..=scale).contains(&q)) {
        invalid.push(Want::Param(name));
    }
    if values.is_empty() {
        invalid.push(Want::Empty("values"));
    }
    if !all_finite(values) {
        invalid.push(Want::NonFiniteInput("values"));
    }
    if let Some(p) = outcome(result, &invalid, &[])? {
        let lo = values.iter().copied().fold(F::infinity(), F::min);
        let hi = values.iter().copied().fold(F::neg_infinity(), F::max);
        prop_assert!(p.is_finite() && lo <= p && p <= hi, "{:?} of {:?}", p, values);
    }
    Ok(())
}

/// `grayscale` and `diverging`: a percentile and a finite image-shaped mask.
fn visualisation_invalid<F: saliency::Float>(mask: &ArrayD<F>, pct: f64) -> Vec<Want> {
    let mut invalid = image_rank("mask", mask.shape());
    if !(pct.is_finite() && (0.0..=100.0).contains(&pct)) {
        invalid.push(Want::Param("percentile"));
    }
    invalid.extend(filled("mask", mask));
    invalid
}

proptest! {
    #![proptest_config(arb::cases(64))]

    #[test]
    fn gaussian_filter(
        (x, sigma) in input(5).prop_flat_map(|x| {
            let n = x.ndim();
            let sigma = prop_oneof![
                3 => prop::collection::vec(0.0..4.0_f64, n),
                1 => prop::collection::vec(arb::param(0.0, 4.0), 0..6),
            ];
            (Just(x), sigma)
        }),
        mode in boundary_mode(),
        truncate in param(0.0, 5.0),
    ) {
        let mut invalid = filled("input", &x);
        if sigma.len() != x.ndim() || sigma.iter().any(|&s| !(s.is_finite() && s >= 0.0)) {
            invalid.push(Want::Param("sigma"));
        }
        if !(truncate.is_finite() && truncate >= 0.0) {
            invalid.push(Want::Param("truncate"));
        } else if sigma.iter().any(|&s| !sigma_ok(s, truncate)) {
            invalid.push(Want::Param("sigma"));
        }
        let fill = match mode {
            BoundaryMode::Constant(k) => k,
            _ => 0.0,
        };
        if !fill.is_finite() {
            invalid.push(Want::Param("cval"));
        }
        let result = imageops::gaussian_filter(x.view(), &sigma, mode, truncate);
        if let Some(out) = outcome(result, &invalid, &[])? {
            prop_assert_eq!(out.shape(), x.shape());
            // Weights sum to one, so values (or a constant fill) near the
            // f64 limit may round past it, as they do in SciPy.
            let huge = fill.abs() > 1e300 || x.iter().any(|v| v.abs() > 1e300);
            prop_assert!(arb::all_finite(&out) || huge, "{:?}", out);
        }
    }

    #[test]
    fn resize(
        (x, out_shape) in input(5).prop_flat_map(|x| {
            // The image's rank, or one less (the channels kept).
            let n = x.ndim().max(1) - usize::from(x.ndim() == 3);
            let out = prop_oneof![
                3 => prop::collection::vec(1..=7_usize, n),
                1 => prop::collection::vec(prop_oneof![8 => 0..=7_usize, 1 => Just(usize::MAX), 1 => Just(1_usize << 40)], 0..6),
            ];
            (Just(x), out)
        }),
        options in resize_options(),
    ) {
        let mut invalid = filled("image", &x);
        if x.ndim() == 0 {
            invalid.push(Want::Rank("image"));
        }
        // The channels are kept when the shape leaves them out.
        let mut full = out_shape.clone();
        if full.len() + 1 == x.ndim() {
            full.push(x.shape()[x.ndim() - 1]);
        }
        if full.len() != x.ndim() || full.contains(&0) {
            invalid.push(Want::Param("output_shape"));
        }
        // Far too many values to allocate.
        if full.iter().any(|&n| n >= 1 << 40) {
            invalid.push(Want::Param("output_shape"));
        }
        if options.get_order() > 5 {
            invalid.push(Want::Param("order"));
        }
        if !options.get_cval().is_finite() {
            invalid.push(Want::Param("cval"));
        }
        let smaller = full.iter().zip(x.shape()).any(|(o, i)| o < i);
        let anti_aliasing = match options.get_anti_aliasing() {
            AntiAliasing::Auto => smaller,
            AntiAliasing::On => true,
            AntiAliasing::Off => false,
            other => panic!("an anti-aliasing setting the properties do not know: {other:?}"),
        };
        if full.len() == x.ndim() && anti_aliasing {
            // One sigma, or one per axis, each accepted by the filter.
            let sigma_valid = match options.get_anti_aliasing_sigma() {
                Some(s) => (s.len() == 1 || s.len() == x.ndim()) && s.iter().all(|&s| sigma_ok(s, 4.0)),
                None => true,
            };
            if !sigma_valid {
                invalid.push(Want::Param("anti_aliasing_sigma"));
            }
        }
        if let Some(out) = outcome(imageops::resize(x.view(), &out_shape, &options), &invalid, &[])? {
            prop_assert_eq!(out.shape(), &full[..]);
            if moderate(&x) && options.get_cval().abs() <= 4.0 {
                prop_assert!(arb::all_finite(&out), "{:?}", out);
            }
        }
    }

    #[test]
    fn felzenszwalb(
        x in arb::image(8),
        scale in param(0.0, 500.0),
        sigma in param(0.0, 2.0),
        min_size in arb::count(10),
    ) {
        let scale_invalid = if scale.is_finite() && scale >= 0.0 { vec![] } else { vec![Want::Param("scale")] };
        let mut invalid = image_rank("image", x.shape());
        invalid.extend(filled("image", &x));
        if !sigma_ok(sigma, 4.0) {
            invalid.push(Want::Param("sigma"));
        }
        invalid.extend(scale_invalid.iter().cloned());
        let hw = hw(x.shape());
        // Values near f64::MAX: the smoothing overflows.
        let overflow = if moderate(&x) { vec![] } else { vec![Want::NonFiniteResult] };
        if let Some(labels) = outcome(imageops::felzenszwalb(x.view(), scale, sigma, min_size), &invalid, &overflow)? {
            prop_assert_eq!(labels.dim(), hw);
            prop_assert!(labels.iter().all(|&l| l < hw.0 * hw.1));
        }
        if let Ok(x3) = x.view().into_dimensionality::<ndarray::Ix3>() {
            let graph = outcome(FelzenszwalbGraph::new(x3), &filled("image", &x), &[])?;
            if let Some(graph) = graph
                && let Some(labels) = outcome(graph.segment(scale, min_size), &scale_invalid, &[])?
            {
                prop_assert_eq!(labels.dim(), hw);
            }
        }
    }

    #[test]
    fn segments_felzenszwalb(x in arb::any_array(3)) {
        // Any rank and size reaches the checks; every image is resized to
        // 224 x 224 for the segmentation.
        let mut invalid = image_rank("image", x.shape());
        invalid.extend(filled("image", &x));
        let hw = hw(x.shape());
        if let Some(segments) = outcome(saliency::get_segments_felzenszwalb(x.view()), &invalid, &[])? {
            prop_assert!(!segments.is_empty());
            prop_assert!(segments.iter().all(|s| s.dim() == hw));
        }
        if let Some(labels) = outcome(saliency::get_segment_labels_felzenszwalb(x.view()), &invalid, &[])? {
            // One label image per scale.
            prop_assert_eq!(labels.len(), 6);
            prop_assert!(labels.iter().all(|l| l.dim() == hw));
        }
    }

    #[test]
    fn morphology(mask in bool_image(6), footprint in bool_image(5), radius in prop_oneof![0..=6_usize, Just(usize::MAX), Just(1_usize << 40)]) {
        let (fh, fw) = footprint.dim();
        let invalid = if fh % 2 == 0 || fw % 2 == 0 { vec![Want::Param("footprint")] } else { vec![] };
        if let Some(out) = outcome(imageops::binary_dilation(mask.view(), footprint.view()), &invalid, &[])? {
            prop_assert_eq!(out.dim(), mask.dim());
            // A footprint with its centre set keeps every set pixel.
            if footprint[[fh / 2, fw / 2]] {
                prop_assert!(mask.iter().zip(&out).all(|(&m, &o)| o || !m));
            }
        }
        let invalid = if radius > 6 { vec![Want::Param("radius")] } else { vec![] };
        if let Some(d) = outcome(imageops::disk(radius), &invalid, &[])? {
            prop_assert_eq!(d.dim(), (2 * radius + 1, 2 * radius + 1));
        }
    }

    #[test]
    fn quantiles_and_sums(values in prop::collection::vec(arb::value(), 0..20), q in arb::percentile(), x in arb::value()) {
        let mut v = values.clone();
        order_statistic("percentile", &values, q, 100.0, imageops::percentile(&mut v, q))?;
        let mut v = values.clone();
        order_statistic("quantile", &values, q / 100.0, 1.0, imageops::quantile(&mut v, q / 100.0))?;
        let mut v = values.clone();
        order_statistic("quantile", &values, q / 100.0, 1.0, imageops::quantile_lower(&mut v, q / 100.0))?;
        let v32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let mut v = v32.clone();
        order_statistic("percentile", &v32, q, 100.0, imageops::percentile(&mut v, q))?;
        let _ = imageops::sum(&values);
        prop_assert_eq!(imageops::mean(&values).is_none(), values.is_empty());
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
    fn grayscale_and_diverging(mask in input(5), pct in prop_oneof![2 => 0.0..=100.0_f64, 1 => arb::percentile()]) {
        let invalid = visualisation_invalid(&mask, pct);
        // Values near the float limit: the channel sum overflows.
        let overflow = if moderate(&mask) { vec![] } else { vec![Want::NonFiniteResult] };
        let hw = hw(mask.shape());
        for (img, lo) in [(visualize::grayscale(mask.view(), pct), 0.0), (visualize::diverging(mask.view(), pct), -1.0)] {
            if let Some(img) = outcome(img, &invalid, &overflow)? {
                prop_assert_eq!(img.dim(), hw);
                prop_assert!(img.iter().all(|v| v.is_finite() && (lo..=1.0).contains(v)), "{:?} from {:?}", img, mask);
            }
        }
        let m32 = mask.mapv(|v| v as f32);
        let invalid = visualisation_invalid(&m32, pct);
        if let Some(img) = outcome(visualize::grayscale(m32.view(), pct), &invalid, &overflow)? {
            prop_assert!(img.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{:?} from {:?}", img, m32);
        }
    }

    #[test]
    fn colours(
        map in prop_oneof![
            1 => (0..=4_usize, 0..=4_usize).prop_flat_map(|(h, w)| arb::array_of(vec![h, w])),
            1 => input(4),
        ],
        v in prop_oneof![2 => 0.0..=100.0_f64, 1 => arb::value()],
        (low, high) in prop_oneof![2 => Just((0.0, 1.0)), 1 => Just((-1.0, 1.0)), 1 => (arb::value(), arb::value())],
        which in 0..3_usize,
    ) {
        let colormap = [ColorMap::Gray, ColorMap::Inferno, ColorMap::BlueWhiteRed][which];
        let _ = colormap.rgb(v);
        let finite = if arb::all_finite(&map) { vec![] } else { vec![Want::NonFiniteInput("map")] };
        if let Some(map2) = to2(&map) {
            if let Some(out) = outcome(visualize::apply_colormap(map2.view(), colormap), &finite, &[])? {
                prop_assert_eq!(out.shape(), &[map2.nrows(), map2.ncols(), 3]);
            }
            let mut invalid = filled("map", &map);
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                invalid.push(Want::Param("top_percent"));
            }
            if let Some(out) = outcome(visualize::top_percent_mask(map2.view(), v), &invalid, &[])? {
                prop_assert_eq!(out.dim(), map2.dim());
            }
        }
        let mut invalid = image_rank("image", map.shape());
        if !arb::all_finite(&map) {
            invalid.push(Want::NonFiniteInput("image"));
        }
        if !(low.is_finite() && high.is_finite() && high > low) {
            invalid.push(Want::Param("high"));
        }
        if let [_, _, c] = map.shape()
            && *c != 1
            && *c != 3
        {
            invalid.push(Want::Shape("image channels"));
        }
        if let Some(out) = outcome(visualize::to_rgb8(map.view(), low, high), &invalid, &[])? {
            prop_assert_eq!(out.shape(), &[map.shape()[0], map.shape()[1], 3]);
        }
    }

    #[test]
    fn pictures(
        (a, b, mask) in rgb(5).prop_flat_map(|a| {
            let same = prop::collection::vec(any::<u8>(), a.len())
                .prop_map({ let dim = a.dim(); move |v| Array3::from_shape_vec(dim, v).expect("a's size") });
            let b = prop_oneof![3 => same, 1 => rgb(5)];
            let mask = bool_image_like((a.shape()[0], a.shape()[1]), 5);
            (Just(a), b, mask)
        }),
        alpha in param(0.0, 1.0),
        fill in any::<[u8; 3]>(),
    ) {
        let mut invalid = Vec::new();
        if !(0.0..=1.0).contains(&alpha) {
            invalid.push(Want::Param("alpha"));
        }
        if a.shape() != b.shape() {
            invalid.push(Want::Shape("heatmap"));
        }
        if let Some(out) = outcome(visualize::overlay(a.view(), b.view(), alpha), &invalid, &[])? {
            prop_assert_eq!(out.shape(), a.shape());
        }
        // The mask must cover the picture, which must be RGB; either error
        // names the mask.
        let invalid = if a.shape()[..2] != *mask.shape() || a.shape()[2] != 3 {
            vec![Want::Shape("mask")]
        } else {
            vec![]
        };
        if let Some(out) = outcome(visualize::masked_image(a.view(), mask.view(), fill), &invalid, &[])? {
            prop_assert_eq!(out.shape(), a.shape());
            for ((i, j, k), &v) in out.indexed_iter() {
                prop_assert_eq!(v, if mask[[i, j]] { a[[i, j, k]] } else { fill[k] });
            }
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
        let mut invalid = Vec::new();
        if columns == 0 {
            invalid.push(Want::Param("columns"));
        }
        if cells.is_empty() {
            invalid.push(Want::Empty("panel cells"));
        }
        if cells.iter().any(|(_, a)| a.shape()[2] != 3) {
            invalid.push(Want::Shape("panel picture"));
        }
        if let Some(grid) = outcome(visualize::panel(&views, columns), &invalid, &[])? {
            prop_assert_eq!(grid.shape()[2], 3);
            // Every picture fits, with its margins.
            let (h, w) = cells.iter().fold((0, 0), |(h, w), (_, a)| (h.max(a.shape()[0]), w.max(a.shape()[1])));
            prop_assert!(grid.shape()[0] >= h + 16 && grid.shape()[1] >= w + 16, "{:?}", grid.shape());
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
        let (h, w, c) = picture.dim();
        let invalid = if c != 3 {
            vec![Want::Shape("picture")]
        } else if h == 0 || w == 0 {
            // PNG has no empty pictures; the encoder's refusal.
            vec![Want::Io]
        } else {
            vec![]
        };
        if outcome(visualize::save_png(picture.view(), &path), &invalid, &[])?.is_some() {
            let back = outcome(visualize::read_image(&path), &[], &[])?;
            prop_assert_eq!(back, Some(picture.clone()));
        }
        let junk = dir.join("junk.png");
        std::fs::write(&junk, &garbage).map_err(|e| TestCaseError::fail(e.to_string()))?;
        outcome(visualize::read_image(&junk), &[Want::Io], &[])?;
        outcome(visualize::read_image(dir.join("missing.png")), &[Want::Io], &[])?;
        let nowhere = if c == 3 { Want::Io } else { Want::Shape("picture") };
        outcome(visualize::save_png(picture.view(), dir.join("no/such/dir.png")), &[nowhere], &[])?;
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
    use saliency::{MAX_STEPS, OutputKey};
    use std::cell::Cell;

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
            10 => Just(Predict::Good),
            1 => Just(Predict::Err),
            1 => Just(Predict::WrongCount),
            1 => Just(Predict::Nan),
            1 => arb::value().prop_map(Predict::Constant),
        ]
    }

    /// The prediction function of `kind`, counting its calls in `calls`.
    fn predict(
        kind: Predict,
        calls: &Cell<usize>,
    ) -> impl FnMut(ndarray::ArrayViewD<'_, u8>) -> Result<Vec<f64>, saliency::BoxError> + '_ {
        move |batch| {
            calls.set(calls.get() + 1);
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
                Predict::Err => Err("the model failed".into()),
                Predict::WrongCount => Ok(scores.chain([0.5]).collect()),
                Predict::Nan => Ok(scores.map(|_| f64::NAN).collect()),
                Predict::Constant(c) => Ok(vec![c; b]),
            }
        }
    }

    fn thresholds() -> impl Strategy<Value = Vec<f64>> {
        prop_oneof![
            5 => prop::collection::vec(0.0..=1.0_f64, 0..5).prop_map(|mut t| { t.sort_by(f64::total_cmp); t }),
            1 => prop::collection::vec(arb::param(0.0, 1.0), 0..4),
        ]
    }

    /// `[H, W]` or `[H, W, C]`, not channels-first, not empty.
    fn image_invalid<T>(image: &ArrayD<T>) -> Vec<Want> {
        let mut invalid = image_rank("image", image.shape());
        if image.is_empty() {
            invalid.push(Want::Empty("image"));
        }
        invalid
    }

    /// Whether a blurred image of `h x w` with these pixels kept has pixels
    /// to interpolate but too few kept ones (the corners are always kept;
    /// they span no triangle in an image 1 pixel high or wide).
    fn too_thin(mask: &Array2<bool>) -> bool {
        let (h, w) = mask.dim();
        let corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)];
        (h < 2 || w < 2) && mask.indexed_iter().any(|(p, &keep)| !keep && !corners.contains(&p))
    }

    /// `create_blurred_image`: the kept pixels (and the corners) unchanged,
    /// every value finite.
    fn check_blurred<P: saliency::metrics::Pixel + PartialEq + std::fmt::Debug + saliency::Float>(
        image: &ArrayD<P>,
        mask: &Array2<bool>,
        method: Interpolation,
    ) -> Result<(), TestCaseError> {
        let mut invalid = image_invalid(image);
        let (h, w) = hw(image.shape());
        if invalid.is_empty() && mask.dim() != (h, w) {
            invalid.push(Want::Shape("pixel_mask"));
        }
        if !arb::all_finite(image) {
            invalid.push(Want::NonFiniteInput("image"));
        }
        if invalid.is_empty() && too_thin(mask) {
            invalid.push(Want::Param("pixel_mask"));
        }
        if let Some(out) = outcome(create_blurred_image(image.view(), mask.view(), method), &invalid, &[])? {
            prop_assert_eq!(out.shape(), image.shape());
            prop_assert!(arb::all_finite(&out), "{:?}", out);
            for ((i, j), &keep) in mask.indexed_iter() {
                if keep {
                    let at = |a: &ArrayD<P>| {
                        a.index_axis(ndarray::Axis(0), i)
                            .index_axis(ndarray::Axis(0), j)
                            .to_owned()
                    };
                    prop_assert_eq!(at(&out), at(image));
                }
            }
        }
        Ok(())
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
            // A u8 image gets a mask of its own size most of the time.
            let own = Array2::from_shape_fn(hw(image.shape()), |(i, j)| mask.get((i, j)).copied().unwrap_or(i == j));
            let fmask = Array2::from_shape_fn(hw(fimage.shape()), |(i, j)| mask.get((i, j)).copied().unwrap_or(false));
            for m in [&mask, &own] {
                check_blurred(&image.mapv(f64::from), m, method)?;
            }
            check_blurred_u8(&image, &own, method)?;
            check_blurred(&fimage, &fmask, method)?;
            check_blurred(&fimage.mapv(|v| v as f32 as f64), &fmask, method)?;
            check_blurred(&fimage.mapv(|v| v as f32), &fmask, method)?;

            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut invalid = Vec::new();
            if !(fraction.is_finite() && (0.0..=1.0).contains(&fraction)) {
                invalid.push(Want::Param("fraction"));
            }
            // Overflows, far too many pixels to allocate, or a side too long
            // for an array (the non-zero sides multiply to at most
            // isize::MAX, even in an empty mask).
            let sides = h.max(1).checked_mul(w.max(1));
            if sides.is_none_or(|n| n > isize::MAX as usize) || h * w >= 1 << 40 {
                invalid.push(Want::Param("height * width"));
            }
            if let Some(m) = outcome(generate_random_mask(h, w, fraction, &mut rng), &invalid, &[])? {
                prop_assert_eq!(m.dim(), (h, w));
                let set = m.iter().filter(|&&b| b).count();
                prop_assert_eq!(set, ((h * w) as f64 * fraction) as usize);
            }
            let mut invalid = image_invalid(&image);
            if let [_, _, c] = image.shape()
                && !(1..=4).contains(c)
            {
                invalid.push(Want::Param("channels"));
            }
            if let Some(size) = outcome(estimate_image_entropy(image.view()), &invalid, &[])? {
                prop_assert!(size > 0);
            }
        }

        #[test]
        fn pic_metric(
            (image, saliency_map, mask) in u8_image(6).prop_flat_map(|image| {
                let (h, w) = hw(image.shape());
                let map = prop_oneof![3 => arb::array_of(vec![h, w]), 1 => arb::image(6)];
                (Just(image), map, bool_image_like((h, w), 6))
            }),
            kind in predict_kind(),
            thresholds in thresholds(),
            min_pred in param(0.0, 0.5),
            keep in any::<bool>(),
            points in count(50),
            batch_size in count(4),
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

            let mut thresholds_invalid = Vec::new();
            let in_unit = |t: &f64| t.is_finite() && (0.0..=1.0).contains(t);
            if !thresholds.iter().all(in_unit) || thresholds.windows(2).any(|p| p[1] < p[0]) {
                thresholds_invalid.push(Want::Param("thresholds"));
            }
            let mut inputs_invalid = image_invalid(&image);
            let (h, w) = hw(image.shape());
            if inputs_invalid.is_empty() {
                if mask.dim() != (h, w) {
                    inputs_invalid.push(Want::Shape("random_mask"));
                }
                if map.dim() != (h, w) {
                    inputs_invalid.push(Want::Shape("saliency_map"));
                }
            }
            if !map.iter().all(|v| v.is_finite()) {
                inputs_invalid.push(Want::NonFiniteInput("saliency_map"));
            }
            let mut settings_invalid = thresholds_invalid.clone();
            if !min_pred.is_finite() {
                settings_invalid.push(Want::Param("min_pred_value"));
            }
            if points == 0 || points > MAX_STEPS {
                settings_invalid.push(Want::Param("num_data_points"));
            }
            if batch_size == 0 {
                settings_invalid.push(Want::Param("batch_size"));
            }

            // For valid arguments: the first thing that goes wrong. The
            // estimates of the original and of the fully blurred image come
            // first (the original's first), then the first model call with
            // those two images (batch_size 1 sends them one at a time).
            let failure = |custom: bool, batch: usize| -> Vec<Want> {
                if custom && entropy_fails {
                    vec![Want::ImageEncoding]
                } else if too_thin(&mask) {
                    vec![Want::Param("pixel_mask")]
                } else {
                    let key = OutputKey::OutputLayerValues;
                    match kind {
                        Predict::Err => vec![Want::Model],
                        Predict::WrongCount => vec![Want::OutputBatch { key, batch: batch.min(2) }],
                        Predict::Nan => vec![Want::NonFiniteOutput(key)],
                        Predict::Constant(c) if !c.is_finite() => vec![Want::NonFiniteOutput(key)],
                        // The same score for the original and the blurred image.
                        Predict::Constant(_) => vec![Want::PicSkip],
                        Predict::Good => vec![],
                    }
                }
            };
            // `n` data points, or the reference's 1000.
            let check = |r: saliency::Result<PicMetricResult>,
                         invalid: Vec<Want>,
                         (custom, batch, n): (bool, usize, usize),
                         calls: &Cell<usize>|
             -> Result<(), TestCaseError> {
                let model_reached = invalid.is_empty();
                let invalid = if model_reached { failure(custom, batch) } else { invalid };
                let model_reached = model_reached && !invalid.iter().any(|w| matches!(w, Want::ImageEncoding | Want::Param(_)));
                // An image the metric cannot use, whatever the model says.
                let skip = [Want::PicSkip];
                if let Some(r) = outcome(r, &invalid, &skip)? {
                    prop_assert_eq!(r.curve_x.len(), n + 1);
                    prop_assert_eq!(r.curve_y.len(), n + 1);
                    prop_assert!(r.auc.is_finite() && (0.0..=1.0).contains(&r.auc), "{:?}", r.auc);
                }
                if !model_reached {
                    prop_assert_eq!(calls.get(), 0, "the prediction function was called, on {:?}", invalid);
                }
                Ok(())
            };
            let mut invalid = settings_invalid.clone();
            invalid.extend(inputs_invalid.iter().cloned());
            let calls = Cell::new(0);
            check(metric.compute(image.view(), map.view(), mask.view(), predict(kind, &calls)), invalid.clone(), (false, batch_size, points), &calls)?;
            let calls = Cell::new(0);
            let entropy = |img: ndarray::ArrayViewD<'_, u8>| -> Result<usize, saliency::BoxError> {
                if entropy_fails { Err("no estimate".into()) } else { Ok(img.iter().map(|&v| usize::from(v)).sum()) }
            };
            check(metric.compute_with_entropy(image.view(), map.view(), mask.view(), predict(kind, &calls), entropy), invalid, (true, batch_size, points), &calls)?;
            let mut invalid = thresholds_invalid;
            invalid.extend(inputs_invalid);
            let calls = Cell::new(0);
            check(compute_pic_metric(image.view(), map.view(), mask.view(), predict(kind, &calls), &thresholds), invalid, (false, usize::MAX, 1000), &calls)?;
        }

        #[test]
        fn aggregate(
            curves in prop_oneof![
                // Curves on the same x coordinates.
                3 => (0..5_usize, 1..4_usize).prop_flat_map(|(n, k)| {
                    let x: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
                    prop::collection::vec(prop::collection::vec(arb::value(), n), k)
                        .prop_map(move |ys| ys.into_iter().map(|y| (x.clone(), y)).collect::<Vec<_>>())
                }),
                1 => prop::collection::vec((prop::collection::vec(arb::value(), 0..4), prop::collection::vec(arb::value(), 0..4)), 0..4),
            ],
            median in any::<bool>(),
        ) {
            let results: Vec<PicMetricResult> = curves
                .into_iter()
                .map(|(curve_x, curve_y)| PicMetricResult { curve_x, curve_y, ..PicMetricResult::default() })
                .collect();
            let method = if median { Aggregation::Median } else { Aggregation::Mean };
            let mut invalid = Vec::new();
            let Some(first) = results.first() else {
                outcome(aggregate_individual_pic_results(&results, method), &[Want::Empty("results")], &[])?;
                return Ok(());
            };
            let n = first.curve_x.len();
            for r in &results {
                if r.curve_x.len() != n {
                    invalid.push(Want::Shape("curve_x of a result"));
                }
                if r.curve_y.len() != n {
                    invalid.push(Want::Shape("curve_y of a result"));
                }
                // Any difference, NaN included.
                if r.curve_x.iter().zip(&first.curve_x).any(|(a, b)| a != b) {
                    invalid.push(Want::Param("results"));
                }
                if !all_finite(&r.curve_y) {
                    invalid.push(Want::NonFiniteInput("curve_y of a result"));
                }
            }
            let mut sorted = first.curve_x.clone();
            sorted.sort_by(f64::total_cmp);
            if sorted.windows(2).any(|p| p[0] == p[1]) {
                invalid.push(Want::Param("results"));
            }
            if let Some(r) = outcome(aggregate_individual_pic_results(&results, method), &invalid, &[])? {
                prop_assert_eq!(r.curve_x.len(), n);
                prop_assert_eq!(r.curve_y.len(), n);
                let in_range = results.iter().all(|r| r.curve_x.iter().chain(&r.curve_y).all(|v| v.abs() <= 4.0));
                prop_assert!(r.auc.is_finite() || !in_range, "{:?}", r.auc);
            }
        }
    }

    /// `create_blurred_image` of a u8 image: as for floats, with values
    /// rounded back to u8.
    fn check_blurred_u8(image: &ArrayD<u8>, mask: &Array2<bool>, method: Interpolation) -> Result<(), TestCaseError> {
        let mut invalid = image_invalid(image);
        if invalid.is_empty() && mask.dim() != hw(image.shape()) {
            invalid.push(Want::Shape("pixel_mask"));
        }
        if invalid.is_empty() && too_thin(mask) {
            invalid.push(Want::Param("pixel_mask"));
        }
        if let Some(out) = outcome(create_blurred_image(image.view(), mask.view(), method), &invalid, &[])? {
            prop_assert_eq!(out.shape(), image.shape());
            for ((i, j), &keep) in mask.indexed_iter() {
                if keep {
                    let at = |a: &ArrayD<u8>| {
                        a.index_axis(ndarray::Axis(0), i)
                            .index_axis(ndarray::Axis(0), j)
                            .to_owned()
                    };
                    prop_assert_eq!(at(&out), at(image));
                }
            }
        }
        Ok(())
    }
}
