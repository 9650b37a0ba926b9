//! Gauss-Legendre quadrature on [0, 1], as Captum builds it from NumPy.

/// The `n` Gauss-Legendre nodes and weights rescaled to `[0, 1]`: the nodes
/// `0.5 * (1 + x_i)` and weights `0.5 * w_i` of `numpy.polynomial.legendre.leggauss(n)`,
/// ascending, the weights summing to 1. `n = 0` gives empty lists.
///
/// NumPy takes the roots from a companion matrix and polishes them with one
/// Newton step; here Newton's method on the three-term recurrence runs to
/// convergence, so the two agree to a few units in the last place.
///
/// ```
/// use saliency::imageops::gauss_legendre_unit;
/// let (x, w) = gauss_legendre_unit(2);
/// // numpy: 0.5 * (1 + leggauss(2)[0]) = [0.21132486540518713, 0.7886751345948129]
/// assert!((x[0] - 0.21132486540518713).abs() < 1e-15 && (w[1] - 0.5).abs() < 1e-15);
/// ```
#[must_use = "the returned nodes and weights are the only effect of this function"]
pub fn gauss_legendre_unit(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    let nf = n as f64;
    // The roots are symmetric about 0: compute the upper half, mirror it.
    for i in 0..n.div_ceil(2) {
        // Tricomi's first guess for the i-th largest root.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (nf + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            let (p, dp) = legendre_and_derivative(n, x);
            derivative = dp;
            let step = p / dp;
            x -= step;
            if step.abs() <= 1e-16 * x.abs().max(1.0) {
                break;
            }
        }
        let (_, dp) = legendre_and_derivative(n, x);
        derivative = if dp.is_finite() { dp } else { derivative };
        let w = 2.0 / ((1.0 - x * x) * derivative * derivative);
        // Ascending order: the i-th largest root goes to n - 1 - i.
        nodes[n - 1 - i] = 0.5 * (1.0 + x);
        nodes[i] = 0.5 * (1.0 - x);
        weights[n - 1 - i] = 0.5 * w;
        weights[i] = 0.5 * w;
    }
    if n % 2 == 1 {
        // The middle root is exactly 0.
        nodes[n / 2] = 0.5;
    }
    (nodes, weights)
}

/// `P_n(x)` and `P_n'(x)` by the three-term recurrence.
fn legendre_and_derivative(n: usize, x: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, x);
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let kf = k as f64;
        let p2 = ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf;
        p0 = p1;
        p1 = p2;
    }
    let nf = n as f64;
    (p1, nf * (x * p1 - p0) / (x * x - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_leggauss() {
        // python: 0.5 * (1 + leggauss(5)[0]), 0.5 * leggauss(5)[1] (numpy 2.4)
        let x5 = [
            0.04691007703066802,
            0.23076534494715845,
            0.5,
            0.7692346550528415,
            0.9530899229693319,
        ];
        let w5 = [
            0.11846344252809464,
            0.23931433524968315,
            0.28444444444444433,
            0.23931433524968315,
            0.11846344252809464,
        ];
        let x8 = [
            0.019855071751231912,
            0.10166676129318664,
            0.2372337950418355,
            0.4082826787521751,
            0.5917173212478248,
            0.7627662049581645,
            0.8983332387068134,
            0.9801449282487681,
        ];
        let w8 = [
            0.05061426814518853,
            0.11119051722668721,
            0.15685332293894344,
            0.18134189168918083,
            0.18134189168918083,
            0.15685332293894344,
            0.11119051722668721,
            0.05061426814518853,
        ];
        for (n, xs, ws) in [(5, &x5[..], &w5[..]), (8, &x8[..], &w8[..])] {
            let (x, w) = gauss_legendre_unit(n);
            for (a, b) in x.iter().zip(xs).chain(w.iter().zip(ws)) {
                assert!((a - b).abs() < 1e-15, "n = {n}: {a} vs {b}");
            }
        }
        assert_eq!(gauss_legendre_unit(1), (vec![0.5], vec![1.0]));
        assert_eq!(gauss_legendre_unit(0), (vec![], vec![]));
    }

    #[test]
    fn integrates_polynomials_of_degree_2n_minus_1_exactly() {
        // The integral of t^k over [0, 1] is 1 / (k + 1).
        for n in 1..40 {
            let (x, w) = gauss_legendre_unit(n);
            for k in 0..2 * n {
                let q: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(k as i32)).sum();
                assert!((q - 1.0 / (k as f64 + 1.0)).abs() < 1e-13, "n = {n}, k = {k}: {q}");
            }
        }
    }
}
