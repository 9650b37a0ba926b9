//! Turning masks into pictures.
//!
//! [`grayscale`] and [`diverging`] take an `H x W x C` mask (or an `H x W`
//! one, read as one channel) and return an `H x W` map, as the reference's
//! `VisualizeImageGrayscale` and `VisualizeImageDiverging` do. The rest turns
//! maps into 8-bit RGB pictures: colour maps, overlays on the input image,
//! the "top k %" region XRAI's authors show, a labelled grid of pictures,
//! and (feature `image`) PNG files. To compare maps of several images or
//! methods, colour them on one [`SharedScale`] and add its [`ColorBar`] to
//! the panel ([`panel_with_colorbar`]).

mod color;
mod panel;
#[cfg(feature = "image")]
mod png;
mod scale;

pub use color::{ColorMap, apply_colormap, masked_image, overlay, to_rgb8, top_percent_mask};
pub use panel::{ColorBar, draw_text, panel, panel_with_colorbar};
#[cfg(feature = "image")]
pub use png::{read_image, save_png};
pub use scale::SharedScale;

use ndarray::{Array2, ArrayViewD, AsArray, Axis, Dimension, Ix2};

use crate::checks::{check_finite, finite_result, image_view3};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::{min_max, percentile};

/// Sums the channels (of the absolute values when `absolute`), checking rank,
/// emptiness and finiteness on the way.
fn channel_sum<F: Float>(mask: &ArrayViewD<'_, F>, absolute: bool, pct: f64) -> Result<Array2<F>> {
    if !(pct.is_finite() && (0.0..=100.0).contains(&pct)) {
        return Err(SaliencyError::param("percentile", pct, "must be between 0 and 100"));
    }
    let mask3 = image_view3("mask", mask)?;
    if mask.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what: "mask",
            shape: mask.shape().to_vec(),
        });
    }
    check_finite("mask", mask)?;
    // Channels added in order, as numpy's sum over a short last axis does.
    let sums = ndarray::Zip::from(mask3.lanes(Axis(2))).map_collect(|lane| {
        let mut s = F::zero();
        for &v in lane {
            s += if absolute { v.abs() } else { v };
        }
        s
    });
    // Values near the float limit overflow the sum.
    finite_result("mask's channel sum", sums.into_dyn())?
        .into_dimensionality::<Ix2>()
        .map_err(|_| SaliencyError::internal("the channel sum of a mask is not 2-D"))
}

fn percentile_of<F: Float>(map: &Array2<F>, pct: f64) -> Result<F> {
    let mut values: Vec<F> = map.iter().copied().collect();
    percentile(&mut values, pct)
}

/// `saliency.core.VisualizeImageGrayscale`: the sum of absolute values over
/// channels, scaled so that the minimum maps to 0 and the `percentile`-th
/// percentile (NumPy's linear interpolation) to 1, clipped to [0, 1].
///
/// Difference from the reference: where the span is zero (a constant map, or
/// a percentile that falls on the minimum) the reference divides by zero and
/// returns NaN at the minimum; here the minimum maps to 0 and anything above
/// it to 1, so a constant map gives zeros.
///
/// ```
/// use ndarray::Array3;
/// use saliency::visualize::grayscale;
///
/// let mask = Array3::from_shape_fn((2, 2, 3), |(i, j, c)| (i * 2 + j) as f64 * if c == 0 { 1.0 } else { -1.0 });
/// let img = grayscale(&mask, 100.0)?;
/// assert_eq!(img[[0, 0]], 0.0);
/// assert_eq!(img[[1, 1]], 1.0);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn grayscale<'a, F: Float, D: Dimension>(mask: impl AsArray<'a, F, D>, percentile: f64) -> Result<Array2<F>> {
    let map = channel_sum(&mask.into().into_dyn(), true, percentile)?;
    let vmax = percentile_of(&map, percentile)?;
    let (vmin, _) = min_max(map.iter().copied());
    let span = vmax - vmin;
    Ok(map.mapv(|v| {
        if span > F::zero() {
            ((v - vmin) / span).max(F::zero()).min(F::one())
        } else if v > vmin {
            F::one()
        } else {
            F::zero()
        }
    }))
}

/// A signed map in [-1, 1] where zero stays zero: the channel sum divided by
/// the absolute value of its `percentile`-th percentile, clipped to [-1, 1].
///
/// Difference from the reference: `saliency.core.VisualizeImageDiverging`
/// computes `clip((v + span) / (2 span), -1, 1)`, which maps zero to 0.5,
/// sends values below `-span` to negative numbers and divides by zero when the
/// span is zero. Here the result is `clip(v / span, -1, 1)` (equal to
/// `2 * reference - 1` wherever `|v| <= span`); a constant map gives zeros and
/// a zero span gives the sign of each value.
///
/// ```
/// use ndarray::array;
/// use saliency::visualize::diverging;
///
/// let mask = array![[-2.0, 0.0], [1.0, 4.0]];
/// let img = diverging(&mask, 50.0)?; // span = |0.5|
/// assert_eq!(img, array![[-1.0, 0.0], [1.0, 1.0]]);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn diverging<'a, F: Float, D: Dimension>(mask: impl AsArray<'a, F, D>, percentile: f64) -> Result<Array2<F>> {
    let map = channel_sum(&mask.into().into_dyn(), false, percentile)?;
    let (lo, hi) = min_max(map.iter().copied());
    if lo == hi {
        return Ok(Array2::zeros(map.raw_dim()));
    }
    let span = percentile_of(&map, percentile)?.abs();
    Ok(map.mapv(|v| {
        if span > F::zero() {
            (v / span).max(-F::one()).min(F::one())
        } else {
            v.signum() * F::from_f64_lossy(if v == F::zero() { 0.0 } else { 1.0 })
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, array};

    #[test]
    fn constant_maps_give_zeros() {
        let mask = Array3::<f64>::from_elem((3, 4, 3), 0.7);
        assert!(
            grayscale(mask.view().into_dyn(), 99.0)
                .unwrap()
                .iter()
                .all(|&v| v == 0.0)
        );
        assert!(
            diverging(mask.view().into_dyn(), 99.0)
                .unwrap()
                .iter()
                .all(|&v| v == 0.0)
        );
    }

    #[test]
    fn zero_span_gives_sign() {
        // The 0th percentile of [-1, 0, 0, 2] is -1, so span = 1; at 50 it is 0.
        let mask = array![[-1.0_f64, 0.0], [0.0, 2.0]];
        let d = diverging(mask.view().into_dyn(), 50.0).unwrap();
        assert_eq!(d, array![[-1.0, 0.0], [0.0, 1.0]]);
        // Grayscale at percentile 0 has vmax == vmin: the minimum stays 0, the rest 1.
        let g = grayscale(mask.view().into_dyn(), 0.0).unwrap();
        assert_eq!(g, array![[1.0, 0.0], [0.0, 1.0]]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let mask = Array3::<f32>::zeros((2, 2, 1));
        for p in [-1.0, 100.1, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                grayscale(mask.view().into_dyn(), p),
                Err(SaliencyError::InvalidParameter { .. })
            ));
            assert!(matches!(
                diverging(mask.view().into_dyn(), p),
                Err(SaliencyError::InvalidParameter { .. })
            ));
        }
        let empty = Array3::<f32>::zeros((0, 2, 3));
        assert!(matches!(
            grayscale(empty.view().into_dyn(), 99.0),
            Err(SaliencyError::EmptyInput { .. })
        ));
        let rank1 = ndarray::Array1::<f32>::zeros(4);
        assert!(matches!(
            grayscale(rank1.view().into_dyn(), 99.0),
            Err(SaliencyError::InvalidRank { .. })
        ));
        let mut nan = Array3::<f32>::zeros((2, 2, 1));
        nan[[1, 0, 0]] = f32::NAN;
        assert!(matches!(
            diverging(nan.view().into_dyn(), 99.0),
            Err(SaliencyError::NonFiniteInput { .. })
        ));
    }
}
