//! One-dimensional linear interpolation as NumPy computes it.

/// `numpy.interp(x, xp, fp)` for one point, in NumPy's arithmetic: `xp` must
/// be sorted ascending (ties allowed); the segment is the one after the last
/// `xp[j] <= x`; below `xp[0]` the result is `fp[0]`, from `xp[last]` on it is
/// `fp[last]`, and an exact hit `x == xp[j]` returns `fp[j]`. Empty input or
/// slices of different lengths give NaN (callers check their own input).
///
/// ```
/// use saliency::imageops::interp;
/// // np.interp(0.5, [0, 0.5, 0.5, 1], [0, 0.2, 0.7, 1]) = 0.7 (the last tie wins)
/// assert_eq!(interp(0.5, &[0.0, 0.5, 0.5, 1.0], &[0.0, 0.2, 0.7, 1.0]), 0.7);
/// assert_eq!(interp(0.25, &[0.0, 0.5, 1.0], &[0.0, 0.2, 1.0]), 0.1);
/// ```
#[must_use = "the returned value is the only effect of this function"]
pub fn interp(x: f64, xp: &[f64], fp: &[f64]) -> f64 {
    let (Some(&first), Some(&last)) = (fp.first(), fp.last()) else {
        return f64::NAN;
    };
    if xp.len() != fp.len() || x.is_nan() {
        return f64::NAN;
    }
    // Index of the first xp > x; the segment starts one before it.
    let upper = xp.partition_point(|&v| v <= x);
    if upper == 0 {
        return first;
    }
    let j = upper - 1;
    let (Some(&x0), Some(&y0)) = (xp.get(j), fp.get(j)) else {
        return last;
    };
    let (Some(&x1), Some(&y1)) = (xp.get(j + 1), fp.get(j + 1)) else {
        return last;
    };
    if x0 == x {
        return y0;
    }
    let slope = (y1 - y0) / (x1 - x0);
    let y = slope * (x - x0) + y0;
    if y.is_nan() {
        // NumPy retries from the other end of the segment.
        let y = slope * (x - x1) + y1;
        if y.is_nan() && y0 == y1 {
            return y0;
        }
        return y;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::interp;

    #[test]
    fn matches_numpy_interp() {
        // Values from numpy 2.4.
        let xp = [0.0, 0.5, 0.5, 1.0];
        let fp = [0.0, 0.2, 0.7, 1.0];
        assert_eq!(interp(0.5, &xp, &fp), 0.7);
        assert_eq!(interp(0.25, &xp, &fp), 0.1);
        // np.interp(0.0, [0, 0, 1], [0, 0.3, 1]) = 0.3; np.interp(1.0, [0, 1, 1], [0, 0.3, 1]) = 1.0
        assert_eq!(interp(0.0, &[0.0, 0.0, 1.0], &[0.0, 0.3, 1.0]), 0.3);
        assert_eq!(interp(1.0, &[0.0, 1.0, 1.0], &[0.0, 0.3, 1.0]), 1.0);
        // Outside the range: the end values.
        assert_eq!(interp(-1.0, &[0.0, 1.0], &[2.0, 3.0]), 2.0);
        assert_eq!(interp(2.0, &[0.0, 1.0], &[2.0, 3.0]), 3.0);
        assert!(interp(0.5, &[], &[]).is_nan());
        assert!(interp(0.5, &[0.0], &[1.0, 2.0]).is_nan());
    }
}
