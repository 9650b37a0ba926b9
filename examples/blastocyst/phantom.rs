//! Generated blastocyst micrographs with known anatomy.
//!
//! A day-5 blastocyst seen in a light microscope: a bright zona pellucida
//! ring, a thin trophectoderm (TE) of flattened cells just inside it, the
//! fluid-filled blastocoel cavity, and the inner cell mass (ICM), a cluster
//! of cells against the inner wall. In Gardner grading the ICM grade is A
//! when many cells are tightly packed, B or C when there are several or few,
//! loosely grouped; a mass with degenerating (dark) cells is poor too. Here
//! the ICM is the only difference between the classes, so a model that
//! grades correctly must look at the ICM, and the ICM mask is the ground
//! truth for where a faithful saliency map should point.

use ndarray::{Array2, Array3};
use rand::{Rng, RngExt};
use rand_distr::{Distribution, Normal};

/// Good (a packed ICM of many cells) or poor (few loose cells, or dark ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grade {
    Good,
    Poor,
}

impl Grade {
    pub fn label(self) -> usize {
        match self {
            Grade::Good => 0,
            Grade::Poor => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Grade::Good => "good",
            Grade::Poor => "poor",
        }
    }
}

/// One generated micrograph: `size x size x 3`, values roughly in [-1, 1].
pub struct Embryo {
    pub image: Array3<f32>,
    /// Pixels of the inner cell mass.
    pub icm: Array2<bool>,
    /// Pixels of the trophectoderm: the band of flattened cells inside the
    /// zona, where it is not ICM.
    pub te: Array2<bool>,
    /// Pixels of the zona pellucida's bright band.
    pub zona: Array2<bool>,
    pub grade: Grade,
    /// A poor embryo whose ICM is a packed mass with dark, degenerating cells.
    pub degenerating: bool,
}

/// A soft disk: 1 inside radius `r`, 0 outside, a smooth edge of `edge` pixels.
fn soft_disk(d: f64, r: f64, edge: f64) -> f64 {
    1.0 / (1.0 + ((d - r) / edge).exp())
}

/// Generates one embryo of `grade` on a `size x size` canvas.
pub fn embryo(size: usize, grade: Grade, rng: &mut impl Rng) -> Embryo {
    let s = size as f64;
    let (cy, cx) = (
        s / 2.0 + rng.random_range(-0.04..0.04) * s,
        s / 2.0 + rng.random_range(-0.04..0.04) * s,
    );
    let r_zona = s * rng.random_range(0.36..0.41);
    let zona_w = s * 0.035;
    let r_inner = r_zona - zona_w;

    // The ICM sits against the inner wall at a random angle.
    let angle = rng.random_range(0.0..std::f64::consts::TAU);
    // Good: many bright cells packed tightly into a mass. Poor, half the
    // time: 8 to 12 cells, as bright as a good mass's, scattered loosely over
    // a patch of the same size (so that neither the ICM's extent nor its
    // brightness is a clue, only how many cells there are and how packed);
    // the other half: a packed mass like a good one in which a fifth of the
    // cells are dark, degenerating. A good grade needs both a packed mass and
    // no dark cells in it, so neither the lack of dark cells nor the presence
    // of bright cells alone decides. Either way the grade can rest on
    // something the ICM shows (packed, scattered or dark cells) rather than
    // on an absence, which a saliency map has nowhere to point at (a grader
    // may still learn the absence; the README shows how often).
    let icm_r = s * rng.random_range(0.15..0.19);
    let degenerating = grade == Grade::Poor && rng.random_bool(0.5);
    let (n_cells, spread) = match grade {
        Grade::Poor if !degenerating => (8 + rng.random_range(0..5), 1.0),
        _ => (45 + rng.random_range(0..10), 0.75),
    };
    let icm_dist = r_inner - icm_r * 0.85;
    let (iy, ix) = (cy + icm_dist * angle.sin(), cx + icm_dist * angle.cos());
    // (y, x, radius, tone); a negative tone draws a cell darker than the cavity.
    let cells: Vec<(f64, f64, f64, f64)> = (0..n_cells)
        .map(|_| {
            let a = rng.random_range(0.0..std::f64::consts::TAU);
            let d = icm_r * spread * rng.random_range(0.0f64..1.0).sqrt();
            let dark = degenerating && rng.random_bool(0.2);
            let r = s * rng.random_range(0.025..0.04);
            (iy + d * a.sin(), ix + d * a.cos(), r, if dark { -0.3 } else { 0.75 })
        })
        .collect();

    // TE cells: bumps along the inner wall.
    let n_te = 18 + rng.random_range(0..6);
    let te_phase = rng.random_range(0.0..std::f64::consts::TAU);
    let illum = (rng.random_range(-0.25..0.25), rng.random_range(-0.25..0.25));
    let noise = Normal::new(0.0, 0.06).expect("a valid fixed deviation");
    // The cavity's darkness, the zona's brightness and the TE's contrast
    // vary between embryos, so that none of them is a clue to the grade:
    // only the ICM is.
    let cavity = rng.random_range(0.05..0.25);
    let zona = rng.random_range(0.25..0.85);
    let te_contrast = rng.random_range(0.1..0.45);

    let mut image = Array3::<f32>::zeros((size, size, 3));
    let mut icm = Array2::<bool>::from_elem((size, size), false);
    let mut te_mask = Array2::<bool>::from_elem((size, size), false);
    let mut zona_mask = Array2::<bool>::from_elem((size, size), false);
    for i in 0..size {
        for j in 0..size {
            let (y, x) = (i as f64 + 0.5, j as f64 + 0.5);
            let d = ((y - cy).powi(2) + (x - cx).powi(2)).sqrt();
            let theta = (y - cy).atan2(x - cx);
            // Background with an illumination gradient.
            let mut v = -0.1 + illum.0 * (y / s - 0.5) + illum.1 * (x / s - 0.5);
            // Zona pellucida: a bright band with dark rims.
            let band = (d - (r_zona - zona_w / 2.0)) / (zona_w / 2.0);
            v += zona * (-band * band * 2.0).exp() - 0.45 * zona * (-(band.abs() - 1.2).powi(2) * 6.0).exp();
            // Blastocoel: slightly darker, smooth fluid.
            let inside = soft_disk(d, r_inner, 1.0);
            v -= cavity * inside;
            // Trophectoderm: flattened cells just inside the zona.
            let te = (-(d - (r_inner - s * 0.02)).powi(2) / (2.0 * (s * 0.012).powi(2))).exp();
            v += te_contrast * te * (0.6 + 0.4 * (n_te as f64 * theta + te_phase).sin().abs());
            // ICM cells: bright (or, degenerating, dark) blobs with dark membranes.
            // Each pixel takes the tone of the cell it lies deepest in.
            let (mut depth, mut shade, mut membranes) = (0.0_f64, 0.0, 0.0_f64);
            for &(py, px, pr, cell_tone) in &cells {
                let dd = ((y - py).powi(2) + (x - px).powi(2)).sqrt();
                let body = soft_disk(dd, pr, 0.8);
                if body > depth {
                    depth = body;
                    shade = cell_tone * body;
                }
                membranes = membranes.max((-(dd - pr).powi(2) / 1.0).exp() * body.max(0.3));
            }
            let cell_v = shade - 0.35 * membranes;
            v += cell_v * inside;
            if inside > 0.5
                && cells
                    .iter()
                    .any(|&(py, px, pr, _)| ((y - py).powi(2) + (x - px).powi(2)).sqrt() <= pr + 1.0)
            {
                icm[[i, j]] = true;
            }
            // The bands drawn above: the zona's bright band, and the TE
            // profile within two of its widths (0.012 s) of its centre.
            zona_mask[[i, j]] = band.abs() <= 1.0;
            te_mask[[i, j]] = !icm[[i, j]] && d <= r_inner && (d - (r_inner - s * 0.02)).abs() <= s * 0.024;
            let n = noise.sample(rng);
            for c in 0..3 {
                // A faint warm tint, as in stained micrographs.
                image[[i, j, c]] = (v + n + [0.03, 0.0, -0.03][c]) as f32;
            }
        }
    }
    Embryo {
        image,
        icm,
        te: te_mask,
        zona: zona_mask,
        grade,
        degenerating,
    }
}
