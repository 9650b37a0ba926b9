//! Guided Backpropagation without any framework: the guided-ReLU rule on
//! arrays against hand computation, the method on a hand-written ReLU
//! network, under SmoothGrad, and on bad model answers.

use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Axis, Ix2, array};
use saliency::methods::guided_backprop::guided_relu_backward;
use saliency::{BoxError, GuidedBackprop, ModelOutputs, OutputKey, Saliency, SaliencyError, SmoothGradParams};

#[test]
fn guided_rule_keeps_only_positive_gradients_at_active_units() {
    // Every sign combination, and the zero boundaries on both sides (the rule
    // is strict: a zero input or a zero gradient passes nothing).
    let x = array![[2.0_f64, 2.0, -2.0, -2.0], [0.0, 0.0, 1e-9, 3.0]];
    let g = array![[0.5_f64, -0.5, 0.5, -0.5], [1.0, -1.0, 4.0, 0.0]];
    let expected = array![[0.5_f64, 0.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]];
    assert_eq!(guided_relu_backward(x.view(), g.view()).unwrap(), expected);

    // The same in f32 and through non-contiguous (transposed) views.
    let x32 = x.mapv(|v| v as f32);
    let g32 = g.mapv(|v| v as f32);
    let out = guided_relu_backward(x32.t(), g32.t()).unwrap();
    assert_eq!(out, expected.t().mapv(|v| v as f32));
}

#[test]
fn guided_rule_rejects_mismatched_shapes() {
    let x = Array2::<f64>::zeros((2, 3));
    let g = Array2::<f64>::zeros((3, 2));
    let err = guided_relu_backward(x.view(), g.view()).unwrap_err();
    assert!(
        matches!(&err, SaliencyError::ShapeMismatch { expected, actual, .. } if expected == &[2, 3] && actual == &[3, 2]),
        "{err}"
    );
}

/// f(x) = v . relu(W x + b): 3 inputs, 4 hidden units, one output.
struct Net {
    w: Array2<f64>,
    b: Array1<f64>,
    v: Array1<f64>,
}

impl Net {
    fn new() -> Self {
        Net {
            w: array![[1.0, -2.0, 0.5], [0.5, 1.0, 1.0], [-1.0, 0.0, 2.0], [2.0, 1.0, -1.0]],
            b: array![0.0, -1.0, 0.5, 0.25],
            v: array![2.0, -1.0, 3.0, 0.5],
        }
    }

    /// Both the ordinary and the guided input gradient, by the chain rule.
    fn gradients(&self, x: ArrayViewD<'_, f64>) -> Result<(Array2<f64>, Array2<f64>), BoxError> {
        let x = x.into_dimensionality::<Ix2>()?;
        let mut plain = Array2::zeros(x.raw_dim());
        let mut guided = Array2::zeros(x.raw_dim());
        for ((xb, mut pb), mut gb) in x.outer_iter().zip(plain.outer_iter_mut()).zip(guided.outer_iter_mut()) {
            let pre = self.w.dot(&xb) + &self.b;
            let relu_grad = pre.mapv(|p| if p > 0.0 { 1.0 } else { 0.0 }) * &self.v;
            pb.assign(&self.w.t().dot(&relu_grad));
            gb.assign(&self.w.t().dot(&guided_relu_backward(pre.view(), self.v.view())?));
        }
        Ok((plain, guided))
    }
}

#[test]
fn guided_backprop_on_a_relu_network_matches_hand_computation() {
    let net = Net::new();
    let x = array![1.0_f64, 0.5, 0.25];
    // Pre-activations W x + b = (1 - 1 + 0.125, 0.5 + 0.5 + 0.25 - 1, -1 + 0.5 + 0.5, 2 + 0.5 - 0.25 + 0.25)
    //                          = (0.125, 0.25, 0, 2.5).
    // Active units 0, 1, 3 (unit 2 sits at exactly 0). Incoming gradient v = (2, -1, 3, 0.5):
    //   ordinary: keeps units 0, 1, 3   -> (2, -1, 0, 0.5)
    //   guided:   also drops unit 1 (v < 0) -> (2, 0, 0, 0.5)
    // Guided mask = W^T (2, 0, 0, 0.5) = (2 + 1, -4 + 0.5, 1 - 0.5) = (3, -3.5, 0.5).
    // Vanilla mask = W^T (2, -1, 0, 0.5) = (2 - 0.5 + 1, -4 - 1 + 0.5, 1 - 1 - 0.5) = (2.5, -4.5, -0.5).
    let mut calls = 0;
    let mut model =
        |batch: ArrayViewD<'_, f64>, keys: &saliency::ModelRequest<'_>| -> Result<ModelOutputs<f64>, BoxError> {
            calls += 1;
            let (plain, guided) = net.gradients(batch)?;
            let mut out = ModelOutputs::new();
            for &key in keys {
                match key {
                    OutputKey::InputOutputGradients => out.insert(key, plain.clone()),
                    OutputKey::GuidedInputOutputGradients => out.insert(key, guided.clone()),
                    _ => None,
                };
            }
            Ok(out)
        };
    let guided = GuidedBackprop::new().get_mask(x.view().into_dyn(), &mut model).unwrap();
    assert_eq!(guided, array![3.0, -3.5, 0.5].into_dyn());
    let vanilla = saliency::VanillaGradients::new()
        .get_mask(x.view().into_dyn(), &mut model)
        .unwrap();
    assert_eq!(vanilla, array![2.5, -4.5, -0.5].into_dyn());
    assert_eq!(calls, 2);
}

#[test]
fn guided_backprop_asks_for_the_guided_key_only_and_checks_the_answer() {
    let x = array![[0.5_f32, -1.0], [2.0, 0.0]].into_dyn();

    // The key asked for, the batch axis added.
    let mut seen = Vec::new();
    GuidedBackprop::new()
        .get_mask(x.view(), &mut |batch, keys| {
            seen.push((keys.to_vec(), batch.shape().to_vec()));
            Ok(ModelOutputs::new().with(OutputKey::GuidedInputOutputGradients, batch.to_owned()))
        })
        .unwrap();
    assert_eq!(seen, [(vec![OutputKey::GuidedInputOutputGradients], vec![1, 2, 2])]);

    // Answering with the ordinary gradient is a missing output.
    let err = GuidedBackprop::new()
        .get_mask(x.view(), &mut |batch, _| {
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.to_owned()))
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            SaliencyError::MissingOutput {
                key: OutputKey::GuidedInputOutputGradients
            }
        ),
        "{err}"
    );

    // Wrong shape and non-finite values are named.
    let err = GuidedBackprop::new()
        .get_mask(x.view(), &mut |_, _| {
            Ok(ModelOutputs::new().with(OutputKey::GuidedInputOutputGradients, ArrayD::<f32>::zeros(vec![1, 4])))
        })
        .unwrap_err();
    assert!(matches!(err, SaliencyError::OutputShapeMismatch { .. }), "{err}");
    let err = GuidedBackprop::new()
        .get_mask(x.view(), &mut |batch, _| {
            Ok(ModelOutputs::new().with(OutputKey::GuidedInputOutputGradients, batch.mapv(|v| v / 0.0)))
        })
        .unwrap_err();
    assert!(matches!(err, SaliencyError::NonFiniteOutput { .. }), "{err}");

    // Bad input never reaches the model.
    let empty = ArrayD::<f32>::zeros(vec![0, 3]);
    let err = GuidedBackprop::new()
        .get_mask(empty.view(), &mut |_, _| unreachable!("the model must not be called"))
        .unwrap_err();
    assert!(matches!(err, SaliencyError::EmptyInput { .. }), "{err}");
}

#[test]
fn guided_backprop_under_smoothgrad() {
    // The network's guided gradient is piecewise constant in x; with the noise
    // switched off (spread 0) every sample is the hand-computed mask above,
    // so the mean is that mask and the magnitude mean is its square.
    let net = Net::new();
    let x = array![1.0_f64, 0.5, 0.25].into_dyn();
    let mut model =
        |batch: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| -> Result<ModelOutputs<f64>, BoxError> {
            let (_, guided) = net.gradients(batch)?;
            Ok(ModelOutputs::new().with(OutputKey::GuidedInputOutputGradients, guided))
        };
    let params = SmoothGradParams::new().stdev_spread(0.0).nsamples(5).magnitude(false);
    let mean = GuidedBackprop::new()
        .get_smoothed_mask(x.view(), &mut model, &params)
        .unwrap();
    assert_eq!(mean, array![3.0, -3.5, 0.5].into_dyn());
    let params = params.magnitude(true);
    let squares = GuidedBackprop::new()
        .get_smoothed_mask(x.view(), &mut model, &params)
        .unwrap();
    assert_eq!(squares, array![9.0, 12.25, 0.25].into_dyn());

    // With noise: the mean of the per-sample masks, each computed on its own
    // noisy copy, and reproducible from the seed.
    let params = SmoothGradParams::new()
        .stdev_spread(0.3)
        .nsamples(40)
        .magnitude(false)
        .seed(11);
    let mut inputs = Vec::new();
    let mut recording =
        |batch: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| -> Result<ModelOutputs<f64>, BoxError> {
            inputs.push(batch.index_axis(Axis(0), 0).to_owned());
            let (_, guided) = net.gradients(batch)?;
            Ok(ModelOutputs::new().with(OutputKey::GuidedInputOutputGradients, guided))
        };
    let smoothed = GuidedBackprop::new()
        .get_smoothed_mask(x.view(), &mut recording, &params)
        .unwrap();
    assert_eq!(inputs.len(), 40);
    let mut expected = ArrayD::<f64>::zeros(x.raw_dim());
    for input in &inputs {
        let (_, guided) = net.gradients(input.view().insert_axis(Axis(0))).unwrap();
        expected = expected + guided.index_axis(Axis(0), 0).into_dyn();
    }
    expected /= 40.0;
    for (s, e) in smoothed.iter().zip(expected.iter()) {
        assert!((s - e).abs() <= 1e-12, "{s} vs {e}");
    }
    // The noise changed the activation pattern for some samples, so the
    // smoothed mask is not the noiseless one.
    assert_ne!(smoothed, array![3.0, -3.5, 0.5].into_dyn());
    let again = GuidedBackprop::new()
        .get_smoothed_mask(x.view(), &mut model, &params)
        .unwrap();
    assert_eq!(smoothed, again);
}
