//! Bad input to the core methods and visualizations gives typed errors, never
//! a panic.

use ndarray::{ArrayD, ArrayViewD, IxDyn, array};
use saliency::{
    BoxError, CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey, Saliency, SaliencyError, SmoothGradParams,
    VanillaGradients, visualize,
};

type ModelResult = Result<ModelOutputs<f64>, BoxError>;

fn good(b: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>) -> ModelResult {
    Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.mapv(|v| 2.0 * v)))
}

fn methods() -> Vec<Box<dyn CoreSaliency<f64>>> {
    vec![
        Box::new(VanillaGradients::new()),
        Box::new(IntegratedGradients::new().steps(4).batch_size(3)),
        Box::new(saliency::SmoothGrad::new(
            VanillaGradients::new(),
            SmoothGradParams::new().nsamples(2).seed(0),
        )),
    ]
}

#[test]
fn empty_nan_infinite_and_scalar_inputs() {
    let empty = ArrayD::<f64>::zeros(IxDyn(&[0, 3]));
    let nan = array![1.0, f64::NAN, 2.0].into_dyn();
    let inf = array![[1.0, f64::NEG_INFINITY]].into_dyn();
    let scalar = ArrayD::<f64>::from_elem(IxDyn(&[]), 1.0);
    for m in methods() {
        let name = m.name();
        assert!(
            matches!(
                m.get_mask(empty.view(), &mut good),
                Err(SaliencyError::EmptyInput { .. })
            ),
            "{name}"
        );
        let err = m.get_mask(nan.view(), &mut good).unwrap_err();
        assert!(
            matches!(
                err,
                SaliencyError::NonFiniteInput {
                    count: 1,
                    first_index: 1,
                    ..
                }
            ),
            "{name}: {err}"
        );
        assert!(
            matches!(
                m.get_mask(inf.view(), &mut good),
                Err(SaliencyError::NonFiniteInput { .. })
            ),
            "{name}"
        );
        assert!(
            matches!(
                m.get_mask(scalar.view(), &mut good),
                Err(SaliencyError::InvalidRank { .. })
            ),
            "{name}"
        );
    }
}

#[test]
fn bad_models() {
    let x = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
    let mut failing =
        |_: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| -> ModelResult { Err("device lost".into()) };
    let mut wrong_key = |b: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| -> ModelResult {
        Ok(ModelOutputs::new().with(OutputKey::GuidedInputOutputGradients, b.to_owned()))
    };
    let mut wrong_shape = |b: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| -> ModelResult {
        Ok(ModelOutputs::new().with(
            OutputKey::InputOutputGradients,
            ArrayD::zeros(IxDyn(&[b.shape()[0], 4])),
        ))
    };
    let mut wrong_batch = |b: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| -> ModelResult {
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, ArrayD::zeros(IxDyn(&b.shape()[1..]))))
    };
    let mut nan_output = |b: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| -> ModelResult {
        let mut g = b.to_owned();
        g.iter_mut().last().into_iter().for_each(|v| *v = f64::NAN);
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
    };
    for m in methods() {
        let name = m.name();
        let err = m.get_mask(x.view(), &mut failing).unwrap_err();
        assert!(
            matches!(err, SaliencyError::Model(_))
                && std::error::Error::source(&err).is_some_and(|s| s.to_string().contains("device lost")),
            "{name}: {err}"
        );
        let err = m.get_mask(x.view(), &mut wrong_key).unwrap_err();
        assert!(
            matches!(
                err,
                SaliencyError::MissingOutput {
                    key: OutputKey::InputOutputGradients
                }
            ),
            "{name}"
        );
        let err = m.get_mask(x.view(), &mut wrong_shape).unwrap_err();
        assert!(
            matches!(err, SaliencyError::OutputShapeMismatch { .. }),
            "{name}: {err}"
        );
        let err = m.get_mask(x.view(), &mut wrong_batch).unwrap_err();
        assert!(
            matches!(err, SaliencyError::OutputBatchMismatch { .. }),
            "{name}: {err}"
        );
        let err = m.get_mask(x.view(), &mut nan_output).unwrap_err();
        assert!(
            matches!(err, SaliencyError::NonFiniteOutput { count: 1, .. }),
            "{name}: {err}"
        );
    }
}

#[test]
fn integrated_gradients_parameters() {
    let x = array![1.0, 2.0].into_dyn();
    let err = IntegratedGradients::new()
        .steps(0)
        .get_mask(x.view(), &mut good)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "steps", .. }),
        "{err}"
    );
    let err = IntegratedGradients::new()
        .batch_size(0)
        .get_mask(x.view(), &mut good)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "batch_size", .. }),
        "{err}"
    );
    let err = IntegratedGradients::new()
        .baseline(array![0.0, 0.0, 0.0])
        .get_mask(x.view(), &mut good)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::ShapeMismatch { what: "baseline", .. }),
        "{err}"
    );
    let err = IntegratedGradients::new()
        .baseline(array![0.0, f64::NAN])
        .get_mask(x.view(), &mut good)
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::NonFiniteInput { what: "baseline", .. }),
        "{err}"
    );
    // One step is the reference's left Riemann point alone: the gradient at the baseline.
    let mask = IntegratedGradients::new()
        .steps(1)
        .batch_size(4)
        .get_mask(x.view(), &mut good)
        .unwrap();
    assert_eq!(mask, array![0.0, 0.0].into_dyn());
}

#[test]
fn visualizations() {
    let mask = ArrayD::<f64>::zeros(IxDyn(&[2, 2, 2, 1]));
    assert!(matches!(
        visualize::grayscale(mask.view(), 99.0),
        Err(SaliencyError::InvalidRank { actual: 4, .. })
    ));
    let mask = ArrayD::<f64>::zeros(IxDyn(&[3, 0, 3]));
    assert!(matches!(
        visualize::diverging(mask.view(), 99.0),
        Err(SaliencyError::EmptyInput { .. })
    ));
    let mask = ArrayD::<f64>::from_elem(IxDyn(&[3, 3, 3]), f64::INFINITY);
    assert!(matches!(
        visualize::grayscale(mask.view(), 99.0),
        Err(SaliencyError::NonFiniteInput { .. })
    ));
    let mask = ArrayD::<f64>::zeros(IxDyn(&[3, 3]));
    assert!(matches!(
        visualize::grayscale(mask.view(), 101.0),
        Err(SaliencyError::InvalidParameter { .. })
    ));
}
