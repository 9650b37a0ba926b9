//! The largest eigenvalue of a symmetric matrix and its eigenvector, by
//! cyclic Jacobi rotations: the first principal component behind Eigen-CAM.

/// The largest eigenvalue of the symmetric `n x n` matrix `a` (row-major;
/// only its values are read, the matrix is copied) and a unit eigenvector
/// for it, by cyclic Jacobi rotations to `f64` precision. The eigenvector's
/// sign is whatever the rotations leave; callers fix their own convention.
///
/// ```
/// use saliency::imageops::eigen::top_eigen_symmetric;
/// // [[2, 1], [1, 2]]: eigenvalues 3 and 1, the first along (1, 1) / sqrt(2).
/// let (value, vector) = top_eigen_symmetric(&[2.0, 1.0, 1.0, 2.0], 2);
/// assert!((value - 3.0).abs() < 1e-12);
/// assert!((vector[0].abs() - 0.5_f64.sqrt()).abs() < 1e-12);
/// assert!((vector[0] - vector[1]).abs() < 1e-12);
/// ```
pub fn top_eigen_symmetric(a: &[f64], n: usize) -> (f64, Vec<f64>) {
    if n == 0 || a.len() < n * n {
        return (0.0, Vec::new());
    }
    let mut m = a[..n * n].to_vec();
    // The accumulated rotations: column k is the k-th eigenvector.
    let mut v = vec![0.0; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let scale = m.iter().fold(0.0_f64, |s, x| s.max(x.abs()));
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j] * m[i * n + j])
            .sum();
        if off.sqrt() <= 1e-15 * scale || scale == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                // The rotation that zeroes m[p][q] (Golub and Van Loan 8.4.2).
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let top = (0..n).fold(0, |best, k| if m[k * n + k] > m[best * n + best] { k } else { best });
    (m[top * n + top], (0..n).map(|k| v[k * n + top]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_top_eigenpair_of_a_built_matrix() {
        // Q diag(5, 2, -1) Q^T with Q a rotation: the top pair is 5 and Q's
        // first column.
        let (c, s) = (0.6_f64, 0.8_f64);
        let q = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0];
        let d = [5.0, 2.0, -1.0];
        let mut a = [0.0; 9];
        for i in 0..3 {
            for j in 0..3 {
                a[i * 3 + j] = (0..3).map(|k| q[i * 3 + k] * d[k] * q[j * 3 + k]).sum();
            }
        }
        let (value, vector) = top_eigen_symmetric(&a, 3);
        assert!((value - 5.0).abs() < 1e-12);
        let dot: f64 = (0..3).map(|i| vector[i] * q[i * 3]).sum();
        assert!((dot.abs() - 1.0).abs() < 1e-12);
    }
}
