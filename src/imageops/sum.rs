//! `numpy.sum` and `numpy.mean` of a 1-D array, bit for bit.
//!
//! NumPy adds floats by pairwise summation: blocks of at most 128 values are
//! summed with eight interleaved accumulators, longer runs are split in two
//! (at a multiple of eight) and the halves added. Reproducing the order
//! exactly makes means over the same pixels identical to the reference's, so
//! comparisons between them (XRAI's ranking) come out the same.

use crate::float::Float;

/// Values per leaf of the pairwise recursion (NumPy's `PW_BLOCKSIZE`).
const BLOCK: usize = 128;

/// The sum of `values` exactly as `numpy.sum` computes it for a contiguous
/// 1-D array of the same float type (0 for an empty slice).
///
/// ```
/// use saliency::imageops::sum;
/// assert_eq!(sum(&[1.0_f64, 2.0, 3.5]), 6.5);
/// ```
pub fn sum<F: Float>(values: &[F]) -> F {
    // NumPy starts the reduction from the identity 0 and adds the pairwise sum.
    F::zero() + pairwise(values)
}

/// The mean of `values` as `numpy.mean` computes it (the [`sum`] divided by
/// the count in the same float type); `None` for an empty slice, where NumPy
/// gives NaN and a warning.
///
/// ```
/// use saliency::imageops::mean;
/// assert_eq!(mean(&[1.0_f32, 2.0]), Some(1.5));
/// assert_eq!(mean::<f64>(&[]), None);
/// ```
pub fn mean<F: Float>(values: &[F]) -> Option<F> {
    if values.is_empty() {
        None
    } else {
        Some(sum(values) / F::from_f64_lossy(values.len() as f64))
    }
}

fn pairwise<F: Float>(a: &[F]) -> F {
    let n = a.len();
    if n < 8 {
        a.iter().fold(F::zero(), |acc, &v| acc + v)
    } else if n <= BLOCK {
        let mut r = [F::zero(); 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        for block in a[8..whole].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(block) {
                *acc += v;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[whole..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        let (left, right) = a.split_at(n2);
        pairwise(left) + pairwise(right)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_sums_are_sequential() {
        assert_eq!(sum::<f64>(&[]), 0.0);
        assert_eq!(sum(&[0.1_f64, 0.2, 0.3]), (0.1 + 0.2) + 0.3);
    }

    #[test]
    fn eight_accumulators_then_rest() {
        // 0.1 * k for k = 0..10: the first 8 go to separate accumulators.
        let v: Vec<f64> = (0..10).map(|k| 0.1 * k as f64).collect();
        let expected = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])) + v[8] + v[9];
        assert_eq!(sum(&v), expected);
    }
}
