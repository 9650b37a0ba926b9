//! The reference's XRAI test cases (saliency/core/xrai_test.py), ported, and
//! the error cases.
//!
//! The reference mocks integrated gradients; here the model returns one fixed
//! random gradient G for every input, so integrated gradients from baseline b
//! is G * (x - b) and the expected attributions are known.

use ndarray::{Array2, Array3, ArrayD, ArrayViewD, Axis};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saliency::{
    IntegratedGradients, ModelOutputs, OutputKey, Saliency, SaliencyError, Xrai, XraiAlgorithm, XraiOutput,
    XraiParameters, XraiSegments,
};

const SIZE: usize = 96;

struct Setup {
    image: Array3<f64>,
    gradient: Array3<f64>,
}

fn setup(seed: u64) -> Setup {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let image = Array3::from_shape_simple_fn((SIZE, SIZE, 3), || rng.random::<f64>() * 0.3 + 0.5);
    let gradient = Array3::from_shape_simple_fn((SIZE, SIZE, 3), || rng.random::<f64>() - 0.4);
    Setup { image, gradient }
}

impl Setup {
    fn model(
        &self,
    ) -> impl FnMut(ArrayViewD<'_, f64>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, saliency::BoxError>
    {
        let g = self.gradient.clone().into_dyn();
        move |batch, keys| {
            assert_eq!(keys, [OutputKey::InputOutputGradients]);
            let grads = g.broadcast(batch.raw_dim()).ok_or("shape")?.to_owned();
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
        }
    }

    /// Integrated gradients from one baseline, computed on its own.
    fn ig(&self, baseline: &ArrayD<f64>, steps: usize) -> ArrayD<f64> {
        IntegratedGradients::new()
            .steps(steps)
            .baseline(baseline.clone())
            .get_mask(self.image.view().into_dyn(), &mut self.model())
            .unwrap()
    }

    fn default_baselines(&self) -> Vec<ArrayD<f64>> {
        let lo = self.image.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.image.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        vec![
            ArrayD::from_elem(ndarray::IxDyn(self.image.shape()), lo),
            ArrayD::from_elem(ndarray::IxDyn(self.image.shape()), hi),
        ]
    }
}

fn channel_max(a: &ArrayD<f64>) -> Array2<f64> {
    a.fold_axis(Axis(2), f64::NEG_INFINITY, |&m, &v| m.max(v))
        .into_dimensionality()
        .unwrap()
}

/// Sums of the same values in different orders: measured at most 3.5e-14
/// (relative to 1 + |value|).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 5e-13 * (1.0 + a.abs().max(b.abs()))
}

/// The reference's `_assert_xrai_correctness`.
fn assert_xrai_correctness(out: &XraiOutput<f64>, ig_mask: &Array2<f64>) {
    let heat = &out.attribution_mask;
    assert!(
        close(ig_mask.sum(), heat.sum()),
        "completeness: {} vs {}",
        ig_mask.sum(),
        heat.sum()
    );
    let masks: Vec<Array2<bool>> = match out.segments.as_ref().expect("segments requested") {
        XraiSegments::Ranks(r) => {
            let (lo, hi) = (*r.iter().min().unwrap(), *r.iter().max().unwrap());
            assert_eq!(lo, 1, "the first segment is rank 1");
            (lo..=hi).map(|k| r.mapv(|v| v == k)).collect()
        }
        XraiSegments::Masks(m) => m.clone(),
    };
    let mut previous = f64::INFINITY;
    for (i, mask) in masks.iter().enumerate() {
        let values: Vec<f64> = heat.iter().zip(mask).filter(|(_, m)| **m).map(|(v, _)| *v).collect();
        assert!(!values.is_empty(), "segment {i} has zero area");
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        assert_eq!(lo, hi, "segment {i} is not constant");
        let ig_sum: f64 = ig_mask.iter().zip(mask).filter(|(_, m)| **m).map(|(v, _)| v).sum();
        assert!(close(ig_sum, values.iter().sum()), "segment {i} loses attribution");
        if i + 1 < masks.len() {
            assert!(hi <= previous, "segment {i} is out of order");
        }
        previous = hi;
    }
}

fn run_and_check(algorithm: XraiAlgorithm, flatten: bool) {
    let s = setup(1);
    let params = XraiParameters::new()
        .return_xrai_segments(true)
        .flatten_xrai_segments(flatten)
        .algorithm(algorithm)
        .area_threshold(1.0)
        .return_ig_attributions(true);
    let xrai = Xrai::new().parameters(params);
    let out = xrai
        .get_mask_with_details(s.image.view().into_dyn(), &mut s.model(), &mut |_| {})
        .unwrap();
    let baselines = s.default_baselines();
    let igs: Vec<ArrayD<f64>> = baselines.iter().map(|b| s.ig(b, 100)).collect();
    let ig_mask = channel_max(&((&igs[0] + &igs[1]) / 2.0));
    assert_xrai_correctness(&out, &ig_mask);
    let returned = out.ig_attribution.as_ref().unwrap();
    assert_eq!(returned, &igs, "returned IG values differ from IG's");
    assert_eq!(out.baselines.as_ref().unwrap(), &baselines);
    let heat = xrai.get_mask(s.image.view().into_dyn(), &mut s.model()).unwrap();
    assert_eq!(heat, out.attribution_mask);
}

#[test]
fn full_flat() {
    run_and_check(XraiAlgorithm::Full, true);
}

#[test]
fn fast_flat() {
    run_and_check(XraiAlgorithm::Fast, true);
}

#[test]
fn full_non_flat() {
    run_and_check(XraiAlgorithm::Full, false);
}

#[test]
fn fast_non_flat() {
    run_and_check(XraiAlgorithm::Fast, false);
}

fn rectangle(r0: usize, r1: usize, c0: usize, c1: usize) -> Array2<bool> {
    Array2::from_shape_fn((SIZE, SIZE), |(i, j)| (r0..=r1).contains(&i) && (c0..=c1).contains(&j))
}

#[test]
fn custom_segments() {
    let s = setup(2);
    let (seg1, seg2) = (rectangle(10, 30, 10, 30), rectangle(60, 90, 60, 90));
    let params = XraiParameters::new()
        .return_xrai_segments(true)
        .flatten_xrai_segments(false)
        .return_ig_attributions(true);
    let out = Xrai::new()
        .parameters(params)
        .segments(vec![seg1.clone(), seg2.clone()])
        .get_mask_with_details(s.image.view().into_dyn(), &mut s.model(), &mut |_| {})
        .unwrap();
    let igs: Vec<ArrayD<f64>> = s.default_baselines().iter().map(|b| s.ig(b, 100)).collect();
    let ig_mask = channel_max(&((&igs[0] + &igs[1]) / 2.0));
    assert_xrai_correctness(&out, &ig_mask);
    let mean = |m: &Array2<bool>| {
        let v: Vec<f64> = ig_mask.iter().zip(m).filter(|(_, b)| **b).map(|(v, _)| *v).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let Some(XraiSegments::Masks(masks)) = &out.segments else {
        panic!("expected masks")
    };
    let first = if mean(&seg1) >= mean(&seg2) { &seg1 } else { &seg2 };
    assert_eq!(&masks[0], first, "the segments might be ordered incorrectly");
    // The two rectangles and everything else.
    assert_eq!(masks.len(), 3);
}

#[test]
fn batch_size_reaches_the_model() {
    let s = setup(3);
    let mut rng = ChaCha8Rng::seed_from_u64(30);
    let baselines: Vec<ArrayD<f64>> = (0..2)
        .map(|_| ArrayD::from_shape_simple_fn(ndarray::IxDyn(s.image.shape()), || rng.random::<f64>()))
        .collect();
    for (batch_size, expected) in [(123, vec![100, 100]), (30, vec![30, 30, 30, 10, 30, 30, 30, 10])] {
        let mut sizes = Vec::new();
        let mut inner = s.model();
        Xrai::new()
            .baselines(baselines.clone())
            .batch_size(batch_size)
            .get_mask(s.image.view().into_dyn(), &mut |batch, keys| {
                sizes.push(batch.shape()[0]);
                inner(batch, keys)
            })
            .unwrap();
        assert_eq!(sizes, expected, "batch size {batch_size}");
    }
}

#[test]
fn baselines_are_used() {
    let s = setup(4);
    let mut rng = ChaCha8Rng::seed_from_u64(40);
    let baselines: Vec<ArrayD<f64>> = (0..2)
        .map(|_| ArrayD::from_shape_simple_fn(ndarray::IxDyn(s.image.shape()), || rng.random::<f64>()))
        .collect();
    let mut first_points = Vec::new();
    let mut inner = s.model();
    let out = Xrai::new()
        .baselines(baselines.clone())
        .batch_size(100)
        .parameters(XraiParameters::new().return_ig_attributions(true))
        .get_mask_with_details(
            s.image.view().into_dyn(),
            &mut |batch: ArrayViewD<'_, f64>, keys: &saliency::ModelRequest<'_>| {
                // The first path point (alpha = 0) is the baseline itself.
                first_points.push(batch.index_axis(Axis(0), 0).to_owned());
                inner(batch, keys)
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(first_points, baselines);
    let expected: Vec<ArrayD<f64>> = baselines.iter().map(|b| s.ig(b, 100)).collect();
    assert_eq!(out.ig_attribution.unwrap(), expected);
    assert_eq!(out.baselines.unwrap(), baselines);
}

#[test]
fn base_attribution_replaces_integrated_gradients() {
    let s = setup(5);
    let mut rng = ChaCha8Rng::seed_from_u64(50);
    let base = Array3::from_shape_simple_fn((SIZE, SIZE, 3), || rng.random::<f64>());
    let heat = Xrai::new()
        .base_attribution(base.clone())
        .get_mask(
            s.image.view().into_dyn(),
            &mut |_: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| Err("XRAI must not call the model".into()),
        )
        .unwrap();
    let merged = channel_max(&base.into_dyn());
    assert_ne!(merged.clone().into_dyn(), heat.clone().into_dyn());
    assert!(close(merged.sum(), heat.sum()));
}

#[test]
fn base_attribution_of_the_wrong_shape_is_an_error() {
    let s = setup(6);
    let base = Array3::<f64>::zeros((SIZE, SIZE + 1, 3));
    let err = Xrai::new()
        .base_attribution(base)
        .get_mask(s.image.view().into_dyn(), &mut s.model())
        .unwrap_err();
    assert!(
        matches!(
            err,
            SaliencyError::ShapeMismatch {
                what: "base attribution",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_arguments_are_errors() {
    let s = setup(7);
    let x = s.image.view().into_dyn();
    let model = &mut s.model();
    let segment = rectangle(0, 10, 0, 10);

    let rank1 = ndarray::Array1::<f64>::zeros(5).into_dyn();
    let err = Xrai::new().get_mask(rank1.view(), model).unwrap_err();
    assert!(matches!(err, SaliencyError::InvalidRank { actual: 1, .. }), "{err}");
    let rank4 = ArrayD::<f64>::zeros(ndarray::IxDyn(&[1, 4, 4, 3]));
    let err = Xrai::new().get_mask(rank4.view(), model).unwrap_err();
    assert!(matches!(err, SaliencyError::InvalidRank { actual: 4, .. }), "{err}");

    let err = Xrai::new().segments(vec![]).get_mask(x.view(), model).unwrap_err();
    assert!(
        matches!(err, SaliencyError::EmptyInput { what: "segments", .. }),
        "{err}"
    );
    let err = Xrai::new()
        .segments(vec![Array2::from_elem((SIZE, SIZE - 1), true)])
        .get_mask(x.view(), model)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::ShapeMismatch { what: "segment", .. }),
        "{err}"
    );

    let err = Xrai::new()
        .baselines(vec![ArrayD::zeros(ndarray::IxDyn(&[SIZE, SIZE, 2]))])
        .segments(vec![segment.clone()])
        .get_mask(x.view(), model)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::ShapeMismatch { what: "baseline", .. }),
        "{err}"
    );
    let err = Xrai::new()
        .baselines(Vec::<ArrayD<f64>>::new())
        .segments(vec![segment.clone()])
        .get_mask(x.view(), model)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::EmptyInput { what: "baselines", .. }),
        "{err}"
    );

    let err = Xrai::new()
        .parameters(XraiParameters::new().steps(0))
        .segments(vec![segment.clone()])
        .get_mask(x.view(), model)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "steps", .. }),
        "{err}"
    );
    let err = Xrai::new()
        .batch_size(0)
        .segments(vec![segment.clone()])
        .get_mask(x.view(), model)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "batch_size", .. }),
        "{err}"
    );
    let err = Xrai::new()
        .parameters(XraiParameters::new().area_threshold(f64::NAN))
        .segments(vec![segment.clone()])
        .get_mask(x.view(), model)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SaliencyError::InvalidParameter {
                name: "area_threshold",
                ..
            }
        ),
        "{err}"
    );

    let mut nan = s.image.clone().into_dyn();
    nan[[3, 4, 1]] = f64::NAN;
    let err = Xrai::new()
        .segments(vec![segment.clone()])
        .get_mask(nan.view(), model)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::NonFiniteInput { what: "input", .. }),
        "{err}"
    );

    // A model that returns the wrong shape is caught by the model checks.
    let err = Xrai::new()
        .segments(vec![segment])
        .get_mask(
            x.view(),
            &mut |batch: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
                let wrong = ArrayD::zeros(ndarray::IxDyn(&[batch.shape()[0], 3]));
                Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, wrong))
            },
        )
        .unwrap_err();
    assert!(matches!(err, SaliencyError::OutputShapeMismatch { .. }), "{err}");
}

#[test]
fn progress_covers_integrated_gradients_and_ranking() {
    let s = setup(8);
    let mut reports = Vec::new();
    Xrai::new()
        .parameters(XraiParameters::new().steps(10))
        .batch_size(5)
        .get_mask_with_progress(s.image.view().into_dyn(), &mut s.model(), &mut |p| reports.push(p))
        .unwrap();
    let ig: Vec<(usize, usize)> = reports
        .iter()
        .filter(|p| p.stage == saliency::Stage::IntegratedGradientsSteps)
        .map(|p| (p.done, p.total))
        .collect();
    assert_eq!(ig, vec![(5, 20), (10, 20), (15, 20), (20, 20)]);
    let last = reports.last().unwrap();
    assert_eq!(last.stage, saliency::Stage::XraiMasks);
    assert_eq!(last.done, last.total, "the ranking ends with the whole image covered");
}

#[test]
fn grayscale_images_work() {
    let s = setup(9);
    let gray = s.image.index_axis(Axis(2), 0).to_owned().into_dyn();
    let out = Xrai::new()
        .parameters(XraiParameters::new().steps(5))
        .get_mask(
            gray.view(),
            &mut |batch: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
                Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
            },
        )
        .unwrap();
    assert_eq!(out.shape(), &[SIZE, SIZE]);
}
