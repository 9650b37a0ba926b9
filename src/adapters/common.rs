//! The part of the framework adapters that does not depend on the
//! framework: the checks on a batch, the class each row is explained for,
//! what a call's keys ask of the passes, and the outputs assembled from a
//! pass. Kept in one place so the candle, burn and ONNX models check and
//! answer alike.

use ndarray::{ArrayD, ArrayViewD, AsArray, Dimension};

use crate::model::{ActivationLayout, ModelOutputs, ModelRequest, OutputKey};

/// A refusal of one of the shared checks. Each adapter's error has a
/// variant of the same name and fields, made by [`from_refusal`].
#[derive(Debug)]
pub(crate) enum Refusal {
    ChannelsFirstRank { shape: Vec<usize> },
    ChannelsFirstInput { shape: Vec<usize> },
    NoTargetForImage { image: usize, images: usize },
    ClassOutOfRange { class: usize, classes: usize },
    NoLayerMarked { key: OutputKey },
    SeveralLayersMarked { marks: usize },
}

/// `impl From<Refusal> for $error`, variant to variant of the same name.
macro_rules! from_refusal {
    ($error:ident) => {
        impl From<$crate::adapters::common::Refusal> for $error {
            fn from(refusal: $crate::adapters::common::Refusal) -> Self {
                use $crate::adapters::common::Refusal as R;
                match refusal {
                    R::ChannelsFirstRank { shape } => $error::ChannelsFirstRank { shape },
                    R::ChannelsFirstInput { shape } => $error::ChannelsFirstInput { shape },
                    R::NoTargetForImage { image, images } => $error::NoTargetForImage { image, images },
                    R::ClassOutOfRange { class, classes } => $error::ClassOutOfRange { class, classes },
                    R::NoLayerMarked { key } => $error::NoLayerMarked { key },
                    R::SeveralLayersMarked { marks } => $error::SeveralLayersMarked { marks },
                }
            }
        }
    };
}
pub(crate) use from_refusal;

/// The settings every framework model has, as builder methods, for an
/// `impl` block of a model with the fields `target`, `device` (of
/// `$device`), `dtype` (of `$dtype`), `channels_first` and `layer_layout`;
/// `$error` is the model's error type, named in the docs.
macro_rules! model_settings {
    ($device:ty, $dtype:ty, $error:ident) => {
        /// The device the model's weights live on (the adapter makes its
        /// inputs there).
        #[must_use = "a setter returns the changed model; assign or chain it"]
        pub fn device(mut self, device: &$device) -> Self {
            self.device = device.clone();
            self
        }

        /// The dtype the model computes in, when it differs from `F` (inputs are
        /// converted to it, outputs back to `F`).
        #[must_use = "a setter returns the changed model; assign or chain it"]
        pub fn dtype(mut self, dtype: $dtype) -> Self {
            self.dtype = dtype;
            self
        }

        /// Whether the model wants its input channels-first: the batch's last
        /// axis is moved to position 1 (`[B, H, W, C]` becomes `[B, C, H, W]`).
        /// Batches of rank below 4 (images without a channel axis) are then
        #[doc = concat!("refused with [`", stringify!($error), "::ChannelsFirstRank`].")]
        #[must_use = "a setter returns the changed model; assign or chain it"]
        pub fn channels_first(mut self, channels_first: bool) -> Self {
            self.channels_first = channels_first;
            self
        }

        /// The layout of the layer marked with [`ForwardContext::layer`], when
        /// it is not the input's (for example a channels-last input the forward
        /// pass permutes before a convolution). By default it is the input's:
        /// channels-first with [`channels_first`](Self::channels_first), else
        /// channels-last. The adapter states it with every output
        /// ([`ModelOutputs::with_layout`]), and Grad-CAM follows it.
        #[must_use = "a setter returns the changed model; assign or chain it"]
        pub fn layer_layout(mut self, layout: ActivationLayout) -> Self {
            self.layer_layout = Some(layout);
            self
        }

        /// The device the model's weights live on.
        pub fn get_device(&self) -> &$device {
            &self.device
        }

        /// The dtype the model computes in.
        pub fn get_dtype(&self) -> $dtype {
            self.dtype
        }

        /// Whether the model takes its input channels-first.
        pub fn get_channels_first(&self) -> bool {
            self.channels_first
        }

        /// The layout set with [`layer_layout`](Self::layer_layout); `None`:
        /// the input's.
        pub fn get_layer_layout(&self) -> Option<ActivationLayout> {
            self.layer_layout
        }

        /// The layout the adapter states for the marked layer.
        fn stated_layout(&self) -> ActivationLayout {
            $crate::adapters::common::stated_layout(self.channels_first, self.layer_layout)
        }

        /// Changes the target.
        pub fn set_target(&mut self, target: Target) {
            self.target = target;
        }
    };
}
pub(crate) use model_settings;

/// `as_fn` and the one-image `call` of a model whose `call_request` returns
/// `$error`, for its `impl` block (generic over the float `F`): `$into_box`
/// turns the error into the [`BoxError`](crate::error::BoxError) a method
/// reports, and the attributes given are `call`'s docs.
macro_rules! model_calls {
    ($error:ty, $into_box:expr, $(#[$call_doc:meta])*) => {
        /// This model as a closure, to pass where a method wants
        /// `&mut dyn CallModelFunction<F>`: `method.get_mask(x, &mut model.as_fn())`.
        pub fn as_fn(
            &mut self,
        ) -> impl FnMut(
            ndarray::ArrayViewD<'_, F>,
            &$crate::model::ModelRequest<'_>,
        ) -> Result<$crate::model::ModelOutputs<F>, $crate::error::BoxError>
               + '_ {
            move |batch, request| self.call_request(batch, request).map_err($into_box)
        }

        $(#[$call_doc])*
        pub fn call<'b, Dim: ndarray::Dimension>(
            &mut self,
            batch: impl ndarray::AsArray<'b, F, Dim>,
            keys: &[$crate::model::OutputKey],
        ) -> Result<$crate::model::ModelOutputs<F>, $error>
        where
            F: 'b,
        {
            $crate::adapters::common::call_one_image(batch, keys, |batch, request| self.call_request(batch, request))
        }
    };
}
pub(crate) use model_calls;

/// Runs `call_request` on `batch` with every row image 0: the adapters'
/// one-image `call`.
pub(crate) fn call_one_image<'b, F: 'b, D: Dimension, R>(
    batch: impl AsArray<'b, F, D>,
    keys: &[OutputKey],
    call_request: impl FnOnce(ArrayViewD<'b, F>, &ModelRequest<'_>) -> R,
) -> R {
    let batch = batch.into().into_dyn();
    let images = vec![0; batch.shape().first().copied().unwrap_or(0)];
    call_request(batch, &ModelRequest::new(keys, &images))
}

/// The image of each row of a batch of `shape` (image 0 for rows the
/// request does not cover), once the batch passes the checks a
/// channels-first model needs.
pub(crate) fn row_images(
    shape: &[usize],
    channels_first: bool,
    request: &ModelRequest<'_>,
) -> Result<Vec<usize>, Refusal> {
    // Moving the last axis of a batch without channels would swap height
    // and width.
    if channels_first && shape.len() < 4 {
        return Err(Refusal::ChannelsFirstRank { shape: shape.to_vec() });
    }
    // The adapter moves the channel axis itself; an image already
    // channels-first would have its axes scrambled.
    if channels_first && crate::checks::looks_channels_first(&shape[1..]) {
        return Err(Refusal::ChannelsFirstInput { shape: shape.to_vec() });
    }
    let batch_size = shape.first().copied().unwrap_or(0);
    Ok((0..batch_size).map(|r| request.image_of_row(r)).collect())
}

/// The layout an adapter states for the marked layer: the one set, else
/// the input's.
pub(crate) fn stated_layout(channels_first: bool, layer_layout: Option<ActivationLayout>) -> ActivationLayout {
    layer_layout.unwrap_or(if channels_first {
        ActivationLayout::ChannelsFirst
    } else {
        ActivationLayout::ChannelsLast
    })
}

/// What a `Target` picks, with the framework's selector closures `S` (one
/// output to the target values) and `P` (the same, knowing each row's
/// image).
pub(crate) enum TargetKind<S, P> {
    Class(usize),
    Classes(Vec<usize>),
    Select(S),
    SelectPerImage(P),
}

impl<S, P> std::fmt::Debug for TargetKind<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetKind::Class(c) => write!(f, "Target::class({c})"),
            TargetKind::Classes(c) => write!(f, "Target::classes({c:?})"),
            TargetKind::Select(_) => f.write_str("Target::select(..)"),
            TargetKind::SelectPerImage(_) => f.write_str("Target::select_per_image(..)"),
        }
    }
}

/// `class`, if the output's class axis (of size `classes`) has it.
pub(crate) fn class_in_range(class: usize, classes: usize) -> Result<usize, Refusal> {
    if class < classes {
        Ok(class)
    } else {
        Err(Refusal::ClassOutOfRange { class, classes })
    }
}

/// The class of each row for a class per image: row `r` takes
/// `per_image[images[r]]`, checked against the class axis.
pub(crate) fn row_classes(per_image: &[usize], images: &[usize], classes: usize) -> Result<Vec<usize>, Refusal> {
    images
        .iter()
        .map(|&image| {
            let class = *per_image.get(image).ok_or(Refusal::NoTargetForImage {
                image,
                images: per_image.len(),
            })?;
            class_in_range(class, classes)
        })
        .collect()
}

/// What the forward pass's marks of the layer allow: exactly one mark,
/// or none when no layer key (`layer_key`) is asked for.
pub(crate) fn check_marks(marks: usize, layer_key: Option<OutputKey>) -> Result<(), Refusal> {
    if marks > 1 {
        return Err(Refusal::SeveralLayersMarked { marks });
    }
    match layer_key {
        Some(key) if marks == 0 => Err(Refusal::NoLayerMarked { key }),
        _ => Ok(()),
    }
}

/// What a call's keys ask of the passes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Any key the ordinary pass serves (all but the guided gradients).
    pub(crate) plain: bool,
    pub(crate) values: bool,
    pub(crate) input_gradients: bool,
    /// The layer key to name if the forward pass marks no layer.
    pub(crate) layer_key: Option<OutputKey>,
    pub(crate) layer_values: bool,
    pub(crate) layer_gradients: bool,
    pub(crate) guided: bool,
}

impl Plan {
    pub(crate) fn new(keys: &[OutputKey]) -> Self {
        let wants = |k: OutputKey| keys.contains(&k);
        Plan {
            plain: keys.iter().any(|&k| k != OutputKey::GuidedInputOutputGradients),
            values: wants(OutputKey::OutputLayerValues),
            input_gradients: wants(OutputKey::InputOutputGradients),
            layer_key: [OutputKey::ConvolutionLayerValues, OutputKey::ConvolutionOutputGradients]
                .into_iter()
                .find(|&k| wants(k)),
            layer_values: wants(OutputKey::ConvolutionLayerValues),
            layer_gradients: wants(OutputKey::ConvolutionOutputGradients),
            guided: wants(OutputKey::GuidedInputOutputGradients),
        }
    }
}

/// What one ordinary pass produced, in the framework's own type `T`.
pub(crate) struct Pass<T> {
    pub(crate) target: T,
    pub(crate) input_gradients: Option<T>,
    pub(crate) layer_values: Option<T>,
    pub(crate) layer_gradients: Option<T>,
}

impl<T> Pass<T> {
    /// Adds the outputs `plan` asks for to `outputs`, each converted with
    /// `to_array`. A layer key without a marked layer is refused.
    pub(crate) fn insert_into<F, E: From<Refusal>>(
        self,
        outputs: &mut ModelOutputs<F>,
        plan: &Plan,
        mut to_array: impl FnMut(T) -> Result<ArrayD<F>, E>,
    ) -> Result<(), E> {
        if plan.values {
            outputs.insert(OutputKey::OutputLayerValues, to_array(self.target)?);
        }
        if let Some(g) = self.input_gradients {
            outputs.insert(OutputKey::InputOutputGradients, to_array(g)?);
        }
        for (key, wanted, data) in [
            (OutputKey::ConvolutionLayerValues, plan.layer_values, self.layer_values),
            (
                OutputKey::ConvolutionOutputGradients,
                plan.layer_gradients,
                self.layer_gradients,
            ),
        ] {
            if wanted {
                let data = data.ok_or(Refusal::NoLayerMarked { key })?;
                outputs.insert(key, to_array(data)?);
            }
        }
        Ok(())
    }
}
