//! Mistakes at the model boundary that used to give a plausible, wrong
//! result or a misleading error: each is now the right result or an error
//! that names the fix.

use std::error::Error;

use ndarray::{Array3, Array4, ArrayD, ArrayViewD};
use saliency::{
    ActivationLayout, CoreSaliency, GradCam, ModelOutputs, OutputKey, Saliency, SaliencyError, VanillaGradients,
};

/// The messages of `err` and of every source under it, outermost first.
fn chain(err: &(dyn Error + 'static)) -> Vec<String> {
    let mut messages = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    messages
}

/// What an error reporter prints (anyhow's `{:#}`): the chain joined.
/// Every cause must appear in it exactly once.
fn assert_each_cause_once(err: &(dyn Error + 'static), causes: &[&str]) {
    let messages = chain(err);
    let joined = messages.join(": ");
    for cause in causes {
        assert_eq!(joined.matches(cause).count(), 1, "{cause:?} in {joined:?}");
    }
    assert_eq!(messages.len(), causes.len() + 1, "{messages:?}");
}

/// An error with a source of its own, to check that deeper causes are
/// printed once too.
#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the weights could not be loaded")
    }
}

impl Error for Outer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn model_error_prints_its_cause_once() {
    let image = Array3::<f64>::zeros((4, 4, 3));
    let err = VanillaGradients::new()
        .get_mask(image.view().into_dyn(), &mut |_batch, _keys| {
            Err(Outer(std::io::Error::other("weights.safetensors is truncated")).into())
        })
        .unwrap_err();
    assert!(matches!(err, SaliencyError::Model(_)), "{err}");
    assert_eq!(err.to_string(), "the model function failed");
    assert_each_cause_once(
        &err,
        &["the weights could not be loaded", "weights.safetensors is truncated"],
    );
    // The source is still there to downcast.
    assert!(err.source().is_some_and(|s| s.downcast_ref::<Outer>().is_some()));
}

#[test]
fn io_and_encoding_errors_print_their_cause_once() {
    let io = SaliencyError::Io {
        path: "maps/out.png".into(),
        source: Box::new(std::io::Error::other("disk full")),
    };
    assert_eq!(io.to_string(), "cannot read or write maps/out.png");
    assert_each_cause_once(&io, &["disk full"]);

    let encoding = SaliencyError::ImageEncoding {
        format: "lossless WebP",
        source: "image too large".into(),
    };
    assert_each_cause_once(&encoding, &["image too large"]);
    assert!(encoding.to_string().contains("lossless WebP"), "{encoding}");
}

#[cfg(feature = "image")]
#[test]
fn a_missing_image_file_prints_its_cause_once() {
    let path = std::env::temp_dir().join(format!("saliency-boundary-missing-{}.png", std::process::id()));
    let err = saliency::visualize::read_image(&path).unwrap_err();
    assert!(matches!(err, SaliencyError::Io { .. }), "{err}");
    let messages = chain(&err);
    assert!(messages.len() >= 2, "{messages:?}");
    // The file is named in the message, the cause only in the source.
    assert!(messages[0].contains("saliency-boundary-missing"), "{messages:?}");
    let cause = &messages[1];
    assert_eq!(messages.join(": ").matches(cause.as_str()).count(), 1, "{messages:?}");
}

// ---------------------------------------------------------------------------
// Grad-CAM and the layout the model states.

/// A 3 x 2 layer with 2 channels, channels-first `[1, 2, 3, 2]`, whose
/// channels-last reading is a different map.
fn layer_first() -> (ArrayD<f64>, ArrayD<f64>) {
    let values = Array4::from_shape_fn((1, 2, 3, 2), |(_, c, i, j)| ((c * 5 + i * 3 + j) % 4) as f64 - 0.5);
    let grads = Array4::from_shape_fn(
        (1, 2, 3, 2),
        |(_, c, i, j)| if c == 0 { 0.25 * (i + j) as f64 } else { -0.5 },
    );
    (values.into_dyn(), grads.into_dyn())
}

fn fixed_layer(
    values: ArrayD<f64>,
    grads: ArrayD<f64>,
    stated: Option<ActivationLayout>,
) -> impl FnMut(ArrayViewD<'_, f64>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, saliency::BoxError> {
    move |_batch, _keys| {
        let mut out = ModelOutputs::new()
            .with(OutputKey::ConvolutionLayerValues, values.clone())
            .with(OutputKey::ConvolutionOutputGradients, grads.clone());
        out.set_layout(stated);
        Ok(out)
    }
}

#[test]
fn grad_cam_follows_the_layout_a_model_states() {
    let image = Array3::<f64>::zeros((6, 4, 3));
    let x = image.view().into_dyn();
    let (values, grads) = layer_first();
    let cam = GradCam::new().three_dims(false);

    let explicit = cam
        .layout(ActivationLayout::ChannelsFirst)
        .get_mask(x.view(), &mut fixed_layer(values.clone(), grads.clone(), None))
        .unwrap();
    let stated = cam
        .get_mask(
            x.view(),
            &mut fixed_layer(values.clone(), grads.clone(), Some(ActivationLayout::ChannelsFirst)),
        )
        .unwrap();
    assert!(explicit.iter().any(|&v| v > 0.0));
    assert_eq!(stated, explicit);

    // Nothing stated, nothing set: channels-last, the reference's reading of
    // the same numbers, which is another map.
    let unstated = cam
        .get_mask(x.view(), &mut fixed_layer(values.clone(), grads.clone(), None))
        .unwrap();
    let last = cam
        .layout(ActivationLayout::ChannelsLast)
        .get_mask(x.view(), &mut fixed_layer(values.clone(), grads.clone(), None))
        .unwrap();
    assert_eq!(unstated, last);
    assert_ne!(unstated, explicit);

    // Set and stated alike: fine.
    let both = cam
        .layout(ActivationLayout::ChannelsFirst)
        .get_mask(
            x.view(),
            &mut fixed_layer(values.clone(), grads.clone(), Some(ActivationLayout::ChannelsFirst)),
        )
        .unwrap();
    assert_eq!(both, explicit);
}

#[test]
fn grad_cam_refuses_a_layout_that_contradicts_the_model() {
    let image = Array3::<f64>::zeros((6, 4, 3));
    let (values, grads) = layer_first();
    let err = GradCam::new()
        .layout(ActivationLayout::ChannelsLast)
        .get_mask(
            image.view().into_dyn(),
            &mut fixed_layer(values, grads, Some(ActivationLayout::ChannelsFirst)),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SaliencyError::LayoutConflict {
                set: ActivationLayout::ChannelsLast,
                stated: ActivationLayout::ChannelsFirst,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    for needle in ["channels-last", "channels-first", "remove the layout setting"] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
}

/// A plain closure returning a channels-first layer, `[1, 8, 3, 3]`, with no
/// layout stated anywhere: read channels-last it would be an 8 x 3 map of 3
/// channels, a plausible picture of nothing. It is refused, naming the fix;
/// stated, it gives the map of the same layer given channels-last.
#[test]
fn grad_cam_refuses_an_unstated_layer_that_looks_channels_first() {
    let image = Array3::<f64>::zeros((6, 6, 3));
    let first = Array4::from_shape_fn((1, 8, 3, 3), |(_, c, i, j)| ((c * 7 + i * 3 + j) % 5) as f64 - 1.0);
    let first_grads = Array4::from_shape_fn((1, 8, 3, 3), |(_, c, i, j)| {
        (c as f64 - 3.5) * 0.1 + (i * j) as f64 * 0.05
    });
    let err = GradCam::new()
        .get_mask(
            &image,
            &mut fixed_layer(first.clone().into_dyn(), first_grads.clone().into_dyn(), None),
        )
        .unwrap_err();
    assert!(
        matches!(&err, SaliencyError::LayerLayoutUnstated { shape, .. } if shape == &[1, 8, 3, 3]),
        "{err}"
    );
    let message = err.to_string();
    for needle in [
        "[1, 8, 3, 3]",
        "looks channels-first",
        ".layout(ActivationLayout::ChannelsFirst)",
        "with_layout",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }

    let stated = GradCam::new()
        .layout(ActivationLayout::ChannelsFirst)
        .get_mask(
            &image,
            &mut fixed_layer(first.clone().into_dyn(), first_grads.clone().into_dyn(), None),
        )
        .unwrap();
    // The same layer channels-last, [1, 3, 3, 8], is not square in its last
    // two axes: read as the reference reads it, without a layout.
    let last = first.view().permuted_axes([0, 2, 3, 1]).to_owned().into_dyn();
    let last_grads = first_grads.view().permuted_axes([0, 2, 3, 1]).to_owned().into_dyn();
    let reference = GradCam::new()
        .get_mask(&image, &mut fixed_layer(last, last_grads, None))
        .unwrap();
    assert!(reference.iter().any(|&v| v > 0.0));
    assert_eq!(stated, reference);
}

#[test]
fn the_ndarray_of_the_crate_is_re_exported() {
    // The same type as the `ndarray` the tests use, so arrays pass straight through.
    let image: saliency::ndarray::Array3<f32> = Array3::<f32>::ones((2, 2, 1));
    let mask = VanillaGradients::new()
        .get_mask(image.view().into_dyn(), &mut |batch, _keys| {
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.to_owned()))
        })
        .unwrap();
    assert_eq!(mask, image.into_dyn());
}

// ---------------------------------------------------------------------------
// The candle adapter.

#[cfg(feature = "candle")]
mod candle {
    use std::cell::RefCell;

    use candle_core::backend::BackendStorage;
    use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};
    use ndarray::{Array2, Array3, Axis};
    use saliency::adapters::candle::{CandleAdapterError, CandleModel, ForwardContext, Target};
    use saliency::{
        ActivationLayout, GradCam, GuidedBackprop, OutputKey, Saliency, SaliencyError, SmoothGrad, SmoothGradParams,
        VanillaGradients,
    };

    use super::{assert_each_cause_once, chain};

    fn adapter_error(err: &SaliencyError) -> &CandleAdapterError {
        assert!(matches!(err, SaliencyError::Model(_)), "{err}");
        std::error::Error::source(err)
            .and_then(|s| s.downcast_ref::<CandleAdapterError>())
            .unwrap_or_else(|| panic!("not an adapter error: {err}"))
    }

    /// The identity, with no backward pass: candle's backward fails on it.
    struct NoBackward;

    impl CustomOp1 for NoBackward {
        fn name(&self) -> &'static str {
            "no-backward"
        }

        fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            use candle_core::cpu_backend::unary_map;
            match storage {
                CpuStorage::F64(s) => Ok((CpuStorage::F64(unary_map(s, layout, |v| v)), layout.shape().clone())),
                other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "no-backward")),
            }
        }
    }

    fn image() -> Array3<f64> {
        Array3::from_shape_fn((3, 4, 2), |(i, j, c)| ((i * 7 + j * 3 + c * 5) % 9) as f64 / 4.0 - 1.0)
    }

    #[test]
    fn a_candle_error_prints_its_cause_once() {
        let wrong = Tensor::zeros((5, 2), candle_core::DType::F64, &Device::Cpu).unwrap();
        let mut model = CandleModel::<f64, _>::new(
            |x: &Tensor, _: &ForwardContext| x.flatten_from(1)?.matmul(&wrong),
            Target::class(0),
        );
        let err = VanillaGradients::new()
            .get_mask(image().view().into_dyn(), &mut model.as_fn())
            .unwrap_err();
        let messages = chain(&err);
        assert_eq!(messages[0], "the model function failed");
        let candle = messages[1].clone();
        assert!(candle.contains("matmul"), "{messages:?}");
        assert_each_cause_once(&err, &[candle.as_str()]);
    }

    #[test]
    fn no_layer_marked_is_reported_before_the_backward_pass() {
        let x = image().insert_axis(Axis(0)).into_dyn();
        let keys = [OutputKey::InputOutputGradients, OutputKey::ConvolutionOutputGradients];
        let forward = |x: &Tensor, _: &ForwardContext| x.apply_op1(NoBackward)?.flatten_from(1)?.sum_keepdim(1);

        // The backward pass of this model fails...
        let mut model = CandleModel::<f64, _>::new(forward, Target::class(0));
        let err = model.call(x.view(), &[OutputKey::InputOutputGradients]).unwrap_err();
        assert!(
            matches!(
                err,
                CandleAdapterError::Candle(candle_core::Error::BackwardNotSupported { .. })
            ),
            "{err}"
        );
        // ...but a forward pass that marked no layer says so first.
        let err = model.call(x.view(), &keys).unwrap_err();
        assert!(
            matches!(
                err,
                CandleAdapterError::NoLayerMarked {
                    key: OutputKey::ConvolutionOutputGradients
                }
            ),
            "{err}"
        );

        // A target with no gradient path to anything: still the missing layer.
        let mut constant = CandleModel::<f64, _>::new(
            |x: &Tensor, _: &ForwardContext| Tensor::ones((x.dims()[0], 1), candle_core::DType::F64, x.device()),
            Target::class(0),
        );
        let err = constant.call(x.view(), &keys).unwrap_err();
        assert!(matches!(err, CandleAdapterError::NoLayerMarked { .. }), "{err}");

        // Through Grad-CAM.
        let err = GradCam::new()
            .get_mask(image().view().into_dyn(), &mut model.as_fn())
            .unwrap_err();
        assert!(
            matches!(adapter_error(&err), CandleAdapterError::NoLayerMarked { .. }),
            "{err}"
        );
    }

    /// A ReLU network on `[B, 3, 4, 2]` images: the ReLU through the context
    /// or called on the tensor directly.
    fn relu_net(through_context: bool) -> impl FnMut(&Tensor, &ForwardContext) -> candle_core::Result<Tensor> {
        let device = Device::Cpu;
        let w: Vec<f64> = (0..24 * 6).map(|i| ((i * 5 % 11) as f64 - 5.0) / 6.0).collect();
        let w = Tensor::from_vec(w, (24, 6), &device).unwrap();
        let v = Tensor::from_vec(vec![1.0, -2.0, 0.5, 1.5, -1.0, 2.0], (6, 1), &device).unwrap();
        move |x, ctx| {
            let hidden = x.flatten_from(1)?.matmul(&w)?;
            let hidden = if through_context {
                ctx.relu(&hidden)?
            } else {
                hidden.relu()?
            };
            hidden.matmul(&v)
        }
    }

    #[test]
    fn guided_backprop_refuses_relus_that_bypass_the_context() {
        let x = image().into_dyn();
        let mut bypass = CandleModel::<f64, _>::new(relu_net(false), Target::class(0));
        let err = GuidedBackprop::new()
            .get_mask(x.view(), &mut bypass.as_fn())
            .unwrap_err();
        assert!(matches!(adapter_error(&err), CandleAdapterError::NoGuidedRelu), "{err}");
        assert!(
            chain(&err)[1].contains("route every ReLU through ForwardContext::relu"),
            "{err}"
        );
        // Around SmoothGrad too; plain gradients are unaffected.
        let smooth = SmoothGrad::new(GuidedBackprop::new(), SmoothGradParams::new().nsamples(2));
        assert!(smooth.get_mask(x.view(), &mut bypass.as_fn()).is_err());
        let plain = VanillaGradients::new().get_mask(x.view(), &mut bypass.as_fn()).unwrap();

        // The same network with its ReLU through the context: guided
        // gradients that differ from the plain ones.
        let mut routed = CandleModel::<f64, _>::new(relu_net(true), Target::class(0));
        let guided = GuidedBackprop::new().get_mask(x.view(), &mut routed.as_fn()).unwrap();
        let routed_plain = VanillaGradients::new().get_mask(x.view(), &mut routed.as_fn()).unwrap();
        assert_eq!(routed_plain, plain);
        assert_ne!(guided, plain);
    }

    /// A 3x3 convolution, channels-first, ending in relu -> mean -> linear.
    fn conv_net() -> impl Fn(&Tensor, &ForwardContext) -> candle_core::Result<Tensor> {
        let device = Device::Cpu;
        let kernel: Vec<f64> = (0..3 * 2 * 9).map(|i| ((i * 5 % 7) as f64 - 3.0) / 4.0).collect();
        let kernel = Tensor::from_vec(kernel, (3, 2, 3, 3), &device).unwrap();
        let head = Tensor::from_vec(vec![1.0, -2.0, 0.5], (3, 1), &device).unwrap();
        move |x, ctx| {
            let conv = ctx.layer(&x.conv2d(&kernel, 1, 1, 1, 1)?)?;
            ctx.relu(&conv)?.mean((2, 3))?.matmul(&head)
        }
    }

    fn conv_image() -> Array3<f64> {
        Array3::from_shape_fn((6, 5, 2), |(i, j, c)| ((i * 3 + j * 5 + c * 7) % 11) as f64 / 5.0 - 1.0)
    }

    #[test]
    fn grad_cam_new_is_right_on_a_channels_first_candle_model() {
        let x = conv_image().into_dyn();
        let mut model = CandleModel::<f64, _>::new(conv_net(), Target::class(0)).channels_first(true);
        let default = GradCam::new().get_mask(x.view(), &mut model.as_fn()).unwrap();
        let explicit = GradCam::new()
            .layout(ActivationLayout::ChannelsFirst)
            .get_mask(x.view(), &mut model.as_fn())
            .unwrap();
        assert!(default.iter().any(|&v| v > 0.0));
        assert_eq!(default, explicit);

        // The adapter states the layout with its outputs.
        let out = model
            .call(x.view().insert_axis(Axis(0)), &[OutputKey::ConvolutionLayerValues])
            .unwrap();
        assert_eq!(out.layout(), Some(ActivationLayout::ChannelsFirst));

        // Channels-last set explicitly on this model: an error, not the wrong map.
        let err = GradCam::new()
            .layout(ActivationLayout::ChannelsLast)
            .get_mask(x.view(), &mut model.as_fn())
            .unwrap_err();
        assert!(matches!(err, SaliencyError::LayoutConflict { .. }), "{err}");
    }

    #[test]
    fn a_layer_layout_that_differs_from_the_input_can_be_stated() {
        // Channels-last input, permuted inside the forward pass to a
        // channels-first convolution.
        let net = conv_net();
        let inner = move |x: &Tensor, ctx: &ForwardContext| net(&x.permute((0, 3, 1, 2))?.contiguous()?, ctx);
        let x = conv_image().into_dyn();
        let mut reference = CandleModel::<f64, _>::new(conv_net(), Target::class(0)).channels_first(true);
        let expected = GradCam::new().get_mask(x.view(), &mut reference.as_fn()).unwrap();

        let mut model =
            CandleModel::<f64, _>::new(inner, Target::class(0)).layer_layout(ActivationLayout::ChannelsFirst);
        let mask = GradCam::new().get_mask(x.view(), &mut model.as_fn()).unwrap();
        assert_eq!(mask, expected);
    }

    #[test]
    fn channels_first_refuses_images_without_a_channel_axis() {
        let seen = RefCell::new(Vec::new());
        let forward = |x: &Tensor, _: &ForwardContext| {
            seen.borrow_mut().push(x.dims().to_vec());
            x.flatten_from(1)?.sum_keepdim(1)
        };
        let mut model = CandleModel::<f64, _>::new(forward, Target::class(0)).channels_first(true);
        let gray = Array2::<f64>::from_shape_fn((4, 7), |(i, j)| (i * 7 + j) as f64);
        let err = VanillaGradients::new()
            .get_mask(gray.view().into_dyn(), &mut model.as_fn())
            .unwrap_err();
        match adapter_error(&err) {
            CandleAdapterError::ChannelsFirstRank { shape } => assert_eq!(shape, &[1, 4, 7]),
            other => panic!("{other}"),
        }
        assert!(chain(&err)[1].contains("H x W x 1"), "{err}");
        assert!(seen.borrow().is_empty(), "the model ran: {:?}", seen.borrow());

        // With its channel axis the image is [1, 1, H, W] for the model, and
        // its gradient comes back H x W x 1.
        let with_channel = gray.clone().insert_axis(Axis(2)).into_dyn();
        let mask = VanillaGradients::new()
            .get_mask(with_channel.view(), &mut model.as_fn())
            .unwrap();
        assert_eq!(seen.borrow().as_slice(), [vec![1, 1, 4, 7]]);
        assert_eq!(mask.shape(), [4, 7, 1]);
    }
}

/// An image given channels-first (`[3, H, W]`, the candle / PyTorch habit)
/// to a method that treats the axes as height, width and channels was
/// blurred, occluded, segmented or resized along the wrong axes and came
/// back as a plausible map; it is now `ChannelsFirstImage`, which names the
/// fix. Height x width x channels images of any size are untouched.
#[test]
fn channels_first_images_are_refused_where_axes_mean_space() {
    let chw = Array3::<f64>::from_shape_fn((3, 12, 10), |(c, i, j)| (c + i + j) as f64 / 30.0).into_dyn();
    let mut gradients = |b: ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
        Ok::<_, saliency::BoxError>(
            ModelOutputs::new()
                .with(OutputKey::InputOutputGradients, b.to_owned())
                .with(OutputKey::OutputLayerValues, ndarray::Array1::zeros(b.shape()[0]))
                .with(
                    OutputKey::ConvolutionLayerValues,
                    Array4::<f64>::ones((b.shape()[0], 3, 3, 2)),
                )
                .with(
                    OutputKey::ConvolutionOutputGradients,
                    Array4::<f64>::ones((b.shape()[0], 3, 3, 2)),
                ),
        )
    };
    let methods: Vec<Box<dyn CoreSaliency<f64>>> = vec![
        Box::new(saliency::BlurIg::new().steps(4)),
        Box::new(saliency::Occlusion::new().size(3)),
        Box::new(GradCam::new()),
        Box::new(saliency::Xrai::new().parameters(saliency::XraiParameters::new().steps(2))),
    ];
    for method in &methods {
        let err = method.get_mask(chw.view(), &mut gradients).unwrap_err();
        assert!(
            matches!(err, SaliencyError::ChannelsFirstImage { ref shape, .. } if shape == &[3, 12, 10]),
            "{}: {err}",
            method.name()
        );
        assert!(err.to_string().contains("permuted_axes([1, 2, 0])"), "{err}");
        // The same image channels-last is fine.
        let hwc = chw.view().permuted_axes(vec![1, 2, 0]);
        method.get_mask(hwc, &mut gradients).unwrap();
    }
    // Pictures and segmentation read the axes the same way.
    let err = saliency::visualize::grayscale(chw.view(), 99.0).unwrap_err();
    assert!(matches!(err, SaliencyError::ChannelsFirstImage { .. }), "{err}");
    let err = saliency::get_segments_felzenszwalb(chw.view()).unwrap_err();
    assert!(matches!(err, SaliencyError::ChannelsFirstImage { .. }), "{err}");
    // Small images channels-last, whose first axis happens to be 3 or 4,
    // are images: only both other axes above 4 look channels-first.
    let small = ArrayD::<f64>::from_elem(ndarray::IxDyn(&[3, 4, 3]), 0.5);
    saliency::visualize::grayscale(small.view(), 99.0).unwrap();
}

/// A channels-first candle model handed an image that is channels-first
/// already had its axes scrambled (the adapter moves the last axis to
/// position 1); Vanilla and IG came back transposed without an error.
#[cfg(feature = "candle")]
#[test]
fn the_adapter_refuses_images_that_are_channels_first_already() {
    use candle_core::Tensor;
    use saliency::adapters::candle::{CandleAdapterError, CandleModel, ForwardContext, Target};
    let forward = |x: &Tensor, _: &ForwardContext| x.flatten_from(1)?.sum_keepdim(1);
    let mut model = CandleModel::<f32, _>::new(forward, Target::class(0)).channels_first(true);
    let chw = Array3::<f32>::zeros((3, 16, 16)).into_dyn();
    let err = VanillaGradients::new()
        .get_mask(chw.view(), &mut model.as_fn())
        .unwrap_err();
    let source = err.source().and_then(|s| s.downcast_ref::<CandleAdapterError>());
    assert!(
        matches!(source, Some(CandleAdapterError::ChannelsFirstInput { shape }) if shape == &[1, 3, 16, 16]),
        "{err}: {source:?}"
    );
    let hwc = Array3::<f32>::zeros((16, 16, 3)).into_dyn();
    VanillaGradients::new()
        .get_mask(hwc.view(), &mut model.as_fn())
        .unwrap();
}
