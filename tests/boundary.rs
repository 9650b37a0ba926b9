//! Mistakes at the model boundary that used to give a plausible, wrong
//! result or a misleading error: each is now the right result or an error
//! that names the fix.

use std::error::Error;

use ndarray::{Array3, Array4, ArrayD, ArrayViewD};
use saliency::{ActivationLayout, CoreSaliency, GradCam, ModelOutputs, OutputKey, SaliencyError, VanillaGradients};

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
) -> impl FnMut(ArrayViewD<'_, f64>, &[OutputKey]) -> Result<ModelOutputs<f64>, saliency::BoxError> {
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
