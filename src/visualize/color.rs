//! Colour maps, conversion of float images to 8-bit RGB, overlays and the
//! "most salient region" mask of the XRAI notebooks.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, AsArray, Axis, Dimension, Zip};

use crate::checks::{check_finite, image_view3};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::percentile;

/// A colour map from a scalar to RGB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColorMap {
    /// Black (0) to white (1).
    Gray,
    /// Black through purple and orange to pale yellow (0 to 1), perceptually
    /// ordered; for heatmaps.
    Inferno,
    /// Blue (-1) through white (0) to red (1); for signed maps such as
    /// [`diverging`](super::diverging)'s.
    BlueWhiteRed,
}

/// Matplotlib's `inferno` (CC0) sampled at 17 evenly spaced points; linear
/// interpolation between them stays within 7/255 of the full map.
const INFERNO: [[u8; 3]; 17] = [
    [0, 0, 4],
    [11, 7, 36],
    [33, 12, 74],
    [61, 9, 101],
    [87, 16, 110],
    [113, 25, 110],
    [138, 34, 106],
    [163, 44, 97],
    [188, 55, 84],
    [210, 70, 68],
    [228, 90, 49],
    [241, 115, 29],
    [249, 142, 9],
    [252, 172, 17],
    [249, 203, 53],
    [242, 234, 105],
    [252, 255, 164],
];

const BLUE: [f64; 3] = [33.0, 102.0, 172.0];
const RED: [f64; 3] = [178.0, 24.0, 43.0];

fn lerp_rgb(a: [f64; 3], b: [f64; 3], t: f64) -> [u8; 3] {
    let mix = |i: usize| (a[i] + (b[i] - a[i]) * t).round().clamp(0.0, 255.0) as u8;
    [mix(0), mix(1), mix(2)]
}

impl ColorMap {
    /// The colour of `v`, clipped to the map's domain: [0, 1] for `Gray` and
    /// `Inferno`, [-1, 1] for `BlueWhiteRed`. NaN maps to the colour of 0.
    #[must_use = "the returned value is the only effect of this function"]
    pub fn rgb(self, v: f64) -> [u8; 3] {
        let v = if v.is_nan() { 0.0 } else { v };
        match self {
            ColorMap::Gray => {
                let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                [g, g, g]
            }
            ColorMap::Inferno => {
                let x = v.clamp(0.0, 1.0) * (INFERNO.len() - 1) as f64;
                let i = (x.floor() as usize).min(INFERNO.len() - 2);
                let f = |k: usize| INFERNO[k].map(f64::from);
                lerp_rgb(f(i), f(i + 1), x - i as f64)
            }
            ColorMap::BlueWhiteRed => {
                let v = v.clamp(-1.0, 1.0);
                if v < 0.0 {
                    lerp_rgb([255.0; 3], BLUE, -v)
                } else {
                    lerp_rgb([255.0; 3], RED, v)
                }
            }
        }
    }
}

/// Colours a 2-D map (such as [`grayscale`](super::grayscale)'s output) into
/// an `H x W x 3` RGB image.
///
/// ```
/// use ndarray::array;
/// use saliency::visualize::{ColorMap, apply_colormap};
///
/// let rgb = apply_colormap(array![[0.0, 1.0]].view(), ColorMap::Gray)?;
/// assert_eq!(rgb[[0, 1, 0]], 255);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn apply_colormap<F: Float>(map: ArrayView2<'_, F>, colormap: ColorMap) -> Result<Array3<u8>> {
    check_finite("map", &map.into_dyn())?;
    let (h, w) = map.dim();
    let mut out = Array3::<u8>::zeros((h, w, 3));
    Zip::from(out.lanes_mut(Axis(2))).and(&map).for_each(|mut px, &v| {
        let c = colormap.rgb(v.as_f64());
        px.iter_mut().zip(c).for_each(|(p, c)| *p = c);
    });
    Ok(out)
}

/// Converts a float image (`H x W` or `H x W x C` with C = 1 or 3) to 8-bit
/// RGB, mapping `low` to 0 and `high` to 255 (values outside are clipped).
pub fn to_rgb8<'a, F: Float, D: Dimension>(image: impl AsArray<'a, F, D>, low: f64, high: f64) -> Result<Array3<u8>> {
    let image = image.into().into_dyn();
    if !(low.is_finite() && high.is_finite() && high > low) {
        return Err(SaliencyError::param(
            "high",
            high,
            "must be finite and greater than low",
        ));
    }
    check_finite("image", &image)?;
    let image3 = image_view3("image", &image)?;
    let (h, w, c) = (image3.shape()[0], image3.shape()[1], image3.shape()[2]);
    if c != 1 && c != 3 {
        return Err(SaliencyError::ShapeMismatch {
            what: "image channels",
            expected: vec![h, w, 3],
            actual: vec![h, w, c],
        });
    }
    let scale = |v: F| ((v.as_f64() - low) / (high - low) * 255.0).round().clamp(0.0, 255.0) as u8;
    Ok(Array3::from_shape_fn((h, w, 3), |(i, j, k)| {
        scale(image3[[i, j, if c == 1 { 0 } else { k }]])
    }))
}

/// Blends `heat` over `image` (both `H x W x 3` RGB): `(1 - alpha) * image + alpha * heat`.
pub fn overlay(image: ArrayView3<'_, u8>, heat: ArrayView3<'_, u8>, alpha: f64) -> Result<Array3<u8>> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(SaliencyError::param("alpha", alpha, "must be between 0 and 1"));
    }
    if image.shape() != heat.shape() {
        return Err(SaliencyError::ShapeMismatch {
            what: "heatmap",
            expected: image.shape().to_vec(),
            actual: heat.shape().to_vec(),
        });
    }
    Ok(Zip::from(&image)
        .and(&heat)
        .map_collect(|&a, &b| ((1.0 - alpha) * f64::from(a) + alpha * f64::from(b)).round() as u8))
}

/// The pixels whose value is above the `(100 - top_percent)`-th percentile of
/// `map`: the "most salient `top_percent` %" region the XRAI notebooks show
/// (`map > np.percentile(map, 100 - top_percent)`).
pub fn top_percent_mask<F: Float>(map: ArrayView2<'_, F>, top_percent: f64) -> Result<Array2<bool>> {
    if !(top_percent.is_finite() && (0.0..=100.0).contains(&top_percent)) {
        return Err(SaliencyError::param(
            "top_percent",
            top_percent,
            "must be between 0 and 100",
        ));
    }
    if map.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what: "map",
            shape: map.shape().to_vec(),
        });
    }
    check_finite("map", &map.into_dyn())?;
    let mut values: Vec<F> = map.iter().copied().collect();
    let threshold = percentile(&mut values, 100.0 - top_percent)?;
    Ok(map.mapv(|v| v > threshold))
}

/// `image` where `mask` is true, `fill` elsewhere (both `H x W`).
pub fn masked_image(image: ArrayView3<'_, u8>, mask: ArrayView2<'_, bool>, fill: [u8; 3]) -> Result<Array3<u8>> {
    if image.shape()[..2] != *mask.shape() || image.shape()[2] != 3 {
        return Err(SaliencyError::ShapeMismatch {
            what: "mask",
            expected: image.shape()[..2].to_vec(),
            actual: mask.shape().to_vec(),
        });
    }
    let mut out = image.to_owned();
    Zip::from(out.lanes_mut(Axis(2))).and(&mask).for_each(|mut px, &keep| {
        if !keep {
            px.iter_mut().zip(fill).for_each(|(p, f)| *p = f);
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn colormap_ends_and_middle() {
        assert_eq!(ColorMap::Inferno.rgb(0.0), INFERNO[0]);
        assert_eq!(ColorMap::Inferno.rgb(1.0), INFERNO[16]);
        assert_eq!(ColorMap::Inferno.rgb(0.5), INFERNO[8]);
        assert_eq!(ColorMap::BlueWhiteRed.rgb(0.0), [255, 255, 255]);
        assert_eq!(ColorMap::BlueWhiteRed.rgb(-2.0), [33, 102, 172]);
        assert_eq!(ColorMap::BlueWhiteRed.rgb(1.0), [178, 24, 43]);
        assert_eq!(ColorMap::Gray.rgb(f64::NAN), [0, 0, 0]);
    }

    #[test]
    fn top_percent_matches_numpy_rule() {
        // np.percentile(arange(10), 70) = 6.3: values 7, 8, 9 are the top 30%.
        let map = ndarray::Array2::from_shape_fn((2, 5), |(i, j)| (i * 5 + j) as f64);
        let mask = top_percent_mask(map.view(), 30.0).unwrap();
        assert_eq!(mask.iter().filter(|&&m| m).count(), 3);
        assert!(mask[[1, 2]] && !mask[[1, 1]]);
    }

    #[test]
    fn overlay_and_mask_shapes_are_checked() {
        let a = Array3::<u8>::zeros((2, 2, 3));
        let b = Array3::<u8>::from_elem((2, 2, 3), 200);
        assert_eq!(overlay(a.view(), b.view(), 0.5).unwrap()[[0, 0, 0]], 100);
        assert!(overlay(a.view(), Array3::<u8>::zeros((2, 3, 3)).view(), 0.5).is_err());
        assert!(overlay(a.view(), b.view(), 1.5).is_err());
        let m = array![[true, false], [false, true]];
        let out = masked_image(b.view(), m.view(), [0, 0, 0]).unwrap();
        assert_eq!(out[[0, 1, 0]], 0);
        assert_eq!(out[[1, 1, 2]], 200);
        assert!(masked_image(b.view(), array![[true]].view(), [0; 3]).is_err());
        assert!(to_rgb8(ndarray::Array1::<f64>::zeros(3).view().into_dyn(), 0.0, 1.0).is_err());
        assert!(to_rgb8(b.mapv(f64::from).view().into_dyn(), 1.0, 1.0).is_err());
    }
}
