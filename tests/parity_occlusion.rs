//! Occlusion against fixtures written by PAIR saliency 0.2.1
//! (tests/reference/gen_occlusion.py), the reference's own test case, and bad
//! input.

mod common;

use common::{TanhNet, assert_close, fixture, rel_err_f32};
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Axis};
use saliency::{BoxError, ModelOutputs, Occlusion, OutputKey, Saliency, SaliencyError};

const TOPIC: &str = "occlusion";

impl TanhNet {
    fn model(
        &self,
    ) -> impl FnMut(ArrayViewD<'_, f64>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, BoxError> + '_ {
        move |b, keys| {
            assert_eq!(keys, [OutputKey::OutputLayerValues]);
            Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, self.scores(b)))
        }
    }
}

#[test]
fn occlusion_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let rgb = fixture::<f64>(TOPIC, "rgb");
    let gray = fixture::<f64>(TOPIC, "gray");
    let cases: [(&str, &ArrayD<f64>, Occlusion<f64>); 4] = [
        ("rgb_size4_f64", &rgb, Occlusion::new().size(4)),
        ("rgb_size3_value03_f64", &rgb, Occlusion::new().size(3).value(0.3)),
        ("gray_default_f64", &gray, Occlusion::new()),
        ("gray_size5_valuem02_f64", &gray, Occlusion::new().size(5).value(-0.2)),
    ];
    // Measured 1.0e-15 to 2.4e-15 (gray_default), the same for every batch
    // size.
    for (name, x, occ) in cases {
        let expected = fixture::<f64>(TOPIC, name);
        for bs in [1, 7, 32, 1000] {
            let mask = occ.clone().batch_size(bs).get_mask(x.view(), &mut net.model()).unwrap();
            assert_close(
                &format!("occlusion {name} batch {bs}"),
                mask.view(),
                expected.view(),
                5e-14,
            );
        }
    }
}

#[test]
fn occlusion_f32_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "rgb").mapv(|v| v as f32);
    let mask = Occlusion::new()
        .size(4)
        .get_mask(x.view(), &mut |b, _| {
            let s = net.scores(b.mapv(f64::from).view()).mapv(|v| v as f32);
            Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, s))
        })
        .unwrap();
    let expected = fixture::<f32>(TOPIC, "rgb_size4_f32").mapv(f64::from);
    let err = rel_err_f32(mask.view(), expected.view());
    // Measured 1.5e-7.
    println!("parity occlusion rgb_size4_f32: relative error {err:.3e} (tolerance 2e-6)");
    assert!(err <= 2e-6, "{err}");
}

/// The reference's testOcclusionGetMask: the model is 3 * sum(x), the image
/// 5 x 5 zeros with ones at [1, 1] and [3, 3], window 3.
#[test]
fn reference_test_mask() {
    let mut img = Array2::<f64>::zeros((5, 5));
    img[[1, 1]] = 1.0;
    img[[3, 3]] = 1.0;
    let ref_mask = ndarray::array![
        [3., 6., 6., 3., 0.],
        [6., 15., 18., 12., 3.],
        [6., 18., 24., 18., 6.],
        [3., 12., 18., 15., 6.],
        [0., 3., 6., 6., 3.]
    ];
    for bs in [1, 4, 9, 32] {
        let mut calls = 0;
        let mask = Occlusion::new()
            .size(3)
            .value(0.0)
            .batch_size(bs)
            .get_mask(img.view().into_dyn(), &mut |b, _| {
                calls += 1;
                let s: Array1<f64> = b.outer_iter().map(|x| 3.0 * x.sum()).collect();
                Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, s))
            })
            .unwrap();
        assert_eq!(mask, ref_mask.clone().into_dyn(), "batch {bs}");
        // One call for the input, then the 9 windows in batches.
        assert_eq!(calls, 1 + 9_usize.div_ceil(bs));
    }
}

/// A direct, per-window evaluation of the documented definition, for any
/// stride.
fn direct(x: &ArrayD<f64>, size: usize, value: f64, stride: usize, net: &TanhNet) -> ArrayD<f64> {
    let (h, w) = (x.shape()[0], x.shape()[1]);
    let score = |img: &ArrayD<f64>| net.scores(img.view().insert_axis(Axis(0)))[[0, 0]];
    let original = score(x);
    let mut mask = ArrayD::<f64>::zeros(x.raw_dim());
    for r in (0..=h - size).step_by(stride) {
        for c in (0..=w - size).step_by(stride) {
            let mut occluded = x.clone();
            let inside = |img: &mut ArrayD<f64>, f: &dyn Fn(&mut f64)| {
                for (idx, v) in img.indexed_iter_mut() {
                    if (r..r + size).contains(&idx[0]) && (c..c + size).contains(&idx[1]) {
                        f(v);
                    }
                }
            };
            inside(&mut occluded, &|v| *v = value);
            let d = original - score(&occluded);
            inside(&mut mask, &|v| *v += d);
        }
    }
    mask
}

#[test]
fn stride_sums_the_windows_it_visits() {
    let net = TanhNet::load(TOPIC);
    let rgb = fixture::<f64>(TOPIC, "rgb");
    let gray = fixture::<f64>(TOPIC, "gray");
    for (x, size, stride) in [(&rgb, 4, 2), (&rgb, 3, 3), (&gray, 5, 4), (&gray, 2, 7), (&rgb, 4, 1)] {
        let expected = direct(x, size, 0.25, stride, &net);
        let mut reference = None;
        for bs in [1, 5, 64] {
            let mask = Occlusion::new()
                .size(size)
                .value(0.25)
                .stride(stride)
                .batch_size(bs)
                .get_mask(x.view(), &mut net.model())
                .unwrap();
            let err = common::rel_err(mask.view(), expected.view());
            println!("occlusion size {size} stride {stride} batch {bs} vs direct: relative error {err:.3e}");
            // Measured 0 to 2.5e-16.
            assert!(err <= 5e-15, "size {size} stride {stride}: {err:e}");
            // The result does not depend on the batch size, to the bit.
            let first = reference.get_or_insert_with(|| mask.clone());
            assert_eq!(&mask, first, "size {size} stride {stride} batch {bs}");
        }
        if stride > 1 && (x.shape()[0] - size) % stride != 0 {
            // Rows below the last window are covered by none.
            let last = (x.shape()[0] - size) / stride * stride + size;
            assert!(expected.index_axis(Axis(0), last).iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn progress_is_reported_per_batch() {
    let net = TanhNet::load(TOPIC);
    let gray = fixture::<f64>(TOPIC, "gray");
    let mut reports = Vec::new();
    // 11 x 16 = 176 windows of size 5 in a 15 x 20 image.
    Occlusion::new()
        .size(5)
        .batch_size(50)
        .get_mask_with_progress(gray.view(), &mut net.model(), &mut |p| reports.push((p.done, p.total)))
        .unwrap();
    assert_eq!(reports, vec![(50, 176), (100, 176), (150, 176), (176, 176)]);
}

#[test]
fn bad_input_is_an_error() {
    let net = TanhNet::load(TOPIC);
    let rgb = fixture::<f64>(TOPIC, "rgb");
    let occ = Occlusion::<f64>::new().size(3);
    let run = |occ: &Occlusion<f64>, x: ArrayViewD<'_, f64>| occ.get_mask(x, &mut net.model());

    // Wrong rank: 1-D and 4-D.
    let flat = Array1::<f64>::zeros(300).into_dyn();
    assert!(matches!(
        run(&occ, flat.view()),
        Err(SaliencyError::InvalidRank { actual: 1, .. })
    ));
    let four = rgb.clone().insert_axis(Axis(0));
    assert!(matches!(
        run(&occ, four.view()),
        Err(SaliencyError::InvalidRank { actual: 4, .. })
    ));
    // Window larger than the image (10 x 10).
    let err = run(&Occlusion::new().size(11), rgb.view()).unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "size", .. }),
        "{err}"
    );
    // Zero size, stride, batch size; non-finite value.
    for occ in [
        Occlusion::new().size(0),
        Occlusion::new().size(3).stride(0),
        Occlusion::new().size(3).batch_size(0),
        Occlusion::new().size(3).value(f64::NAN),
    ] {
        assert!(matches!(
            run(&occ, rgb.view()),
            Err(SaliencyError::InvalidParameter { .. })
        ));
    }
    // NaN and empty input.
    let mut nan = rgb.clone();
    nan[[2, 3, 1]] = f64::NAN;
    assert!(matches!(
        run(&occ, nan.view()),
        Err(SaliencyError::NonFiniteInput { count: 1, .. })
    ));
    let empty = ArrayD::<f64>::zeros(vec![0, 4]);
    assert!(matches!(run(&occ, empty.view()), Err(SaliencyError::EmptyInput { .. })));

    // Model returning the wrong key, the reference's one value per pixel
    // row (testOcclusionValuesMismatch), or an error.
    let wrong_key = occ.get_mask(rgb.view(), &mut |b, _| {
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.to_owned()))
    });
    assert!(matches!(
        wrong_key,
        Err(SaliencyError::MissingOutput {
            key: OutputKey::OutputLayerValues
        })
    ));
    let wrong_shape = occ.get_mask(rgb.view(), &mut |b, _| {
        Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array2::<f64>::ones((b.shape()[0], 5))))
    });
    assert!(matches!(wrong_shape, Err(SaliencyError::OutputShapeMismatch { .. })));
    let mut calls = 0;
    let wrong_batch = occ.clone().batch_size(4).get_mask(rgb.view(), &mut |_b, _| {
        calls += 1;
        Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array1::<f64>::ones(1)))
    });
    assert!(matches!(
        wrong_batch,
        Err(SaliencyError::OutputBatchMismatch { expected_batch: 4, .. })
    ));
    let failing = occ.get_mask(rgb.view(), &mut |_b, _| Err("model down".into()));
    assert!(matches!(failing, Err(SaliencyError::Model(_))));
}
