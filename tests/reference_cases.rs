//! The reference's own test cases for gradients, integrated gradients and the
//! SmoothGrad base method (saliency/core/*_test.py of PAIR saliency 0.2.1),
//! ported.

use ndarray::{Array1, ArrayD, ArrayViewD, array};
use saliency::{
    CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey, Progress, Saliency, SaliencyError, SmoothGradParams,
    VanillaGradients,
};

/// d/dx of f(x, y, z) = 5x + y^2 + sin(z), row by row: [5, 2y, cos z].
fn gradient_rows(batch: ArrayViewD<'_, f64>) -> ArrayD<f64> {
    let mut g = batch.to_owned();
    for mut row in g.outer_iter_mut() {
        let (y, z) = (row[1], row[2]);
        row[0] = 5.0;
        row[1] = 2.0 * y;
        row[2] = z.cos();
    }
    g
}

fn y_fn(v: &Array1<f64>) -> Array1<f64> {
    array![5.0 * v[0], v[1] * v[1], v[2].sin()]
}

#[test]
fn gradients_get_mask() {
    let mut calls = 0;
    let mut keys_seen = Vec::new();
    let x = array![3.0, 2.0, 1.0];
    let mask = VanillaGradients::new()
        .get_mask(x.view().into_dyn(), &mut |b, keys| {
            calls += 1;
            keys_seen = keys.to_vec();
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, gradient_rows(b)))
        })
        .unwrap();
    // The reference asserts 2 decimals; the mask is the model's gradient
    // itself, so it is exact.
    let expected = [5.0, 4.0, 1f64.cos()];
    assert_eq!(mask.iter().copied().collect::<Vec<_>>(), expected);
    assert_eq!(calls, 1);
    assert_eq!(keys_seen, [OutputKey::InputOutputGradients]);
}

#[test]
fn gradients_get_mask_error() {
    // The bad model drops the batch axis: (3,) instead of (1, 3).
    let x = array![3.0, 2.0, 1.0];
    let err = VanillaGradients::new()
        .get_mask(x.view().into_dyn(), &mut |b, _| {
            let g = gradient_rows(b).index_axis_move(ndarray::Axis(0), 0);
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
        })
        .unwrap_err();
    assert!(matches!(err, SaliencyError::OutputBatchMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("[1, 3]") && msg.contains("[3]"), "{msg}");
}

fn ig_case(steps: usize, batch_size: usize) -> (ArrayD<f64>, usize) {
    let x = array![1.0, 2.0, 3.0];
    let baseline = array![0.5, 1.0, 1.0];
    let mut calls = 0;
    let mask = IntegratedGradients::new()
        .steps(steps)
        .batch_size(batch_size)
        .baseline(baseline)
        .get_mask(x.view().into_dyn(), &mut |b, keys| {
            assert_eq!(keys, [OutputKey::InputOutputGradients]);
            calls += 1;
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, gradient_rows(b)))
        })
        .unwrap();
    (mask, calls)
}

fn assert_completeness(mask: &ArrayD<f64>) {
    // Each variable is independent, so its attribution is y(x) - y(baseline).
    let expected = y_fn(&array![1.0, 2.0, 3.0]) - y_fn(&array![0.5, 1.0, 1.0]);
    let worst = mask
        .iter()
        .zip(expected.iter())
        .fold(0.0_f64, |d, (m, e)| d.max((m - e).abs()));
    println!("completeness: max |difference| {worst:.3e}");
    // The reference asserts 2 decimals (1.5e-2); about 1000 steps leave
    // 2.5e-4 (measured, the sum's discretisation).
    assert!(worst <= 5e-3, "{mask} vs {expected}");
}

#[test]
fn integrated_gradients_get_mask() {
    let (mask, calls) = ig_case(1000, 1);
    assert_completeness(&mask);
    assert_eq!(calls, 1000);
}

#[test]
fn integrated_gradients_get_mask_batched() {
    let (mask, calls) = ig_case(1001, 500);
    assert_completeness(&mask);
    assert_eq!(calls, 3); // ceil(1001 / 500)
}

#[test]
fn integrated_gradients_get_mask_single_batch() {
    let (mask, calls) = ig_case(999, 1000);
    assert_completeness(&mask);
    assert_eq!(calls, 1);
}

#[test]
fn integrated_gradients_get_mask_error() {
    let x = array![1.0, 2.0, 3.0];
    let err = IntegratedGradients::new()
        .steps(2001)
        .batch_size(500)
        .baseline(array![0.5, 1.0, 1.0])
        .get_mask(x.view().into_dyn(), &mut |b, _| {
            let g = gradient_rows(b).index_axis_move(ndarray::Axis(0), 0);
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("[500, 3]") && msg.contains("[3]"), "{msg}");
}

/// A method that counts its calls and returns a fixed mask.
struct Counting(std::sync::atomic::AtomicUsize);

impl CoreSaliency<f64> for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn get_mask_dyn(
        &self,
        x: ArrayViewD<'_, f64>,
        _model: &mut dyn saliency::CallModelFunction<f64>,
        _progress: &mut dyn FnMut(Progress),
    ) -> saliency::Result<ArrayD<f64>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ArrayD::from_elem(x.raw_dim(), 0.5))
    }
}

/// A method of one's own gets the calls on arrays of any dimension by
/// naming its mask's dimension.
impl Saliency<f64> for Counting {
    type MaskDim<D: ndarray::Dimension> = D;
}

#[test]
fn get_smoothed_mask_calls_get_mask_nsamples_times() {
    let method = Counting(std::sync::atomic::AtomicUsize::new(0));
    let x = array![3.0, 2.0, 1.0];
    let params = SmoothGradParams::new().nsamples(20).seed(1);
    let mask = method
        .get_smoothed_mask(x.view().into_dyn(), &mut |_, _| Ok(ModelOutputs::new()), &params)
        .unwrap();
    assert_eq!(method.0.load(std::sync::atomic::Ordering::Relaxed), 20);
    assert!(mask.iter().all(|&m| m == 0.25)); // magnitude: mean of 0.5^2
}

#[test]
fn integrated_gradients_reports_progress_per_batch() {
    let x = array![1.0, 2.0, 3.0];
    let mut reports = Vec::new();
    IntegratedGradients::new()
        .steps(10)
        .batch_size(4)
        .get_mask_with_progress(
            x.view().into_dyn(),
            &mut |b, _| Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, gradient_rows(b))),
            &mut |p| reports.push((p.done, p.total)),
        )
        .unwrap();
    assert_eq!(reports, [(4, 10), (8, 10), (10, 10)]);
}
