//! Several labelled pictures laid out in a grid, with a small built-in
//! bitmap font for the labels.

use ndarray::{Array3, ArrayView3, Axis, Slice};

use super::ColorMap;
use crate::error::{Result, SaliencyError};

/// Glyph width and height of the built-in font, in font pixels.
const GLYPH_W: usize = 5;
const GLYPH_H: usize = 7;

/// A 5 x 7 glyph: one string per row, `#` for ink. Lower-case letters are
/// drawn as capitals; unknown characters as a blank.
fn glyph(c: char) -> [&'static str; GLYPH_H] {
    match c.to_ascii_uppercase() {
        'A' => [" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
        'B' => ["#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "],
        'C' => [" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "],
        'D' => ["#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "],
        'E' => ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"],
        'F' => ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "],
        'G' => [" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"],
        'H' => ["#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
        'I' => [" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
        'J' => ["  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "],
        'K' => ["#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"],
        'L' => ["#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"],
        'M' => ["#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"],
        'N' => ["#   #", "##  #", "# # #", "#  ##", "#   #", "#   #", "#   #"],
        'O' => [" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
        'P' => ["#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "],
        'Q' => [" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"],
        'R' => ["#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"],
        'S' => [" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "],
        'T' => ["#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "],
        'U' => ["#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
        'V' => ["#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "],
        'W' => ["#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "],
        'X' => ["#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"],
        'Y' => ["#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "],
        'Z' => ["#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"],
        '0' => [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
        '1' => ["  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
        '2' => [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
        '3' => ["#### ", "    #", "    #", " ### ", "    #", "    #", "#### "],
        '4' => ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "],
        '5' => ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
        '6' => [" ### ", "#    ", "#    ", "#### ", "#   #", "#   #", " ### "],
        '7' => ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "],
        '8' => [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
        '9' => [" ### ", "#   #", "#   #", " ####", "    #", "    #", " ### "],
        '-' => ["     ", "     ", "     ", "#####", "     ", "     ", "     "],
        '+' => ["     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "],
        '=' => ["     ", "     ", "#####", "     ", "#####", "     ", "     "],
        '.' => ["     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "],
        ',' => ["     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "],
        ':' => ["     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "],
        '%' => ["##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"],
        '/' => ["     ", "    #", "   # ", "  #  ", " #   ", "#    ", "     "],
        '(' => ["   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "],
        ')' => [" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "],
        '_' => ["     ", "     ", "     ", "     ", "     ", "     ", "#####"],
        _ => ["     "; GLYPH_H],
    }
}

/// Draws `text` into `canvas` (H x W x 3) with its top-left corner at
/// (`top`, `left`), each font pixel `scale` x `scale` image pixels; what falls
/// outside the canvas is cut off.
pub fn draw_text(canvas: &mut Array3<u8>, text: &str, top: usize, left: usize, scale: usize, color: [u8; 3]) {
    let (h, w) = (canvas.shape()[0], canvas.shape()[1]);
    let scale = scale.max(1);
    // Saturating positions and loops clipped to the canvas: a huge scale or
    // offset draws nothing (or a clipped block) instead of overflowing or
    // looping for ever.
    for (n, c) in text.chars().enumerate() {
        let x0 = left.saturating_add(n.saturating_mul((GLYPH_W + 1).saturating_mul(scale)));
        if x0 >= w {
            break;
        }
        for (gy, row) in glyph(c).iter().enumerate() {
            for (gx, ink) in row.bytes().enumerate() {
                if ink != b'#' {
                    continue;
                }
                let y0 = top.saturating_add(gy.saturating_mul(scale));
                let x1 = x0.saturating_add(gx.saturating_mul(scale));
                for y in y0..y0.saturating_add(scale).min(h) {
                    for x in x1..x1.saturating_add(scale).min(w) {
                        canvas
                            .index_axis_mut(Axis(0), y)
                            .index_axis_mut(Axis(0), x)
                            .iter_mut()
                            .zip(color)
                            .for_each(|(p, c)| *p = c);
                    }
                }
            }
        }
    }
}

/// Lays labelled RGB pictures (`H x W x 3`, any sizes) out in a grid of
/// `columns` columns on a white background, each with its label above it.
/// Cells are as large as the largest picture; labels longer than a cell are
/// cut off.
///
/// ```
/// use ndarray::Array3;
/// use saliency::visualize::panel;
///
/// let a = Array3::<u8>::zeros((40, 40, 3));
/// let grid = panel(&[("image", a.view()), ("mask", a.view()), ("xrai", a.view())], 2)?;
/// assert_eq!(grid.shape()[2], 3);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn panel(cells: &[(&str, ArrayView3<'_, u8>)], columns: usize) -> Result<Array3<u8>> {
    if columns == 0 {
        return Err(SaliencyError::param("columns", columns, "must be at least 1"));
    }
    if cells.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what: "panel cells",
            shape: vec![0],
        });
    }
    if let Some((_, bad)) = cells.iter().find(|(_, im)| im.shape()[2] != 3) {
        return Err(SaliencyError::ShapeMismatch {
            what: "panel picture",
            expected: vec![bad.shape()[0], bad.shape()[1], 3],
            actual: bad.shape().to_vec(),
        });
    }
    let (cell_h, cell_w) = cells
        .iter()
        .fold((0, 0), |(h, w), (_, im)| (h.max(im.shape()[0]), w.max(im.shape()[1])));
    let scale = if cell_w >= 160 { 2 } else { 1 };
    let (margin, label_h) = (8, (GLYPH_H + 4) * scale);
    let rows = cells.len().div_ceil(columns);
    let cols = columns.min(cells.len());
    let height = margin + rows * (label_h + cell_h + margin);
    let width = margin + cols * (cell_w + margin);
    let mut canvas = Array3::<u8>::from_elem((height, width, 3), 255);
    for (k, (label, picture)) in cells.iter().enumerate() {
        let (r, c) = (k / columns, k % columns);
        let top = margin + r * (label_h + cell_h + margin);
        let left = margin + c * (cell_w + margin);
        let fits = cell_w / ((GLYPH_W + 1) * scale);
        let label: String = label.chars().take(fits).collect();
        draw_text(&mut canvas, &label, top, left, scale, [20, 20, 20]);
        let (ph, pw) = (picture.shape()[0], picture.shape()[1]);
        for (y, row) in picture.outer_iter().enumerate() {
            for (x, px) in row.outer_iter().enumerate() {
                let (cy, cx) = (top + label_h + y, left + x);
                if y < ph && x < pw && cy < height && cx < width {
                    canvas
                        .index_axis_mut(Axis(0), cy)
                        .index_axis_mut(Axis(0), cx)
                        .assign(&px);
                }
            }
        }
    }
    Ok(canvas)
}

/// A colour bar: the legend of pictures coloured on one scale (see
/// [`SharedScale`](super::SharedScale)), a horizontal strip of the colour
/// map with the values of its two ends written under it and a title above.
///
/// ```
/// use saliency::visualize::{ColorBar, ColorMap};
///
/// let bar = ColorBar::new(ColorMap::Inferno, 0.0, 2.5).title("saliency mass");
/// let strip = bar.render(200)?;
/// assert_eq!(strip.shape()[1], 200);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ColorBar {
    colormap: ColorMap,
    low: f64,
    high: f64,
    title: String,
}

/// The colour bar's strip height, in pixels.
const BAR_H: usize = 14;

/// A value as a short label: three decimals in the usual range, else
/// scientific notation.
fn value_label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-2..1e4).contains(&a) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

impl ColorBar {
    /// A bar for `colormap` whose ends stand for `low` and `high`: the
    /// values shown as 0 and 1 (as -1 and 1 for
    /// [`ColorMap::BlueWhiteRed`]).
    pub fn new(colormap: ColorMap, low: f64, high: f64) -> Self {
        ColorBar {
            colormap,
            low,
            high,
            title: String::new(),
        }
    }

    /// The text above the strip (the quantity, its unit).
    #[must_use = "a setter returns the changed bar; assign or chain it"]
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The bar as an RGB picture `width` pixels wide (white background,
    /// strip with a 4-pixel margin on either side).
    ///
    /// Errors unless `low` and `high` are finite with `high > low`, or when
    /// `width` is under 16.
    pub fn render(&self, width: usize) -> Result<Array3<u8>> {
        if !(self.low.is_finite() && self.high.is_finite() && self.high > self.low) {
            return Err(SaliencyError::param(
                "high",
                self.high,
                "must be finite and greater than low",
            ));
        }
        if width < 16 {
            return Err(SaliencyError::param("width", width, "must be at least 16"));
        }
        let label_h = GLYPH_H + 4;
        let (margin, height) = (4, 2 * label_h + BAR_H);
        let mut bar = Array3::<u8>::from_elem((height, width, 3), 255);
        draw_text(&mut bar, &self.title, 0, margin, 1, [20, 20, 20]);
        let span = width - 2 * margin;
        let (from, to) = match self.colormap {
            ColorMap::BlueWhiteRed => (-1.0, 1.0),
            _ => (0.0, 1.0),
        };
        for x in 0..span {
            let t = from + (to - from) * x as f64 / (span - 1) as f64;
            let rgb = self.colormap.rgb(t);
            for y in label_h..label_h + BAR_H {
                for (ch, v) in rgb.iter().enumerate() {
                    bar[[y, margin + x, ch]] = *v;
                }
            }
        }
        let (low, high) = (value_label(self.low), value_label(self.high));
        let top = label_h + BAR_H + 2;
        draw_text(&mut bar, &low, top, margin, 1, [20, 20, 20]);
        let high_w = high.chars().count() * (GLYPH_W + 1);
        draw_text(
            &mut bar,
            &high,
            top,
            (width - margin).saturating_sub(high_w),
            1,
            [20, 20, 20],
        );
        Ok(bar)
    }
}

/// [`panel`] with a [`ColorBar`] under the grid, as wide as the grid: the
/// legend of pictures coloured on one shared scale.
///
/// Errors: those of [`panel`] and [`ColorBar::render`].
///
/// ```
/// use ndarray::{array, Array2};
/// use saliency::visualize::{apply_colormap, panel_with_colorbar, ColorBar, ColorMap, SharedScale};
///
/// let maps = [array![[0.0, 1.0], [2.0, 3.0]], array![[0.0, 0.5], [0.5, 1.0]]];
/// let views: Vec<_> = maps.iter().map(|m| m.view()).collect();
/// let scale = SharedScale::from_maps(&views, 100.0)?;
/// let pictures = maps
///     .iter()
///     .map(|m| apply_colormap(scale.apply(m.view())?.view(), ColorMap::Inferno))
///     .collect::<Result<Vec<_>, _>>()?;
/// let bar = ColorBar::new(ColorMap::Inferno, scale.low(), scale.high());
/// let grid = panel_with_colorbar(&[("a", pictures[0].view()), ("b", pictures[1].view())], 2, &bar)?;
/// assert_eq!(grid.shape()[2], 3);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn panel_with_colorbar(cells: &[(&str, ArrayView3<'_, u8>)], columns: usize, bar: &ColorBar) -> Result<Array3<u8>> {
    let grid = panel(cells, columns)?;
    let (h, w) = (grid.shape()[0], grid.shape()[1]);
    // A narrow grid (one small picture) still gets a readable bar.
    let width = w.max(120);
    let legend = bar.render(width)?;
    let mut out = Array3::<u8>::from_elem((h + legend.shape()[0] + 8, width, 3), 255);
    let mut top = out.slice_axis_mut(Axis(0), Slice::from(..h));
    top.slice_axis_mut(Axis(1), Slice::from(..w)).assign(&grid);
    out.slice_axis_mut(Axis(0), Slice::from(h..h + legend.shape()[0]))
        .assign(&legend);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_is_5_wide() {
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-+=.,:%/()_ ?".chars() {
            assert!(glyph(c).iter().all(|row| row.len() == GLYPH_W), "{c}");
        }
    }

    #[test]
    fn panel_places_pictures_and_labels() {
        let red = Array3::from_shape_fn((10, 20, 3), |(_, _, k)| if k == 0 { 255 } else { 0 });
        let grid = panel(&[("a", red.view()), ("b", red.view()), ("c", red.view())], 2).unwrap();
        // 2 rows and 2 columns of 20-wide, 10-high cells with 8-pixel margins and 11-pixel labels.
        assert_eq!(grid.shape(), &[8 + 2 * (11 + 10 + 8), 8 + 2 * (20 + 8), 3]);
        assert_eq!(grid[[8 + 11, 8, 1]], 0); // first picture's top-left pixel is red
        assert!(grid.slice_axis(Axis(0), (8..15).into()).iter().any(|&v| v == 20)); // label ink
        assert!(panel(&[], 2).is_err());
        assert!(panel(&[("a", red.view())], 0).is_err());
    }

    #[test]
    fn colorbar_runs_from_low_to_high_colour() {
        let bar = ColorBar::new(ColorMap::Gray, 0.0, 1.0).render(100).unwrap();
        let row = GLYPH_H + 4 + BAR_H / 2;
        // The strip starts black and ends white, 4 pixels in from each side.
        assert_eq!(bar[[row, 4, 0]], 0);
        assert_eq!(bar[[row, 95, 0]], 255);
        assert_eq!(bar[[row, 50, 0]], (46.0_f64 / 91.0 * 255.0).round() as u8);
        assert!(ColorBar::new(ColorMap::Gray, 1.0, 1.0).render(100).is_err());
        assert!(ColorBar::new(ColorMap::Gray, 0.0, 1.0).render(8).is_err());
        assert_eq!(value_label(0.5), "0.500");
        assert_eq!(value_label(12345.0), "1.23e4");
    }
}
