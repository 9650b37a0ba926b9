//! Order statistics as NumPy computes them.

use crate::error::{Result, SaliencyError};
use crate::float::Float;

fn check_nonempty<F>(values: &[F]) -> Result<()> {
    if values.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what: "values",
            shape: vec![0],
        });
    }
    Ok(())
}

fn check_finite<F: Float>(values: &[F]) -> Result<()> {
    match crate::model::find_non_finite(values) {
        None => Ok(()),
        Some((count, first_index)) => Err(SaliencyError::NonFiniteInput {
            what: "values",
            count,
            first_index,
        }),
    }
}

fn check_fraction(name: &'static str, q: f64, scale: f64) -> Result<()> {
    if !(q.is_finite() && (0.0..=scale).contains(&q)) {
        return Err(SaliencyError::param(
            name,
            q,
            if scale == 100.0 {
                "must be between 0 and 100"
            } else {
                "must be between 0 and 1"
            },
        ));
    }
    Ok(())
}

/// Moves the `k`-th smallest value to position `k` (`k < values.len()`;
/// values are finite, so the total order is the numeric one) and returns it.
pub(crate) fn select<F: Float>(values: &mut [F], k: usize) -> F {
    let (_, v, _) = values.select_nth_unstable_by(k, |a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    *v
}

/// `numpy.percentile(values, q)` with the default `method="linear"`, in
/// NumPy's arithmetic: the virtual index `(n - 1) * (q / 100)`, and the
/// interpolation `a + (b - a) * t` below `t = 0.5`, `b - (b - a) * (1 - t)`
/// from it. `values` is reordered (a selection, not a full sort: O(n)).
///
/// Errors on an empty slice, on non-finite values, and on `q` outside 0..=100.
///
/// ```
/// use saliency::imageops::percentile;
/// let mut v = vec![4.0, 1.0, 3.0, 2.0];
/// assert_eq!(percentile(&mut v, 50.0)?, 2.5); // numpy.percentile([4, 1, 3, 2], 50)
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn percentile<F: Float>(values: &mut [F], q: f64) -> Result<F> {
    check_fraction("percentile", q, 100.0)?;
    // NumPy divides first and then proceeds as `quantile`.
    linear(values, q / 100.0)
}

/// `numpy.quantile(values, q)` with the default `method="linear"`: the same
/// arithmetic as [`percentile`] with `q` given as a fraction (NumPy's
/// `percentile` divides by 100 first, which can differ from `q` by one unit
/// in the last place). `values` is reordered.
///
/// Errors on an empty slice, on non-finite values, and on `q` outside 0..=1.
///
/// ```
/// use saliency::imageops::quantile;
/// let mut v = vec![4.0, 1.0, 3.0, 2.0];
/// assert_eq!(quantile(&mut v, 0.75)?, 3.25); // numpy.quantile([4, 1, 3, 2], 0.75)
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn quantile<F: Float>(values: &mut [F], q: f64) -> Result<F> {
    check_fraction("quantile", q, 1.0)?;
    linear(values, q)
}

fn linear<F: Float>(values: &mut [F], q: f64) -> Result<F> {
    check_nonempty(values)?;
    check_finite(values)?;
    let n = values.len();
    let virtual_index = (n - 1) as f64 * q;
    if virtual_index >= (n - 1) as f64 {
        return Ok(select(values, n - 1));
    }
    let prev = virtual_index.floor() as usize;
    let a = select(values, prev);
    // After selection everything right of `prev` is >= a; the next order
    // statistic is their minimum.
    let b = values[prev + 1..].iter().copied().fold(F::infinity(), F::min);
    let t = virtual_index - prev as f64;
    let (a, b) = (a.as_f64(), b.as_f64());
    let diff = b - a;
    let v = if !diff.is_finite() {
        // `b - a` overflows only when a and b have opposite signs near the
        // ends of the range, where NumPy returns NaN (`inf * 0`) or an
        // infinity. The convex combination cannot overflow then, and stays
        // in [a, b].
        a * (1.0 - t) + b * t
    } else if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    };
    Ok(F::from_f64_lossy(v))
}

/// `numpy.quantile(values, q, method="lower")`: the value at index
/// `floor((n - 1) * q)` of the sorted values. `values` is reordered.
///
/// Errors on an empty slice, on non-finite values, and on `q` outside 0..=1.
pub fn quantile_lower<F: Float>(values: &mut [F], q: f64) -> Result<F> {
    check_fraction("quantile", q, 1.0)?;
    check_nonempty(values)?;
    check_finite(values)?;
    let k = ((values.len() - 1) as f64 * q).floor() as usize;
    Ok(select(values, k.min(values.len() - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_across_the_whole_range_stays_finite() {
        // b - a = f64::MAX + 1e300 overflows; the result must lie in [a, b].
        let mut v = vec![-1e300, f64::MAX];
        assert_eq!(percentile(&mut v, 0.0).unwrap(), -1e300);
        assert_eq!(percentile(&mut v, 100.0).unwrap(), f64::MAX);
        let mid = percentile(&mut v, 50.0).unwrap();
        // 0.5 * MAX - 0.5e300, exactly representable up to rounding.
        assert!((mid - (0.5 * f64::MAX - 0.5e300)).abs() <= 1e293, "{mid}");
        let mut v = vec![f64::MIN, f64::MAX];
        assert_eq!(percentile(&mut v, 50.0).unwrap(), 0.0);
    }

    #[test]
    fn percentile_matches_numpy_on_small_cases() {
        // Values from numpy 2.4: np.percentile([...], q).
        let mut v = vec![3.0_f64, 1.0, 2.0];
        assert_eq!(percentile(&mut v, 0.0).unwrap(), 1.0);
        assert_eq!(percentile(&mut v, 100.0).unwrap(), 3.0);
        assert_eq!(percentile(&mut v, 25.0).unwrap(), 1.5);
        let mut v: Vec<f64> = (0..10).map(|i| f64::from(i * i)).collect();
        // np.percentile(np.arange(10)**2, 99) = 79.47
        assert!((percentile(&mut v, 99.0).unwrap() - 79.47).abs() < 1e-12);
        // np.percentile([5.0], 37) = 5.0
        assert_eq!(percentile(&mut [5.0_f64], 37.0).unwrap(), 5.0);
    }

    #[test]
    fn quantile_matches_numpy() {
        // np.quantile(np.arange(10.)**2, 0.99) = 79.47; np.quantile([2., 7.], 0.3) = 3.5
        let mut v: Vec<f64> = (0..10).map(|i| f64::from(i * i)).collect();
        assert!((quantile(&mut v, 0.99).unwrap() - 79.47).abs() < 1e-12);
        assert_eq!(quantile(&mut [7.0_f64, 2.0], 0.3).unwrap(), 3.5);
        assert!(matches!(
            quantile(&mut [1.0_f64], 1.5),
            Err(SaliencyError::InvalidParameter { .. })
        ));
    }

    #[test]
    fn quantile_lower_matches_numpy() {
        // np.quantile(np.arange(10.), 0.25, method="lower") = 2.0 (index floor(2.25))
        let mut v: Vec<f64> = (0..10).rev().map(f64::from).collect();
        assert_eq!(quantile_lower(&mut v, 0.25).unwrap(), 2.0);
        assert_eq!(quantile_lower(&mut v, 1.0).unwrap(), 9.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            percentile::<f64>(&mut [], 50.0),
            Err(SaliencyError::EmptyInput { .. })
        ));
        assert!(matches!(
            percentile(&mut [1.0_f64], 100.5),
            Err(SaliencyError::InvalidParameter { .. })
        ));
        assert!(matches!(
            percentile(&mut [1.0_f64], -0.1),
            Err(SaliencyError::InvalidParameter { .. })
        ));
        assert!(matches!(
            percentile(&mut [1.0_f64], f64::NAN),
            Err(SaliencyError::InvalidParameter { .. })
        ));
        assert!(matches!(
            percentile(&mut [1.0, f64::NAN], 5.0),
            Err(SaliencyError::NonFiniteInput { .. })
        ));
        assert!(matches!(
            quantile_lower(&mut [1.0_f64], 1.5),
            Err(SaliencyError::InvalidParameter { .. })
        ));
    }
}
