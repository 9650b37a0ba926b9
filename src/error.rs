//! The crate's error type.

use crate::model::{ActivationLayout, OutputKey};

/// The boxed error a model function may return; any `std::error::Error`
/// converts into it with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `std::result::Result<T, SaliencyError>`.
pub type Result<T, E = SaliencyError> = std::result::Result<T, E>;

/// Everything that can go wrong when computing, visualising or evaluating a
/// saliency map. No public function of this crate panics on user input; it
/// returns one of these instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaliencyError {
    /// The model function returned an error; it is kept as the source.
    ///
    /// The message does not repeat the source: error reporters that walk
    /// [`source`](std::error::Error::source) print it once, on its own line.
    #[error("the model function failed")]
    Model(#[source] BoxError),

    /// The model did not return an output the method asked for.
    #[error("the model returned no {key} output (the method asked for {key})")]
    MissingOutput {
        /// The missing output.
        key: OutputKey,
    },

    /// An output's batch axis does not match the batch sent to the model.
    #[error(
        "model output {key} has the wrong batch size: expected shape {expected:?} \
         (batch {expected_batch}), got shape {actual:?}"
    )]
    OutputBatchMismatch {
        /// The offending output.
        key: OutputKey,
        /// The batch size sent to the model.
        expected_batch: usize,
        /// The shape the output should have had.
        expected: Vec<usize>,
        /// The shape the model returned.
        actual: Vec<usize>,
    },

    /// An output has the right batch size but the wrong shape otherwise.
    #[error("model output {key} has the wrong shape: expected {expected:?}, got {actual:?}")]
    OutputShapeMismatch {
        /// The offending output.
        key: OutputKey,
        /// The shape the output should have had (a `0` in a free position
        /// stands for "any size" and is described in the method's docs).
        expected: Vec<usize>,
        /// The shape the model returned.
        actual: Vec<usize>,
    },

    /// An output holds NaN or an infinity.
    #[error(
        "model output {key} holds {count} non-finite value(s) (NaN or infinite), \
         the first at flat index {first_index} of shape {shape:?}"
    )]
    NonFiniteOutput {
        /// The offending output.
        key: OutputKey,
        /// How many values are not finite.
        count: usize,
        /// Row-major index of the first one.
        first_index: usize,
        /// The output's shape.
        shape: Vec<usize>,
    },

    /// A method's layout setting contradicts the layout the model stated
    /// with [`ModelOutputs::with_layout`](crate::ModelOutputs::with_layout).
    #[error(
        "{method}'s layout is set to {set}, but the model states its layer is {stated}: remove the layout \
         setting to follow the model, or correct the layout the model states (ModelOutputs::with_layout; \
         CandleModel::layer_layout with the candle adapter)"
    )]
    LayoutConflict {
        /// The method.
        method: &'static str,
        /// The layout set on the method.
        set: ActivationLayout,
        /// The layout the model stated.
        stated: ActivationLayout,
    },

    /// A convolution layer whose layout neither the method nor the model
    /// states has a shape that looks channels-first (`[B, C, H, W]` with a
    /// square map, such as `[1, 512, 7, 7]`); read channels-last, the
    /// default, it would give a plausible but wrong map.
    #[error(
        "{method}: the convolution layer's shape {shape:?} looks channels-first ([B, C, H, W]) but no \
         layout was stated, and channels-last ([B, H, W, C]) would be assumed; state it on the \
         method (`.layout(ActivationLayout::ChannelsFirst)`, or `ChannelsLast` if the layer really \
         is [B, H, W, C]) or in the model (`ModelOutputs::with_layout`; the candle adapter does)"
    )]
    LayerLayoutUnstated {
        /// The method.
        method: &'static str,
        /// The layer's shape.
        shape: Vec<usize>,
    },

    /// An input array has no elements.
    #[error("{what} is empty (shape {shape:?})")]
    EmptyInput {
        /// Which argument.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// An input array holds NaN or an infinity.
    #[error("{what} holds {count} non-finite value(s) (NaN or infinite), the first at flat index {first_index}")]
    NonFiniteInput {
        /// Which argument.
        what: &'static str,
        /// How many values are not finite.
        count: usize,
        /// Row-major index of the first one.
        first_index: usize,
    },

    /// An input array has a rank the function does not accept.
    #[error("{what} must have {expected}, got rank {actual} (shape {shape:?})")]
    InvalidRank {
        /// Which argument.
        what: &'static str,
        /// The accepted ranks, in words (for example "rank 2 or 3").
        expected: &'static str,
        /// The rank received.
        actual: usize,
        /// The shape received.
        shape: Vec<usize>,
    },

    /// Two arrays that must agree in shape do not.
    #[error("{what} has shape {actual:?} but must have shape {expected:?}")]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        actual: Vec<usize>,
    },

    /// A parameter is outside its valid range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name, as the builder spells it.
        name: &'static str,
        /// Its value, printed.
        value: String,
        /// What it must be.
        reason: &'static str,
    },

    /// Reading or writing a file failed.
    #[error("cannot read or write {path}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },

    /// PIC skip condition: the model's prediction on the original image is
    /// below `min_pred_value`. Skip the image (or lower `min_pred_value`).
    #[error(
        "the model prediction on the original image is lower than min_pred_value: skip this image or \
         decrease min_pred_value (min_pred_value = {min_pred_value}, the image prediction = {prediction})"
    )]
    PicPredictionTooLow {
        /// The threshold that was set.
        min_pred_value: f64,
        /// The prediction on the original image.
        prediction: f64,
    },

    /// PIC skip condition: the completely blurred image holds at least as
    /// much information (lossless WebP bytes) as the original. Exclude the
    /// image from the evaluation.
    #[error(
        "the entropy of the completely blurred image is not lower than that of the original image: \
         exclude this image from the evaluation (blurred entropy {blurred}, original entropy {original})"
    )]
    PicBlurredEntropyNotLower {
        /// Size of the blurred image's encoding, in bytes.
        blurred: usize,
        /// Size of the original image's encoding, in bytes.
        original: usize,
    },

    /// PIC skip condition: the model's prediction on the completely blurred
    /// image is not lower than on the original. Exclude the image from the
    /// evaluation.
    #[error(
        "the model prediction on the completely blurred image is not lower than on the original image: \
         exclude this image from the evaluation (blurred score {blurred}, original score {original})"
    )]
    PicBlurredPredictionNotLower {
        /// The prediction on the completely blurred image.
        blurred: f64,
        /// The prediction on the original image.
        original: f64,
    },

    /// Estimating an image's information (its compressed size) failed, for
    /// example because the image is too large for the format.
    #[error("cannot estimate the image's information with {format}")]
    ImageEncoding {
        /// The format or estimator, such as "lossless WebP".
        format: &'static str,
        /// The encoder's error.
        #[source]
        source: BoxError,
    },

    /// A result overflowed: finite inputs and model outputs so large (such
    /// as 1e300) that the computed mask would hold NaN or an infinity.
    #[error(
        "{what} holds {count} non-finite value(s) (NaN or infinite), the first at flat index {first_index}: \
         the input or the model's outputs are too large for the computation"
    )]
    NonFiniteResult {
        /// Which result.
        what: &'static str,
        /// How many values are not finite.
        count: usize,
        /// Row-major index of the first one.
        first_index: usize,
    },

    /// An image looks channels-first (`[C, H, W]`, such as `[3, 224, 224]`)
    /// where a method treats the axes as height, width and channels.
    #[error(
        "{what} has shape {shape:?}, which looks channels-first ([C, H, W]); images here are \
         height x width x channels: reorder the axes, e.g. `image.permuted_axes([1, 2, 0])` \
         (for a candle tensor, `adapters::candle::tensor_to_array`)"
    )]
    ChannelsFirstImage {
        /// Which argument.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// A convergence delta was asked for, but the model returned no
    /// [`OutputKey::OutputLayerValues`] for the two ends of the path.
    #[error(
        "the convergence delta needs the explained output f(x): return OutputKey::OutputLayerValues \
         (one value per row, shape [B] or [B, 1]) when the request asks for it"
    )]
    ConvergenceDeltaNeedsOutputValues,

    /// A condition the crate's own logic rules out occurred (such as a
    /// shape that disagrees with one checked before): a bug in this crate,
    /// not a fault of the arguments.
    #[error("internal error: {what}; this is a bug in the saliency crate, please report it")]
    Internal {
        /// What went wrong.
        what: &'static str,
    },
}

impl SaliencyError {
    /// `true` for the three conditions under which the PIC metric of an image
    /// is undefined and the image should be skipped
    /// ([`PicPredictionTooLow`](Self::PicPredictionTooLow),
    /// [`PicBlurredEntropyNotLower`](Self::PicBlurredEntropyNotLower),
    /// [`PicBlurredPredictionNotLower`](Self::PicBlurredPredictionNotLower)).
    pub fn is_pic_skip(&self) -> bool {
        matches!(
            self,
            SaliencyError::PicPredictionTooLow { .. }
                | SaliencyError::PicBlurredEntropyNotLower { .. }
                | SaliencyError::PicBlurredPredictionNotLower { .. }
        )
    }

    /// Shorthand for [`SaliencyError::Internal`].
    pub(crate) fn internal(what: &'static str) -> Self {
        SaliencyError::Internal { what }
    }

    /// Shorthand for [`SaliencyError::InvalidParameter`].
    pub(crate) fn param(name: &'static str, value: impl std::fmt::Display, reason: &'static str) -> Self {
        SaliencyError::InvalidParameter {
            name,
            value: value.to_string(),
            reason,
        }
    }
}
