//! Vanilla Gradients, Integrated Gradients and the visualizations against
//! fixtures written by PAIR saliency 0.2.1 (tests/reference/gen_core.py).

mod common;

use common::{TanhNet, assert_close, fixture, rel_err_f32};
use ndarray::{ArrayD, ArrayViewD, Axis, Ix2, Slice};
use saliency::{IntegratedGradients, ModelOutputs, OutputKey, Saliency, VanillaGradients, visualize};

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
    // Measured 4.2e-16: Rust's and NumPy's tanh differ in the last bit.
    assert_close(
        "vanilla f64",
        mask.view(),
        fixture::<f64>(TOPIC, "vanilla_f64").view(),
        5e-15,
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
    // Measured 0: both round the same f64 gradient to f32 once. Those f64
    // values differ in the last bit (see above), which can flip one f32
    // rounding: one f32 epsilon.
    let tol = f64::from(f32::EPSILON);
    println!("parity vanilla f32: relative error {err:.3e} (tolerance {tol:.1e})");
    assert!(err <= tol, "{err:e}");
}

/// A model replaying a reference run recorded by gen_core.py: call by call it
/// checks that the batch equals the one the reference's model received, and
/// returns the gradients the reference's model returned (random numbers, not
/// a function of the input), and keeps the largest input difference seen.
struct Replay {
    inputs: ArrayD<f64>,
    grads: ArrayD<f64>,
    sizes: Vec<usize>,
    calls: usize,
    offset: usize,
    max_input_diff: f64,
}

impl Replay {
    fn load(name: &str) -> Self {
        Replay {
            inputs: fixture::<f64>(TOPIC, &format!("recorded_{name}_inputs")),
            grads: fixture::<f64>(TOPIC, &format!("recorded_{name}_grads")),
            sizes: fixture::<i64>(TOPIC, &format!("recorded_{name}_batch_sizes"))
                .iter()
                .map(|&n| usize::try_from(n).unwrap())
                .collect(),
            calls: 0,
            offset: 0,
            max_input_diff: 0.0,
        }
    }

    fn call(&mut self, batch: ArrayViewD<'_, f64>) -> ModelOutputs<f64> {
        let k = self.calls;
        assert!(
            k < self.sizes.len(),
            "call {k}: the reference made only {} calls",
            self.sizes.len()
        );
        let n = self.sizes[k];
        assert_eq!(batch.shape()[0], n, "call {k}: batch size");
        let rows = Slice::from(self.offset..self.offset + n);
        let expected = self.inputs.slice_axis(Axis(0), rows);
        assert_eq!(batch.shape(), expected.shape(), "call {k}: batch shape");
        let diff = common::max_abs_diff(batch.iter(), expected.iter());
        self.max_input_diff = self.max_input_diff.max(diff);
        let grads = self.grads.slice_axis(Axis(0), rows).to_owned();
        self.calls += 1;
        self.offset += n;
        ModelOutputs::new().with(OutputKey::InputOutputGradients, grads)
    }

    fn finish(&self, label: &str) {
        assert_eq!(self.calls, self.sizes.len(), "{label}: number of calls");
        println!(
            "parity {label}: model inputs differ by at most {:.3e}",
            self.max_input_diff
        );
    }
}

#[test]
fn vanilla_replays_recorded_model_calls() {
    let x = fixture::<f64>(TOPIC, "x");
    let mut replay = Replay::load("vanilla");
    let mask = VanillaGradients::new()
        .get_mask(x.view(), &mut |b, _| Ok(replay.call(b)))
        .unwrap();
    replay.finish("vanilla recorded calls");
    // The batch is the input itself and the mask the returned gradient: no
    // arithmetic, so both are exact.
    assert_eq!(
        replay.max_input_diff, 0.0,
        "the model's input differs from the reference's"
    );
    assert_close(
        "vanilla recorded calls",
        mask.view(),
        fixture::<f64>(TOPIC, "recorded_vanilla_mask").view(),
        0.0,
    );
}

#[test]
fn integrated_gradients_replays_recorded_model_calls() {
    let x = fixture::<f64>(TOPIC, "x");
    let baseline = fixture::<f64>(TOPIC, "baseline");
    let mut replay = Replay::load("ig_steps10_batch4_baseline");
    let mask = IntegratedGradients::new()
        .steps(10)
        .batch_size(4)
        .baseline(baseline)
        .get_mask(x.view(), &mut |b, _| Ok(replay.call(b)))
        .unwrap();
    replay.finish("ig recorded calls");
    // Path points are computed as the reference computes them.
    assert_eq!(replay.max_input_diff, 0.0, "path points differ from the reference's");
    // Measured 5.1e-8: the reference sums the gradients in float32.
    assert_close(
        "ig recorded calls",
        mask.view(),
        fixture::<f64>(TOPIC, "recorded_ig_steps10_batch4_baseline_mask").view(),
        1e-6,
    );
}

#[test]
fn integrated_gradients_matches_reference_for_every_batch_size() {
    let net = TanhNet::load(TOPIC);
    let x = fixture::<f64>(TOPIC, "x");
    // Measured 9.3e-8 / 4.1e-8 / 3.1e-8: the reference sums in float32.
    for (bs, tol) in [(1, 1e-6), (7, 5e-7), (25, 5e-7)] {
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
        assert_close(&format!("ig f64 batch {bs}"), mask.view(), expected.view(), tol);
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
    // Measured 4.5e-8 (float32 sums in the reference).
    assert_close(
        "ig f64 custom baseline",
        mask.view(),
        fixture::<f64>(TOPIC, "ig_steps10_baseline_f64").view(),
        5e-7,
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
    // Measured 1.8e-7.
    println!("parity ig f32: relative error {err:.3e} (tolerance 2e-6)");
    assert!(err <= 2e-6, "{err:e}");
}

#[test]
fn grayscale_matches_reference_and_diverging_keeps_zero() {
    let mask = fixture::<f64>(TOPIC, "ig_steps25_batch1_f64");
    for p in [99, 50, 100] {
        let gray = visualize::grayscale(mask.view(), f64::from(p)).unwrap();
        let expected = fixture::<f64>(TOPIC, &format!("grayscale_p{p}"));
        // Measured 0: the same additions, percentile interpolation and
        // division in the same order, on the same values.
        assert_close(&format!("grayscale p{p}"), gray.into_dyn().view(), expected.view(), 0.0);

        // The documented difference, over every pixel: ours =
        // clip(2 * reference - 1, -1, 1). The reference maps [-span, span]
        // to [0, 1], clips above 1 but not below 0.
        let ours = visualize::diverging(mask.view(), f64::from(p)).unwrap();
        let reference = fixture::<f64>(TOPIC, &format!("diverging_reference_p{p}"));
        let reference = reference.into_dimensionality::<Ix2>().unwrap();
        assert_eq!(ours.shape(), reference.shape());
        let expected = reference.mapv(|r| (2.0 * r - 1.0).clamp(-1.0, 1.0));
        let diff = common::max_abs_diff(ours.iter(), expected.iter());
        let inside = reference.iter().filter(|r| (0.0..1.0).contains(*r)).count();
        let below = reference.iter().filter(|&&r| r < 0.0).count();
        let above = reference.iter().filter(|&&r| r >= 1.0).count();
        println!(
            "parity diverging p{p}: max |ours - clip(2 reference - 1)| {diff:.3e} (tolerance 5e-15); \
             reference in [0, 1): {inside}, below 0: {below}, at or above 1: {above}"
        );
        // Measured 2.2e-16 (one rounding of values near 1).
        assert!(diff <= 5e-15, "diverging p{p}: differs by {diff:e}");
        let needed = if p == 50 { 1 } else { ours.len() / 2 };
        assert!(inside >= needed, "too few unclipped pixels to compare at p{p}");
        assert!(ours.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
