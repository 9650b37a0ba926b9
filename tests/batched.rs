//! Many images in one call: `get_masks` on 16 generated blastocyst embryos,
//! each with its own target, gives masks bit-identical to 16 one-image calls
//! for every method, and packs the model calls to `batch_size` rows.

#[path = "../examples/blastocyst/phantom.rs"]
#[allow(dead_code)]
mod phantom;

use std::error::Error as _;

use ndarray::{Array1, Array2, Array4, ArrayD, ArrayViewD, Axis, Ix2, IxDyn, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use saliency::{
    BlurIg, BoxError, CoreSaliency, GradCam, GuidedBackprop, GuidedIg, IntegratedGradients, ModelOutputs, ModelRequest,
    Occlusion, OutputKey, Saliency, SmoothGrad, SmoothGradParams, VanillaGradients, Xrai, XraiParameters,
};

const IMAGES: usize = 16;
const SIZE: usize = 48;
const HIDDEN: usize = 8;
/// Side of the pooled image the grader reads.
const POOLED: usize = SIZE / 4;

/// A small two-class grader with fixed random weights: logits = V tanh(W p + b)
/// where p is the image averaged over 4 x 4 blocks (12 x 12 x 3 features);
/// its "convolution layer" is the image averaged over 12 x 12 blocks
/// ([B, 4, 4, 3]). The score explained for a row is the logit of its
/// image's target class.
struct Grader {
    w: Array2<f32>,
    b: Array1<f32>,
    v: Array2<f32>,
}

impl Grader {
    fn new() -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let normal = Normal::new(0.0, 1.0).unwrap();
        let n = POOLED * POOLED * 3;
        let scale = 1.0 / (n as f32).sqrt();
        Grader {
            w: Array2::from_shape_simple_fn((HIDDEN, n), || normal.sample(&mut rng) as f32 * scale),
            b: Array1::from_shape_simple_fn(HIDDEN, || normal.sample(&mut rng) as f32 * 0.1),
            v: Array2::from_shape_simple_fn((2, HIDDEN), || normal.sample(&mut rng) as f32),
        }
    }

    /// Every output for `batch` (rows of any shape with SIZE*SIZE*3 values),
    /// row r explained for class `target(r)`.
    fn outputs(
        &self,
        batch: ArrayViewD<'_, f32>,
        keys: &[OutputKey],
        target: impl Fn(usize) -> usize,
    ) -> Result<ModelOutputs<f32>, BoxError> {
        let rows = batch.shape()[0];
        let images = batch.to_shape((rows, SIZE, SIZE, 3))?;
        let pooled = Array2::from_shape_fn((rows, self.w.ncols()), |(r, k)| {
            let (i, j, c) = (k / (POOLED * 3), (k / 3) % POOLED, k % 3);
            images.slice(s![r, i * 4..i * 4 + 4, j * 4..j * 4 + 4, c]).sum() / 16.0
        });
        let pre = pooled.dot(&self.w.t()) + &self.b;
        let mut out = ModelOutputs::new();
        let wants = |k| keys.contains(&k);
        let mut grads = Array2::<f32>::zeros((
            if wants(OutputKey::InputOutputGradients) {
                rows
            } else {
                0
            },
            self.w.ncols(),
        ));
        let mut guided = Array2::<f32>::zeros((
            if wants(OutputKey::GuidedInputOutputGradients) {
                rows
            } else {
                0
            },
            self.w.ncols(),
        ));
        let mut scores = Array1::<f32>::zeros(rows);
        for r in 0..rows {
            let v = self.v.row(target(r));
            let h = pre.row(r).mapv(f32::tanh);
            scores[r] = h.dot(&v);
            if grads.nrows() > 0 {
                let outer = (&h.mapv(|t| 1.0 - t * t) * &v).to_owned();
                grads.row_mut(r).assign(&self.w.t().dot(&outer));
            }
            if guided.nrows() > 0 {
                let gated: Array1<f32> = pre
                    .row(r)
                    .iter()
                    .zip(v.iter())
                    .map(|(&p, &g)| if p > 0.0 && g > 0.0 { g } else { 0.0 })
                    .collect();
                guided.row_mut(r).assign(&self.w.t().dot(&gated));
            }
        }
        // d p / d x is 1/16 on each pixel of a block.
        let unpool = |g: &Array2<f32>| -> Result<ArrayD<f32>, BoxError> {
            let full = ndarray::Array4::from_shape_fn((rows, SIZE, SIZE, 3), |(r, i, j, c)| {
                g[[r, ((i / 4) * POOLED + j / 4) * 3 + c]] / 16.0
            });
            Ok(full.into_shape_with_order(batch.raw_dim())?)
        };
        for &key in keys {
            match key {
                OutputKey::InputOutputGradients => {
                    out.insert(key, unpool(&grads)?);
                }
                OutputKey::GuidedInputOutputGradients => {
                    out.insert(key, unpool(&guided)?);
                }
                OutputKey::OutputLayerValues => {
                    out.insert(key, scores.clone());
                }
                OutputKey::ConvolutionLayerValues | OutputKey::ConvolutionOutputGradients => {
                    let layer = Array4::from_shape_fn((rows, 4, 4, 3), |(r, i, j, c)| {
                        images
                            .slice(s![r, i * 12..(i + 1) * 12, j * 12..(j + 1) * 12, c])
                            .mean()
                            .unwrap_or(0.0)
                    });
                    if key == OutputKey::ConvolutionLayerValues {
                        out.insert(key, layer);
                    } else {
                        let mut g = layer;
                        for (r, mut row) in g.outer_iter_mut().enumerate() {
                            let sign = if target(r) == 0 { 1.0 } else { -1.0 };
                            row.mapv_inplace(|a| sign * (a - 0.1));
                        }
                        out.insert(key, g);
                    }
                }
                _ => return Err("unknown key".into()),
            }
        }
        Ok(out)
    }
}

fn embryos() -> (Array4<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut images = Array4::<f32>::zeros((IMAGES, SIZE, SIZE, 3));
    let mut targets = Vec::new();
    for i in 0..IMAGES {
        let grade = if i % 2 == 0 {
            phantom::Grade::Good
        } else {
            phantom::Grade::Poor
        };
        let e = phantom::embryo(SIZE, grade, &mut rng);
        images.index_axis_mut(Axis(0), i).assign(&e.image);
        targets.push(grade.label());
    }
    (images, targets)
}

/// Runs `method` both ways and checks identity and packing: with `tail`
/// 0, every call but the last carries `batch_size` rows; else at most
/// `tail` calls beyond the fewest possible are partial (an image's rows that
/// depend on its earlier outputs, or a first call of one row per image, can
/// only be sent once those are back).
fn check(name: &str, method: &dyn CoreSaliency<f32>, batch_size: usize, tail: usize) {
    let grader = Grader::new();
    let (images, targets) = embryos();
    let mut sizes = Vec::new();
    let batched = method
        .get_masks(images.view().into_dyn(), &mut |batch, request: &ModelRequest<'_>| {
            assert_eq!(request.images().len(), batch.shape()[0]);
            sizes.push(batch.shape()[0]);
            grader.outputs(batch, request, |r| targets[request.image_of_row(r)])
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(batched.shape()[0], IMAGES, "{name}");
    let mut one_by_one_calls = 0;
    for (i, &target) in targets.iter().enumerate() {
        let single = method
            .get_mask(images.index_axis(Axis(0), i).into_dyn(), &mut |batch, request| {
                one_by_one_calls += 1;
                assert!(request.images().iter().all(|&img| img == 0));
                grader.outputs(batch, request, |_| target)
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let b = batched.index_axis(Axis(0), i);
        assert_eq!(b.shape(), single.shape(), "{name} image {i}");
        let same = b.iter().zip(single.iter()).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name}: image {i} differs from its one-image call");
    }
    let rows: usize = sizes.iter().sum();
    let fewest = rows.div_ceil(batch_size);
    assert!(sizes.iter().all(|&n| n <= batch_size), "{name}: call sizes {sizes:?}");
    if tail == 0 {
        let (_, full) = sizes.split_last().expect("at least one call");
        assert!(
            full.iter().all(|&n| n == batch_size),
            "{name}: call sizes {sizes:?} (batch_size {batch_size})"
        );
    } else {
        assert!(
            sizes.len() <= fewest + tail,
            "{name}: {} calls for {rows} rows, more than {fewest} + {tail}: {sizes:?}",
            sizes.len()
        );
    }
    println!(
        "{name}: {} calls batched ({} rows), {one_by_one_calls} calls one image at a time",
        sizes.len(),
        sizes.iter().sum::<usize>()
    );
}

#[test]
fn vanilla_and_guided_backprop() {
    check("vanilla", &VanillaGradients::new().batch_size(5), 5, 0);
    check("guided backprop", &GuidedBackprop::new().batch_size(16), 16, 0);
}

#[test]
fn smoothgrad_over_vanilla_packs_samples_of_several_images() {
    let params = SmoothGradParams::new().nsamples(25).seed(3).batch_size(100);
    let method = SmoothGrad::new(VanillaGradients::new(), params);
    let grader = Grader::new();
    let (images, targets) = embryos();
    let mut calls = 0;
    method
        .get_masks(images.view().into_dyn(), &mut |batch, request| {
            calls += 1;
            grader.outputs(batch, request, |r| targets[request.image_of_row(r)])
        })
        .unwrap();
    assert_eq!(calls, 4, "16 images x 25 samples in calls of 100 rows");
    check("smoothgrad vanilla", &method, 100, 0);
    // A batch size that does not divide the rows, and SmoothGrad over IG.
    let params = SmoothGradParams::new()
        .nsamples(3)
        .seed(5)
        .magnitude(false)
        .batch_size(7);
    check(
        "smoothgrad ig",
        &SmoothGrad::new(IntegratedGradients::new().steps(5).batch_size(2), params),
        7,
        2,
    );
}

#[test]
fn path_methods() {
    check("ig", &IntegratedGradients::new().steps(25).batch_size(100), 100, 0);
    // 25 steps in requests of 7, 7, 7, 4 per image.
    check("ig batch 7", &IntegratedGradients::new().steps(25).batch_size(7), 7, 4);
    check("blur ig", &BlurIg::new().steps(10).batch_size(8), 8, 2);
    // Guided IG's steps are sequential within an image: each round carries
    // one row per image, 16 rows in two calls of 8.
    check("guided ig", &GuidedIg::new().steps(6).batch_size(8), 8, 0);
}

#[test]
fn occlusion_grad_cam_and_xrai() {
    // One base row per image first, then 49 windows in requests of 32 and 17.
    check("occlusion", &Occlusion::new().size(12).stride(6).batch_size(32), 32, 3);
    check("grad-cam", &GradCam::new().batch_size(4), 4, 0);
    let xrai = Xrai::new().parameters(XraiParameters::new().steps(10)).batch_size(10);
    check("xrai", &xrai, 10, 0);
}

#[test]
fn a_failing_model_stops_the_batched_call() {
    let (images, _) = embryos();
    let mut calls = 0;
    let err = IntegratedGradients::new()
        .steps(10)
        .batch_size(20)
        .get_masks(images.view().into_dyn(), &mut |_batch, _request| {
            calls += 1;
            if calls == 3 {
                Err("device lost".into())
            } else {
                Err::<ModelOutputs<f32>, BoxError>("first calls fail too".into())
            }
        })
        .unwrap_err();
    assert!(matches!(err, saliency::SaliencyError::Model(_)), "{err}");
    assert_eq!(calls, 1, "the first error stops the run");
}

#[test]
fn images_must_have_a_batch_axis_and_rows() {
    let model = |b: ArrayViewD<'_, f64>, _: &ModelRequest<'_>| {
        Ok::<_, BoxError>(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.to_owned()))
    };
    let one = ArrayD::<f64>::zeros(IxDyn(&[4]));
    let err = VanillaGradients::new()
        .get_masks(one.view(), &mut model.clone())
        .unwrap_err();
    assert!(matches!(err, saliency::SaliencyError::InvalidRank { .. }), "{err}");
    let none = ArrayD::<f64>::zeros(IxDyn(&[0, 4]));
    let err = VanillaGradients::new()
        .get_masks(none.view(), &mut model.clone())
        .unwrap_err();
    assert!(matches!(err, saliency::SaliencyError::EmptyInput { .. }), "{err}");
    let err = VanillaGradients::new()
        .batch_size(0)
        .get_masks(ArrayD::<f64>::zeros(IxDyn(&[2, 4])).view(), &mut model.clone())
        .unwrap_err();
    assert!(
        matches!(
            err,
            saliency::SaliencyError::InvalidParameter { name: "batch_size", .. }
        ),
        "{err}"
    );
    let _ = Ix2;
}

/// The same through the candle adapter, a target per image
/// (`Target::classes`): a small CNN with fixed random weights; each image's
/// masks are bit-identical to its one-image call with `Target::class`.
#[cfg(feature = "candle")]
#[test]
fn candle_adapter_targets_each_image() {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{Conv2dConfig, Module, VarBuilder};
    use saliency::adapters::candle::{CandleModel, ForwardContext, Target};

    let device = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let normal = Normal::new(0.0, 0.3).unwrap();
    let mut weights = std::collections::HashMap::new();
    for (name, shape) in [
        ("conv.weight", vec![4, 3, 3, 3]),
        ("conv.bias", vec![4]),
        ("head.weight", vec![2, 4]),
        ("head.bias", vec![2]),
    ] {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng) as f32).collect();
        weights.insert(name.to_string(), Tensor::from_vec(values, shape, &device).unwrap());
    }
    let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
    let cfg = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let conv = candle_nn::conv2d(3, 4, 3, cfg, vb.pp("conv")).unwrap();
    let head = candle_nn::linear(4, 2, vb.pp("head")).unwrap();
    let forward = |x: &Tensor, ctx: &ForwardContext| {
        let h = ctx.layer(&ctx.relu(&conv.forward(x)?)?)?;
        head.forward(&h.mean(3)?.mean(2)?)
    };
    let (images, targets) = embryos();
    let methods: Vec<(&str, Box<dyn CoreSaliency<f32>>)> = vec![
        ("ig", Box::new(IntegratedGradients::new().steps(8).batch_size(16))),
        ("guided backprop", Box::new(GuidedBackprop::new().batch_size(8))),
        ("grad-cam", Box::new(GradCam::new().batch_size(8))),
    ];
    for (name, method) in &methods {
        let mut batched = CandleModel::<f32, _>::new(forward, Target::classes(targets.clone())).channels_first(true);
        let masks = method
            .get_masks(images.view().into_dyn(), &mut batched.as_fn())
            .unwrap();
        for (i, &target) in targets.iter().enumerate() {
            let mut single = CandleModel::<f32, _>::new(forward, Target::class(target)).channels_first(true);
            let mask = method
                .get_mask(images.index_axis(Axis(0), i).into_dyn(), &mut single.as_fn())
                .unwrap();
            let b = masks.index_axis(Axis(0), i);
            assert!(
                b.iter().zip(mask.iter()).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name}: image {i} differs from its one-image call"
            );
        }
    }
    // Fewer classes than images is an error that says so.
    let mut short = CandleModel::<f32, _>::new(forward, Target::classes(vec![0; 3])).channels_first(true);
    let err = VanillaGradients::new()
        .batch_size(4)
        .get_masks(images.view().into_dyn(), &mut short.as_fn())
        .unwrap_err();
    assert!(
        err.source()
            .is_some_and(|s| s.to_string().contains("one class per image")),
        "{err}"
    );
}
