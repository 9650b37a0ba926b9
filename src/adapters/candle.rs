//! A [`CallModelFunction`](crate::CallModelFunction) built from a
//! [candle](https://github.com/huggingface/candle) model (feature `candle`).
//!
//! The user writes the forward pass once, as a closure from the input tensor
//! to the logits, and routes its ReLUs through the [`ForwardContext`] it
//! receives; [`CandleModel`] does the rest: it turns every ndarray batch into
//! a tensor, runs the forward pass (with ordinary or guided ReLUs), takes the
//! target output, runs the backward pass and returns every key a method asks
//! for.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use ndarray::Array3;
//! use saliency::adapters::candle::{CandleModel, ForwardContext, Target};
//! use saliency::{GuidedBackprop, IntegratedGradients, Saliency};
//!
//! // A tiny model on 4 x 4 x 3 images: logits = relu(x W1) W2 over the
//! // flattened image, 8 hidden units and 2 classes.
//! let device = Device::Cpu;
//! let w1 = Tensor::from_vec((0..48 * 8).map(|i| ((i % 7) as f32 - 3.0) / 10.0).collect(), (48, 8), &device)?;
//! let w2 = Tensor::from_vec((0..16).map(|i| ((i % 5) as f32 - 2.0) / 4.0).collect(), (8, 2), &device)?;
//! let forward = move |x: &Tensor, ctx: &ForwardContext| {
//!     let hidden = ctx.relu(&x.flatten_from(1)?.matmul(&w1)?)?;
//!     hidden.matmul(&w2)
//! };
//! let mut model = CandleModel::new(forward, Target::class(1));
//!
//! let image = Array3::<f32>::from_shape_fn((4, 4, 3), |(i, j, c)| (i + j + c) as f32 / 10.0);
//! let ig = IntegratedGradients::new().steps(16).batch_size(8).get_mask(&image, &mut model.as_fn())?;
//! let guided = GuidedBackprop::new().get_mask(&image, &mut model.as_fn())?;
//! assert_eq!(ig.shape(), [4, 4, 3]);
//! assert_eq!(guided.shape(), [4, 4, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Pooling
//!
//! candle 0.11's own `Tensor::max_pool2d` multiplies each gradient by
//! 1 / (kernel area) in its backward pass (and refuses kernels that differ
//! from their stride), so every gradient through it is scaled down: maps
//! normalised for display look right, but IG's completeness and any
//! comparison of raw gradients are off. Use
//! [`candle_ops::max_pool2d`](crate::adapters::candle_ops::max_pool2d), whose
//! backward passes the whole gradient to each window's first maximum, as
//! PyTorch does.
//!
//! # Layouts
//!
//! Methods hand the model batches of images as `[B, H, W, C]`
//! (channels-last). By default the tensor is given to the forward closure in
//! that layout; with [`CandleModel::channels_first`] the channel axis is
//! moved to position 1 first (`[B, C, H, W]`, what candle-nn's `Conv2d`
//! expects), and the input gradients are returned in the original
//! `[B, H, W, C]` layout either way.
//!
//! A channels-first model needs images with a channel axis (`H x W x C`,
//! so batches of rank 4 or more); give a grayscale image one (`H x W x 1`).
//!
//! The convolution layer marked with [`ForwardContext::layer`] is returned
//! as the model produced it, and the adapter states its layout with the
//! outputs ([`ModelOutputs::with_layout`]): `[B, C, H, W]` for a
//! channels-first model, `[B, H, W, C]` for a channels-last one, or what
//! [`CandleModel::layer_layout`] says when the model's layer differs from
//! its input. Grad-CAM follows that statement, so
//! [`GradCam::new`](crate::GradCam::new) needs no layout setting.
//!
//! [`tensor_to_array`] and [`array_to_tensor`] convert between candle's
//! `[C, H, W]` / `[B, C, H, W]` tensors and the crate's `[H, W, C]` /
//! `[B, H, W, C]` arrays.
//!
//! # Batches
//!
//! The target of each example is summed over the batch before the backward
//! pass, so each example gets its own gradient as long as the forward pass
//! treats the examples independently (no batch statistics, as in a
//! batch-norm layer in training mode).
//!
//! # Devices
//!
//! Everything runs on the device given with [`CandleModel::device`] (CPU by
//! default). The guided ReLU's forward pass has a CPU implementation only;
//! on other devices [`OutputKey::GuidedInputOutputGradients`] gives candle's
//! "no implementation" error, every other key works.
//!
//! # Errors
//!
//! [`CandleModel::call`] returns a [`CandleAdapterError`], which converts
//! with `?` into `Box<dyn std::error::Error>` (and into
//! [`BoxError`]). Through a method, the error is
//! [`SaliencyError::Model`](crate::SaliencyError::Model) with the
//! `candle_core::Error` itself as the source for candle's own errors, and
//! the [`CandleAdapterError`] for the adapter's.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var, WithDType};
use ndarray::{ArrayD, ArrayView, ArrayViewD, Dimension, IxDyn};

use super::common::{self, Pass, Plan, from_refusal};
use crate::error::BoxError;
use crate::float::Float;
use crate::model::{ActivationLayout, ModelOutputs, ModelRequest, OutputKey};

/// Which ReLU the forward pass should use; see [`ForwardContext::relu`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReluMode {
    /// The ordinary ReLU, with its ordinary gradient.
    #[default]
    Standard,
    /// The guided ReLU: the same forward values, the guided backward rule
    /// (see [`guided_relu`]).
    Guided,
}

/// What [`CandleModel`] tells the forward closure: which ReLU to use, and
/// where the convolution layer to explain is.
///
/// Outside saliency (training, inference) use [`ForwardContext::standard`].
#[derive(Debug, Default)]
pub struct ForwardContext {
    relu: ReluMode,
    probe: bool,
    /// How many ReLUs went through [`ForwardContext::relu`]: a guided pass
    /// with none computed plain gradients.
    relus: Cell<usize>,
    layer: RefCell<LayerRecord>,
}

/// The explained layer as seen during one forward pass.
#[derive(Debug, Default)]
struct LayerRecord {
    /// How many times [`ForwardContext::layer`] was called.
    marks: usize,
    values: Option<Tensor>,
    /// A zero variable added to the layer's output: its gradient is the
    /// gradient with respect to the layer (candle keeps gradients of
    /// variables only).
    probe: Option<Var>,
}

impl ForwardContext {
    /// Ordinary ReLUs, no layer recorded: for training and inference.
    pub fn standard() -> Self {
        Self::default()
    }

    fn new(relu: ReluMode, probe: bool) -> Self {
        ForwardContext {
            relu,
            probe,
            relus: Cell::new(0),
            layer: RefCell::new(LayerRecord::default()),
        }
    }

    /// The ReLU this pass uses.
    pub fn relu_mode(&self) -> ReluMode {
        self.relu
    }

    /// `max(x, 0)`, with the ordinary or the guided gradient as this pass
    /// requires. Every ReLU of the model must go through here for guided
    /// gradients to be right: a ReLU called on the tensor (`x.relu()`) keeps
    /// its ordinary gradient. A guided pass in which no ReLU came through
    /// here is an error ([`CandleAdapterError::NoGuidedRelu`]).
    pub fn relu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.relus.set(self.relus.get().saturating_add(1));
        match self.relu {
            // PyTorch's gradient: none at exactly 0, where a zero image meets
            // a convolution without bias.
            ReluMode::Standard => crate::adapters::candle_ops::relu(x),
            ReluMode::Guided => guided_relu(x),
        }
    }

    /// Marks `x` as the convolution layer to explain (Grad-CAM) and returns
    /// the tensor the forward pass must continue with (same values). Call it
    /// at most once per forward pass; without the convolution keys it returns
    /// `x` itself.
    pub fn layer(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut record = self.layer.borrow_mut();
        record.marks += 1;
        if record.marks > 1 {
            return Ok(x.clone());
        }
        record.values = Some(x.detach());
        if !self.probe {
            return Ok(x.clone());
        }
        let probe = Var::zeros(x.shape(), x.dtype(), x.device())?;
        let out = x.add(probe.as_tensor())?;
        record.probe = Some(probe);
        Ok(out)
    }
}

/// `max(x, 0)` whose backward pass applies the guided rule: the gradient
/// passes only where both `x > 0` and the incoming gradient is positive
/// (the array form is
/// [`guided_relu_backward`](crate::methods::guided_backprop::guided_relu_backward)).
///
/// The forward pass runs on the CPU (f32, f64, f16, bf16); the backward pass
/// on any device.
pub fn guided_relu(x: &Tensor) -> candle_core::Result<Tensor> {
    x.apply_op1(GuidedRelu)
}

/// The candle operation behind [`guided_relu`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GuidedRelu;

impl CustomOp1 for GuidedRelu {
    fn name(&self) -> &'static str {
        "guided-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use candle_core::cpu_backend::unary_map;
        fn relu<T: num_traits::Float>(v: T) -> T {
            if v > T::zero() { v } else { T::zero() }
        }
        let out = match storage {
            CpuStorage::F32(s) => CpuStorage::F32(unary_map(s, layout, relu)),
            CpuStorage::F64(s) => CpuStorage::F64(unary_map(s, layout, relu)),
            CpuStorage::F16(s) => CpuStorage::F16(unary_map(s, layout, relu)),
            CpuStorage::BF16(s) => CpuStorage::BF16(unary_map(s, layout, relu)),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // relu(g) keeps the positive incoming gradient; the mask keeps the
        // positions where the ReLU was active.
        let active = arg.gt(&arg.zeros_like()?)?.to_dtype(grad_res.dtype())?;
        Ok(Some(grad_res.relu()?.mul(&active)?))
    }
}

/// Picks the scalar to explain, one per example, from the model's output.
pub struct Target {
    kind: TargetKind,
}

type SelectFn = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;
type SelectPerImageFn = Box<dyn Fn(&Tensor, &[usize]) -> candle_core::Result<Tensor>>;

type TargetKind = common::TargetKind<SelectFn, SelectPerImageFn>;

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.kind, f)
    }
}

impl Target {
    /// The logit (or probability) of class `class`: the model's output must
    /// be `[B, classes]`.
    pub fn class(class: usize) -> Self {
        Target {
            kind: TargetKind::Class(class),
        }
    }

    /// Any scalar per example: `select` receives the model's output and
    /// returns a tensor of shape `[B]` or `[B, 1]` (for example a softmax
    /// probability, or a sum of logits).
    pub fn select(select: impl Fn(&Tensor) -> candle_core::Result<Tensor> + 'static) -> Self {
        Target {
            kind: TargetKind::Select(Box::new(select)),
        }
    }

    /// A class per image: row `r` of a batch is explained for
    /// `classes[i]`, where `i` is the image the row belongs to
    /// ([`ModelRequest::image_of_row`](crate::ModelRequest::image_of_row)),
    /// so one multi-image call
    /// ([`Saliency::get_masks`](crate::Saliency::get_masks)(crate::CoreSaliency::get_masks)) explains
    /// each image for its own class. A one-image call is image 0.
    pub fn classes(classes: Vec<usize>) -> Self {
        Target {
            kind: TargetKind::Classes(classes),
        }
    }

    /// Any scalar per example, knowing each row's image: `select` receives
    /// the model's output and the image of each row, and returns a tensor
    /// of shape `[B]` or `[B, 1]`.
    pub fn select_per_image(select: impl Fn(&Tensor, &[usize]) -> candle_core::Result<Tensor> + 'static) -> Self {
        Target {
            kind: TargetKind::SelectPerImage(Box::new(select)),
        }
    }

    /// The target values, shape `[B]`; `images` holds the image of each row.
    fn pick(&self, output: &Tensor, batch: usize, images: &[usize]) -> Result<Tensor, CandleAdapterError> {
        let classes_of = |dims: &[usize]| match dims {
            [b, classes] if *b == batch => Ok(*classes),
            _ => Err(CandleAdapterError::OutputShape {
                batch,
                actual: dims.to_vec(),
            }),
        };
        let values = match &self.kind {
            TargetKind::Class(class) => {
                common::class_in_range(*class, classes_of(output.dims())?)?;
                output.narrow(1, *class, 1)?
            }
            TargetKind::Classes(per_image) => {
                let classes = classes_of(output.dims())?;
                let rows: Vec<u32> = common::row_classes(per_image, images, classes)?
                    .into_iter()
                    .map(|class| class as u32)
                    .collect();
                let index = Tensor::from_vec(rows, (batch, 1), output.device())?;
                output.gather(&index, 1)?
            }
            TargetKind::Select(select) => select(output)?,
            TargetKind::SelectPerImage(select) => select(output, images)?,
        };
        match values.dims() {
            [b] | [b, 1] if *b == batch => Ok(values.reshape(batch)?),
            other => Err(CandleAdapterError::TargetShape {
                batch,
                actual: other.to_vec(),
            }),
        }
    }
}

/// What can go wrong in the adapter: candle's own errors
/// ([`Candle`](Self::Candle)) and the adapter's checks.
///
/// Converts with `?` into `Box<dyn std::error::Error>` and into
/// [`BoxError`]. Methods report it as
/// [`SaliencyError::Model`](crate::SaliencyError::Model) with the source
/// `candle_core::Error` for [`Candle`](Self::Candle) (passed on unchanged)
/// and this error for the others.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CandleAdapterError {
    /// An error from candle, in the forward pass, the target, the backward
    /// pass or a conversion.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// [`Target::classes`] has no class for an image of the call.
    #[error(
        "the batch holds rows of image {image}, but Target::classes gives classes for {images} image(s): give one class per image"
    )]
    NoTargetForImage {
        /// The image without a class.
        image: usize,
        /// How many classes were given.
        images: usize,
    },
    /// [`Target::class`] names a class the model does not have.
    #[error("target class {class} is out of range: the model has {classes} classes")]
    ClassOutOfRange {
        /// The class asked for.
        class: usize,
        /// The size of the model's class axis.
        classes: usize,
    },
    /// [`Target::class`] needs a `[B, classes]` model output.
    #[error("target class needs a model output of shape [{batch}, classes], got {actual:?}")]
    OutputShape {
        /// The batch size.
        batch: usize,
        /// The output's shape.
        actual: Vec<usize>,
    },
    /// [`Target::select`] returned something other than one value per example.
    #[error("the target must be one value per example, shape [{batch}] or [{batch}, 1], got {actual:?}")]
    TargetShape {
        /// The batch size.
        batch: usize,
        /// The shape returned.
        actual: Vec<usize>,
    },
    /// A convolution key was asked for but the forward closure never called
    /// [`ForwardContext::layer`].
    #[error("{key} was asked for, but the forward pass marked no layer with ForwardContext::layer")]
    NoLayerMarked {
        /// The key asked for.
        key: OutputKey,
    },
    /// The forward closure called [`ForwardContext::layer`] more than once.
    #[error("the forward pass marked {marks} layers with ForwardContext::layer; mark exactly one")]
    SeveralLayersMarked {
        /// How many times it was called.
        marks: usize,
    },
    /// Channels-first needs images with a channel axis: batches
    /// `[B, H, W, C]` (rank 4 or more). A `[B, H, W]` batch of images
    /// without one would have its width taken for channels.
    #[error(
        "a channels-first model needs batches of images with a channel axis, [B, H, W, C] (rank 4 or more), \
         got shape {shape:?}: give an image without a channel axis an explicit one (H x W x 1)"
    )]
    ChannelsFirstRank {
        /// The batch's shape.
        shape: Vec<usize>,
    },
    /// A channels-first model was handed images that are channels-first
    /// already (`[B, C, H, W]`); the adapter expects `[B, H, W, C]` and
    /// moves the channel axis itself.
    #[error(
        "the batch has shape {shape:?}, whose images look channels-first ([C, H, W]); give the methods \
         height x width x channels images (`adapters::candle::tensor_to_array` converts a [C, H, W] tensor) \
         and the adapter moves the channel axis for the model"
    )]
    ChannelsFirstInput {
        /// The batch's shape.
        shape: Vec<usize>,
    },
    /// Guided gradients were asked for, but no ReLU of the forward pass went
    /// through [`ForwardContext::relu`], so the guided rule applied nowhere
    /// and the result would be the plain gradient.
    #[error(
        "guided gradients were asked for, but no ReLU of the forward pass went through the context: \
         route every ReLU through ForwardContext::relu (a model without ReLUs has no guided gradients)"
    )]
    NoGuidedRelu,
    /// [`tensor_to_array`] or [`array_to_tensor`] was given a rank its
    /// layout does not accept.
    #[error("{what} must be {expected}, got shape {shape:?}")]
    ConversionRank {
        /// Which argument.
        what: &'static str,
        /// The accepted shapes, in words.
        expected: &'static str,
        /// The shape received.
        shape: Vec<usize>,
    },
}

from_refusal!(CandleAdapterError);

impl CandleAdapterError {
    /// The boxed error a method reports as the source of
    /// [`SaliencyError::Model`](crate::SaliencyError::Model): candle's own
    /// errors unchanged, the adapter's as themselves.
    fn into_box(self) -> BoxError {
        match self {
            CandleAdapterError::Candle(e) => Box::new(e),
            other => Box::new(other),
        }
    }
}

/// A candle model as a [`CallModelFunction<F>`](crate::CallModelFunction)
/// (`F` is `f32` or `f64`): see the [module docs](self).
///
/// Serves all five keys: input gradients, guided input gradients (a second
/// forward pass with [`ReluMode::Guided`], run only when asked for),
/// the marked layer's values and gradients, and the target values. A call
/// asking only for [`OutputKey::OutputLayerValues`] runs no backward pass.
pub struct CandleModel<F, M> {
    forward: M,
    target: Target,
    device: Device,
    dtype: DType,
    channels_first: bool,
    /// `None`: the layer has the input's layout.
    layer_layout: Option<ActivationLayout>,
    _float: PhantomData<fn() -> F>,
}

impl<F, M> std::fmt::Debug for CandleModel<F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleModel")
            .field("target", &self.target)
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .field("channels_first", &self.channels_first)
            .field("layer_layout", &self.layer_layout)
            .finish_non_exhaustive()
    }
}

impl<F, M> CandleModel<F, M>
where
    F: Float + WithDType,
    M: FnMut(&Tensor, &ForwardContext) -> candle_core::Result<Tensor>,
{
    /// A model from its forward pass (input tensor to output tensor) and the
    /// target to explain. Defaults: CPU, the model computes in `F`'s dtype,
    /// channels-last input.
    pub fn new(forward: M, target: Target) -> Self {
        CandleModel {
            forward,
            target,
            device: Device::Cpu,
            dtype: F::DTYPE,
            channels_first: false,
            layer_layout: None,
            _float: PhantomData,
        }
    }

    common::model_settings!(Device, DType, CandleAdapterError);

    common::model_calls!(
        CandleAdapterError,
        CandleAdapterError::into_box,
        /// Runs the model on `batch` and returns the outputs for `keys`, with
        /// the marked layer's layout stated.
        ///
        /// The error converts with `?` into `Box<dyn std::error::Error>`:
        ///
        /// ```
        /// use candle_core::Tensor;
        /// use ndarray::Array2;
        /// use saliency::OutputKey;
        /// use saliency::adapters::candle::{CandleModel, ForwardContext, Target};
        ///
        /// fn logits() -> Result<Vec<f32>, Box<dyn std::error::Error>> {
        ///     let forward = |x: &Tensor, _: &ForwardContext| x.sum_keepdim(1);
        ///     let mut model = CandleModel::<f32, _>::new(forward, Target::class(0));
        ///     let batch = Array2::<f32>::from_shape_vec((2, 3), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
        ///     let outputs = model.call(&batch, &[OutputKey::OutputLayerValues])?;
        ///     let values = outputs.get(OutputKey::OutputLayerValues).ok_or("no values")?;
        ///     Ok(values.iter().copied().collect())
        /// }
        /// assert_eq!(logits()?, [6.0, 15.0]);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
    );

    /// [`call`](Self::call) for a batch whose rows may belong to several
    /// images (as methods send it): each row is explained for its image's
    /// target ([`Target::classes`], [`Target::select_per_image`]).
    pub fn call_request(
        &mut self,
        batch: ArrayViewD<'_, F>,
        request: &ModelRequest<'_>,
    ) -> Result<ModelOutputs<F>, CandleAdapterError> {
        // Refused before any model work.
        let images = common::row_images(batch.shape(), self.channels_first, request)?;
        let x = array_to_tensor(batch, ActivationLayout::ChannelsLast, &self.device)?;

        let plan = Plan::new(request.keys());
        let mut outputs = ModelOutputs::new().with_layout(self.stated_layout());
        if plan.plain {
            let pass = self.pass(
                &x,
                &images,
                ReluMode::Standard,
                plan.input_gradients,
                plan.layer_key,
                plan.layer_gradients,
            )?;
            pass.insert_into(&mut outputs, &plan, |t| to_array::<F>(&t))?;
        }
        if plan.guided {
            let pass = self.pass(&x, &images, ReluMode::Guided, true, None, false)?;
            if let Some(g) = &pass.input_gradients {
                outputs.insert(OutputKey::GuidedInputOutputGradients, to_array::<F>(g)?);
            }
        }
        Ok(outputs)
    }

    /// One forward pass, and a backward pass if any gradient is wanted.
    /// What the forward pass alone can show wrong (no layer marked when
    /// `layer_key` asks for one, no guided ReLU) is reported before the
    /// backward pass, whose own failure would hide it.
    fn pass(
        &mut self,
        x: &Tensor,
        images: &[usize],
        relu: ReluMode,
        input_gradients: bool,
        layer_key: Option<OutputKey>,
        layer_gradients: bool,
    ) -> Result<Pass<Tensor>, CandleAdapterError> {
        let var = if input_gradients {
            Some(Var::from_tensor(x)?)
        } else {
            None
        };
        let input = var.as_ref().map_or(x, |v| v.as_tensor());
        let mut model_input = input.to_dtype(self.dtype)?;
        if self.channels_first {
            // Rank 4 or more, checked by `call`.
            let rank = model_input.rank();
            let mut order: Vec<usize> = (0..rank).collect();
            order.remove(rank - 1);
            order.insert(1, rank - 1);
            model_input = model_input.permute(order)?.contiguous()?;
        }
        let ctx = ForwardContext::new(relu, layer_gradients);
        let output = (self.forward)(&model_input, &ctx)?;
        if relu == ReluMode::Guided && ctx.relus.get() == 0 {
            return Err(CandleAdapterError::NoGuidedRelu);
        }
        let record = ctx.layer.into_inner();
        common::check_marks(record.marks, layer_key)?;
        let target = self.target.pick(&output, images.len(), images)?;
        let mut pass = Pass {
            target: target.detach(),
            input_gradients: None,
            layer_values: record.values,
            layer_gradients: None,
        };
        if input_gradients || layer_gradients {
            let grads = target.sum_all()?.backward()?;
            // A missing gradient means the target does not depend on it.
            if let Some(var) = &var {
                let t = var.as_tensor();
                pass.input_gradients = Some(match grads.get(t) {
                    Some(g) => g.clone(),
                    None => t.zeros_like()?,
                });
            }
            if let Some(probe) = &record.probe {
                let t = probe.as_tensor();
                pass.layer_gradients = Some(match grads.get(t) {
                    Some(g) => g.clone(),
                    None => t.zeros_like()?,
                });
            }
        }
        Ok(pass)
    }
}

/// Copies a tensor into an ndarray array of the same shape, converting to `F`.
fn to_array<F: Float + WithDType>(t: &Tensor) -> Result<ArrayD<F>, CandleAdapterError> {
    let values = t.to_dtype(F::DTYPE)?.flatten_all()?.to_vec1::<F>()?;
    ArrayD::from_shape_vec(IxDyn(t.dims()), values).map_err(|e| candle_core::Error::wrap(e).into())
}

/// Copies an image tensor into an ndarray array in the crate's layout,
/// converting to `F`.
///
/// With [`ActivationLayout::ChannelsFirst`] the tensor is `[C, H, W]` or
/// `[B, C, H, W]` (candle's and PyTorch's habit) and the array
/// `[H, W, C]` or `[B, H, W, C]`; other ranks are
/// [`CandleAdapterError::ConversionRank`]. With
/// [`ActivationLayout::ChannelsLast`] the tensor is copied as it is, any
/// rank.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use saliency::ActivationLayout;
/// use saliency::adapters::candle::{array_to_tensor, tensor_to_array};
///
/// // A 2-channel 2 x 3 image, [C, H, W]: channel c, row i, column j holds 100c + 10i + j.
/// let values: Vec<f32> = (0..2).flat_map(|c| (0..2).flat_map(move |i| (0..3).map(move |j| (100 * c + 10 * i + j) as f32))).collect();
/// let chw = Tensor::from_vec(values, (2, 2, 3), &Device::Cpu)?;
/// let image = tensor_to_array::<f32>(&chw, ActivationLayout::ChannelsFirst)?;
/// assert_eq!(image.shape(), [2, 3, 2]); // H x W x C
/// assert_eq!(image[[1, 2, 1]], 112.0); // row 1, column 2, channel 1
///
/// // And back, to the tensor a channels-first model takes.
/// let back = array_to_tensor(image.view(), ActivationLayout::ChannelsFirst, &Device::Cpu)?;
/// assert_eq!(back.dims(), [2, 2, 3]);
/// assert_eq!(back.flatten_all()?.to_vec1::<f32>()?, chw.flatten_all()?.to_vec1::<f32>()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn tensor_to_array<F: Float + WithDType>(
    tensor: &Tensor,
    layout: ActivationLayout,
) -> Result<ArrayD<F>, CandleAdapterError> {
    match layout {
        ActivationLayout::ChannelsLast => to_array(tensor),
        ActivationLayout::ChannelsFirst => {
            let moved = match tensor.rank() {
                3 => tensor.permute((1, 2, 0))?,
                4 => tensor.permute((0, 2, 3, 1))?,
                _ => {
                    return Err(CandleAdapterError::ConversionRank {
                        what: "a channels-first tensor",
                        expected: "[C, H, W] or [B, C, H, W]",
                        shape: tensor.dims().to_vec(),
                    });
                }
            };
            to_array(&moved.contiguous()?)
        }
    }
}

/// Copies an ndarray array in the crate's layout into a tensor on `device`,
/// of `F`'s dtype: the reverse of [`tensor_to_array`].
///
/// With [`ActivationLayout::ChannelsFirst`] the array is `[H, W, C]` or
/// `[B, H, W, C]` and the tensor `[C, H, W]` or `[B, C, H, W]`; other ranks
/// are [`CandleAdapterError::ConversionRank`]. With
/// [`ActivationLayout::ChannelsLast`] the array is copied as it is, any
/// rank. Any memory order is accepted.
pub fn array_to_tensor<F: Float + WithDType, D: Dimension>(
    array: ArrayView<'_, F, D>,
    layout: ActivationLayout,
    device: &Device,
) -> Result<Tensor, CandleAdapterError> {
    let shape = array.shape().to_vec();
    let order: &[usize] = match (layout, shape.len()) {
        (ActivationLayout::ChannelsLast, _) => &[],
        (ActivationLayout::ChannelsFirst, 3) => &[2, 0, 1],
        (ActivationLayout::ChannelsFirst, 4) => &[0, 3, 1, 2],
        (ActivationLayout::ChannelsFirst, _) => {
            return Err(CandleAdapterError::ConversionRank {
                what: "an array for a channels-first tensor",
                expected: "[H, W, C] or [B, H, W, C]",
                shape,
            });
        }
    };
    let standard = array.as_standard_layout();
    let tensor = match standard.as_slice() {
        Some(data) => Tensor::from_slice(data, shape.as_slice(), device)?,
        // Unreachable for a standard-layout array; copied element by element all the same.
        None => Tensor::from_vec(standard.iter().copied().collect::<Vec<F>>(), shape.as_slice(), device)?,
    };
    if order.is_empty() {
        Ok(tensor)
    } else {
        Ok(tensor.permute(order.to_vec())?.contiguous()?)
    }
}
