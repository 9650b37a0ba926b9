//! Packing the model calls of several independent computations (the images
//! of a multi-image call, the noise samples of SmoothGrad) into batches of a
//! fixed size.
//!
//! Each computation ("task") is the ordinary one-image code, run on its own
//! scoped thread with a stand-in model: a call to the stand-in queues the
//! task's rows and waits. The calling thread, which alone touches the user's
//! model, decides only at quiet moments, when every started task waits or has
//! finished: start the next task while fewer than `batch_size` rows wait,
//! else send `batch_size` waiting rows (lowest task first) to the model and
//! hand each task its rows' outputs. The schedule is therefore a function of
//! the tasks' requests alone, never of thread timing, and each task computes
//! exactly what it computes alone: results are bit-identical to one call per
//! task, whatever `batch_size` and the thread count.

use std::sync::{Condvar, Mutex, MutexGuard};

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::{BoxError, Result, SaliencyError};
use crate::float::Float;
use crate::model::{ActivationLayout, CallModelFunction, ModelOutputs, ModelRequest, OutputKey};

/// How the rows of a packed call are attributed to images in the request
/// the user's model receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowImages {
    /// Task `t` is image `t` (the tasks are the images of a multi-image call).
    ByTask,
    /// Every row belongs to image 0 (the tasks are samples of one image; when
    /// that image is one of several, the outer packer relabels the rows).
    Single,
}

/// One task's waiting model call.
struct Pending<F> {
    task: usize,
    keys: Vec<OutputKey>,
    /// Shape of the task's batch (rows first).
    shape: Vec<usize>,
    /// The batch, row-major.
    data: Vec<F>,
    /// Rows already sent to the model.
    sent: usize,
    /// Outputs gathered so far, per key: (shape of one row, values).
    gathered: Vec<(OutputKey, Vec<usize>, Vec<F>)>,
    /// The layer layout the model stated for these rows, if any.
    layout: Option<ActivationLayout>,
}

impl<F: Float> Pending<F> {
    fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

enum Reply<F> {
    Outputs(Box<ModelOutputs<F>>),
    Aborted,
}

struct State<F, T> {
    /// Tasks started whose thread is computing (neither waiting nor done).
    running: usize,
    pending: Vec<Pending<F>>,
    replies: Vec<Option<Reply<F>>>,
    done: Vec<Option<Result<T>>>,
    aborted: bool,
}

struct Shared<F, T> {
    state: Mutex<State<F, T>>,
    /// Signalled when a task queues a call or finishes.
    to_caller: Condvar,
    /// Signalled when replies are posted or the run is aborted.
    to_tasks: Condvar,
}

impl<F, T> Shared<F, T> {
    fn lock(&self) -> MutexGuard<'_, State<F, T>> {
        // A poisoned lock means a task panicked; the state is still
        // consistent (every update is made whole under the lock).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The error a task sees when the run stops under it (another task or the
/// model failed); never returned to the user.
#[derive(Debug, thiserror::Error)]
#[error("the batched computation was stopped")]
struct Stopped;

impl<F: Float, T: Send> Shared<F, T> {
    /// A task's model call: queue the rows, wait for their outputs.
    fn call(&self, task: usize, batch: ArrayViewD<'_, F>, keys: &[OutputKey]) -> Result<ModelOutputs<F>, BoxError> {
        if batch.shape().first().is_none_or(|&rows| rows == 0) {
            return Err("a batched computation sent the model an empty batch".into());
        }
        let data = batch.as_standard_layout().iter().copied().collect();
        let mut state = self.lock();
        if state.aborted {
            return Err(Box::new(Stopped));
        }
        state.pending.push(Pending {
            task,
            keys: keys.to_vec(),
            shape: batch.shape().to_vec(),
            data,
            sent: 0,
            gathered: Vec::new(),
            layout: None,
        });
        state.running -= 1;
        self.to_caller.notify_one();
        loop {
            if let Some(reply) = state.replies[task].take() {
                return match reply {
                    Reply::Outputs(outputs) => Ok(*outputs),
                    Reply::Aborted => Err(Box::new(Stopped)),
                };
            }
            state = self.to_tasks.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn finish(&self, task: usize, result: Result<T>) {
        let mut state = self.lock();
        state.done[task] = Some(result);
        state.running -= 1;
        self.to_caller.notify_one();
    }

    /// Stops every waiting task (they return `Stopped`).
    fn abort(&self, state: &mut State<F, T>) {
        state.aborted = true;
        let stopped: Vec<usize> = state.pending.drain(..).map(|p| p.task).collect();
        for task in stopped {
            // The task runs again, to its end.
            state.replies[task] = Some(Reply::Aborted);
            state.running += 1;
        }
        self.to_tasks.notify_all();
    }
}

/// Finishes a task with an internal error if its thread unwinds, so that the
/// caller never waits for it for ever.
struct TaskGuard<'a, F: Float, T: Send> {
    shared: &'a Shared<F, T>,
    task: usize,
    finished: bool,
}

impl<F: Float, T: Send> Drop for TaskGuard<'_, F, T> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.finish(
                self.task,
                Err(SaliencyError::Internal {
                    what: "a batched computation ended without a result",
                }),
            );
        }
    }
}

/// Aborts the run if the calling thread unwinds (a panicking model), so
/// that the scope's join does not wait for tasks blocked on a reply.
struct CallerGuard<'a, F: Float, T: Send> {
    shared: &'a Shared<F, T>,
}

impl<F: Float, T: Send> Drop for CallerGuard<'_, F, T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if !state.aborted {
            self.shared.abort(&mut state);
        }
    }
}

/// Runs `tasks` computations, each `task(index, model)`, packing their model
/// calls into batches of `batch_size` rows (every call but the last of a run
/// of equal keys carries exactly `batch_size` rows), and hands each result to
/// `on_done` in task order, on the calling thread.
///
/// The first error (of the lowest task, among those finished when it is
/// seen), or the model's error, stops the run and is returned.
pub(crate) fn run_packed<F, T>(
    tasks: usize,
    batch_size: usize,
    rows: RowImages,
    model: &mut dyn CallModelFunction<F>,
    task: &(dyn Fn(usize, &mut dyn CallModelFunction<F>) -> Result<T> + Sync),
    on_done: &mut dyn FnMut(usize, T) -> Result<()>,
) -> Result<()>
where
    F: Float,
    T: Send,
{
    crate::checks::check_positive("batch_size", batch_size)?;
    let shared = Shared {
        state: Mutex::new(State {
            running: 0,
            pending: Vec::new(),
            replies: (0..tasks).map(|_| None).collect(),
            done: (0..tasks).map(|_| None).collect(),
            aborted: false,
        }),
        to_caller: Condvar::new(),
        to_tasks: Condvar::new(),
    };
    std::thread::scope(|scope| {
        let _guard = CallerGuard { shared: &shared };
        let mut started = 0;
        let mut delivered = 0;
        loop {
            let mut state = shared.lock();
            while state.running > 0 {
                state = shared.to_caller.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            // Quiet: every started task waits or is done.
            if let Some(i) = (delivered..started).find(|&i| matches!(state.done[i], Some(Err(_)))) {
                shared.abort(&mut state);
                return match state.done[i].take() {
                    Some(Err(e)) => Err(e),
                    _ => Err(SaliencyError::Internal {
                        what: "a failed batched computation lost its error",
                    }),
                };
            }
            while delivered < started {
                match state.done[delivered].take() {
                    Some(Ok(value)) => {
                        drop(state);
                        if let Err(e) = on_done(delivered, value) {
                            let mut state = shared.lock();
                            shared.abort(&mut state);
                            return Err(e);
                        }
                        delivered += 1;
                        state = shared.lock();
                    }
                    Some(Err(_)) | None => break,
                }
            }
            let waiting: usize = state.pending.iter().map(|p| p.rows() - p.sent).sum();
            if waiting < batch_size && started < tasks {
                state.running += 1;
                drop(state);
                let index = started;
                started += 1;
                let shared = &shared;
                scope.spawn(move || {
                    let mut guard = TaskGuard {
                        shared,
                        task: index,
                        finished: false,
                    };
                    let mut stand_in = |batch: ArrayViewD<'_, F>, request: &ModelRequest<'_>| {
                        shared.call(index, batch, request.keys())
                    };
                    let result = task(index, &mut stand_in);
                    guard.finished = true;
                    shared.finish(index, result);
                });
                continue;
            }
            if waiting == 0 {
                if delivered == tasks {
                    return Ok(());
                }
                // Started tasks are all done, so all were delivered, and no
                // task is left to start: cannot happen.
                shared.abort(&mut state);
                return Err(SaliencyError::Internal {
                    what: "the batch scheduler has nothing to run",
                });
            }
            if let Err(e) = send_one_batch(&mut state, batch_size, rows, model) {
                shared.abort(&mut state);
                return Err(e);
            }
            shared.to_tasks.notify_all();
        }
    })
}

/// Sends up to `batch_size` waiting rows with the keys of the lowest waiting
/// task to the model and posts the replies of the calls that are complete.
fn send_one_batch<F: Float, T>(
    state: &mut State<F, T>,
    batch_size: usize,
    rows: RowImages,
    model: &mut dyn CallModelFunction<F>,
) -> Result<()> {
    state.pending.sort_by_key(|p| p.task);
    let (keys, row_shape) = match state.pending.first() {
        Some(first) => (first.keys.clone(), first.shape[1..].to_vec()),
        None => return Ok(()),
    };
    let row_len: usize = row_shape.iter().product();
    // (pending index, first row, row count) of each piece in the batch.
    let mut pieces = Vec::new();
    let mut total = 0;
    for (i, p) in state.pending.iter().enumerate() {
        if total == batch_size {
            break;
        }
        if p.keys != keys || p.shape[1..] != row_shape[..] {
            continue;
        }
        let take = (p.rows() - p.sent).min(batch_size - total);
        pieces.push((i, p.sent, take));
        total += take;
    }
    let mut data = crate::checks::try_vec_with_capacity(total * row_len)
        .map_err(|_| SaliencyError::param("batch_size", batch_size, "gives a batch too large to allocate"))?;
    let mut images = Vec::with_capacity(total);
    for &(i, first, count) in &pieces {
        let p = &state.pending[i];
        data.extend_from_slice(&p.data[first * p.row_len()..(first + count) * p.row_len()]);
        let image = match rows {
            RowImages::ByTask => p.task,
            RowImages::Single => 0,
        };
        images.extend(std::iter::repeat_n(image, count));
    }
    let mut shape = vec![total];
    shape.extend_from_slice(&row_shape);
    let batch = ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|_| SaliencyError::Internal {
        what: "a packed batch has the wrong length",
    })?;
    let request = ModelRequest::new(&keys, &images);
    let mut outputs = model(batch.view(), &request).map_err(SaliencyError::Model)?;
    // The layer layout the model states goes with every share of the call.
    let layout = outputs.layout();

    // Only what splitting needs is checked here; each task checks its share
    // in full (shapes, finiteness) as it would alone.
    let mut split = Vec::with_capacity(keys.len());
    for &key in &keys {
        let value = outputs.remove(key).ok_or(SaliencyError::MissingOutput { key })?;
        if value.shape().first() != Some(&total) {
            let mut expected = value.shape().to_vec();
            match expected.first_mut() {
                Some(b) => *b = total,
                None => expected.push(total),
            }
            return Err(SaliencyError::OutputBatchMismatch {
                key,
                expected_batch: total,
                expected,
                actual: value.shape().to_vec(),
            });
        }
        let tail = value.shape()[1..].to_vec();
        let values: Vec<F> = value.as_standard_layout().iter().copied().collect();
        split.push((key, tail, values));
    }
    let mut offset = 0;
    for &(i, _, count) in &pieces {
        let p = &mut state.pending[i];
        for (key, tail, values) in &split {
            let len: usize = tail.iter().product();
            let part = &values[offset * len..(offset + count) * len];
            match p.gathered.iter_mut().find(|(k, _, _)| k == key) {
                Some((_, _, gathered)) => gathered.extend_from_slice(part),
                None => p.gathered.push((*key, tail.clone(), part.to_vec())),
            }
        }
        p.sent += count;
        p.layout = p.layout.or(layout);
        offset += count;
    }
    // Complete calls get their outputs; the others keep waiting.
    let mut i = 0;
    while i < state.pending.len() {
        if state.pending[i].sent < state.pending[i].rows() {
            i += 1;
            continue;
        }
        let p = state.pending.swap_remove(i);
        let rows = p.rows();
        let mut outputs = ModelOutputs::new();
        outputs.set_layout(p.layout);
        for (key, tail, values) in p.gathered {
            let mut shape = vec![rows];
            shape.extend_from_slice(&tail);
            let array = ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|_| SaliencyError::Internal {
                what: "a split model output has the wrong length",
            })?;
            outputs.insert(key, array);
        }
        state.replies[p.task] = Some(Reply::Outputs(Box::new(outputs)));
        state.running += 1;
    }
    Ok(())
}

/// [`CoreSaliency::get_masks`](crate::CoreSaliency::get_masks): `method` on
/// every image along axis 0 of `images`, model calls packed across images.
pub(crate) fn masks_of_images<F: Float, M: CoreSaliency<F> + ?Sized>(
    method: &M,
    images: ArrayViewD<'_, F>,
    model: &mut dyn CallModelFunction<F>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ArrayD<F>> {
    if images.ndim() < 2 {
        return Err(SaliencyError::InvalidRank {
            what: "images",
            expected: "rank 2 or more ([N, ...]: N images along axis 0)",
            actual: images.ndim(),
            shape: images.shape().to_vec(),
        });
    }
    let n = images.shape()[0];
    if images.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what: "images",
            shape: images.shape().to_vec(),
        });
    }
    let image = |i: usize| images.index_axis(Axis(0), i);
    packed_masks(method, n, "images", &image, model, progress)
}

/// [`Saliency::get_masks_for_targets`](crate::Saliency::get_masks_for_targets):
/// `method` on `x` once per target, the rows of target `t` labelled image `t`
/// in the model's request, model calls packed across targets.
pub(crate) fn masks_of_targets<F: Float, M: CoreSaliency<F> + ?Sized>(
    method: &M,
    x: ArrayViewD<'_, F>,
    targets: usize,
    model: &mut dyn CallModelFunction<F>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ArrayD<F>> {
    crate::checks::check_positive("targets", targets)?;
    let image = |_: usize| x.view();
    packed_masks(method, targets, "targets", &image, model, progress)
}

/// The masks of `n` tasks, task `i` explaining `image(i)` with its rows
/// labelled image `i`; `[n, ...mask]`.
fn packed_masks<'x, F: Float, M: CoreSaliency<F> + ?Sized>(
    method: &M,
    n: usize,
    what: &'static str,
    image: &(dyn Fn(usize) -> ArrayViewD<'x, F> + Sync),
    model: &mut dyn CallModelFunction<F>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ArrayD<F>> {
    let mut masks: Option<(Vec<usize>, Vec<F>)> = None;
    let task = |i: usize, model: &mut dyn CallModelFunction<F>| method.get_mask_dyn(image(i), model, &mut |_| {});
    let mut collect = |i: usize, mask: ArrayD<F>| -> Result<()> {
        let (shape, values) = match &mut masks {
            Some(m) => m,
            None => {
                let len = n.checked_mul(mask.len()).ok_or(SaliencyError::param(
                    what,
                    n,
                    "give masks too large to allocate together",
                ))?;
                let values = crate::checks::try_filled(what, n, len, F::zero())?;
                masks.insert((mask.shape().to_vec(), values))
            }
        };
        if shape.as_slice() != mask.shape() {
            return Err(SaliencyError::Internal {
                what: "the masks of two images of one call differ in shape",
            });
        }
        let len = mask.len();
        let slot = &mut values[i * len..(i + 1) * len];
        slot.iter_mut().zip(mask.iter()).for_each(|(s, &v)| *s = v);
        progress(Progress::new(Stage::Images, i + 1, n));
        Ok(())
    };
    // Every task's rows have the size of its image.
    let rows = method.batch_rows(image(0).len());
    run_packed(n, rows, RowImages::ByTask, model, &task, &mut collect)?;
    let (mask_shape, values) = masks.ok_or(SaliencyError::Internal {
        what: "a multi-image call produced no mask",
    })?;
    let mut shape = vec![n];
    shape.extend_from_slice(&mask_shape);
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|_| SaliencyError::Internal {
        what: "the masks of a multi-image call have the wrong length",
    })
}
