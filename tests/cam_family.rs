//! The CAM family (`Cam`) against pytorch-grad-cam 1.5.7 on the ONNX
//! fixture networks (references in tests/fixtures/cam, written by
//! tests/reference/cam/generate.py), and its argument checks.
//!
//! Each member is compared twice: the layer-sized map before any scaling
//! (`CamScaling::Raw` against `get_cam_image` through a ReLU) and the
//! library's output (`CamScaling::PytorchGradCam`: min-max scaling,
//! `cv2.resize`, min-max scaling again). Errors are the largest absolute
//! difference over the largest reference magnitude, float32 throughout;
//! tolerances about ten times the error measured, never above 1e-4.

use ndarray::{Array3, Array4, ArrayD};
use saliency::{
    ActivationLayout, Cam, CamMethod, CamScaling, GradCam, GradientShap, ModelOutputs, OutputKey, Saliency,
    SaliencyError,
};

#[cfg(feature = "onnx")]
#[path = "common/cam_net.rs"]
mod cam_net;

#[cfg(feature = "onnx")]
mod parity {
    use super::cam_net::{Net, json_field};
    use super::*;

    /// `(raw, full)` tolerances.
    fn cam(net: &str, method: CamMethod, file: &str, tol: (f64, f64)) {
        let net = Net::load(net);
        let raw = net.masks(&Cam::new(method).scaling(CamScaling::Raw).batch_size(2));
        net.check(
            &format!("{file}_raw"),
            raw.view(),
            net.reference(&format!("{file}_raw.npy")).view(),
            tol.0,
        );
        let full = net.masks(&Cam::new(method).batch_size(2));
        net.check(file, full.view(), net.reference(&format!("{file}.npy")).view(), tol.1);
    }

    macro_rules! cams {
        ($($test:ident: $net:literal, $method:ident, $file:literal, $tol:expr;)*) => {$(
            #[test]
            fn $test() {
                cam($net, CamMethod::$method, $file, $tol);
            }
        )*};
    }

    cams! {
        grad_cam_vgg: "vgg", GradCam, "gradcam", (1e-5, 1e-5);
        grad_cam_resnet: "resnet", GradCam, "gradcam", (1e-5, 1e-5);
        grad_cam_plus_plus_vgg: "vgg", GradCamPlusPlus, "gradcam_plusplus", (1e-5, 1e-5);
        grad_cam_plus_plus_resnet: "resnet", GradCamPlusPlus, "gradcam_plusplus", (1e-5, 1e-5);
        xgrad_cam_vgg: "vgg", XGradCam, "xgradcam", (1e-5, 1e-5);
        xgrad_cam_resnet: "resnet", XGradCam, "xgradcam", (1e-5, 1e-5);
        layer_cam_vgg: "vgg", LayerCam, "layercam", (1e-5, 1e-5);
        layer_cam_resnet: "resnet", LayerCam, "layercam", (1e-5, 1e-5);
        hires_cam_vgg: "vgg", HiResCam, "hirescam", (1e-5, 1e-5);
        hires_cam_resnet: "resnet", HiResCam, "hirescam", (1e-5, 1e-5);
        eigen_cam_vgg: "vgg", EigenCam, "eigencam_signfix", (1e-5, 1e-5);
        eigen_cam_resnet: "resnet", EigenCam, "eigencam_signfix", (1e-5, 1e-5);
        score_cam_vgg: "vgg", ScoreCam, "scorecam", (1e-5, 1e-5);
        score_cam_resnet: "resnet", ScoreCam, "scorecam", (1e-5, 1e-5);
    }

    /// Where LAPACK's arbitrary sign agrees with the sign correction (both
    /// resnet images), Eigen-CAM equals pytorch-grad-cam's `EigenCAM`; where
    /// it does not (both vgg images), it differs from it.
    #[test]
    fn eigen_cam_equals_eigencam_exactly_where_lapack_sign_agrees() {
        for name in ["vgg", "resnet"] {
            let net = Net::load(name);
            let agrees = json_field(&net.meta, "eigencam_lapack_sign_agrees");
            let agrees: Vec<bool> = agrees[1..agrees.find(']').unwrap()]
                .split(',')
                .map(|s| s.trim() == "true")
                .collect();
            let ours = net.masks(&Cam::new(CamMethod::EigenCam).batch_size(2));
            let theirs = net.reference("eigencam.npy");
            for (i, &agree) in agrees.iter().enumerate() {
                let err = cam_net::rel_err(
                    ours.index_axis(ndarray::Axis(0), i),
                    theirs.index_axis(ndarray::Axis(0), i),
                );
                println!("{name} image {i}: LAPACK sign agrees {agree}, error vs EigenCAM {err:.2e}");
                assert_eq!(err < 1e-5, agree, "{name} image {i}");
            }
        }
    }
}

/// A model with a fixed 2 x 2 layer of two channels, channels first.
fn layer_model(
    values: Vec<f32>,
    grads: Vec<f32>,
    stated: Option<ActivationLayout>,
) -> impl FnMut(ndarray::ArrayViewD<'_, f32>, &saliency::ModelRequest<'_>) -> Result<ModelOutputs<f32>, saliency::BoxError>
{
    move |batch, _request| {
        let n = batch.shape()[0];
        let mut out = ModelOutputs::new()
            .with(
                OutputKey::ConvolutionLayerValues,
                Array4::from_shape_vec((1, 2, 2, 2), values.clone()).unwrap(),
            )
            .with(
                OutputKey::ConvolutionOutputGradients,
                Array4::from_shape_vec((1, 2, 2, 2), grads.clone()).unwrap(),
            )
            .with(OutputKey::OutputLayerValues, ndarray::Array1::<f32>::ones(n));
        out.set_layout(stated);
        Ok(out)
    }
}

const VALUES: [f32; 8] = [1.0, 0.0, 0.0, 2.0, 0.5, 0.5, 0.5, 3.0];
const GRADS: [f32; 8] = [1.0, -1.0, 0.5, 1.0, 0.25, 0.25, -0.5, 0.0];

/// `Cam`'s Grad-CAM with PAIR saliency's finish is `GradCam` itself.
#[test]
fn cam_grad_cam_with_the_reference_finish_is_grad_cam() {
    let image = Array3::<f32>::from_elem((8, 8, 3), 0.5);
    let stated = Some(ActivationLayout::ChannelsFirst);
    let ours = Cam::new(CamMethod::GradCam)
        .scaling(CamScaling::Reference)
        .three_dims(true)
        .get_mask(&image, &mut layer_model(VALUES.to_vec(), GRADS.to_vec(), stated))
        .unwrap();
    let reference = GradCam::new()
        .get_mask(&image, &mut layer_model(VALUES.to_vec(), GRADS.to_vec(), stated))
        .unwrap();
    assert_eq!(ours, reference);
}

/// HiResCAM by hand: sum_k G_k A_k pixel by pixel, then the ReLU:
/// pixel 0: 1 * 1 + 0.25 * 0.5 = 1.125; pixel 1: -1 * 0 + 0.25 * 0.5 =
/// 0.125; pixel 2: 0.5 * 0 - 0.5 * 0.5 = -0.25 -> 0; pixel 3: 1 * 2 + 0 = 2.
#[test]
fn hires_cam_by_hand() {
    let image = Array3::<f32>::zeros((4, 4, 1));
    let map: ArrayD<f32> = Cam::new(CamMethod::HiResCam)
        .scaling(CamScaling::Raw)
        .get_mask(
            &image,
            &mut layer_model(VALUES.to_vec(), GRADS.to_vec(), Some(ActivationLayout::ChannelsFirst)),
        )
        .unwrap();
    assert_eq!(map.into_raw_vec_and_offset().0, vec![1.125, 0.125, 0.0, 2.0]);
}

#[test]
fn cam_refuses_a_layout_that_contradicts_the_model() {
    let image = Array3::<f32>::zeros((4, 4, 1));
    let err = Cam::new(CamMethod::XGradCam)
        .layout(ActivationLayout::ChannelsLast)
        .get_mask(
            &image,
            &mut layer_model(VALUES.to_vec(), GRADS.to_vec(), Some(ActivationLayout::ChannelsFirst)),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SaliencyError::LayoutConflict {
                method: "XGrad-CAM",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn cam_refuses_a_zero_batch_size_before_calling_the_model() {
    let image = Array3::<f32>::zeros((4, 4, 1));
    let err = Cam::new(CamMethod::ScoreCam)
        .batch_size(0)
        .get_mask(&image, &mut |_b, _r| -> Result<ModelOutputs<f32>, saliency::BoxError> {
            panic!("the model must not be called")
        })
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "batch_size", .. }),
        "{err}"
    );
}

fn shap_error(method: GradientShap<f64>) -> SaliencyError {
    let x = ndarray::Array1::<f64>::ones(3);
    method
        .get_mask(&x, &mut |_b, _r| -> Result<ModelOutputs<f64>, saliency::BoxError> {
            panic!("the model must not be called")
        })
        .unwrap_err()
}

#[test]
fn gradient_shap_checks_its_settings_before_calling_the_model() {
    let err = shap_error(GradientShap::new().samples(0));
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "samples", .. }),
        "{err}"
    );
    let err = shap_error(GradientShap::new().stdev(-1.0));
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "stdev", .. }),
        "{err}"
    );
    let err = shap_error(GradientShap::new().baselines(ndarray::Array2::<f64>::zeros((2, 4)).into_dyn()));
    assert!(
        matches!(err, SaliencyError::ShapeMismatch { what: "baselines", .. }),
        "{err}"
    );
    let err = shap_error(GradientShap::new().samples(2).draws(vec![(0, 0.5)]));
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "draws", .. }),
        "{err}"
    );
    let err = shap_error(GradientShap::new().samples(1).draws(vec![(1, 0.5)]));
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "draws", .. }),
        "{err}"
    );
    let err = shap_error(GradientShap::new().samples(1).draws(vec![(0, 1.5)]));
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "draws", .. }),
        "{err}"
    );
}

/// The same seed gives bit-identical masks whatever the batch size and the
/// thread count (the model computes each row alone: f(x) = sum(w x^2),
/// gradient 2 w x); another seed gives another mask.
#[test]
fn gradient_shap_seeded_draws_do_not_depend_on_batching_or_threads() {
    let x = ndarray::Array3::<f64>::from_shape_fn((6, 5, 3), |(i, j, c)| ((i * 5 + j + c) % 7) as f64 / 7.0);
    let w = x.mapv(|v| 1.0 - v);
    let baselines =
        ndarray::Array4::<f64>::from_shape_fn((3, 6, 5, 3), |(k, i, j, c)| ((k + 2 * i + j * c) % 5) as f64 / 10.0);
    let method = GradientShap::new()
        .baselines(baselines.into_dyn())
        .samples(7)
        .stdev(0.1)
        .seed(5);
    let run = |m: &GradientShap<f64>| {
        m.get_mask(&x, &mut |batch, _r| {
            let mut g = batch.to_owned();
            for mut row in g.outer_iter_mut() {
                row.zip_mut_with(&w.view().into_dyn(), |v, &wv| *v *= 2.0 * wv);
            }
            Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
        })
        .unwrap()
    };
    let a = run(&method.clone().batch_size(1));
    let b = run(&method.clone().batch_size(7));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let c = pool.install(|| run(&method.clone().batch_size(3)));
    assert!(
        a == b && b == c,
        "seeded GradientSHAP differs between batch sizes or thread counts"
    );
    assert!(
        a != run(&method.clone().seed(6)),
        "another seed must draw other samples"
    );
}
