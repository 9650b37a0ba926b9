//! The `explain_onnx` example's core on a fixture network: a prediction, all
//! nine methods (Guided Backprop skipped on a graph without Relu) and a
//! panel; and the one-line errors a user meets first.
#![cfg(all(feature = "onnx", feature = "image"))]

#[path = "../examples/explain_onnx.rs"]
#[allow(dead_code)]
mod explain_onnx;

use std::path::{Path, PathBuf};

use explain_onnx::{Options, Outcome, explain, parse_args};
use ndarray::Array3;

fn fixture(net: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(net)
        .join("model.onnx")
}

/// A 40 x 56 picture with a bright disk: not the model's size, so the
/// example's resize runs too.
fn write_picture(dir: &Path) -> PathBuf {
    let picture = Array3::from_shape_fn((40, 56, 3), |(i, j, c)| {
        let d = ((i as f64 - 18.0).powi(2) + (j as f64 - 30.0).powi(2)).sqrt();
        if d < 9.0 {
            230 - 40 * c as u8
        } else {
            (40 + i + j / 2) as u8
        }
    });
    let path = dir.join("picture.png");
    saliency::visualize::save_png(picture.view(), &path).unwrap();
    path
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saliency-explain-onnx-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn explains_a_fixture_net_with_every_method_and_writes_the_panel() {
    let dir = temp_dir("vgg");
    let opts = Options {
        model: fixture("vgg"),
        image: Some(write_picture(&dir)),
        out: Some(dir.join("panel.png")),
        ..Options::default()
    };
    let done = explain(&opts).unwrap();
    assert_eq!(done.class, done.predicted.0);
    assert!(done.predicted.1 > 0.0 && done.predicted.1 <= 1.0);
    let names: Vec<&str> = done.methods.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "Vanilla",
            "SmoothGrad",
            "IG",
            "Guided Backprop",
            "Occlusion",
            "Grad-CAM",
            "Blur IG",
            "Guided IG",
            "XRAI"
        ]
    );
    assert!(done.methods.iter().all(|(_, o)| matches!(o, Outcome::Done(_))));
    // The last 4-D layer with more than one position, in NCHW.
    assert_eq!(done.layer.1.len(), 4);
    assert!(done.layer.1[2] * done.layer.1[3] > 1, "{:?}", done.layer);
    let panel = saliency::visualize::read_image(&done.panel).unwrap();
    assert!(panel.shape()[0] > 100 && panel.shape()[1] > 100);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_graph_without_relu_skips_guided_backprop_and_a_class_and_layer_are_honoured() {
    let dir = temp_dir("attention");
    let meta = std::fs::read_to_string(fixture("conv_attention").with_file_name("meta.json")).unwrap();
    let field = |key: &str| {
        meta.split(&format!("\"{key}\": \""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string()
    };
    // Named by its node: the layer reported is the node's output tensor.
    let (layer, node) = (field("layer"), field("layer_node"));
    assert_ne!(layer, node);
    let opts = Options {
        model: fixture("conv_attention"),
        image: Some(write_picture(&dir)),
        out: Some(dir.join("panel.png")),
        class: Some(7),
        layer: Some(node),
        ..Options::default()
    };
    let done = explain(&opts).unwrap();
    assert_eq!(done.class, 7);
    assert_eq!(done.layer.0, layer);
    let guided = done.methods.iter().find(|(n, _)| *n == "Guided Backprop").unwrap();
    assert!(matches!(&guided.1, Outcome::Skipped(why) if why.contains("Relu")));
    assert!(done.panel.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn user_mistakes_are_one_line_errors() {
    let dir = temp_dir("errors");
    let picture = write_picture(&dir);
    let one_line = |e: &str| assert!(!e.is_empty() && !e.contains('\n'), "{e:?}");

    let missing = dir.join("no-such-model.onnx");
    let e = explain(&Options {
        model: missing.clone(),
        image: Some(picture.clone()),
        ..Options::default()
    })
    .unwrap_err();
    one_line(&e);
    assert!(e.contains("no-such-model.onnx"), "{e}");

    let garbled = dir.join("garbled.onnx");
    std::fs::write(&garbled, b"\xff\xff\xff not protobuf").unwrap();
    let e = explain(&Options {
        model: garbled,
        image: Some(picture.clone()),
        ..Options::default()
    })
    .unwrap_err();
    one_line(&e);
    assert!(
        e.contains("garbled.onnx") && e.contains("not a valid ONNX model"),
        "{e}"
    );

    let e = explain(&Options {
        model: fixture("vgg"),
        image: Some(picture.clone()),
        layer: Some("no_such_layer".into()),
        ..Options::default()
    })
    .unwrap_err();
    one_line(&e);
    assert!(e.contains("no_such_layer") && e.contains("candidate layers"), "{e}");

    let e = explain(&Options {
        model: fixture("vgg"),
        image: Some(dir.join("no-such-picture.jpg")),
        ..Options::default()
    })
    .unwrap_err();
    one_line(&e);
    assert!(e.contains("no-such-picture.jpg"), "{e}");

    let e = explain(&Options {
        model: fixture("vgg"),
        image: Some(picture),
        class: Some(10),
        ..Options::default()
    })
    .unwrap_err();
    assert!(e.contains("--class 10 is out of range"), "{e}");

    let args = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
    assert!(args(&["--image", "x.jpg"]).unwrap_err().contains("--model"));
    assert!(args(&["--model", "m.onnx"]).unwrap_err().contains("--image"));
    assert!(args(&["--model", "m.onnx", "--list-layers"]).is_ok());
    assert!(
        args(&["--model", "m.onnx", "--image", "x.jpg", "--mean", "0.5,0.5,0.5"])
            .unwrap_err()
            .contains("--std")
    );
    assert!(args(&["--model", "m.onnx", "--bogus"]).unwrap_err().contains("--bogus"));
    std::fs::remove_dir_all(&dir).unwrap();
}
