//! From a mask to a picture file: colour map, overlay, top-30% region, panel,
//! PNG round trip.

use ndarray::{Array2, Array3};
use saliency::visualize::{self, ColorMap};

fn picture() -> Array3<u8> {
    let map = Array2::from_shape_fn((24, 32), |(i, j)| {
        ((i as f64 - 12.0).powi(2) + (j as f64 - 16.0).powi(2)).sqrt()
    });
    let heat = visualize::apply_colormap(map.mapv(|d| 1.0 - d / 20.0).view(), ColorMap::Inferno).unwrap();
    let image = visualize::to_rgb8(map.mapv(|d| (d / 3.0).sin()).view().into_dyn(), -1.0, 1.0).unwrap();
    let blended = visualize::overlay(image.view(), heat.view(), 0.5).unwrap();
    let top = visualize::top_percent_mask(map.mapv(|d| -d).view(), 30.0).unwrap();
    // The 30% of pixels nearest the centre.
    let kept = top.iter().filter(|&&k| k).count();
    assert!((kept as f64 - 0.3 * 768.0).abs() <= 8.0, "{kept}");
    let region = visualize::masked_image(image.view(), top.view(), [0, 0, 0]).unwrap();
    visualize::panel(
        &[
            ("image", image.view()),
            ("overlay", blended.view()),
            ("top 30%", region.view()),
        ],
        3,
    )
    .unwrap()
}

#[test]
fn panel_is_built() {
    let grid = picture();
    assert_eq!(grid.shape()[2], 3);
    assert!(grid.shape()[1] > 3 * 32);
}

#[cfg(feature = "image")]
#[test]
fn png_round_trip_and_missing_file_error() {
    let grid = picture();
    let dir = std::env::temp_dir().join(format!("saliency-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("panel.png");
    visualize::save_png(grid.view(), &path).unwrap();
    let back = visualize::read_image(&path).unwrap();
    assert_eq!(back, grid);
    let err = visualize::read_image(dir.join("missing.png")).unwrap_err();
    assert!(matches!(err, saliency::SaliencyError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.png"));
    std::fs::remove_dir_all(&dir).ok();
}
