//! What a method must return for a given input, parameters and model: a
//! mask when everything is in order, and otherwise the one error that names
//! what is wrong.
//!
//! The input and parameter checks are stated as sets: when several things
//! are wrong at once, the error of any of them will do (the order in which a
//! method checks them is its own business). Faults of the model are judged
//! from the calls the model actually received: the first call whose answer
//! breaks the contract decides the error, and a fault that starts after the
//! method's last call changes nothing. No method hands the model a
//! non-finite value.

use ndarray::ArrayD;
use proptest::prelude::*;
use saliency::{ActivationLayout, Float, MAX_STEPS, OutputKey, SaliencyError};

use crate::arb::{Call, Fault};

/// One error variant, with the field that says what it is about.
#[derive(Clone, Debug, PartialEq)]
pub enum Want {
    /// `Model`, with the model's own error kept as the source.
    Model,
    MissingOutput(OutputKey),
    OutputBatch {
        key: OutputKey,
        batch: usize,
    },
    OutputShape(OutputKey),
    NonFiniteOutput(OutputKey),
    Empty(&'static str),
    NonFiniteInput(&'static str),
    Rank(&'static str),
    Shape(&'static str),
    Param(&'static str),
    NonFiniteResult,
    ChannelsFirst(&'static str),
    /// Grad-CAM's layer looks channels-first and no layout was stated.
    LayoutUnstated,
    ImageEncoding,
    /// One of the PIC metric's three reasons to skip an image.
    PicSkip,
    Io,
}

impl Want {
    pub fn matches(&self, e: &SaliencyError) -> bool {
        use SaliencyError as E;
        match (self, e) {
            (Want::Model, E::Model(source)) => source.to_string() == "the model failed",
            (Want::MissingOutput(k), E::MissingOutput { key }) => k == key,
            (
                Want::OutputBatch { key: k, batch },
                E::OutputBatchMismatch {
                    key, expected_batch, ..
                },
            ) => k == key && batch == expected_batch,
            (Want::OutputShape(k), E::OutputShapeMismatch { key, .. }) => k == key,
            (Want::NonFiniteOutput(k), E::NonFiniteOutput { key, .. }) => k == key,
            (Want::Empty(w), E::EmptyInput { what, .. }) => w == what,
            (Want::NonFiniteInput(w), E::NonFiniteInput { what, .. }) => w == what,
            (Want::Rank(w), E::InvalidRank { what, .. }) => w == what,
            (Want::Shape(w), E::ShapeMismatch { what, .. }) => w == what,
            (Want::Param(n), E::InvalidParameter { name, .. }) => n == name,
            (Want::NonFiniteResult, E::NonFiniteResult { .. }) => true,
            (Want::ChannelsFirst(w), E::ChannelsFirstImage { what, .. }) => w == what,
            (Want::LayoutUnstated, E::LayerLayoutUnstated { method, .. }) => *method == "Grad-CAM",
            (Want::ImageEncoding, E::ImageEncoding { .. }) => true,
            (Want::PicSkip, e) => e.is_pic_skip(),
            (Want::Io, E::Io { .. }) => true,
            _ => false,
        }
    }
}

/// The outcome a run must have.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// What is wrong with the input or the parameters. When not empty the
    /// run must fail with one of these without calling the model.
    pub invalid: Vec<Want>,
    /// Model calls of a run in which no call fails.
    pub calls: usize,
    /// The mask's shape.
    pub shape: Vec<usize>,
    /// Errors a run in which no call fails may still end with: only for
    /// extreme values, each site says why.
    pub overflow: Vec<Want>,
    /// Errors a run may end with once the model answered with huge (1e300)
    /// values that overflow the method's arithmetic (products or squares of
    /// outputs).
    pub huge: Vec<Want>,
    /// Grad-CAM: the layer the model returned must also have rank 4, a
    /// layout (set, or else read channels-last unless the layer looks
    /// channels-first) and no empty axis in it. `Some(None)`: no layout set.
    pub layer: Option<Option<ActivationLayout>>,
}

/// The values are ordinary (what `arb::moderate_value` draws, zeros and
/// subnormals included): nothing computed from them can overflow.
pub fn moderate<F: Float>(a: &ArrayD<F>) -> bool {
    a.iter().all(|v| v.as_f64().abs() <= 4.0)
}

fn all_finite<F: Float>(a: &ArrayD<F>) -> bool {
    a.iter().all(|v| v.is_finite())
}

/// `check_input`: rank from `min` to `max`, not empty, finite.
pub fn input<F: Float>(what: &'static str, x: &ArrayD<F>, min: usize, max: usize) -> Vec<Want> {
    let mut wants = Vec::new();
    if x.ndim() < min || x.ndim() > max {
        wants.push(Want::Rank(what));
    }
    if x.is_empty() {
        wants.push(Want::Empty(what));
    }
    if !all_finite(x) {
        wants.push(Want::NonFiniteInput(what));
    }
    wants
}

/// An array that must have `shape` and finite values.
pub fn same_shape<F: Float>(what: &'static str, a: &ArrayD<F>, shape: &[usize]) -> Vec<Want> {
    let mut wants = Vec::new();
    if a.shape() != shape {
        wants.push(Want::Shape(what));
    }
    if !all_finite(a) {
        wants.push(Want::NonFiniteInput(what));
    }
    wants
}

/// Whether an image of this shape looks channels-first (`[3, 224, 224]`),
/// which functions that read the axes as height, width and channels refuse.
pub fn looks_channels_first(shape: &[usize]) -> bool {
    matches!(shape, [c, h, w] if matches!(c, 1 | 3 | 4) && *h > 4 && *w > 4)
}

/// An image's rank: 2 or 3, and not channels-first.
pub fn image_rank(what: &'static str, shape: &[usize]) -> Vec<Want> {
    if !(2..=3).contains(&shape.len()) {
        vec![Want::Rank(what)]
    } else if looks_channels_first(shape) {
        vec![Want::ChannelsFirst(what)]
    } else {
        vec![]
    }
}

/// The result of a function without a model: its value when `invalid` is
/// empty, else one of those errors. `overflow` lists the errors that inputs
/// in range may still end with (each site says why).
pub fn outcome<T: std::fmt::Debug>(
    result: saliency::Result<T>,
    invalid: &[Want],
    overflow: &[Want],
) -> Result<Option<T>, TestCaseError> {
    if let Err(e) = &result {
        let _ = (e.to_string(), format!("{e:?}"));
    }
    match result {
        Ok(v) if invalid.is_empty() => Ok(Some(v)),
        Ok(v) => Err(TestCaseError::fail(format!("expected one of {invalid:?}, got {v:?}"))),
        Err(e) if invalid.iter().any(|w| w.matches(&e)) => Ok(None),
        Err(e) if invalid.is_empty() && overflow.iter().any(|w| w.matches(&e)) => Ok(None),
        Err(e) if invalid.is_empty() => Err(TestCaseError::fail(format!(
            "expected a result (or one of {overflow:?}), got the error {e:?}"
        ))),
        Err(e) => Err(TestCaseError::fail(format!(
            "expected one of {invalid:?}, got the error {e:?}"
        ))),
    }
}

/// A step or sample count: 1 to `MAX_STEPS`.
pub fn steps(name: &'static str, v: usize) -> Vec<Want> {
    if v == 0 || v > MAX_STEPS {
        vec![Want::Param(name)]
    } else {
        vec![]
    }
}

/// A count of at least 1.
pub fn positive(name: &'static str, v: usize) -> Vec<Want> {
    if v == 0 { vec![Want::Param(name)] } else { vec![] }
}

/// A fraction: finite, 0 to 1.
pub fn unit(name: &'static str, v: f64) -> Vec<Want> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        vec![]
    } else {
        vec![Want::Param(name)]
    }
}

fn is_conv(key: OutputKey) -> bool {
    matches!(
        key,
        OutputKey::ConvolutionLayerValues | OutputKey::ConvolutionOutputGradients
    )
}

/// The error the crate's output checks must raise for this call, if any.
fn call_error(call: &Call, single: bool) -> Option<Want> {
    let first = *call.keys.first()?;
    let non_empty = |k: &&OutputKey| call.returned(**k).is_some_and(|s| s.iter().product::<usize>() > 0);
    match call.fault {
        Fault::None | Fault::Tiny => None,
        Fault::Err => Some(Want::Model),
        Fault::MissingKey => Some(Want::MissingOutput(first)),
        // A batch one too long, or a scalar without a batch axis.
        Fault::WrongBatch | Fault::WrongRank => Some(Want::OutputBatch {
            key: first,
            batch: call.batch.first().copied().unwrap_or(0),
        }),
        // A trailing axis of 2: wrong for gradients (the batch's shape) and
        // scores (`[B]` or `[B, 1]`); a layer may have any shape, and values
        // and gradients still agree with each other.
        Fault::WrongShape => call.keys.iter().copied().find(|&k| !is_conv(k)).map(Want::OutputShape),
        // The last value of each output; an empty output has none.
        Fault::Nan | Fault::Inf => call.keys.iter().find(non_empty).map(|&k| Want::NonFiniteOutput(k)),
        // 1e300 is infinite in f32.
        Fault::Huge => single
            .then(|| call.keys.iter().find(non_empty).map(|&k| Want::NonFiniteOutput(k)))
            .flatten(),
    }
}

/// Grad-CAM's error for a layer that passed the output checks.
fn layer_error(call: &Call, layout: Option<ActivationLayout>) -> Option<Want> {
    const WHAT: &str = "convolution layer values";
    let shape = call.returned(OutputKey::ConvolutionLayerValues)?;
    if shape.len() != 4 {
        return Some(Want::Rank(WHAT));
    }
    // Unstated: channels-last, unless square in the last two axes only.
    let layout = match layout {
        Some(layout) => layout,
        None if shape[2] == shape[3] && shape[1] != shape[2] => return Some(Want::LayoutUnstated),
        None => ActivationLayout::ChannelsLast,
    };
    let (channels, h, w) = match layout {
        ActivationLayout::ChannelsLast => (shape[3], shape[1], shape[2]),
        ActivationLayout::ChannelsFirst => (shape[1], shape[2], shape[3]),
    };
    (channels == 0 || h == 0 || w == 0).then_some(Want::Empty(WHAT))
}

/// The calls in short: runs of alike calls as `n x fault batch -> outputs`.
fn describe(trace: &[Call]) -> String {
    let mut runs: Vec<(usize, String)> = Vec::new();
    for c in trace {
        let call = format!("{:?} {:?} -> {:?}", c.fault, c.batch, c.returned);
        match runs.last_mut() {
            Some((n, last)) if *last == call => *n += 1,
            _ => runs.push((1, call)),
        }
    }
    let runs: Vec<String> = runs.iter().map(|(n, call)| format!("{n} x {call}")).collect();
    format!("{} model call(s): [{}]", trace.len(), runs.join("; "))
}

/// Checks a run's result against what it must be, given the calls the model
/// received.
pub fn verify<F: Float>(
    result: &saliency::Result<ArrayD<F>>,
    trace: &[Call],
    expected: &Expected,
) -> Result<(), TestCaseError> {
    let single = std::mem::size_of::<F>() == 4;
    if let Err(e) = result {
        // Every error formats (Display and Debug) without panicking.
        let _ = (e.to_string(), format!("{e:?}"));
    }
    // The model is never handed a value the input checks would refuse: an
    // overflow is the method's to report, not the model's.
    if let Some(i) = trace.iter().position(|c| !c.finite) {
        return Err(TestCaseError::fail(format!(
            "call {i} handed the model a non-finite value (the method returned {:?}); {}",
            result.as_ref().map(|m| m.shape()),
            describe(trace)
        )));
    }
    if !expected.invalid.is_empty() {
        prop_assert!(
            trace.is_empty(),
            "the model was called on an invalid input ({:?}): {}",
            expected.invalid,
            describe(trace)
        );
        return match result {
            Err(e) if expected.invalid.iter().any(|w| w.matches(e)) => Ok(()),
            Err(e) => Err(TestCaseError::fail(format!(
                "expected one of {:?}, got the error {e:?}",
                expected.invalid
            ))),
            Ok(mask) => Err(TestCaseError::fail(format!(
                "expected one of {:?}, got a mask of shape {:?}",
                expected.invalid,
                mask.shape()
            ))),
        };
    }
    for (i, call) in trace.iter().enumerate() {
        let want = call_error(call, single).or_else(|| expected.layer.and_then(|l| layer_error(call, l)));
        if let Some(want) = want {
            prop_assert_eq!(
                trace.len(),
                i + 1,
                "the method went on calling the model after call {} failed: {}",
                i,
                describe(trace)
            );
            return match result {
                Err(e) if want.matches(e) => Ok(()),
                other => Err(TestCaseError::fail(format!(
                    "call {i} must fail with {want:?}, the method returned {:?}; {}",
                    other.as_ref().map(|m| m.shape()),
                    describe(trace)
                ))),
            };
        }
    }
    // No call failed.
    let huge = !single && trace.iter().any(|c| c.fault == Fault::Huge);
    match result {
        Ok(mask) => {
            prop_assert_eq!(trace.len(), expected.calls, "model calls: {}", describe(trace));
            prop_assert_eq!(mask.shape(), &expected.shape[..]);
            prop_assert!(all_finite(mask), "non-finite mask {:?}", mask);
        }
        Err(e) => {
            let allowed =
                expected.overflow.iter().any(|w| w.matches(e)) || (huge && expected.huge.iter().any(|w| w.matches(e)));
            prop_assert!(
                allowed,
                "expected a mask of shape {:?} (or one of {:?}, or after huge outputs {:?}), got the error {:?}; {}",
                expected.shape,
                expected.overflow,
                expected.huge,
                e,
                describe(trace)
            );
        }
    }
    Ok(())
}
