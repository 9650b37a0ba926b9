//! One way to configure a method: setters, getters that read them back,
//! and settings checked before any model call.

use ndarray::{Array2, Array3, ArrayD, array};
use saliency::{
    ActivationLayout, BlurIg, GradCam, GuidedBackprop, GuidedIg, IntegratedGradients, Occlusion, SmoothGradParams,
    VanillaGradients, Xrai, XraiAlgorithm, XraiParameters,
};

#[test]
fn every_setting_reads_back_through_its_getter() {
    let ig = IntegratedGradients::<f64>::new()
        .steps(7)
        .batch_size(3)
        .baseline(array![1.0, 2.0]);
    assert_eq!((ig.get_steps(), ig.get_batch_size()), (7, 3));
    assert_eq!(ig.get_baseline(), Some(&array![1.0, 2.0].into_dyn()));
    assert_eq!(IntegratedGradients::<f64>::new().get_baseline(), None);

    let occ = Occlusion::<f32>::new().size(4).stride(2).batch_size(5);
    assert_eq!((occ.get_size(), occ.get_stride(), occ.get_batch_size()), (4, 2, 5));

    let blur = BlurIg::new()
        .max_sigma(3.0)
        .steps(9)
        .grad_step(0.5)
        .sqrt(true)
        .batch_size(2);
    assert_eq!(
        (
            blur.get_max_sigma(),
            blur.get_steps(),
            blur.get_grad_step(),
            blur.get_sqrt(),
            blur.get_batch_size()
        ),
        (3.0, 9, 0.5, true, 2)
    );

    let cam = GradCam::new()
        .should_resize(false)
        .three_dims(false)
        .layout(ActivationLayout::ChannelsFirst)
        .batch_size(4);
    assert_eq!(
        (
            cam.get_should_resize(),
            cam.get_three_dims(),
            cam.get_layout(),
            cam.get_batch_size()
        ),
        (false, false, Some(ActivationLayout::ChannelsFirst), 4)
    );
    assert_eq!(GradCam::new().get_layout(), None);

    assert_eq!(GuidedBackprop::new().batch_size(6).get_batch_size(), 6);
    assert_eq!(VanillaGradients::new().batch_size(8).get_batch_size(), 8);

    let gig = GuidedIg::<f64>::new()
        .steps(5)
        .fraction(0.5)
        .max_dist(0.1)
        .batch_size(3);
    assert_eq!(
        (
            gig.get_steps(),
            gig.get_fraction(),
            gig.get_max_dist(),
            gig.get_batch_size()
        ),
        (5, 0.5, 0.1, 3)
    );
    assert_eq!(gig.get_baseline(), None);

    let sg = SmoothGradParams::new()
        .stdev_spread(0.2)
        .nsamples(4)
        .magnitude(false)
        .seed(9)
        .batch_size(2);
    assert_eq!(
        (
            sg.get_stdev_spread(),
            sg.get_nsamples(),
            sg.get_magnitude(),
            sg.get_seed(),
            sg.get_batch_size()
        ),
        (0.2, 4, false, Some(9), Some(2))
    );
    assert_eq!(
        (
            SmoothGradParams::new().get_seed(),
            SmoothGradParams::new().get_batch_size()
        ),
        (None, None)
    );

    let p = XraiParameters::new()
        .steps(11)
        .area_threshold(0.5)
        .return_ig_attributions(true)
        .return_xrai_segments(true)
        .flatten_xrai_segments(false)
        .algorithm(XraiAlgorithm::Fast)
        .min_pixel_diff(3);
    assert_eq!(
        (
            p.get_steps(),
            p.get_area_threshold(),
            p.get_return_ig_attributions(),
            p.get_return_xrai_segments(),
            p.get_flatten_xrai_segments(),
            p.get_algorithm(),
            p.get_min_pixel_diff()
        ),
        (11, 0.5, true, true, false, XraiAlgorithm::Fast, 3)
    );
    let segments = vec![Array2::from_elem((2, 2), true)];
    let attribution = Array3::<f64>::zeros((2, 2, 1));
    let xrai = Xrai::<f64>::new()
        .parameters(p.clone())
        .batch_size(5)
        .baselines(vec![ArrayD::zeros(vec![2, 2, 1])])
        .segments(segments.clone())
        .base_attribution(attribution.clone());
    assert_eq!((xrai.get_parameters(), xrai.get_batch_size()), (&p, 5));
    assert_eq!(xrai.get_baselines().map(<[_]>::len), Some(1));
    assert_eq!(xrai.get_segments(), Some(&segments[..]));
    assert_eq!(xrai.get_base_attribution(), Some(&attribution.into_dyn()));
    assert_eq!(Xrai::<f64>::new().get_segments(), None);
}

#[test]
fn occlusion_value_is_f64_for_every_float_type() {
    use saliency::{Float, ModelOutputs, ModelRequest, OutputKey, Saliency};
    // Multiples of 1/4 and sums of a few of them are exact in f32 and f64,
    // so the two masks can only differ if the value were converted differently.
    fn mask<F: Float>() -> ArrayD<F> {
        let image = Array3::from_shape_fn((5, 6, 2), |(i, j, c)| {
            F::from_f64_lossy(((i * 7 + j * 3 + c) % 5) as f64 / 4.0)
        });
        let mut model = |batch: ndarray::ArrayViewD<'_, F>, _: &ModelRequest<'_>| {
            let scores: ndarray::Array1<F> = batch
                .outer_iter()
                .map(|x| x.iter().fold(F::zero(), |a, &v| a + v))
                .collect();
            Ok::<_, saliency::BoxError>(ModelOutputs::new().with(OutputKey::OutputLayerValues, scores))
        };
        let occlusion = Occlusion::<F>::new().size(2).value(0.25);
        assert_eq!(occlusion.get_value(), 0.25);
        occlusion.get_mask(image.view().into_dyn(), &mut model).unwrap()
    }
    let (m32, m64) = (mask::<f32>(), mask::<f64>());
    assert!(m64.iter().any(|&v| v != 0.0));
    assert_eq!(m32.mapv(f64::from), m64);
}

#[test]
fn occlusion_value_that_overflows_the_float_type_is_refused() {
    use saliency::{Saliency, SaliencyError};
    let image = Array3::<f32>::zeros((4, 4, 1));
    let err = Occlusion::<f32>::new()
        .size(2)
        .value(1e300)
        .get_mask(
            image.view().into_dyn(),
            &mut |_: ndarray::ArrayViewD<'_, f32>, _: &saliency::ModelRequest<'_>| {
                panic!("the model must not be called")
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, SaliencyError::InvalidParameter { name: "value", .. }),
        "{err:?}"
    );
}

#[test]
fn xrai_from_an_attribution_needs_no_model_also_with_its_own_segments() {
    let image = Array3::from_shape_fn((24, 20, 3), |(i, j, c)| ((i / 6 + j / 5 + c) % 3) as f64 / 2.0);
    let attribution = Array3::from_shape_fn((24, 20, 3), |(i, j, c)| ((i * 3 + j + c) % 7) as f64 - 2.0);
    let params = XraiParameters::new().return_xrai_segments(true).min_pixel_diff(1);
    let xrai = Xrai::<f64>::new().parameters(params);
    let free = xrai
        .get_mask_from_attribution(image.view().into_dyn(), attribution.view().into_dyn())
        .unwrap();
    let with_model = xrai
        .clone()
        .base_attribution(attribution.clone())
        .get_mask_with_details(
            image.view().into_dyn(),
            &mut |_: ndarray::ArrayViewD<'_, f64>,
                  _: &saliency::ModelRequest<'_>|
             -> Result<saliency::ModelOutputs<f64>, saliency::BoxError> {
                panic!("the model must not be called")
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(free, with_model);
    // A given attribution of another shape is refused as the base attribution is.
    let err = xrai
        .get_mask_from_attribution(
            image.view().into_dyn(),
            Array2::<f64>::zeros((24, 20)).view().into_dyn(),
        )
        .unwrap_err();
    assert!(matches!(err, saliency::SaliencyError::ShapeMismatch { .. }), "{err:?}");
}

#[test]
fn every_method_refuses_an_invalid_setting_before_calling_the_model() {
    use saliency::{CoreSaliency, ModelOutputs, ModelRequest, Saliency, SaliencyError, SmoothGrad};
    let methods: Vec<(&str, Box<dyn CoreSaliency<f64>>)> = vec![
        ("vanilla batch_size", Box::new(VanillaGradients::new().batch_size(0))),
        (
            "guided backprop batch_size",
            Box::new(GuidedBackprop::new().batch_size(0)),
        ),
        ("grad-cam batch_size", Box::new(GradCam::new().batch_size(0))),
        ("guided ig batch_size", Box::new(GuidedIg::new().batch_size(0))),
        ("guided ig fraction", Box::new(GuidedIg::new().fraction(2.0))),
        ("ig steps", Box::new(IntegratedGradients::new().steps(0))),
        ("ig batch_size", Box::new(IntegratedGradients::new().batch_size(0))),
        ("occlusion stride", Box::new(Occlusion::new().size(2).stride(0))),
        ("occlusion value", Box::new(Occlusion::new().size(2).value(f64::NAN))),
        ("blur ig grad_step", Box::new(BlurIg::new().grad_step(0.0))),
        (
            "xrai steps",
            Box::new(Xrai::new().parameters(XraiParameters::new().steps(0))),
        ),
        ("xrai batch_size", Box::new(Xrai::new().batch_size(0))),
        (
            "smoothgrad nsamples",
            Box::new(SmoothGrad::new(
                VanillaGradients::new(),
                SmoothGradParams::new().nsamples(0),
            )),
        ),
        (
            "smoothgrad over ig steps",
            Box::new(SmoothGrad::new(
                IntegratedGradients::new().steps(0),
                SmoothGradParams::new().seed(1),
            )),
        ),
        (
            "packed smoothgrad over ig steps",
            Box::new(SmoothGrad::new(
                IntegratedGradients::new().steps(0),
                SmoothGradParams::new().seed(1).batch_size(4),
            )),
        ),
    ];
    let image = Array3::<f64>::from_elem((8, 8, 3), 0.5);
    for (name, method) in &methods {
        let mut called = false;
        let mut model = |_: ndarray::ArrayViewD<'_, f64>, _: &ModelRequest<'_>| {
            called = true;
            Err::<ModelOutputs<f64>, saliency::BoxError>("the model must not be called".into())
        };
        let err = method.get_mask(image.view().into_dyn(), &mut model).unwrap_err();
        assert!(!called, "{name}: the model was called before the settings were checked");
        assert!(matches!(err, SaliencyError::InvalidParameter { .. }), "{name}: {err:?}");
    }
}

#[cfg(feature = "metrics")]
#[test]
fn pic_metric_settings_read_back() {
    let pic = saliency::PicMetric::new()
        .thresholds(vec![0.1, 0.5])
        .min_pred_value(0.3)
        .keep_monotonous(false)
        .num_data_points(20)
        .batch_size(4);
    assert_eq!(pic.get_thresholds(), &[0.1, 0.5]);
    assert_eq!(
        (
            pic.get_min_pred_value(),
            pic.get_keep_monotonous(),
            pic.get_num_data_points(),
            pic.get_batch_size()
        ),
        (0.3, false, 20, Some(4))
    );
}

/// The calls take a reference or a view of any dimension and return the
/// method's dimension; each equals the object-safe call on dynamic arrays.
#[test]
fn calls_take_any_dimension_and_return_the_methods_dimension() {
    use ndarray::{Array2, Array4, ArrayD, ArrayViewD, Axis};
    use saliency::{CoreSaliency, ModelOutputs, ModelRequest, OutputKey, Saliency, SmoothGrad, XraiParameters};

    let image = Array3::<f64>::from_shape_fn((12, 10, 3), |(i, j, c)| ((i * 3 + j * 5 + c) % 7) as f64 / 7.0);
    let mut grads = |b: ArrayViewD<'_, f64>, _: &ModelRequest<'_>| {
        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.mapv(|v| (3.0 * v).sin())))
    };
    let ig = IntegratedGradients::new().steps(5);
    let typed: Array3<f64> = ig.get_mask(&image, &mut grads).unwrap();
    let viewed: Array3<f64> = ig.get_mask(image.view(), &mut grads).unwrap();
    let dynamic: ArrayD<f64> = ig
        .get_mask_dyn(image.view().into_dyn(), &mut grads, &mut |_| {})
        .unwrap();
    assert_eq!(typed, viewed);
    assert_eq!(typed.clone().into_dyn(), dynamic);

    let xrai = Xrai::new().parameters(XraiParameters::new().steps(3));
    let map: Array2<f64> = xrai.get_mask(&image, &mut grads).unwrap();
    assert_eq!(map.dim(), (12, 10));

    let images = ndarray::stack(Axis(0), &[image.view(), image.view()]).unwrap();
    let masks: Array4<f64> = ig.get_masks(&images, &mut grads).unwrap();
    assert_eq!(masks.index_axis(Axis(0), 1), typed);
    let maps: Array3<f64> = xrai.get_masks(&images, &mut grads).unwrap();
    assert_eq!(maps.index_axis(Axis(0), 0), map);

    let params = SmoothGradParams::new().nsamples(3).seed(1);
    let smoothed: Array3<f64> = VanillaGradients::new()
        .get_smoothed_mask(&image, &mut grads, &params)
        .unwrap();
    let wrapped: Array3<f64> = SmoothGrad::new(VanillaGradients::new(), params)
        .get_mask(&image, &mut grads)
        .unwrap();
    assert_eq!(smoothed, wrapped);

    // A method of unknown kind gives a dynamic mask, the same numbers.
    let boxed: Box<dyn CoreSaliency<f64>> = Box::new(ig.clone());
    let from_box: ArrayD<f64> = boxed.get_mask(&image, &mut grads).unwrap();
    assert_eq!(from_box, dynamic);
    let borrowed: &dyn CoreSaliency<f64> = &ig;
    assert_eq!(borrowed.get_mask(&image, &mut grads).unwrap(), dynamic);

    // Grad-CAM's mask has two or three axes (`three_dims`): dynamic.
    let mut layer = |_: ArrayViewD<'_, f64>, _: &ModelRequest<'_>| {
        let values = Array4::from_shape_fn((1, 3, 3, 4), |(_, i, j, c)| ((i + j + c) % 3) as f64);
        Ok(ModelOutputs::new()
            .with(OutputKey::ConvolutionLayerValues, values.clone())
            .with(OutputKey::ConvolutionOutputGradients, values))
    };
    let cam: ArrayD<f64> = GradCam::new().get_mask(&image, &mut layer).unwrap();
    assert_eq!(cam.shape(), [12, 10, 3]);
    let flat: ArrayD<f64> = GradCam::new().three_dims(false).get_mask(&image, &mut layer).unwrap();
    assert_eq!(flat.shape(), [12, 10]);
}
