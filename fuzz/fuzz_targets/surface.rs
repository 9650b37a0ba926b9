//! Drives the crate's public surface from raw bytes: a method or function,
//! a shape, values, parameters and a model that may misbehave. Every call
//! must return `Ok` or a typed error; a panic, abort or hang is a finding.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ndarray::{Array2, Array3, ArrayD, ArrayViewD, IxDyn};
use saliency::imageops::{self, AntiAliasing, BoundaryMode, ResizeMode, ResizeOptions};
use saliency::metrics::{self, Interpolation, PicMetric};
use saliency::visualize::{self, ColorMap};
use saliency::{
    ActivationLayout, BlurIg, BoxError, CoreSaliency, GradCam, GuidedBackprop, GuidedIg, IntegratedGradients,
    ModelOutputs, Occlusion, OutputKey, Saliency, SmoothGrad, SmoothGradParams, VanillaGradients, Xrai, XraiAlgorithm,
    XraiParameters,
};

/// A value: mostly ordinary, else one of the awkward ones, else raw bits.
fn value(u: &mut Unstructured<'_>) -> arbitrary::Result<f64> {
    Ok(match u.int_in_range(0..=19_u8)? {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => 1e300,
        4 => -1e300,
        5 => f64::from(f32::MAX),
        6 => f64::MAX,
        7 => 5e-324,
        8 => 0.0,
        9 => f64::from_bits(u.arbitrary()?),
        _ => f64::from(u.int_in_range(-400..=400_i16)?) / 100.0,
    })
}

/// A count: zero, small, just above the step limit, or absurd.
fn count(u: &mut Unstructured<'_>, small: usize) -> arbitrary::Result<usize> {
    Ok(match u.int_in_range(0..=11_u8)? {
        0 => 0,
        1 => usize::MAX,
        2 => saliency::MAX_STEPS + 1,
        3 => 1 << 40,
        _ => u.int_in_range(1..=small)?,
    })
}

/// An output size: small, or too large to allocate (a size such as 2^24 is
/// valid and merely slow).
fn size(u: &mut Unstructured<'_>, small: usize) -> arbitrary::Result<usize> {
    Ok(match u.int_in_range(0..=11_u8)? {
        0 => 0,
        1 => usize::MAX,
        2 => 1 << 40,
        _ => u.int_in_range(1..=small)?,
    })
}

/// A float parameter: bounded so that accepted values stay cheap (a sigma
/// of 1e6 is accepted and slow, 1e300 is rejected).
fn param(u: &mut Unstructured<'_>, hi: f64) -> arbitrary::Result<f64> {
    Ok(match u.int_in_range(0..=9_u8)? {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => -1.0,
        3 => 1e300,
        4 => 5e-324,
        5 => 0.0,
        _ => f64::from(u.int_in_range(0..=1000_u16)?) / 1000.0 * hi,
    })
}

fn shape(u: &mut Unstructured<'_>, image: bool) -> arbitrary::Result<Vec<usize>> {
    if image && u.ratio(4, 5)? {
        let (h, w) = (u.int_in_range(1..=8_usize)?, u.int_in_range(1..=8_usize)?);
        return Ok(match u.int_in_range(0..=3_usize)? {
            0 => vec![h, w],
            c => vec![h, w, c],
        });
    }
    let rank = u.int_in_range(0..=5_usize)?;
    (0..rank).map(|_| u.int_in_range(0..=4_usize)).collect()
}

fn array(u: &mut Unstructured<'_>, shape: &[usize]) -> arbitrary::Result<ArrayD<f64>> {
    let n: usize = shape.iter().product();
    let values = (0..n).map(|_| value(u)).collect::<arbitrary::Result<Vec<f64>>>()?;
    Ok(ArrayD::from_shape_vec(IxDyn(shape), values).unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape))))
}

fn bools(u: &mut Unstructured<'_>, h: usize, w: usize) -> arbitrary::Result<Array2<bool>> {
    let v = (0..h * w)
        .map(|_| u.arbitrary())
        .collect::<arbitrary::Result<Vec<bool>>>()?;
    Ok(Array2::from_shape_vec((h, w), v).unwrap_or_else(|_| Array2::from_elem((h, w), false)))
}

fn bytes3(u: &mut Unstructured<'_>) -> arbitrary::Result<Array3<u8>> {
    let (h, w) = (u.int_in_range(0..=6_usize)?, u.int_in_range(0..=6_usize)?);
    let c = if u.ratio(4, 5)? {
        3
    } else {
        u.int_in_range(0..=5_usize)?
    };
    let v = (0..h * w * c)
        .map(|_| u.arbitrary())
        .collect::<arbitrary::Result<Vec<u8>>>()?;
    Ok(Array3::from_shape_vec((h, w, c), v).unwrap_or_else(|_| Array3::zeros((h, w, c))))
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    Err,
    MissingKey,
    WrongBatch,
    WrongShape,
    WrongRank,
    Nan,
    Inf,
    Huge,
}

#[derive(Clone, Debug)]
struct Model {
    fault: Fault,
    after: usize,
    conv: Vec<usize>,
}

impl Model {
    fn new(u: &mut Unstructured<'_>) -> arbitrary::Result<Self> {
        let fault = u.arbitrary()?;
        let after = u.int_in_range(0..=3_usize)?;
        let conv = if u.ratio(5, 6)? {
            vec![u.int_in_range(1..=4)?, u.int_in_range(1..=4)?, u.int_in_range(1..=3)?]
        } else {
            shape(u, false)?
        };
        Ok(Model { fault, after, conv })
    }

    fn closure<F: saliency::Float>(
        self,
    ) -> impl FnMut(ArrayViewD<'_, F>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<F>, BoxError> {
        let mut calls = 0;
        move |batch, keys: &saliency::ModelRequest<'_>| {
            let fault = if calls >= self.after { self.fault } else { Fault::None };
            calls += 1;
            match fault {
                Fault::Err => return Err("model failed".into()),
                Fault::MissingKey => return Ok(ModelOutputs::new()),
                _ => {}
            }
            let b = batch.shape().first().copied().unwrap_or(0);
            let mut conv_shape = vec![b];
            conv_shape.extend_from_slice(&self.conv);
            let mut out = ModelOutputs::new();
            for &key in keys {
                let good: ArrayD<F> = match key {
                    OutputKey::InputOutputGradients | OutputKey::GuidedInputOutputGradients => {
                        batch.mapv(|v| F::from_f64_lossy(v.as_f64().sin() + 0.5))
                    }
                    OutputKey::ConvolutionLayerValues | OutputKey::ConvolutionOutputGradients => {
                        let phase = if key == OutputKey::ConvolutionLayerValues {
                            0.3
                        } else {
                            1.1
                        };
                        let n = conv_shape.iter().product::<usize>();
                        ArrayD::from_shape_vec(
                            IxDyn(&conv_shape),
                            (0..n)
                                .map(|i| F::from_f64_lossy((i as f64 * 0.37 + phase).sin()))
                                .collect(),
                        )
                        .unwrap_or_else(|_| ArrayD::zeros(IxDyn(&conv_shape)))
                    }
                    OutputKey::OutputLayerValues => ArrayD::from_shape_fn(IxDyn(&[b]), |i| {
                        let row = batch.index_axis(ndarray::Axis(0), i[0]);
                        F::from_f64_lossy((row.iter().map(|v| v.as_f64().sin()).sum::<f64>()).sin())
                    }),
                    // Keys added after this target was written: nothing to answer.
                    _ => continue,
                };
                let value = match fault {
                    Fault::WrongBatch => {
                        let mut s = good.shape().to_vec();
                        s[0] += 1;
                        ArrayD::zeros(IxDyn(&s))
                    }
                    Fault::WrongShape => {
                        let mut s = good.shape().to_vec();
                        s.push(2);
                        ArrayD::zeros(IxDyn(&s))
                    }
                    Fault::WrongRank => ArrayD::zeros(IxDyn(&[])),
                    Fault::Nan | Fault::Inf => {
                        let mut g = good;
                        if let Some(v) = g.iter_mut().next() {
                            *v = if fault == Fault::Nan { F::nan() } else { F::infinity() };
                        }
                        g
                    }
                    Fault::Huge => good.mapv(|v| v * F::from_f64_lossy(1e300)),
                    _ => good,
                };
                out.insert(key, value);
            }
            Ok(out)
        }
    }
}

fn check<F: saliency::Float>(result: saliency::Result<ArrayD<F>>, expected: Option<&[usize]>) {
    match result {
        Ok(mask) => {
            if let Some(shape) = expected {
                assert_eq!(mask.shape(), shape);
            }
            assert!(mask.iter().all(|v| v.is_finite()), "non-finite mask {mask:?}");
        }
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
}

fn method(u: &mut Unstructured<'_>, x: &ArrayD<f64>) -> arbitrary::Result<(Box<dyn CoreSaliency<f64>>, bool)> {
    let baseline = |u: &mut Unstructured<'_>| -> arbitrary::Result<Option<ArrayD<f64>>> {
        Ok(match u.int_in_range(0..=3_u8)? {
            0 => None,
            1 => {
                let s = shape(u, false)?;
                Some(array(u, &s)?)
            }
            _ => Some(array(u, x.shape())?),
        })
    };
    // Whether the mask has the input's shape.
    let (m, same): (Box<dyn CoreSaliency<f64>>, bool) = match u.int_in_range(0..=9_u8)? {
        0 => boxed(VanillaGradients::new(), true),
        1 => boxed(GuidedBackprop::new(), true),
        2 => {
            let mut ig = IntegratedGradients::new().steps(count(u, 8)?).batch_size(count(u, 8)?);
            if let Some(b) = baseline(u)? {
                ig = ig.baseline(b);
            }
            boxed(ig, true)
        }
        3 => boxed(
            Occlusion::new()
                .size(count(u, 6)?)
                .stride(count(u, 3)?)
                .batch_size(count(u, 6)?)
                .value(value(u)?),
            true,
        ),
        4 => {
            let layout = if u.arbitrary()? {
                ActivationLayout::ChannelsFirst
            } else {
                ActivationLayout::ChannelsLast
            };
            let gc = GradCam::new()
                .should_resize(u.arbitrary()?)
                .three_dims(u.arbitrary()?)
                .layout(layout);
            boxed(gc, false)
        }
        5 => boxed(
            BlurIg::new()
                .steps(count(u, 6)?)
                .batch_size(count(u, 6)?)
                .max_sigma(param(u, 8.0)?)
                .grad_step(param(u, 0.5)?)
                .sqrt(u.arbitrary()?),
            true,
        ),
        6 => {
            let mut g = GuidedIg::new()
                .steps(count(u, 8)?)
                .fraction(param(u, 1.0)?)
                .max_dist(param(u, 1.0)?);
            if let Some(b) = baseline(u)? {
                g = g.baseline(b);
            }
            boxed(g, true)
        }
        7 => {
            let params = SmoothGradParams::new()
                .nsamples(count(u, 3)?)
                .stdev_spread(param(u, 1.0)?)
                .magnitude(u.arbitrary()?)
                .seed(u.arbitrary()?);
            boxed(SmoothGrad::new(IntegratedGradients::new().steps(2), params), true)
        }
        _ => {
            let (h, w) = (
                x.shape().first().copied().unwrap_or(0),
                x.shape().get(1).copied().unwrap_or(0),
            );
            let p = XraiParameters::new()
                .steps(count(u, 3)?)
                .area_threshold(param(u, 1.0)?)
                .algorithm(if u.arbitrary()? {
                    XraiAlgorithm::Fast
                } else {
                    XraiAlgorithm::Full
                })
                .min_pixel_diff(count(u, 4)?)
                .return_xrai_segments(u.arbitrary()?)
                .flatten_xrai_segments(u.arbitrary()?)
                .return_ig_attributions(u.arbitrary()?);
            let mut xrai = Xrai::new().parameters(p).batch_size(count(u, 3)?);
            // Felzenszwalb segmentation resizes to 224 x 224: given segments
            // keep most runs fast.
            if u.ratio(9, 10)? {
                let n = u.int_in_range(0..=4_usize)?;
                let segments = (0..n).map(|_| bools(u, h, w)).collect::<arbitrary::Result<Vec<_>>>()?;
                xrai = xrai.segments(segments);
            }
            if u.ratio(1, 4)? {
                xrai = xrai.base_attribution(array(u, x.shape())?);
            }
            if u.ratio(1, 4)? {
                let n = u.int_in_range(0..=2_usize)?;
                let b = (0..n)
                    .map(|_| array(u, x.shape()))
                    .collect::<arbitrary::Result<Vec<_>>>()?;
                xrai = xrai.baselines(b);
            }
            boxed(xrai, false)
        }
    };
    Ok((m, same))
}

/// Boxes a method, describing it first when `SURFACE_DEBUG` is set.
fn boxed<M: CoreSaliency<f64> + std::fmt::Debug + 'static>(
    m: M,
    same_shape: bool,
) -> (Box<dyn CoreSaliency<f64>>, bool) {
    debug(&format!("{m:?}"));
    (Box::new(m), same_shape)
}

/// Prints what an input decodes to when `SURFACE_DEBUG` is set (to read a
/// crash or slow unit back).
fn debug(what: &str) {
    if std::env::var_os("SURFACE_DEBUG").is_some() {
        eprintln!("{what}");
    }
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    match u.int_in_range(0..=9_u8)? {
        // Methods, double precision, get_mask and get_smoothed_mask.
        0..=4 => {
            let s = shape(u, true)?;
            let x = array(u, &s)?;
            let (m, same_shape) = method(u, &x)?;
            let model = Model::new(u)?;
            debug(&format!("{} on {:?} with {model:?}", m.name(), x));
            if u.ratio(1, 5)? {
                let params = SmoothGradParams::new()
                    .nsamples(count(u, 2)?)
                    .stdev_spread(param(u, 1.0)?)
                    .seed(1);
                check(m.get_smoothed_mask(x.view(), &mut model.closure(), &params), None);
            } else {
                let r = m.get_mask_with_progress(x.view(), &mut model.closure(), &mut |p| {
                    assert!(p.done <= p.total);
                });
                check(r, same_shape.then_some(x.shape()));
            }
        }
        // Methods, single precision.
        5 => {
            let s = shape(u, true)?;
            let x = array(u, &s)?;
            let (_, _) = method(u, &x)?;
            let x32 = x.mapv(|v| v as f32);
            let model = Model::new(u)?;
            let methods: [Box<dyn CoreSaliency<f32>>; 5] = [
                Box::new(IntegratedGradients::new().steps(3)),
                Box::new(BlurIg::new().steps(2).max_sigma(2.0)),
                Box::new(GuidedIg::new().steps(3)),
                Box::new(Occlusion::new().size(1)),
                Box::new(GradCam::new()),
            ];
            let i = u.choose_index(methods.len())?;
            debug(&format!("f32 method {i} on {x32:?} with {model:?}"));
            check(methods[i].get_mask(x32.view(), &mut model.closure()), None);
        }
        // Numeric kernels.
        6 => {
            let s = shape(u, false)?;
            let x = array(u, &s)?;
            let sigma = (0..u.int_in_range(0..=5_usize)?)
                .map(|_| param(u, 4.0))
                .collect::<arbitrary::Result<Vec<_>>>()?;
            let mode = match u.int_in_range(0..=4_u8)? {
                0 => BoundaryMode::Reflect,
                1 => BoundaryMode::Nearest,
                2 => BoundaryMode::Mirror,
                3 => BoundaryMode::Wrap,
                _ => BoundaryMode::Constant(value(u)?),
            };
            let truncate = param(u, 5.0)?;
            debug(&format!(
                "gaussian_filter {:?} {sigma:?} {mode:?} {truncate}",
                x.shape()
            ));
            let _ = imageops::gaussian_filter(x.view(), &sigma, mode, truncate);
            let out_shape = (0..u.int_in_range(0..=5_usize)?)
                .map(|_| size(u, 7))
                .collect::<arbitrary::Result<Vec<_>>>()?;
            let options = ResizeOptions::default()
                .order(u.int_in_range(0..=6_usize)?)
                .mode(match u.int_in_range(0..=4_u8)? {
                    0 => ResizeMode::Constant,
                    1 => ResizeMode::Edge,
                    2 => ResizeMode::Symmetric,
                    3 => ResizeMode::Reflect,
                    _ => ResizeMode::Wrap,
                })
                .cval(value(u)?)
                .clip(u.arbitrary()?)
                .preserve_range(u.arbitrary()?)
                .anti_aliasing(match u.int_in_range(0..=2_u8)? {
                    0 => AntiAliasing::Auto,
                    1 => AntiAliasing::On,
                    _ => AntiAliasing::Off,
                })
                .anti_aliasing_sigma(if u.arbitrary()? { Some(sigma.clone()) } else { None });
            debug(&format!("resize {:?} to {out_shape:?} {options:?}", x.shape()));
            if let Ok(out) = imageops::resize(x.view(), &out_shape, &options) {
                assert_eq!(out.ndim(), x.ndim());
            }
            let _ = imageops::felzenszwalb(x.view(), param(u, 500.0)?, param(u, 2.0)?, count(u, 20)?);
            let mut v: Vec<f64> = x.iter().copied().collect();
            let q = value(u)?;
            let _ = imageops::percentile(&mut v, q);
            let _ = imageops::quantile(&mut v, q / 100.0);
            let _ = imageops::quantile_lower(&mut v, q / 100.0);
            let half = v.len() / 2;
            let _ = imageops::interp(value(u)?, &v[..half], &v[half..]);
            let _ = imageops::trapz(&v[..half], &v[half..2 * half]);
            let _ = (imageops::sum(&v), imageops::mean(&v), imageops::pairwise_sum(&v));
            let (h, w) = (u.int_in_range(0..=6_usize)?, u.int_in_range(0..=6_usize)?);
            let (fh, fw) = (u.int_in_range(0..=5_usize)?, u.int_in_range(0..=5_usize)?);
            let _ = imageops::binary_dilation(bools(u, h, w)?.view(), bools(u, fh, fw)?.view());
            let _ = imageops::disk(count(u, 6)?);
        }
        // Visualizations.
        7 => {
            let s = shape(u, true)?;
            let x = array(u, &s)?;
            let pct = value(u)?;
            for img in [visualize::grayscale(x.view(), pct), visualize::diverging(x.view(), pct)]
                .into_iter()
                .flatten()
            {
                assert!(img.iter().all(|v| v.is_finite()));
            }
            let _ = visualize::to_rgb8(x.view(), value(u)?, value(u)?);
            if let Ok(x2) = x.clone().into_dimensionality::<ndarray::Ix2>() {
                let cm = [ColorMap::Gray, ColorMap::Inferno, ColorMap::BlueWhiteRed][u.choose_index(3)?];
                let _ = visualize::apply_colormap(x2.view(), cm);
                let _ = visualize::top_percent_mask(x2.view(), pct);
            }
            let (a, b) = (bytes3(u)?, bytes3(u)?);
            let _ = visualize::overlay(a.view(), b.view(), param(u, 1.0)?);
            let (h, w) = (u.int_in_range(0..=6_usize)?, u.int_in_range(0..=6_usize)?);
            let _ = visualize::masked_image(a.view(), bools(u, h, w)?.view(), u.arbitrary()?);
            let label: String = u.arbitrary()?;
            let _ = visualize::panel(&[(label.as_str(), a.view()), ("b", b.view())], count(u, 3)?);
            let mut canvas = Array3::<u8>::zeros((5, 7, 3));
            visualize::draw_text(
                &mut canvas,
                &label,
                count(u, 9)?,
                count(u, 9)?,
                count(u, 3)?,
                u.arbitrary()?,
            );
        }
        // Metrics.
        _ => {
            let s = shape(u, true)?;
            let img = array(u, &s)?.mapv(|v| v.clamp(0.0, 255.0) as u8);
            let (h, w) = (u.int_in_range(0..=6_usize)?, u.int_in_range(0..=6_usize)?);
            let mask = bools(u, h, w)?;
            let method = if u.arbitrary()? {
                Interpolation::Linear
            } else {
                Interpolation::Nearest
            };
            let _ = metrics::create_blurred_image(img.view(), mask.view(), method);
            let fimg = array(u, &s)?;
            let _ = metrics::create_blurred_image(fimg.view(), mask.view(), method);
            let _ = metrics::estimate_image_entropy(img.view());
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(u.arbitrary()?);
            let _ = metrics::generate_random_mask(size(u, 8)?, size(u, 8)?, param(u, 1.0)?, &mut rng);
            let map = array(u, &[h, w])?
                .into_dimensionality::<ndarray::Ix2>()
                .unwrap_or_default();
            let thresholds = (0..u.int_in_range(0..=4_usize)?)
                .map(|_| param(u, 1.0))
                .collect::<arbitrary::Result<Vec<_>>>()?;
            let metric = PicMetric::new()
                .thresholds(thresholds)
                .min_pred_value(param(u, 0.5)?)
                .keep_monotonous(u.arbitrary()?)
                .num_data_points(count(u, 50)?)
                .batch_size(count(u, 4)?);
            let kind = u.int_in_range(0..=4_u8)?;
            debug(&format!(
                "{metric:?} on {:?}, mask {h} x {w}, predict {kind}",
                img.shape()
            ));
            let predict = move |batch: ArrayViewD<'_, u8>| -> Result<Vec<f64>, BoxError> {
                let b = batch.shape().first().copied().unwrap_or(0);
                let scores = (0..b).map(|i| {
                    let row = batch.index_axis(ndarray::Axis(0), i);
                    let n = row.len().max(1) as f64;
                    row.iter().map(|&v| (f64::from(v) - 128.0).abs()).sum::<f64>() / n / 128.0
                });
                match kind {
                    0 => Err("predict failed".into()),
                    1 => Ok(scores.chain([0.5]).collect()),
                    2 => Ok(vec![f64::NAN; b]),
                    _ => Ok(scores.collect()),
                }
            };
            if let Ok(r) = metric.compute(img.view(), map.view(), mask.view(), predict) {
                assert!(r.auc.is_finite());
                let _ = metrics::aggregate_individual_pic_results(&[r.clone(), r], metrics::Aggregation::Median);
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});
