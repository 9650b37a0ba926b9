//! Lossless WebP sizes from libwebp, encoded as Pillow encodes
//! `image.save(buffer, format="webp", lossless=True, quality=100)`, which is
//! what `saliency.metrics.pic.estimate_image_entropy` measures.

use libwebp_sys::{
    WEBP_MAX_DIMENSION, WebPConfig, WebPEncode, WebPMemoryWrite, WebPMemoryWriter, WebPMemoryWriterClear,
    WebPMemoryWriterInit, WebPPicture, WebPPictureFree, WebPPictureImportRGB, WebPPictureImportRGBA,
    WebPValidateConfig,
};

use crate::error::BoxError;

/// Packed 8-bit pixels as libwebp imports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// R, G, B per pixel.
    Rgb,
    /// R, G, B, A per pixel.
    Rgba,
}

impl Layout {
    fn bytes_per_pixel(self) -> usize {
        match self {
            Layout::Rgb => 3,
            Layout::Rgba => 4,
        }
    }
}

/// The encoder settings of Pillow's `_webp.WebPEncode` for `lossless=True,
/// quality=100` and its defaults `alpha_quality=100`, `method=4`,
/// `exact=False`, on top of libwebp's default preset.
fn pillow_lossless_config() -> Result<WebPConfig, BoxError> {
    let mut config = WebPConfig::new().map_err(|()| "libwebp could not initialise its configuration")?;
    config.lossless = 1;
    config.quality = 100.0;
    config.alpha_quality = 100;
    config.method = 4;
    config.exact = 0;
    Ok(config)
}

/// Size in bytes of the lossless WebP file (RIFF header included) of a
/// `width` x `height` image of packed `pixels`.
pub(super) fn lossless_size(pixels: &[u8], layout: Layout, width: usize, height: usize) -> Result<usize, BoxError> {
    let max = WEBP_MAX_DIMENSION as usize;
    if width == 0 || height == 0 || width > max || height > max {
        return Err(format!("a {height} x {width} image: WebP allows 1 to {max} pixels per side").into());
    }
    encode(pillow_lossless_config()?, pixels, layout, width, height)
}

/// The calls into libwebp, which are `unsafe` because they are C functions
/// taking raw pointers (libwebp-sys has no safe encoder; the safe `webp`
/// crate bundles libwebp 1.3.1, older than the 1.6.0 matched here). Sound
/// because `pixels` is checked here to hold exactly `width * height` pixels
/// of `layout` (libwebp reads `height` rows of `width` pixels at the given
/// stride), the picture and the memory writer live on this stack frame for
/// the whole encoding, and both are freed exactly once.
#[allow(unsafe_code)]
fn encode(config: WebPConfig, pixels: &[u8], layout: Layout, width: usize, height: usize) -> Result<usize, BoxError> {
    let bpp = layout.bytes_per_pixel();
    let expected = width.checked_mul(height).and_then(|n| n.checked_mul(bpp));
    if width == 0 || height == 0 || Some(pixels.len()) != expected {
        return Err(format!(
            "{} bytes do not hold {height} x {width} {layout:?} pixels",
            pixels.len()
        )
        .into());
    }
    let too_large = |_| "image too large for libwebp";
    let (w, h) = (
        i32::try_from(width).map_err(too_large)?,
        i32::try_from(height).map_err(too_large)?,
    );
    let stride = i32::try_from(width * bpp).map_err(too_large)?;
    let mut picture = WebPPicture::new().map_err(|()| "libwebp could not initialise a picture")?;
    // ARGB pixels, as Pillow's import_frame_libwebp: lossless encodes ARGB,
    // and importing RGB(A) this way packs the same 0xAARRGGBB words.
    picture.use_argb = 1;
    picture.width = w;
    picture.height = h;
    // SAFETY: see the function's documentation.
    unsafe {
        if WebPValidateConfig(&config) == 0 {
            return Err("libwebp rejected the configuration".into());
        }
        let imported = match layout {
            Layout::Rgb => WebPPictureImportRGB(&mut picture, pixels.as_ptr(), stride),
            Layout::Rgba => WebPPictureImportRGBA(&mut picture, pixels.as_ptr(), stride),
        };
        if imported == 0 {
            let error = picture.error_code;
            WebPPictureFree(&mut picture);
            return Err(format!("libwebp could not import the pixels: {error:?}").into());
        }
        let mut writer = std::mem::MaybeUninit::<WebPMemoryWriter>::uninit();
        WebPMemoryWriterInit(writer.as_mut_ptr());
        let mut writer = writer.assume_init();
        picture.writer = Some(WebPMemoryWrite);
        picture.custom_ptr = (&raw mut writer).cast();
        let ok = WebPEncode(&config, &mut picture);
        let size = writer.size;
        let error = picture.error_code;
        WebPPictureFree(&mut picture);
        WebPMemoryWriterClear(&mut writer);
        if ok == 0 {
            return Err(format!("libwebp failed to encode: {error:?}").into());
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_buffers_that_do_not_match_the_size() {
        assert!(lossless_size(&[0; 11], Layout::Rgb, 2, 2).is_err());
        assert!(lossless_size(&[0; 13], Layout::Rgb, 2, 2).is_err());
        assert!(lossless_size(&[0; 12], Layout::Rgba, 2, 2).is_err());
        assert!(lossless_size(&[], Layout::Rgb, 0, 0).is_err());
        assert!(lossless_size(&[0; 3 * 16_384], Layout::Rgb, 16_384, 1).is_err());
    }

    #[test]
    fn encodes_a_small_image() {
        // A lossless WebP file: "RIFF", size, "WEBP", "VP8L" chunk; at least the 20 header bytes.
        let size = lossless_size(&[0, 128, 255, 7, 7, 7], Layout::Rgb, 2, 1).unwrap();
        assert!(size > 20, "{size}");
        let widest = lossless_size(&[9; 3 * 16_383], Layout::Rgb, 16_383, 1).unwrap();
        assert!(widest > 20, "{widest}");
    }
}
