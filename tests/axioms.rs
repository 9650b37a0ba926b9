//! The axioms behind the path methods, on nonlinear models, with error
//! bounds derived from the quadrature rule each method uses (not tuned
//! tolerances):
//!
//! - Integrated Gradients is complete: its attributions sum to
//!   `f(x) - f(baseline)` up to the error of its sum over the path, and that
//!   error shrinks as the steps grow.
//! - Blur IG is complete against the most blurred image.
//! - Guided IG with `max_dist = 0` is integrated gradients on the straight
//!   line, with the left Riemann sum.

mod common;

use common::TanhNet;
use ndarray::{Array1, ArrayD, ArrayViewD, Axis};
use saliency::imageops::{BoundaryMode, gaussian_filter};
use saliency::{BlurIg, GuidedIg, IntegratedGradients, ModelOutputs, OutputKey, Saliency};

const EPS: f64 = f64::EPSILON;

/// A smooth scalar model with its gradient, evaluated one input at a time.
trait Model {
    fn value(&self, x: ArrayViewD<'_, f64>) -> f64;
    fn grad(&self, x: ArrayViewD<'_, f64>) -> ArrayD<f64>;
    /// A bound on `|phi'''(t)|` for `phi(t) = f(baseline + t delta)`,
    /// `t` in [0, 1].
    fn third_derivative_bound(&self, baseline: ArrayViewD<'_, f64>, delta: ArrayViewD<'_, f64>) -> f64;
    /// A bound on the magnitude of the sums the model and the method add
    /// up, `sum_i |df/dx_i| |delta_i| + |f|`, for the rounding allowance.
    fn magnitude(&self, x: ArrayViewD<'_, f64>, delta: ArrayViewD<'_, f64>) -> f64;
    /// The number of terms in the longest floating-point sum of one model
    /// evaluation.
    fn terms(&self) -> usize;
}

/// The largest value of `|tanh'''|` (at 0): `tanh''' = -2 (1 - T^2)(1 - 3 T^2)`
/// with `T = tanh z`, whose magnitude is at most 2.
const TANH3_MAX: f64 = 2.0;
/// The largest value of `|tanh''|`: `|-2 T (1 - T^2)|` peaks at
/// `T^2 = 1/3`, where it is `4 / (3 sqrt 3)`.
fn tanh2_max() -> f64 {
    4.0 / (3.0 * 3f64.sqrt())
}

impl TanhNet {
    /// `w_j . d` for every hidden unit `j`.
    fn hidden_directions(&self, d: ArrayViewD<'_, f64>) -> Array1<f64> {
        let flat = Array1::from_iter(d.iter().copied());
        self.w.dot(&flat)
    }
}

impl Model for TanhNet {
    fn value(&self, x: ArrayViewD<'_, f64>) -> f64 {
        self.scores(x.insert_axis(Axis(0)))[[0, 0]]
    }

    fn grad(&self, x: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        self.grads(x.insert_axis(Axis(0))).index_axis_move(Axis(0), 0)
    }

    /// `phi(t) = sum_j v_j tanh(z_j + t c_j)` with `c_j = w_j . delta`, so
    /// `phi''' = sum_j v_j c_j^3 tanh'''(.)`, at most
    /// `2 sum_j |v_j| |c_j|^3`.
    fn third_derivative_bound(&self, _: ArrayViewD<'_, f64>, delta: ArrayViewD<'_, f64>) -> f64 {
        let c = self.hidden_directions(delta);
        TANH3_MAX
            * self
                .v
                .iter()
                .zip(&c)
                .map(|(v, c)| v.abs() * c.abs().powi(3))
                .sum::<f64>()
    }

    /// `|df/dx_i| <= sum_j |v_j| |w_ji|` since `|tanh'| <= 1`; `|f| <= sum_j |v_j|`.
    fn magnitude(&self, _: ArrayViewD<'_, f64>, delta: ArrayViewD<'_, f64>) -> f64 {
        let abs_delta = Array1::from_iter(delta.iter().map(|d| d.abs()));
        let grad_bound = self.w.mapv(f64::abs).dot(&abs_delta);
        self.v.iter().zip(&grad_bound).map(|(v, g)| v.abs() * g).sum::<f64>() + self.v.mapv(f64::abs).sum()
    }

    fn terms(&self) -> usize {
        self.w.ncols() + self.w.nrows()
    }
}

/// `f(x) = ln sum_i exp(a_i x_i)`: the log-partition function of a softmax
/// classifier, smooth and coupling every feature.
struct LogSumExp {
    a: ArrayD<f64>,
}

impl LogSumExp {
    fn logits(&self, x: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        &self.a * &x
    }
}

impl Model for LogSumExp {
    fn value(&self, x: ArrayViewD<'_, f64>) -> f64 {
        let z = self.logits(x);
        let m = z.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        m + z.mapv(|v| (v - m).exp()).sum().ln()
    }

    /// `a_i softmax(a x)_i`.
    fn grad(&self, x: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        let z = self.logits(x);
        let m = z.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let e = z.mapv(|v| (v - m).exp());
        let total = e.sum();
        e / total * &self.a
    }

    /// `phi(t) = ln sum_i exp(p_i + t q_i)` with `q_i = a_i delta_i`: its
    /// derivatives are the cumulants of `q` under the softmax weights, so
    /// `phi'''` is the third central moment, at most `R Var(q) <= R^3 / 4`
    /// for `R = max q - min q` (Popoviciu's inequality).
    fn third_derivative_bound(&self, _: ArrayViewD<'_, f64>, delta: ArrayViewD<'_, f64>) -> f64 {
        let q = &self.a * &delta;
        let (lo, hi) = q.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
        (hi - lo).powi(3) / 4.0
    }

    /// `|df/dx_i| <= |a_i|`; `|f| <= max |a x| + ln n`.
    fn magnitude(&self, x: ArrayViewD<'_, f64>, delta: ArrayViewD<'_, f64>) -> f64 {
        let grads: f64 = self.a.iter().zip(delta.iter()).map(|(a, d)| (a * d).abs()).sum();
        let z = self.logits(x).mapv(f64::abs);
        grads + z.fold(0.0, |m: f64, &v| m.max(v)) + (self.a.len() as f64).ln()
    }

    fn terms(&self) -> usize {
        self.a.len()
    }
}

/// The model as the crate calls it: gradients of every input of a batch.
fn gradients_of<'a>(
    model: &'a dyn Model,
) -> impl FnMut(ArrayViewD<'_, f64>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f64>, saliency::BoxError> + 'a
{
    move |batch, _| {
        let mut grads = ArrayD::zeros(batch.raw_dim());
        for (mut g, x) in grads.outer_iter_mut().zip(batch.outer_iter()) {
            g.assign(&model.grad(x));
        }
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
    }
}

/// The rounding allowance for sums of `n` terms of total magnitude
/// `magnitude`: `|fl(sum) - sum| <= n eps sum |terms| / (1 - n eps)`, and
/// the comparisons add a handful of such sums; 4 covers them.
fn rounding(n: usize, magnitude: f64) -> f64 {
    4.0 * n as f64 * EPS * magnitude / (1.0 - n as f64 * EPS)
}

/// Integrated Gradients with `N` steps evaluates the gradient at
/// `t_k = k / (N - 1)`, `k = 0..N-1` (both ends, `numpy.linspace`) and
/// divides by `N`, so the attributions sum to `S_N = (1/N) sum_k phi'(t_k)`
/// with `phi(t) = f(b + t delta)`, while completeness asks for
/// `I = phi(1) - phi(0) = integral of phi'`.
///
/// With `h = 1 / (N - 1)` the trapezoidal rule is
/// `T = h (sum_k phi'(t_k) - (phi'(0) + phi'(1)) / 2)`, hence
/// `S_N = ((N - 1) / N) T + (phi'(0) + phi'(1)) / (2 N)` and
///
/// `S_N - I = ((N - 1) / N) (T - I) + E_1 / N`, `E_1 = (phi'(0) + phi'(1)) / 2 - I`.
///
/// The trapezoidal error is `|T - I| <= M h^2 / 12` with
/// `M = max |phi'''|` (the second derivative of the integrand `phi'`), so
///
/// `|S_N - I - E_1 / N| <= M / (12 N (N - 1))`, (1)
///
/// and since `E_1` is itself a one-interval trapezoidal error, `|E_1| <= M / 12`:
///
/// `|S_N - I| <= M / (12 (N - 1))`. (2)
///
/// The error therefore falls like `E_1 / N`: (1) pins it to that leading
/// term, (2) bounds it outright.
fn check_ig_completeness(label: &str, model: &dyn Model, x: &ArrayD<f64>, baseline: &ArrayD<f64>) {
    let delta = x - baseline;
    let m = model.third_derivative_bound(baseline.view(), delta.view());
    let exact = model.value(x.view()) - model.value(baseline.view());
    let phi1 = |at: &ArrayD<f64>| (model.grad(at.view()) * &delta).sum();
    let e1 = (phi1(baseline) + phi1(x)) / 2.0 - exact;
    let magnitude = model.magnitude(x.view(), delta.view()) + model.magnitude(baseline.view(), delta.view());
    let mut errors = Vec::new();
    for steps in [10, 100, 1000] {
        let ig = IntegratedGradients::new()
            .steps(steps)
            .batch_size(64)
            .baseline(baseline.clone());
        let attr = ig.get_mask(x.view(), &mut gradients_of(model)).unwrap();
        let err = attr.sum() - exact;
        let n = steps as f64;
        let slack = rounding(steps + x.len() + model.terms(), magnitude);
        let leading = err - e1 / n;
        let bound1 = m / (12.0 * n * (n - 1.0));
        let bound2 = m / (12.0 * (n - 1.0));
        println!(
            "axioms IG completeness {label}, {steps} steps: sum - (f(x) - f(b)) = {err:.3e}, \
             E_1/N = {:.3e}, bound (2) {bound2:.3e}, leftover {leading:.3e} <= (1) {bound1:.3e}",
            e1 / n
        );
        assert!(
            err.abs() <= bound2 + slack,
            "{label}, {steps} steps: |{err:e}| > {bound2:e}"
        );
        assert!(
            leading.abs() <= bound1 + slack,
            "{label}, {steps} steps: |error - E_1/N| = {leading:e} > {bound1:e}"
        );
        errors.push(err.abs());
    }
    // The model is nonlinear along the path, so there is an error to shrink.
    assert!(
        errors[0] > 1e3 * rounding(10 + x.len() + model.terms(), magnitude),
        "{label}: no error to shrink"
    );
    assert!(
        errors[0] > errors[1] && errors[1] > errors[2],
        "{label}: errors {errors:?} do not shrink"
    );
}

#[test]
fn integrated_gradients_is_complete_on_a_tanh_network() {
    let net = TanhNet::load("core");
    let x = common::fixture::<f64>("core", "x");
    check_ig_completeness("tanh network, zero baseline", &net, &x, &ArrayD::zeros(x.raw_dim()));
    let baseline = common::fixture::<f64>("core", "baseline");
    check_ig_completeness("tanh network, fixture baseline", &net, &x, &baseline);
}

#[test]
fn integrated_gradients_is_complete_on_log_sum_exp() {
    let x = common::fixture::<f64>("core", "x");
    let a = ArrayD::from_shape_fn(x.raw_dim(), |i| {
        3.0 * (((i[0] * 5 + i[1] * 3 + i[2] * 7) % 11) as f64 / 11.0 - 0.4)
    });
    let model = LogSumExp { a };
    let baseline = x.mapv(|v| 0.5 - 0.8 * v);
    check_ig_completeness("log-sum-exp", &model, &x, &baseline);
}

/// Blur IG with `n` steps uses sigmas `s_i = i max_sigma / n` and returns
/// `-sum_i (s_{i+1} - s_i) grad f(g_i) * (blur(x, s_i + h) - g_i) / h` with
/// `g_i = blur(x, s_i)` (`g_0 = x`) and `h = grad_step`: the gradients are
/// taken at `s_0 .. s_{n-1}`, the path ends at `g_n = blur(x, max_sigma)`.
///
/// With `h` equal to the sigma step (`max_sigma / n`, and values exact in
/// binary so that `s_i + h` is `s_{i+1}` to the bit) the difference is
/// `d_i = g_{i+1} - g_i` and the mask sums to `-sum_i grad f(g_i) . d_i`.
/// The steps telescope, `sum_i f(g_{i+1}) - f(g_i) = f(g_n) - f(x)`, so
/// exactly
///
/// `sum(mask) - (f(x) - f(g_n)) = sum_i R_i`, `R_i = f(g_{i+1}) - f(g_i) - grad f(g_i) . d_i`, (1)
///
/// which the test checks to rounding. By Taylor's theorem along the segment,
/// `R_i = phi_i''(tau) / 2` for some `tau` in [0, 1], where
/// `phi_i(t) = f(g_i + t d_i)`. For the tanh network
/// `phi_i'' = sum_j v_j tanh''(z_j(t)) c_j^2` with `c_j = w_j . d_i` and
/// `z_j(t)` the unit's pre-activation, linear in `t`; so
///
/// `|R_i| <= (1/2) sum_j |v_j| c_j^2 max |tanh''|` over `z_j`'s segment. (2)
///
/// The bound falls like `1 / n` (a sum of `n` squares of differences of
/// size `1 / n`); the test shows the error does too.
struct BlurIgCheck {
    /// `sum(mask) - (f(x) - f(g_n))`.
    error: f64,
    /// `sum_i R_i`, from the model's values and gradients along the path.
    remainders: f64,
    /// The bound (2) summed over the steps.
    bound: f64,
    /// The rounding allowance for (1).
    slack: f64,
    /// `f(x) - f(g_n)`.
    exact: f64,
}

/// `max |tanh''(z)|` for `z` between `a` and `b`. `|tanh''|` is even, rises
/// on `[0, z*]` and falls beyond, `z* = atanh(1 / sqrt 3)`; so the maximum is
/// at `+-z*` when the segment holds one, else at an end.
fn max_tanh2_between(a: f64, b: f64) -> f64 {
    let f = |z: f64| {
        let t = z.tanh();
        (2.0 * t * (1.0 - t * t)).abs()
    };
    let (lo, hi) = (a.min(b), a.max(b));
    let peak = (1.0 / 3f64.sqrt()).atanh();
    if (lo..=hi).contains(&peak) || (lo..=hi).contains(&-peak) {
        tanh2_max()
    } else {
        f(lo).max(f(hi))
    }
}

fn check_blur_ig(net: &TanhNet, x: &ArrayD<f64>, max_sigma: f64, steps: usize) -> BlurIgCheck {
    let step = max_sigma / steps as f64;
    let blur_ig = BlurIg::new()
        .max_sigma(max_sigma)
        .steps(steps)
        .grad_step(step)
        .batch_size(8);
    let mask = blur_ig.get_mask(x.view(), &mut gradients_of(net)).unwrap();
    let blur = |sigma: f64| gaussian_filter(x.view(), &[sigma, sigma, 0.0], BoundaryMode::Constant(0.0), 4.0).unwrap();
    let pre_activation = |g: &ArrayD<f64>| net.hidden_directions(g.view()) + &net.b;
    let most_blurred = blur(max_sigma);
    let exact = net.value(x.view()) - net.value(most_blurred.view());
    let (mut remainders, mut bound, mut magnitude) = (0.0, 0.0, net.value(x.view()).abs());
    let mut previous = x.clone();
    for i in 1..=steps {
        let next = blur(i as f64 * step);
        let d = &next - &previous;
        let grad = net.grad(previous.view());
        let along = (&grad * &d).sum();
        remainders += net.value(next.view()) - net.value(previous.view()) - along;
        magnitude += net.value(next.view()).abs() + (&grad * &d).mapv(f64::abs).sum();
        let c = net.hidden_directions(d.view());
        let (z0, z1) = (pre_activation(&previous), pre_activation(&next));
        for j in 0..c.len() {
            bound += 0.5 * net.v[j].abs() * c[j] * c[j] * max_tanh2_between(z0[j], z1[j]);
        }
        previous = next;
    }
    BlurIgCheck {
        error: mask.sum() - exact,
        remainders,
        bound,
        slack: rounding(steps + x.len() + net.terms(), magnitude),
        exact,
    }
}

#[test]
fn blur_ig_is_complete_against_the_most_blurred_image() {
    let net = TanhNet::load("blur_ig");
    let x = common::fixture::<f64>("blur_ig", "x");
    let max_sigma = 8.0;
    let mut errors = Vec::new();
    for steps in [16, 64, 256] {
        let c = check_blur_ig(&net, &x, max_sigma, steps);
        println!(
            "axioms Blur IG completeness, {steps} steps: f(x) - f(blurred) = {:.6}, sum - that = {:.3e}, \
             sum of Taylor remainders {:.3e} (difference {:.1e}), bound {:.3e}",
            c.exact,
            c.error,
            c.remainders,
            c.error - c.remainders,
            c.bound
        );
        assert!(
            (c.error - c.remainders).abs() <= c.slack,
            "{steps} steps: error {:e} is not the sum of the remainders {:e} (allowance {:e})",
            c.error,
            c.remainders,
            c.slack
        );
        assert!(
            c.error.abs() <= c.bound + c.slack,
            "{steps} steps: |{:e}| > {:e}",
            c.error,
            c.bound
        );
        errors.push(c.error.abs());
    }
    assert!(errors[0] > 1e-6, "no error to shrink: {errors:?}");
    assert!(
        errors[0] > errors[1] && errors[1] > errors[2],
        "errors {errors:?} do not shrink"
    );
}

/// With `max_dist = 0` every feature must stay at the step's alpha
/// `(k + 1) / N`: step `k` (`k = 0..N-1`) takes the gradient at the current
/// point `b + (k / N) delta`, moves every feature to `b + ((k + 1) / N)
/// delta` and adds the move times that gradient. Guided IG is then the left
/// Riemann sum on the straight line,
///
/// `GIG_N = (delta / N) * sum_{k=0}^{N-1} grad f(b + (k / N) delta)`,
///
/// not Integrated Gradients' rule (which takes `N` points including both
/// ends and divides by `N`). The same points are those of Integrated
/// Gradients with `N + 1` steps, `t_k = k / N`, `k = 0..N`, so
///
/// `N GIG_N = (N + 1) IG_{N+1} - grad f(x) * delta`.
///
/// Both relations are exact: the comparison allows rounding only (the sums
/// have `N` terms and the path points can differ by one unit in the last
/// place, `k / N` against `k * (1 / N)`).
#[test]
fn guided_ig_without_deviation_is_the_left_riemann_sum_of_integrated_gradients() {
    let net = TanhNet::load("guided_ig");
    let x = common::fixture::<f64>("guided_ig", "x");
    let mut baseline = common::fixture::<f64>("guided_ig", "baseline");
    // Features equal to the baseline have no alpha; both methods give them 0.
    for i in 0..3 {
        let idx = baseline.as_slice().unwrap().len() - 1 - 5 * i;
        baseline.as_slice_mut().unwrap()[idx] = x.as_slice().unwrap()[idx];
    }
    let delta = &x - &baseline;
    for steps in [1, 7, 50] {
        let gig = GuidedIg::new()
            .steps(steps)
            .max_dist(0.0)
            .fraction(0.25)
            .baseline(baseline.clone());
        let guided = gig.get_mask(x.view(), &mut gradients_of(&net)).unwrap();

        let n = steps as f64;
        let mut left_sum = ArrayD::<f64>::zeros(x.raw_dim());
        for k in 0..steps {
            let point = &baseline + &(&delta * (k as f64 / n));
            left_sum += &net.grad(point.view());
        }
        let left_sum = left_sum * &delta / n;
        let ig = IntegratedGradients::new()
            .steps(steps + 1)
            .batch_size(16)
            .baseline(baseline.clone())
            .get_mask(x.view(), &mut gradients_of(&net))
            .unwrap();
        let from_ig = (ig * (n + 1.0) - net.grad(x.view()) * &delta) / n;

        let scale = left_sum.fold(0.0_f64, |m, v| m.max(v.abs()));
        let tolerance = 64.0 * (steps + net.terms()) as f64 * EPS;
        for (what, other) in [
            ("the left Riemann sum", &left_sum),
            ("(N+1) IG_{N+1} - grad f(x) delta", &from_ig),
        ] {
            let err = common::rel_err(guided.view(), other.view());
            println!("axioms Guided IG (max_dist 0, {steps} steps) vs {what}: relative error {err:.3e}");
            assert!(err <= tolerance, "{steps} steps vs {what}: {err:e} > {tolerance:e}");
        }
        assert!(scale > 0.0);
        // And it is not Integrated Gradients with N steps: that rule differs
        // by far more than rounding on a nonlinear model.
        if steps > 1 {
            let ig_n = IntegratedGradients::new()
                .steps(steps)
                .baseline(baseline.clone())
                .get_mask(x.view(), &mut gradients_of(&net))
                .unwrap();
            assert!(common::rel_err(guided.view(), ig_n.view()) > 1e3 * tolerance);
        }
    }
}
