//! A fixture network of tests/fixtures/onnx with one set of its references:
//! the CAM-family and Captum ones of tests/fixtures/cam (written by
//! tests/reference/cam/generate.py), or the ONNX parity ones beside the
//! model (tests/reference/onnx/generate.py).
#![allow(dead_code)]

use std::path::PathBuf;

use ndarray::{ArrayD, ArrayViewD, Axis};
use ndarray_npy::read_npy;
use saliency::Saliency;
use saliency::adapters::candle::Target;
use saliency::adapters::onnx::OnnxModel;

pub struct Net {
    pub name: String,
    /// tests/fixtures/onnx/<name>: the model and its input.
    pub onnx: PathBuf,
    /// The references and `meta.json` read.
    refs: PathBuf,
    /// `[2, C, H, W]`, as the fixtures are written.
    pub input: ArrayD<f32>,
    /// `[2, H, W, C]`, as the crate takes images.
    pub images: ArrayD<f32>,
    pub classes: Vec<usize>,
    pub layer: String,
    pub meta: String,
}

impl Net {
    /// The net `name` with its CAM-family and Captum references.
    pub fn load(name: &str) -> Net {
        Net::load_from(name, "cam")
    }

    /// The net `name` with the references (and `meta.json`) of
    /// tests/fixtures/`topic`/`name`.
    pub fn load_from(name: &str, topic: &str) -> Net {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let (onnx, refs) = (root.join("onnx").join(name), root.join(topic).join(name));
        let meta = std::fs::read_to_string(refs.join("meta.json")).unwrap();
        let input: ArrayD<f32> = read_npy(onnx.join("input.npy")).unwrap();
        let images = nchw_to_nhwc(input.view());
        let classes = numbers::<usize>(json_field(&meta, "classes"));
        let layer = json_string(json_field(&meta, "layer"));
        assert_eq!(classes.len(), input.shape()[0], "{name}: one class per image");
        Net {
            name: name.to_string(),
            onnx,
            refs,
            input,
            images,
            classes,
            layer,
            meta,
        }
    }

    pub fn reference(&self, file: &str) -> ArrayD<f32> {
        read_npy(self.refs.join(file)).unwrap()
    }

    pub fn has_reference(&self, file: &str) -> bool {
        self.refs.join(file).exists()
    }

    pub fn model(&self, target: Target) -> OnnxModel<f32> {
        OnnxModel::from_file(self.onnx.join("model.onnx"), target)
            .unwrap()
            .layer(&self.layer)
            .unwrap()
    }

    /// Both images' masks from one multi-image call (each image its own
    /// class), asserted equal to one-image calls.
    pub fn masks<M: Saliency<f32>>(&self, method: &M) -> ArrayD<f32> {
        let mut model = self.model(Target::classes(self.classes.clone()));
        let masks = method
            .get_masks(self.images.view(), &mut model.as_fn())
            .unwrap()
            .into_dyn();
        for (i, &class) in self.classes.iter().enumerate() {
            let mut one = self.model(Target::class(class));
            let mask = method
                .get_mask(self.images.index_axis(Axis(0), i), &mut one.as_fn())
                .unwrap()
                .into_dyn();
            assert!(
                masks.index_axis(Axis(0), i) == mask,
                "{}: {}: the multi-image call differs from the one-image call for image {i}",
                self.name,
                method.name()
            );
        }
        masks
    }

    /// Asserts `actual` is within `tol` of `expected`, relative to the
    /// largest reference magnitude; returns the error.
    pub fn check(&self, what: &str, actual: ArrayViewD<'_, f32>, expected: ArrayViewD<'_, f32>, tol: f64) -> f64 {
        assert_eq!(actual.shape(), expected.shape(), "{} {what}: shapes", self.name);
        let err = rel_err(actual, expected);
        println!("{} {what}: relative error {err:.2e} (tolerance {tol:.0e})", self.name);
        assert!(
            err <= tol,
            "{} {what}: relative error {err:.3e} over {tol:.0e}",
            self.name
        );
        err
    }
}

pub fn nchw_to_nhwc(a: ArrayViewD<'_, f32>) -> ArrayD<f32> {
    a.permuted_axes(vec![0, 2, 3, 1]).as_standard_layout().into_owned()
}

pub fn nhwc_to_nchw(a: ArrayViewD<'_, f32>) -> ArrayD<f32> {
    a.permuted_axes(vec![0, 3, 1, 2]).as_standard_layout().into_owned()
}

/// Largest absolute difference over the largest reference magnitude.
pub fn rel_err(actual: ArrayViewD<'_, f32>, expected: ArrayViewD<'_, f32>) -> f64 {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    let scale = expected.iter().fold(0.0_f64, |m, &v| m.max(f64::from(v).abs()));
    assert!(scale > 0.0, "an all-zero reference compares nothing");
    let diff = actual
        .iter()
        .zip(expected.iter())
        .fold(0.0_f64, |m, (&a, &e)| m.max((f64::from(a) - f64::from(e)).abs()));
    assert!(diff.is_finite(), "non-finite result");
    diff / scale
}

/// The raw text of the first `"key": value` in `json`, from the value on.
pub fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let pattern = format!("\"{key}\":");
    let at = json.find(&pattern).unwrap_or_else(|| panic!("meta.json has no {key}"));
    json[at + pattern.len()..].trim_start()
}

pub fn json_string(text: &str) -> String {
    let rest = text.strip_prefix('"').unwrap();
    rest[..rest.find('"').unwrap()].to_string()
}

/// The numbers of the (flat) array a field's text starts with.
pub fn numbers<T: std::str::FromStr>(text: &str) -> Vec<T> {
    let inner = &text[text.find('[').unwrap() + 1..text.find(']').unwrap()];
    inner.split(',').map(|v| v.trim().parse().ok().unwrap()).collect()
}

/// The number a field's text starts with.
pub fn number(text: &str) -> f64 {
    let end = text.find([',', '\n', '}']).unwrap();
    text[..end].trim().parse().unwrap()
}

/// Every number of the (nested) array a field's text starts with, in order.
pub fn nested_numbers(text: &str) -> Vec<f64> {
    let mut depth = 0;
    let mut end = 0;
    for (i, ch) in text.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            _ => {}
        }
    }
    text[..end]
        .split(|c: char| c == '[' || c == ']' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}
