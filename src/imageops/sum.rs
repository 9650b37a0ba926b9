//! NumPy's pairwise summation of a contiguous 1-D array, bit for bit:
//! `numpy.sum`, `numpy.mean` and the summation routine beneath them.
//!
//! NumPy adds floats by pairwise summation: blocks of at most 128 values are
//! summed with eight interleaved accumulators, longer runs are split in two
//! (at a multiple of eight) and the halves added. Reproducing the order
//! exactly makes means over the same pixels identical to the reference's, so
//! comparisons between them (XRAI's ranking) come out the same.
//!
//! The routine starts short runs from -0.0, so that summing only -0.0 values
//! gives -0.0; a reduction (`numpy.sum`, `numpy.add.reduce`) then adds the
//! result to its identity +0.0. The two start values are the two entry
//! points: [`sum`] starts from +0.0, [`pairwise_sum`] from -0.0. They differ
//! only in the sign of a zero sum of -0.0 values.

use crate::float::Float;

/// Values per leaf of the pairwise recursion (NumPy's `PW_BLOCKSIZE`).
const BLOCK: usize = 128;

/// The sum of `values` exactly as `numpy.sum` computes it for a contiguous
/// 1-D array of the same float type: the pairwise sum added to the start
/// value +0.0 (so +0.0 for an empty slice or for -0.0 values).
///
/// ```
/// use saliency::imageops::sum;
/// assert_eq!(sum(&[1.0_f64, 2.0, 3.5]), 6.5);
/// ```
#[must_use = "the returned value is the only effect of this function"]
pub fn sum<F: Float>(values: &[F]) -> F {
    F::zero() + pairwise(values)
}

/// NumPy's pairwise summation routine itself (`pairwise_sum` in its C
/// source), which starts from -0.0: `numpy.add.reduce(values, initial=-0.0)`
/// for a contiguous `f64` array. It equals [`sum`] except that an empty
/// slice or -0.0 values give -0.0.
///
/// ```
/// use saliency::imageops::pairwise_sum;
/// assert_eq!(pairwise_sum(&[0.1; 10]), 1.0); // np.add.reduce(np.full(10, 0.1)) == 1.0
/// assert!(pairwise_sum(&[]).is_sign_negative());
/// ```
#[must_use = "the returned value is the only effect of this function"]
pub fn pairwise_sum(values: &[f64]) -> f64 {
    pairwise(values)
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
#[must_use = "the returned value is the only effect of this function"]
pub fn mean<F: Float>(values: &[F]) -> Option<F> {
    if values.is_empty() {
        None
    } else {
        Some(sum(values) / F::from_f64_lossy(values.len() as f64))
    }
}

/// NumPy's `pairwise_sum`: runs shorter than eight start from -0.0, longer
/// ones initialise the eight accumulators with their first eight values.
fn pairwise<F: Float>(a: &[F]) -> F {
    let n = a.len();
    if n < 8 {
        a.iter().fold(F::neg_zero(), |acc, &v| acc + v)
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

    #[test]
    fn pairwise_sum_matches_numpy() {
        // np.add.reduce(np.sin(np.arange(1001) * 0.37)) = 0.3168807003257472 (numpy 2.4)
        let a: Vec<f64> = (0..1001).map(|i| (f64::from(i) * 0.37).sin()).collect();
        assert_eq!(pairwise_sum(&a), 0.3168807003257472);
        assert_eq!(sum(&a), 0.3168807003257472);
        // A plain left-to-right sum differs in the last places, so the test can fail.
        assert_ne!(a.iter().sum::<f64>(), 0.3168807003257472);
    }

    #[test]
    fn start_values_are_numpys() {
        // numpy 2.4: np.sum(np.full(n, -0.0)) is 0.0 and
        // np.add.reduce(np.full(n, -0.0), initial=-0.0) is -0.0 for n in
        // 0, 1, 7 (one short run), 8, 20 (one block) and 200 (two halves).
        for n in [0, 1, 7, 8, 20, 200] {
            let zeros = vec![-0.0_f64; n];
            assert!(sum(&zeros).is_sign_positive(), "sum of {n} x -0.0");
            assert!(pairwise_sum(&zeros).is_sign_negative(), "pairwise_sum of {n} x -0.0");
            let zeros32 = vec![-0.0_f32; n];
            assert!(sum(&zeros32).is_sign_positive(), "f32 sum of {n} x -0.0");
        }
        // One +0.0 anywhere makes both +0.0.
        let mut mixed = vec![-0.0_f64; 20];
        mixed[13] = 0.0;
        assert!(pairwise_sum(&mixed).is_sign_positive());
    }
}
