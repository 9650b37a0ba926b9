//! PNG output and image input through the `image` crate (feature `image`).

use std::path::Path;

use ndarray::{Array3, ArrayView3};

use crate::error::{Result, SaliencyError};

/// Writes an `H x W x 3` RGB picture as a PNG file.
pub fn save_png(picture: ArrayView3<'_, u8>, path: impl AsRef<Path>) -> Result<()> {
    let (h, w, c) = picture.dim();
    if c != 3 {
        return Err(SaliencyError::ShapeMismatch {
            what: "picture",
            expected: vec![h, w, 3],
            actual: vec![h, w, c],
        });
    }
    let too_large = |_| SaliencyError::param("picture size", format!("{h} x {w}"), "is too large for a PNG");
    let buffer = image::RgbImage::from_raw(
        u32::try_from(w).map_err(too_large)?,
        u32::try_from(h).map_err(too_large)?,
        picture.iter().copied().collect(),
    )
    .ok_or_else(|| SaliencyError::internal("the picture's data does not fill its size"))?;
    buffer
        .save_with_format(path.as_ref(), image::ImageFormat::Png)
        .map_err(|e| SaliencyError::Io {
            path: path.as_ref().display().to_string(),
            source: Box::new(e),
        })
}

/// Reads a PNG or JPEG file as an `H x W x 3` RGB picture.
pub fn read_image(path: impl AsRef<Path>) -> Result<Array3<u8>> {
    let io = |e: image::ImageError| SaliencyError::Io {
        path: path.as_ref().display().to_string(),
        source: Box::new(e),
    };
    let rgb = image::ImageReader::open(path.as_ref())
        .map_err(|e| io(image::ImageError::IoError(e)))?
        .with_guessed_format()
        .map_err(|e| io(image::ImageError::IoError(e)))?
        .decode()
        .map_err(io)?
        .to_rgb8();
    let (w, h) = rgb.dimensions();
    Array3::from_shape_vec((h as usize, w as usize, 3), rgb.into_raw())
        .map_err(|_| SaliencyError::internal("a decoded image's data does not fill its size"))
}
