//! A [`CallModelFunction`](crate::CallModelFunction) built from a
//! [burn](https://burn.dev) model (feature `burn`).
//!
//! The user writes the forward pass once, as a closure from the input tensor
//! to the logits `[B, classes]`, and routes its ReLUs through the
//! [`ForwardContext`] it receives; [`BurnModel`] does the rest: it turns
//! every ndarray batch into a tensor on an autodiff device, runs the forward
//! pass (with ordinary or guided ReLUs), takes the target output, runs the
//! backward pass and returns every key a method asks for.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use ndarray::Array3;
//! use saliency::adapters::burn::{BurnModel, ForwardContext, Target};
//! use saliency::{GuidedBackprop, IntegratedGradients, Saliency};
//!
//! // A tiny model on 4 x 4 x 3 images: logits = relu(x W1) W2 over the
//! // flattened image, 8 hidden units and 2 classes.
//! let device = Device::flex();
//! let w1 = Tensor::<2>::from_data(TensorData::new((0..48 * 8).map(|i| ((i % 7) as f32 - 3.0) / 10.0).collect(), [48, 8]), &device);
//! let w2 = Tensor::<2>::from_data(TensorData::new((0..16).map(|i| ((i % 5) as f32 - 2.0) / 4.0).collect(), [8, 2]), &device);
//! // Batches of images H x W x C are rank 4: [B, H, W, C].
//! let forward = move |x: Tensor<4>, ctx: &ForwardContext| {
//!     let hidden = ctx.relu(x.flatten::<2>(1, 3).matmul(w1.clone()));
//!     hidden.matmul(w2.clone())
//! };
//! let mut model = BurnModel::<f32, _, 4>::new(forward, Target::class(1));
//!
//! let image = Array3::<f32>::from_shape_fn((4, 4, 3), |(i, j, c)| (i + j + c) as f32 / 10.0);
//! let ig = IntegratedGradients::new().steps(16).batch_size(8).get_mask(&image, &mut model.as_fn())?;
//! let guided = GuidedBackprop::new().get_mask(&image, &mut model.as_fn())?;
//! assert_eq!(ig.shape(), [4, 4, 3]);
//! assert_eq!(guided.shape(), [4, 4, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Ranks and layouts
//!
//! burn tensors carry their rank in the type: a [`BurnModel`] takes batches
//! of rank `D` (4 for `H x W x C` images, 3 for `H x W` ones) and refuses
//! others with [`BurnAdapterError::InputRank`].
//!
//! Methods hand the model batches of images as `[B, H, W, C]`
//! (channels-last). By default the tensor is given to the forward closure in
//! that layout; with [`BurnModel::channels_first`] the channel axis is moved
//! to position 1 first (`[B, C, H, W]`, what burn's `conv2d` expects), and
//! the input gradients are returned in the original `[B, H, W, C]` layout
//! either way.
//!
//! The layer marked with [`ForwardContext::layer`] is returned as the model
//! produced it, and the adapter states its layout with the outputs
//! ([`ModelOutputs::with_layout`]): `[B, C, H, W]` for a channels-first
//! model, `[B, H, W, C]` for a channels-last one, or what
//! [`BurnModel::layer_layout`] says. Grad-CAM follows that statement.
//!
//! # Guided gradients
//!
//! The guided ReLU passes the gradient only where both its input is positive
//! and the incoming gradient is positive. The adapter computes that rule
//! exactly with burn's ordinary autodiff, stage by stage: in a guided pass
//! every ReLU's output becomes a fresh leaf, so one backward pass gives the
//! gradient arriving at each ReLU from the part of the network after it;
//! the guided rule turns it into the gradient leaving the ReLU, which is
//! pushed back through the part before it, from the last ReLU to the first.
//! Each stage runs the forward pass anew (burn keeps no graph for a second
//! backward pass), so guided gradients cost one forward pass per ReLU plus
//! one; ordinary gradients cost one.
//!
//! # Batches
//!
//! The target of each example is summed over the batch before the backward
//! pass, so each example gets its own gradient as long as the forward pass
//! treats the examples independently (no batch statistics).
//!
//! # Errors
//!
//! burn reports misuse inside the forward pass (mismatched shapes, a tensor
//! on another device) by panicking; the adapter catches such a panic and
//! returns it as [`BurnAdapterError::Burn`] with burn's message, so a
//! method fails with [`SaliencyError::Model`](crate::SaliencyError::Model)
//! instead of taking the program down. The adapter's own checks (rank,
//! target, marked layer, guided ReLUs) run before or right after the forward
//! pass and name the fix.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ::burn::tensor::{DType, Device, Element, Gradients, Tensor, TensorCreationOptions, TensorData, activation};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

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
    /// The guided ReLU: the same forward values, the guided backward rule.
    Guided,
}

/// Reads one leaf's gradient, flattened, out of a backward pass.
type GradReader = Box<dyn Fn(&Gradients) -> Option<Tensor<1>>>;

/// Reads one leaf's gradient, as host data, out of a backward pass.
type DataReader = Box<dyn Fn(&Gradients) -> Option<TensorData>>;

/// One ReLU of a guided pass: its input, flattened and still in the graph
/// (the root of the stage that pushes the guided gradient back through the
/// network before it), and the reader of its output leaf's gradient.
struct GuidedRelu {
    input: Tensor<1>,
    output_grad: GradReader,
}

/// What [`BurnModel`] tells the forward closure: which ReLU to use, and
/// where the convolution layer to explain is.
///
/// Outside saliency (training, inference) use [`ForwardContext::standard`].
#[derive(Default)]
pub struct ForwardContext {
    relu: ReluMode,
    probe: bool,
    /// How many ReLUs went through [`ForwardContext::relu`]: a guided pass
    /// with none computed plain gradients.
    relus: Cell<usize>,
    guided: RefCell<Vec<GuidedRelu>>,
    layer: RefCell<LayerRecord>,
}

impl std::fmt::Debug for ForwardContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardContext")
            .field("relu", &self.relu)
            .field("relus", &self.relus.get())
            .field("layer_marks", &self.layer.borrow().marks)
            .finish_non_exhaustive()
    }
}

/// The explained layer as seen during one forward pass.
#[derive(Default)]
struct LayerRecord {
    /// How many times [`ForwardContext::layer`] was called.
    marks: usize,
    values: Option<TensorData>,
    /// Reads the gradient of the zero leaf added to the layer's output,
    /// which is the gradient with respect to the layer.
    probe: Option<DataReader>,
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
            ..Self::default()
        }
    }

    /// The ReLU this pass uses.
    pub fn relu_mode(&self) -> ReluMode {
        self.relu
    }

    /// `max(x, 0)`, with the ordinary or the guided gradient as this pass
    /// requires (the ordinary gradient is 0 at exactly 0, as PyTorch's).
    /// Every ReLU of the model must go through here for guided gradients to
    /// be right: a ReLU called directly (`activation::relu(x)`) keeps its
    /// ordinary gradient. A guided pass in which no ReLU came through here
    /// is an error ([`BurnAdapterError::NoGuidedRelu`]).
    pub fn relu<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.relus.set(self.relus.get().saturating_add(1));
        if self.relu == ReluMode::Standard || !x.is_autodiff() {
            return activation::relu(x);
        }
        // The output starts a new lineage: the stage after this ReLU ends
        // at it, and the guided rule decides what goes on to `x`.
        let output = activation::relu(x.clone().detach()).detach().require_grad();
        let leaf = output.clone();
        let output_grad: GradReader = Box::new(move |grads| leaf.grad(grads).map(|g| g.reshape([-1])));
        self.guided.borrow_mut().push(GuidedRelu {
            input: x.reshape([-1]),
            output_grad,
        });
        output
    }

    /// Marks `x` as the convolution layer to explain (Grad-CAM) and returns
    /// the tensor the forward pass must continue with (same values). Call it
    /// at most once per forward pass; without the convolution keys it returns
    /// `x` itself.
    pub fn layer<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut record = self.layer.borrow_mut();
        record.marks += 1;
        if record.marks > 1 || self.relu == ReluMode::Guided {
            return x;
        }
        record.values = Some(x.clone().into_data());
        if !self.probe || !x.is_autodiff() {
            return x;
        }
        // A zero leaf added to the layer: its gradient is the layer's, and
        // the input keeps its own path through `x`.
        let options = TensorCreationOptions::new(x.device()).with_dtype(x.dtype());
        let probe = Tensor::<D>::zeros(x.shape(), options).require_grad();
        let leaf = probe.clone();
        record.probe = Some(Box::new(move |grads| leaf.grad(grads).map(Tensor::into_data)));
        x + probe
    }
}

/// Picks the scalar to explain, one per example, from the model's output
/// `[B, classes]`.
pub struct Target {
    kind: TargetKind,
}

type SelectFn = Box<dyn Fn(Tensor<2>) -> Tensor<1>>;
type SelectPerImageFn = Box<dyn Fn(Tensor<2>, &[usize]) -> Tensor<1>>;

type TargetKind = common::TargetKind<SelectFn, SelectPerImageFn>;

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.kind, f)
    }
}

impl Target {
    /// The logit (or probability) of class `class`.
    pub fn class(class: usize) -> Self {
        Target {
            kind: TargetKind::Class(class),
        }
    }

    /// Any scalar per example: `select` receives the model's output and
    /// returns a tensor of shape `[B]` (for example a softmax probability,
    /// or a sum of logits).
    pub fn select(select: impl Fn(Tensor<2>) -> Tensor<1> + 'static) -> Self {
        Target {
            kind: TargetKind::Select(Box::new(select)),
        }
    }

    /// A class per image: row `r` of a batch is explained for
    /// `classes[i]`, where `i` is the image the row belongs to
    /// ([`ModelRequest::image_of_row`]), so one multi-image call
    /// ([`Saliency::get_masks`](crate::Saliency::get_masks)(crate::CoreSaliency::get_masks)) explains
    /// each image for its own class. A one-image call is image 0.
    pub fn classes(classes: Vec<usize>) -> Self {
        Target {
            kind: TargetKind::Classes(classes),
        }
    }

    /// Any scalar per example, knowing each row's image: `select` receives
    /// the model's output and the image of each row, and returns a tensor
    /// of shape `[B]`.
    pub fn select_per_image(select: impl Fn(Tensor<2>, &[usize]) -> Tensor<1> + 'static) -> Self {
        Target {
            kind: TargetKind::SelectPerImage(Box::new(select)),
        }
    }

    /// The class of each row, for the class targets (checked against the
    /// output's class axis); `None` for the selectors.
    fn classes_of_rows(&self, images: &[usize], classes: usize) -> Result<Option<Vec<usize>>, BurnAdapterError> {
        Ok(match &self.kind {
            TargetKind::Class(class) => Some(vec![common::class_in_range(*class, classes)?; images.len()]),
            TargetKind::Classes(per_image) => Some(common::row_classes(per_image, images, classes)?),
            TargetKind::Select(_) | TargetKind::SelectPerImage(_) => None,
        })
    }

    /// The target values, shape `[B]`; `images` holds the image of each row.
    /// Shapes and classes are checked before any burn operation.
    fn pick(&self, output: Tensor<2>, images: &[usize]) -> Result<Tensor<1>, BurnAdapterError> {
        let batch = images.len();
        let [rows, classes] = output.dims();
        if rows != batch {
            return Err(BurnAdapterError::OutputShape {
                batch,
                actual: vec![rows, classes],
            });
        }
        let values = match self.classes_of_rows(images, classes)? {
            Some(row_classes) => {
                // A one-hot mask keeps one logit per row: exact, and
                // differentiable on every backend.
                let mut mask = vec![0.0_f64; batch * classes];
                for (r, &c) in row_classes.iter().enumerate() {
                    mask[r * classes + c] = 1.0;
                }
                let options = TensorCreationOptions::new(output.device()).with_dtype(output.dtype());
                let mask = Tensor::<2>::from_data(TensorData::new(mask, [batch, classes]), options);
                (output * mask).sum_dim(1).reshape([batch])
            }
            None => match &self.kind {
                TargetKind::Select(select) => select(output),
                TargetKind::SelectPerImage(select) => select(output, images),
                // Class targets were handled above.
                TargetKind::Class(_) | TargetKind::Classes(_) => output.sum_dim(1).reshape([batch]),
            },
        };
        match values.dims() {
            [b] if b == batch => Ok(values),
            other => Err(BurnAdapterError::TargetShape {
                batch,
                actual: other.to_vec(),
            }),
        }
    }
}

/// What can go wrong in the adapter.
///
/// Converts with `?` into `Box<dyn std::error::Error>` and into
/// [`BoxError`]; methods report it as
/// [`SaliencyError::Model`](crate::SaliencyError::Model) with this error as
/// the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BurnAdapterError {
    /// burn failed in the forward pass, the target or the backward pass:
    /// it panicked (its way of reporting mismatched shapes, devices or
    /// dtypes), or its tensor data could not be read as `F`.
    #[error("burn failed: {message}")]
    Burn {
        /// burn's message.
        message: String,
    },
    /// The batch's rank is not the rank the model's forward closure takes.
    #[error(
        "the model takes batches of rank {expected} (its forward closure takes Tensor<{expected}>), got shape {shape:?}: \
         give images of rank {image_rank} or build the model for rank {actual}",
        image_rank = expected.saturating_sub(1),
        actual = shape.len()
    )]
    InputRank {
        /// The rank the model takes.
        expected: usize,
        /// The batch's shape.
        shape: Vec<usize>,
    },
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
    /// The model's output has another number of rows than the batch.
    #[error("the model's output must be [{batch}, classes] (one row per example), got {actual:?}")]
    OutputShape {
        /// The batch size.
        batch: usize,
        /// The output's shape.
        actual: Vec<usize>,
    },
    /// [`Target::select`] returned something other than one value per example.
    #[error("the target must be one value per example, shape [{batch}], got {actual:?}")]
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
    /// `[B, H, W, C]` (rank 4 or more).
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
         height x width x channels images and the adapter moves the channel axis for the model"
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
    /// The guided stages rerun the forward pass, which routed another number
    /// of ReLUs through the context than the first time.
    #[error(
        "the forward pass routed {first} ReLU(s) through the context, then {now} when run again on the same batch: \
         guided gradients need a forward pass that does the same every time"
    )]
    ReluCountChanged {
        /// ReLUs in the first guided pass.
        first: usize,
        /// ReLUs in a later one.
        now: usize,
    },
}

from_refusal!(BurnAdapterError);

/// A burn model as a [`CallModelFunction<F>`](crate::CallModelFunction)
/// (`F` is `f32` or `f64`) on batches of rank `D`: see the
/// [module docs](self).
///
/// Serves all five keys: input gradients, guided input gradients (guided
/// passes run only when asked for), the marked layer's values and
/// gradients, and the target values. A call asking only for
/// [`OutputKey::OutputLayerValues`] runs no backward pass.
pub struct BurnModel<F, M, const D: usize> {
    forward: M,
    target: Target,
    device: Device,
    dtype: DType,
    channels_first: bool,
    /// `None`: the layer has the input's layout.
    layer_layout: Option<ActivationLayout>,
    _float: PhantomData<fn() -> F>,
}

impl<F, M, const D: usize> std::fmt::Debug for BurnModel<F, M, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurnModel")
            .field("rank", &D)
            .field("target", &self.target)
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .field("channels_first", &self.channels_first)
            .field("layer_layout", &self.layer_layout)
            .finish_non_exhaustive()
    }
}

impl<F, M, const D: usize> BurnModel<F, M, D>
where
    F: Float + Element,
    M: FnMut(Tensor<D>, &ForwardContext) -> Tensor<2>,
{
    /// A model from its forward pass (input tensor to logits) and the target
    /// to explain. Defaults: burn's Flex CPU device, the model computes in
    /// `F`'s dtype, channels-last input.
    pub fn new(forward: M, target: Target) -> Self {
        BurnModel {
            forward,
            target,
            device: Device::flex(),
            dtype: F::dtype(),
            channels_first: false,
            layer_layout: None,
            _float: PhantomData,
        }
    }

    common::model_settings!(Device, DType, BurnAdapterError);

    common::model_calls!(
        BurnAdapterError,
        BoxError::from,
        /// Runs the model on `batch` (every row image 0) and returns the outputs
        /// for `keys`, with the marked layer's layout stated.
        ///
        /// ```
        /// use burn::tensor::Tensor;
        /// use ndarray::Array2;
        /// use saliency::OutputKey;
        /// use saliency::adapters::burn::{BurnModel, ForwardContext, Target};
        ///
        /// fn logits() -> Result<Vec<f32>, Box<dyn std::error::Error>> {
        ///     let forward = |x: Tensor<2>, _: &ForwardContext| x.sum_dim(1);
        ///     let mut model = BurnModel::<f32, _, 2>::new(forward, Target::class(0));
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
    ) -> Result<ModelOutputs<F>, BurnAdapterError> {
        let shape = batch.shape().to_vec();
        if shape.len() != D {
            return Err(BurnAdapterError::InputRank { expected: D, shape });
        }
        let images = common::row_images(&shape, self.channels_first, request)?;
        let standard = batch.as_standard_layout();
        let data = TensorData::new(standard.iter().copied().collect::<Vec<F>>(), shape);

        let plan = Plan::new(request.keys());
        let mut outputs = ModelOutputs::new().with_layout(self.stated_layout());
        if plan.plain {
            let pass = self.pass(
                &data,
                &images,
                plan.input_gradients,
                plan.layer_key,
                plan.layer_gradients,
            )?;
            pass.insert_into(&mut outputs, &plan, to_array::<F>)?;
        }
        if plan.guided {
            let guided = self.guided_pass(&data, &images)?;
            outputs.insert(OutputKey::GuidedInputOutputGradients, to_array::<F>(guided)?);
        }
        Ok(outputs)
    }

    /// A fresh input on the autodiff device, in the model's dtype, and the
    /// tensor the forward closure receives (channels moved if asked).
    fn input(&self, data: &TensorData, require_grad: bool) -> (Tensor<D>, Tensor<D>) {
        let options = TensorCreationOptions::new(self.device.clone().autodiff()).with_dtype(self.dtype);
        let mut leaf = Tensor::<D>::from_data(data.clone(), options);
        if require_grad {
            leaf = leaf.require_grad();
        }
        let mut model_input = leaf.clone();
        if self.channels_first {
            // Rank 4 or more, checked by `call_request`: [0, D-1, 1, .., D-2].
            let mut order = [0_usize; D];
            for (i, slot) in order.iter_mut().enumerate().skip(1) {
                *slot = if i == 1 { D - 1 } else { i - 1 };
            }
            model_input = model_input.permute(order);
        }
        (leaf, model_input)
    }

    /// One forward pass with ordinary ReLUs, and a backward pass if any
    /// gradient is wanted. What the forward pass alone can show wrong (no
    /// layer marked when `layer_key` asks for one) is reported before the
    /// backward pass.
    fn pass(
        &mut self,
        data: &TensorData,
        images: &[usize],
        input_gradients: bool,
        layer_key: Option<OutputKey>,
        layer_gradients: bool,
    ) -> Result<Pass<TensorData>, BurnAdapterError> {
        let ctx = ForwardContext::new(ReluMode::Standard, layer_gradients);
        let (leaf, target) = guard(|| {
            let (leaf, model_input) = self.input(data, input_gradients);
            let output = (self.forward)(model_input, &ctx);
            Ok((leaf, output))
        })?;
        let record = ctx.layer.into_inner();
        common::check_marks(record.marks, layer_key)?;
        guard(|| {
            let target = self.target.pick(target, images)?;
            let values = target.clone().detach().into_data();
            let mut pass = Pass {
                target: values,
                input_gradients: None,
                layer_values: record.values,
                layer_gradients: None,
            };
            if input_gradients || layer_gradients {
                let grads = target.sum().backward_if_tracked();
                if input_gradients {
                    pass.input_gradients = Some(match grads.as_ref().and_then(|g| leaf.grad(g)) {
                        Some(g) => g.into_data(),
                        // The target does not depend on the input.
                        None => leaf.zeros_like().into_data(),
                    });
                }
                if let Some(probe) = &record.probe {
                    pass.layer_gradients = grads.as_ref().and_then(probe);
                }
                if layer_gradients && pass.layer_gradients.is_none() {
                    // The target does not depend on the layer.
                    pass.layer_gradients = pass.layer_values.as_ref().map(zeros_like_data);
                }
            }
            Ok(pass)
        })
    }

    /// The guided input gradients, stage by stage (see the module docs):
    /// stage 0 pushes the target's gradient back to the nearest ReLU
    /// outputs, stage `s` applies the guided rule at ReLU `n - s` and pushes
    /// the result back through the network before it.
    fn guided_pass(&mut self, data: &TensorData, images: &[usize]) -> Result<TensorData, BurnAdapterError> {
        guard(|| {
            // Gradients arriving at each ReLU's output, and at the input.
            let mut arriving: Vec<Option<Tensor<1>>> = Vec::new();
            let mut input_grad: Option<Tensor<D>> = None;
            let mut relus = None;
            // Stage 0 seeds with the target; stage s > 0 with ReLU n - s.
            let mut stage = 0;
            loop {
                let ctx = ForwardContext::new(ReluMode::Guided, false);
                let (leaf, model_input) = self.input(data, true);
                let output = (self.forward)(model_input, &ctx);
                let count = ctx.relus.get();
                if count == 0 {
                    return Err(BurnAdapterError::NoGuidedRelu);
                }
                let mut recorded = ctx.guided.into_inner();
                let n = *relus.get_or_insert(recorded.len());
                if recorded.len() != n {
                    return Err(BurnAdapterError::ReluCountChanged {
                        first: n,
                        now: recorded.len(),
                    });
                }
                if arriving.is_empty() {
                    arriving = vec![None; n];
                }
                // The seed's ReLUs downstream of it are leaves this stage
                // does not reach; those upstream receive gradient.
                let (root, upstream) = if stage == 0 {
                    (Some(self.target.pick(output, images)?.sum()), n)
                } else {
                    let k = n - stage;
                    let relu = recorded.swap_remove(k);
                    drop(output);
                    let root = arriving[k].take().map(|g| {
                        let x = relu.input;
                        let inactive = x.clone().detach().without_autodiff().lower_equal_elem(0.0);
                        let g = g.clamp_min(0.0).mask_fill(inactive, 0.0);
                        (x * g).sum()
                    });
                    // swap_remove moved the last ReLU into slot k; only
                    // slots below k are upstream of ReLU k.
                    (root, k)
                };
                if let Some(grads) = root.and_then(|r| r.backward_if_tracked()) {
                    for (j, relu) in recorded.iter().enumerate().take(upstream) {
                        if let Some(g) = (relu.output_grad)(&grads) {
                            arriving[j] = Some(match arriving[j].take() {
                                Some(acc) => acc + g,
                                None => g,
                            });
                        }
                    }
                    if let Some(g) = leaf.grad(&grads) {
                        input_grad = Some(match input_grad.take() {
                            Some(acc) => acc + g,
                            None => g,
                        });
                    }
                }
                if stage == n {
                    let grad = match input_grad {
                        Some(g) => g.into_data(),
                        None => leaf.zeros_like().detach().into_data(),
                    };
                    return Ok(grad);
                }
                stage += 1;
            }
        })
    }
}

/// `backward` for a tracked tensor; `None` for one that does not depend on
/// any leaf asking for a gradient (burn panics on those).
trait BackwardIfTracked {
    fn backward_if_tracked(&self) -> Option<Gradients>;
}

impl BackwardIfTracked for Tensor<1> {
    fn backward_if_tracked(&self) -> Option<Gradients> {
        self.is_tracked().then(|| self.backward())
    }
}

/// Runs `f`, turning a burn panic into [`BurnAdapterError::Burn`].
fn guard<T>(f: impl FnOnce() -> Result<T, BurnAdapterError>) -> Result<T, BurnAdapterError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        Err(BurnAdapterError::Burn { message })
    })
}

fn zeros_like_data(data: &TensorData) -> TensorData {
    TensorData::zeros::<f64, _>(data.shape().clone()).convert_dtype(data.dtype())
}

/// Copies tensor data into an ndarray array of the same shape, converting
/// to `F`.
fn to_array<F: Float + Element>(data: TensorData) -> Result<ArrayD<F>, BurnAdapterError> {
    let shape = data.shape().to_vec();
    let values = data
        .convert::<F>()
        .try_into_vec::<F>()
        .map_err(|e| BurnAdapterError::Burn {
            message: format!("{e:?}"),
        })?;
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| BurnAdapterError::Burn { message: e.to_string() })
}
