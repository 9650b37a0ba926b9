//! Resizing a 2-D map as PyTorch's `F.interpolate` and OpenCV's
//! `cv2.resize` do, without smoothing: bilinear with half-pixel centres
//! (`cv2.INTER_LINEAR`, `align_corners=False`), bilinear with the corners
//! aligned (`nn.UpsamplingBilinear2d`), and PyTorch's `nearest`.
//!
//! Each takes a row-major `h x w` plane and returns the `out_h x out_w`
//! plane, interpolating in `f64`.

use crate::float::Float;

/// Where one output coordinate samples its input axis: the lower index, the
/// upper index and the weight of the upper one.
type Tap = (usize, usize, f64);

/// Half-pixel source positions, clamped at both ends: `cv2.resize` with
/// `INTER_LINEAR` and `F.interpolate(mode="bilinear", align_corners=False)`
/// (without `antialias`) both sample this way.
fn half_pixel_taps(n_in: usize, n_out: usize) -> Vec<Tap> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|d| {
            let src = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
            let lo = (src.floor() as usize).min(n_in - 1);
            let hi = (lo + 1).min(n_in - 1);
            let t = if lo == hi { 0.0 } else { src - lo as f64 };
            (lo, hi, t)
        })
        .collect()
}

/// Corner-aligned source positions, `d * (n_in - 1) / (n_out - 1)`:
/// `nn.UpsamplingBilinear2d` (`align_corners=True`).
fn aligned_taps(n_in: usize, n_out: usize) -> Vec<Tap> {
    let scale = if n_out > 1 {
        (n_in - 1) as f64 / (n_out - 1) as f64
    } else {
        0.0
    };
    (0..n_out)
        .map(|d| {
            let src = d as f64 * scale;
            let lo = (src.floor() as usize).min(n_in - 1);
            let hi = (lo + 1).min(n_in - 1);
            let t = if lo == hi { 0.0 } else { src - lo as f64 };
            (lo, hi, t)
        })
        .collect()
}

fn bilinear<F: Float>(plane: &[F], w: usize, rows: &[Tap], cols: &[Tap]) -> Vec<F> {
    let at = |r: usize, c: usize| plane[r * w + c].as_f64();
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for &(r0, r1, ty) in rows {
        for &(c0, c1, tx) in cols {
            let top = at(r0, c0) * (1.0 - tx) + at(r0, c1) * tx;
            let bottom = at(r1, c0) * (1.0 - tx) + at(r1, c1) * tx;
            out.push(F::from_f64_lossy(top * (1.0 - ty) + bottom * ty));
        }
    }
    out
}

/// `cv2.resize(plane, (out_w, out_h))` (`INTER_LINEAR`), the same as
/// PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`: output
/// pixel `d` samples input position `(d + 0.5) * n_in / n_out - 0.5`,
/// clamped to the edge pixels. No smoothing when shrinking.
///
/// ```
/// use saliency::imageops::bilinear::resize_half_pixel;
/// let up = resize_half_pixel(&[0.0_f64, 1.0], 1, 2, 1, 4);
/// assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
/// ```
pub fn resize_half_pixel<F: Float>(plane: &[F], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<F> {
    if h == 0 || w == 0 {
        return vec![F::zero(); out_h * out_w];
    }
    bilinear(plane, w, &half_pixel_taps(h, out_h), &half_pixel_taps(w, out_w))
}

/// PyTorch's `nn.UpsamplingBilinear2d(size=(out_h, out_w))`
/// (`align_corners=True`): the corner pixels of input and output coincide.
///
/// ```
/// use saliency::imageops::bilinear::resize_align_corners;
/// let up = resize_align_corners(&[0.0_f64, 1.0], 1, 2, 1, 5);
/// assert_eq!(up, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
/// ```
pub fn resize_align_corners<F: Float>(plane: &[F], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<F> {
    if h == 0 || w == 0 {
        return vec![F::zero(); out_h * out_w];
    }
    bilinear(plane, w, &aligned_taps(h, out_h), &aligned_taps(w, out_w))
}

/// PyTorch's `F.interpolate(mode="nearest")`: output index `d` takes input
/// index `floor(d * (n_in / n_out))`, the ratio in `float32` as PyTorch
/// computes it (exactly `d / 2` when the output is twice the input).
///
/// ```
/// use saliency::imageops::bilinear::resize_nearest;
/// let up = resize_nearest(&[1.0_f32, 2.0, 3.0], 1, 3, 1, 7);
/// assert_eq!(up, vec![1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
/// ```
pub fn resize_nearest<F: Float>(plane: &[F], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<F> {
    if h == 0 || w == 0 {
        return vec![F::zero(); out_h * out_w];
    }
    let index = |n_in: usize, n_out: usize| -> Vec<usize> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|d| {
                let src = if n_out == 2 * n_in {
                    d >> 1
                } else {
                    (d as f32 * scale).floor() as usize
                };
                src.min(n_in - 1)
            })
            .collect()
    };
    let (rows, cols) = (index(h, out_h), index(w, out_w));
    let mut out = Vec::with_capacity(out_h * out_w);
    for &r in &rows {
        out.extend(cols.iter().map(|&c| plane[r * w + c]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_pixel_clamps_at_the_edges_and_keeps_a_same_size_plane() {
        // 2 -> 4: positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (past
        // the last pixel: its value).
        let p = [0.0_f64, 4.0, 8.0, 12.0];
        assert_eq!(resize_half_pixel(&p, 2, 2, 2, 2), p.to_vec());
        assert_eq!(resize_half_pixel(&[0.0_f64, 4.0], 1, 2, 1, 4), vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn nearest_follows_pytorch_for_a_non_integer_ratio() {
        // 4 -> 6: ratio 0.6667 in float32; floor(d * ratio) = 0 0 1 2 2 3.
        let p = [0.0_f32, 1.0, 2.0, 3.0];
        assert_eq!(resize_nearest(&p, 1, 4, 1, 6), vec![0.0, 0.0, 1.0, 2.0, 2.0, 3.0]);
    }
}
