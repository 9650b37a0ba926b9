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
//! use saliency::{CoreSaliency, GuidedBackprop, IntegratedGradients};
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
//! let ig = IntegratedGradients::new().steps(16).batch_size(8).get_mask(image.view().into_dyn(), &mut model.as_fn())?;
//! let guided = GuidedBackprop::new().get_mask(image.view().into_dyn(), &mut model.as_fn())?;
//! assert_eq!(ig.shape(), [4, 4, 3]);
//! assert_eq!(guided.shape(), [4, 4, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
//! The convolution layer marked with [`ForwardContext::layer`] is returned
//! as the model produced it: `[B, C, H, W]` for a channels-first model,
//! `[B, H, W, C]` for a channels-last one. Tell Grad-CAM which with
//! [`GradCam::layout`](crate::GradCam::layout)
//! ([`ActivationLayout::ChannelsFirst`](crate::ActivationLayout::ChannelsFirst)
//! for candle-nn's `Conv2d`).
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

use std::cell::RefCell;
use std::marker::PhantomData;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var, WithDType};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::error::BoxError;
use crate::float::Float;
use crate::model::{ModelOutputs, ModelRequest, OutputKey};

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
            layer: RefCell::new(LayerRecord::default()),
        }
    }

    /// The ReLU this pass uses.
    pub fn relu_mode(&self) -> ReluMode {
        self.relu
    }

    /// `max(x, 0)`, with the ordinary or the guided gradient as this pass
    /// requires. Every ReLU of the model should go through here (or check
    /// [`relu_mode`](Self::relu_mode)) for guided gradients to be right.
    pub fn relu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.relu {
            ReluMode::Standard => x.relu(),
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

enum TargetKind {
    Class(usize),
    Select(SelectFn),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            TargetKind::Class(c) => write!(f, "Target::class({c})"),
            TargetKind::Select(_) => f.write_str("Target::select(..)"),
        }
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

    /// The target values, shape `[B]`.
    fn pick(&self, output: &Tensor, batch: usize) -> Result<Tensor, BoxError> {
        let values = match &self.kind {
            TargetKind::Class(class) => {
                let dims = output.dims();
                match dims {
                    [b, classes] if *b == batch => {
                        if *class >= *classes {
                            return Err(CandleAdapterError::ClassOutOfRange {
                                class: *class,
                                classes: *classes,
                            }
                            .into());
                        }
                        output.narrow(1, *class, 1)?
                    }
                    _ => {
                        return Err(CandleAdapterError::OutputShape {
                            batch,
                            actual: dims.to_vec(),
                        }
                        .into());
                    }
                }
            }
            TargetKind::Select(select) => select(output)?,
        };
        match values.dims() {
            [b] | [b, 1] if *b == batch => Ok(values.reshape(batch)?),
            other => Err(CandleAdapterError::TargetShape {
                batch,
                actual: other.to_vec(),
            }
            .into()),
        }
    }
}

/// What can go wrong inside the adapter besides candle's own errors (which
/// are passed on unchanged). Methods report both as
/// [`SaliencyError::Model`](crate::SaliencyError::Model), with this as the
/// source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CandleAdapterError {
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
    /// Channels-first needs images with a channel axis.
    #[error("a channels-first model needs batches of rank 3 or more ([B, ..., C]), got shape {shape:?}")]
    ChannelsFirstRank {
        /// The batch's shape.
        shape: Vec<usize>,
    },
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
    _float: PhantomData<fn() -> F>,
}

impl<F, M> std::fmt::Debug for CandleModel<F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleModel")
            .field("target", &self.target)
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .field("channels_first", &self.channels_first)
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
            _float: PhantomData,
        }
    }

    /// The device the model's weights live on.
    pub fn device(mut self, device: &Device) -> Self {
        self.device = device.clone();
        self
    }

    /// The dtype the model computes in, when it differs from `F` (inputs are
    /// converted to it, outputs back to `F`).
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// Whether the model wants its input channels-first: the batch's last
    /// axis is moved to position 1 (`[B, H, W, C]` becomes `[B, C, H, W]`).
    pub fn channels_first(mut self, channels_first: bool) -> Self {
        self.channels_first = channels_first;
        self
    }

    /// Changes the target.
    pub fn set_target(&mut self, target: Target) {
        self.target = target;
    }

    /// This model as a closure, to pass where a method wants
    /// `&mut dyn CallModelFunction<F>`: `method.get_mask(x, &mut model.as_fn())`.
    pub fn as_fn(
        &mut self,
    ) -> impl FnMut(ArrayViewD<'_, F>, &ModelRequest<'_>) -> Result<ModelOutputs<F>, BoxError> + '_ {
        move |batch, request| self.call(batch, request)
    }

    /// Runs the model on `batch` and returns the outputs for `keys`.
    pub fn call(&mut self, batch: ArrayViewD<'_, F>, keys: &[OutputKey]) -> Result<ModelOutputs<F>, BoxError> {
        let shape = batch.shape().to_vec();
        let batch_size = shape.first().copied().unwrap_or(0);
        let standard = batch.as_standard_layout();
        let data = standard.as_slice().ok_or("the batch is not contiguous")?;
        let x = Tensor::from_slice(data, shape.as_slice(), &self.device)?;

        let wants = |k: OutputKey| keys.contains(&k);
        let mut outputs = ModelOutputs::new();
        let plain_keys = keys.iter().any(|&k| k != OutputKey::GuidedInputOutputGradients);
        if plain_keys {
            let pass = self.pass(
                &x,
                batch_size,
                ReluMode::Standard,
                wants(OutputKey::InputOutputGradients),
                wants(OutputKey::ConvolutionOutputGradients),
            )?;
            if wants(OutputKey::OutputLayerValues) {
                outputs.insert(OutputKey::OutputLayerValues, to_array::<F>(&pass.target)?);
            }
            if let Some(g) = &pass.input_gradients {
                outputs.insert(OutputKey::InputOutputGradients, to_array::<F>(g)?);
            }
            for (key, tensor) in [
                (OutputKey::ConvolutionLayerValues, &pass.layer_values),
                (OutputKey::ConvolutionOutputGradients, &pass.layer_gradients),
            ] {
                if wants(key) {
                    let tensor = tensor.as_ref().ok_or(CandleAdapterError::NoLayerMarked { key })?;
                    outputs.insert(key, to_array::<F>(tensor)?);
                }
            }
        }
        if wants(OutputKey::GuidedInputOutputGradients) {
            let pass = self.pass(&x, batch_size, ReluMode::Guided, true, false)?;
            if let Some(g) = &pass.input_gradients {
                outputs.insert(OutputKey::GuidedInputOutputGradients, to_array::<F>(g)?);
            }
        }
        Ok(outputs)
    }

    /// One forward pass, and a backward pass if any gradient is wanted.
    fn pass(
        &mut self,
        x: &Tensor,
        batch: usize,
        relu: ReluMode,
        input_gradients: bool,
        layer_gradients: bool,
    ) -> Result<Pass, BoxError> {
        let var = if input_gradients {
            Some(Var::from_tensor(x)?)
        } else {
            None
        };
        let input = var.as_ref().map_or(x, |v| v.as_tensor());
        let mut model_input = input.to_dtype(self.dtype)?;
        if self.channels_first {
            let rank = model_input.rank();
            if rank < 3 {
                return Err(CandleAdapterError::ChannelsFirstRank {
                    shape: x.dims().to_vec(),
                }
                .into());
            }
            let mut order: Vec<usize> = (0..rank).collect();
            order.remove(rank - 1);
            order.insert(1, rank - 1);
            model_input = model_input.permute(order)?.contiguous()?;
        }
        let ctx = ForwardContext::new(relu, layer_gradients);
        let output = (self.forward)(&model_input, &ctx)?;
        let record = ctx.layer.into_inner();
        if record.marks > 1 {
            return Err(CandleAdapterError::SeveralLayersMarked { marks: record.marks }.into());
        }
        let target = self.target.pick(&output, batch)?;
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

/// The tensors one pass produced.
struct Pass {
    target: Tensor,
    input_gradients: Option<Tensor>,
    layer_values: Option<Tensor>,
    layer_gradients: Option<Tensor>,
}

/// Copies a tensor into an ndarray array of the same shape, converting to `F`.
fn to_array<F: Float + WithDType>(t: &Tensor) -> Result<ArrayD<F>, BoxError> {
    let values = t.to_dtype(F::DTYPE)?.flatten_all()?.to_vec1::<F>()?;
    Ok(ArrayD::from_shape_vec(IxDyn(t.dims()), values)?)
}
