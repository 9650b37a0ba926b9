//! `scipy.interpolate.griddata` on an integer pixel grid: the known pixels
//! are triangulated (Delaunay, via `spade`) and every unknown pixel gets the
//! barycentric interpolation of its triangle's corners (`linear`) or the
//! value of the nearest known pixel (`nearest`).
//!
//! Pixels are located by rasterising the triangles with exact integer edge
//! tests, not by a point-location walk per pixel: every unknown pixel lies in
//! (or on the edge of) one of them, since the four corners are always known.

use spade::{DelaunayTriangulation, Point2, Triangulation};

use crate::error::{Result, SaliencyError};

/// Interpolation method of [`create_blurred_image`](super::create_blurred_image),
/// as `griddata(method=...)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Interpolation {
    /// Piecewise linear over the Delaunay triangulation of the known pixels
    /// (the reference's default, recommended).
    #[default]
    Linear,
    /// The value of the nearest known pixel.
    Nearest,
}

/// Fills the unknown pixels (`known[p] == false`) of a row-major
/// `height x width x channels` image in `values`, in place. `fill` is the
/// value per channel for a pixel outside the known pixels' hull (none is,
/// when the corners are known). Needs at least three known pixels that are
/// not on one line.
pub(crate) fn griddata(
    values: &mut [f64],
    known: &[bool],
    (height, width, channels): (usize, usize, usize),
    method: Interpolation,
    fill: &[f64],
) -> Result<()> {
    let points: Vec<Point2<f64>> = known
        .iter()
        .enumerate()
        .filter(|&(_, &k)| k)
        .map(|(p, _)| Point2::new((p / width) as f64, (p % width) as f64))
        .collect();
    let n_points = points.len();
    // `bulk_load_stable` keeps the input order, so vertex index k is the
    // k-th known pixel.
    let tri = DelaunayTriangulation::<Point2<f64>>::bulk_load_stable(points)
        .map_err(|_| SaliencyError::param("pixel_mask", n_points, "the known pixels cannot be triangulated"))?;
    if tri.num_inner_faces() == 0 {
        return Err(SaliencyError::param(
            "pixel_mask",
            n_points,
            "needs at least three known pixels that are not on one line (an image of at least 2 x 2)",
        ));
    }
    let pixel = |pos: Point2<f64>| -> (i64, i64) { (pos.x as i64, pos.y as i64) };
    let mut filled = known.to_vec();
    match method {
        Interpolation::Linear => {
            for face in tri.inner_faces() {
                let corners = face.vertices().map(|v| pixel(v.position()));
                rasterise(values, &mut filled, (height, width, channels), corners);
            }
        }
        Interpolation::Nearest => {
            for p in 0..known.len() {
                if filled.get(p).copied().unwrap_or(true) {
                    continue;
                }
                let here = Point2::new((p / width) as f64, (p % width) as f64);
                if let Some(v) = tri.nearest_neighbor(here) {
                    let (r, c) = pixel(v.position());
                    let src = (r as usize * width + c as usize) * channels;
                    for k in 0..channels {
                        if let Some(&v) = values.get(src + k)
                            && let Some(d) = values.get_mut(p * channels + k)
                        {
                            *d = v;
                        }
                    }
                    if let Some(f) = filled.get_mut(p) {
                        *f = true;
                    }
                }
            }
        }
    }
    // Outside the hull: the mean colour, as `griddata(fill_value=...)`.
    for (p, _) in filled.iter().enumerate().filter(|&(_, &f)| !f) {
        if let Some(dst) = values.get_mut(p * channels..(p + 1) * channels)
            && dst.len() == fill.len()
        {
            dst.copy_from_slice(fill);
        }
    }
    Ok(())
}

/// Twice the signed area of (a, b, p): positive when p is left of a -> b.
#[inline]
fn cross(a: (i64, i64), b: (i64, i64), p: (i64, i64)) -> i64 {
    (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0)
}

/// The columns `c` of row `r` with `cross(a, b, (r, c)) >= 0`, as an
/// inclusive range clipped to `lo..=hi` (empty when `lo > hi`). The edge
/// function is `B * c + K` with `B = b.0 - a.0`.
#[inline]
fn edge_span(a: (i64, i64), b: (i64, i64), r: i64, (lo, hi): (i64, i64)) -> (i64, i64) {
    let coef = b.0 - a.0;
    let k = -coef * a.1 - (b.1 - a.1) * (r - a.0);
    match coef.signum() {
        // c >= ceil(-k / coef)
        1 => (lo.max(-k.div_euclid(coef)), hi),
        // c <= floor(k / -coef)
        -1 => (lo, hi.min(k.div_euclid(-coef))),
        _ if k >= 0 => (lo, hi),
        _ => (1, 0),
    }
}

/// Interpolates every unfilled pixel inside or on the edge of the triangle,
/// row by row over the exact span of columns inside it.
fn rasterise(
    values: &mut [f64],
    filled: &mut [bool],
    (height, width, channels): (usize, usize, usize),
    [a, b, c]: [(i64, i64); 3],
) {
    let area = cross(a, b, c);
    if area == 0 {
        return;
    }
    // Orient counter-clockwise so that inside means all edge tests >= 0.
    let (b, c, area) = if area < 0 { (c, b, -area) } else { (b, c, area) };
    let inv = 1.0 / area as f64;
    let (rmin, rmax) = (
        a.0.min(b.0).min(c.0).max(0),
        a.0.max(b.0).max(c.0).min(height as i64 - 1),
    );
    let bbox = (
        a.1.min(b.1).min(c.1).max(0),
        a.1.max(b.1).max(c.1).min(width as i64 - 1),
    );
    let idx = |(r, col): (i64, i64)| (r as usize * width + col as usize) * channels;
    let (ia, ib, ic) = (idx(a), idx(b), idx(c));
    for r in rmin..=rmax {
        let span = edge_span(a, b, r, edge_span(b, c, r, edge_span(c, a, r, bbox)));
        for col in span.0..=span.1 {
            let p = r as usize * width + col as usize;
            if filled.get(p).copied().unwrap_or(true) {
                continue;
            }
            let q = (r, col);
            // Barycentric weights, exact in integers up to the division.
            let wa = cross(b, c, q);
            let wb = cross(c, a, q);
            let wc = cross(a, b, q);
            if wa < 0 || wb < 0 || wc < 0 {
                continue;
            }
            let (la, lb, lc) = (wa as f64 * inv, wb as f64 * inv, wc as f64 * inv);
            for k in 0..channels {
                let v = |i: usize| values.get(i + k).copied().unwrap_or(0.0);
                let interpolated = la * v(ia) + lb * v(ib) + lc * v(ic);
                if let Some(d) = values.get_mut(p * channels + k) {
                    *d = interpolated;
                }
            }
            if let Some(f) = filled.get_mut(p) {
                *f = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row spans hold exactly the pixels whose three edge tests are >= 0.
    #[test]
    fn spans_match_brute_force() {
        let mut state = 12345_u64;
        let mut next = |m: i64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % m as u64) as i64
        };
        for _ in 0..500 {
            let [a, b, c] = [(next(20), next(20)), (next(20), next(20)), (next(20), next(20))];
            let (b, c) = if cross(a, b, c) < 0 { (c, b) } else { (b, c) };
            for r in -1..21 {
                let span = edge_span(a, b, r, edge_span(b, c, r, edge_span(c, a, r, (0, 19))));
                for col in 0..20 {
                    let q = (r, col);
                    let inside = cross(a, b, q) >= 0 && cross(b, c, q) >= 0 && cross(c, a, q) >= 0;
                    assert_eq!(inside, (span.0..=span.1).contains(&col), "{a:?} {b:?} {c:?} at {q:?}");
                }
            }
        }
    }

    #[test]
    fn linear_interpolation_is_exact_on_a_plane() {
        // v = 2 r + 3 c + 1 is reproduced exactly by any triangulation.
        let (h, w) = (9, 11);
        let plane = |p: usize| 2.0 * (p / w) as f64 + 3.0 * (p % w) as f64 + 1.0;
        let corners = [0, w - 1, (h - 1) * w, h * w - 1];
        let known: Vec<bool> = (0..h * w)
            .map(|p| p % 7 == 0 || p % 13 == 5 || corners.contains(&p))
            .collect();
        let mut values: Vec<f64> = (0..h * w).map(|p| if known[p] { plane(p) } else { -1.0 }).collect();
        griddata(&mut values, &known, (h, w, 1), Interpolation::Linear, &[0.0]).unwrap();
        for (p, v) in values.iter().enumerate() {
            assert!((v - plane(p)).abs() < 1e-12, "pixel {p}: {v} vs {}", plane(p));
        }
    }
}
