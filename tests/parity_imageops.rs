//! The image kernels against SciPy and scikit-image
//! (tests/reference/gen_imageops.py).

mod common;

use common::{assert_close, fixture, rel_err_f32};
use saliency::imageops::{BoundaryMode, gaussian_filter};

const TOPIC: &str = "imageops";

fn mode(name: &str, cval: f64) -> BoundaryMode {
    match name {
        "reflect" => BoundaryMode::Reflect,
        "constant" => BoundaryMode::Constant(cval),
        "nearest" => BoundaryMode::Nearest,
        "mirror" => BoundaryMode::Mirror,
        "wrap" => BoundaryMode::Wrap,
        _ => panic!("unknown mode {name}"),
    }
}

/// The cases of gen_imageops.py's GAUSSIAN table: name, sigma, mode, cval, truncate.
const GAUSSIAN: &[(&str, &[f64], &str, f64, f64)] = &[
    ("g2_reflect", &[1.5, 2.0], "reflect", 0.0, 4.0),
    ("g2_constant", &[1.5, 2.0], "constant", 0.3, 4.0),
    ("g2_nearest", &[1.5, 2.0], "nearest", 0.0, 4.0),
    ("g2_mirror", &[1.5, 2.0], "mirror", 0.0, 4.0),
    ("g2_wrap", &[1.5, 2.0], "wrap", 0.0, 4.0),
    ("g2_truncate", &[2.2, 0.7], "reflect", 0.0, 2.5),
    ("g3_blur", &[3.0, 0.8, 0.0], "constant", 0.0, 4.0),
    ("g3_long_constant", &[12.0, 30.0, 0.0], "constant", 0.0, 4.0),
    ("g3_long_reflect", &[12.0, 30.0, 0.0], "reflect", 0.0, 4.0),
    ("g3_long_mirror", &[9.0, 20.0, 0.0], "mirror", 0.0, 4.0),
    ("g3_long_wrap", &[9.0, 20.0, 0.0], "wrap", 0.0, 4.0),
    ("g3_long_nearest", &[9.0, 20.0, 0.0], "nearest", 0.0, 4.0),
    ("g3_all_axes", &[1.0, 4.0, 2.0], "reflect", 0.0, 4.0),
    ("g1_small", &[0.5], "mirror", 0.0, 4.0),
    ("g2_line1", &[3.0, 1.0], "mirror", 0.0, 4.0),
];

#[test]
fn gaussian_filter_matches_scipy() {
    for &(name, sigma, m, cval, truncate) in GAUSSIAN {
        let x = fixture::<f64>(TOPIC, &format!("{name}_x"));
        let expected = fixture::<f64>(TOPIC, name);
        let y = gaussian_filter(x.view(), sigma, mode(m, cval), truncate).unwrap();
        assert_close(&format!("gaussian_filter {name}"), y.view(), expected.view(), 1e-12);
    }
}

#[test]
fn gaussian_filter_f32_matches_scipy() {
    let x = fixture::<f32>(TOPIC, "g3_f32_x");
    let expected = fixture::<f32>(TOPIC, "g3_f32").mapv(f64::from);
    let y = gaussian_filter(x.view(), &[2.5, 14.0, 0.0], BoundaryMode::Constant(0.0), 4.0).unwrap();
    let err = rel_err_f32(y.view(), expected.view());
    println!("parity gaussian_filter g3_f32: relative error {err:.3e} (tolerance 1e-6)");
    assert!(err <= 1e-6, "{err}");
}
