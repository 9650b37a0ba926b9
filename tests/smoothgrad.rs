//! SmoothGrad: reproducibility and its statistics, which is how parity with a
//! random reference is shown.

use ndarray::{ArrayD, ArrayViewD, array};
use saliency::{
    IntegratedGradients, ModelOutputs, OutputKey, Saliency, SaliencyError, SmoothGrad, SmoothGradParams,
    VanillaGradients,
};

fn quadratic(
    a: &ArrayD<f64>,
) -> impl FnMut(ArrayViewD<'_, f64>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, saliency::BoxError> + '_
{
    // f(x) = sum(a x^2): gradient 2 a x.
    move |b, _| Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, &b * a * 2.0))
}

#[test]
fn same_seed_gives_bit_identical_masks_and_other_seeds_differ() {
    let x = ArrayD::from_shape_fn(ndarray::IxDyn(&[40, 30, 3]), |i| {
        (i[0] * 7 + i[1] * 3 + i[2]) as f64 / 50.0
    });
    let a = x.mapv(|v| 1.0 + v);
    let run = |seed| {
        SmoothGrad::new(
            IntegratedGradients::new().steps(5).batch_size(2),
            SmoothGradParams::new().nsamples(4).seed(seed),
        )
        .get_mask(x.view(), &mut quadratic(&a))
        .unwrap()
    };
    let (m1, m2, m3) = (run(9), run(9), run(10));
    assert!(m1.iter().zip(m2.iter()).all(|(p, q)| p.to_bits() == q.to_bits()));
    assert!(m1.iter().zip(m3.iter()).any(|(p, q)| p != q));
}

#[cfg(feature = "rayon")]
#[test]
fn masks_do_not_depend_on_the_thread_count() {
    // Large enough for the noise and the IG passes to run in parallel.
    let x = ArrayD::from_shape_fn(ndarray::IxDyn(&[160, 160, 3]), |i| {
        ((i[0] * 13 + i[1] * 7 + i[2]) % 17) as f64
    });
    let a = x.mapv(|v| 0.1 * v - 0.5);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let params = SmoothGradParams::new().nsamples(3).seed(5);
            IntegratedGradients::new()
                .steps(12)
                .batch_size(12)
                .get_smoothed_mask(x.view(), &mut quadratic(&a), &params)
        })
        .unwrap()
    };
    let (one, two) = (run(1), run(2));
    assert!(one.iter().zip(two.iter()).all(|(p, q)| p.to_bits() == q.to_bits()));
}

#[test]
fn linear_model_without_magnitude_gives_the_gradient() {
    // Every noisy copy has the same gradient w, so the mean is w.
    let x = array![[0.2_f64, -1.0], [3.0, 0.5]].into_dyn();
    let w = array![[0.3_f64, -2.0], [1.5, 0.0]].into_dyn();
    let params = SmoothGradParams::new().magnitude(false).nsamples(30).seed(3);
    let mask = VanillaGradients::new()
        .get_smoothed_mask(
            x.view(),
            &mut |b, _| {
                let g = ndarray::stack(ndarray::Axis(0), &vec![w.view(); b.shape()[0]]).unwrap();
                Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
            },
            &params,
        )
        .unwrap();
    let worst = mask
        .iter()
        .zip(w.iter())
        .fold(0.0_f64, |d, (m, e)| d.max((m - e).abs()));
    println!("smoothgrad linear model: max |mask - w| {worst:.3e}");
    // Measured 0. The mean of 30 equal values can still round in the sum: a
    // few ulps allowed.
    for (m, e) in mask.iter().zip(w.iter()) {
        assert!((m - e).abs() <= 1e-15 * e.abs(), "{m} vs {e}");
    }
}

#[test]
fn quadratic_model_magnitude_mask_matches_expected_square() {
    // g = 2 a (x + n) with n ~ N(0, s^2), s = 0.15 * (max x - min x).
    // E[g^2] = 4 a^2 (x^2 + s^2); Var[g^2] = 2 t^4 + 4 m^2 t^2 with m = 2 a x, t = 2 a s.
    let x = array![-1.0, 0.0, 0.5, 2.0].into_dyn();
    let a = array![1.0, 0.5, -2.0, 0.25].into_dyn();
    let n = 4000;
    let s = 0.15 * 3.0;
    let params = SmoothGradParams::new().nsamples(n).seed(11);
    let mask = VanillaGradients::new()
        .get_smoothed_mask(x.view(), &mut quadratic(&a), &params)
        .unwrap();
    for i in 0..4 {
        let (m, t) = (2.0 * a[i] * x[i], 2.0 * a[i] * s);
        let expected = m * m + t * t;
        let se = ((2.0 * t.powi(4) + 4.0 * m * m * t * t) / n as f64).sqrt();
        let z = (mask[i] - expected) / se;
        println!("element {i}: mask {:.5} expected {expected:.5} z = {z:.2}", mask[i]);
        assert!(z.abs() <= 3.0, "element {i} is {z:.2} standard errors away");
    }
}

#[test]
fn bad_parameters_are_errors() {
    let x = array![1.0, 2.0].into_dyn();
    let mut model = |b: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.to_owned()))
    };
    let method = VanillaGradients::new();
    for params in [
        SmoothGradParams::new().nsamples(0),
        SmoothGradParams::new().stdev_spread(-0.1),
        SmoothGradParams::new().stdev_spread(f64::NAN),
        SmoothGradParams::new().stdev_spread(f64::INFINITY),
    ] {
        let err = method.get_smoothed_mask(x.view(), &mut model, &params).unwrap_err();
        assert!(matches!(err, SaliencyError::InvalidParameter { .. }), "{err}");
    }
    let nan = array![1.0, f64::NAN].into_dyn();
    let err = method
        .get_smoothed_mask(nan.view(), &mut model, &SmoothGradParams::new())
        .unwrap_err();
    assert!(matches!(err, SaliencyError::NonFiniteInput { .. }), "{err}");
}
