//! One colour scale for several maps, so pictures of several images and
//! methods can be compared: scaled each to its own percentile, a weak map
//! looks as bright as a strong one.

use ndarray::{Array2, ArrayView2};

use crate::checks::check_finite;
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::{min_max, percentile};

/// A linear scale from `low` (0) to `high` (1), shared by several maps.
///
/// [`SharedScale::from_maps`] computes it once over all the maps to compare
/// (their pooled minimum and percentile, the rule of
/// [`grayscale`](super::grayscale) applied to all maps at once);
/// [`SharedScale::apply`] maps each into `[0, 1]` for a colour map, and
/// [`ColorBar`](super::ColorBar) draws the legend.
///
/// ```
/// use ndarray::array;
/// use saliency::visualize::SharedScale;
///
/// let strong = array![[0.0, 4.0], [2.0, 8.0]];
/// let weak = array![[0.0, 1.0], [0.5, 2.0]];
/// let scale = SharedScale::from_maps(&[strong.view(), weak.view()], 100.0)?;
/// assert_eq!((scale.low(), scale.high()), (0.0, 8.0));
/// // The weak map stays dim: its maximum is a quarter of the scale.
/// assert_eq!(scale.apply(weak.view())?[[1, 1]], 0.25);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedScale {
    low: f64,
    high: f64,
}

impl SharedScale {
    /// A scale from `low` to `high`.
    ///
    /// Errors unless both are finite and `high > low`.
    pub fn new(low: f64, high: f64) -> Result<Self> {
        if !(low.is_finite() && high.is_finite() && high > low) {
            return Err(SaliencyError::param(
                "high",
                high,
                "must be finite and greater than low",
            ));
        }
        Ok(SharedScale { low, high })
    }

    /// The scale of several maps (`H x W`, any sizes): `low` is their
    /// smallest value, `high` the `percentile`-th percentile (NumPy's linear
    /// rule) of all their values pooled, or their largest value where that
    /// percentile equals the smallest. Pass maps of saliency mass, such as
    /// [`metrics::saliency_energy`](crate::metrics::saliency_energy) of each
    /// mask (the channel sum of absolute values that
    /// [`grayscale`](super::grayscale) scales).
    ///
    /// Errors: no maps, an empty or non-finite map, a `percentile` outside
    /// `[0, 100]`, or maps that are all one constant (nothing to scale).
    pub fn from_maps<F: Float>(maps: &[ArrayView2<'_, F>], percentile_: f64) -> Result<Self> {
        if maps.is_empty() {
            return Err(SaliencyError::EmptyInput {
                what: "maps",
                shape: vec![0],
            });
        }
        let mut values: Vec<f64> = Vec::new();
        for map in maps {
            if map.is_empty() {
                return Err(SaliencyError::EmptyInput {
                    what: "map",
                    shape: map.shape().to_vec(),
                });
            }
            check_finite("map", &map.view().into_dyn())?;
            values.extend(map.iter().map(|v| v.as_f64()));
        }
        let (low, max) = min_max(values.iter().copied());
        let high = percentile(&mut values, percentile_)?;
        let high = if high > low { high } else { max };
        if high <= low {
            return Err(SaliencyError::param(
                "maps",
                low,
                "hold one constant value: a shared scale needs two different values",
            ));
        }
        Ok(SharedScale { low, high })
    }

    /// The value shown as 0 (the colour map's first colour).
    pub fn low(&self) -> f64 {
        self.low
    }

    /// The value shown as 1 (the colour map's last colour).
    pub fn high(&self) -> f64 {
        self.high
    }

    /// `(v - low) / (high - low)` clipped to `[0, 1]`, for
    /// [`apply_colormap`](super::apply_colormap).
    ///
    /// Errors on a non-finite value.
    pub fn apply<F: Float>(&self, map: ArrayView2<'_, F>) -> Result<Array2<f64>> {
        check_finite("map", &map.view().into_dyn())?;
        let span = self.high - self.low;
        Ok(map.mapv(|v| ((v.as_f64() - self.low) / span).clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn one_scale_over_all_maps() {
        // Pooled values [0, 1, 2, 3, 10, 20, 30, 40]: minimum 0; the 50th
        // percentile (NumPy, linear) at index 3.5 is 3 + (10 - 3) * 0.5 = 6.5.
        let a = array![[0.0, 1.0], [2.0, 3.0]];
        let b = array![[10.0, 20.0], [30.0, 40.0]];
        let scale = SharedScale::from_maps(&[a.view(), b.view()], 50.0).unwrap();
        assert_eq!((scale.low(), scale.high()), (0.0, 6.5));
        assert_eq!(scale.apply(a.view()).unwrap()[[1, 1]], 3.0 / 6.5);
        assert_eq!(scale.apply(b.view()).unwrap()[[0, 0]], 1.0);
        // Per-map scaling would have shown both maps' maxima alike; here the
        // weak map stays under half.
        assert!(scale.apply(a.view()).unwrap().iter().all(|&v| v < 0.5));
    }

    #[test]
    fn degenerate_percentile_falls_back_to_the_maximum() {
        // Mostly zeros: the 50th percentile is the minimum, so the maximum is used.
        let a = array![[0.0, 0.0], [0.0, 4.0]];
        let scale = SharedScale::from_maps(&[a.view()], 50.0).unwrap();
        assert_eq!(scale.high(), 4.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let c = array![[1.0, 1.0]];
        assert!(SharedScale::from_maps(&[c.view(), c.view()], 99.0).is_err());
        assert!(SharedScale::from_maps::<f64>(&[], 99.0).is_err());
        assert!(SharedScale::from_maps(&[array![[0.0, f64::NAN]].view()], 99.0).is_err());
        assert!(SharedScale::from_maps(&[array![[0.0, 1.0]].view()], 101.0).is_err());
        assert!(SharedScale::new(1.0, 1.0).is_err());
        assert!(SharedScale::new(0.0, f64::INFINITY).is_err());
        let scale = SharedScale::new(0.0, 2.0).unwrap();
        assert!(scale.apply(array![[f64::NAN]].view()).is_err());
        assert_eq!(
            scale.apply(array![[-1.0, 1.0, 3.0]].view()).unwrap(),
            array![[0.0, 0.5, 1.0]]
        );
    }
}
