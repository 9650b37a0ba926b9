//! The trapezoidal rule as NumPy computes it.

use super::sum::sum;

/// `numpy.trapz(y, x)` (`numpy.trapezoid` since NumPy 2): the sum of
/// `(x[i+1] - x[i]) * (y[i+1] + y[i]) / 2` in NumPy's order of operations,
/// summed as `numpy.sum` does (see [`sum`]). Fewer than two points, or
/// lengths that differ, give 0.
///
/// ```
/// use saliency::imageops::trapz;
/// assert_eq!(trapz(&[0.0, 1.0, 1.0], &[0.0, 0.5, 1.0]), 0.75);
/// ```
#[must_use = "the returned value is the only effect of this function"]
pub fn trapz(y: &[f64], x: &[f64]) -> f64 {
    if y.len() != x.len() || y.len() < 2 {
        return 0.0;
    }
    let terms: Vec<f64> = x
        .windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| match (xs, ys) {
            ([x0, x1], [y0, y1]) => (x1 - x0) * (y1 + y0) / 2.0,
            _ => 0.0,
        })
        .collect();
    sum(&terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapz_matches_numpy() {
        // np.trapezoid(np.sin(np.arange(1001) * 0.37), np.linspace(0, 1, 1001)) = 0.0006420131701060049
        let y: Vec<f64> = (0..1001).map(|i| (f64::from(i) * 0.37).sin()).collect();
        let x: Vec<f64> = (0..1001).map(|i| f64::from(i) * (1.0 / 1000.0)).collect();
        let expected = 0.0006420131701060049;
        assert!((trapz(&y, &x) - expected).abs() < 1e-15);
        assert_eq!(trapz(&[1.0], &[0.0]), 0.0);
        // np.trapezoid(np.full(n, -0.0), np.linspace(0, 1, n)) is 0.0 for n = 2, 9, 200.
        for n in [2, 9, 200] {
            let x: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
            assert!(trapz(&vec![-0.0; n], &x).is_sign_positive(), "{n} points");
        }
    }
}
