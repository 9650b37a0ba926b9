//! Sums and the trapezoidal rule as NumPy computes them.

/// `numpy.add.reduce` of a contiguous `f64` array: NumPy's pairwise summation
/// (eight running sums over blocks of at most 128 values, halves above that),
/// bit for bit.
///
/// ```
/// use saliency::imageops::pairwise_sum;
/// assert_eq!(pairwise_sum(&[0.1; 10]), 1.0); // np.add.reduce(np.full(10, 0.1)) == 1.0
/// ```
pub fn pairwise_sum(values: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = values.len();
    if n < 8 {
        // NumPy starts from -0.0 so that a sum of -0.0 values stays -0.0.
        return values.iter().fold(-0.0, |acc, v| acc + v);
    }
    if n <= BLOCK {
        let mut r = [0.0_f64; 8];
        let full = n - n % 8;
        for block in values[..full].chunks_exact(8) {
            for (acc, v) in r.iter_mut().zip(block) {
                *acc += v;
            }
        }
        // The first block initialises the running sums (no leading zero).
        let [r0, r1, r2, r3, r4, r5, r6, r7] = r;
        let mut res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));
        for v in &values[full..] {
            res += v;
        }
        return res;
    }
    let mut half = n / 2;
    half -= half % 8;
    let (left, right) = values.split_at(half);
    pairwise_sum(left) + pairwise_sum(right)
}

/// `numpy.trapz(y, x)` (`numpy.trapezoid` since NumPy 2): the sum of
/// `(x[i+1] - x[i]) * (y[i+1] + y[i]) / 2` in NumPy's order of operations and
/// summation. Fewer than two points, or lengths that differ, give 0.
///
/// ```
/// use saliency::imageops::trapz;
/// assert_eq!(trapz(&[0.0, 1.0, 1.0], &[0.0, 0.5, 1.0]), 0.75);
/// ```
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
    pairwise_sum(&terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_matches_numpy() {
        // np.add.reduce(np.sin(np.arange(1001) * 0.37)) = 0.3168807003257472 (numpy 2.4)
        let a: Vec<f64> = (0..1001).map(|i| (f64::from(i) * 0.37).sin()).collect();
        assert_eq!(pairwise_sum(&a), 0.3168807003257472);
        // A plain left-to-right sum differs in the last places, so the test can fail.
        assert_ne!(a.iter().sum::<f64>(), 0.3168807003257472);
    }

    #[test]
    fn trapz_matches_numpy() {
        // np.trapezoid(np.sin(np.arange(1001) * 0.37), np.linspace(0, 1, 1001)) = 0.0006420131701060049
        let y: Vec<f64> = (0..1001).map(|i| (f64::from(i) * 0.37).sin()).collect();
        let x: Vec<f64> = (0..1001).map(|i| f64::from(i) * (1.0 / 1000.0)).collect();
        let expected = 0.0006420131701060049;
        assert!((trapz(&y, &x) - expected).abs() < 1e-15);
        assert_eq!(trapz(&[1.0], &[0.0]), 0.0);
    }
}
