//! Judging saliency maps.
//!
//! In the core (no feature needed):
//!
//! - [`regions`]: where a map points, against known regions (the share of
//!   saliency mass per region, that share over the region's area share, the
//!   pointing game and the top-k % overlap), per image and over many images.
//! - [`agreement`]: how far two maps agree (Spearman rank correlation and
//!   top-k % overlap), and a matrix of both over several maps.
//! - [`curves`]: the deletion and insertion curves of
//!   [RISE](https://arxiv.org/abs/1806.07421) and their areas.
//! - ROAD, remove and debias ([Rong et al. 2022](https://arxiv.org/abs/2202.00449)),
//!   as pytorch-grad-cam 1.5.7 computes it: [`Road`], [`noisy_linear_impute`].
//! - Captum 0.9's `infidelity` and `sensitivity_max`: [`Infidelity`],
//!   [`SensitivityMax`].
//!
//! With the feature `metrics`: the Performance Information Curves (Softmax
//! Information Curve, SIC, and Accuracy Information Curve, AIC) of
//! [XRAI: Better Attributions Through Regions](https://arxiv.org/abs/1906.02825),
//! as `saliency.metrics` of the reference computes them.
//!
//! The PIC curve of one image reveals the most salient pixels of a saliency
//! map step by step in a blurred version of the image, and plots the model's
//! normalized prediction against the normalized information (the lossless
//! WebP size) of each partly revealed image. A better saliency map reaches a
//! high prediction with less information: a larger area under the curve.
//!
//! Parity with the reference: the blurred images match SciPy's
//! `griddata(method="linear")` wherever the Delaunay triangulation of the kept
//! pixels is unique; on integer grids it often is not (co-circular pixels),
//! and then Qhull and `spade` may pick different triangles. The WebP sizes
//! come from libwebp encoding as Pillow does (see `estimate_image_entropy`).

pub mod agreement;
pub mod curves;
pub mod regions;

#[cfg(feature = "metrics")]
mod griddata;
#[cfg(feature = "metrics")]
mod libwebp;
#[cfg(feature = "metrics")]
mod pic;
mod road;
mod robustness;

pub use agreement::{Agreement, agreement_matrix, spearman, top_percent_iou};
pub use curves::{CurveBaseline, CurveKind, CurveResult, PerturbationCurve};
pub use regions::{Energy, RegionScore, RegionScoring, RegionSummary, saliency_energy, summarize_regions};

#[cfg(feature = "metrics")]
pub use griddata::Interpolation;
#[cfg(feature = "metrics")]
pub use pic::{
    AggregateMetricResult, Aggregation, DEFAULT_THRESHOLDS, PicMetric, PicMetricResult, Pixel,
    aggregate_individual_pic_results, compute_pic_metric, create_blurred_image, estimate_image_entropy,
    estimate_image_entropy_fast, generate_random_mask,
};
pub use road::{ROAD_PERCENTILES, Road, RoadOrder, RoadResult, noisy_linear_impute};
pub use robustness::{Infidelity, SensitivityMax};
