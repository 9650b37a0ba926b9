//! The shortcuts that keep buffers across runs give the results of the
//! plain computation, bit for bit.

use ndarray::{Array3, ArrayD, ArrayViewD};
use saliency::{IntegratedGradients, ModelOutputs, ModelRequest, OutputKey, Saliency, Xrai, XraiParameters};

/// A gradient that tells +0 from -0 (1 for values with the sign bit set,
/// 2 for the others, plus the value), so that a path point of -0 where
/// the stored-zero computation gives +0 changes the mask.
fn sign_model(batch: ArrayViewD<'_, f64>, _: &ModelRequest<'_>) -> Result<ModelOutputs<f64>, saliency::BoxError> {
    let g = batch.mapv(|v| if v.is_sign_negative() { 1.0 + v } else { 2.0 + v });
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
}

fn image() -> Array3<f64> {
    Array3::from_shape_fn((6, 5, 3), |(i, j, c)| {
        if (i + j + c) % 4 == 0 {
            -0.0
        } else {
            ((i * 5 + j) as f64 * 0.37 + c as f64).sin()
        }
    })
}

fn bits(a: &ArrayD<f64>) -> Vec<u64> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn the_unstored_zero_baseline_equals_a_stored_one() {
    let x = image();
    for steps in [1, 2, 7] {
        let plain = IntegratedGradients::new().steps(steps).batch_size(3);
        let stored = plain.clone().baseline(Array3::<f64>::zeros(x.dim()));
        let a = plain.get_mask(&x, &mut sign_model).unwrap().into_dyn();
        let b = stored.get_mask(&x, &mut sign_model).unwrap().into_dyn();
        assert_eq!(bits(&a), bits(&b), "steps {steps}");
    }
}

#[test]
fn runs_after_one_another_reuse_buffers_without_changing_results() {
    // A batch buffer left with other contents by a larger run must not
    // leak into the next.
    let x = image();
    let small = IntegratedGradients::new()
        .steps(4)
        .batch_size(2)
        .baseline(x.mapv(|v| 0.5 * v));
    let first = small.get_mask(&x, &mut sign_model).unwrap();
    let big = Array3::from_elem((20, 20, 3), 3.0);
    IntegratedGradients::new()
        .steps(9)
        .batch_size(9)
        .get_mask(&big, &mut sign_model)
        .unwrap();
    let again = small.get_mask(&x, &mut sign_model).unwrap();
    assert_eq!(bits(&first.into_dyn()), bits(&again.into_dyn()));
}

#[test]
fn xrai_mean_in_place_equals_the_kept_attributions_mean() {
    let x = Array3::from_shape_fn((16, 16, 3), |(i, j, c)| ((i * 16 + j) as f64 * 0.21 + c as f64).cos());
    let run = |keep: bool| {
        Xrai::new()
            .parameters(XraiParameters::new().steps(5).return_ig_attributions(keep))
            .batch_size(4)
            .get_mask_with_details(&x, &mut sign_model, &mut |_| {})
            .unwrap()
    };
    let (kept, in_place) = (run(true), run(false));
    assert!(in_place.ig_attribution.is_none());
    let kept_mask = kept.attribution_mask.into_dyn();
    assert_eq!(bits(&kept_mask), bits(&in_place.attribution_mask.into_dyn()));
    assert!(kept_mask.iter().any(|&v| v != 0.0));
}
