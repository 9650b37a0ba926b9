//! Mistakes at the model boundary that used to give a plausible, wrong
//! result or a misleading error: each is now the right result or an error
//! that names the fix.

use std::error::Error;

use ndarray::Array3;
use saliency::{CoreSaliency, SaliencyError, VanillaGradients};

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
