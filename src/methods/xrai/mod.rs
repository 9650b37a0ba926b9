//! XRAI ([Kapishnikov et al., 2019](https://arxiv.org/abs/1906.02825)):
//! region-based attribution. An image is over-segmented at several scales,
//! and regions are added greedily by how much attribution (integrated
//! gradients by default) they gain per pixel; every pixel of the result
//! carries the gain of the region that first covered it.
//!
//! Matches `saliency.core.XRAI` of PAIR saliency 0.2.1. Given the same
//! segments and base attribution the ranks are identical and the values
//! equal to rounding; the default segmentation reproduces the reference's
//! Felzenszwalb segments (see [`get_segments_felzenszwalb`]).
//!
//! Speed comes from the representation, not from tuning: segments are
//! sparse pixel lists, and after each greedy step only the masks that share
//! a pixel with the newly covered region have their gain recomputed.

mod greedy;
mod masks;
mod segments;

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2};

use crate::checks::{check_image, check_like_input, check_positive, check_shape, check_steps, finite_result};
use crate::core::{CoreSaliency, Progress};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::methods::integrated_gradients::{IntegrationRule, integrated_gradients};
use crate::model::CallModelFunction;

pub use segments::{get_segment_labels_felzenszwalb, get_segments_felzenszwalb};

use masks::MaskSet;

/// Which greedy ranking XRAI runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum XraiAlgorithm {
    /// Re-ranks the remaining masks after every step by the attribution
    /// density of the pixels they would newly add (the reference's `"full"`).
    #[default]
    Full,
    /// Ranks the masks once by their own density, ignoring overlaps
    /// (the reference's `"fast"`); `area_threshold` does not apply.
    Fast,
}

/// The parameters of one XRAI run (the reference's `XRAIParameters`), with
/// its defaults; set with the builder setters, read with the `get_` getters.
///
/// ```
/// use saliency::{XraiAlgorithm, XraiParameters};
/// let p = XraiParameters::new().algorithm(XraiAlgorithm::Fast).steps(50);
/// assert_eq!((p.get_steps(), p.get_min_pixel_diff()), (50, 50));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct XraiParameters {
    steps: usize,
    area_threshold: f64,
    return_ig_attributions: bool,
    return_xrai_segments: bool,
    flatten_xrai_segments: bool,
    algorithm: XraiAlgorithm,
    min_pixel_diff: usize,
    integration_rule: IntegrationRule,
}

impl Default for XraiParameters {
    fn default() -> Self {
        XraiParameters {
            steps: 100,
            area_threshold: 1.0,
            return_ig_attributions: false,
            return_xrai_segments: false,
            flatten_xrai_segments: true,
            algorithm: XraiAlgorithm::Full,
            min_pixel_diff: 50,
            integration_rule: IntegrationRule::EvenlySpaced,
        }
    }
}

impl XraiParameters {
    /// The reference's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Integrated-gradients steps per baseline (100; 1 to
    /// [`MAX_STEPS`](crate::MAX_STEPS)).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }
    /// Fraction of the image the full algorithm covers before it gives the
    /// rest one common value (1.0: everything).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn area_threshold(mut self, area_threshold: f64) -> Self {
        self.area_threshold = area_threshold;
        self
    }
    /// Return the integrated-gradients attribution of every baseline (false).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn return_ig_attributions(mut self, yes: bool) -> Self {
        self.return_ig_attributions = yes;
        self
    }
    /// Return the ranked regions (false).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn return_xrai_segments(mut self, yes: bool) -> Self {
        self.return_xrai_segments = yes;
        self
    }
    /// Return the regions as one rank image rather than a list of masks (true).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn flatten_xrai_segments(mut self, yes: bool) -> Self {
        self.flatten_xrai_segments = yes;
        self
    }
    /// Full or fast ranking (full).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn algorithm(mut self, algorithm: XraiAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }
    /// Masks that would add fewer new pixels than this are dropped (50; the
    /// reference's experimental `min_pixel_diff`).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn min_pixel_diff(mut self, pixels: usize) -> Self {
        self.min_pixel_diff = pixels;
        self
    }

    /// The integration rule of the integrated-gradients stage (the
    /// reference's [`IntegrationRule::EvenlySpaced`]; Captum's rules as in
    /// [`IntegratedGradients::rule`](crate::IntegratedGradients::rule)).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn integration_rule(mut self, rule: IntegrationRule) -> Self {
        self.integration_rule = rule;
        self
    }

    /// The integration rule of the integrated-gradients stage.
    pub fn get_integration_rule(&self) -> IntegrationRule {
        self.integration_rule
    }

    /// The integrated-gradients steps per baseline.
    pub fn get_steps(&self) -> usize {
        self.steps
    }

    /// The fraction of the image the full algorithm covers region by region.
    pub fn get_area_threshold(&self) -> f64 {
        self.area_threshold
    }

    /// Whether the attribution of every baseline is returned.
    pub fn get_return_ig_attributions(&self) -> bool {
        self.return_ig_attributions
    }

    /// Whether the ranked regions are returned.
    pub fn get_return_xrai_segments(&self) -> bool {
        self.return_xrai_segments
    }

    /// Whether the regions are returned as one rank image.
    pub fn get_flatten_xrai_segments(&self) -> bool {
        self.flatten_xrai_segments
    }

    /// The greedy ranking.
    pub fn get_algorithm(&self) -> XraiAlgorithm {
        self.algorithm
    }

    /// The fewest new pixels a mask must add to be kept.
    pub fn get_min_pixel_diff(&self) -> usize {
        self.min_pixel_diff
    }
}

/// The ranked regions of an XRAI run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XraiSegments {
    /// One image of ranks: 1 for the most important region up to N for the
    /// least important (every pixel belongs to exactly one region).
    Ranks(Array2<usize>),
    /// The regions as disjoint boolean masks, most important first.
    Masks(Vec<Array2<bool>>),
}

/// Everything an XRAI run returns (the reference's `XRAIOutput`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct XraiOutput<F> {
    /// The saliency map, height x width: each pixel holds the attribution
    /// density of its region. It sums to the (channel-max) base attribution.
    pub attribution_mask: Array2<F>,
    /// The baselines integrated gradients started from; `None` when a base
    /// attribution was given.
    pub baselines: Option<Vec<ArrayD<F>>>,
    /// With `return_ig_attributions`: the attribution of every baseline, or
    /// the given base attribution alone.
    pub ig_attribution: Option<Vec<ArrayD<F>>>,
    /// With `return_xrai_segments`: the ranked regions.
    pub segments: Option<XraiSegments>,
}

/// XRAI: region attributions from integrated gradients and an image
/// segmentation.
///
/// The input is one image, height x width x channels (or height x width).
/// Unless a base attribution is given, integrated gradients is run from each
/// baseline (default: two, filled with the image's minimum and its maximum)
/// and averaged; channels are merged by their maximum. Unless segments are
/// given, they come from [`get_segments_felzenszwalb`].
///
/// ```
/// use ndarray::{Array2, Array3};
/// use saliency::{ModelOutputs, OutputKey, Saliency, Xrai, XraiParameters};
///
/// let image = Array3::<f64>::from_shape_fn((16, 16, 3), |(i, j, c)| ((i * j + c) % 5) as f64 / 5.0);
/// // Two regions: the left and the right half.
/// let left = Array2::from_shape_fn((16, 16), |(_, j)| j < 8);
/// let right = left.mapv(|b| !b);
/// let xrai = Xrai::new()
///     .parameters(XraiParameters::new().steps(20).min_pixel_diff(1))
///     .segments(vec![left, right])
///     .batch_size(10);
/// // f(x) = sum(j * x) over column j: the right half matters more.
/// let mask = xrai.get_mask(&image, &mut |batch, _keys| {
///     let grads = ndarray::ArrayD::from_shape_fn(batch.raw_dim(), |ix| ix[2] as f64);
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
/// })?;
/// assert!(mask[[0, 15]] > mask[[0, 0]]);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Xrai<F> {
    parameters: XraiParameters,
    batch_size: usize,
    baselines: Option<Vec<ArrayD<F>>>,
    segments: Option<Vec<Array2<bool>>>,
    base_attribution: Option<ArrayD<F>>,
}

impl<F> Default for Xrai<F> {
    fn default() -> Self {
        Xrai {
            parameters: XraiParameters::default(),
            batch_size: 1,
            baselines: None,
            segments: None,
            base_attribution: None,
        }
    }
}

impl<F: Float> Xrai<F> {
    /// The reference's defaults: [`XraiParameters::default`], batch size 1,
    /// min/max baselines, Felzenszwalb segments.
    pub fn new() -> Self {
        Self::default()
    }

    /// The run's parameters.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn parameters(mut self, parameters: XraiParameters) -> Self {
        self.parameters = parameters;
        self
    }

    /// Maximum number of integrated-gradients path points per model call.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Baselines for integrated gradients, each of the input's shape; the
    /// attribution is the mean over them.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn baselines<D: ndarray::Dimension>(
        mut self,
        baselines: impl IntoIterator<Item = ndarray::Array<F, D>>,
    ) -> Self {
        self.baselines = Some(baselines.into_iter().map(|b| b.into_dyn()).collect());
        self
    }

    /// Precomputed segments: boolean masks of the image's height x width, in
    /// any number and possibly overlapping.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn segments(mut self, segments: Vec<Array2<bool>>) -> Self {
        self.segments = Some(segments);
        self
    }

    /// A precomputed attribution of the input's shape, used instead of
    /// integrated gradients (the model is then not called).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn base_attribution<D: ndarray::Dimension>(mut self, attribution: ndarray::Array<F, D>) -> Self {
        self.base_attribution = Some(attribution.into_dyn());
        self
    }

    /// Runs XRAI and returns the map with the details the parameters ask
    /// for, reporting progress (integrated-gradients steps, then the ranking).
    pub fn get_mask_with_details<'a, D: ndarray::Dimension>(
        &self,
        x: impl ndarray::AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<XraiOutput<F>>
    where
        F: 'a,
    {
        self.run(x.into().into_dyn(), None, Some(model), progress)
    }

    /// Runs XRAI on a given attribution of `x`'s shape, without a model:
    /// the same result as [`get_mask_with_details`](Self::get_mask_with_details)
    /// with that attribution set as the [`base_attribution`](Self::base_attribution)
    /// (which `attribution` replaces). The segments are the ones set with
    /// [`segments`](Self::segments), else Felzenszwalb segments of `x`.
    ///
    /// ```
    /// use ndarray::{Array2, Array3};
    /// use saliency::{Xrai, XraiParameters};
    ///
    /// let image = Array3::<f64>::zeros((8, 8, 3));
    /// // The right half carries all the attribution.
    /// let attribution = Array3::from_shape_fn((8, 8, 3), |(_, j, _)| if j < 4 { 0.0 } else { 1.0 });
    /// let left = Array2::from_shape_fn((8, 8), |(_, j)| j < 4);
    /// let right = left.mapv(|b| !b);
    /// let xrai = Xrai::new()
    ///     .parameters(XraiParameters::new().min_pixel_diff(1))
    ///     .segments(vec![left, right]);
    /// let out = xrai.get_mask_from_attribution(&image, &attribution)?;
    /// assert_eq!((out.attribution_mask[[0, 7]], out.attribution_mask[[0, 0]]), (1.0, 0.0));
    /// # Ok::<(), saliency::SaliencyError>(())
    /// ```
    pub fn get_mask_from_attribution<'a, 'b, D: ndarray::Dimension, E: ndarray::Dimension>(
        &self,
        x: impl ndarray::AsArray<'a, F, D>,
        attribution: impl ndarray::AsArray<'b, F, E>,
    ) -> Result<XraiOutput<F>>
    where
        F: 'a + 'b,
    {
        self.run(
            x.into().into_dyn(),
            Some(attribution.into().into_dyn()),
            None,
            &mut |_| {},
        )
    }

    /// XRAI with the attribution given (`attribution`, else the base
    /// attribution set) or computed by integrated gradients with `model`.
    fn run(
        &self,
        x: ArrayViewD<'_, F>,
        attribution: Option<ArrayViewD<'_, F>>,
        model: Option<&mut dyn CallModelFunction<F>>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<XraiOutput<F>> {
        let p = &self.parameters;
        let given = attribution.or_else(|| self.base_attribution.as_ref().map(|b| b.view()));
        check_image("input", &x)?;
        check_steps("steps", p.steps)?;
        p.integration_rule.points_and_weights(p.steps)?;
        check_positive("batch_size", self.batch_size)?;
        if p.area_threshold.is_nan() {
            return Err(SaliencyError::param(
                "area_threshold",
                p.area_threshold,
                "must not be NaN",
            ));
        }
        let (height, width) = (x.shape()[0], x.shape()[1]);

        // Check every argument before the (possibly long) model calls.
        if let Some(base) = &given {
            check_like_input("base attribution", base, x.shape())?;
        }
        if let Some(baselines) = &self.baselines {
            if baselines.is_empty() {
                return Err(SaliencyError::EmptyInput {
                    what: "baselines",
                    shape: vec![0],
                });
            }
            for b in baselines {
                check_like_input("baseline", &b.view(), x.shape())?;
            }
        }
        if let Some(segments) = &self.segments {
            if segments.is_empty() {
                return Err(SaliencyError::EmptyInput {
                    what: "segments",
                    shape: vec![0],
                });
            }
            for s in segments {
                check_shape("segment", s.shape(), &[height, width])?;
            }
        }

        // The segments do not depend on the model: with `rayon` they are
        // computed on the pool while the model runs on this thread.
        let compute_masks = || -> Result<MaskSet> {
            match &self.segments {
                Some(segments) => {
                    let mut set = MaskSet::new(height, width);
                    for s in segments {
                        set.push_dense(s.view());
                    }
                    Ok(set)
                }
                None => segments::felzenszwalb_masks(x.view()),
            }
        };
        let compute_attribution = || -> Result<Attribution<F>> {
            match (given, model) {
                (Some(base), _) => Ok((
                    base.to_owned(),
                    None,
                    p.return_ig_attributions.then(|| vec![base.to_owned()]),
                )),
                (None, None) => Err(SaliencyError::internal("XRAI has neither an attribution nor a model")),
                (None, Some(model)) => {
                    let baselines = match &self.baselines {
                        Some(b) => b.clone(),
                        None => default_baselines(x.view()),
                    };
                    let attrs = self.integrated_gradients(x.view(), &baselines, model, progress)?;
                    if p.return_ig_attributions {
                        let mean = finite_result("mean attribution", mean_of(&attrs, x.raw_dim()))?;
                        Ok((mean, Some(baselines), Some(attrs)))
                    } else {
                        let mean = finite_result("mean attribution", mean_into_first(attrs, x.raw_dim()))?;
                        Ok((mean, Some(baselines), None))
                    }
                }
            }
        };
        let (masks, attribution) = crate::parallel::alongside(compute_masks, compute_attribution);
        let (attribution, baselines, ig_attribution) = attribution?;
        let masks = masks.ok_or_else(|| SaliencyError::internal("the segments were not computed"))??;
        let attr = merge_channels(attribution)?;

        let flat = standard_vec(attr.view());
        let ranking = match p.algorithm {
            XraiAlgorithm::Full => greedy::full(&flat, &masks, p.area_threshold, p.min_pixel_diff, progress),
            XraiAlgorithm::Fast => greedy::fast(&flat, &masks, p.min_pixel_diff, progress),
        };
        let attribution_mask = Array2::from_shape_vec((height, width), ranking.attribution)
            .map_err(|_| SaliencyError::internal("the XRAI ranking does not cover the image"))?;
        // Region means of huge attributions overflow.
        let attribution_mask = finite_result("XRAI attribution mask", attribution_mask.into_dyn())?
            .into_dimensionality::<Ix2>()
            .map_err(|_| SaliencyError::internal("the XRAI attribution mask lost its rank"))?;
        let segments = p.return_xrai_segments.then(|| {
            if p.flatten_xrai_segments {
                let mut ranks = Array2::<usize>::zeros((height, width));
                if let Some(flat) = ranks.as_slice_mut() {
                    for (i, region) in ranking.regions.iter().enumerate() {
                        for &px in region {
                            flat[px as usize] = i + 1;
                        }
                    }
                }
                XraiSegments::Ranks(ranks)
            } else {
                XraiSegments::Masks(ranking.regions.iter().map(|r| masks::dense(height, width, r)).collect())
            }
        });
        Ok(XraiOutput {
            attribution_mask,
            baselines,
            ig_attribution,
            segments,
        })
    }

    /// Integrated gradients from every baseline, progress counted over all.
    fn integrated_gradients(
        &self,
        x: ArrayViewD<'_, F>,
        baselines: &[ArrayD<F>],
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<ArrayD<F>>> {
        let steps = self.parameters.steps;
        let total = steps.saturating_mul(baselines.len());
        // The baselines share one path buffer (the thread's IG scratch).
        let mut attrs = Vec::with_capacity(baselines.len());
        for (k, b) in baselines.iter().enumerate() {
            let mut report = |pr: Progress| progress(Progress::new(pr.stage, k * steps + pr.done, total));
            attrs.push(integrated_gradients(
                x.view(),
                Some(b.view()),
                steps,
                self.parameters.integration_rule,
                self.batch_size,
                model,
                &mut report,
            )?);
        }
        Ok(attrs)
    }

    /// The run's parameters.
    pub fn get_parameters(&self) -> &XraiParameters {
        &self.parameters
    }

    /// The most integrated-gradients path points per model call.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }

    /// The baselines set with [`baselines`](Self::baselines); `None`: the image's minimum and maximum.
    pub fn get_baselines(&self) -> Option<&[ArrayD<F>]> {
        self.baselines.as_deref()
    }

    /// The segments set with [`segments`](Self::segments); `None`: Felzenszwalb segments.
    pub fn get_segments(&self) -> Option<&[Array2<bool>]> {
        self.segments.as_deref()
    }

    /// The attribution set with [`base_attribution`](Self::base_attribution); `None`: integrated gradients.
    pub fn get_base_attribution(&self) -> Option<&ArrayD<F>> {
        self.base_attribution.as_ref()
    }
}

/// The mask: height x width.
impl<F: Float> crate::core::Saliency<F> for Xrai<F> {
    type MaskDim<D: ndarray::Dimension> = ndarray::Ix2;
}

impl<F: Float> CoreSaliency<F> for Xrai<F> {
    fn name(&self) -> &'static str {
        "XRAI"
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn get_mask_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        Ok(self
            .get_mask_with_details(x, model, progress)?
            .attribution_mask
            .into_dyn())
    }
}

/// The attribution XRAI ranks with, the baselines behind it and the
/// attributions to return.
type Attribution<F> = (ArrayD<F>, Option<Vec<ArrayD<F>>>, Option<Vec<ArrayD<F>>>);

/// The reference's default baselines: the image's minimum and its maximum
/// everywhere.
fn default_baselines<F: Float>(x: ArrayViewD<'_, F>) -> Vec<ArrayD<F>> {
    let (lo, hi) = crate::imageops::min_max_of(&x);
    vec![ArrayD::from_elem(x.raw_dim(), lo), ArrayD::from_elem(x.raw_dim(), hi)]
}

/// Element-wise mean of equally shaped arrays, summed in list order as
/// `numpy.mean(list, axis=0)` does.
fn mean_of<F: Float>(arrays: &[ArrayD<F>], dim: ndarray::IxDyn) -> ArrayD<F> {
    let mut total = ArrayD::<F>::zeros(dim);
    for a in arrays {
        total += a;
    }
    let n = F::from_f64_lossy(arrays.len() as f64);
    total.mapv_inplace(|v| v / n);
    total
}

/// [`mean_of`] in the first array's memory, when the arrays are not kept:
/// the same sums (`0 + a_0 + a_1 + ...`, the leading zero kept since it
/// turns -0 into +0), one image-sized array fewer.
fn mean_into_first<F: Float>(arrays: Vec<ArrayD<F>>, dim: ndarray::IxDyn) -> ArrayD<F> {
    let n = F::from_f64_lossy(arrays.len() as f64);
    let mut arrays = arrays.into_iter();
    let Some(mut total) = arrays.next() else {
        return ArrayD::zeros(dim);
    };
    total.mapv_inplace(|v| F::zero() + v);
    for a in arrays {
        total += &a;
    }
    total.mapv_inplace(|v| v / n);
    total
}

/// The attribution as height x width: channels (a third axis) merged by
/// their maximum, as the reference does.
fn merge_channels<F: Float>(attr: ArrayD<F>) -> Result<Array2<F>> {
    let merged = if attr.ndim() == 3 {
        attr.fold_axis(Axis(2), F::neg_infinity(), |&m, &v| m.max(v))
    } else {
        attr
    };
    // The attribution has the input's shape, whose rank was checked.
    merged
        .into_dimensionality::<Ix2>()
        .map_err(|_| SaliencyError::internal("the attribution is not an image"))
}

/// A row-major copy of a 2-D view.
fn standard_vec<F: Float>(a: ArrayView2<'_, F>) -> Vec<F> {
    a.iter().copied().collect()
}
