//! Batch settings as a count or a byte budget: the masks of Integrated
//! Gradients and Occlusion are bit-identical for every setting, a budget
//! gives the rows per call it promises, and bad settings are typed errors
//! raised before any model call.

use ndarray::{Array1, Array3, Array4, ArrayD, ArrayViewD};
use saliency::{
    BatchSize, BoxError, CoreSaliency, IntegratedGradients, IntegrationRule, ModelOutputs, ModelRequest, Occlusion,
    OutputKey, Saliency, SaliencyError, SmoothGrad, SmoothGradParams,
};

const H: usize = 12;
const W: usize = 10;

/// An image of H x W x 3 values in [-1, 1] without structure a sum could
/// make exact.
fn image<T: From<f32>>() -> Array3<T> {
    Array3::from_shape_fn((H, W, 3), |(i, j, c)| {
        T::from((0.37 * i as f32 + 1.3 * j as f32 + 2.1 * c as f32).sin())
    })
}

/// A row-wise gradient, nonlinear so that every path point's gradient
/// differs: g(v) = sin(7 v) v + 0.3, rounded to the float type once.
fn gradient_model<T: saliency::Float>(
    rows_seen: &mut Vec<usize>,
) -> impl FnMut(ArrayViewD<'_, T>, &ModelRequest<'_>) -> Result<ModelOutputs<T>, BoxError> + '_ {
    move |batch, _| {
        rows_seen.push(batch.shape()[0]);
        let g = batch.mapv(|v| {
            let v = v.as_f64();
            T::from_f64_lossy((7.0 * v).sin() * v + 0.3)
        });
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
    }
}

/// A row-wise score, nonlinear: f(x) = sum(w * x) + 0.1 sum(x^2) with
/// weights w_k = cos(0.1 k).
fn score_model(
    rows_seen: &mut Vec<usize>,
) -> impl FnMut(ArrayViewD<'_, f32>, &ModelRequest<'_>) -> Result<ModelOutputs<f32>, BoxError> + '_ {
    move |batch, _| {
        rows_seen.push(batch.shape()[0]);
        let scores: Array1<f32> = batch
            .outer_iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(k, &v)| (0.1 * k as f32).cos() * v + 0.1 * v * v)
                    .sum()
            })
            .collect();
        Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, scores))
    }
}

/// The settings every mask is compared over: the counts 1, 4, 16 and 32,
/// budgets of 3 rows, of less than one row, and the default.
fn settings(row_bytes: usize) -> Vec<BatchSize> {
    vec![
        BatchSize::Count(1),
        BatchSize::Count(4),
        BatchSize::Count(16),
        BatchSize::Count(32),
        BatchSize::Bytes(3 * row_bytes),
        BatchSize::Bytes(row_bytes / 2),
        BatchSize::Bytes(1),
        IntegratedGradients::<f32>::DEFAULT_BATCH,
        Occlusion::<f32>::DEFAULT_BATCH,
    ]
}

fn bits(mask: &ArrayD<f32>) -> Vec<u32> {
    mask.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn integrated_gradients_masks_are_bit_identical_for_every_batch_setting() {
    let x = image::<f32>();
    let row_bytes = x.len() * 4;
    for rule in [IntegrationRule::EvenlySpaced, IntegrationRule::GaussLegendre] {
        let mut reference: Option<Vec<u32>> = None;
        for batch in settings(row_bytes) {
            let mut rows = Vec::new();
            let ig = IntegratedGradients::new().steps(25).rule(rule).batch(batch);
            let mask = ig.get_mask(&x, &mut gradient_model(&mut rows)).unwrap().into_dyn();
            // 25 points in calls of at most the setting's rows.
            assert_eq!(rows.iter().sum::<usize>(), 25, "{rule} {batch:?}");
            assert!(
                rows.iter().all(|&r| r <= batch.rows(row_bytes)),
                "{rule} {batch:?}: {rows:?}"
            );
            let bits = bits(&mask);
            match &reference {
                None => reference = Some(bits),
                Some(r) => assert!(
                    *r == bits,
                    "{rule} {batch:?}: the mask differs from count 1's in {} of {} values",
                    r.iter().zip(&bits).filter(|(a, b)| a != b).count(),
                    bits.len()
                ),
            }
        }
    }
}

/// The mask is the gradients summed one path point after another, then
/// times (x - baseline) / steps: the reference's arithmetic at its default
/// batch size of 1 (`total += grads.sum(axis=0)` on one row), written out.
#[test]
fn integrated_gradients_sums_in_path_order() {
    let x = image::<f32>();
    let steps = 25;
    let g = |v: f32| ((7.0 * f64::from(v)).sin() * f64::from(v) + 0.3) as f32;
    let mut total = vec![0.0_f32; x.len()];
    for i in 0..steps {
        let alpha = (i as f64 * (1.0 / (steps - 1) as f64)) as f32;
        let alpha = if i == steps - 1 { 1.0 } else { alpha };
        for (t, &v) in total.iter_mut().zip(x.iter()) {
            *t += g(0.0 + alpha * (v - 0.0));
        }
    }
    let expected: Vec<f32> = total
        .iter()
        .zip(x.iter())
        .map(|(&t, &v)| t * v / steps as f32)
        .collect();
    for batch in [BatchSize::Count(1), BatchSize::Count(7), BatchSize::Bytes(1 << 20)] {
        let mask = IntegratedGradients::new()
            .steps(steps)
            .batch(batch)
            .get_mask(&x, &mut gradient_model(&mut Vec::new()))
            .unwrap();
        let got: Vec<f32> = mask.iter().copied().collect();
        assert!(got == expected, "{batch:?}");
    }
}

#[test]
fn occlusion_masks_are_bit_identical_for_every_batch_setting() {
    let x = image::<f32>();
    let row_bytes = x.len() * 4;
    // Windows of 3 at stride 1: 10 x 8 = 80 occluded copies.
    let windows = (H - 2) * (W - 2);
    let mut reference: Option<Vec<u32>> = None;
    for batch in settings(row_bytes) {
        let mut rows = Vec::new();
        let occ = Occlusion::new().size(3).batch(batch);
        let mask = occ.get_mask(&x, &mut score_model(&mut rows)).unwrap().into_dyn();
        // The unoccluded input first, then the copies.
        assert_eq!(rows[0], 1);
        assert_eq!(rows[1..].iter().sum::<usize>(), windows, "{batch:?}");
        let per_call = batch.rows(row_bytes).min(windows);
        assert!(
            rows[1..rows.len() - 1].iter().all(|&r| r == per_call),
            "{batch:?}: {rows:?}"
        );
        let bits = bits(&mask);
        match &reference {
            None => reference = Some(bits),
            Some(r) => assert!(*r == bits, "{batch:?}: the mask differs from count 1's"),
        }
    }
}

#[test]
fn a_budget_gives_the_rows_it_holds_and_never_fewer_than_one() {
    let row = 224 * 224 * 3 * 4;
    // 8 MiB / 602,112 bytes = 13.9; 1 MiB / 602,112 = 1.7.
    assert_eq!(BatchSize::Bytes(8 << 20).rows(row), 13);
    assert_eq!(BatchSize::Bytes(1 << 20).rows(row), 1);
    assert_eq!(BatchSize::Bytes(row).rows(row), 1);
    assert_eq!(BatchSize::Bytes(2 * row - 1).rows(row), 1);
    assert_eq!(BatchSize::Bytes(2 * row).rows(row), 2);
    assert_eq!(BatchSize::Bytes(1).rows(row), 1);
    assert_eq!(BatchSize::Bytes(100).rows(0), 100);
    assert_eq!(BatchSize::Count(7).rows(row), 7);
    assert_eq!(BatchSize::from(5), BatchSize::Count(5));
    assert!(BatchSize::Count(1).check().is_ok() && BatchSize::Bytes(1).check().is_ok());
}

#[test]
fn defaults_are_budgets_and_the_count_api_is_unchanged() {
    let ig = IntegratedGradients::<f32>::new();
    assert_eq!(ig.get_batch(), BatchSize::Bytes(4 << 20));
    // 224 x 224 x 3 f32: 4 MiB / 602,112 bytes = 6.97 path points per call;
    // 448 x 448 x 3: 1.7; 896: 0.4 (at least one).
    let px = |s: usize| s * s * 3;
    assert_eq!(
        (ig.batch_rows(px(224)), ig.batch_rows(px(448)), ig.batch_rows(px(896))),
        (6, 1, 1)
    );
    // f64 rows are twice as large: 3.48.
    assert_eq!(IntegratedGradients::<f64>::new().batch_rows(px(224)), 3);
    let occ = Occlusion::<f32>::new();
    assert_eq!(occ.get_batch(), BatchSize::Bytes(1 << 20));
    assert_eq!((occ.batch_rows(px(224)), occ.batch_rows(px(64))), (1, 21));

    let ig = IntegratedGradients::<f32>::new().batch_size(7);
    assert_eq!(
        (ig.get_batch(), ig.get_batch_size(), ig.batch_rows(px(224))),
        (BatchSize::Count(7), 7, 7)
    );
    let occ = Occlusion::<f32>::new().batch_size(5);
    assert_eq!(
        (occ.get_batch(), occ.get_batch_size(), occ.batch_rows(1)),
        (BatchSize::Count(5), 5, 5)
    );
    // A budget's bound for any input: rows of one value.
    assert_eq!(IntegratedGradients::<f32>::new().batch_bytes(400).get_batch_size(), 100);
    assert_eq!(Occlusion::<f64>::new().batch_bytes(400).get_batch_size(), 50);
}

#[test]
fn zero_counts_and_zero_budgets_are_errors_before_any_model_call() {
    let x = image::<f32>();
    let cases: [(BatchSize, &str); 2] = [
        (BatchSize::Count(0), "batch_size"),
        (BatchSize::Bytes(0), "batch_bytes"),
    ];
    for (batch, name) in cases {
        let names_it = |err: SaliencyError| {
            assert!(
                matches!(err, SaliencyError::InvalidParameter { name: n, .. } if n == name),
                "{err}"
            );
            err
        };
        let mut rows = Vec::new();
        let ig = IntegratedGradients::new().batch(batch);
        names_it(ig.get_mask(&x, &mut gradient_model(&mut rows)).unwrap_err());
        names_it(ig.get_mask_with_delta(&x, &mut gradient_model(&mut rows)).unwrap_err());
        let occ = Occlusion::new().size(3).batch(batch);
        let err = names_it(occ.get_mask(&x, &mut score_model(&mut rows)).unwrap_err());
        assert!(rows.is_empty(), "{batch:?}: the model was called");
        assert_eq!(batch.check().unwrap_err().to_string(), err.to_string());
    }
    let err = IntegratedGradients::<f32>::new()
        .batch_bytes(0)
        .get_mask(&x, &mut gradient_model(&mut Vec::new()));
    assert!(err.unwrap_err().to_string().contains("batch_bytes = 0"));
}

/// Several images in one call: a budget packs the rows of every image into
/// calls of the rows it holds for one image's size, and each mask equals
/// the one-image call's.
#[test]
fn multi_image_calls_fill_calls_to_the_budget() {
    let one = image::<f32>();
    let images = Array4::from_shape_fn((3, H, W, 3), |(n, i, j, c)| one[[i, j, c]] * (1.0 + 0.25 * n as f32));
    let row_bytes = one.len() * 4;
    let ig = IntegratedGradients::new().steps(10).batch_bytes(4 * row_bytes + 3);
    let mut rows = Vec::new();
    let masks = ig.get_masks(&images, &mut gradient_model(&mut rows)).unwrap();
    // 3 images x 10 points in calls of 4 rows.
    assert_eq!(rows, [4, 4, 4, 4, 4, 4, 4, 2]);
    for (n, image) in images.outer_iter().enumerate() {
        let alone = IntegratedGradients::new()
            .steps(10)
            .batch_size(1)
            .get_mask(&image, &mut gradient_model(&mut Vec::new()))
            .unwrap();
        assert!(masks.index_axis(ndarray::Axis(0), n) == alone, "image {n}");
    }

    // SmoothGrad over IG with a budget packs its samples the same way and
    // gives the mask of one sample after another.
    let params = SmoothGradParams::new().nsamples(3).seed(5);
    let smooth = |ig: IntegratedGradients<f32>, rows: &mut Vec<usize>| {
        SmoothGrad::new(ig, params.clone())
            .get_masks(&images, &mut gradient_model(rows))
            .unwrap()
    };
    let mut rows = Vec::new();
    let budget = smooth(
        IntegratedGradients::new().steps(10).batch_bytes(5 * row_bytes),
        &mut rows,
    );
    assert!(
        rows.iter().all(|&r| r <= 5) && rows.iter().sum::<usize>() == 90,
        "{rows:?}"
    );
    let count = smooth(IntegratedGradients::new().steps(10).batch_size(1), &mut Vec::new());
    assert!(budget == count);
}
