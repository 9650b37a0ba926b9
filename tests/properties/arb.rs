//! Generators shared by the properties: awkward shapes and values, extreme
//! parameters, and models that misbehave in every way the contract allows
//! a user's model to.

use ndarray::{ArrayD, ArrayViewD, Dimension, IxDyn};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use saliency::{BoxError, Float, ModelOutputs, OutputKey};
use std::cell::RefCell;
use std::rc::Rc;

/// `n` cases, times `PROPERTIES_SCALE` when that variable is set.
///
/// The cases come from a fixed seed, so that `cargo test` gives the same
/// verdict on every run and on every machine. For a sweep by hand,
/// `PROPERTIES_SEED=<u64>` picks another seed and `PROPERTIES_SEED=random`
/// a fresh one per run; a failure found that way is saved under
/// `tests/proptest-regressions/` and re-run first from then on.
pub fn cases(n: u32) -> ProptestConfig {
    let scale = std::env::var("PROPERTIES_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    let rng_seed = match std::env::var("PROPERTIES_SEED").ok().as_deref() {
        Some("random") => RngSeed::Random,
        Some(s) => RngSeed::Fixed(s.parse().expect("PROPERTIES_SEED is a u64 or `random`")),
        None => RngSeed::Fixed(FIXED_SEED),
    };
    ProptestConfig {
        cases: n.saturating_mul(scale.max(1)),
        rng_seed,
        ..ProptestConfig::default()
    }
}

const FIXED_SEED: u64 = 2026;

/// Values a user can hand over: ordinary ones most of the time, then zeros,
/// NaN, infinities, huge finite values and subnormals.
pub fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        12 => -4.0..4.0_f64,
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(1e300),
        1 => Just(-1e300),
        1 => Just(f64::from(f32::MAX)),
        1 => Just(-f64::from(f32::MAX)),
        1 => Just(f64::MAX),
        1 => Just(5e-324),
        1 => Just(-1e-310),
        1 => Just(1e-45),
    ]
}

/// Finite values only, still with the huge and the subnormal ones.
pub fn finite_value() -> impl Strategy<Value = f64> {
    value().prop_filter("finite", |v| v.is_finite())
}

/// Ordinary values only.
pub fn moderate_value() -> impl Strategy<Value = f64> {
    -4.0..4.0_f64
}

/// Any rank from 0 to 5, axes from 0 to `max_dim` long.
pub fn shape(max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=max_dim, 0..=5)
}

/// Image shapes (H x W or H x W x C, 1 to `max` pixels a side) most of the
/// time, any shape otherwise.
pub fn image_shape(max: usize) -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        5 => (1..=max, 1..=max, prop::option::of(1..=3_usize)).prop_map(|(h, w, c)| {
            let mut s = vec![h, w];
            s.extend(c);
            s
        }),
        1 => shape(4),
    ]
}

/// An array of the shape: mostly ordinary values (so that methods get past
/// their input checks), sometimes any.
pub fn array_of(shape: Vec<usize>) -> impl Strategy<Value = ArrayD<f64>> {
    let n: usize = shape.iter().product();
    prop_oneof![
        3 => prop::collection::vec(moderate_value(), n),
        1 => prop::collection::vec(finite_value(), n),
        1 => prop::collection::vec(value(), n),
    ]
    .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).expect("length is the shape's product"))
}

/// An array of any shape.
pub fn any_array(max_dim: usize) -> impl Strategy<Value = ArrayD<f64>> {
    shape(max_dim).prop_flat_map(array_of)
}

/// An image-like array.
pub fn image(max: usize) -> impl Strategy<Value = ArrayD<f64>> {
    image_shape(max).prop_flat_map(array_of)
}

/// Counts (steps, batch sizes, windows, samples): zero, small, and absurd.
pub fn count(small: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0_usize),
        8 => 1..=small,
        1 => Just(usize::MAX),
        1 => Just(usize::MAX / 2 + 1),
        1 => Just(1_usize << 40),
    ]
}

/// A float parameter (sigmas, fractions, spreads): ordinary, negative, zero,
/// huge, tiny and non-finite.
pub fn param(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => lo..=hi,
        1 => Just(0.0),
        1 => Just(-1.0),
        1 => Just(1e300),
        1 => Just(f64::MAX),
        1 => Just(5e-324),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

/// Percentiles: inside and outside 0..=100, and non-finite.
pub fn percentile() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..=100.0_f64,
        1 => Just(0.0),
        1 => Just(100.0),
        1 => Just(-0.5),
        1 => Just(100.5),
        1 => Just(1e300),
        1 => Just(f64::NAN),
        1 => Just(f64::NEG_INFINITY),
    ]
}

/// What a model does wrong, from its `after`-th call on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    Err,
    MissingKey,
    WrongBatch,
    WrongShape,
    WrongRank,
    Nan,
    Inf,
    Huge,
    Tiny,
}

/// A model: its fault, when the fault starts, and the shape of its
/// convolution layer (without the batch axis; any rank).
#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub fault: Fault,
    pub after: usize,
    pub conv: Vec<usize>,
}

pub fn model_spec() -> impl Strategy<Value = ModelSpec> {
    let fault = prop_oneof![
        6 => Just(Fault::None),
        1 => Just(Fault::Err),
        1 => Just(Fault::MissingKey),
        1 => Just(Fault::WrongBatch),
        1 => Just(Fault::WrongShape),
        1 => Just(Fault::WrongRank),
        1 => Just(Fault::Nan),
        1 => Just(Fault::Inf),
        1 => Just(Fault::Huge),
        1 => Just(Fault::Tiny),
    ];
    let conv = prop_oneof![
        6 => (1..=4_usize, 1..=4_usize, 1..=3_usize).prop_map(|(a, b, c)| vec![a, b, c]),
        1 => shape(3),
    ];
    (fault, 0..3_usize, conv).prop_map(|(fault, after, conv)| ModelSpec { fault, after, conv })
}

fn with_batch(batch: usize, rest: &[usize]) -> Vec<usize> {
    let mut s = vec![batch];
    s.extend_from_slice(rest);
    s
}

/// The sine of the mean of each batch row: bounded for any finite input.
fn row_means<F: Float>(batch: &ArrayViewD<'_, F>) -> Vec<f64> {
    let b = batch.shape().first().copied().unwrap_or(0);
    (0..b)
        .map(|i| {
            let row = batch.index_axis(ndarray::Axis(0), i);
            let n = row.len().max(1) as f64;
            (row.iter().map(|v| v.as_f64().sin()).sum::<f64>() / n).sin()
        })
        .collect()
}

/// The output for one key when the model behaves.
fn good_output<F: Float>(spec: &ModelSpec, batch: &ArrayViewD<'_, F>, key: OutputKey) -> ArrayD<F> {
    let b = batch.shape().first().copied().unwrap_or(0);
    let means = row_means(batch);
    let conv_shape = with_batch(b, &spec.conv);
    let conv = |phase: f64| {
        ArrayD::from_shape_fn(IxDyn(&conv_shape), |i| {
            let k: usize = i.slice().iter().skip(1).sum();
            let m = means.get(i[0]).copied().unwrap_or(0.0);
            F::from_f64_lossy((m + phase + k as f64 * 0.37).sin())
        })
    };
    match key {
        OutputKey::InputOutputGradients => batch.mapv(|v| F::from_f64_lossy(v.as_f64().sin() + 0.5)),
        OutputKey::GuidedInputOutputGradients => batch.mapv(|v| F::from_f64_lossy(v.as_f64().cos().max(0.0))),
        OutputKey::ConvolutionLayerValues => conv(0.3),
        OutputKey::ConvolutionOutputGradients => conv(1.1),
        OutputKey::OutputLayerValues => ArrayD::from_shape_fn(IxDyn(&[b]), |i| F::from_f64_lossy(means[i[0]])),
        // OutputKey is non-exhaustive: a key added later gets a batch-shaped zero.
        _ => batch.mapv(|_| F::from_f64_lossy(0.0)),
    }
}

/// One call the model received: what was asked, the fault in effect, and
/// the shape of every output it returned (after the fault).
#[derive(Clone, Debug)]
pub struct Call {
    pub batch: Vec<usize>,
    /// Every value of the batch was finite.
    pub finite: bool,
    pub keys: Vec<OutputKey>,
    pub fault: Fault,
    pub returned: Vec<(OutputKey, Vec<usize>)>,
}

impl Call {
    /// The shape the model returned for `key`, if it returned one.
    pub fn returned(&self, key: OutputKey) -> Option<&[usize]> {
        self.returned.iter().find(|(k, _)| *k == key).map(|(_, s)| &s[..])
    }
}

/// The calls a model received, in order.
pub type Trace = Rc<RefCell<Vec<Call>>>;

/// The model closure of a spec.
pub fn model<F: Float>(
    spec: ModelSpec,
) -> impl FnMut(ArrayViewD<'_, F>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<F>, BoxError> {
    traced_model(spec, Trace::default())
}

/// The model closure of a spec, which records the calls it receives in
/// `trace`.
pub fn traced_model<F: Float>(
    spec: ModelSpec,
    trace: Trace,
) -> impl FnMut(ArrayViewD<'_, F>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<F>, BoxError> {
    move |batch: ArrayViewD<'_, F>, keys: &saliency::ModelRequest<'_>| {
        let calls = trace.borrow().len();
        let fault = if calls >= spec.after { spec.fault } else { Fault::None };
        let mut call = Call {
            batch: batch.shape().to_vec(),
            finite: batch.iter().all(|v| v.is_finite()),
            keys: keys.to_vec(),
            fault,
            returned: Vec::new(),
        };
        let outputs = outputs_of(&spec, fault, &batch, keys);
        if let Ok(out) = &outputs {
            call.returned = out
                .keys()
                .filter_map(|k| out.get(k).map(|a| (k, a.shape().to_vec())))
                .collect();
        }
        trace.borrow_mut().push(call);
        outputs
    }
}

/// What the model of `spec` returns for one call with `fault` in effect.
fn outputs_of<F: Float>(
    spec: &ModelSpec,
    fault: Fault,
    batch: &ArrayViewD<'_, F>,
    keys: &[OutputKey],
) -> Result<ModelOutputs<F>, BoxError> {
    if fault == Fault::Err {
        return Err("the model failed".into());
    }
    let mut out = ModelOutputs::new();
    if fault == Fault::MissingKey {
        return Ok(out);
    }
    let b = batch.shape().first().copied().unwrap_or(0);
    for &key in keys {
        let good = good_output(spec, batch, key);
        let value = match fault {
            Fault::WrongBatch => ArrayD::zeros(IxDyn(&with_batch(b + 1, &good.shape()[1..]))),
            Fault::WrongShape => {
                let mut s = good.shape().to_vec();
                s.push(2);
                ArrayD::zeros(IxDyn(&s))
            }
            Fault::WrongRank => ArrayD::zeros(IxDyn(&[])),
            Fault::Nan | Fault::Inf => {
                let mut g = good;
                let bad = if fault == Fault::Nan {
                    F::nan()
                } else {
                    F::neg_infinity()
                };
                if let Some(v) = g.iter_mut().last() {
                    *v = bad;
                }
                g
            }
            Fault::Huge => good.mapv(|v| v * F::from_f64_lossy(1e300)),
            Fault::Tiny => good.mapv(|v| v * F::from_f64_lossy(1e-310)),
            _ => good,
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// Whether every value is finite.
pub fn all_finite<F: Float>(a: &ArrayD<F>) -> bool {
    a.iter().all(|v| v.is_finite())
}
