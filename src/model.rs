//! The model contract: what a method asks of the user's model and how every
//! answer is checked before it is used.
//!
//! The crate never sees the model. A method hands a batch (axis 0 is the
//! batch, always in standard row-major layout, so `as_slice()` works) and the
//! list of [`OutputKey`]s it needs to a [`CallModelFunction`], which is any
//! closure of the shape
//!
//! ```text
//! FnMut(ArrayViewD<'_, F>, &ModelRequest<'_>) -> Result<ModelOutputs<F>, BoxError>
//! ```
//!
//! The [`ModelRequest`] dereferences to the list of keys wanted and tells
//! which image each row belongs to, so a model can explain a different
//! target for each image of a multi-image call; a single target is simply
//! captured by the closure. Any error type converts into
//! [`BoxError`] with `?` and comes back as [`SaliencyError::Model`] with its
//! source kept.

use std::fmt;

use ndarray::{ArrayD, ArrayViewD, Dimension};

use crate::error::{BoxError, Result, SaliencyError};
use crate::float::Float;
use crate::parallel::flat;

/// The outputs a method can ask of the model. The shape column is what the
/// crate checks; `B` is the batch size it sent.
///
/// | key | meaning | shape |
/// | --- | --- | --- |
/// | `InputOutputGradients` | d(target) / d(input) | the batch's shape |
/// | `GuidedInputOutputGradients` | the same gradient with the guided-ReLU backward rule | the batch's shape |
/// | `ConvolutionLayerValues` | activations of the explained convolution layer | `[B, ...]` |
/// | `ConvolutionOutputGradients` | d(target) / d(that layer) | the values' shape |
/// | `OutputLayerValues` | the target output (logit or probability) | `[B]` or `[B, 1]` |
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputKey {
    /// Gradient of the target output with respect to the input.
    InputOutputGradients,
    /// Gradient of the target output with respect to the input, computed with
    /// the guided-ReLU backward rule: at every ReLU the backward pass keeps a
    /// gradient only where both the ReLU's input and the incoming gradient are
    /// positive.
    GuidedInputOutputGradients,
    /// Activations of the convolution layer being explained (Grad-CAM).
    ConvolutionLayerValues,
    /// Gradient of the target output with respect to that layer.
    ConvolutionOutputGradients,
    /// The target output itself, one value per example.
    OutputLayerValues,
}

impl OutputKey {
    /// All keys, in declaration order.
    pub const ALL: [OutputKey; 5] = [
        OutputKey::InputOutputGradients,
        OutputKey::GuidedInputOutputGradients,
        OutputKey::ConvolutionLayerValues,
        OutputKey::ConvolutionOutputGradients,
        OutputKey::OutputLayerValues,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The name the Python reference uses for this key.
    pub fn reference_name(self) -> &'static str {
        match self {
            OutputKey::InputOutputGradients => "INPUT_OUTPUT_GRADIENTS",
            OutputKey::GuidedInputOutputGradients => "GUIDED_INPUT_OUTPUT_GRADIENTS",
            OutputKey::ConvolutionLayerValues => "CONVOLUTION_LAYER_VALUES",
            OutputKey::ConvolutionOutputGradients => "CONVOLUTION_OUTPUT_GRADIENTS",
            OutputKey::OutputLayerValues => "OUTPUT_LAYER_VALUES",
        }
    }
}

impl fmt::Display for OutputKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The axis order of a rank-4 activation tensor: where its channel axis is.
///
/// A model states the layout of its convolution layer with
/// [`ModelOutputs::with_layout`] (the candle adapter does), and
/// [`GradCam`](crate::GradCam) follows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ActivationLayout {
    /// `[B, H, W, C]`, as TensorFlow and the Python reference use.
    #[default]
    ChannelsLast,
    /// `[B, C, H, W]`, as candle and PyTorch use.
    ChannelsFirst,
}

impl fmt::Display for ActivationLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActivationLayout::ChannelsLast => "channels-last [B, H, W, C]",
            ActivationLayout::ChannelsFirst => "channels-first [B, C, H, W]",
        })
    }
}

/// What the model returns: at most one array per [`OutputKey`], and
/// optionally the [`ActivationLayout`] of the convolution layer outputs.
///
/// ```
/// use ndarray::Array2;
/// use saliency::{ActivationLayout, ModelOutputs, OutputKey};
///
/// let grads = Array2::<f32>::zeros((4, 3));
/// let out = ModelOutputs::new().with(OutputKey::InputOutputGradients, grads);
/// assert!(out.contains(OutputKey::InputOutputGradients));
/// assert_eq!(out.layout(), None);
/// let out = out.with_layout(ActivationLayout::ChannelsFirst);
/// assert_eq!(out.layout(), Some(ActivationLayout::ChannelsFirst));
/// ```
#[derive(Clone, Debug)]
pub struct ModelOutputs<F> {
    slots: [Option<ArrayD<F>>; 5],
    layout: Option<ActivationLayout>,
}

impl<F> Default for ModelOutputs<F> {
    fn default() -> Self {
        ModelOutputs {
            slots: [None, None, None, None, None],
            layout: None,
        }
    }
}

impl<F> ModelOutputs<F> {
    /// No outputs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) one output, of any dimensionality; builder style.
    #[must_use = "a setter returns the changed outputs; assign or chain it"]
    pub fn with<D: Dimension>(mut self, key: OutputKey, value: ndarray::Array<F, D>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds (or replaces) one output and returns the previous one.
    pub fn insert<D: Dimension>(&mut self, key: OutputKey, value: ndarray::Array<F, D>) -> Option<ArrayD<F>> {
        self.slots[key.index()].replace(value.into_dyn())
    }

    /// The output for `key`, if present.
    pub fn get(&self, key: OutputKey) -> Option<&ArrayD<F>> {
        self.slots[key.index()].as_ref()
    }

    /// Removes and returns the output for `key`.
    pub fn remove(&mut self, key: OutputKey) -> Option<ArrayD<F>> {
        self.slots[key.index()].take()
    }

    /// Whether an output for `key` is present.
    pub fn contains(&self, key: OutputKey) -> bool {
        self.slots[key.index()].is_some()
    }

    /// States the layout of [`OutputKey::ConvolutionLayerValues`] and
    /// [`OutputKey::ConvolutionOutputGradients`]; builder style. Grad-CAM
    /// uses it when its own layout is not set, and refuses a different one
    /// when it is.
    #[must_use = "a setter returns the changed outputs; assign or chain it"]
    pub fn with_layout(mut self, layout: ActivationLayout) -> Self {
        self.layout = Some(layout);
        self
    }

    /// Sets (or, with `None`, clears) the stated layout of the convolution
    /// layer outputs.
    pub fn set_layout(&mut self, layout: Option<ActivationLayout>) {
        self.layout = layout;
    }

    /// The layout the model stated for its convolution layer outputs, if any.
    pub fn layout(&self) -> Option<ActivationLayout> {
        self.layout
    }

    /// The keys present, in [`OutputKey::ALL`] order.
    pub fn keys(&self) -> impl Iterator<Item = OutputKey> + '_ {
        OutputKey::ALL.into_iter().filter(|k| self.contains(*k))
    }

    /// Like [`remove`](Self::remove) but a missing key is an error; used after
    /// the outputs were checked.
    pub(crate) fn take(&mut self, key: OutputKey) -> Result<ArrayD<F>> {
        self.remove(key).ok_or(SaliencyError::MissingOutput { key })
    }
}

/// What a method asks of the model in one call: the outputs it needs and,
/// for each row of the batch, the image the row belongs to.
///
/// It dereferences to the list of keys, so `keys.contains(&key)` and
/// `for key in keys.iter()` work on it directly. [`image_of_row`](Self::image_of_row)
/// tells a model with a target per image which target a row is for: in a
/// one-image call every row belongs to image 0; in a multi-image call
/// ([`Saliency::get_masks`](crate::Saliency::get_masks)) rows of
/// several images (their path points, noise samples, occluded copies) can
/// share one call, and image `i` is the `i`-th image along axis 0 of the
/// images given.
///
/// ```
/// use ndarray::Array2;
/// use saliency::{ModelOutputs, ModelRequest, OutputKey};
///
/// // A linear model with one weight vector per image (one target each).
/// let weights = Array2::from_shape_vec((2, 3), vec![1.0_f64, 0.0, 0.0, 0.0, 2.0, 0.0])?;
/// let model = |batch: ndarray::ArrayViewD<'_, f64>, request: &ModelRequest<'_>| {
///     let mut grads = batch.to_owned();
///     for (row, mut g) in grads.outer_iter_mut().enumerate() {
///         g.assign(&weights.row(request.image_of_row(row)));
///     }
///     Ok::<_, saliency::BoxError>(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
/// };
/// # let _ = model;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelRequest<'a> {
    keys: &'a [OutputKey],
    images: &'a [usize],
}

impl<'a> ModelRequest<'a> {
    /// A request for `keys` on a batch whose row `r` belongs to image
    /// `images[r]` (`images` has one entry per row). Methods build these;
    /// a user needs one only to call a model function directly.
    pub fn new(keys: &'a [OutputKey], images: &'a [usize]) -> Self {
        ModelRequest { keys, images }
    }

    /// The outputs wanted.
    pub fn keys(&self) -> &'a [OutputKey] {
        self.keys
    }

    /// Whether output `key` is wanted.
    pub fn wants(&self, key: OutputKey) -> bool {
        self.keys.contains(&key)
    }

    /// The image of each row of the batch, one entry per row.
    pub fn images(&self) -> &'a [usize] {
        self.images
    }

    /// The image row `row` belongs to (0 for a row past the batch).
    pub fn image_of_row(&self, row: usize) -> usize {
        self.images.get(row).copied().unwrap_or(0)
    }
}

impl std::ops::Deref for ModelRequest<'_> {
    type Target = [OutputKey];

    fn deref(&self) -> &[OutputKey] {
        self.keys
    }
}

impl<'a> IntoIterator for &ModelRequest<'a> {
    type Item = &'a OutputKey;
    type IntoIter = std::slice::Iter<'a, OutputKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.keys.iter()
    }
}

impl<const N: usize> PartialEq<[OutputKey; N]> for ModelRequest<'_> {
    fn eq(&self, other: &[OutputKey; N]) -> bool {
        self.keys == other
    }
}

impl<const N: usize> PartialEq<[OutputKey; N]> for &ModelRequest<'_> {
    fn eq(&self, other: &[OutputKey; N]) -> bool {
        self.keys == other
    }
}

/// The user's model, as the methods see it: a batch and the request (keys
/// wanted, image of each row) in, the outputs (or an error) out.
///
/// Implemented for every closure of the right shape, so a closure written
/// inline where a method expects `&mut dyn CallModelFunction<F>` needs no type
/// annotations. For a closure stored in a variable first, wrap it in
/// [`model_fn`] to get the same inference.
pub trait CallModelFunction<F>:
    FnMut(ArrayViewD<'_, F>, &ModelRequest<'_>) -> std::result::Result<ModelOutputs<F>, BoxError>
{
}

impl<F, T> CallModelFunction<F> for T where
    T: FnMut(ArrayViewD<'_, F>, &ModelRequest<'_>) -> std::result::Result<ModelOutputs<F>, BoxError>
{
}

/// Returns the closure unchanged; its only job is to let Rust infer the
/// closure's argument types when the closure is stored before use.
///
/// ```
/// use saliency::{ModelOutputs, OutputKey, model_fn};
///
/// // f(x) = sum(x^2): the gradient is 2x.
/// let mut model = model_fn(|batch, _request| {
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v: f64| 2.0 * v)))
/// });
/// # let _ = &mut model;
/// ```
pub fn model_fn<F, M>(model: M) -> M
where
    M: FnMut(ArrayViewD<'_, F>, &ModelRequest<'_>) -> std::result::Result<ModelOutputs<F>, BoxError>,
{
    model
}

/// Calls the model on `batch` and checks every requested output: present,
/// right batch size, right shape, finite. The batch is handed over in
/// standard layout (copied only if it is not already).
pub(crate) fn call_model<F: Float>(
    model: &mut dyn CallModelFunction<F>,
    batch: ArrayViewD<'_, F>,
    keys: &[OutputKey],
) -> Result<ModelOutputs<F>> {
    call_model_deferring_finite_check(model, batch, keys, None)
}

/// [`call_model`], except that the finiteness of the `deferred` output is left
/// to the caller, who folds it into a pass it makes anyway (see
/// [`non_finite_error`]).
pub(crate) fn call_model_deferring_finite_check<F: Float>(
    model: &mut dyn CallModelFunction<F>,
    batch: ArrayViewD<'_, F>,
    keys: &[OutputKey],
    deferred: Option<OutputKey>,
) -> Result<ModelOutputs<F>> {
    let standard = batch.as_standard_layout();
    // A one-image call: every row belongs to image 0.
    let images = vec![0; batch.shape().first().copied().unwrap_or(0)];
    let outputs = model(standard.view(), &ModelRequest::new(keys, &images)).map_err(SaliencyError::Model)?;
    check_outputs(&outputs, batch.shape(), keys, deferred)?;
    Ok(outputs)
}

/// The error for an output whose values are not all finite, or `None` if
/// they are.
pub(crate) fn non_finite_error<F: Float>(key: OutputKey, shape: &[usize], values: &[F]) -> Option<SaliencyError> {
    find_non_finite(values).map(|(count, first_index)| SaliencyError::NonFiniteOutput {
        key,
        count,
        first_index,
        shape: shape.to_vec(),
    })
}

fn check_outputs<F: Float>(
    outputs: &ModelOutputs<F>,
    batch_shape: &[usize],
    keys: &[OutputKey],
    deferred: Option<OutputKey>,
) -> Result<()> {
    let batch = batch_shape.first().copied().unwrap_or(0);
    for &key in keys {
        let value = outputs.get(key).ok_or(SaliencyError::MissingOutput { key })?;
        let actual = value.shape();
        let batch_mismatch = |expected: Vec<usize>| SaliencyError::OutputBatchMismatch {
            key,
            expected_batch: batch,
            expected,
            actual: actual.to_vec(),
        };
        let shape_mismatch = |expected: Vec<usize>| SaliencyError::OutputShapeMismatch {
            key,
            expected,
            actual: actual.to_vec(),
        };
        match key {
            OutputKey::InputOutputGradients | OutputKey::GuidedInputOutputGradients => {
                if actual.first() != Some(&batch) {
                    return Err(batch_mismatch(batch_shape.to_vec()));
                }
                if actual != batch_shape {
                    return Err(shape_mismatch(batch_shape.to_vec()));
                }
            }
            OutputKey::ConvolutionLayerValues | OutputKey::ConvolutionOutputGradients => {
                let mut expected = actual.to_vec();
                if expected.is_empty() {
                    expected.push(batch);
                }
                expected[0] = batch;
                if actual.first() != Some(&batch) {
                    return Err(batch_mismatch(expected));
                }
                if key == OutputKey::ConvolutionOutputGradients
                    && keys.contains(&OutputKey::ConvolutionLayerValues)
                    && let Some(values) = outputs.get(OutputKey::ConvolutionLayerValues)
                    && values.shape() != actual
                {
                    return Err(shape_mismatch(values.shape().to_vec()));
                }
            }
            OutputKey::OutputLayerValues => {
                if actual.first() != Some(&batch) {
                    return Err(batch_mismatch(vec![batch]));
                }
                if actual.len() > 2 || (actual.len() == 2 && actual[1] != 1) {
                    return Err(shape_mismatch(vec![batch, 1]));
                }
            }
        }
        if deferred != Some(key)
            && let Some(err) = non_finite_error(key, actual, &flat(&value.view()))
        {
            return Err(err);
        }
    }
    Ok(())
}

/// `None` when every value is finite, else the count of non-finite values and
/// the flat index of the first.
pub(crate) fn find_non_finite<F: Float>(values: &[F]) -> Option<(usize, usize)> {
    // The fast path checks blocks without early exit inside a block, which
    // vectorises; details only on failure.
    let block_ok = |block: &[F]| block.iter().fold(true, |ok, v| ok & v.is_finite());
    if crate::parallel::all_chunks(values, |c| c.chunks(256).all(block_ok)) {
        return None;
    }
    let count = values.iter().filter(|v| !v.is_finite()).count();
    let first = values.iter().position(|v| !v.is_finite())?;
    Some((count, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, Array3};

    fn grads_model(
        shape: Vec<usize>,
    ) -> impl FnMut(ArrayViewD<'_, f64>, &ModelRequest<'_>) -> std::result::Result<ModelOutputs<f64>, BoxError> {
        move |_b, _k| Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, ArrayD::<f64>::zeros(shape.clone())))
    }

    #[test]
    fn gradient_shape_errors_name_both_shapes() {
        let batch = Array2::<f64>::zeros((1, 3));
        let mut wrong_batch = grads_model(vec![3]);
        let err = call_model(
            &mut wrong_batch,
            batch.view().into_dyn(),
            &[OutputKey::InputOutputGradients],
        )
        .unwrap_err();
        assert!(
            matches!(err, SaliencyError::OutputBatchMismatch { expected_batch: 1, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("[1, 3]") && err.to_string().contains("[3]"),
            "{err}"
        );

        let mut wrong_shape = grads_model(vec![1, 4]);
        let err = call_model(
            &mut wrong_shape,
            batch.view().into_dyn(),
            &[OutputKey::InputOutputGradients],
        )
        .unwrap_err();
        assert!(matches!(err, SaliencyError::OutputShapeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("InputOutputGradients"), "{err}");
    }

    #[test]
    fn missing_key_and_non_finite_are_reported() {
        let batch = Array2::<f64>::zeros((2, 3));
        let mut model = grads_model(vec![2, 3]);
        let err = call_model(&mut model, batch.view().into_dyn(), &[OutputKey::OutputLayerValues]).unwrap_err();
        assert!(matches!(
            err,
            SaliencyError::MissingOutput {
                key: OutputKey::OutputLayerValues
            }
        ));

        let mut nan_model = |b: ArrayViewD<'_, f64>, _k: &ModelRequest<'_>| {
            let mut g = b.to_owned();
            g[[1, 2]] = f64::NAN;
            g[[0, 1]] = f64::INFINITY;
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
        };
        let err = call_model(
            &mut nan_model,
            batch.view().into_dyn(),
            &[OutputKey::InputOutputGradients],
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SaliencyError::NonFiniteOutput {
                    count: 2,
                    first_index: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn output_layer_values_accepts_b_and_b1_only() {
        let batch = Array2::<f64>::zeros((2, 3));
        for (shape, ok) in [
            (vec![2], true),
            (vec![2, 1], true),
            (vec![2, 2], false),
            (vec![2, 1, 1], false),
            (vec![3], false),
        ] {
            let mut model = |_b: ArrayViewD<'_, f64>, _k: &ModelRequest<'_>| {
                Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, ArrayD::<f64>::zeros(shape.clone())))
            };
            let res = call_model(&mut model, batch.view().into_dyn(), &[OutputKey::OutputLayerValues]);
            assert_eq!(res.is_ok(), ok, "{shape:?}");
        }
    }

    #[test]
    fn convolution_gradients_must_match_values() {
        let batch = Array2::<f64>::zeros((1, 3));
        let mut model = |_b: ArrayViewD<'_, f64>, _k: &ModelRequest<'_>| {
            Ok(ModelOutputs::new()
                .with(OutputKey::ConvolutionLayerValues, Array3::<f64>::zeros((1, 2, 2)))
                .with(OutputKey::ConvolutionOutputGradients, Array3::<f64>::zeros((1, 2, 3))))
        };
        let keys = [OutputKey::ConvolutionLayerValues, OutputKey::ConvolutionOutputGradients];
        let err = call_model(&mut model, batch.view().into_dyn(), &keys).unwrap_err();
        assert!(matches!(
            err,
            SaliencyError::OutputShapeMismatch {
                key: OutputKey::ConvolutionOutputGradients,
                ..
            }
        ));
    }

    #[test]
    fn model_errors_keep_their_source() {
        let batch = Array1::<f64>::zeros(3).insert_axis(ndarray::Axis(0));
        let mut model =
            |_b: ArrayViewD<'_, f64>, _k: &ModelRequest<'_>| -> std::result::Result<ModelOutputs<f64>, BoxError> {
                let n: i32 = "not a number".parse()?;
                Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array1::from_elem(1, f64::from(n))))
            };
        let err = call_model(&mut model, batch.view().into_dyn(), &[OutputKey::OutputLayerValues]).unwrap_err();
        let source = std::error::Error::source(&err).expect("source kept");
        assert!(source.downcast_ref::<std::num::ParseIntError>().is_some());
    }

    #[test]
    fn batch_reaches_the_model_in_standard_layout() {
        let x = Array2::<f64>::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64);
        let transposed = x.t();
        let mut seen = Vec::new();
        let mut model = |b: ArrayViewD<'_, f64>, _k: &ModelRequest<'_>| {
            seen = b.as_slice().expect("standard layout").to_vec();
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.to_owned()))
        };
        call_model(&mut model, transposed.into_dyn(), &[OutputKey::InputOutputGradients]).unwrap();
        assert_eq!(seen[..4], [0.0, 4.0, 8.0, 1.0]);
    }
}
