//! Where a saliency map points, against regions whose meaning is known
//! (an embryo's inner cell mass, trophectoderm and zona; an object's box;
//! the background).
//!
//! Per image and region, [`RegionScoring::score`] gives
//!
//! - the **mass share**: the region's part of the map's saliency mass;
//! - the **area share**: the region's part of the image;
//! - the **ratio** of the two: 1 for a map spread evenly over the image,
//!   well above 1 for a map that concentrates on the region;
//! - the **pointing game** hit ([Zhang et al. 2016](https://arxiv.org/abs/1608.00507)):
//!   whether the map's maximum lies inside the region;
//! - the **top-k % IoU**: the intersection over union of the map's most
//!   salient `k` % of pixels with the region.
//!
//! [`summarize_regions`] averages them over many images and counts the
//! images whose ratio stays under a threshold (one image is an anecdote).
//!
//! Saliency mass is an energy per pixel, never negative: by default the sum
//! of the absolute values over channels ([`Energy::AbsSum`], what
//! [`visualize::grayscale`](crate::visualize::grayscale) shows), so evidence
//! against the class counts as much as evidence for it; [`Energy::PositivePart`]
//! keeps only the positive part of the channel sum, for signed maps read as
//! "evidence for".

use ndarray::{Array2, ArrayView2, AsArray, Axis, Dimension, Zip};

use super::agreement::top_set;
use crate::checks::{check_finite, image_view3};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::sum;

/// How a mask becomes saliency mass per pixel (an `H x W` map of values
/// `>= 0`); a 2-D mask is read as one channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Energy {
    /// The sum of the absolute values over channels, as
    /// [`visualize::grayscale`](crate::visualize::grayscale) sums them
    /// before scaling: negative evidence is mass too.
    #[default]
    AbsSum,
    /// The channel sum where it is positive, 0 elsewhere: only evidence for
    /// the explained output is mass.
    PositivePart,
}

/// The saliency mass per pixel of `mask` (`H x W x C`, or `H x W` as one
/// channel), as `f64`.
///
/// Errors: a rank other than 2 or 3, an empty mask, a non-finite value.
///
/// ```
/// use ndarray::array;
/// use saliency::metrics::{Energy, saliency_energy};
///
/// let mask = array![[[1.0, -2.0]], [[-1.0, 0.5]]]; // 2 x 1 pixels, 2 channels
/// assert_eq!(saliency_energy(&mask, Energy::AbsSum)?, array![[3.0], [1.5]]);
/// assert_eq!(saliency_energy(&mask, Energy::PositivePart)?, array![[0.0], [0.0]]);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn saliency_energy<'a, F: Float, D: Dimension>(
    mask: impl AsArray<'a, F, D>,
    energy: Energy,
) -> Result<Array2<f64>> {
    let mask = mask.into().into_dyn();
    let mask3 = image_view3("mask", &mask)?;
    if mask.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what: "mask",
            shape: mask.shape().to_vec(),
        });
    }
    check_finite("mask", &mask)?;
    let map = Zip::from(mask3.lanes(Axis(2))).map_collect(|lane| match energy {
        Energy::AbsSum => lane.iter().map(|v| v.as_f64().abs()).sum::<f64>(),
        Energy::PositivePart => lane.iter().map(|v| v.as_f64()).sum::<f64>().max(0.0),
    });
    if map.iter().any(|v| !v.is_finite()) {
        return Err(SaliencyError::NonFiniteResult {
            what: "saliency energy",
            count: map.iter().filter(|v| !v.is_finite()).count(),
            first_index: map.iter().position(|v| !v.is_finite()).unwrap_or(0),
        });
    }
    Ok(map)
}

/// The scores of one map against one region (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionScore {
    /// The region's name, as given.
    pub name: String,
    /// The region's part of the map's saliency mass, in `[0, 1]`; 0 for a
    /// map without mass.
    pub mass_share: f64,
    /// The region's part of the image's pixels, in `(0, 1]`.
    pub area_share: f64,
    /// `mass_share / area_share`: 1 for a map spread evenly, more for a map
    /// that concentrates on the region.
    pub ratio: f64,
    /// Whether the map's maximum lies in the region. With several pixels at
    /// the maximum, the first in row-major order counts (`numpy.argmax`); a
    /// map without mass points nowhere and misses.
    pub hit: bool,
    /// The intersection over union of the region with the map's top
    /// [`RegionScoring::top_percent`] % of pixels: those at or above the
    /// `(100 - k)`-th percentile (NumPy's linear rule), as
    /// [`top_percent_iou`](super::top_percent_iou) selects them. 0 for a map
    /// without mass.
    pub top_iou: f64,
}

/// Settings of the region scores: the energy that is saliency mass and the
/// `k` of the top-k % overlap.
///
/// ```
/// use ndarray::{Array2, Array3};
/// use saliency::metrics::RegionScoring;
///
/// // A map that is bright in the top-left 2 x 2 corner of a 4 x 4 image.
/// let mask = Array3::from_shape_fn((4, 4, 1), |(i, j, _)| if i < 2 && j < 2 { 3.0 } else { 1.0 });
/// let corner = Array2::from_shape_fn((4, 4), |(i, j)| i < 2 && j < 2);
/// let scores = RegionScoring::new().top_percent(25.0).score(&mask, &[("corner", corner.view())])?;
/// // Mass 12 of 24 on a quarter of the image: share 0.5, ratio 2.
/// assert_eq!(scores[0].mass_share, 0.5);
/// assert_eq!(scores[0].ratio, 2.0);
/// assert!(scores[0].hit);
/// assert_eq!(scores[0].top_iou, 1.0);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegionScoring {
    top_percent: f64,
    energy: Energy,
}

impl Default for RegionScoring {
    /// The top 10 % of pixels, [`Energy::AbsSum`].
    fn default() -> Self {
        RegionScoring {
            top_percent: 10.0,
            energy: Energy::AbsSum,
        }
    }
}

impl RegionScoring {
    /// The defaults (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The `k` of the top-k % IoU, in `(0, 100]`.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn top_percent(mut self, k: f64) -> Self {
        self.top_percent = k;
        self
    }

    /// How a mask becomes saliency mass.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn energy(mut self, energy: Energy) -> Self {
        self.energy = energy;
        self
    }

    /// The `k` of the top-k % IoU.
    pub fn get_top_percent(&self) -> f64 {
        self.top_percent
    }

    /// How a mask becomes saliency mass.
    pub fn get_energy(&self) -> Energy {
        self.energy
    }

    fn check(&self) -> Result<()> {
        if !(self.top_percent.is_finite() && self.top_percent > 0.0 && self.top_percent <= 100.0) {
            return Err(SaliencyError::param(
                "top_percent",
                self.top_percent,
                "must be above 0 and at most 100",
            ));
        }
        Ok(())
    }

    /// Scores `mask` (`H x W x C`, or `H x W`) against each named region
    /// (`H x W`, `true` inside). Regions may overlap.
    ///
    /// Errors: an invalid `top_percent`; a mask of the wrong rank, empty or
    /// not finite; no regions; a region of another shape than the mask's
    /// `H x W`, or with no pixel set.
    pub fn score<'a, F: Float, D: Dimension>(
        &self,
        mask: impl AsArray<'a, F, D>,
        regions: &[(&str, ArrayView2<'_, bool>)],
    ) -> Result<Vec<RegionScore>> {
        self.check()?;
        let map = saliency_energy(mask, self.energy)?;
        self.score_energy(map.view(), regions)
    }

    /// [`score`](Self::score) on a map that already is saliency mass per
    /// pixel (`H x W`, every value finite and `>= 0`), such as
    /// [`saliency_energy`]'s.
    ///
    /// Errors: those of [`score`](Self::score), and a negative value.
    pub fn score_energy(
        &self,
        map: ArrayView2<'_, f64>,
        regions: &[(&str, ArrayView2<'_, bool>)],
    ) -> Result<Vec<RegionScore>> {
        self.check()?;
        if map.is_empty() {
            return Err(SaliencyError::EmptyInput {
                what: "saliency map",
                shape: map.shape().to_vec(),
            });
        }
        check_finite("saliency map", &map.into_dyn())?;
        if let Some(&v) = map.iter().find(|&&v| v < 0.0) {
            return Err(SaliencyError::param(
                "saliency map",
                v,
                "is saliency mass and must not be negative: reduce a signed map with saliency_energy first",
            ));
        }
        if regions.is_empty() {
            return Err(SaliencyError::EmptyInput {
                what: "regions",
                shape: vec![0],
            });
        }
        let values: Vec<f64> = map.iter().copied().collect();
        let total = sum(&values);
        // numpy.argmax: the first maximum in row-major order.
        let peak = values
            .iter()
            .enumerate()
            .fold(None, |best: Option<(usize, f64)>, (i, &v)| match best {
                Some((_, b)) if b >= v => best,
                _ => Some((i, v)),
            })
            .map(|(i, _)| i);
        let top = top_set(map, self.top_percent)?;
        let (n, width) = (map.len() as f64, map.ncols());
        regions
            .iter()
            .map(|(name, region)| {
                if region.dim() != map.dim() {
                    return Err(SaliencyError::ShapeMismatch {
                        what: "region mask",
                        expected: map.shape().to_vec(),
                        actual: region.shape().to_vec(),
                    });
                }
                let area = region.iter().filter(|&&r| r).count();
                if area == 0 {
                    return Err(SaliencyError::param(
                        "regions",
                        name,
                        "has no pixel set: an empty region has no share to compare; leave it out",
                    ));
                }
                let inside: Vec<f64> = values
                    .iter()
                    .zip(region.iter())
                    .filter(|(_, r)| **r)
                    .map(|(v, _)| *v)
                    .collect();
                let mass_share = if total > 0.0 { sum(&inside) / total } else { 0.0 };
                let area_share = area as f64 / n;
                let hit = total > 0.0
                    && peak
                        .and_then(|p| region.get((p / width, p % width)).copied())
                        .unwrap_or(false);
                let (both, either) = Zip::from(&top).and(region).fold((0usize, 0usize), |(b, e), &t, &r| {
                    (b + usize::from(t && r), e + usize::from(t || r))
                });
                // A map without mass selects no pixel: it points nowhere.
                let top_iou = if total > 0.0 { both as f64 / either as f64 } else { 0.0 };
                Ok(RegionScore {
                    name: (*name).to_string(),
                    mass_share,
                    area_share,
                    ratio: mass_share / area_share,
                    hit,
                    top_iou,
                })
            })
            .collect()
    }
}

/// A region's scores averaged over many images.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionSummary {
    /// The region's name.
    pub name: String,
    /// How many images were averaged.
    pub images: usize,
    /// The mean of [`RegionScore::mass_share`].
    pub mean_mass_share: f64,
    /// The mean of [`RegionScore::ratio`].
    pub mean_ratio: f64,
    /// The share of images whose maximum lies in the region (the pointing
    /// game's accuracy).
    pub hit_rate: f64,
    /// The mean of [`RegionScore::top_iou`].
    pub mean_top_iou: f64,
    /// How many images have a [`RegionScore::ratio`] below the threshold
    /// given to [`summarize_regions`].
    pub under_threshold: usize,
}

/// Averages the scores of one map per image (`per_image[i]` from
/// [`RegionScoring::score`] on image `i`, the same regions in the same
/// order for every image) and counts, per region, the images whose ratio is
/// below `ratio_threshold` (for example 2: a map that does not put at least
/// twice the region's area share of its mass into it).
///
/// Errors: no images; images whose region lists differ in length or names;
/// a threshold that is not finite.
///
/// ```
/// use ndarray::{Array2, array};
/// use saliency::metrics::{RegionScoring, summarize_regions};
///
/// let left = Array2::from_shape_fn((2, 2), |(_, j)| j == 0);
/// let scoring = RegionScoring::new();
/// let a = scoring.score(&array![[3.0, 1.0], [3.0, 1.0]], &[("left", left.view())])?; // ratio 1.5
/// let b = scoring.score(&array![[1.0, 1.0], [1.0, 1.0]], &[("left", left.view())])?; // ratio 1
/// let summary = summarize_regions(&[a, b], 1.2)?;
/// assert_eq!(summary[0].mean_ratio, 1.25);
/// assert_eq!(summary[0].under_threshold, 1);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn summarize_regions(per_image: &[Vec<RegionScore>], ratio_threshold: f64) -> Result<Vec<RegionSummary>> {
    if !ratio_threshold.is_finite() {
        return Err(SaliencyError::param(
            "ratio_threshold",
            ratio_threshold,
            "must be finite",
        ));
    }
    let first = per_image.first().ok_or(SaliencyError::EmptyInput {
        what: "per-image region scores",
        shape: vec![0],
    })?;
    for scores in per_image {
        if scores.len() != first.len() || scores.iter().zip(first).any(|(a, b)| a.name != b.name) {
            return Err(SaliencyError::param(
                "per_image",
                format!(
                    "{:?} and {:?}",
                    first.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                    scores.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
                ),
                "every image must be scored against the same regions in the same order",
            ));
        }
    }
    let n = per_image.len() as f64;
    Ok(first
        .iter()
        .enumerate()
        .map(|(r, region)| {
            let column = || per_image.iter().filter_map(move |scores| scores.get(r));
            let mean = |f: &dyn Fn(&RegionScore) -> f64| sum(&column().map(f).collect::<Vec<f64>>()) / n;
            RegionSummary {
                name: region.name.clone(),
                images: per_image.len(),
                mean_mass_share: mean(&|s| s.mass_share),
                mean_ratio: mean(&|s| s.ratio),
                hit_rate: mean(&|s| f64::from(u8::from(s.hit))),
                mean_top_iou: mean(&|s| s.top_iou),
                under_threshold: column().filter(|s| s.ratio < ratio_threshold).count(),
            }
        })
        .collect())
}
