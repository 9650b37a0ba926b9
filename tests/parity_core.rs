//! Vanilla Gradients, Integrated Gradients and the visualizations against
//! fixtures written by PAIR saliency 0.2.1 (tests/reference/gen_core.py).

mod common;

use common::{TanhNet, assert_close, fixture, rel_err_f32};
use ndarray::Ix2;
use saliency::{CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey, VanillaGradients, visualize};

const TOPIC: &str = "core";

#[test]
fn vanilla_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "x");
    let mask = VanillaGradients::new()
        .get_mask(x.view(), &mut |b, _| {
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, net.grads(b)))
        })
        .unwrap();
    assert_close(
        "vanilla f64",
        mask.view(),
        fixture::<f64>(TOPIC, "vanilla_f64").view(),
        1e-6,
    );

    let x32 = x.mapv(|v| v as f32);
    let mask32 = VanillaGradients::new()
        .get_mask(x32.view(), &mut |b, _| {
            let g = net.grads(b.mapv(f64::from).view()).mapv(|v| v as f32);
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
        })
        .unwrap();
    let err = rel_err_f32(
        mask32.view(),
        fixture::<f32>(TOPIC, "vanilla_f32").mapv(f64::from).view(),
    );
    println!("parity vanilla f32: relative error {err:.3e} (tolerance 1e-4)");
    assert!(err <= 1e-4);
}

#[test]
fn integrated_gradients_matches_reference_for_every_batch_size() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "x");
    for bs in [1, 7, 25] {
        let mut calls = 0;
        let mask = IntegratedGradients::new()
            .steps(25)
            .batch_size(bs)
            .get_mask(x.view(), &mut |b, _| {
                calls += 1;
                assert!(b.shape()[0] <= bs);
                Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, net.grads(b)))
            })
            .unwrap();
        assert_eq!(calls, 25_usize.div_ceil(bs));
        let expected = fixture::<f64>(TOPIC, &format!("ig_steps25_batch{bs}_f64"));
        assert_close(&format!("ig f64 batch {bs}"), mask.view(), expected.view(), 1e-6);
    }
}

#[test]
fn integrated_gradients_with_custom_baseline_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "x");
    let baseline = fixture::<f64>(TOPIC, "baseline");
    let mask = IntegratedGradients::new()
        .steps(10)
        .batch_size(3)
        .baseline(baseline)
        .get_mask(x.view(), &mut |b, _| {
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, net.grads(b)))
        })
        .unwrap();
    assert_close(
        "ig f64 custom baseline",
        mask.view(),
        fixture::<f64>(TOPIC, "ig_steps10_baseline_f64").view(),
        1e-6,
    );
}

#[test]
fn integrated_gradients_f32_matches_reference() {
    let net = TanhNet::load(TOPIC);
    let x32 = fixture::<f64>(TOPIC, "x").mapv(|v| v as f32);
    let mask = IntegratedGradients::new()
        .steps(25)
        .batch_size(4)
        .get_mask(x32.view(), &mut |b, _| {
            let g = net.grads(b.mapv(f64::from).view()).mapv(|v| v as f32);
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
        })
        .unwrap();
    let expected = fixture::<f32>(TOPIC, "ig_steps25_batch4_f32").mapv(f64::from);
    let err = rel_err_f32(mask.view(), expected.view());
    println!("parity ig f32: relative error {err:.3e} (tolerance 1e-4)");
    assert!(err <= 1e-4);
}

#[test]
fn grayscale_matches_reference_and_diverging_keeps_zero() {
    let mask = fixture::<f64>(TOPIC, "ig_steps25_batch1_f64");
    for p in [99, 50, 100] {
        let gray = visualize::grayscale(mask.view(), f64::from(p)).unwrap();
        let expected = fixture::<f64>(TOPIC, &format!("grayscale_p{p}"));
        assert_close(
            &format!("grayscale p{p}"),
            gray.into_dyn().view(),
            expected.view(),
            1e-6,
        );

        // The documented difference: ours = 2 * reference - 1 wherever the
        // reference did not clip, i.e. where its value lies in [0, 1].
        let ours = visualize::diverging(mask.view(), f64::from(p)).unwrap();
        let reference = fixture::<f64>(TOPIC, &format!("diverging_reference_p{p}"));
        let reference = reference.into_dimensionality::<Ix2>().unwrap();
        let mut compared = 0;
        for (o, r) in ours.iter().zip(reference.iter()) {
            if (0.0..1.0).contains(r) {
                assert!((o - (2.0 * r - 1.0)).abs() <= 1e-12, "diverging {o} vs reference {r}");
                compared += 1;
            } else if *r >= 1.0 {
                assert_eq!(*o, 1.0);
            } else {
                // The reference sends values below -span to negative numbers.
                assert_eq!(*o, -1.0);
            }
        }
        let needed = if p == 50 { 1 } else { ours.len() / 2 };
        assert!(compared >= needed, "too few unclipped pixels to compare at p{p}");
        assert!(ours.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
