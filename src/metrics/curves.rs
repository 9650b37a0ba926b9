//! Deletion and insertion curves of
//! [RISE: Randomized Input Sampling for Explanation of Black-box Models](https://arxiv.org/abs/1806.07421)
//! (Petsiuk et al. 2018, section 4.1).
//!
//! **Deletion** removes the pixels of an image in the order of a saliency
//! map, most salient first, replacing them with a baseline, and follows the
//! model's score: a faithful map makes it fall fast (a small area under the
//! curve). **Insertion** starts from the baseline and puts the image's pixels
//! back in the same order: a faithful map makes the score rise fast (a large
//! area).
//!
//! The curve has `steps + 1` points. Point `k` has `floor(k * N / steps)` of
//! the `N = H x W` pixels removed (or inserted), all channels of a pixel at
//! once; its x coordinate is that count over `N` (the fraction, from 0 to 1).
//! The area under the curve is the trapezoid rule over that fraction axis
//! ([`trapz()`]), so it lies in the range of the scores
//! whatever `steps` is; with `N` a multiple of `steps` the fractions are
//! evenly spaced and the area is RISE's `(sum - first / 2 - last / 2) / steps`.
//!
//! Order: pixels by decreasing saliency; pixels of equal saliency in
//! row-major order (the sort is stable), so flat maps (Grad-CAM's zeros,
//! XRAI's regions) give one documented order rather than an arbitrary one.
//!
//! The model is a [`CallModelFunction`] asked for
//! [`OutputKey::OutputLayerValues`] only (its target score, `[B]` or
//! `[B, 1]`: RISE uses the class probability), on batches of at most
//! [`PerturbationCurve::batch_size`] perturbed images.

use ndarray::{Array3, ArrayD, ArrayView2, ArrayView3, AsArray, Axis, Dimension, IxDyn};

use crate::checks::{check_finite, check_positive, check_steps, image_view3};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::{BoundaryMode, gaussian_filter, trapz};
use crate::model::{CallModelFunction, OutputKey, call_model};

/// Deletion or insertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveKind {
    /// Start from the image and replace its pixels with the baseline.
    Deletion,
    /// Start from the baseline and put the image's pixels back.
    Insertion,
}

/// What a removed (or not yet inserted) pixel shows.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum CurveBaseline {
    /// Zeros (black for images in `[0, 1]` or `[0, 255]`; mid-grey for
    /// images centred on 0). RISE's deletion baseline.
    Black,
    /// The image blurred with a Gaussian of this standard deviation in
    /// pixels over height and width
    /// ([`gaussian_filter`], reflecting
    /// edges, truncated at 4 sigma). RISE's insertion baseline, with sigma 5
    /// (there truncated to an 11-pixel kernel).
    Blur {
        /// The standard deviation, in pixels, above 0.
        sigma: f64,
    },
    /// Each channel's mean over the image.
    Mean,
}

/// One curve: the model's score against the fraction of pixels removed or
/// inserted, and the area under it.
#[derive(Clone, Debug, PartialEq)]
pub struct CurveResult {
    /// The x coordinates: the fraction of pixels removed (deletion) or
    /// inserted (insertion), `steps + 1` of them from 0 to 1.
    pub fractions: Vec<f64>,
    /// The model's score on each perturbed image.
    pub scores: Vec<f64>,
    /// The area under the curve: the trapezoid rule over `fractions`.
    pub auc: f64,
}

/// Settings of a deletion or insertion curve (see the [module docs](self)).
///
/// ```
/// use ndarray::{Array2, Array3};
/// use saliency::metrics::{CurveKind, PerturbationCurve};
/// use saliency::{ModelOutputs, OutputKey};
///
/// // A model whose score is the mean of the image's left half; a map that
/// // ranks the left half first.
/// let image = Array3::<f64>::ones((4, 4, 1));
/// let map = Array2::from_shape_fn((4, 4), |(_, j)| if j < 2 { 1.0 } else { 0.0 });
/// let mut model = |batch: ndarray::ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
///     let scores = batch.outer_iter().map(|img| {
///         img.indexed_iter().filter(|(ix, _)| ix[1] < 2).map(|(_, v)| v).sum::<f64>() / 8.0
///     });
///     Ok::<_, saliency::BoxError>(ModelOutputs::new().with(OutputKey::OutputLayerValues, ndarray::Array1::from_iter(scores)))
/// };
/// let curve = PerturbationCurve::deletion().steps(4).compute(&image, map.view(), &mut model)?;
/// // Half the pixels (the left half) go in the first two steps: 1, 0.5, 0, 0, 0.
/// assert_eq!(curve.scores, [1.0, 0.5, 0.0, 0.0, 0.0]);
/// assert_eq!(curve.fractions, [0.0, 0.25, 0.5, 0.75, 1.0]);
/// assert_eq!(curve.auc, 0.25);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PerturbationCurve {
    kind: CurveKind,
    steps: usize,
    baseline: CurveBaseline,
    batch_size: usize,
}

impl PerturbationCurve {
    /// A deletion curve: 50 steps, [`CurveBaseline::Black`], 32 images per
    /// model call.
    pub fn deletion() -> Self {
        PerturbationCurve {
            kind: CurveKind::Deletion,
            steps: 50,
            baseline: CurveBaseline::Black,
            batch_size: 32,
        }
    }

    /// An insertion curve: 50 steps, [`CurveBaseline::Blur`] with sigma 5,
    /// 32 images per model call.
    pub fn insertion() -> Self {
        PerturbationCurve {
            kind: CurveKind::Insertion,
            baseline: CurveBaseline::Blur { sigma: 5.0 },
            ..Self::deletion()
        }
    }

    /// Deletion or insertion (the baseline stays as set).
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn kind(mut self, kind: CurveKind) -> Self {
        self.kind = kind;
        self
    }

    /// The number of steps, at least 1 (the curve has `steps + 1` points).
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// What removed (or not yet inserted) pixels show.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn baseline(mut self, baseline: CurveBaseline) -> Self {
        self.baseline = baseline;
        self
    }

    /// The most perturbed images per model call, at least 1.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Deletion or insertion.
    pub fn get_kind(&self) -> CurveKind {
        self.kind
    }

    /// The number of steps.
    pub fn get_steps(&self) -> usize {
        self.steps
    }

    /// What removed (or not yet inserted) pixels show.
    pub fn get_baseline(&self) -> CurveBaseline {
        self.baseline
    }

    /// The most perturbed images per model call.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }

    fn check(&self) -> Result<()> {
        check_steps("steps", self.steps)?;
        check_positive("batch_size", self.batch_size)?;
        if let CurveBaseline::Blur { sigma } = self.baseline
            && !(sigma.is_finite() && sigma > 0.0)
        {
            return Err(SaliencyError::param(
                "baseline sigma",
                sigma,
                "must be finite and above 0 (CurveBaseline::Blur { sigma })",
            ));
        }
        Ok(())
    }

    /// The curve of `saliency_map` (`H x W`, higher is more important) on
    /// `image` (`H x W x C`, or `H x W`), with `model` scoring each perturbed
    /// image. The batches the model receives have the image's shape after
    /// the batch axis.
    ///
    /// Errors, all before any model call: invalid settings (`steps` or
    /// `batch_size` 0, a blur sigma not above 0); an image of the wrong rank,
    /// channels-first, empty or not finite; a map whose shape is not the
    /// image's `H x W`, or not finite. Then a model that fails
    /// ([`SaliencyError::Model`]) or returns a missing, misshapen or
    /// non-finite [`OutputKey::OutputLayerValues`].
    pub fn compute<'a, F: Float, S: Float, D: Dimension>(
        &self,
        image: impl AsArray<'a, F, D>,
        saliency_map: ArrayView2<'_, S>,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<CurveResult> {
        self.check()?;
        let image = image.into().into_dyn();
        let image3 = image_view3("image", &image)?;
        if image.is_empty() {
            return Err(SaliencyError::EmptyInput {
                what: "image",
                shape: image.shape().to_vec(),
            });
        }
        check_finite("image", &image)?;
        let (h, w, c) = image3.dim();
        if saliency_map.dim() != (h, w) {
            return Err(SaliencyError::ShapeMismatch {
                what: "saliency map",
                expected: vec![h, w],
                actual: saliency_map.shape().to_vec(),
            });
        }
        check_finite("saliency map", &saliency_map.into_dyn())?;
        let baseline = self.baseline_image(image3)?;
        let order = salience_order(saliency_map);
        let n = h * w;
        // Pixels changed at point k: floor(k * n / steps), in u128 so that
        // no product overflows.
        let counts: Vec<usize> = (0..=self.steps)
            .map(|k| (k as u128 * n as u128 / self.steps as u128) as usize)
            .collect();
        let (start, target) = match self.kind {
            CurveKind::Deletion => (image3.to_owned(), baseline.view()),
            CurveKind::Insertion => (baseline.clone(), image3),
        };
        let mut current = start;
        let mut batch_shape = vec![0];
        batch_shape.extend_from_slice(image.shape());
        let mut scores = Vec::with_capacity(counts.len());
        let mut pending: Vec<F> = Vec::new();
        let mut in_batch = 0;
        let mut done = 0;
        for (k, &count) in counts.iter().enumerate() {
            for &p in order.get(done..count).unwrap_or(&[]) {
                let (i, j) = (p / w, p % w);
                for ch in 0..c {
                    current[[i, j, ch]] = target[[i, j, ch]];
                }
            }
            done = count;
            pending.extend(current.iter().copied());
            in_batch += 1;
            if in_batch == self.batch_size || k == self.steps {
                batch_shape[0] = in_batch;
                let batch = ArrayD::from_shape_vec(IxDyn(&batch_shape), std::mem::take(&mut pending))
                    .map_err(|_| SaliencyError::internal("a batch of perturbed images has the wrong size"))?;
                let mut outputs = call_model(model, batch.view(), &[OutputKey::OutputLayerValues])?;
                let values = outputs.take(OutputKey::OutputLayerValues)?;
                scores.extend(values.iter().map(|v| v.as_f64()));
                in_batch = 0;
            }
        }
        let fractions: Vec<f64> = counts.iter().map(|&k| k as f64 / n as f64).collect();
        let auc = trapz(&scores, &fractions);
        Ok(CurveResult { fractions, scores, auc })
    }

    /// The baseline image, `H x W x C`.
    fn baseline_image<F: Float>(&self, image: ArrayView3<'_, F>) -> Result<Array3<F>> {
        Ok(match self.baseline {
            CurveBaseline::Black => Array3::zeros(image.raw_dim()),
            CurveBaseline::Blur { sigma } => gaussian_filter(image, &[sigma, sigma, 0.0], BoundaryMode::Reflect, 4.0)?,
            CurveBaseline::Mean => {
                let n = (image.shape()[0] * image.shape()[1]) as f64;
                let means: Vec<F> = image
                    .axis_iter(Axis(2))
                    .map(|channel| F::from_f64_lossy(channel.iter().map(|v| v.as_f64()).sum::<f64>() / n))
                    .collect();
                Array3::from_shape_fn(image.raw_dim(), |(_, _, ch)| means[ch])
            }
        })
    }
}

/// The flat (row-major) pixel indices by decreasing saliency; equal values
/// keep row-major order (stable sort).
fn salience_order<S: Float>(map: ArrayView2<'_, S>) -> Vec<usize> {
    let values: Vec<f64> = map.iter().map(|v| v.as_f64()).collect();
    let mut order: Vec<usize> = (0..values.len()).collect();
    // -0.0 and 0.0 compare equal here, as the values they are.
    order.sort_by(|&a, &b| values[b].partial_cmp(&values[a]).unwrap_or(std::cmp::Ordering::Equal));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn ties_keep_row_major_order() {
        let map = Array2::from_shape_vec((2, 3), vec![0.0, 2.0, 0.0, 2.0, -0.0, 1.0]).unwrap();
        assert_eq!(salience_order(map.view()), [1, 3, 5, 0, 2, 4]);
    }
}
